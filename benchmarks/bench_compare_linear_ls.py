"""``linear_ls`` (an exact noisy quadratic): sweep SGD, momentum and Adam, fit the NQM on SGD only and
predict the others out of sample (``nnbench.compare_fit``); writes docs/results/compare_linear_ls.json
and docs/figures/compare_linear_ls.png.

    python benchmarks/bench_compare_linear_ls.py                 # sweep (resumable store) + comparison
    python benchmarks/bench_compare_linear_ls.py --compare-only  # comparison of an existing store

The points are measured with ``nnbench.protocol`` (per optimizer and batch size: a 24-trial
quasi-random search, a 12-trial focused search, the best configuration re-run with 6 seeds; each point
is the median over the seeds), trials as batched ensembles (``--threads 1`` on a machine others load:
at load 7-8 on 2 cores, B = 8192 ensembles ran 11 steps/s with two threads, 125-143 with one). The
search spaces are wider than the workload's defaults where the NQM's tuned optimum lies at or past their edge (SGD's and
momentum's lr near the stability limit 2 / h_max = 32 at large B, Adam's lr above 0.1); Adam searches
lr, beta1 and beta2 at eps = 1e-8. Momentum and beta1 are searched on a LINEAR scale over [0, 0.999],
not the workload's reverse-log one: at large B the tuned coefficients are small (0.15-0.6 at B = inf)
and a reverse-log scale puts only 2-3% of the points within 2x of the fewest steps there, against
7-10% on the linear scale (``benchmarks/adam_large_batch_linear_ls.py``); with 12 + 8 reverse-log
trials Adam's points at B = 2048 and 8192 were 12 and 11 steps, against 8 and 5 now. A store written with other spaces holds
other studies: use a fresh ``--store``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from nnbench.compare_fit import compare_fit, write_results
from nnbench.engines.local import LocalEngine
from nnbench.protocol import format_protocol, run_protocol
from nnbench.search import SearchSpace
from nnbench.workloads import get_workload

SPACES = {
    "sgd": {"params": [{"name": "lr", "low": 0.3, "high": 32.0, "scale": "log"}], "fixed": {}},
    "momentum": {"params": [{"name": "lr", "low": 0.01, "high": 64.0, "scale": "log"},
                            {"name": "momentum", "low": 0.0, "high": 0.999, "scale": "linear"}], "fixed": {}},
    "adam": {"params": [{"name": "lr", "low": 1e-3, "high": 3.0, "scale": "log"},
                        {"name": "beta1", "low": 0.0, "high": 0.999, "scale": "linear"},
                        {"name": "beta2", "low": 0.9, "high": 0.9999, "scale": "reverse_log"}],
             "fixed": {"eps": 1e-8}},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="runs/linear_ls_protocol.sqlite", help="SQLite store (resumed)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128, 512, 2048, 8192])
    ap.add_argument("--max-steps", type=int, default=3000, help="step budget per trial (default 3000)")
    ap.add_argument("--first-round", type=int, default=24, help="trials of the search (default 24)")
    ap.add_argument("--focus-round", type=int, default=12, help="trials of the focused search (default 12)")
    ap.add_argument("--seeds", type=int, default=6, help="seeds of the best configuration (default 6)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads of the trial ensembles (default: every core; 1 on a machine others load)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap refits (default 200)")
    ap.add_argument("--power", nargs="*", default=[], metavar="NAME=P", help="preconditioner powers, e.g. adam=0.5")
    ap.add_argument("--results", default="docs/results", help="folder of compare_linear_ls.json")
    ap.add_argument("--figures", default="docs/figures", help="folder of compare_linear_ls.png")
    ap.add_argument("--compare-only", action="store_true", help="do not run trials; compare the store")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # a 16 x 32 linear model: threads only add overhead
    workload = get_workload("linear_ls").replace(max_steps=args.max_steps)
    t0 = time.perf_counter()
    if not args.compare_only:
        summaries = run_protocol(
            workload, list(SPACES), args.batch_sizes, args.store, first_round=args.first_round, focus_round=args.focus_round,
            seeds=args.seeds,
            device="cpu", progress=False if args.quiet else None, ensemble="auto",
            engine=LocalEngine(ensemble_threads=args.threads),
            search_spaces={opt: SearchSpace.from_dict(space) for opt, space in SPACES.items()})
        print(format_protocol(summaries))
    sweep_s = time.perf_counter() - t0
    powers = {k: float(v) for k, v in (item.split("=") for item in args.power)}
    t1 = time.perf_counter()
    r = compare_fit(args.store, out_dir=args.figures, powers=powers or None, n_boot=args.bootstrap)
    compare_s = time.perf_counter() - t1
    path = write_results(r, args.results)
    print(r.table())
    print(f"protocol {sweep_s:.0f} s, comparison {compare_s:.0f} s; results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
