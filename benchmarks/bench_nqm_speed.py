"""Benchmark: nqm at interactive speed. Times the interactive paths and, in the same run, the code
paths they replaced (ratios), checking that both return the same numbers bit for bit.

In-process (warm: numba caches loaded by a first call that is not counted; a fresh problem object
per timed call, since nqm memoises tuned cells per problem object):

1. tuned momentum's E_min: Nelder-Mead stopped when its state recurs (``nqm._nelder_mead``)
   against ``scipy.optimize.minimize(method="Nelder-Mead", maxiter=2000)``;
2. the main job's library calls (three sweeps over 2^0 .. 2^21 and three critical batch sizes):
   with the per-problem memo and the early-stopping search against without either; and the
   same calls as ``python -m nqm`` makes them (``nqm.cli.main_columns``: the columns and the
   E_min searches side by side on threads) against one after another;
3. ``optimize_schedule`` (K = 50, B = 16): L-BFGS-B with one BLAS thread against the BLAS default,
   on the machine as it is and beside a CPU-bound background process (started and killed here);
4. building an unbinned problem (d = 10^6): without against with ``np.unique(axis=0)``.

Whole process (``--processes``; minimum wall time of ``--repeats`` runs after one warm-up run, with
the CPU time of that run): ``python -m nqm``, ``python -c "import nqm; nqm.critical_batch()"``,
``import nqm``, ``python -m figures --quick`` and (``--full-figures``) ``python -m figures``. With
``--reference DIR`` (a checkout of the old code, e.g. ``git worktree add /tmp/old main``) every
command also runs against it, for ratios.

The load average (``os.getloadavg``) is reported with every timing: on a shared machine it is
the first thing that changes the numbers. Run:
``python benchmarks/bench_nqm_speed.py [--processes] [--reference DIR] [--full-figures] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np
import scipy.optimize
import threadpoolctl

import nqm
from nqm import critical, problem, schedule_opt, tuning
from nqm.cli import MAIN_OPTIMIZERS, main_columns

ROOT = Path(__file__).resolve().parent.parent


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _timed(fn, repeats: int):
    """Median wall time of ``repeats`` calls of fn() and the last result."""
    results = []
    times = timeit.repeat(lambda: results.append(fn()), number=1, repeat=repeats)
    return statistics.median(times), results[-1]


# ------------------------------------------------------------------- the replaced code paths
def _scipy_nelder_mead(fun, x0, *, xatol, fatol, maxiter, state=None):
    res = scipy.optimize.minimize(fun, x0, method="Nelder-Mead",
                                  options={"xatol": xatol, "fatol": fatol, "maxiter": maxiter})
    return res.x, res.fun, res.nit


def _no_memo(_problem) -> dict:
    return {}


def _no_once(_problem, _key, compute):
    return compute()


def _unique_merge(h, c, x0sq):
    """The unbinned construction before: one bin per distinct row of np.unique(axis=0)."""
    triples = np.stack([h, c, x0sq], axis=1)
    uniq, counts = np.unique(triples, axis=0, return_counts=True)
    order = np.argsort(-uniq[:, 0], kind="stable")
    uniq = uniq[order]
    return uniq[:, 0], uniq[:, 1], counts[order].astype(np.float64), uniq[:, 2]


@contextlib.contextmanager
def _old_paths(*, search=False, memo=False, blas=False, merge=False):
    """Swap in the replaced code paths (module attributes only; restored on exit)."""
    saved = []

    def swap(module, name, value):
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    if search:
        swap(critical, "nelder_mead", _scipy_nelder_mead)
    if memo:
        swap(critical, "once", _no_once)
        swap(tuning, "memo", _no_memo)
    if blas:
        swap(schedule_opt, "one_blas_thread", contextlib.nullcontext)
    if merge:
        swap(problem, "_merge_equal", _unique_merge)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


@contextlib.contextmanager
def _busy_core():
    """A CPU-bound background process for the duration (killed on exit)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        hog.kill()
        hog.wait()


# ------------------------------------------------------------------- in-process measurements
def _main_job_calls(p):
    """The main job's sweeps and critical batch sizes, one after another."""
    sweeps, crits = [], []
    for _label, momentum, power in MAIN_OPTIMIZERS:
        sweeps.append(nqm.batch_size_sweep(p, powers=[power], momentum=momentum))
        crits.append(nqm.critical_batch(p, momentum=momentum, power=power))
    return _columns_numbers(sweeps, crits)


def _columns_numbers(sweeps, crits):
    return [(s.steps.tobytes(), s.lr.tobytes(), c.value, c.s_min, c.e_min)
            for s, c in zip(sweeps, crits, strict=True)]


