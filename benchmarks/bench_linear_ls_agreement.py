"""Full-size check that nnbench reproduces the NQM on online linear least squares.

Larger than the CPU test (``tests/nnbench/test_linear_ls.py``): a bigger input dimension, more seeds and
more batch sizes. Per (optimizer, B) it prints the NQM's prediction (tuned on a quarter-octave lr grid),
the exact Gaussian expected risk at the same lr (fourth moments included: the NQM's own error), nnbench's
measured steps at that lr and tuned on the same grid (seed-averaged risk curves, ``nnbench.linear_ls``),
the relative error, and the critical batch sizes fitted to measured and predicted points.

    python benchmarks/bench_linear_ls_agreement.py              # full size (minutes on one CPU core)
    python benchmarks/bench_linear_ls_agreement.py --quick      # the CPU test's size
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from nnbench.linear_ls import agreement
from nnbench.workloads import get_workload


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=32, help="input dimension D (default 32; the test uses 16)")
    ap.add_argument("--outputs", type=int, default=32, help="outputs K (default 32)")
    ap.add_argument("--decay", type=float, default=1.5, help="eigenvalues i^-decay (default 1.5)")
    ap.add_argument("--seeds", type=int, default=8, help="seeds averaged per lr (default 8; the test uses 4)")
    ap.add_argument("--batch-sizes", type=int, nargs="+",
                    default=[8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
                    help="batch sizes (default 2^3 .. 2^13)")
    ap.add_argument("--momentum", type=float, default=0.9, help="fixed momentum of 'momentum' (default 0.9)")
    ap.add_argument("--quick", action="store_true", help="the CPU test's size: D=16, 4 seeds, 6 batch sizes")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # a 16-weight-row model: threads only add overhead
    w = get_workload("linear_ls")
    if args.quick:
        batch_sizes, seeds = [8, 32, 128, 512, 2048, 8192], 4
    else:
        batch_sizes, seeds = args.batch_sizes, args.seeds
        w = w.replace(dataset_kwargs={"dim": args.dim, "num_outputs": args.outputs, "decay": args.decay})
    t0 = time.perf_counter()
    r = agreement(w, batch_sizes=batch_sizes, seeds=seeds, momentum=args.momentum, progress=not args.quiet)
    wall = time.perf_counter() - t0
    if args.json:
        print(json.dumps({**r.to_dict(), "dataset_kwargs": dict(w.dataset_kwargs), "wall_s": wall}))
        return 0
    print(f"linear_ls {dict(w.dataset_kwargs)}; torch {torch.__version__} on CPU ({platform.processor() or 'cpu'}), "
          f"1 thread, {wall:.0f} s")
    print(r.table())
    worst = max(r.rows, key=lambda row: abs(row.rel_error))
    print(f"largest |error|: {100 * abs(worst.rel_error):.1f}% ({worst.optimizer}, B={worst.batch_size}); "
          f"promise: 15% per B, 20% on B_crit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
