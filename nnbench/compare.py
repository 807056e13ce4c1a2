"""``nnbench compare``: the NQM's prediction beside a stored sweep.

:func:`compare` has two modes (``spectrum=``). The default, ``"fit"``, is the physical comparison of
``nnbench.compare_fit``: the NQM's spectrum shape and noise scale fitted to SGD alone (no steps
scale), every other optimizer predicted out of sample, everything with bootstrap intervals.
``"paper"`` is the ASSUMED-spectrum mode described below, kept for comparison: its free steps scale
absorbs a wrong condition number (``shared/spec/PREDICTION.md`` sections 1-2), so its momentum and
preconditioned predictions can be far off. For one workload of a study store (``nnbench.store``):

1. measured points per optimizer: (batch size, steps to result, best hyperparameters) of every study
   with a COMPLETE trial; the critical batch size, S_min and E_min of each optimizer fitted to them
   with ``nqm.critical_batch(batch_sizes=, steps=)`` (McCandlish et al. 2018: S = S_min + E_min / B);
2. the NQM's prediction (``nnbench.predict``): each optimizer's NQM family (SGD p=0, momentum p=0
   with tuned momentum, Adam p=0.5, K-FAC p=0.75; see ``nnbench.predict.FAMILIES``) on a reference
   NQM (default the paper's, target 0.01), mapped to measured units by the two scales (steps,
   batch size) fitted to the ``fit_on`` optimizers' points (default SGD), so that every other
   optimizer's curve is a prediction, not a fit;
3. the optimal lr: measured best (effective) lr per B beside the NQM's optimal effective lr at
   B / batch_scale times one lr scale per optimizer (the median ratio: an lr in the NQM has no
   network units, so only the SHAPE of the lr-vs-B curve is predicted);
4. an overlay figure (steps vs B and optimal lr vs B, log2 axes) in ``out_dir`` and a table: measured
   vs predicted B_crit, S_min, E_min, and the optimizer ordering at the smallest and largest B.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nqm
from nnbench.predict import NQMCurve, Prediction, ScaleFit, _family, fit_scales, nqm_curve, predict

__all__ = ["CompareRow", "CompareResult", "compare", "measured_points"]


@dataclass(frozen=True)
class CompareRow:
    """One optimizer: measured (fitted to its points) vs predicted critical batch size, S_min, E_min.

    ``measured_*`` are None where ``nqm.critical_batch`` refuses the fit (fewer than 3 distinct B,
    steps that do not fall with B, no curvature); ``fit_rms`` is the rms
    log-residual of the McCandlish fit; ``lr_scale`` multiplies the NQM's effective lr (None without
    lr data); ``nqm`` names the NQM family.
    """

    optimizer: str
    nqm: str
    n_points: int
    measured_b_crit: float | None
    measured_s_min: float | None
    measured_e_min: float | None
    fit_rms: float | None
    predicted_b_crit: float
    predicted_s_min: float
    predicted_e_min: float
    lr_scale: float | None

    @property
    def b_crit_ratio(self) -> float | None:
        """measured / predicted critical batch size."""
        return None if self.measured_b_crit is None else self.measured_b_crit / self.predicted_b_crit


@dataclass(frozen=True)
class CompareResult:
    """What :func:`compare` found (``to_dict()`` is the ``--json`` output).

    Attributes:
      workload, metric, target: the sweep's; nqm_problem, nqm_target: the reference NQM.
      scales: the fitted (steps, batch size) scales; rows: one :class:`CompareRow` per optimizer.
      ordering_small, ordering_large: (B, measured order, predicted order), fewest steps first, at the
        smallest and largest batch size measured for every optimizer (None if there is none).
      points: optimizer -> list of (batch_size, steps, effective lr) measured.
      missing: studies with no COMPLETE trial, "optimizer B=...".
      figure: path of the overlay figure (None if not drawn).
    """

    workload: str
    metric: str
    target: float
    nqm_problem: str
    nqm_target: float
    scales: ScaleFit
    rows: tuple[CompareRow, ...]
    ordering_small: tuple | None
    ordering_large: tuple | None
    points: dict
    missing: tuple[str, ...] = ()
    figure: str | None = None
    predictions: dict = field(default_factory=dict, repr=False, compare=False)

    def table(self) -> str:
        def f(v):
            return "-" if v is None else f"{v:.4g}"

        lines = [f"{self.workload}: steps to {self.metric} target {self.target:g} vs the NQM "
                 f"({self.nqm_problem}, target {self.nqm_target:g})",
                 f"scales fitted on {', '.join(self.scales.fitted_on)} ({self.scales.n_points} points, rms "
                 f"log-residual {self.scales.residual_rms:.3f}): steps x {self.scales.steps_scale:.4g}, "
                 f"batch size x {self.scales.batch_scale:.4g}"]
        head = (f"{'optimizer':<16} {'NQM family':<28} {'pts':>3} {'B_crit meas':>11} {'B_crit pred':>11} "
                f"{'S_min meas':>10} {'S_min pred':>10} {'E_min meas':>10} {'E_min pred':>10} {'fit rms':>7}")
        lines += [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.optimizer:<16} {r.nqm:<28} {r.n_points:>3d} {f(r.measured_b_crit):>11} "
                         f"{f(r.predicted_b_crit):>11} {f(r.measured_s_min):>10} {f(r.predicted_s_min):>10} "
                         f"{f(r.measured_e_min):>10} {f(r.predicted_e_min):>10} {f(r.fit_rms):>7}")
        for name, o in (("smallest", self.ordering_small), ("largest", self.ordering_large)):
            if o is not None:
                same = "same" if list(o[1]) == list(o[2]) else "DIFFERENT"
                lines.append(f"ordering at the {name} B={o[0]:g} (fewest steps first): measured "
                             f"{' < '.join(o[1])}; predicted {' < '.join(o[2])} ({same})")
        return table_footer(lines, self.missing, self.figure)

    def to_dict(self) -> dict:
        def order(o):
            return None if o is None else {"batch_size": o[0], "measured": list(o[1]), "predicted": list(o[2])}

        return {
            "workload": self.workload, "metric": self.metric, "target": self.target,
            "nqm_problem": self.nqm_problem, "nqm_target": self.nqm_target, "scales": self.scales.to_dict(),
            "rows": [{**r.__dict__, "b_crit_ratio": r.b_crit_ratio} for r in self.rows],
            "ordering_small": order(self.ordering_small), "ordering_large": order(self.ordering_large),
            "points": {k: [list(p) for p in v] for k, v in self.points.items()},
            "missing": list(self.missing), "figure": self.figure,
        }


def table_footer(lines: list[str], missing, figure) -> str:
    """The table's lines plus the studies left out and the figure's path, as one string."""
    if missing:
        lines.append(f"no COMPLETE trial (left out): {', '.join(missing)}")
    if figure:
        lines.append(f"figure: {figure}")
    return "\n".join(lines)


def _effective_lr(hparams) -> float | None:
    if not hparams or "lr" not in hparams:
        return None
    # heavy-ball forms (torch SGD momentum, K-FAC momentum) move lr / (1 - m) per unit gradient;
    # Adam's first moment is an average (weights sum to 1): its lr is already the effective one
    return hparams["lr"] / (1.0 - hparams.get("momentum", 0.0))


def measured_points(store_path: str | os.PathLike, *, workload: str | None = None,
                    target: float | None = None):
    """(workload, metric, target, {optimizer: [(B, steps, effective lr), ...]}, missing) of a store.

    ``workload`` may be omitted when the store holds one; ``target`` selects among studies of the
    same workload run with different targets.
    """
    workload, metric, target, sel = _select(store_path, workload, target)
    points, missing = {}, []
    for s in sorted(sel, key=lambda s: (s.optimizer, s.batch_size, -s.trials_done)):
        pts = points.setdefault(s.optimizer, [])
        if any(p[0] == s.batch_size for p in pts):
            continue  # the same (optimizer, B) twice (other search space or seed): the larger study
        if s.steps_to_result is None or s.steps_to_result <= 0:
            missing.append(f"{s.optimizer} B={s.batch_size}")
            continue
        pts.append((float(s.batch_size), float(s.steps_to_result), _effective_lr(s.best_hparams)))
    points = {k: v for k, v in points.items() if v}
    return workload, metric, float(target), points, tuple(missing)


def _select(store_path, workload, target):
    """(workload, metric, target, study summaries) of one sweep in the store (see measured_points)."""
    from nnbench.study import summarize_store

    summaries = summarize_store(store_path)
    names = sorted({s.workload for s in summaries})
    if not names:
        raise ValueError(f"store {str(store_path)!r} holds no studies")
    if workload is None:
        if len(names) > 1:
            raise ValueError(f"workload: the store holds several ({', '.join(names)}); name one")
        workload = names[0]
    sel = [s for s in summaries if s.workload == workload]
    if not sel:
        raise ValueError(f"workload: no studies of {workload!r} in the store; it holds {', '.join(names)}")
    targets = sorted({s.target for s in sel})
    if target is None:
        if len(targets) > 1:
            raise ValueError(f"target: {workload!r} was swept with several targets {targets}; pick one")
        target = targets[0]
    sel = [s for s in sel if s.target == target]
    if not sel:
        raise ValueError(f"target: no study of {workload!r} with target {target!r}; have {targets}")
    return workload, sel[0].metric, float(target), sel


def _ordering(points, preds, which):
    common = set.intersection(*[{p[0] for p in pts} for pts in points.values()]) if points else set()
    if len(points) < 2 or not common:
        return None
    B = min(common) if which == "small" else max(common)
    meas = {o: next(p[1] for p in pts if p[0] == B) for o, pts in points.items()}
    pred = {o: float(preds[o].steps_at([B])[0]) for o in points}
    return (B, tuple(sorted(meas, key=meas.get)), tuple(sorted(pred, key=pred.get)))


SPECTRA = ("fit", "paper")


def compare(store_path: str | os.PathLike, *, workload: str | None = None, target: float | None = None,
            out_dir: str | os.PathLike | None = "figures/out", spectrum: str = "fit",
            fit_on: Sequence[str] | str = "sgd", problem: nqm.NQM | None = None, nqm_target: float = 0.01,
            powers=None, **fit_options):
    """Overlay the NQM's prediction on a stored sweep (see the module docstring).

    Args:
      store_path: the sweep's SQLite store.
      workload: the workload to compare (default: the store's only one).
      target: the sweep target to use when the store holds several.
      out_dir: folder of the figure ``compare_<workload>.png`` (None: no figure).
      spectrum: "fit" (physical fit on SGD, ``nnbench.compare_fit.compare_fit``, which receives
        ``fit_options``: n_boot, level, seed, d_grid, bins) or "paper" (assumed spectrum, two scales).
      fit_on: "paper" mode only: optimizer(s) whose points fix the two scales, or "all" (a joint fit);
        "sgd" by default, falling back to all optimizers when the store has fewer than 2 SGD points.
      problem, nqm_target: the reference NQM ("paper" mode; default ``nqm.NQM.paper()``) and its
        target risk (both modes).
      powers: optional {optimizer: preconditioner power} overriding ``nnbench.predict.FAMILIES``.

    Returns:
      a ``nnbench.compare_fit.FitComparison`` ("fit") or a :class:`CompareResult` ("paper").
    """
    if spectrum not in SPECTRA:
        raise ValueError(f"spectrum must be one of {', '.join(SPECTRA)}, got {spectrum!r}")
    if spectrum == "fit":
        if problem is not None:
            raise ValueError("problem: the physical fit chooses its own NQM (h_i = 1/i, d fitted); "
                             "a fixed problem is the assumed-spectrum mode, spectrum='paper'")
        if (fit_on if isinstance(fit_on, str) else list(fit_on)) not in ("sgd", ["sgd"]):
            raise ValueError("fit_on: the physical fit (spectrum='fit') is fitted on SGD only; other "
                             "fit sets belong to the assumed-spectrum mode, spectrum='paper'")
        from nnbench.compare_fit import compare_fit

        return compare_fit(store_path, workload=workload, target=target, out_dir=out_dir,
                           nqm_target=nqm_target, powers=powers, **fit_options)
    if fit_options:
        raise ValueError(f"{', '.join(sorted(fit_options))}: options of the physical fit (spectrum='fit')")
    workload, metric, target, points, missing = measured_points(store_path, workload=workload, target=target)
    problem = nqm.NQM.paper() if problem is None else problem
    families = {o: _family(o, powers) for o in points}
    curves: dict[str, NQMCurve] = {}
    cache = {}
    for o, fam in families.items():
        key = (fam.power, fam.momentum, fam.nesterov)
        if key not in cache:
            cache[key] = nqm_curve(fam, problem=problem, target=nqm_target)
        curves[o] = cache[key]
    if fit_on == "all":
        fit_set = list(points)
    else:
        fit_set = [fit_on] if isinstance(fit_on, str) else list(fit_on)
        unknown = [o for o in fit_set if o not in points]
        if unknown and fit_set == ["sgd"]:
            fit_set = list(points)
        elif unknown:
            raise ValueError(f"fit_on: no measured points for {unknown}; the store has {sorted(points)}")
        if sum(len(points[o]) for o in fit_set) < 2:
            fit_set = list(points)
    scales = fit_scales({o: ([p[0] for p in points[o]], [p[1] for p in points[o]]) for o in fit_set},
                        {o: curves[o] for o in fit_set})
    all_b = [p[0] for pts in points.values() for p in pts]
    grid = np.exp(np.linspace(math.log(min(all_b) / 4), math.log(max(all_b) * 4), 200))
    preds: dict[str, Prediction] = {o: predict(o, curves[o], scales, grid) for o in points}
    rows = []
    for o, pts in points.items():
        B = np.array([p[0] for p in pts])
        S = np.array([p[1] for p in pts])
        try:
            meas = nqm.critical_batch(batch_sizes=B, steps=S)
        except ValueError:
            meas = None
        lrs = [(p[0], p[2]) for p in pts if p[2] is not None]
        lr_scale = None
        if lrs:
            nqm_lr = np.exp(curves[o].log_effective_lr(np.log([b for b, _ in lrs]) - math.log(scales.batch_scale)))
            lr_scale = float(np.exp(np.median(np.log([lr for _, lr in lrs]) - np.log(nqm_lr))))
        p = preds[o]
        rows.append(CompareRow(
            optimizer=o, nqm=families[o].label.replace("NQM ", ""), n_points=int(B.size),
            measured_b_crit=None if meas is None else meas.value,
            measured_s_min=None if meas is None else meas.s_min,
            measured_e_min=None if meas is None else meas.e_min,
            fit_rms=None if meas is None else meas.residual_rms,
            predicted_b_crit=p.b_crit, predicted_s_min=p.s_min, predicted_e_min=p.e_min, lr_scale=lr_scale))
    result = CompareResult(
        workload=workload, metric=metric, target=target, nqm_problem=problem.name, nqm_target=float(nqm_target),
        scales=scales, rows=tuple(rows), ordering_small=_ordering(points, preds, "small"),
        ordering_large=_ordering(points, preds, "large"), points=points, missing=missing, predictions=preds)
    if out_dir is not None:
        path = Path(out_dir) / f"compare_{workload}.png"
        _figure(result, path)
        result = CompareResult(**{**result.__dict__, "figure": str(path)})
    return result


def _figure(result: CompareResult, path: Path) -> None:
    """Two panels, log2 axes: steps vs B (measured points, NQM curves) and optimal lr vs B."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_s, ax_lr = fig.subplots(1, 2)
    colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]
    rows = {r.optimizer: r for r in result.rows}
    for i, (o, pts) in enumerate(result.points.items()):
        col = colors[i % len(colors)]
        pred = result.predictions[o]
        fitted = " (fitted)" if o in result.scales.fitted_on else " (predicted)"
        ax_s.plot(pred.batch_sizes, pred.steps, "-", color=col, lw=1.5, label=f"NQM {rows[o].nqm}{fitted}")
        ax_s.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=col, ms=6, label=f"{o} measured")
        lrs = [(p[0], p[2]) for p in pts if p[2] is not None]
        if lrs and rows[o].lr_scale is not None:
            ax_lr.plot(pred.batch_sizes, rows[o].lr_scale * pred.effective_lr, "-", color=col, lw=1.5,
                       label=f"NQM x {rows[o].lr_scale:.3g}")
            ax_lr.plot([b for b, _ in lrs], [lr for _, lr in lrs], "o", color=col, ms=6, label=f"{o} best")
    for ax in (ax_s, ax_lr):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("batch size (examples)")
        ax.grid(True, which="major", alpha=0.3)
    lo = min(p[1] for pts in result.points.values() for p in pts)
    ax_s.set_ylim(bottom=max(1.0, lo / 16))  # a prediction below one step means "saturated", no more
    ax_s.set_ylabel(f"steps to {result.metric} target {result.target:g}")
    ax_s.set_title(f"{result.workload}: steps vs batch size")
    ax_lr.set_ylabel("best effective lr  (lr / (1 - momentum); Adam: lr)")
    ax_lr.set_title("optimal learning rate vs batch size")
    ax_s.legend(fontsize=7)
    ax_lr.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
