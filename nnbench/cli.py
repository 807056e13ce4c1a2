"""``python -m nnbench`` / ``nnbench``: steps-to-target sweeps over batch sizes and optimizers.

    nnbench sweep --quick                        # quick start: teacher_fc, sgd + momentum, B = 16 .. 1024
    nnbench sweep --workload teacher_fc --optimizers sgd momentum adam --batch-sizes 16 64 256 1024 \\
                  --trials 16 --store runs/nnbench.sqlite
    nnbench status --store runs/nnbench.sqlite   # per study: trials by status, steps to result, edge flags
    nnbench export --store runs/nnbench.sqlite --out runs/trials.csv --measurements runs/measurements.csv
    nnbench workloads                            # the registered workloads
    nnbench compare --store runs/nnbench.sqlite  # the NQM's prediction beside the sweep (figure + table)
    nnbench import-batch-science DATA/mnist/simple_cnn_base --target 0.01 --store runs/shallue.sqlite
    nnbench export --store runs/nnbench.sqlite --format batch-science runs/batch_science  # Shallue et al.'s layout

A sweep stores every trial in the SQLite file as it finishes; running the same command again resumes
it (finished trials are never re-run) and a larger ``--trials`` extends its studies.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

__all__ = ["main", "build_parser"]

DEFAULT_STORE = "runs/nnbench.sqlite"


def build_parser() -> argparse.ArgumentParser:
    from nnbench.workloads import WORKLOADS

    parser = argparse.ArgumentParser(
        prog="nnbench",
        description=(
            "Real-network steps-to-target sweeps over batch sizes and optimizers (Shallue et al. 2018; "
            "Zhang et al. 2019, section 4): for each (optimizer, batch size) a quasi-random search "
            "over the hyperparameters, each trial trained until the target metric is first reached. "
            "Results go to a SQLite file; re-running a sweep resumes it."
        ),
        epilog="Quick start (a few minutes on 2 CPU cores, no download): python -m nnbench sweep --quick",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{sweep,status,export,workloads,compare,import-batch-science}")

    sw = sub.add_parser(
        "sweep",
        help="run (or resume, or extend) a sweep",
        description="Run one study per (optimizer, batch size): quasi-random trials, each trained until "
        "the workload's target is first reached at an evaluation (COMPLETE), its step budget ends "
        "(INCOMPLETE) or its loss diverges (INFEASIBLE). Finished trials in --store are skipped.",
    )
    sw.add_argument("--workload", default="teacher_fc", choices=list(WORKLOADS), metavar="NAME",
                    help=f"workload (default teacher_fc; embedded ones need no download): {', '.join(WORKLOADS)}")
    sw.add_argument("--optimizers", nargs="+", default=["sgd", "momentum"], metavar="NAME",
                    help="optimizers: sgd momentum nesterov adam adam_nomomentum kfac kfac_momentum "
                    "(default: sgd momentum)")
    sw.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64, 256, 1024], metavar="B",
                    help="batch sizes (default: 16 64 256 1024)")
    sw.add_argument("--trials", type=int, default=None,
                    help="quasi-random trials per study (default 16; 8 with --quick)")
    sw.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file of results (default {DEFAULT_STORE})")
    sw.add_argument("--data-dir", default=None,
                    help="local folder of a real data set (MNIST IDX files, cifar-10-batches-py; the text "
                    "file for text_lm_transformer); embedded workloads need none")
    sw.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)")
    sw.add_argument("--quick", action="store_true",
                    help="the workload's quick variant (smaller step budget / evaluation set) and 8 trials")
    sw.add_argument("--seed", type=int, default=0, help="seeds the searches and the trials (default 0)")
    sw.add_argument("--target", type=float, default=None, help="override the workload's target metric value")
    sw.add_argument("--max-steps", type=int, default=None, help="override the workload's step budget per trial")
    sw.add_argument("--eval-every", type=int, default=None, help="override the steps between evaluations")
    sw.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: the workload's choice, 1 for teacher_fc, else torch's "
                    "default); small models run fastest on 1, especially on a busy machine")
    sw.add_argument("--quiet", action="store_true", help="no progress bars")
    sw.add_argument("--json", action="store_true", help="print the study summaries as JSON")

    st = sub.add_parser("status", help="summarise the studies in a store",
                        description="Per study: trials by status, steps to result (fewest steps over "
                        "COMPLETE trials), best hyperparameters, and '!name=low|high' when the best trial "
                        "sits within 5%% of a search-space boundary (widen the space).")
    st.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file (default {DEFAULT_STORE})")
    st.add_argument("--workload", default=None, help="only this workload's studies")
    st.add_argument("--json", action="store_true", help="print JSON")

    ex = sub.add_parser("export", help="write the trials (and measurements) of a store to CSV, or the "
                        "whole store in Shallue et al.'s batch_science layout")
    ex.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file (default {DEFAULT_STORE})")
    ex.add_argument("--out", default=None,
                    help="csv: CSV file for the trials (one row each); batch-science: the folder (or give DIR)")
    ex.add_argument("--measurements", default=None, metavar="CSV",
                    help="csv: also write every measurement (study, trial, step, name, value) to this CSV file")
    ex.add_argument("--format", default="csv", choices=["csv", "batch-science"],
                    help="csv (default), or batch-science: dataset/model/optimizer/batch_size/study.json and "
                    "trial_id/{metadata.json,measurements.csv} under DIR (Shallue et al.'s published layout)")
    ex.add_argument("--workload", default=None, help="batch-science: only this workload's studies")
    ex.add_argument("dir", nargs="?", default=None, metavar="DIR",
                    help="batch-science: the (new or empty) folder to write (same as --out)")

    ib = sub.add_parser(
        "import-batch-science", help="read Shallue et al.'s published measurements (batch_science layout) "
        "into a store",
        description="Read every study under DIR (the whole batch_science archive, one dataset, one "
        "workload dataset/model/optimizer, or one study folder) into --store, keeping study, trial and "
        "measurement identities and statuses. Steps to result is their rule: among COMPLETE trials, the "
        "first evaluation whose --metric column beats --target (strictly), fewest steps over trials. "
        "Studies exported by nnbench carry their own metric and target. Importing again skips stored trials.")
    ib.add_argument("dir", metavar="DIR", help="a folder holding study.json files at any depth")
    ib.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file (default {DEFAULT_STORE})")
    ib.add_argument("--metric", default=None,
                    help="measurements.csv column compared with --target (default val/classification_error)")
    ib.add_argument("--target", type=float, default=None,
                    help="threshold that counts as reached (needed for Shallue et al.'s data, e.g. their goal error)")
    ib.add_argument("--direction", default=None, choices=["min", "max"],
                    help="whether --metric improves down (min) or up (max) (default: from its name; errors "
                    "and losses min, accuracies max)")
    ib.add_argument("--quiet", action="store_true", help="no progress bar (there is none off a terminal)")
    ib.add_argument("--json", action="store_true", help="print the imported studies' summaries as JSON")

    wl = sub.add_parser("workloads", help="list the registered workloads")
    wl.add_argument("--json", action="store_true", help="print JSON")

    cp = sub.add_parser(
        "compare", help="overlay the noisy quadratic model's prediction on a stored sweep",
        description="Fit the critical batch size (McCandlish et al.: S = S_min + E_min / B) to each "
        "optimizer's measured steps to result, fit the NQM's two free scales (steps, batch size) to the "
        "--fit-on optimizer's points, predict every optimizer's steps-vs-B and optimal-lr-vs-B curves "
        "from its NQM family (SGD p=0, momentum p=0 with tuned momentum, Adam p=0.5, K-FAC p=0.75), draw "
        "them over the measurements (compare_<workload>.png in --out) and print measured vs predicted "
        "B_crit, S_min, E_min and the optimizer ordering at the smallest and largest batch size.")
    cp.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite file of a sweep (default {DEFAULT_STORE})")
    cp.add_argument("--workload", default=None, help="workload to compare (default: the store's only one)")
    cp.add_argument("--target", type=float, default=None,
                    help="the sweep target, if the store holds sweeps of the workload with several")
    cp.add_argument("--out", default="figures/out", help="folder for the figure (default figures/out)")
    cp.add_argument("--fit-on", nargs="+", default=["sgd"], metavar="NAME",
                    help="optimizer(s) whose points fix the NQM's two scales, or 'all' (default sgd; all "
                    "optimizers when the store has fewer than 2 SGD points)")
    cp.add_argument("--nqm-target", type=float, default=0.01,
                    help="target risk of the reference NQM (the paper's problem; default 0.01)")
    cp.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _summary_dict(s) -> dict:
    d = dataclasses.asdict(s)
    d["trials_done"] = s.trials_done
    return d


def _sweep(args) -> int:
    import torch

    from nnbench.device import resolve_device
    from nnbench.study import format_table, run_sweep
    from nnbench.workloads import get_workload

    workload = get_workload(args.workload)
    threads = args.threads
    if threads is None and resolve_device(args.device).type == "cpu":
        threads = workload.cpu_threads
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {threads}")
        torch.set_num_threads(threads)  # process-wide; this process is ours
    if args.quick:
        workload = workload.quick()
    overrides = {k: v for k, v in (("target", args.target), ("max_steps", args.max_steps),
                                    ("eval_every", args.eval_every)) if v is not None}
    if overrides:
        workload = workload.replace(**overrides)
    trials = args.trials if args.trials is not None else (8 if args.quick else 16)
    summaries = run_sweep(workload, args.optimizers, args.batch_sizes, trials, args.store,
                          device=args.device, progress=not args.quiet, seed=args.seed, data_dir=args.data_dir)
    if args.json:
        print(json.dumps([_summary_dict(s) for s in summaries], indent=2))
    else:
        w = workload
        sign = ">=" if w.direction == "max" else "<="
        print(f"{w.name}: steps to {w.eval_split} {w.metric} {sign} {w.target:g} "
              f"(evaluated every {w.eval_every} steps, budget {w.max_steps} steps); store {args.store}")
        print(format_table(summaries))
    return 0


def _status(args) -> int:
    from nnbench.study import format_table, summarize_store

    summaries = summarize_store(args.store)
    if args.workload is not None:
        summaries = [s for s in summaries if s.workload == args.workload]
    if args.json:
        print(json.dumps([_summary_dict(s) for s in summaries], indent=2))
    elif not summaries:
        print(f"no studies in {args.store}")
    else:
        print(format_table(summaries))
    return 0


def _export(args) -> int:
    from nnbench.store import Store

    if args.format == "batch-science":
        from nnbench.batch_science import export_batch_science

        if (args.dir is None) == (args.out is None):
            raise ValueError("--format batch-science: give the output folder once, as DIR or --out")
        if args.measurements is not None:
            raise ValueError("--measurements: the batch-science layout already holds every measurement")
        out = args.dir or args.out
        report = export_batch_science(args.store, out, workload=args.workload)
        print(f"wrote {report.studies} studies ({report.trials} trials) under {out}")
        return 0
    if args.out is None or args.dir is not None or args.workload is not None:
        raise ValueError("--format csv: give --out FILE (DIR and --workload belong to --format batch-science)")
    with Store(args.store, create=False) as store:
        n = store.export_csv(args.out, measurements=args.measurements)
    extra = f" and measurements to {args.measurements}" if args.measurements else ""
    print(f"wrote {n} trials to {args.out}{extra}")
    return 0


def _import_batch_science(args) -> int:
    from nnbench.batch_science import import_batch_science
    from nnbench.store import Store
    from nnbench.study import format_table, summarize

    report = import_batch_science(args.dir, args.store, metric=args.metric, target=args.target,
                                  direction=args.direction, progress=not args.quiet and sys.stderr.isatty())
    with Store(args.store, create=False) as store:
        summaries = [summarize(store, i) for i in report.study_ids]
    if args.json:
        print(json.dumps([_summary_dict(s) for s in summaries], indent=2))
        return 0
    print(f"imported {report.studies} studies from {args.dir} into {args.store}: {report.trials_written} "
          f"trials written, {report.trials_skipped} already stored")
    print(format_table(summaries))
    return 0


def _workloads(args) -> int:
    from nnbench.workloads import WORKLOADS

    if args.json:
        print(json.dumps({n: {**w.definition(), "needs_data_dir": w.needs_data_dir,
                              "description": w.description} for n, w in WORKLOADS.items()}, indent=2))
        return 0
    for name, w in WORKLOADS.items():
        sign = ">=" if w.direction == "max" else "<="
        where = "needs --data-dir" if w.needs_data_dir else "embedded"
        print(f"{name:24s} {w.metric} {sign} {w.target:g} within {w.max_steps} steps ({where})\n"
              f"{'':24s} {w.description}")
    return 0


def _compare(args) -> int:
    from nnbench.compare import compare

    fit_on = "all" if args.fit_on == ["all"] else args.fit_on
    result = compare(args.store, workload=args.workload, target=args.target, out_dir=args.out, fit_on=fit_on,
                     nqm_target=args.nqm_target)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.table())
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m nnbench`` and the ``nnbench`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = {"sweep": _sweep, "status": _status, "export": _export, "workloads": _workloads,
               "compare": _compare, "import-batch-science": _import_batch_science}[args.command]
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, ImportError) as e:
        # Bad input or a missing optional dependency: a one-line message, not a traceback
        # (argparse's convention: exit status 2).
        print(f"nnbench {args.command}: error: {e}", file=sys.stderr)
        return 2
