"""The NQM's out-of-sample predictions on three workloads, end to end: measure, fit on SGD, predict.

For each workload (``linear_ls``, an exact noisy quadratic; ``teacher_fc``, a 2x128 ReLU net on an
online teacher task; ``digits_mlp_train``, the same net on scikit-learn's real digits with a
training-loss target): ``nnbench.protocol.run_protocol`` with the README's settings (a 12-trial
quasi-random search, an 8-trial focused search and 6 seeds of the best configuration per optimizer
and batch size; for ``linear_ls`` ``bench_compare_linear_ls.py``'s 24 + 12 trials on its spaces)
into its own store, then ``nnbench.compare_fit.compare_fit`` (the NQM fitted to the
SGD studies alone, momentum and Adam predicted out of sample). Prints one table: per workload and
optimizer the predicted and measured B_crit with their 95% bootstrap intervals, the ratio, and
whether the measured value lies inside the prediction's interval.

    PYTHONPATH=$PWD python benchmarks/compare_three_workloads.py            # about half an hour on 2 cores
    PYTHONPATH=$PWD python benchmarks/compare_three_workloads.py --write    # + docs/results, docs/figures
    PYTHONPATH=$PWD python benchmarks/compare_three_workloads.py --smoke    # seconds: checks the pipeline

Stores are resumed (a re-run repeats no trial). ``--smoke`` runs tiny budgets with easy targets, 2
search trials and 2 seeds at 3 batch sizes: its numbers mean nothing, it exercises every stage.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nqm._pipe import quiet_on_broken_pipe

HERE = Path(__file__).resolve().parent


def _linear_ls_spaces() -> dict:
    """``bench_compare_linear_ls.py``'s search spaces (one definition of the README's linear_ls run)."""
    spec = importlib.util.spec_from_file_location("bench_compare_linear_ls", HERE / "bench_compare_linear_ls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SPACES


@dataclass(frozen=True)
class Plan:
    """One workload's measurement: the protocol's grid and budgets, and the smoke variant's changes."""

    workload: str
    batch_sizes: tuple[int, ...]
    quick: bool = True
    overrides: dict = field(default_factory=dict)  # Workload fields (max_steps, ...)
    spaces: str | None = None  # "linear_ls": bench_compare_linear_ls.py's search spaces
    smoke_batch_sizes: tuple[int, ...] = ()
    smoke_overrides: dict = field(default_factory=dict)
    rounds: dict = field(default_factory=lambda: {"first_round": 12, "focus_round": 8, "seeds": 6})


OPTIMIZERS = ("sgd", "momentum", "adam")
PLANS = (
    Plan("linear_ls", (8, 32, 128, 512, 2048, 8192), quick=False, overrides={"max_steps": 3000}, spaces="linear_ls",
         smoke_batch_sizes=(1, 4, 32), smoke_overrides={"max_steps": 150, "target": 0.3},
         rounds={"first_round": 24, "focus_round": 12, "seeds": 6}),
    Plan("teacher_fc", (16, 64, 256, 1024, 4096),
         smoke_batch_sizes=(8, 32, 128), smoke_overrides={"max_steps": 150, "target": 0.5}),
    Plan("digits_mlp_train", (4, 16, 64, 256, 1024),
         smoke_batch_sizes=(4, 16, 64), smoke_overrides={"max_steps": 150, "target": 0.5}),
)
SMOKE_ROUNDS = {"first_round": 3, "focus_round": 0, "seeds": 2}


def measure(plan: Plan, store: Path, *, smoke: bool, progress: bool, threads: int):
    """Run (or resume) the protocol of ``plan`` into ``store``; returns its summaries."""
    import torch

    from nnbench.engines.local import LocalEngine
    from nnbench.protocol import run_protocol
    from nnbench.search import SearchSpace
    from nnbench.workloads import get_workload

    workload = get_workload(plan.workload)
    workload = workload.quick() if plan.quick else workload
    overrides = {**plan.overrides, **(plan.smoke_overrides if smoke else {})}
    workload = workload.replace(**overrides) if overrides else workload
    spaces = None
    if plan.spaces == "linear_ls":
        spaces = {o: SearchSpace.from_dict(s) for o, s in _linear_ls_spaces().items() if o in OPTIMIZERS}
    torch.set_num_threads(min(threads, workload.cpu_threads or threads))
    return run_protocol(
        workload, OPTIMIZERS, plan.smoke_batch_sizes if smoke else plan.batch_sizes, store,
        **(SMOKE_ROUNDS if smoke else plan.rounds), device="cpu", progress=progress, ensemble="auto",
        engine=LocalEngine(progress=progress, ensemble_threads=threads), search_spaces=spaces)


