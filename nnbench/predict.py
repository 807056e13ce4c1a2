"""From measurements to NQM predictions.

Three ways to get a noisy quadratic model for a network, and what it then predicts per optimizer:

1. **From a measured spectrum** (:func:`nqm_from_spectrum`, :func:`nqm_from_hessian`): curvatures
   h_i = top Hessian eigenvalues (Lanczos, ``nnbench.instruments.hessian_eigenvalues``) and, in the SAME
   eigenbasis u_i, the per-example gradient variance c_i = Var_n(u_i . g_n) and the distance to the
   quadratic's minimum theta_i = (u_i . g_bar) / h_i (Newton step along u_i). Only the top-k subspace
   is modelled; non-positive curvatures are dropped (the NQM has none).
2. **By fitting the two free scales** (:func:`fit_scales`) of a reference NQM (default: the paper's,
   ``nqm.NQM.paper()``, target 0.01) to measured steps-vs-B points: measured steps
   S(B) ~= steps_scale * S_nqm(B / batch_scale). Shapes come from the NQM, scales from the data;
   the scales are shared by all optimizers (they belong to the problem, not to the optimizer), so
   fitting them on SGD alone PREDICTS the other optimizers' curves. This ASSUMES the spectrum: the
   steps scale then absorbs a wrong condition number (``shared/spec/PREDICTION.md`` sections 1-2).
3. **By a physical fit on SGD** (:func:`fit_sgd`, :func:`predict_from_sgd`): with a tuned lr the NQM's
   steps are dimensionless, so there is NO steps scale; the spectrum shape h_i = 1/i, i = 1..d (C = H)
   has one parameter, the effective dimension d, fitted together with a noise (batch) scale to the
   SGD points only. SGD's plateau fixes d (its tuned S_min grows like d), the bend the batch scale.
   Momentum, Nesterov, Adam and K-FAC are then predicted out of sample at that d, with bootstrap
   intervals over the SGD trials.

Optimizer families (:data:`FAMILIES`): every nnbench optimizer is mapped to an NQM optimizer:

* ``sgd`` -> p = 0, no momentum; ``momentum`` / ``nesterov`` -> p = 0, momentum tuned (Zhang et al.
  section 3.2);
* ``adam`` -> p = 0.5 with momentum tuned, ``adam_nomomentum`` -> p = 0.5 without: Adam divides by the
  square root of a running mean of squared gradients; in the NQM's noise-dominated regime with C ~ H
  that second moment is ~ c / B ~ h (diagonal), so Adam's preconditioner is ~ H^(-1/2) (Zhang et al.
  section 3.3 and 4 make the same identification);
* ``kfac`` -> p = 0.75, ``kfac_momentum`` -> p = 0.75 with momentum tuned: K-FAC approximates the
  natural gradient F^(-1) ~ H^(-1) (p = 1), but its damping (H + lambda)^(-1) flattens the low
  curvatures, and p = 1 on an NQM would make every direction equally fast (condition number 1) and
  the critical batch size unbounded; 0.75 is the strongest preconditioner of the paper's Fig. 3 and
  stands for "damped natural gradient". Pass ``powers=`` to use another value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.optimize

import nqm

__all__ = [
    "FAMILIES",
    "Family",
    "nqm_from_spectrum",
    "nqm_from_hessian",
    "NQMCurve",
    "nqm_curve",
    "ScaleFit",
    "fit_scales",
    "Prediction",
    "predict",
    "SHAPE",
    "D_GRID",
    "d_grid",
    "CurveBank",
    "PhysicalFit",
    "fit_sgd",
    "OutOfSample",
    "PhysicalPrediction",
    "predict_from_sgd",
]


@dataclass(frozen=True)
class Family:
    """The NQM counterpart of an nnbench optimizer: preconditioner power, momentum (0, or "tune")."""

    power: float
    momentum: float | str
    nesterov: bool = False

    @property
    def label(self) -> str:
        mom = "tuned momentum" if self.momentum == "tune" else (
            "no momentum" if self.momentum == 0 else f"momentum {self.momentum:g}")
        return f"NQM p={self.power:g}, {mom}{' (Nesterov)' if self.nesterov else ''}"


FAMILIES: Mapping[str, Family] = {
    "sgd": Family(0.0, 0.0),
    "momentum": Family(0.0, "tune"),
    "nesterov": Family(0.0, "tune", nesterov=True),
    "adam": Family(0.5, "tune"),
    "adam_nomomentum": Family(0.5, 0.0),
    "kfac": Family(0.75, 0.0),
    "kfac_momentum": Family(0.75, "tune"),
}


def _family(optimizer: str, powers: Mapping[str, float] | None = None) -> Family:
    if optimizer not in FAMILIES:
        raise ValueError(f"optimizer: no NQM family for {optimizer!r}; known: {', '.join(FAMILIES)}")
    fam = FAMILIES[optimizer]
    if powers and optimizer in powers:
        p = float(powers[optimizer])
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"powers[{optimizer!r}] must be in [0, 1], got {powers[optimizer]!r}")
        fam = Family(p, fam.momentum, fam.nesterov)
    return fam


# ------------------------------------------------------------------------------ measured spectrum
def nqm_from_spectrum(curvatures, noise, x0sq, *, bins: int | None = None,
                      name: str = "measured spectrum") -> nqm.NQM:
    """An NQM from per-direction measurements in one eigenbasis.

    Args:
      curvatures: h_i (Hessian eigenvalues); directions with h_i <= 0 are dropped (an NQM has no
        negative curvature; at a non-minimum they are the directions it cannot describe).
      noise: c_i, per-example gradient variance along each direction (>= 0).
      x0sq: E[theta_i^2], squared distance to the minimum along each direction (>= 0).
      bins: ``None`` (one bin per direction) or a number of log-spaced bins ("accurate" binning).
    """
    h = np.asarray(curvatures, dtype=np.float64).reshape(-1)
    c = np.asarray(noise, dtype=np.float64).reshape(-1)
    x = np.asarray(x0sq, dtype=np.float64).reshape(-1)
    if not (h.size == c.size == x.size) or h.size == 0:
        raise ValueError(f"curvatures, noise and x0sq must be non-empty and of one length, got "
                         f"{h.size}, {c.size}, {x.size}")
    for nm, arr in (("curvatures", h), ("noise", c), ("x0sq", x)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{nm} must be finite")
    if np.any(c < 0) or np.any(x < 0):
        raise ValueError("noise and x0sq must be >= 0")
    keep = h > 0
    if not np.any(keep):
        raise ValueError("curvatures: no positive curvature to build an NQM from")
    return nqm.NQM.from_spectrum(h[keep], c=c[keep], x0sq=x[keep], bins=bins, name=name)


def nqm_from_hessian(model, loss_fn, x, y, *, k: int = 10, num_steps: int | None = None,
                     bins: int | None = None, seed: int = 0) -> nqm.NQM:
    """An NQM of ``model`` at its current parameters, measured on the batch (x, y).

    Curvatures: the k largest Hessian eigenvalues of the mean loss (Lanczos with full
    reorthogonalisation, ``nnbench.instruments.hessian_eigenvalues``), eigenvectors u_i. Noise:
    c_i = variance over the examples of u_i . g_n (per-example gradients g_n, ``torch.func``).
    Initial state: theta_i = (u_i . mean_n g_n) / h_i (the quadratic's minimum along u_i), x0sq_i =
    theta_i^2. Use a large batch: c_i is estimated from its examples.
    """
    from nnbench.instruments import hessian_eigenvalues
    from nnbench.instruments._functional import FlatModel, eval_mode

    eig = hessian_eigenvalues(model, loss_fn, x, y, k=k, num_steps=num_steps, seed=seed,
                              return_eigenvectors=True)
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        g = fm.per_example_gradients(x, y).detach()                # (N, P)
    u = eig.eigenvectors.detach().to(g.dtype)                       # (k, P)
    proj = (g @ u.T).double().cpu().numpy()                         # (N, k)
    h = np.asarray(eig.eigenvalues, dtype=np.float64)
    c = proj.var(axis=0, ddof=1) if proj.shape[0] > 1 else np.zeros(h.size)
    theta = np.where(h > 0, proj.mean(axis=0) / np.where(h > 0, h, 1.0), 0.0)
    return nqm_from_spectrum(h, c, theta**2, bins=bins, name=f"Hessian top-{k} (Lanczos)")


# ------------------------------------------------------------------------------ NQM curves
@dataclass(frozen=True, eq=False)
class NQMCurve:
    """Tuned steps and optimal (effective) lr of one NQM family on a dense batch-size grid.

    Attributes:
      family: the NQM optimizer; target: the NQM target risk.
      batch_sizes: the grid (finite, ascending); steps: tuned steps (smooth relaxation, real);
      effective_lr: optimal lr / (1 - momentum); s_inf: steps at B = inf.
      b_crit, s_min, e_min: McCandlish critical batch size and its limits (``nqm.critical_batch``).
    """

    family: Family
    target: float
    batch_sizes: np.ndarray
    steps: np.ndarray
    effective_lr: np.ndarray
    s_inf: float
    b_crit: float
    s_min: float
    e_min: float

    def log_steps(self, log_b: np.ndarray) -> np.ndarray:
        """log S(B) at log B, interpolated in log-log; perfect scaling (slope -1) below the grid and
        constant above it."""
        lb = np.log(self.batch_sizes)
        ls = np.log(self.steps)
        z = np.asarray(log_b, dtype=np.float64)
        out = np.interp(z, lb, ls)
        out = np.where(z < lb[0], ls[0] - (z - lb[0]), out)
        return np.where(z > lb[-1], math.log(self.s_inf), out)

    def log_effective_lr(self, log_b: np.ndarray) -> np.ndarray:
        """log of the optimal effective lr at log B (linear scaling below the grid, flat above)."""
        lb = np.log(self.batch_sizes)
        ll = np.log(self.effective_lr)
        z = np.asarray(log_b, dtype=np.float64)
        out = np.interp(z, lb, ll)
        return np.where(z < lb[0], ll[0] + (z - lb[0]), out)


def nqm_curve(family: Family, *, problem: nqm.NQM | None = None, target: float = 0.01,
              batch_sizes=None) -> NQMCurve:
    """Tuned NQM steps vs B for ``family`` (default grid 2^0 .. 2^30 in half octaves)."""
    problem = nqm.NQM.paper() if problem is None else problem
    B = np.asarray(2.0 ** np.arange(0.0, 30.5, 0.5) if batch_sizes is None else batch_sizes, float)
    s = nqm.batch_size_sweep(problem, batch_sizes=list(B) + [math.inf], powers=[family.power],
                             momentum=family.momentum, nesterov=family.nesterov, target=target)
    cb = nqm.critical_batch(problem, momentum=family.momentum, nesterov=family.nesterov,
                            power=family.power, target=target)
    # the relaxation is smooth in B except for small wiggles of lightly damped momentum bins;
    # a running minimum over increasing B keeps S(B) non-increasing, which tuned steps must be
    steps = np.minimum.accumulate(s.steps_relaxed[0])
    return NQMCurve(family=family, target=float(target), batch_sizes=B, steps=steps[:-1],
                    effective_lr=s.effective_lr[0][:-1].copy(), s_inf=float(steps[-1]),
                    b_crit=cb.value, s_min=cb.s_min, e_min=cb.e_min)


# ------------------------------------------------------------------------------ scale fit
@dataclass(frozen=True)
class ScaleFit:
    """measured S(B) ~= steps_scale * S_nqm(B / batch_scale), fitted by robust least squares on log S.

    Attributes:
      steps_scale, batch_scale: the two free scales.
      fitted_on: the optimizers whose points were fitted; n_points; residual_rms: rms of
        log(measured / fitted) over those points.
    """

    steps_scale: float
    batch_scale: float
    fitted_on: tuple[str, ...]
    n_points: int
    residual_rms: float

    def to_dict(self) -> dict:
        return {**self.__dict__, "fitted_on": list(self.fitted_on)}


def _points(measured: Mapping[str, tuple[Sequence[float], Sequence[float]]]):
    out = {}
    for opt, (bs, st) in measured.items():
        b = np.asarray(bs, dtype=np.float64).reshape(-1)
        s = np.asarray(st, dtype=np.float64).reshape(-1)
        if b.size != s.size:
            raise ValueError(f"measured[{opt!r}]: {b.size} batch sizes but {s.size} steps")
        if np.any(~np.isfinite(b)) or np.any(b < 1):
            raise ValueError(f"measured[{opt!r}]: batch sizes must be finite and >= 1")
        if np.any(~np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"measured[{opt!r}]: steps must be finite and > 0")
        out[opt] = (b, s)
    return out


def fit_scales(measured: Mapping[str, tuple[Sequence[float], Sequence[float]]],
               curves: Mapping[str, NQMCurve]) -> ScaleFit:
    """Fit (steps_scale, batch_scale) shared by all optimizers in ``measured``.

    Args:
      measured: optimizer -> (batch sizes, measured steps).
      curves: optimizer -> its NQM curve (:func:`nqm_curve`).

    A grid search over log batch_scale (steps_scale solved in closed form for each) picks the start of
    a soft-L1 least-squares refinement, so the fit does not depend on an initial guess.
    """
    pts = _points(measured)
    if sum(b.size for b, _ in pts.values()) < 2:
        raise ValueError("measured: need at least 2 points to fit two scales")
    for opt in pts:
        if opt not in curves:
            raise ValueError(f"curves: no NQM curve for {opt!r}")

    def resid(z):
        return np.concatenate([np.log(s) - z[0] - curves[o].log_steps(np.log(b) - z[1])
                               for o, (b, s) in pts.items()])

    best = None
    for zb in np.linspace(-25.0, 25.0, 201):
        r0 = resid(np.array([0.0, zb]))
        zs = float(np.median(r0))
        cost = float(np.sum(np.abs(r0 - zs)))
        if best is None or cost < best[0]:
            best = (cost, zs, zb)
    fit = scipy.optimize.least_squares(resid, np.array([best[1], best[2]]), loss="soft_l1", f_scale=0.1)
    r = resid(fit.x)
    return ScaleFit(steps_scale=math.exp(fit.x[0]), batch_scale=math.exp(fit.x[1]),
                    fitted_on=tuple(pts), n_points=int(r.size),
                    residual_rms=float(np.sqrt(np.mean(r * r))))


# ------------------------------------------------------------------------------ prediction
@dataclass(frozen=True, eq=False)
class Prediction:
    """The NQM's prediction for one optimizer, in the measured units (scaled by a :class:`ScaleFit`).

    Attributes:
      optimizer: nnbench name; family: its NQM counterpart.
      batch_sizes, steps: predicted steps-vs-B curve; effective_lr: NQM optimal effective lr at
        B / batch_scale (NQM units: multiply by an lr scale to compare with a network's lr).
      b_crit, s_min, e_min: batch_scale * B_crit, steps_scale * S_min, steps_scale * batch_scale * E_min.
    """

    optimizer: str
    family: Family
    batch_sizes: np.ndarray
    steps: np.ndarray
    effective_lr: np.ndarray
    b_crit: float
    s_min: float
    e_min: float

    def steps_at(self, batch_sizes) -> np.ndarray:
        """Predicted steps at the given batch sizes (log-log interpolation of the curve)."""
        return np.exp(np.interp(np.log(np.asarray(batch_sizes, float)), np.log(self.batch_sizes),
                                np.log(self.steps)))

    def to_dict(self) -> dict:
        return {"optimizer": self.optimizer, "power": self.family.power,
                "momentum": self.family.momentum, "nesterov": self.family.nesterov,
                "b_crit": self.b_crit, "s_min": self.s_min, "e_min": self.e_min}


def predict(optimizer: str, curve: NQMCurve, scales: ScaleFit, batch_sizes) -> Prediction:
    """Map an NQM curve into measured units with the fitted scales, at ``batch_sizes``."""
    B = np.asarray(batch_sizes, dtype=np.float64)
    if B.ndim != 1 or B.size == 0 or np.any(~np.isfinite(B)) or np.any(B <= 0):
        raise ValueError("batch_sizes must be a non-empty 1-D array of finite positive numbers")
    lb = np.log(B) - math.log(scales.batch_scale)
    return Prediction(optimizer=optimizer, family=curve.family, batch_sizes=B,
                      steps=scales.steps_scale * np.exp(curve.log_steps(lb)),
                      effective_lr=np.exp(curve.log_effective_lr(lb)),
                      b_crit=scales.batch_scale * curve.b_crit, s_min=scales.steps_scale * curve.s_min,
                      e_min=scales.steps_scale * scales.batch_scale * curve.e_min)


# ------------------------------------------------------------------------------ physical fit
SHAPE = "h_i = 1/i (i = 1..d), C = H, theta_0 ~ N(0, I)"


def d_grid(low: int, high: int) -> tuple[int, ...]:
    """Effective dimensions 2^(e/3) (three per octave, rounded) from ``low`` to ``high``."""
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"d range: {name} must be an integer >= 1, got {v!r}")
    if high < 2 * low:
        raise ValueError(f"d range: high must be at least 2 x low, got {low} .. {high}")
    e0, e1 = math.ceil(3 * math.log2(low) - 1e-9), math.floor(3 * math.log2(high) + 1e-9)
    return tuple(sorted({round(2.0 ** (e / 3.0)) for e in range(e0, e1 + 1)}))


# the effective dimensions the fit tries by default: 4 .. 2^14 (past the paper's 10^4), three per octave
D_GRID: tuple[int, ...] = d_grid(4, 16384)


class CurveBank:
    """NQM curves (:func:`nqm_curve`) of the paper-shaped problem ``SHAPE`` by (family, d), each
    computed once: the fit needs SGD's at every d of its grid, the predictions other families' only at
    the d values the fit and its bootstrap select.

    Args:
      target: NQM target risk (paper: 0.01). With a tuned lr the NQM's steps depend only on the
        spectrum's shape, the noise level and this target relative to the initial risk
        (``shared/spec/PREDICTION.md`` section 1), so there is no steps scale to fit.
      bins: problems with d > bins are binned ("accurate" binning) into this many bins.
    """

    def __init__(self, *, target: float = 0.01, bins: int = 64):
        if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
            raise ValueError(f"target must be a positive finite number, got {target!r}")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        self.target = float(target)
        self.bins = bins
        self._curves: dict = {}

    def problem(self, d: int) -> nqm.NQM:
        return nqm.NQM.paper(int(d), bins=None if d <= self.bins else self.bins)

    def curve(self, family: Family, d: int) -> NQMCurve:
        key = (family.power, family.momentum, family.nesterov, int(d))
        if key not in self._curves:
            self._curves[key] = nqm_curve(family, problem=self.problem(int(d)), target=self.target)
        return self._curves[key]


@dataclass(frozen=True)
class PhysicalFit:
    """SGD's measured S(B) ~= S_nqm(B / batch_scale; d): no steps scale (``SHAPE`` problem).

    Attributes:
      d: effective dimension = condition number of the spectrum h_i = 1/i (grid value).
      batch_scale: the noise (batch) scale: the network's B corresponds to the NQM's B / batch_scale.
      residual_rms: rms of log(measured / fitted) over the n_points SGD points.
      d_grid: the d values tried; profile: the rms at each (batch_scale optimised per d).
      target: the NQM target risk.
    """

    d: int
    batch_scale: float
    residual_rms: float
    n_points: int
    d_grid: tuple[int, ...]
    profile: tuple[float, ...]
    target: float

    @property
    def d_at_edge(self) -> bool:
        """The best d is the smallest or largest of the grid (the data want one outside it)."""
        return self.d in (self.d_grid[0], self.d_grid[-1])

    def scales(self) -> ScaleFit:
        """As a :class:`ScaleFit` with steps_scale 1 (for :func:`predict`)."""
        return ScaleFit(steps_scale=1.0, batch_scale=self.batch_scale, fitted_on=("sgd",),
                        n_points=self.n_points, residual_rms=self.residual_rms)


_ZB_GRID = np.linspace(-12.0, 25.0, 741)     # log batch_scale candidates, step 0.05


def _fit_batch_scale(log_b: np.ndarray, log_s: np.ndarray, curve: NQMCurve) -> tuple[float, float]:
    """(log batch_scale, sum of squared log residuals) minimising over log batch_scale."""
    def sse(zb):
        r = log_s - curve.log_steps(log_b - zb)
        return float(np.sum(r * r))

    resid = log_s[None, :] - curve.log_steps(log_b[None, :] - _ZB_GRID[:, None])
    i = int(np.argmin(np.sum(resid * resid, axis=1)))
    lo, hi = _ZB_GRID[max(i - 1, 0)], _ZB_GRID[min(i + 1, _ZB_GRID.size - 1)]
    res = scipy.optimize.minimize_scalar(sse, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    return (float(res.x), float(res.fun)) if res.fun <= sse(_ZB_GRID[i]) else (float(_ZB_GRID[i]), sse(_ZB_GRID[i]))


def fit_sgd(batch_sizes, steps, *, bank: CurveBank, d_grid: Sequence[int] = D_GRID) -> PhysicalFit:
    """Fit (d, batch_scale) to SGD's measured points, steps scale fixed at 1 (least squares on log S).

    Only SGD points enter (the signature takes one optimizer's points): every other optimizer's
    curve is then a prediction made without its data. For each d of ``d_grid`` the batch scale is
    optimised (grid, then bounded Brent); the d with the smallest residual is the fit. Physically,
    SGD's large-batch plateau fixes d (tuned S_min of h_i = 1/i grows like d) and the bend fixes
    the batch scale (the noise-to-signal ratio).
    """
    B = np.asarray(batch_sizes, dtype=np.float64).reshape(-1)
    S = np.asarray(steps, dtype=np.float64).reshape(-1)
    _points({"sgd": (B, S)})
    if np.unique(B).size < 3:
        raise ValueError(f"SGD points: need at least 3 batch sizes to fit d and a batch scale, got "
                         f"{np.unique(B).size}")
    grid = tuple(int(d) for d in d_grid)
    if len(grid) < 2 or any(d < 1 for d in grid) or list(grid) != sorted(set(grid)):
        raise ValueError("d_grid must hold at least 2 ascending distinct integers >= 1")
    lb, ls = np.log(B), np.log(S)
    best, profile = None, []
    for d in grid:
        zb, sse = _fit_batch_scale(lb, ls, bank.curve(FAMILIES["sgd"], d))
        profile.append(math.sqrt(sse / B.size))
        if best is None or sse < best[2]:
            best = (d, zb, sse)
    return PhysicalFit(d=best[0], batch_scale=math.exp(best[1]), residual_rms=math.sqrt(best[2] / B.size),
                       n_points=int(B.size), d_grid=grid, profile=tuple(profile), target=bank.target)


@dataclass(frozen=True, eq=False)
class OutOfSample:
    """One optimizer's prediction from the SGD fit, with bootstrap intervals.

    Attributes:
      prediction: from the fit to all SGD points (:class:`Prediction`, steps on its batch-size grid).
      b_crit, s_min, e_min: the NQM's exact limits (B -> inf, B -> 0), as
        :class:`nnbench.bootstrap.Interval` over the refits.
      as_measured: {"b_crit", "s_min", "e_min"} -> Interval of the SAME McCandlish fit the measured
        side uses (``nqm.critical_batch(batch_sizes=, steps=)``) applied to the predicted steps at the
        measured batch sizes: the like-for-like number (a finite range of B biases the hyperbola fit,
        upward in B_crit when the range ends near it). None without measured batch sizes.
      steps_band: (2, n) bootstrap band of the predicted steps on ``prediction.batch_sizes``.
    """

    prediction: Prediction
    b_crit: object
    s_min: object
    e_min: object
    steps_band: np.ndarray
    as_measured: dict | None = None


@dataclass(frozen=True, eq=False)
class PhysicalPrediction:
    """The SGD-only physical fit and every optimizer's prediction from it (see :func:`predict_from_sgd`).

    Attributes:
      fit: the fit to all SGD points; d, batch_scale: :class:`nnbench.bootstrap.Interval` over refits.
      predictions: optimizer -> :class:`OutOfSample` (SGD's is its fit, the others out of sample).
      powers: optimizer -> preconditioner power used; replicates: refits that succeeded of
      requested; level: interval coverage.
      caveat: why the SGD points constrain the fit only weakly (their own McCandlish fit puts
        B_crit outside the measured range, so the plateau that fixes d, or the perfect-scaling
        regime that fixes the batch scale, was not reached), or None.
    """

    fit: PhysicalFit
    d: object
    batch_scale: object
    predictions: dict
    powers: dict
    replicates: int
    requested: int
    level: float
    caveat: str | None = None


def predict_from_sgd(sgd_trials, optimizers: Sequence[str], *, bank: CurveBank, batch_sizes,
                     powers: Mapping[str, float] | None = None, d_grid: Sequence[int] = D_GRID,
                     n_boot: int = 200, level: float = 0.95, seed: int = 0,
                     measured_batch_sizes: Mapping[str, Sequence[float]] | None = None) -> PhysicalPrediction:
    """Fit (d, batch_scale) on SGD's trials alone and predict ``optimizers`` out of sample.

    Args:
      sgd_trials: batch size -> steps to result of each SGD trial (nan / None: not COMPLETE; the
        point is the fewest), or ``nnbench.bootstrap.Seeds`` of the best configuration (the point is
        the median over seeds, and the bootstrap resamples the seeds); the only data this function
        sees, so no other optimizer's measurement can enter the fit.
      optimizers: names whose curves to predict (``FAMILIES``; "sgd" gives the fitted curve).
      bank: the :class:`CurveBank` (NQM target, binning; caches curves across calls).
      batch_sizes: grid of the predicted steps curves (and bands).
      powers: optional {optimizer: preconditioner power} (e.g. measured with
        ``nnbench.instruments.effective_power``) replacing the ``FAMILIES`` default.
      d_grid: the d values of the fit.
      n_boot, level, seed: the bootstrap (resample the SGD studies, then each one's trials or seeds,
        refit, re-predict) and the coverage of its percentile intervals.
      measured_batch_sizes: optional {optimizer: batch sizes it was measured at} (the design, not its
        steps): the predicted curve is sampled there and fitted like the measurements (``as_measured``).

    Raises ValueError if the SGD points cannot support the fit (fewer than 3 batch sizes, steps not
    falling with B) or the fit selects a d at the edge of ``d_grid``.
    """
    from nnbench.bootstrap import (
        Interval,
        percentile_interval,
        point_fit,
        resample,
        study_points,
        unsupported,
    )

    B, S = study_points(sgd_trials)
    reason = unsupported(B, S) if B.size >= 3 else f"only {B.size} SGD batch size(s) with a COMPLETE trial"
    # nqm.fit's refusals of rising or flat points and of too few batch sizes leave nothing to fit;
    # the other reasons (B_crit beyond the measured range) are caveats of the measured side only
    if reason is not None and ("do not decrease" in reason or "at least 3 distinct" in reason
                               or reason.startswith("only")):
        raise ValueError(f"SGD points cannot support the physical fit: {reason}")
    families = {o: _family(o, powers) for o in optimizers}
    grid_b = np.asarray(batch_sizes, dtype=np.float64)
    fit = fit_sgd(B, S, bank=bank, d_grid=d_grid)
    if fit.d_at_edge:
        raise ValueError(f"the SGD fit selects d = {fit.d}, the edge of the d grid [{fit.d_grid[0]}, "
                         f"{fit.d_grid[-1]}]: the spectrum shape {SHAPE} cannot describe these points")

    at = {o: np.asarray(b, dtype=np.float64) for o, b in (measured_batch_sizes or {}).items()
          if o in families and np.unique(b).size >= 2 and len(b) >= 3}

    def one(f: PhysicalFit):
        out = {}
        for o, fam in families.items():
            curve = bank.curve(fam, f.d)
            p = predict(o, curve, f.scales(), grid_b)
            fitted = None
            if o in at:
                steps = np.exp(curve.log_steps(np.log(at[o] / f.batch_scale)))
                try:
                    fitted = point_fit(at[o], steps)
                except ValueError:      # the predicted points do not determine B_crit either
                    fitted = None
            out[o] = (p, fitted)
        return out

    point = one(fit)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        b, s = study_points(resample(sgd_trials, rng))
        if np.unique(b).size < 3:
            continue
        f = fit_sgd(b, s, bank=bank, d_grid=fit.d_grid)
        reps.append((f, one(f)))
    preds = {}
    fit_names = {"b_crit": "value", "s_min": "s_min", "e_min": "e_min"}
    for o in families:
        p0, f0 = point[o]
        vals = {q: np.array([getattr(r[1][o][0], q) for r in reps]) for q in fit_names}
        band = (np.array([percentile_interval(np.log([r[1][o][0].steps[j] for r in reps]), level)
                          for j in range(grid_b.size)]).T if reps else np.full((2, grid_b.size), math.nan))
        as_measured = None
        if f0 is not None:
            fitted = [r[1][o][1] for r in reps if r[1][o][1] is not None]
            as_measured = {q: Interval(getattr(f0, a), *percentile_interval([getattr(f, a) for f in fitted], level))
                           for q, a in fit_names.items()}
        preds[o] = OutOfSample(prediction=p0,
                               **{q: Interval(getattr(p0, q), *percentile_interval(vals[q], level)) for q in vals},
                               steps_band=np.exp(band), as_measured=as_measured)
    return PhysicalPrediction(
        fit=fit, d=Interval(float(fit.d), *percentile_interval([r[0].d for r in reps], level)),
        batch_scale=Interval(fit.batch_scale, *percentile_interval([r[0].batch_scale for r in reps], level)),
        predictions=preds, powers={o: fam.power for o, fam in families.items()}, replicates=len(reps),
        requested=n_boot, level=level, caveat=reason)
