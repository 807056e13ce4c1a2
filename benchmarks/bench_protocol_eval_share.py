"""Evaluation cost of the geometric evaluation grid against the workload's ``eval_every`` grid.

One SGD trial per (batch size, grid) at a fixed lr, same seed (evaluation does not change training):
prints steps to result, the number of evaluations and the share of the trial's time (first to last
evaluation) spent outside training steps, i.e. evaluating (``nnbench.protocol.trial_times``).

    python benchmarks/bench_protocol_eval_share.py                      # teacher_fc, B = 16 and 1024
    python benchmarks/bench_protocol_eval_share.py --workload linear_ls --lr 3 --batch-sizes 4 256
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    import torch

    from nnbench.protocol import trial_times
    from nnbench.trial import run
    from nnbench.workloads import WORKLOADS, build_workload_data, get_workload

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="teacher_fc", choices=list(WORKLOADS))
    parser.add_argument("--lr", type=float, default=0.5, help="SGD learning rate (default 0.5)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 1024])
    parser.add_argument("--rel", type=float, default=0.03, help="relative step of the geometric grid")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = get_workload(args.workload)
    data = build_workload_data(base, device="cpu")
    print(f"{base.name}, sgd lr={args.lr:g}, {args.threads} thread(s)")
    print(f"{'B':>6} {'grid':>14} {'status':>10} {'steps':>6} {'evals':>6} {'train s':>8} {'eval share':>10}")
    for b in args.batch_sizes:
        for label, w in ((f"every {base.eval_every}", base),
                         (f"geometric {args.rel:.0%}", base.replace(eval_grid="geometric", eval_rel_step=args.rel))):
            r = run(w, optimizer="sgd", hparams={"lr": args.lr}, batch_size=b, seed=args.seed, device="cpu", data=data)
            train, other = trial_times(r.measurements)
            evals = sum(1 for m in r.measurements if m.name == "wall_time")
            share = other / (train + other) if train + other else float("nan")
            print(f"{b:>6} {label:>14} {r.status.value:>10} {r.steps_to_result or '-':>6} {evals:>6} "
                  f"{train:>8.2f} {share:>10.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
