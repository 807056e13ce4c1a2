"""Benchmark: the paper's Fig. 3a sweep with nqm against the authors' algorithm (grid + bisection).

    python benchmarks/bench_nqm_sweep.py [--quick] [--runs 3] [--json]

What is timed, in ONE run on this machine:

1. nqm: the full Fig. 3a sweep (powers 0, 0.25, 0.5, 0.75 x batch sizes 2^2, 2^4, .., 2^20; SGD with
   a tuned rate and heavy-ball momentum with tuned rate and momentum = 80 tuned cells) on the
   authors' binned problem, after a warm-up that is not counted (numba compilation); median of
   ``--runs`` runs. Also every cell alone through the public API (``optimal_lr`` /
   ``optimal_hyperparameters``), for per-cell ratios.
2. ``benchmarks/official_port.py`` (plain NumPy port of the notebook: 100-rate grid for SGD,
   100 x 20 (rate, momentum) grid for momentum, bisection on t): all 40 SGD cells (cheap) and three
   momentum cells (p = 0; B = 2^4, 2^12, 2^20). ``--quick`` uses a 20 x 5 momentum grid and scales the
   measured time by 2000 / 100 = 20 (the cost is proportional to the grid size: every grid point
   is one bisection); the scaling is printed.
   The notebook's full Fig. 3a time is estimated as the measured SGD cells plus 40 times the mean
   momentum cell (momentum cells cost about the same at every power and batch size).
3. Steps side by side: nqm's tuned steps, the notebook's answer (+1: it returns the last t NOT below
   target), and the exact steps (nqm) at the notebook's chosen hyperparameters; nqm's must never be
   larger than the last.
4. Cold start: ``python -c "import nqm; nqm.critical_batch()"`` in a fresh process (cached kernels),
   median of 3.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np

import nqm

HERE = Path(__file__).resolve().parent
POWERS = (0.0, 0.25, 0.5, 0.75)
BATCHES = tuple(2 ** i for i in range(2, 21, 2))            # 2^2, 2^4, .., 2^20
PORT_MOMENTUM_CELLS = ((0.0, 2 ** 4), (0.0, 2 ** 12), (0.0, 2 ** 20))
TARGET = 0.01


def _load_port():
    spec = importlib.util.spec_from_file_location("official_port", HERE / "official_port.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nqm_sweep(problem):
    s = nqm.batch_size_sweep(problem, batch_sizes=BATCHES, powers=POWERS, target=TARGET)
    m = nqm.batch_size_sweep(problem, batch_sizes=BATCHES, powers=POWERS, momentum="tune",
                             target=TARGET)
    return s, m


def _exact_or_none(problem, **kw):
    try:
        return nqm.steps_to_target(problem, target=TARGET, **kw).steps
    except ValueError:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/bench_nqm_sweep.py",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="20 x 5 momentum grid for the notebook port (time scaled by 20)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of the nqm sweep (median)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    port = _load_port()
    problem = nqm.NQM.paper(binning="official")
    h_port, counts_port = port.official_problem()

    # ---------------------------------------------------------------- nqm, warm
    log("warm-up (numba compilation, not counted) ...")
    _nqm_sweep(problem)
    times = []
    for _ in range(args.runs):
        # a fresh problem object per timed run: nqm memoises tuned cells per problem object
        fresh = nqm.NQM.paper(binning="official")
        t0 = time.perf_counter()
        sgd, mom = _nqm_sweep(fresh)
        times.append(time.perf_counter() - t0)
    t_nqm = statistics.median(times)
    log(f"nqm Fig. 3a sweep: {t_nqm:.3f} s (median of {args.runs})")
    cell_time = {}
    for p in POWERS:
        for B in BATCHES:
            fresh = nqm.NQM.paper(binning="official")
            t0 = time.perf_counter()
            nqm.optimal_lr(fresh, batch_size=B, power=p, target=TARGET)
            cell_time[("sgd", p, B)] = time.perf_counter() - t0
    for p, B in PORT_MOMENTUM_CELLS:
        fresh = nqm.NQM.paper(binning="official")
        t0 = time.perf_counter()
        nqm.optimal_hyperparameters(fresh, batch_size=B, power=p, target=TARGET)
        cell_time[("momentum", p, B)] = time.perf_counter() - t0

    # ---------------------------------------------------------------- the notebook's algorithm
    rows = []
    t_port_sgd = 0.0
    for i, p in enumerate(POWERS):
        for j, B in enumerate(BATCHES):
            t0 = time.perf_counter()
            steps, lr = port.tune_sgd(B, p, h_port, counts_port, TARGET)
            dt = time.perf_counter() - t0
            t_port_sgd += dt
            rows.append(dict(optimizer="sgd", power=p, batch_size=B, nqm_steps=int(sgd.steps[i, j]),
                             notebook_steps=None if math.isinf(steps) else int(steps) + 1,
                             exact_at_notebook=_exact_or_none(problem, lr=lr, batch_size=B,
                                                              power=p),
                             nqm_cell_s=cell_time[("sgd", p, B)], notebook_cell_s=dt, scale=1.0))
    log(f"notebook port, 40 SGD cells: {t_port_sgd:.2f} s")
    n_lr, n_beta = (20, 5) if args.quick else (100, 20)
    scale = (100 * 20) / (n_lr * n_beta)
    mom_times = []
    for p, B in PORT_MOMENTUM_CELLS:
        log(f"notebook port, momentum cell p={p:g} B={B} ({n_lr} x {n_beta} grid) ...")
        t0 = time.perf_counter()
        steps, lr, beta = port.tune_momentum(B, p, h_port, counts_port, TARGET, n_lr=n_lr,
                                             n_beta=n_beta)
        dt = (time.perf_counter() - t0) * scale
        mom_times.append(dt)
        j = BATCHES.index(B)
        i = POWERS.index(p)
        exact = None if math.isinf(steps) else _exact_or_none(problem, lr=lr, batch_size=B,
                                                              momentum=beta, power=p)
        rows.append(dict(optimizer="momentum", power=p, batch_size=B,
                         nqm_steps=int(mom.steps[i, j]),
                         notebook_steps=None if math.isinf(steps) else int(steps) + 1,
                         exact_at_notebook=exact, nqm_cell_s=cell_time[("momentum", p, B)],
                         notebook_cell_s=dt, scale=scale))
    t_port_full = t_port_sgd + 40 * statistics.mean(mom_times)

    # ---------------------------------------------------------------- cold start
    cold = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import nqm; nqm.critical_batch()"], check=True,
                       capture_output=True)
        cold.append(time.perf_counter() - t0)
    t_cold = statistics.median(cold)

    worse = [r for r in rows if r["exact_at_notebook"] is not None
             and r["nqm_steps"] > r["exact_at_notebook"]]
    env = dict(python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
               cpus=os.cpu_count(), numba_threads=numba.get_num_threads(),
               load_average=os.getloadavg()[0], machine=platform.processor() or platform.machine())
    result = dict(env=env, nqm_sweep_s=t_nqm, nqm_sweep_runs=times,
                  notebook_estimate_s=t_port_full, notebook_sgd_cells_s=t_port_sgd,
                  notebook_momentum_cell_s=mom_times, speedup=t_port_full / t_nqm,
                  cold_start_s=t_cold, cold_start_runs=cold, cells=rows,
                  nqm_never_worse=not worse, quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if not worse else 1
    print(f"Fig. 3a sweep (4 powers x 10 batch sizes, SGD + tuned momentum = 80 cells), "
          f"target {TARGET}, authors' binning")
    print(f"  machine: {env['cpus']} CPUs, numba {env['numba']} ({env['numba_threads']} threads), "
          f"numpy {env['numpy']}, load average {env['load_average']:.2f}")
    print(f"  nqm, warm:            {t_nqm:8.3f} s  (median of {args.runs}: "
          + ", ".join(f"{t:.3f}" for t in times) + ")")
    print(f"  notebook port (est.): {t_port_full:8.1f} s  = 40 SGD cells {t_port_sgd:.1f} s + "
          f"40 x momentum cell {statistics.mean(mom_times):.1f} s"
          + (f" (20 x 5 grid, time x {scale:g})" if args.quick else ""))
    print(f"  speed-up:             {t_port_full / t_nqm:8.0f} x")
    print(f"  cold start (import nqm; nqm.critical_batch()): {t_cold:.2f} s (median of 3: "
          + ", ".join(f"{t:.2f}" for t in cold) + ")")
    print()
    print(f"{'optimizer':>9} {'p':>5} {'B':>8} | {'nqm':>8} {'notebook':>9} {'exact@nb':>9} | "
          f"{'nqm cell s':>10} {'nb cell s':>10} {'ratio':>8}")
    for r in rows:
        nb = "-" if r["notebook_steps"] is None else str(r["notebook_steps"])
        ex = "-" if r["exact_at_notebook"] is None else str(r["exact_at_notebook"])
        print(f"{r['optimizer']:>9} {r['power']:>5g} {r['batch_size']:>8} | {r['nqm_steps']:>8} "
              f"{nb:>9} {ex:>9} | {r['nqm_cell_s']:>10.4f} {r['notebook_cell_s']:>10.2f} "
              f"{r['notebook_cell_s'] / r['nqm_cell_s']:>8.0f}")
    print()
    print("notebook = the port's answer + 1 (it returns the last t not below target); exact@nb = "
          "exact steps at the notebook's chosen hyperparameters.")
    print("nqm never worse than exact@nb: " + ("yes" if not worse else f"NO ({len(worse)} cells)"))
    return 0 if not worse else 1


if __name__ == "__main__":
    sys.exit(main())
