"""The critical batch size fitted to measured (batch size, steps to target) points, with intervals.

Model (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", eq. 2.11): steps S and
examples E = B S trade off as (S / S_min - 1)(E / E_min - 1) = 1, i.e.

    S(B) = S_min + E_min / B = S_min (1 + B_crit / B),     B_crit = E_min / S_min,

S_min in steps (the B -> inf limit), E_min in examples (the B -> 0 limit of B S), B_crit in examples
per step. Beside it, the definition of Zhang et al. 2024 ("How Does Critical Batch Size Scale in
Pre-training?", ICLR 2025): the batch size at which the steps exceed perfect linear scaling by a given
overhead (theirs: 20 %). We make it precise as follows (the paper's text is not in this project's
sources, so this is our reading of it): perfect scaling is extrapolated from the small-batch limit of
the fitted curve, S_perfect(B) = E_min / B, and B_overhead solves S(B) = (1 + overhead) S_perfect(B).
On the hyperbola this is S_min B = overhead E_min, so

    B_overhead = overhead * E_min / S_min = overhead * B_crit      (B_20 = 0.2 B_crit).

Noise model: steps are positive and scatter multiplicatively, so the fit is least squares on log S,
log S_i = a + log(1 + b / B_i) + eps_i with a = log S_min, b = B_crit, weighted by 1 / sigma_i^2 when
per-point uncertainties are given (sigma_i on the log scale: steps_err_i / steps_i, or the width of a
given interval), eps_i ~ N(0, sigma_i^2); otherwise eps_i ~ N(0, sigma^2) with sigma estimated from
the residuals (n - 2 degrees of freedom). Repeated measurements at one batch size are simply more rows.

Intervals: profile likelihood, calibrated with the F_(1, n-2) distribution when sigma is estimated
(the "profile t" interval of nonlinear regression, Bates & Watts 1988 ch. 6, exact for a linear model)
and with chi^2_1 when the uncertainties are given. Why not a bootstrap: measured curves have 5 - 10
points; a residual bootstrap resamples residuals shrunk by leverage and ignores that sigma is estimated
from n - 2 degrees of freedom (percentile intervals then under-cover, much as z instead of t_(n-2)
quantiles would), a case bootstrap drops the points that carry the curvature; and where the data only
bound B_crit on one side (beyond the measured range) the profile likelihood says so exactly, while
bootstrap replicates run off to the edge of whatever search range they are given.
The computation is one-dimensional: for a fixed c = log B_crit the model is linear in a, so the best
a(c) and the residual sum of squares RSS(c) are closed forms; the profile of S_min (of E_min) is the
union over c of the a-intervals (a + c-intervals) where RSS(c) stays under the threshold. All of it
comes from one grid in c that reaches the two limits of the model, the plateau S = S_min (c -> -inf)
and perfect scaling S = E_min / B (c -> +inf), both evaluated in closed form.

Refusals (ValueError naming the reason): fewer than 3 distinct batch sizes; steps that do not fall as
B grows (weighted log-log slope >= 0); the best fit is a limit of the model (a pure plateau: E_min
and B_crit unidentified; pure perfect scaling: S_min and B_crit unidentified); the interval on
B_crit reaches both limits (the points cannot tell a plateau from perfect scaling). Warnings (in the
result and through ``warnings.warn``, category ``CriticalBatchFitWarning``): an interval open on one
side (then B_crit is only bounded: "> lower" or "< upper"), B_crit or B_overhead outside the measured
batch sizes, points far from the curve, and a lack-of-fit test that rejects the hyperbola.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.stats

from nqm import _validate as V

__all__ = ["CriticalBatchFit", "CriticalBatchFitWarning", "fit_critical_batch"]

_GRID_MARGIN = 15.0        # e-folds of B_crit beyond the measured B: log1p(e^-15) ~ 3e-7, a limit
_GRID_DENSITY = 40         # grid points per e-fold, refined by Brent's method where it matters
_OUTLIER = 3.0             # |standardized residual| that is flagged


class CriticalBatchFitWarning(UserWarning):
    """The fit is usable but the data limit it (one-sided interval, extrapolation, poor fit)."""


@dataclass(frozen=True)
class CriticalBatchFit:
    """A fit of S(B) = S_min + E_min / B to measured points (see the module docstring).

    Intervals are (low, high) at ``level``. Where the points are consistent with perfect scaling
    up to the largest batch size (``b_crit_unbounded``), B_crit and B_overhead are bounded only
    below (high end math.inf, ``None`` in ``to_dict``) and S_min only above (low end 0).

    Attributes:
      b_crit: E_min / S_min in examples (maximum-likelihood estimate; read it only with its interval:
        where that is open-ended the data bound B_crit on one side only).
      b_crit_interval, s_min, s_min_interval, e_min, e_min_interval: S_min in steps, E_min in examples.
      b_overhead, b_overhead_interval: Zhang et al. 2024's batch size with ``overhead`` more steps
        than perfect scaling (= overhead * B_crit on the fitted curve).
      overhead: that overhead (0.2 = 20 %).
      level: confidence level of the intervals.
      method: how the intervals were calibrated.
      b_crit_unbounded: the data bound B_crit only below; report ``b_crit_text()`` ("> 1.2e+04").
      batch_sizes, steps, fitted: the points (sorted by batch size) and the fitted steps there.
      sigma_log: per-point uncertainty of log S used as weights (None: estimated, equal weights).
      residuals: log(steps / fitted); standardized: residuals / their standard deviation.
      residual_rms: root mean square of the log residuals; scatter: the estimated (or given and
        possibly inflated) standard deviation of log S at unit weight; dof: n - 2.
      lack_of_fit: (test name, statistic, p value), or None where no test applies (no replicates
        and no given uncertainties).
      warnings: what limits the result, in words (also issued with ``warnings.warn``).
    """

    b_crit: float
    b_crit_interval: tuple[float, float]
    s_min: float
    s_min_interval: tuple[float, float]
    e_min: float
    e_min_interval: tuple[float, float]
    b_overhead: float
    b_overhead_interval: tuple[float, float]
    overhead: float
    level: float
    method: str
    b_crit_unbounded: bool
    batch_sizes: tuple[float, ...]
    steps: tuple[float, ...]
    fitted: tuple[float, ...]
    sigma_log: tuple[float, ...] | None
    residuals: tuple[float, ...]
    standardized: tuple[float, ...]
    residual_rms: float
    scatter: float
    dof: int
    lack_of_fit: tuple[str, float, float] | None
    warnings: tuple[str, ...]

    @property
    def n_points(self) -> int:
        return len(self.batch_sizes)

    def b_crit_text(self, fmt: str = ".4g") -> str:
        """B_crit as a number, or as the one-sided bound the data support ("> 1.2e+04")."""
        return _bound_text(self.b_crit, self.b_crit_interval, self.b_crit_unbounded, fmt)

    def b_overhead_text(self, fmt: str = ".4g") -> str:
        return _bound_text(self.b_overhead, self.b_overhead_interval, self.b_crit_unbounded, fmt)

    def table(self) -> str:
        """The estimates with their intervals, the points with their residuals, the warnings."""
        lvl = f"{self.level:.0%} interval"
        lines = [f"S(B) = S_min + E_min / B (McCandlish et al. 2018) fitted to {self.n_points} "
                 f"points, B = {self.batch_sizes[0]:g} .. {self.batch_sizes[-1]:g}",
                 f"intervals: {self.method}", "",
                 f"{'quantity':<42} {'estimate':>10}   {lvl}"]
        rows = [("B_crit = E_min / S_min (McCandlish)", self.b_crit_text(), self.b_crit_interval),
                (f"B_{self.overhead * 100:g}, {self.overhead:.0%} over perfect scaling (Zhang)",
                 self.b_overhead_text(), self.b_overhead_interval),
                ("S_min (steps, B -> inf)", f"{self.s_min:.4g}", self.s_min_interval),
                ("E_min (examples, B -> 0)", f"{self.e_min:.4g}", self.e_min_interval)]
        lines.append("-" * len(lines[-1]))
        for name, est, (lo, hi) in rows:
            high = "inf)" if math.isinf(hi) else f"{hi:.4g}]"
            lines.append(f"{name:<42} {est:>10}   [{lo:.4g}, {high}")
        head = f"{'batch size':>12} | {'steps':>10} | {'fitted':>10} | {'log resid.':>10} | " \
               f"{'standardized':>12}"
        lines += ["", head, "-" * len(head)]
        for b, st, f, r, z in zip(self.batch_sizes, self.steps, self.fitted, self.residuals,
                                  self.standardized, strict=True):
            lines.append(f"{b:>12g} | {st:>10.5g} | {f:>10.5g} | {r:>+10.3g} | {z:>+12.2f}")
        lack = "" if self.lack_of_fit is None else \
            f"; {self.lack_of_fit[0]}: {self.lack_of_fit[1]:.3g}, p = {self.lack_of_fit[2]:.2g}"
        lines.append(f"rms log residual {self.residual_rms:.3g}, {self.dof} dof{lack}")
        if self.warnings:
            lines += ["", "warnings:"] + [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)

    def __repr__(self) -> str:
        lo, hi = self.b_crit_interval
        return (f"CriticalBatchFit(B_crit {self.b_crit_text()} ({self.level:.0%} interval "
                f"{lo:.4g} .. {hi:.4g}), S_min={self.s_min:.4g} steps, E_min={self.e_min:.4g} "
                f"examples, {self.n_points} points, {len(self.warnings)} warnings)")

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists, an unbounded interval end (inf) None."""
        def clean(v):
            if isinstance(v, tuple):
                return [clean(x) for x in v]
            return None if isinstance(v, float) and math.isinf(v) else v

        return {**{k: clean(v) for k, v in self.__dict__.items()}, "n_points": self.n_points,
                "b_crit_text": self.b_crit_text()}


