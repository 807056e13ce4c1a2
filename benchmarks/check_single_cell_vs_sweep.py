"""Check: one cell asked alone (``nqm.optimal_lr`` / ``nqm.optimal_hyperparameters``) never needs more
steps than the paper's Fig. 3a sweep (``nqm.batch_size_sweep``, batch sizes 2^0 .. 2^21, powers 0,
0.25, 0.5, 0.75) finds at that cell; all 88 cells, both binnings, SGD and tuned momentum.

    python benchmarks/check_single_cell_vs_sweep.py      # a few minutes on 2 CPU cores

Prints, per (binning, optimizer), the cells where the single cell is worse (must be none) and how
many it beats the sweep on; exits 1 if any is worse. ``tests/nqm/test_tuning.py`` checks the cells
where the tuner of a cell alone once stopped short.
"""

from __future__ import annotations

import sys
import time

import nqm
from nqm.sweep import PAPER_BATCH_SIZES, PAPER_POWERS


def main() -> int:
    failed = False
    for binning in ("accurate", "official"):
        problem = nqm.NQM.paper(binning=binning)
        for momentum in (0.0, "tune"):
            sweep = nqm.batch_size_sweep(problem, powers=PAPER_POWERS, momentum=momentum)
            t0, worse, better = time.perf_counter(), [], 0
            for i, p in enumerate(PAPER_POWERS):
                for j, b in enumerate(PAPER_BATCH_SIZES):
                    if momentum == "tune":
                        r = nqm.optimal_hyperparameters(problem, batch_size=b, power=p)
                    else:
                        r = nqm.optimal_lr(problem, batch_size=b, power=p)
                    worse += [(p, b, r.steps, int(sweep.steps[i, j]))] if r.steps > sweep.steps[i, j] else []
                    better += r.steps < sweep.steps[i, j]
            print(f"{binning:8s} momentum={momentum!s:4s}: worse than the sweep at {worse or 'no cell'}; "
                  f"better at {better} of 88 cells ({time.perf_counter() - t0:.1f} s)", flush=True)
            failed |= bool(worse)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
