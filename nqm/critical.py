"""Critical batch size.

Definitions (``definition=``):

* ``"mccandlish"`` (default; McCandlish et al. 2018, "An Empirical Model of Large-Batch Training"):
  steps S and examples E = B S trade off as (S / S_min - 1)(E / E_min - 1) = 1, i.e.
  S(B) = S_min + E_min / B, and B_crit = E_min / S_min. Both limits are computed exactly:
  S_min = tuned steps with noise-free gradients (B = inf); E_min = lim_(B -> 0) B S(B), the examples
  needed in the small-batch limit with the rates scaled with B:

  - SGD / fixed momentum (at small rates momentum is SGD with rate lr / (1 - beta)): lr = kappa B,
    n = B t examples, (1 - lr k)^(2t) -> exp(-2 kappa k n), E[x^2] -> (x0sq - s) exp(-2 kappa k n) + s,
    s = kappa c / (2 k); E_min = min over kappa of the first n with risk <= target.
  - tuned momentum: the optimal momentum goes to 1 as B -> 0 (1 - beta ~ B) and the limit is NOT the
    SGD one: with 1 - beta = gamma B and lr = r gamma B^2 heavy ball (and Nesterov, to leading order)
    tends to the damped oscillator x'' + gamma x' + r gamma k x = noise (in examples n), whose
    overdamped limit gamma -> inf is the SGD flow. E_min = min over (r, gamma) of its first crossing
    (Nelder-Mead from four damping levels; the crossing time is slightly jagged in (r, gamma) where
    fast bins oscillate, so this minimum is accurate to about 0.1 %).
    On the paper's problem it is about 1.17x smaller than SGD's, which is the small-batch advantage
    of tuned momentum (claim 2 of the paper's section 3.6, "about 1.15 - 1.2x").
* ``"perfect_scaling"``: the largest B where steps are still within (1 + tolerance) of perfect
  scaling from the small-batch limit, B S(B) <= (1 + tolerance) E_min (default tolerance 0.1).
* ``"saturation"``: the smallest B where steps are within (1 + tolerance) of the large-batch limit,
  S(B) <= (1 + tolerance) S_min.
  (For an exact hyperbola S = S_min + E_min / B these are tolerance * B_crit and B_crit / tolerance.)
  Both are computed on the smooth relaxation of the tuned steps (continuous in B).
* measured points (``batch_sizes=`` and ``steps=``, e.g. from nnbench): S_min and E_min are fitted
  to S(B) = S_min + E_min / B by least squares on log S, with profile-likelihood intervals and
  refusals where the points cannot support the fit (``nqm.fit``, which also takes per-point
  uncertainties); B_crit = E_min / S_min (definition ``"mccandlish_fit"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nqm import _kernels as K
from nqm import _validate as V
from nqm._memo import once
from nqm._nelder_mead import nelder_mead
from nqm.problem import NQM
from nqm.tuning import _check_problem, tune_cells

if TYPE_CHECKING:
    from nqm.fit import CriticalBatchFit

__all__ = ["CriticalBatchResult", "critical_batch", "e_min", "s_min", "DEFINITIONS"]

DEFINITIONS = ("mccandlish", "perfect_scaling", "saturation")


@dataclass(frozen=True)
class CriticalBatchResult:
    """Attributes:
      value: the critical batch size.
      definition: "mccandlish", "perfect_scaling", "saturation" or "mccandlish_fit".
      s_min: steps needed as B -> inf (noise-free; exact tuned integer, or fitted).
      e_min: examples needed as B -> 0 (exact limit, or fitted).
      optimizer: what was tuned, e.g. "sgd", "heavy_ball (tuned momentum)", or "measured".
      power: preconditioner power (None for measured points).
      target: target risk (None for measured points).
      tolerance: the tolerance of "perfect_scaling" / "saturation" (None otherwise).
      residual_rms: fit only: root mean square of log(S_measured / S_fitted).
      n_points: fit only: number of measured points.
      fit: fit only: the ``nqm.fit.CriticalBatchFit`` with the intervals (B_crit, S_min, E_min and
        Zhang et al. 2024's 20 %-overhead batch size), residual diagnostics and warnings.
    """

    value: float
    definition: str
    s_min: float
    e_min: float
    optimizer: str
    power: float | None = None
    target: float | None = None
    tolerance: float | None = None
    residual_rms: float | None = None
    n_points: int | None = None
    fit: CriticalBatchFit | None = None

    def __repr__(self) -> str:
        extra = ""
        if self.tolerance is not None:
            extra = f", tolerance={self.tolerance:g}"
        value = f"={self.value:.6g}"
        if self.fit is not None:
            lo, hi = self.fit.b_crit_interval
            value = f" {self.fit.b_crit_text('.6g')} ({self.fit.level:.0%} interval {lo:.4g} .. {hi:.4g})"
            extra = (f", {self.n_points} points, rms log-residual {self.residual_rms:.3g}, "
                     f"{len(self.fit.warnings)} warnings")
        where = "" if self.target is None else f", power={self.power:g}, target={self.target:g}"
        return (f"CriticalBatchResult(B_crit{value} [{self.definition}], "
                f"S_min={self.s_min:.6g} steps, E_min={self.e_min:.6g} examples, "
                f"{self.optimizer}{where}{extra})")

    def to_dict(self) -> dict:
        """The fields as plain values; ``fit`` (with its intervals) only for a fit of measured points."""
        d = {k: v for k, v in self.__dict__.items() if k != "fit"}
        return d if self.fit is None else {**d, "fit": self.fit.to_dict()}


# ------------------------------------------------------------------------------ limits
def s_min(problem: NQM | None = None, *, momentum=0.0, nesterov: bool = False,
          power: float = 0.0, target: float = 0.01) -> float:
    """Tuned steps to target with noise-free gradients (B = inf), exact integer.

    The B = inf cell is tuned together with a ladder of finite batch sizes 4^0 .. 4^20 whose optima
    it is offered (``nqm.tuning._adopt_neighbours``): at fixed hyperparameters steps only fall as B
    grows, so S_min is never above the tuned steps at a finite batch size of the ladder, even where
    the tuner alone stops in a local optimum of the jagged few-step landscape (tuned momentum)."""
    problem = _check_problem(problem)
    mom = V.tunable("momentum", momentum, V.momentum)
    ladder = [4.0**e for e in range(21)] + [math.inf]
    row = tune_cells(problem, ladder, [V.power(power)], mom, bool(nesterov),
                     V.target(target))[0, -1]
    return float(row[0])


def _sgd_flow_e_min(problem: NQM, power: float, target: float) -> tuple[float, float]:
    def compute():
        k, c_eff = problem.preconditioned(power)
        return K._e_min(k, c_eff, problem.x0sq, 0.5 * problem.counts * problem.h, target)

    # also the start of tuned momentum's E_min
    n, kappa = once(problem, ("sgd flow e_min", power, target), compute)
    if n < 0:
        raise ValueError(f"target={target!r} is unreachable in the small-batch limit")
    return float(n), float(kappa)


def _momentum_flow_e_min(problem: NQM, power: float, target: float) -> tuple[float, float, float]:
    """E_min of tuned momentum: min over (r, gamma) of n = tau / gamma in the oscillator limit,
    started from the SGD flow optimum (r = kappa, large gamma)."""
    n_sgd, kappa = _sgd_flow_e_min(problem, power, target)
    k, c_eff = problem.preconditioned(power)
    wt = 0.5 * problem.counts * problem.h
    state = {"tau": 1.0}

    def examples(z):
        r, gamma = math.exp(z[0]), math.exp(z[1])
        tau = K._osc_crossing(r, gamma, k, c_eff, problem.x0sq, wt, target, state["tau"])
        if tau < 0:
            return 1e300
        state["tau"] = tau
        return tau / gamma / n_sgd

    best_x, best_f = None, math.inf
    for g in (3.0, 10.0, 30.0, 100.0):          # damping: gamma n_sgd from underdamped to SGD-like
        z0 = np.array([math.log(kappa), math.log(g / n_sgd)])
        state["tau"] = g
        # scipy's Nelder-Mead with maxiter 2000, but stopped once the search is in a cycle
        # (``nqm._nelder_mead``; the crossing's warm start makes the value at a point jitter by
        # ~1e-13, so scipy never met fatol and ran all 2000 iterations): same result, exactly
        x, f, _ = nelder_mead(examples, z0, xatol=1e-6, fatol=1e-10, maxiter=2000,
                              state=lambda: state["tau"])
        if best_x is None or f < best_f:
            best_x, best_f = x, f
    n = best_f * n_sgd
    if n >= n_sgd:
        return n_sgd, kappa, math.inf
    return float(n), math.exp(best_x[0]), math.exp(best_x[1])


def e_min(problem: NQM | None = None, *, momentum=0.0, nesterov: bool = False,
          power: float = 0.0, target: float = 0.01) -> float:
    """Examples needed in the small-batch limit, lim_(B -> 0) B S(B) with tuned rates (and momentum
    if ``momentum="tune"``); see the module docstring. A fixed momentum has the SGD limit."""
    problem = _check_problem(problem)
    mom = V.tunable("momentum", momentum, V.momentum)
    p, tgt = V.power(power), V.target(target)
    del nesterov          # heavy ball and Nesterov share the small-batch limit
    if mom == V.TUNE:
        return once(problem, ("momentum flow e_min", p, tgt),
                    lambda: _momentum_flow_e_min(problem, p, tgt))[0]
    return _sgd_flow_e_min(problem, p, tgt)[0]


# ------------------------------------------------------------------------------ definitions
def _relaxed_steps_at(problem, B, p, mom, nesterov, tgt) -> float:
    return float(tune_cells(problem, [B], [p], mom, nesterov, tgt)[0, 0, 4])


def _log2_root(fun, lo=-10.0, hi=60.0) -> float:
    """B = 2^z with fun(z) changing sign from <= 0 to > 0 (bisection to 1e-6 in z)."""
    flo, fhi = fun(lo), fun(hi)
    if flo > 0 or fhi <= 0:
        raise ValueError("the critical batch size is outside 2^-10 .. 2^60")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if fun(mid) > 0:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-6:
            break
    return 2.0 ** (0.5 * (lo + hi))


def _fit(batch_sizes, steps) -> CriticalBatchResult:
    from nqm.fit import fit_critical_batch  # here: it imports scipy.optimize/stats (~0.4 s)

    f = fit_critical_batch(batch_sizes, steps)
    return CriticalBatchResult(value=f.b_crit, definition="mccandlish_fit", s_min=f.s_min,
                               e_min=f.e_min, optimizer="measured", residual_rms=f.residual_rms,
                               n_points=f.n_points, fit=f)


def critical_batch(problem: NQM | None = None, *, momentum=0.0, nesterov: bool = False,
                   power: float = 0.0, target: float = 0.01, definition: str = "mccandlish",
                   tolerance: float = 0.1, batch_sizes=None, steps=None) -> CriticalBatchResult:
    """The critical batch size of an optimizer on an NQM, or fitted to measured points.

    Args:
      problem: the NQM (default: the paper's, ``NQM.paper()``).
      momentum: 0 (SGD, default), a fixed beta, or "tune".
      nesterov: Nesterov instead of heavy-ball momentum.
      power: preconditioner power.
      target: target risk (paper: 0.01).
      definition: "mccandlish" (E_min / S_min, default), "perfect_scaling" or "saturation"
        (see the module docstring).
      tolerance: of "perfect_scaling" / "saturation".
      batch_sizes, steps: measured (B, steps to target) points: fit S = S_min + E_min / B instead
        (then no problem / optimizer arguments may be given). The result's ``fit`` holds the
        intervals; ValueError where the points cannot support a fit, CriticalBatchFitWarning where
        they bound B_crit on one side only or it is extrapolated. Per-point uncertainties and
        other levels: ``nqm.fit_critical_batch``.

    Example:
      >>> from nqm import critical_batch
      >>> r = critical_batch()          # paper problem, SGD, p = 0, target 0.01
      >>> 500 < r.value < 1500
      True
    """
    if batch_sizes is not None or steps is not None:
        if batch_sizes is None or steps is None:
            raise ValueError("give both batch_sizes and steps (measured points) or neither")
        if problem is not None:
            raise ValueError("problem must be None when fitting measured batch_sizes/steps")
        return _fit(batch_sizes, steps)
    problem = _check_problem(problem)
    V.choice("definition", definition, DEFINITIONS)
    mom = V.tunable("momentum", momentum, V.momentum)
    p, tgt = V.power(power), V.target(target)
    tol = V.real("tolerance", tolerance, low=0.0, low_open=True)
    nest = bool(nesterov)
    name = "sgd" if mom == 0.0 else ("nesterov" if nest else "heavy_ball")
    name += " (tuned momentum)" if mom == V.TUNE else (f" (momentum {mom:g})" if mom else "")
    smin = s_min(problem, momentum=mom, nesterov=nest, power=p, target=tgt)
    emin = e_min(problem, momentum=mom, nesterov=nest, power=p, target=tgt)
    if definition == "mccandlish":
        return CriticalBatchResult(value=emin / smin, definition=definition, s_min=smin,
                                   e_min=emin, optimizer=name, power=p, target=tgt)
    if definition == "perfect_scaling":
        value = _log2_root(lambda z: 2.0 ** z * _relaxed_steps_at(problem, 2.0 ** z, p, mom, nest,
                                                                   tgt) / emin - (1.0 + tol))
    else:
        smin_relaxed = _relaxed_steps_at(problem, math.inf, p, mom, nest, tgt)
        value = _log2_root(lambda z: (1.0 + tol) * smin_relaxed
                           - _relaxed_steps_at(problem, 2.0 ** z, p, mom, nest, tgt))
    return CriticalBatchResult(value=value, definition=definition, s_min=smin, e_min=emin,
                               optimizer=name, power=p, target=tgt, tolerance=tol)
