"""``nnbench protocol``: the measurement protocol of ``nnbench.protocol`` from the command line.

    nnbench protocol --workload teacher_fc --optimizers sgd momentum --batch-sizes 16 256 4096 \\
                     --first-round 16 --focus-round 16 --seeds 8 --store runs/protocol.sqlite

Per (optimizer, batch size): a quasi-random search, a search focused around its best trials (widened
beyond the space when the best sits at an edge), and the best configuration re-run with several seeds;
prints best-over-search steps, the median over seeds with its interval, widened parameters and the
share of time spent evaluating. Re-running the command resumes it.
"""

from __future__ import annotations

import json

__all__ = ["add_parser", "command"]


def add_parser(sub) -> None:
    """Add the ``protocol`` subcommand to ``sub`` (an argparse subparsers object)."""
    from nnbench.cli import ensemble_arg  # here: nnbench.cli imports this module
    from nnbench.workloads import WORKLOADS

    p = sub.add_parser(
        "protocol", help="search, focused search and seeds per (optimizer, batch size)",
        description="Per (optimizer, batch size): a quasi-random search (--first-round trials), a search "
        "focused around its --top-k best COMPLETE trials (--focus-round trials; a parameter whose best "
        "value sits at the space's edge is searched beyond it, recorded in the store), then the best "
        "configuration re-run with --seeds seeds. Steps to result is reported as the best over the "
        "search and as the median over seeds with an order-statistic interval. Evaluations on a "
        "geometric grid (every step up to 32, then steps 3% apart) unless --eval-grid every.")
    p.add_argument("--workload", default="teacher_fc", choices=list(WORKLOADS), metavar="NAME",
                   help=f"workload (default teacher_fc): {', '.join(WORKLOADS)}")
    p.add_argument("--optimizers", nargs="+", default=["sgd", "momentum"], metavar="NAME",
                   help="optimizers (default: sgd momentum)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64, 256, 1024], metavar="B",
                   help="batch sizes (default: 16 64 256 1024)")
    p.add_argument("--first-round", type=int, default=16, help="trials of the quasi-random search (default 16)")
    p.add_argument("--focus-round", type=int, default=16, help="trials of the focused search (default 16; 0: none)")
    p.add_argument("--seeds", type=int, default=8,
                   help="seeds of the best configuration (default 8; >= 6 for a 95%% interval; 0: none)")
    p.add_argument("--top-k", type=int, default=3, help="best trials the focused space spans (default 3)")
    p.add_argument("--eval-grid", default="geometric", choices=["geometric", "every"],
                   help="evaluation steps: geometric (default) or the workload's every --eval-every steps")
    p.add_argument("--eval-rel-step", type=float, default=0.03,
                   help="relative step of the geometric grid (default 0.03)")
    p.add_argument("--store", default="runs/protocol.sqlite", help="SQLite file (default runs/protocol.sqlite)")
    p.add_argument("--data-dir", default=None, help="local folder of a real data set")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--quick", action="store_true", help="the workload's quick variant (smaller step budget)")
    p.add_argument("--seed", type=int, default=0, help="seeds the rounds (default 0)")
    p.add_argument("--target", type=float, default=None, help="override the workload's target metric value")
    p.add_argument("--max-steps", type=int, default=None, help="override the workload's step budget per trial")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the workload's choice)")
    p.add_argument("--ensemble", type=ensemble_arg, default="auto", metavar="N|auto",
                   help="trials of a study trained at once as one batched ensemble (default auto; 1: one at a "
                   "time), as for nnbench sweep")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the per-study results as JSON")


def command(args) -> int:
    """Run ``nnbench protocol`` with parsed ``args``; returns the exit status."""
    from nnbench.cli import local_engine, workload_from_args
    from nnbench.protocol import format_protocol, run_protocol

    workload = workload_from_args(args)
    engine = local_engine(args, workload)
    if not 0 < args.eval_rel_step <= 1:
        raise ValueError(f"--eval-rel-step must be in (0, 1], got {args.eval_rel_step}")
    for flag, low in (("first_round", 1), ("focus_round", 0), ("seeds", 0), ("top_k", 1)):
        if getattr(args, flag) < low:
            raise ValueError(f"--{flag.replace('_', '-')} must be an integer >= {low}, got {getattr(args, flag)}")
    if args.seeds == 1:
        raise ValueError("--seeds must be 0 (no seed round) or at least 2 (a median needs an interval)")
    summaries = run_protocol(
        workload, args.optimizers, args.batch_sizes, args.store, first_round=args.first_round,
        focus_round=args.focus_round, seeds=args.seeds, top_k=args.top_k, eval_grid=args.eval_grid,
        eval_rel_step=args.eval_rel_step, seed=args.seed, device=args.device,
        progress=False if args.quiet else None, data_dir=args.data_dir, ensemble=args.ensemble,
        engine=engine,
    )
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        w = workload
        sign = ">=" if w.direction == "max" else "<="
        grid = (f"geometric grid, {args.eval_rel_step:.0%} steps" if args.eval_grid == "geometric"
                else f"every {w.eval_every} steps")
        print(f"{w.name}: steps to {w.eval_split} {w.metric} {sign} {w.target:g} ({grid}, budget {w.max_steps} "
              f"steps); store {args.store}")
        print(format_protocol(summaries))
    return 0