def _pair(name, new, old, repeats, log):
    """Time new() then old(), check that they return identical results, return a record."""
    t_new, r_new = _timed(new, repeats)
    t_old, r_old = _timed(old, repeats)
    rec = {"name": name, "new_seconds": t_new, "old_seconds": t_old, "ratio": t_old / t_new,
           "identical": _same(r_new, r_old), "load": _load()}
    log(f"{name:<44} {t_new:8.3f} s  old {t_old:8.3f} s  x{t_old / t_new:6.1f}  "
        f"identical={rec['identical']}  load {rec['load']}")
    return rec


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.asarray(a).tobytes() == np.asarray(b).tobytes()
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def in_process(repeats: int, log) -> list:
    paper = nqm.NQM.paper
    _main_job_calls(paper())                             # warm-up: numba caches
    nqm.optimize_schedule(paper(), batch_size=16, n_pieces=50)
    records = [
        _pair("E_min, tuned momentum (Nelder-Mead)",
              lambda: critical._momentum_flow_e_min(paper(), 0.0, 0.01),
              lambda: _with(dict(search=True), critical._momentum_flow_e_min, paper(), 0.0, 0.01),
              repeats, log),
        _pair("main job library calls (3 sweeps + 3 B_crit)",
              lambda: _main_job_calls(paper()),
              lambda: _with(dict(search=True, memo=True), _main_job_calls, paper()),
              repeats, log),
        _pair("main job: columns side by side vs in turn",
              lambda: _columns_numbers(*main_columns(paper(), 0.01)),
              lambda: _main_job_calls(paper()), repeats, log),
    ]
    sched = dict(batch_size=16, n_pieces=50)

    def new_sched():
        return _schedule_numbers(nqm.optimize_schedule(paper(), **sched))

    def old_sched():
        return _with(dict(blas=True), lambda: _schedule_numbers(
            nqm.optimize_schedule(paper(), **sched)))

    records.append(_pair("optimize_schedule K=50, B=16", new_sched, old_sched, repeats, log))
    with _busy_core():
        records.append(_pair("optimize_schedule K=50, B=16, busy core", new_sched, old_sched,
                             repeats, log))
    d = 10**6
    h = 1.0 / np.arange(1, d + 1, dtype=np.float64)
    records.append(_pair("unbinned problem d=10^6 (construction)",
                         lambda: _problem_numbers(nqm.NQM.from_spectrum(h, bins=None)),
                         lambda: _with(dict(merge=True), lambda: _problem_numbers(
                             nqm.NQM.from_spectrum(h, bins=None))), repeats, log))
    return records


def _with(paths, fn, *args):
    with _old_paths(**paths):
        return fn(*args)


def _schedule_numbers(r):
    return (r.steps, r.risk, r.schedule.lr.tobytes())


def _problem_numbers(p):
    return (p.h.tobytes(), p.c.tobytes(), p.counts.tobytes(), p.x0sq.tobytes())


# ------------------------------------------------------------------- whole processes
def _run_process(cmd: list, pythonpath: Path) -> tuple:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=pythonpath, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def processes(repeats: int, reference: Path | None, full_figures: bool, log) -> list:
    out_dir = Path(tempfile.mkdtemp(prefix="nqm-bench-figures-"))
    py = sys.executable
    commands = [
        ("import nqm", [py, "-c", "import nqm"], repeats),
        ("python -m nqm", [py, "-m", "nqm", "--quiet"], repeats),
        ("nqm.critical_batch()", [py, "-c", "import nqm; nqm.critical_batch()"], repeats),
        ("python -m figures --quick",
         [py, "-m", "figures", "--quick", "--quiet", "--out", str(out_dir)], 1),
    ]
    if full_figures:
        commands.append(("python -m figures", [py, "-m", "figures", "--quiet", "--out",
                                               str(out_dir)], 1))
    # CPU time counts waited-for children only: the figure workers are children of a forkserver
    uncounted = {"python -m figures --quick", "python -m figures"}
    trees = [("new", ROOT)] + ([("reference", reference)] if reference else [])
    records = []
    for name, cmd, n in commands:
        rec = {"name": name, "load_before": _load()}
        for label, tree in trees:
            _run_process(cmd, tree)                      # warm-up: caches, page cache
            runs = [_run_process(cmd, tree) for _ in range(n)]
            wall, cpu = min(runs)
            if label == "new" and name in uncounted:
                cpu = None
            rec[f"{label}_seconds"], rec[f"{label}_cpu_seconds"] = wall, cpu
        rec["load_after"] = _load()
        if reference:
            rec["ratio"] = rec["reference_seconds"] / rec["new_seconds"]
        cpu = rec["new_cpu_seconds"]
        log(f"{name:<28} {rec['new_seconds']:7.2f} s wall "
            + ("(CPU-s of workers not counted)" if cpu is None else f"{cpu:7.2f} CPU-s")
            + (f" | reference {rec['reference_seconds']:7.2f} s wall "
               f"{rec['reference_cpu_seconds']:7.2f} CPU-s x{rec['ratio']:.2f}" if reference
               else "") + f"  (load {rec['load_before']} -> {rec['load_after']})")
        records.append(rec)
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/bench_nqm_speed.py",
                                 description="Time nqm's interactive paths against the code paths "
                                             "they replaced (same numbers, checked).")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (3)")
    ap.add_argument("--processes", action="store_true",
                    help="also time whole processes (python -m nqm, figures --quick, ...)")
    ap.add_argument("--reference", type=Path, default=None, metavar="DIR",
                    help="a checkout of the old code: whole processes run against it too")
    ap.add_argument("--full-figures", action="store_true",
                    help="also time the full python -m figures (long)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.reference is not None and not (args.reference / "nqm" / "__init__.py").exists():
        ap.error(f"--reference {args.reference}: no nqm/__init__.py there")
    log = (lambda *a: None) if args.quiet or args.json else print
    blas = [f"{i['internal_api']} ({Path(i['filepath']).name}): {i['num_threads']} threads"
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "cores": os.cpu_count(), "blas_default": blas,
           "blas_in_nqm_optimizers": "1 thread (nqm._threads.one_blas_thread)"}
    log(f"BLAS: {'; '.join(blas)} (L-BFGS-B in nqm: 1 thread); cores {os.cpu_count()}; "
        f"load {_load()}")
    result = {"environment": env, "in_process": in_process(args.repeats, log)}
    if args.processes:
        result["processes"] = processes(args.repeats, args.reference, args.full_figures, log)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