def _bound_text(value: float, interval: tuple[float, float], unbounded: bool, fmt: str) -> str:
    return f"> {interval[0]:{fmt}}" if unbounded else f"{value:{fmt}}"


# ------------------------------------------------------------------------------ inputs
def _log_sigma(steps, steps_err, steps_low, steps_high, points_level) -> np.ndarray | None:
    """Per-point standard deviation of log S from standard errors or central intervals (delta
    method; an interval's log-width over 2 z of its level)."""
    n = steps.size
    if steps_err is not None and (steps_low is not None or steps_high is not None):
        raise ValueError("give steps_err or steps_low/steps_high, not both")
    if steps_err is not None:
        return V.vector("steps_err", steps_err, positive=True, size=n) / steps
    if steps_low is None and steps_high is None:
        return None
    if steps_low is None or steps_high is None:
        raise ValueError("give both steps_low and steps_high (an interval around each point)")
    lo = V.vector("steps_low", steps_low, positive=True, size=n)
    hi = V.vector("steps_high", steps_high, positive=True, size=n)
    bad = np.flatnonzero((lo > steps) | (hi < steps) | (lo >= hi))
    if bad.size:
        i = bad[0]
        raise ValueError(f"steps_low <= steps <= steps_high (and low < high) must hold for each point, got "
                         f"{lo[i]:g}, {steps[i]:g}, {hi[i]:g} (point {i + 1})")
    lvl = V.real("points_level", points_level, low=0.0, high=1.0, low_open=True, high_open=True)
    z = scipy.stats.norm.ppf(0.5 + lvl / 2)
    return (np.log(hi) - np.log(lo)) / (2 * z)


