"""From measurements to NQM predictions.

Two ways to get a noisy quadratic model for a network, and what it then predicts per optimizer:

1. **From a measured spectrum** (:func:`nqm_from_spectrum`, :func:`nqm_from_hessian`): curvatures
   h_i = top Hessian eigenvalues (Lanczos, ``nnbench.instruments.hessian_eigenvalues``) and, in the SAME
   eigenbasis u_i, the per-example gradient variance c_i = Var_n(u_i . g_n) and the distance to the
   quadratic's minimum theta_i = (u_i . g_bar) / h_i (Newton step along u_i). Only the top-k subspace
   is modelled; non-positive curvatures are dropped (the NQM has none).
2. **By fitting the two free scales** (:func:`fit_scales`) of a reference NQM (default: the paper's,
   ``nqm.NQM.paper()``, target 0.01) to measured steps-vs-B points: measured steps
   S(B) ~= steps_scale * S_nqm(B / batch_scale). Shapes come from the NQM, scales from the data;
   the scales are shared by all optimizers (they belong to the problem, not to the optimizer), so
   fitting them on SGD alone PREDICTS the other optimizers' curves.

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
