"""The physical comparison of a stored sweep with the NQM: fit on SGD only, predict the rest.

1. Measured (per optimizer): one point per batch size (:func:`study_trials`). On a store written by
   ``nnbench protocol`` it is the median over seeds of the best configuration (the seeds round), so
   tuning luck does not enter it; otherwise the fewest steps over COMPLETE trials (of the search
   and focused rounds together, never as two points). B_crit, S_min and E_min come from the
   McCandlish fit S = S_min + E_min / B (``nqm.critical_batch(batch_sizes=, steps=)``), with
   bootstrap intervals over studies and trials (seeds), or the reason the points cannot support it
   (``nnbench.bootstrap``). The SGD fit (2) uses the same points and resamples the same way.
2. Fitted: the NQM h_i = 1/i (i = 1..d), C = H, theta_0 ~ N(0, I) at the NQM target (default 0.01),
   with no steps scale (a tuned NQM's steps are dimensionless, ``shared/spec/PREDICTION.md`` section
   1): d and a noise (batch) scale are fitted to SGD's points. Only SGD's trials are handed to the fit
   (``nnbench.predict.predict_from_sgd``), so the other optimizers' data cannot enter it.
3. Predicted: every optimizer from its NQM family (``nnbench.predict.FAMILIES``; ``powers=`` replaces
   the preconditioner power, e.g. by one measured with ``nnbench.instruments.effective_power``) at
   the fitted d and batch scale, with bootstrap intervals from refitting resampled SGD trials.

The table prints, per optimizer, measured vs predicted B_crit, S_min, E_min with intervals and the
ratio predicted / measured; :meth:`FitComparison.to_dict` is the ``--json`` output and
:func:`write_results` writes it to ``docs/results/compare_<workload>.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbench.bootstrap import (
    MeasuredCritical,
    Seeds,
    measured_critical_batch,
    point_rule,
    study_points,
)
from nnbench.compare import _select, table_footer
from nnbench.predict import (
    D_GRID,
    FAMILIES,
    SHAPE,
    CurveBank,
    PhysicalPrediction,
    _family,
    predict_from_sgd,
)

__all__ = ["FitComparison", "study_trials", "compare_fit", "write_results"]

QUANTITIES = ("b_crit", "s_min", "e_min")
_LABELS = {"b_crit": "B_crit", "s_min": "S_min", "e_min": "E_min"}


def study_trials(store_path: str | os.PathLike, *, workload: str | None = None, target: float | None = None):
    """(workload, metric, target, {optimizer: {batch size: steps}}, missing) of a store; ``missing``
    names the (optimizer, B) without a point.

    One point per (optimizer, B), never one per study (``nnbench.protocol`` writes three studies
    for one (optimizer, B)): where a seeds study exists, its steps as ``nnbench.bootstrap.Seeds`` (the
    point is their median: the best configuration's steps, separately from tuning luck); otherwise
    the steps of each trial (nan if not COMPLETE; the point is the fewest) of the study with the
    most trials, pooled with the focused studies that name it as their parent (the protocol's search
    rounds 1-2). Of several seeds studies, the one with the most seeds. ``workload`` may be omitted
    when the store holds one; ``target`` selects among sweeps of it with several targets.
    """
    from nnbench.store import Status, Store

    workload, metric, target, sel = _select(store_path, workload, target)
    trials, missing = {}, []
    with Store(store_path, create=False) as store:
        keys = {s.study_id: store.study(s.study_id).key for s in sel}
        parents = {s.study_id: (store.study(s.study_id).definition.get("protocol") or {}).get("parent") for s in sel}

        def steps(study_id):
            return [float(t.steps_to_result) if Status(t.status) is Status.COMPLETE and t.steps_to_result
                    else math.nan for t in store.trials(study_id)]

        groups = {}
        for s in sel:
            groups.setdefault((s.optimizer, s.batch_size), []).append(s)

        def most(studies):
            return max(studies, key=lambda x: (x.trials_done, x.study_id))

        for (opt, b), group in sorted(groups.items()):
            seeds = [s for s in group if s.protocol_round == "seeds"]
            if seeds:
                value = Seeds(tuple(steps(most(seeds).study_id)))
            else:
                searches = [s for s in group if s.protocol_round != "focus"] or group
                main = most(searches)
                value = steps(main.study_id)
                for s in group:
                    if parents[s.study_id] == keys[main.study_id]:
                        value += steps(s.study_id)
            trials.setdefault(opt, {})[float(b)] = value
            if not study_points({b: value})[0].size:
                missing.append(f"{opt} B={b}" + (" (median over seeds beyond the budget)" if seeds else ""))
    return workload, metric, float(target), trials, tuple(missing)


@dataclass(frozen=True, eq=False)
class FitComparison:
    """What :func:`compare_fit` found.

    Attributes:
      workload, metric, target: the sweep's.
      physical: the SGD fit and the predictions (``nnbench.predict.PhysicalPrediction``).
      measured: optimizer -> ``nnbench.bootstrap.MeasuredCritical``.
      trials: optimizer -> {B: steps of each trial}; missing: studies without a COMPLETE trial.
      power_source: optimizer -> "given" or "default family mapping".
      figure: path of the figure (None if not drawn); seed: of the bootstrap.
    """

    workload: str
    metric: str
    target: float
    physical: PhysicalPrediction
    measured: dict
    trials: dict
    missing: tuple
    power_source: dict
    seed: int
    figure: str | None = None

    def predicted(self, optimizer: str, quantity: str):
        """The prediction compared with the measurement: the McCandlish fit of the predicted curve at
        the measured batch sizes (like for like), or the NQM's exact limit without measured points."""
        pred = self.physical.predictions[optimizer]
        return getattr(pred, quantity) if pred.as_measured is None else pred.as_measured[quantity]

    def ratio(self, optimizer: str, quantity: str) -> float | None:
        """predicted / measured value of ``quantity`` ("b_crit", "s_min", "e_min"), None if refused."""
        m = getattr(self.measured[optimizer], quantity)
        if m is None:
            return None
        return self.predicted(optimizer, quantity).value / m.value

    def points_rule(self) -> str:
        """How the measured points were taken, per optimizer: "median over N seeds of the best
        configuration" (a protocol's seeds round) or "fewest steps over N trials" (N a range when it
        varies with B); ``nnbench.bootstrap.point_rule`` says it per point."""
        by_rule: dict[str, list[str]] = {}
        for o in self.measured:
            parts = []
            for seeds, text in ((True, "median over {} seeds of the best configuration"),
                                (False, "fewest steps over {} trials")):
                n = sorted({len(v) for v in self.trials[o].values() if isinstance(v, Seeds) == seeds})
                if n:
                    parts.append(text.format(n[0] if len(n) == 1 else f"{n[0]}-{n[-1]}"))
            by_rule.setdefault(" and ".join(parts), []).append(o)
        return "; ".join(f"{', '.join(opts)}: {rule}" for rule, opts in by_rule.items())

    def table(self) -> str:
        ph, f = self.physical, self.physical.fit
        pct = f"{100 * ph.level:g}%"
        lines = [f"{self.workload}: steps to {self.metric} target {self.target:g} vs the NQM {SHAPE}, "
                 f"NQM target {f.target:g}",
                 f"physical fit on SGD only (no steps scale): d = {ph.d}, batch scale {ph.batch_scale}; rms "
                 f"log-residual {f.residual_rms:.3f} over {f.n_points} points; [{pct} bootstrap intervals, "
                 f"{ph.replicates} of {ph.requested} refits]",
                 f"measured points: {self.points_rule()}"]
        head = (f"{'optimizer':<16} {'role':<10} {'NQM family':<34} {'qty':<6} {'measured':>28} "
                f"{'predicted (same fit)':>28} {'pred/meas':>9} {'NQM exact limit':>28}")
        lines += [head, "-" * len(head)]
        notes = []
        for o, m in self.measured.items():
            fam = _family(o, self.physical.powers and {o: self.physical.powers[o]})
            role = "fitted" if o == "sgd" else "predicted"
            label = fam.label.replace("NQM ", "")
            if fam.power:
                label = label.replace(f"p={fam.power:g}", f"p={fam.power:g} "
                                      f"{'given' if self.power_source[o] == 'given' else 'assumed'}")
            for i, q in enumerate(QUANTITIES):
                meas = getattr(m, q)
                r = self.ratio(o, q)
                lines.append(f"{o if i == 0 else '':<16} {role if i == 0 else '':<10} "
                             f"{label if i == 0 else '':<34} {_LABELS[q]:<6} "
                             f"{'refused' if meas is None else str(meas):>28} "
                             f"{str(self.predicted(o, q)):>28} {'-' if r is None else f'{r:.3g}':>9} "
                             f"{str(getattr(ph.predictions[o], q)):>28}")
            if m.refused:
                notes.append(f"{o} measured: {m.refused}")
        lines.append("predicted (same fit): S = S_min + E_min / B fitted to the predicted steps at the measured "
                     "batch sizes, as the measured points were; NQM exact limit: E_min / S_min of the NQM itself")
        if ph.caveat:
            lines.append(f"SGD fit caveat: {ph.caveat} (the intervals above carry it)")
        lines += notes
        return table_footer(lines, self.missing, self.figure)

    def to_dict(self) -> dict:
        ph, f = self.physical, self.physical.fit

        def iv(x):
            return None if x is None else x.to_dict()

        opts = {}
        for o, m in self.measured.items():
            pred = ph.predictions[o]
            opts[o] = {
                "role": "fitted (SGD)" if o == "sgd" else "predicted out of sample",
                "nqm_family": FAMILIES[o].label if o not in ph.powers else _family(o, {o: ph.powers[o]}).label,
                "preconditioner_power": ph.powers[o],
                "power_source": self.power_source[o],
                "measured": {
                    "points": [{"batch_size": float(b), "steps": float(s), "steps_low": float(lo),
                                "steps_high": float(hi), "rule": point_rule(self.trials[o][b]),
                                "trials": len(self.trials[o][b]),
                                "complete_trials": int(np.sum(np.isfinite(_steps(self.trials[o][b]))))}
                               for b, s, (lo, hi) in zip(m.batch_sizes, m.steps, m.steps_interval, strict=True)],
                    **{q: iv(getattr(m, q)) for q in QUANTITIES},
                    "unsupported_reason": m.refused, "mccandlish_residual_rms_log": m.residual_rms,
                    "bootstrap_refits": m.replicates},
                "predicted_same_fit_at_measured_batch_sizes": (
                    None if pred.as_measured is None else {q: iv(pred.as_measured[q]) for q in QUANTITIES}),
                "predicted_nqm_exact_limits": {q: iv(getattr(pred, q)) for q in QUANTITIES},
                "ratio_predicted_over_measured": {q: self.ratio(o, q) for q in QUANTITIES},
            }
        return {
            "workload": self.workload, "metric": self.metric, "target": self.target,
            "method": ("physical NQM fit on SGD only (effective dimension d and a batch scale, no steps scale); "
                       "other optimizers predicted out of sample"),
            "nqm": {"spectrum": SHAPE, "target": f.target},
            "sgd_fit": {"effective_dimension_d": ph.d.to_dict(), "batch_scale": ph.batch_scale.to_dict(),
                        "residual_rms_log": f.residual_rms, "n_points": f.n_points, "d_grid": list(f.d_grid),
                        "profile_rms_log": list(f.profile), "caveat": ph.caveat},
            "bootstrap": {"scheme": "studies, then trials (seeds, for a median over seeds) within each study, "
                                    "drawn with replacement",
                          "level": ph.level, "refits": ph.replicates, "requested": ph.requested, "seed": self.seed},
            "optimizers": opts, "missing": list(self.missing), "figure": self.figure,
        }


def compare_fit(store_path: str | os.PathLike, *, workload: str | None = None, target: float | None = None,
                out_dir: str | os.PathLike | None = "figures/out", nqm_target: float = 0.01,
                powers: Mapping[str, float] | None = None, n_boot: int = 200, level: float = 0.95,
                seed: int = 0, d_grid=D_GRID, bins: int = 64, bank: CurveBank | None = None) -> FitComparison:
    """The physical comparison (module docstring) of one workload of the store at ``store_path``.

    Args:
      workload, target: which sweep (see :func:`study_trials`).
      out_dir: folder of the figure ``compare_<workload>.png`` (None: no figure).
      nqm_target: the NQM's target risk.
      powers: {optimizer: preconditioner power} replacing the family defaults (Adam 0.5, K-FAC 0.75).
      n_boot, level, seed: bootstrap refits, interval coverage, seed.
      d_grid, bins: the fit's d values and the NQM binning (``nnbench.predict.CurveBank``); ``bank``
        (optional) reuses computed curves across calls.
    """
    workload, metric, target, trials, missing = study_trials(store_path, workload=workload, target=target)
    if "sgd" not in trials or not study_points(trials["sgd"])[0].size:
        raise ValueError(f"the physical fit needs SGD studies with COMPLETE trials (it is fitted on SGD only); "
                         f"the store's {workload!r} sweep has {', '.join(sorted(trials)) or 'none'}")
    for o in trials:
        _family(o, powers)                     # unknown optimizer or bad power: a clear error now
    bank = CurveBank(target=nqm_target, bins=bins) if bank is None else bank
    all_b = [b for per in trials.values() for b in per]
    grid = np.exp(np.linspace(math.log(min(all_b) / 4), math.log(max(all_b) * 4), 120))
    optimizers = ["sgd"] + sorted(o for o in trials if o != "sgd")
    measured: dict[str, MeasuredCritical] = {
        o: measured_critical_batch(trials[o], n_boot=n_boot, level=level, seed=seed) for o in optimizers}
    # the fit sees SGD's trials and nothing else; of the others only where they were measured (the
    # design), to fit the predicted curve there as the measured points were fitted
    physical = predict_from_sgd(trials["sgd"], optimizers, bank=bank, batch_sizes=grid, powers=powers,
                                d_grid=d_grid, n_boot=n_boot, level=level, seed=seed,
                                measured_batch_sizes={o: m.batch_sizes for o, m in measured.items()})
    source = {o: "given" if powers and o in powers else "default family mapping" for o in optimizers}
    result = FitComparison(workload=workload, metric=metric, target=target, physical=physical, measured=measured,
                           trials={o: {b: v if isinstance(v, Seeds) else np.asarray(v, float)
                                       for b, v in trials[o].items()} for o in optimizers},
                           missing=missing, power_source=source, seed=seed)
    if out_dir is not None:
        path = Path(out_dir) / f"compare_{workload}.png"
        _figure(result, path)
        result = FitComparison(**{**result.__dict__, "figure": str(path)})
    return result


def _steps(v) -> np.ndarray:
    return np.asarray(v.steps if isinstance(v, Seeds) else v, dtype=np.float64)


def write_results(result: FitComparison, directory: str | os.PathLike = "docs/results") -> Path:
    """Write ``result.to_dict()`` to ``<directory>/compare_<workload>.json``; returns the path."""
    path = Path(directory) / f"compare_{result.workload}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return path


def _figure(result: FitComparison, path: Path) -> None:
    """Steps vs B (measured points with bootstrap error bars, SGD fit, predictions with bands) and the
    SGD fit's residual against d."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax_d = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    ph = result.physical
    for i, (o, m) in enumerate(result.measured.items()):
        col = f"C{i % 10}"
        pred = ph.predictions[o]
        kind = "SGD fit" if o == "sgd" else "predicted"
        ax.plot(pred.prediction.batch_sizes, pred.prediction.steps, "-" if o == "sgd" else "--", color=col, lw=1.5,
                label=f"{o}: NQM {kind}")
        ax.fill_between(pred.prediction.batch_sizes, pred.steps_band[0], pred.steps_band[1], color=col, alpha=0.18,
                        lw=0)
        yerr = np.abs(np.stack([m.steps - m.steps_interval[:, 0], m.steps_interval[:, 1] - m.steps]))
        ax.errorbar(m.batch_sizes, m.steps, yerr=np.nan_to_num(yerr), fmt="o", color=col, ms=5, capsize=2,
                    label=f"{o}: measured")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    lo = min(float(np.min(m.steps)) for m in result.measured.values() if m.steps.size)
    ax.set_ylim(bottom=max(0.5, lo / 8))
    ax.set_xlabel("batch size (examples)")
    ax.set_ylabel(f"steps to {result.metric} target {result.target:g}")
    ax.set_title(f"{result.workload}: fit on SGD only, others predicted ({100 * ph.level:g}% bands)", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    f = ph.fit
    ax_d.plot(f.d_grid, f.profile, "o-", color="C0", ms=3)
    ax_d.axvline(f.d, color="k", lw=0.8)
    ax_d.axvspan(ph.d.low, ph.d.high, color="C0", alpha=0.15, lw=0)
    ax_d.set_xscale("log")
    ax_d.set_yscale("log")
    ax_d.set_xlabel("effective dimension d of h_i = 1/i")
    ax_d.set_ylabel("SGD fit rms log-residual")
    ax_d.set_title(f"d = {ph.d}", fontsize=9)
    ax_d.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