# ------------------------------------------------------------------------------ the profile
class _Profile:
    """RSS(c) and a(c) of log S = a + log(1 + e^c / B) + eps, c = log B_crit, weights w."""

    def __init__(self, x, y, w):
        self.x, self.y, self.w, self.W = x, y, w, w.sum()

    def _g(self, c):
        return np.logaddexp(0.0, np.subtract.outer(c, self.x))        # log(1 + B_crit / B)

    def at(self, c):
        """(a(c), RSS(c)) for scalar or 1-D c."""
        r = self.y - self._g(c)
        a = r @ self.w / self.W
        resid = r - np.asarray(a)[..., None]
        return a, (resid * resid) @ self.w

    def limits(self):
        """(a, RSS) of the plateau (c -> -inf) and (a + c, RSS) of perfect scaling (c -> +inf)."""
        out = []
        for r in (self.y, self.y + self.x):
            m = r @ self.w / self.W
            out.append((float(m), float(((r - m) ** 2) @ self.w)))
        return out


def _refine(fun, lo, hi):
    """Minimum of a scalar function on [lo, hi] (bounded Brent)."""
    res = scipy.optimize.minimize_scalar(fun, bounds=(lo, hi), method="bounded",
                                         options={"xatol": 1e-9})
    return float(res.x), float(res.fun)


