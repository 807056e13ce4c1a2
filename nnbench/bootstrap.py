"""Uncertainty of measured steps to result and of the critical batch size fitted to them.

A sweep measures, per (optimizer, batch size) study, the steps to result of each trial (None / nan for
a trial that never reached the target). The study's point is the fewest steps over its COMPLETE
trials (Shallue et al. 2018, section 3), or, for the seeds round of a measurement protocol
(``nnbench.protocol``: the best configuration re-run with several seeds, given here as :class:`Seeds`),
the median over the seeds (a seed that missed the target counts as beyond the budget; a median beyond
it is no point), which separates the seed scatter from tuning luck. Its uncertainty here is the
nonparametric bootstrap over trials (over seeds for a :class:`Seeds` point), two-level as for nested data (Davison & Hinkley 1997, section 3.8; percentile intervals,
Efron & Tibshirani 1993, ch. 13): draw the studies (batch sizes) with replacement, then within each
drawn study its trials with replacement (complete and not), take the minimum again, refit. The first
level carries the scatter of the points about the curve (present even with one trial a study), the
second the luck of the trials. A drawn study without a COMPLETE trial loses its point, as a re-run
with those trials would have. What it cannot remove is the downward bias of a minimum over trials
whose steps scatter by seed (the lucky seed wins, more so with more trials): on points whose every trial
scatters by exp(N(0, 0.08)), 4 trials a study, the intervals of a known B_crit missed it by about 8 %;
re-running the best configuration over several seeds measures that scatter instead.

The McCandlish fit S(B) = S_min + E_min / B (``nqm.critical_batch(batch_sizes=, steps=)``) is refused,
with the reason, when the points cannot support it (:func:`unsupported`): fewer than 3 batch sizes;
steps that do not decrease with B (nqm.fit refuses them); B_crit beyond the largest batch measured (the plateau S_min was never
reached, so B_crit is only a lower bound) or below the smallest (perfect scaling never seen, E_min not
determined).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

import nqm

__all__ = ["Trials", "Seeds", "point_rule", "study_points", "resample", "percentile_interval", "unsupported", "Interval",
           "MeasuredCritical", "measured_critical_batch", "point_fit"]

@dataclass(frozen=True)
class Seeds:
    """Steps to result of ONE configuration re-run with several seeds (nan / None: that seed missed
    the target): the point is their median, not the fewest (a protocol's seeds round)."""

    steps: tuple

    def __len__(self) -> int:
        return len(self.steps)


# batch size -> steps to result of each trial of that study (nan: the trial did not reach the target),
# or :class:`Seeds` of the best configuration
Trials = Mapping[float, "Sequence[float] | Seeds"]


def _as_trials(trials) -> list[tuple[float, np.ndarray, bool]]:
    """[(B, steps of each trial, median over seeds?)] from a mapping B -> steps (or :class:`Seeds`)
    or from (B, steps) pairs (B may repeat)."""
    out = []
    for b, steps in (trials.items() if isinstance(trials, Mapping) else trials):
        b = float(b)
        if not (math.isfinite(b) and b >= 1):
            raise ValueError(f"trials: batch sizes must be finite and >= 1, got {b!r}")
        seeds = isinstance(steps, Seeds)
        values = steps.steps if seeds else np.atleast_1d(steps)
        s = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
        if np.any(s[np.isfinite(s)] <= 0):
            raise ValueError(f"trials[{b:g}]: steps to result must be > 0")
        out.append((b, s, seeds))
    return out


def _fewest(steps: np.ndarray) -> float:
    ok = steps[np.isfinite(steps)]
    return float(ok.min()) if ok.size else math.nan


def _median(steps: np.ndarray) -> float:
    """Median over seeds, a missed target counting as beyond the budget (nan if the median is)."""
    if not steps.size:
        return math.nan
    m = float(np.median(np.where(np.isfinite(steps), steps, math.inf)))
    return m if math.isfinite(m) else math.nan


def _point(steps: np.ndarray, seeds: bool) -> float:
    return _median(steps) if seeds else _fewest(steps)


def point_rule(steps) -> str:
    """How the point of one study's ``steps`` (a sequence or :class:`Seeds`) is taken, in words."""
    if isinstance(steps, Seeds):
        return f"median over {len(steps)} seeds of the best configuration"
    return f"fewest steps over {len(np.atleast_1d(steps))} trials"


def study_points(trials) -> tuple[np.ndarray, np.ndarray]:
    """(batch sizes, points), ascending in B: per study the fewest steps over COMPLETE trials, or the
    median over seeds of a :class:`Seeds` study; studies without a point are left out.

    ``trials``: a mapping B -> steps of each trial, or (B, steps) pairs (a resample repeats B)."""
    pts = [(b, _point(s, seeds)) for b, s, seeds in _as_trials(trials)]
    pts = sorted(p for p in pts if math.isfinite(p[1]))
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def resample(trials, rng: np.random.Generator) -> list[tuple[float, object]]:
    """Studies drawn with replacement, then each drawn study's trials (seeds, for :class:`Seeds`)
    with replacement (same counts); a drawn :class:`Seeds` study stays one."""
    studies = [(b, s, seeds) for b, s, seeds in _as_trials(trials) if s.size]
    drawn = rng.integers(0, len(studies), len(studies)) if studies else []
    out = []
    for i in drawn:
        b, s, seeds = studies[i]
        r = s[rng.integers(0, s.size, s.size)]
        out.append((b, Seeds(tuple(r)) if seeds else r))
    return out


def percentile_interval(samples, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite samples (nan, nan if none)."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan)
    a = 50.0 * (1.0 - level)
    lo, hi = np.percentile(x, [a, 100.0 - a])
    return (float(lo), float(hi))


def point_fit(batch_sizes, steps) -> nqm.CriticalBatchResult:
    """The McCandlish point fit; its warnings (extrapolation, lack of fit) are not repeated per
    bootstrap replicate: :func:`unsupported` states what matters for the comparison."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nqm.CriticalBatchFitWarning)
        return nqm.critical_batch(batch_sizes=batch_sizes, steps=steps)


def unsupported(batch_sizes, steps, fit: nqm.CriticalBatchResult | None = None) -> str | None:
    """Why the points cannot support a McCandlish critical batch size, or None if they can."""
    B = np.asarray(batch_sizes, dtype=np.float64)
    S = np.asarray(steps, dtype=np.float64)
    if fit is None:
        try:
            fit = point_fit(B, S)
        except ValueError as err:       # nqm.fit's refusal says why (too few batch sizes, rising points...)
            return str(err)
    if fit.value > B.max():
        return (f"B_crit fit {fit.value:.3g} lies beyond the largest batch measured ({B.max():g}): the "
                f"plateau S_min is not reached, B_crit is only a lower bound")
    if fit.value < B.min():
        return (f"B_crit fit {fit.value:.3g} lies below the smallest batch measured ({B.min():g}): "
                f"perfect scaling is not reached, E_min is not determined")
    return None


@dataclass(frozen=True)
class Interval:
    """A number with its bootstrap percentile interval [low, high] at ``level``."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.value:.3g} [{self.low:.3g}, {self.high:.3g}]"


@dataclass(frozen=True)
class MeasuredCritical:
    """B_crit, S_min, E_min fitted to one optimizer's measured points, with bootstrap intervals.

    Attributes:
      batch_sizes, steps: the points (:func:`study_points`); steps_interval: (n, 2) bootstrap
        interval of each point.
      b_crit, s_min, e_min: :class:`Interval` (None when ``refused``).
      refused: why the data do not support the fit (None if they do).
      replicates: bootstrap resamples whose points could be fitted; level: the interval's coverage.
      residual_rms: of the fit to all points (None if refused for too few points).
    """

    batch_sizes: np.ndarray
    steps: np.ndarray
    steps_interval: np.ndarray
    b_crit: Interval | None
    s_min: Interval | None
    e_min: Interval | None
    refused: str | None
    replicates: int
    level: float
    residual_rms: float | None


def measured_critical_batch(trials: Trials, *, n_boot: int = 200, level: float = 0.95,
                            seed: int = 0) -> MeasuredCritical:
    """Fit S = S_min + E_min / B to the study points of ``trials`` (:func:`study_points`: fewest over
    trials, or median over :class:`Seeds`) and bootstrap it over trials (seeds)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    B, S = study_points(trials)
    rng = np.random.default_rng(seed)
    studies = {b: (s, seeds) for b, s, seeds in _as_trials(trials)}
    # each point's own interval: its trials (seeds) resampled (the point's scatter about the curve is the fit's)
    boot_pts = np.array([[_point(studies[b][0][rng.integers(0, studies[b][0].size, studies[b][0].size)],
                                 studies[b][1]) for b in B]
                         for _ in range(n_boot)]).reshape(n_boot, B.size)
    fits = []
    for _ in range(n_boot):
        b, s = study_points(resample(trials, rng))
        if np.unique(b).size >= 3:
            try:
                f = point_fit(b, s)
            except ValueError:          # this resample cannot be fitted (e.g. flat): not a replicate
                continue
            fits.append((f.value, f.s_min, f.e_min))
    steps_iv = np.array([percentile_interval(boot_pts[:, j], level) for j in range(B.size)]).reshape(-1, 2)
    fit, reason = None, None
    if B.size >= 3 and np.unique(B).size >= 3:
        try:
            fit = point_fit(B, S)
        except ValueError as err:
            reason = str(err)
    reason = reason or unsupported(B, S, fit)
    if reason is not None:
        return MeasuredCritical(B, S, steps_iv, None, None, None, reason, len(fits), level,
                                None if fit is None else fit.residual_rms)
    arr = np.array(fits).reshape(-1, 3)
    ivs = [Interval(v, *percentile_interval(arr[:, j], level)) for j, v in
           enumerate((fit.value, fit.s_min, fit.e_min))]
    return MeasuredCritical(B, S, steps_iv, ivs[0], ivs[1], ivs[2], None, len(fits), level, fit.residual_rms)
