"""Choose a workload's target from SGD trials alone: a training-progress level, not a generalisation limit.

The rule (no other optimizer is run, so the target cannot be tuned to any optimizer's prediction):

1. Per batch size B, the first ``--trials`` points of SGD's quasi-random search (study seed 0, the
   points a sweep runs) train for the whole step budget with an unreachable target, the metric
   recorded on the protocol's geometric evaluation grid (every step up to 32, then 3% apart).
2. Per B, the *best configuration* is the trial with the best metric at half the budget; it is
   re-run with ``--seeds`` fresh seeds (never those of step 1).
3. A candidate target T passes when, at every B, (a) most seeds of the best configuration reach T
   within half the budget (so the protocol's searches have room on both sides), and (b) the median
   over seeds of the steps to T does not rise with B by more than the grid's 3% granularity (the
   NQM's premise: larger batches never need more steps to a training level).
4. The target is the strictest candidate that passes.

    PYTHONPATH=$PWD python benchmarks/calibrate_sgd_target.py --workload digits_mlp_train --quick \\
        --batch-sizes 4 8 16 32 64 256 1024 --out docs/results/digits_mlp_train_calibration.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

from nnbench.search import QuasiRandomSearch
from nnbench.trial import run, trial_seed
from nnbench.workloads import build_workload_data, get_workload

CANDIDATES = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.003, 0.001)


def first_step(curve, target: float, direction: str, within: int) -> int | None:
    """The first evaluated step of ``curve`` ((step, value) pairs) at or past ``target``, up to ``within``."""
    for step, value in curve:
        if step > within:
            return None
        if (value <= target) if direction == "min" else (value >= target):
            return step
    return None


def passes(rows, target: float, direction: str, within: int, rel_step: float) -> bool:
    """Step 3 of the rule for ``target`` on the per-B ``rows`` (ordered by batch size)."""
    medians = []
    for row in rows:
        steps = [first_step(c, target, direction, within) for c in row["seed_curves"]]
        reached = [s for s in steps if s is not None]
        if 2 * len(reached) <= len(steps):
            return False
        medians.append(statistics.median(math.inf if s is None else s for s in steps))
    return all(b <= a * (1 + rel_step) for a, b in zip(medians, medians[1:], strict=False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="digits_mlp_train")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 16, 64, 256, 1024])
    ap.add_argument("--trials", type=int, default=6, help="search points per B (default 6)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the best configuration per B (default 3)")
    ap.add_argument("--quick", action="store_true", help="the workload's --quick budget")
    ap.add_argument("--out", default=None, help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    workload = get_workload(args.workload)
    if args.quick:
        workload = workload.quick()
    direction = workload.direction
    if direction != "min":
        ap.error(f"--workload {args.workload}: its metric {workload.metric} improves upwards; the candidates "
                 f"{CANDIDATES[0]:g} .. {CANDIDATES[-1]:g} are levels of a loss")
    never = -math.inf if direction == "min" else math.inf
    workload = workload.replace(target=-1e300 if never < 0 else 1e300, eval_grid="geometric")
    data = build_workload_data(workload)
    name = f"{workload.eval_split}_{workload.metric}"
    half = workload.max_steps // 2
    better = min if direction == "min" else max
    search = QuasiRandomSearch(workload.search_space("sgd"), 0)
    t0 = time.perf_counter()

    def curve(hparams, b, seed):
        r = run(workload, optimizer="sgd", hparams=hparams, batch_size=b, seed=seed, data=data, device="cpu")
        return [(m.step, m.value) for m in r.measurements if m.name == name and math.isfinite(m.value)]

    def at_half(c):
        return better([v for s, v in c if s <= half], default=-never)

    rows = []
    for b in args.batch_sizes:
        points = [search.point(i) for i in range(args.trials)]
        curves = [curve(p, b, trial_seed(0, i)) for i, p in enumerate(points)]
        best = better(range(args.trials), key=lambda i: at_half(curves[i]))
        seed_curves = [curve(points[best], b, trial_seed(1, i)) for i in range(args.seeds)]
        rows.append({"batch_size": b, "best_hparams": points[best], "search_at_half": [at_half(c) for c in curves],
                     "seed_curves": seed_curves})
        med = {t: statistics.median(math.inf if (s := first_step(c, t, direction, half)) is None else s
                                    for c in seed_curves) for t in CANDIDATES}
        print(f"B={b:5d} best lr {points[best]['lr']:.3g}  median steps over {args.seeds} seeds to "
              + " ".join(f"{t:g}:{'-' if math.isinf(s) else int(s)}" for t, s in med.items()), flush=True)
    ok = [t for t in CANDIDATES if passes(rows, t, direction, half, workload.eval_rel_step)]
    target = better(ok) if ok else None
    print(f"candidates passing the rule: {', '.join(f'{t:g}' for t in ok) or 'none'}; target: {target}")
    print(f"{time.perf_counter() - t0:.0f} s")
    if args.out:
        summary = [{"batch_size": r["batch_size"], "best_hparams": r["best_hparams"],
                    "search_at_half_budget": r["search_at_half"],
                    "seed_steps_to": {f"{t:g}": [first_step(c, t, direction, half) for c in r["seed_curves"]]
                                      for t in CANDIDATES}} for r in rows]
        with open(args.out, "w") as f:
            json.dump({"workload": args.workload, "metric": name, "direction": direction,
                       "max_steps": workload.max_steps, "within_steps": half, "trials": args.trials,
                       "seeds": args.seeds, "optimizer": "sgd", "candidates": list(CANDIDATES), "rows": summary,
                       "passing": ok, "target": target}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
