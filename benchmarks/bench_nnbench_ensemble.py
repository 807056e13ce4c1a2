"""Trials per hour of a study run one trial at a time vs as batched ensembles (``nnbench.ensemble``).

For each workload the first ``--trials`` points of its default quasi-random search (the optimizer's
search space, study seed 0) with their study seeds are trained at ``--batch-size``, each with the
workload's target and evaluation grid but a budget of ``--max-steps`` steps (full trials take hours
one at a time on a CPU: the budget keeps the run short, and the mix of trials that reach the target,
diverge or spend the budget is that of a real study's first steps). Modes:

* ``alone``: ``nnbench.trial.run`` for each trial, one after the other (what ``--ensemble 1`` does);
* ``ensemble N``: ``nnbench.ensemble.run_ensemble`` on consecutive chunks of N trials.

Both get the same data source and device; one trial at a time runs on ``--threads`` torch threads
(default 1, the fastest for a small model), an ensemble on ``--ensemble-threads`` (default: every
core; ``run_ensemble``'s ``threads``: its members split into that many shards, one thread each), as
``nnbench sweep`` runs them (``--ensemble-threads 1`` isolates what batching alone gains). Reported per mode: wall-clock seconds and trials
per hour, CPU seconds of this process (``time.process_time``; on a shared machine the wall clock also
counts the time other processes held the cores) and the speed-up over ``alone`` in both; plus the check
that every trial of an ensemble ended as it did alone (status, steps run, steps to result). The load
average (``os.getloadavg``) before and after says how busy the machine was.

    python benchmarks/bench_nnbench_ensemble.py                                  # teacher_fc + CNN, CPU
    python benchmarks/bench_nnbench_ensemble.py --workloads teacher_fc --sizes 8 16 32 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from nnbench.device import resolve_device
from nnbench.ensemble import run_ensemble
from nnbench.search import QuasiRandomSearch
from nnbench.trial import run, trial_seed
from nnbench.workloads import WORKLOADS, build_workload_data, get_workload


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _outcome(r):
    return (r.index, r.status.value, r.steps_run, r.steps_to_result)


def bench_workload(name: str, args, device) -> dict:
    workload = get_workload(name).replace(max_steps=args.max_steps)
    data = build_workload_data(workload, device=device)
    search = QuasiRandomSearch(workload.search_space(args.optimizer), 0)
    members = [(i, search.point(i), trial_seed(0, i)) for i in range(args.trials)]
    common = {"optimizer": args.optimizer, "batch_size": args.batch_size, "device": device, "data": data}
    # warm-up (first-call costs: torch's lazy imports, allocator), not timed
    run_ensemble(workload.replace(max_steps=2), members=members[:2], **common)

    def alone():
        return [run(workload, hparams=h, seed=s, index=i, **common) for i, h, s in members]

    def together(size):  # on --ensemble-threads threads, as nnbench sweep runs it (LocalEngine.ensemble_threads)
        return [r for k in range(0, len(members), size)
                for r in run_ensemble(workload, members=members[k : k + size], threads=args.ensemble_threads, **common)]

    reference, wall, cpu = _timed(alone)
    rows = [{"mode": "alone", "size": 1, "wall_s": wall, "cpu_s": cpu, "mismatches": 0}]
    for size in args.sizes:
        results, wall, cpu = _timed(lambda s=size: together(s))
        mismatches = sum(_outcome(a) != _outcome(b) for a, b in zip(reference, results, strict=True))
        rows.append({"mode": f"ensemble {size}", "size": size, "wall_s": wall, "cpu_s": cpu, "mismatches": mismatches})
    for row in rows:
        row["trials_per_hour"] = args.trials * 3600 / row["wall_s"]
        row["trials_per_cpu_hour"] = args.trials * 3600 / row["cpu_s"]
        row["speedup_wall"] = rows[0]["wall_s"] / row["wall_s"]
        row["speedup_cpu"] = rows[0]["cpu_s"] / row["cpu_s"]
    statuses = {}
    for r in reference:
        statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
    return {"workload": name, "model": workload.model, "steps_run": sum(r.steps_run for r in reference),
            "statuses_alone": statuses, "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    embedded = [n for n, w in WORKLOADS.items() if not w.needs_data_dir]
    parser.add_argument("--workloads", nargs="+", default=["teacher_fc", "synthetic_images_cnn"], choices=embedded,
                        metavar="NAME", help="embedded workloads (default: teacher_fc synthetic_images_cnn)")
    parser.add_argument("--optimizer", default="sgd", help="optimizer of the study (default sgd)")
    parser.add_argument("--trials", type=int, default=32, help="trials of the study (default 32)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 32], help="ensemble sizes (default 16 32)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--max-steps", type=int, default=300, help="step budget per trial (default 300)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: nnbench's choice for small models on a shared CPU)")
    parser.add_argument("--ensemble-threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads while an ensemble trains (default: every core, as nnbench sweep)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    for name in ("trials", "batch_size", "max_steps", "threads", "ensemble_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if any(s < 2 for s in args.sizes):
        parser.error("--sizes must be integers >= 2 (1 is the 'alone' reference)")
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        parser.error(str(e))
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results = [bench_workload(name, args, device) for name in args.workloads]
    figures = {"device": str(device), "threads": torch.get_num_threads(),
               "ensemble_threads": args.ensemble_threads, "torch": torch.__version__,
               "cpu_count": os.cpu_count(), "optimizer": args.optimizer, "trials": args.trials,
               "batch_size": args.batch_size, "max_steps": args.max_steps,
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "workloads": results}
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{args.trials}-trial {args.optimizer} studies at batch {args.batch_size}, budget {args.max_steps} steps per "
          f"trial; device {device}, {figures['threads']} torch thread(s) alone, {args.ensemble_threads} in "
          f"ensembles, on {os.cpu_count()} cores, torch "
          f"{torch.__version__}; load average before {load_before[0]:.1f}, after {figures['loadavg_after'][0]:.1f}")
    for res in results:
        print(f"\n{res['workload']} ({res['model']}): {res['steps_run']} steps alone, {res['statuses_alone']}")
        print(f"  {'mode':12s} {'wall s':>8s} {'trials/h':>9s} {'speed-up':>8s} {'CPU s':>8s} {'trials/CPU h':>12s} "
              f"{'speed-up':>8s}  outcome differs")
        for r in res["rows"]:
            print(f"  {r['mode']:12s} {r['wall_s']:8.1f} {r['trials_per_hour']:9.0f} {r['speedup_wall']:7.2f}x "
                  f"{r['cpu_s']:8.1f} {r['trials_per_cpu_hour']:12.0f} {r['speedup_cpu']:7.2f}x  {r['mismatches']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
