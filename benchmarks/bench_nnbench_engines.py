"""Sweep throughput (trials per minute) of the local engine vs the Ray engine, and Ray's start-up cost.

The same sweep (``teacher_fc``, SGD, one batch size, ``--trials`` quasi-random trials, each run for its
whole ``--max-steps`` budget because the target is out of reach, so every trial does the same work)
runs on

* local: ``nnbench.study.run_sweep`` in this process, torch on 1 thread;
* ray: ``run_sweep(..., engine=RayEngine())`` on a local Ray instance with ``--workers`` CPUs, one
  trial per CPU, torch on 1 thread in each worker.

Single-threaded trials are what makes the comparison fair: the local engine runs one trial at a time
on one core, Ray runs ``--workers`` at a time on as many cores, so the ideal ratio is ``--workers``.
Each sweep writes a fresh store. Ray's start-up is reported in two parts: ``ray.init`` (the instance)
and the first ("cold") sweep's extra time over a warm one (worker processes starting, importing torch
and nnbench, building the data set once each). Local and warm Ray sweeps alternate ``--repeats``
times; medians are reported with their min..max. Also reported: the seconds one trial takes inside
each engine and how many trials ran at once (trials x seconds per trial / sweep seconds), which tell
Ray's overhead (none: same seconds per trial, ``--workers`` at once) from a lack of CPU (more seconds
per trial). The machine's load average is printed beside the numbers: on a shared machine other
processes take CPU from both engines, and Linux's autogroup scheduler shares the CPU fairly between
sessions, not processes, so the Ray workers (in this process's session) get no more CPU than the
local engine once the machine is saturated.

    python benchmarks/bench_nnbench_engines.py                       # 2 workers, 8 trials x 1500 steps
    python benchmarks/bench_nnbench_engines.py --trials 16 --repeats 5 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time

import torch

from nnbench.engines.ray import RayEngine
from nnbench.store import Store
from nnbench.study import run_sweep
from nnbench.workloads import get_workload


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _sweep(workload, trials: int, batch_size: int, engine) -> tuple[float, float]:
    """Seconds to run ``trials`` trials of one fresh study on ``engine`` (None: local), and the mean
    seconds one trial took inside it (its own ``wall_time``: model building to the last evaluation)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.sqlite")
        start = time.perf_counter()
        (summary,) = run_sweep(workload, ["sgd"], [batch_size], trials, path, device="cpu", progress=False,
                               engine=engine)
        seconds = time.perf_counter() - start
        with Store(path) as store:
            per_trial = statistics.fmean(t.wall_time for t in store.trials(summary.study_id))
    if summary.trials_done != trials or summary.failures:
        raise RuntimeError(f"sweep incomplete: {summary}")
    return seconds, per_trial


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    parser.add_argument("--trials", type=int, default=8, help="trials per sweep (default 8)")
    parser.add_argument("--max-steps", type=int, default=1500, help="steps per trial (default 1500)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="local / warm-Ray sweep pairs (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    for name in ("workers", "trials", "max_steps", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")

    import ray

    torch.set_num_threads(1)
    workload = get_workload("teacher_fc").quick().replace(max_steps=args.max_steps, eval_every=100, target=0.999)
    load_before = _load()

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    init_s = time.perf_counter() - start
    try:
        engine = RayEngine(threads=1)  # uses the instance above as it is
        cold_s, _ = _sweep(workload, args.trials, args.batch_size, engine)
        local, remote = [], []
        for _ in range(args.repeats):
            local.append(_sweep(workload, args.trials, args.batch_size, None))
            remote.append(_sweep(workload, args.trials, args.batch_size, engine))
    finally:
        ray.shutdown()
    load_after = _load()

    def per_min(seconds):
        return 60.0 * args.trials / seconds

    local_s, local_trial_s = zip(*local, strict=True)
    ray_s, ray_trial_s = zip(*remote, strict=True)
    # trials running at once = (trials x seconds per trial) / sweep seconds
    concurrency = {name: statistics.median(args.trials * t / s for s, t in runs)
                   for name, runs in (("local", local), ("ray", remote))}

    local_rate = [per_min(s) for s in local_s]
    ray_rate = [per_min(s) for s in ray_s]
    ratios = [r / loc for r, loc in zip(ray_rate, local_rate, strict=True)]
    result = {
        "workload": f"teacher_fc (quick), sgd, B={args.batch_size}, {args.max_steps} steps per trial",
        "trials_per_sweep": args.trials,
        "workers": args.workers,
        "torch_threads_per_trial": 1,
        "repeats": args.repeats,
        "local_trials_per_min": {"median": statistics.median(local_rate), "min": min(local_rate),
                                 "max": max(local_rate)},
        "ray_trials_per_min": {"median": statistics.median(ray_rate), "min": min(ray_rate), "max": max(ray_rate)},
        "ratio_ray_over_local": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        "seconds_per_trial": {"local": statistics.median(local_trial_s), "ray": statistics.median(ray_trial_s)},
        "trials_at_once": concurrency,
        "ray_init_s": init_s,
        "ray_cold_sweep_s": cold_s,
        "ray_first_sweep_extra_s": cold_s - statistics.median(ray_s),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['workload']}; {args.trials} trials per sweep, torch on 1 thread per trial; "
          f"{os.cpu_count()} CPUs; load average (1/5/15 min) {load_before} before, {load_after} after")
    for name, rates in (("local", local_rate), (f"ray ({args.workers} workers)", ray_rate)):
        print(f"  {name:16s} {statistics.median(rates):7.1f} trials/min  (min..max {min(rates):.1f}..{max(rates):.1f},"
              f" {args.repeats} sweeps)")
    print(f"  ratio ray/local  {statistics.median(ratios):7.2f}x        (min..max {min(ratios):.2f}..{max(ratios):.2f},"
          f" paired sweeps; ideal {args.workers}x)")
    print(f"  inside a trial: {statistics.median(local_trial_s):.2f} s local, {statistics.median(ray_trial_s):.2f} s "
          f"on Ray; trials running at once: {concurrency['local']:.2f} local, {concurrency['ray']:.2f} on Ray")
    print(f"  Ray start-up: ray.init {init_s:.1f} s; first sweep {cold_s:.1f} s vs {statistics.median(ray_s):.1f} s "
          f"warm, i.e. {result['ray_first_sweep_extra_s']:.1f} s for workers to start (import torch, build data)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
