"""Coverage of the intervals of ``nqm.fit_critical_batch`` on noisy draws from a known curve.

Larger than the test (``tests/nqm/test_fit.py``: 200 draws, two cases): more draws and cases that
stress the fit (4 points, B_crit near or beyond the largest measured batch size, replicates). Per
case it prints the fraction of draws refused, the fraction with a one-sided B_crit bound, and the
coverage of the true B_crit, S_min and E_min by the intervals the fit returned (a one-sided
interval [L, inf) covers when the truth is >= L) with a 95 % Wilson interval on each coverage.

    python benchmarks/bench_fit_coverage.py               # 2000 draws a case (about a minute)
    python benchmarks/bench_fit_coverage.py --draws 200   # quick
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
import warnings

import numpy as np
import scipy

from nqm.fit import CriticalBatchFitWarning, fit_critical_batch

S_MIN = 700.0
# name: (batch sizes, true B_crit, log-normal noise, give the noise as steps_err)
CASES = {
    "6 points, B_crit central, 5% noise": (np.geomspace(8, 8192, 6), 900.0, 0.05, False),
    "4 points, B_crit central, 5% noise": (np.geomspace(16, 4096, 4), 300.0, 0.05, False),
    "6 points, B_crit near the top, 5% noise": (np.geomspace(8, 8192, 6), 5000.0, 0.05, False),
    "6 points, B_crit 4x beyond the top, 5% noise": (np.geomspace(8, 8192, 6), 32768.0, 0.05,
                                                     False),
    "4 B x 2 runs, known 8% noise": (np.repeat(np.geomspace(16, 8192, 4), 2), 900.0, 0.08, True),
    "8 points, B_crit central, 20% noise": (np.geomspace(4, 16384, 8), 900.0, 0.20, False),
}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return mid - half, mid + half


def run_case(B, b_crit, noise, given, draws, rng) -> dict:
    truth = {"B_crit": b_crit, "S_min": S_MIN, "E_min": S_MIN * b_crit}
    hits = dict.fromkeys(truth, 0)
    refused = one_sided = 0
    for _ in range(draws):
        S = S_MIN * (1 + b_crit / B) * np.exp(noise * rng.standard_normal(B.size))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CriticalBatchFitWarning)
                f = fit_critical_batch(B, S, steps_err=noise * S if given else None)
        except ValueError:
            refused += 1
            continue
        one_sided += f.b_crit_unbounded
        for name, (lo, hi) in (("B_crit", f.b_crit_interval), ("S_min", f.s_min_interval),
                               ("E_min", f.e_min_interval)):
            hits[name] += lo <= truth[name] <= hi
    done = draws - refused
    return {"refused": refused / draws, "one_sided": one_sided / max(done, 1), "n": done,
            **{k: (v / max(done, 1), wilson(v, done)) for k, v in hits.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=2000, help="draws per case (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}; "
          f"{args.draws} draws a case, 95% intervals")
    for name, (B, b_crit, noise, given) in CASES.items():
        t0 = time.perf_counter()
        r = run_case(B, b_crit, noise, given, args.draws, rng)
        cov = "  ".join(f"{k} {r[k][0]:.3f} [{r[k][1][0]:.3f}, {r[k][1][1]:.3f}]"
                        for k in ("B_crit", "S_min", "E_min"))
        print(f"{name:<46} refused {r['refused']:.3f}  one-sided {r['one_sided']:.3f}  {cov}  "
              f"({(time.perf_counter() - t0) / args.draws * 1e3:.1f} ms a fit)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