def row(result, optimizer: str) -> dict:
    """One line of the table: predicted and measured B_crit of ``optimizer`` (None where refused)."""
    measured = result.measured[optimizer]
    predicted = result.predicted(optimizer, "b_crit")
    m = measured.b_crit
    inside = None if m is None or predicted is None else bool(predicted.low <= m.value <= predicted.high)
    return {"workload": result.workload, "optimizer": optimizer,
            "role": "fitted" if optimizer == "sgd" else "predicted",
            "predicted_b_crit": None if predicted is None else predicted.to_dict(),
            "measured_b_crit": None if m is None else m.to_dict(),
            "measured_refused": measured.refused,
            "ratio_predicted_over_measured": result.ratio(optimizer, "b_crit"),
            "measured_inside_predicted_interval": inside}


def _iv(x: dict | None) -> str:
    return "refused" if x is None else f"{x['value']:.3g} [{x['low']:.3g}, {x['high']:.3g}]"


def format_table(rows: list[dict]) -> str:
    """The plain-text table of :func:`row` dicts, with the measured side's refusals as notes."""
    header = ["workload", "optimizer", "predicted B_crit [95%]", "measured B_crit [95%]", "pred/meas", "inside?"]
    lines, notes = [header], []
    for r in rows:
        if "fit_refused" in r:
            lines.append([r["workload"], "sgd (fit)", "refused", "-", "-", "-"])
            notes.append(f"{r['workload']}: no prediction, {r['fit_refused']}")
            continue
        ratio = r["ratio_predicted_over_measured"]
        inside = r["measured_inside_predicted_interval"]
        lines.append([r["workload"], r["optimizer"] + (" (fit)" if r["role"] == "fitted" else ""),
                      _iv(r["predicted_b_crit"]), _iv(r["measured_b_crit"]),
                      "-" if ratio is None else f"{ratio:.2f}", "-" if inside is None else ("yes" if inside else "no")])
    widths = [max(len(x[i]) for x in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip() for x in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    notes += [f"{r['workload']} {r['optimizer']} measured: {r['measured_refused']}" for r in rows
              if r.get("measured_refused")]
    return "\n".join(text + notes)


@quiet_on_broken_pipe
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=[p.workload for p in PLANS], choices=[p.workload for p in PLANS],
                    metavar="NAME", help="which workloads (default: all three)")
    ap.add_argument("--store-dir", default="runs/three_workloads", help="folder of the stores, one per workload")
    ap.add_argument("--smoke", action="store_true", help="tiny budgets and rounds: checks the pipeline in seconds")
    ap.add_argument("--bootstrap", type=int, default=None, help="bootstrap refits (default 200; --smoke 10)")
    ap.add_argument("--write", action="store_true",
                    help="write compare_<workload>.json and .png (into --results and --figures)")
    ap.add_argument("--results", default="docs/results", help="folder of the JSON results (with --write)")
    ap.add_argument("--figures", default="docs/figures", help="folder of the figures (with --write)")
    ap.add_argument("--json", action="store_true", help="print the table's rows as JSON")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads of the ensembles (default: every core; --smoke 1)")
    ap.add_argument("--quiet", action="store_true", help="no progress")
    args = ap.parse_args(argv)
    n_boot = args.bootstrap if args.bootstrap is not None else (10 if args.smoke else 200)
    if n_boot < 1:
        ap.error(f"--bootstrap must be a positive integer, got {n_boot}")
    threads = args.threads if args.threads is not None else (1 if args.smoke else os.cpu_count() or 1)
    if threads < 1:
        ap.error(f"--threads must be a positive integer, got {threads}")
    progress = not args.quiet and sys.stderr.isatty()

    from nnbench.compare_fit import compare_fit, write_results
    from nnbench.predict import d_grid

    rows, times = [], {}
    for plan in (p for p in PLANS if p.workload in args.workloads):
        store = Path(args.store_dir) / f"{plan.workload}{'_smoke' if args.smoke else ''}.sqlite"
        store.parent.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"[{plan.workload}] protocol into {store}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        measure(plan, store, smoke=args.smoke, progress=progress, threads=threads)
        t1 = time.perf_counter()
        if progress:
            print(f"[{plan.workload}] protocol {t1 - t0:.0f} s; SGD-only fit and predictions", file=sys.stderr,
                  flush=True)
        try:
            result = compare_fit(store, workload=plan.workload, out_dir=args.figures if args.write else None,
                                 n_boot=n_boot, **({"d_grid": d_grid(4, 256)} if args.smoke else {}))
        except ValueError as e:  # the SGD points cannot support the fit: say so, never a number
            rows.append({"workload": plan.workload, "optimizer": "sgd", "role": "fitted", "fit_refused": str(e)})
        else:
            if args.write:
                write_results(result, args.results)
            rows += [row(result, o) for o in OPTIMIZERS if o in result.measured]
        times[plan.workload] = {"protocol_s": t1 - t0, "compare_s": time.perf_counter() - t1}
    if args.json:
        print(json.dumps({"rows": rows, "seconds": times}, indent=2))
    else:
        print(format_table(rows))
        total = sum(math.fsum(t.values()) for t in times.values())
        print("time: " + ", ".join(f"{w} {t['protocol_s']:.0f} s + {t['compare_s']:.0f} s" for w, t in times.items())
              + f"; total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
