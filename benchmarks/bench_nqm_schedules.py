"""Benchmark: optimized piecewise-constant learning-rate schedules, nqm against a NumPy port of the
authors' algorithm (``benchmarks/official_port.py``: L-BFGS-B from log lr = -5 with a hand-written
reverse pass instead of autograd, bisection on the piece length in [0, 1e8)), timed in the same run
on the same cells of the authors' problem (d = 10^4, h_i = 1/i, their 100-bin binning, C = H,
target 0.01).

1. One 50-piece schedule at one batch size (paper Fig. 3c).
2. The Fig. 3b sweep: 10-piece schedules, powers 0, 0.25, 0.5, 0.75 x B = 2^2, 2^4, .., 2^20
   (40 cells). nqm runs every cell; the port runs every cell too, or with ``--quick`` every
   ``--stride``-th cell, and its sweep time is then scaled by (40 / cells run) (stated in the
   output).

Steps: nqm's steps are the number of updates after which the optimized schedule's exact risk is
<= target (any integer T; lengths floor/ceil(T / K)). The port returns what the notebook returns,
K * m with m the last piece length NOT below target (off by one piece: the schedule reaches the
target after K (m + 1) updates, printed as "port+K"), and searches multiples of K only.
nqm's timings exclude the first call (numba compilation / cache load, reported separately) and are
the median of ``--repeats`` runs; the port is timed once per cell.

Run: ``python benchmarks/bench_nqm_schedules.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.optimize  # noqa: F401  (loads scipy's BLAS, listed below)
import threadpoolctl

import nqm


def _port():
    path = Path(__file__).resolve().parent / "official_port.py"
    spec = importlib.util.spec_from_file_location("official_port", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_nqm_schedules.py",
        description="Time nqm's optimized learning-rate schedules against a NumPy port of the "
                    "authors' notebook algorithm (one 50-piece schedule; the Fig. 3b sweep).")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="batch size of the single 50-piece schedule (default 16)")
    parser.add_argument("--quick", action="store_true",
                        help="run the port on every --stride-th Fig. 3b cell only (scaled)")
    parser.add_argument("--stride", type=int, default=5, help="with --quick (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of nqm (median)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.stride < 1 or args.repeats < 1:
        parser.error("--batch-size, --stride and --repeats must be >= 1")
    from tqdm import tqdm

    op = _port()
    h, counts = op.official_problem()
    problem = nqm.NQM.paper(binning="official")
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "numba": __import__("numba").__version__, "cpu": platform.processor() or
           platform.machine(), "cores": os.cpu_count(),
           # BLAS pools loaded (nqm runs L-BFGS-B inside with one thread: nqm._threads)
           "blas": [f"{i['internal_api']} {i['num_threads']} threads"
                    for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"],
           "load_average": os.getloadavg()}

    # ---- 1. one 50-piece schedule
    B = float(args.batch_size)
    t = time.perf_counter()
    nqm.optimize_schedule(problem, batch_size=B, n_pieces=50)
    first_call = time.perf_counter() - t
    # a fresh problem object per timed call: nqm memoises tuned cells per problem object
    ours_t, ours = _timed(lambda: nqm.optimize_schedule(nqm.NQM.paper(binning="official"),
                                                        batch_size=B, n_pieces=50), args.repeats)
    t = time.perf_counter()
    port_steps, _ = op.optimized_schedule_steps(args.batch_size, 0.0, h, counts, n_pieces=50)
    port_t = time.perf_counter() - t
    single = {"batch_size": args.batch_size, "power": 0.0, "n_pieces": 50,
              "nqm_seconds": ours_t, "nqm_first_call_seconds": first_call,
              "port_seconds": port_t, "speedup": port_t / ours_t, "nqm_steps": ours.steps,
              "port_steps": port_steps, "port_plus_K": port_steps + 50,
              "constant_steps": ours.constant_steps, "lower_bound": ours.lower_bound}

    # ---- 2. Fig. 3b sweep
    Bs, Ps = nqm.FIG3B_BATCH_SIZES, (0.0, 0.25, 0.5, 0.75)
    sweep_t, sweep = _timed(lambda: nqm.schedule_sweep(nqm.NQM.paper(binning="official"),
                                                       batch_sizes=Bs, powers=Ps, n_pieces=10),
                            args.repeats)
    cells = [(i, j) for i in range(len(Ps)) for j in range(len(Bs))]
    run = cells[::args.stride] if args.quick else cells
    rows, port_total = [], 0.0
    for i, j in tqdm(run, disable=args.quiet or args.json, desc="port cells", file=sys.stderr):
        t = time.perf_counter()
        steps, _ = op.optimized_schedule_steps(int(Bs[j]), Ps[i], h, counts, n_pieces=10)
        dt = time.perf_counter() - t
        port_total += dt
        # untimed: the port's schedule at its answer (K (m + 1) updates), its EXACT risk, and
        # nqm's optimized exact risk at the same T
        m = steps // 10 + 1
        lr = np.exp(op.optimize_schedule(m, 10, int(Bs[j]), h, counts, Ps[i]))
        port_exact = nqm.schedule_risk(problem, nqm.piecewise_constant(lr, [m] * 10),
                                       batch_size=Bs[j], power=Ps[i])
        _, ours_at = nqm.optimal_schedule_for_steps(problem, steps=10 * m, batch_size=Bs[j],
                                                    n_pieces=10, power=Ps[i], init=lr)
        rows.append({"power": Ps[i], "batch_size": int(Bs[j]), "nqm_steps": int(sweep.steps[i, j]),
                     "port_steps": steps, "port_plus_K": steps + 10,
                     "port_schedule_exact_risk": port_exact, "nqm_risk_same_steps": ours_at,
                     "constant_steps": int(sweep.constant_steps[i, j]), "port_seconds": dt})
    scale = len(cells) / len(run)
    # "never worse": fewer or equal updates wherever the port's schedule really reaches the target
    # (the port's +1e-8 lowers small-curvature floors, so at small B its answers can be a few
    # steps below what its own schedule needs), and a lower or equal exact risk at equal steps
    never_worse = all((r["nqm_steps"] <= r["port_plus_K"]
                       or r["port_schedule_exact_risk"] > op.TARGET)
                      and r["nqm_risk_same_steps"] <= r["port_schedule_exact_risk"] * (1 + 1e-9)
                      for r in rows)
    out = {"environment": env, "single_50_piece": single,
           "fig3b": {"nqm_seconds": sweep_t, "port_seconds_measured": port_total,
                     "port_cells_run": len(run), "cells": len(cells),
                     "port_seconds_scaled": port_total * scale,
                     "speedup": port_total * scale / sweep_t,
                     "nqm_never_worse_than_port": never_worse, "cells_compared": rows}}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"environment: {env}")
    print(f"\n1. one 50-piece schedule, B = {args.batch_size}, p = 0 (official binning)")
    print(f"   nqm : {ours_t:8.3f} s (median of {args.repeats}; first call incl. numba cache "
          f"load {first_call:.2f} s)   steps {ours.steps}")
    print(f"   port: {port_t:8.3f} s (once)   steps {port_steps} as returned, "
          f"{port_steps + 50} updates (+K)")
    print(f"   speedup {port_t / ours_t:.1f}x; best constant rate {ours.constant_steps} steps; "
          f"lower bound {ours.lower_bound:.0f}")
    print(f"\n2. Fig. 3b sweep: 10-piece schedules, {len(Ps)} powers x {len(Bs)} batch sizes")
    print(f"   nqm : {sweep_t:8.3f} s for all {len(cells)} cells (median of {args.repeats})")
    how = "all cells" if not args.quick else \
        f"{len(run)} of {len(cells)} cells (every {args.stride}th), scaled x{scale:.1f}"
    print(f"   port: {port_total * scale:8.3f} s ({how}; measured {port_total:.2f} s)")
    print(f"   speedup {port_total * scale / sweep_t:.1f}x")
    print(f"\n   {'p':>5} {'B':>8} | {'nqm':>8} {'port':>8} {'port+K':>8} | {'constant':>9} | "
          f"exact risk at port+K steps: {'port sched.':>12} {'nqm':>12}")
    for r in rows:
        print(f"   {r['power']:>5} {r['batch_size']:>8} | {r['nqm_steps']:>8} "
              f"{r['port_steps']:>8} {r['port_plus_K']:>8} | {r['constant_steps']:>9} | "
              f"{'':>27} {r['port_schedule_exact_risk']:>12.8f} {r['nqm_risk_same_steps']:>12.8f}")
    print("\n   nqm never worse than the port (fewer or equal updates wherever the port's schedule "
          "truly reaches the target, lower or equal exact risk at equal steps): "
          f"{never_worse}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