def _extreme(fun, grid, values, inside):
    """Max of fun over the part of the grid where ``inside``, refined around the best grid point."""
    k = int(np.argmax(np.where(inside, values, -np.inf)))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    _, f = _refine(lambda c: -fun(c), lo, hi)
    return max(-f, float(values[k]))


def fit_critical_batch(batch_sizes, steps, *, steps_err=None, steps_low=None, steps_high=None,
                       points_level: float = 0.6827, level: float = 0.95,
                       overhead: float = 0.2) -> CriticalBatchFit:
    """Fit S(B) = S_min + E_min / B to measured points, with profile-likelihood intervals.

    Args:
      batch_sizes: measured batch sizes (finite, >= 1; repeats are repeated measurements).
      steps: steps to target at each (> 0).
      steps_err: optional standard error of each steps value (in steps).
      steps_low, steps_high: optional central interval around each steps value, at ``points_level``
        (default 0.6827, i.e. +- one standard error); alternative to ``steps_err``.
      level: confidence level of the intervals (default 0.95).
      overhead: of Zhang et al. 2024's definition (default 0.2: 20 % more steps than perfect scaling).

    Returns: a ``CriticalBatchFit``. Raises ValueError (naming the reason) where the points cannot
    support the fit; see the module docstring for the model, the intervals and the refusals.

    Example:
      >>> import numpy as np
      >>> B = np.array([16, 64, 256, 1024, 4096])
      >>> f = fit_critical_batch(B, (700 + 6.3e5 / B) * np.exp([0.02, -0.01, 0.0, 0.01, -0.02]))
      >>> f.b_crit_interval[0] < 900 < f.b_crit_interval[1]
      True
    """
    B = V.batch_sizes(batch_sizes)
    if not np.all(np.isfinite(B)):
        raise ValueError("batch_sizes must be finite for a fit (B = inf: give S_min directly)")
    S = V.vector("steps", steps, positive=True, size=B.size)
    lvl = V.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    ovh = V.real("overhead", overhead, low=0.0, low_open=True)
    sig = _log_sigma(S, steps_err, steps_low, steps_high, points_level)
    order = np.argsort(B, kind="stable")
    B, S = B[order], S[order]
    sig = None if sig is None else sig[order]
    n, distinct = B.size, np.unique(B)
    if distinct.size < 3:
        raise ValueError(f"batch_sizes/steps: need points at at least 3 distinct batch sizes to fit "
                         f"S_min and E_min and see the curve bend, got {distinct.size} "
                         f"({n} points)")
    x, y = np.log(B), np.log(S)
    w = np.ones(n) if sig is None else 1.0 / sig**2
    span = f"B = {B[0]:g} .. {B[-1]:g}"

    xm = x @ w / w.sum()
    slope = ((x - xm) * w) @ y / (((x - xm) ** 2) @ w)
    if slope >= 0:
        raise ValueError(f"steps do not decrease as the batch size grows (log-log slope "
                         f"{slope:+.3g} over {span}): S = S_min + E_min / B cannot fit rising "
                         f"or flat points")

    prof = _Profile(x, y, w)
    (_, rss_plat), (e_scal, rss_scal) = prof.limits()
    grid = np.arange(x[0] - _GRID_MARGIN, x[-1] + _GRID_MARGIN, 1.0 / _GRID_DENSITY)
    a_grid, rss_grid = prof.at(grid)
    k = int(np.argmin(rss_grid))
    c_hat, rss_min = _refine(lambda c: float(prof.at(c)[1]),
                             grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)])
    tiny = 1e-12 * max(float(w @ (y - y @ w / w.sum()) ** 2), 1e-300)
    # the best fit is a limit of the model (at the end of the grid, or no better than the limit)
    if k == 0 or rss_plat <= rss_min + tiny:
        raise ValueError(f"no curvature: a flat plateau S = const fits the points ({span}) as well "
                         f"as any curve that falls with B, so E_min and B_crit are not identified")
    best_is_scaling = k == grid.size - 1 or rss_scal <= rss_min + tiny
    a_hat = float(prof.at(c_hat)[0])

    # --- calibration of the threshold RSS <= rss_min + delta
    dof = n - 2
    warn: list[str] = []
    lack = None
    scale = rss_min / dof if dof > 0 else 0.0
    if sig is None:
        method = f"profile likelihood, F(1, {dof})-calibrated (scatter estimated from residuals)"
        delta = scale * scipy.stats.f.ppf(lvl, 1, dof)
        if n > distinct.size and distinct.size > 2:
            groups = np.searchsorted(distinct, B)
            means = np.bincount(groups, w * y) / np.bincount(groups, w)
            ss_pe = float(((y - means[groups]) ** 2) @ w)
            df_pe, df_lof = n - distinct.size, distinct.size - 2
            if ss_pe > 0:
                F = ((rss_min - ss_pe) / df_lof) / (ss_pe / df_pe)
                lack = ("F lack of fit (replicates)", float(F),
                        float(scipy.stats.f.sf(F, df_lof, df_pe)))
        scatter = math.sqrt(scale)
    else:
        chi2 = rss_min
        p = float(scipy.stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0
        lack = ("chi2 (given uncertainties)", float(chi2), p)
        if p < 0.05:
            method = (f"profile likelihood, F(1, {dof})-calibrated (the given uncertainties "
                      f"scaled by {math.sqrt(scale):.3g} to the scatter)")
            delta = scale * scipy.stats.f.ppf(lvl, 1, dof)
            warn.append(f"the points scatter more than their uncertainties allow (chi2 = "
                        f"{chi2:.3g} on {dof} dof, p = {p:.2g}): intervals widened by "
                        f"{math.sqrt(scale):.3g}")
            scatter = math.sqrt(scale)
        else:
            method = "profile likelihood, chi2(1)-calibrated (given uncertainties)"
            delta = float(scipy.stats.chi2.ppf(lvl, 1))
            scatter = 1.0
    if lack is not None and lack[0].startswith("F") and lack[2] < 0.01:
        warn.append(f"the hyperbola does not describe the means at each batch size (lack-of-fit "
                    f"F = {lack[1]:.3g}, p = {lack[2]:.2g}): intervals include that misfit as noise")
    thresh = rss_min + max(delta, tiny)

    # --- B_crit: the set {c : RSS(c) <= thresh}, its outermost crossings
    def crossing(i):
        """c in [grid[i], grid[i + 1]] where RSS(c) = thresh."""
        return scipy.optimize.brentq(lambda c: float(prof.at(c)[1]) - thresh, grid[i],
                                     grid[i + 1], xtol=1e-10)

    inside = rss_grid <= thresh
    idx = np.flatnonzero(inside)
    open_low = bool(rss_plat <= thresh or inside[0])
    open_high = bool(rss_scal <= thresh or inside[-1])
    if open_low and open_high:
        raise ValueError(f"the points ({span}) do not determine B_crit: at the {lvl:.0%} level they "
                         f"are consistent both with a flat plateau and with perfect scaling")
    if best_is_scaling:
        bound = math.exp(crossing(idx[0] - 1)) if idx.size and idx[0] > 0 else math.exp(c_hat)
        raise ValueError(f"no curvature: perfect scaling S = E_min / B fits the points ({span}) "
                         f"best, so S_min is not identified and B_crit has no estimate (the data "
                         f"say only B_crit > {bound:.4g} at the {lvl:.0%} level); measure larger "
                         f"batch sizes")
    if open_low:
        # a plateau within the interval is "flat points" in the statistical sense: nothing in
        # the data shows that the steps depend on B, unlike perfect scaling (handled below)
        bound = math.exp(crossing(idx[-1]) if idx.size else c_hat)
        raise ValueError(f"steps do not decrease significantly as the batch size grows: a flat "
                         f"plateau S = const is consistent with the points ({span}) at the "
                         f"{lvl:.0%} level, so E_min is not identified (the data say only B_crit "
                         f"< {bound:.4g})")
    if idx.size == 0:                       # the admissible set lies between two grid points
        inside[np.argmin(np.abs(grid - c_hat))] = True
        c_lo = c_hi = c_hat
    else:
        c_lo = min(crossing(idx[0] - 1), c_hat)
        c_hi = math.inf if open_high else max(crossing(idx[-1]), c_hat)

    # --- S_min (a) and E_min (a + c): unions of the a-intervals over the admissible c
    def half(rss):
        return np.sqrt(np.maximum(thresh - rss, 0.0) / prof.W)

    def bounds(shift):
        """(min, max) over admissible c of a(c) + shift * c -/+ half-width."""
        def up(c):
            a, rss = prof.at(c)
            return float(a + shift * c + half(rss))

        def down(c):
            a, rss = prof.at(c)
            return float(-(a + shift * c) + half(rss))

        h = half(rss_grid)
        return (-_extreme(down, grid, -(a_grid + shift * grid) + h, inside),
                _extreme(up, grid, a_grid + shift * grid + h, inside))

    a_min, a_max = bounds(0.0)
    e_lo, e_hi = bounds(1.0)
    if open_high:                           # perfect scaling admissible: S_min -> 0
        h_scal = math.sqrt(max(thresh - rss_scal, 0.0) / prof.W)
        e_lo, e_hi = min(e_lo, e_scal - h_scal), max(e_hi, e_scal + h_scal)
    s_int = (0.0 if open_high else math.exp(a_min), math.exp(a_max))
    e_int = (math.exp(e_lo), math.exp(e_hi))
    b_int = (math.exp(c_lo), math.exp(c_hi))

    s_hat, b_hat = math.exp(a_hat), math.exp(c_hat)
    e_hat = s_hat * b_hat
    fitted = np.exp(a_hat + np.logaddexp(0.0, c_hat - x))
    resid = y - np.log(fitted)
    std = resid * np.sqrt(w) / (scatter if scatter > 0 else 1.0)

    # --- what limits the result
    if open_high:
        warn.append(f"B_crit is only bounded below: the points ({span}) are consistent with "
                    f"perfect scaling up to the largest batch size, so B_crit > {b_int[0]:.4g} "
                    f"({lvl:.0%}), not a number; measure larger batch sizes")
    if not open_high and not B[0] <= b_hat <= B[-1]:
        warn.append(f"B_crit = {b_hat:.4g} lies outside the measured batch sizes ({span}): "
                    f"it is extrapolated")
    if not open_high and not B[0] <= ovh * b_hat <= B[-1]:
        warn.append(f"B_{ovh * 100:g} = {ovh * b_hat:.4g} ({ovh:.0%} over perfect scaling) lies "
                    f"outside the measured batch sizes ({span}): it is extrapolated")
    far = np.flatnonzero(np.abs(std) > _OUTLIER)
    if far.size:
        warn.append("points far from the fitted curve (|standardized residual| > "
                    f"{_OUTLIER:g}): " + ", ".join(f"B = {B[i]:g} ({std[i]:+.2g})" for i in far))
    for msg in warn:
        warnings.warn(msg, CriticalBatchFitWarning, stacklevel=2)

    return CriticalBatchFit(
        b_crit=b_hat, b_crit_interval=b_int, s_min=s_hat, s_min_interval=s_int, e_min=e_hat,
        e_min_interval=e_int, b_overhead=ovh * b_hat,
        b_overhead_interval=(ovh * b_int[0], ovh * b_int[1]), overhead=ovh, level=lvl,
        method=method, b_crit_unbounded=open_high,
        batch_sizes=tuple(B.tolist()), steps=tuple(S.tolist()), fitted=tuple(fitted.tolist()),
        sigma_log=None if sig is None else tuple(sig.tolist()), residuals=tuple(resid.tolist()),
        standardized=tuple(std.tolist()), residual_rms=float(np.sqrt(np.mean(resid * resid))),
        scatter=float(scatter), dof=dof, lack_of_fit=lack, warnings=tuple(warn))
