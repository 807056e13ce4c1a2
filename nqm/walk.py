"""SGD's walk through the NQM, in closed form: expected loss on the segment between consecutive
iterates and the correlation of consecutive mini-batch gradients (the quantities Xing et al. 2018,
"A Walk with SGD", section 3, measure on real networks).

Plain (optionally preconditioned) SGD on one bin of curvature h, noise variance sigma^2 = c / B,
k = h^(1-p): ``x' = u x - lr h^-p xi`` with ``u = 1 - lr k`` and ``xi ~ N(0, sigma^2)`` the noise of
the mini-batch gradient ``g = h x + xi`` used for the step. With ``m_t = E[x_t^2]`` (paper eqn. 3/4:
``m_t = u^(2t) (m_0 - m_inf) + m_inf``, ``m_inf = lr^2 h^-2p sigma^2 / (lr k (2 - lr k))``):

* ``E[x_t x_{t+1}] = u m_t`` and ``m_{t+1} = u^2 m_t + lr^2 h^-2p sigma^2``;
* the expected loss at ``x_t + s (x_{t+1} - x_t)`` is a quadratic in s,
  ``1/2 sum h [(1-s)^2 m_t + 2 s (1-s) E[x_t x_{t+1}] + s^2 m_{t+1}]`` (weighted by bin counts): its
  minimum over s is the "valley floor" between the two iterates;
* ``E<g_t, g_{t+1}> = sum h^2 u m_t - lr h^(1-p) sigma^2`` (x_{t+1} carries -lr h^-p xi_t),
  ``E|g_t|^2 = sum h^2 m_t + sigma^2``.

The cosine between consecutive gradients is a ratio of random variables; :class:`WalkStats` reports
the RATIO OF EXPECTATIONS ``E<g_t, g_{t+1}> / sqrt(E|g_t|^2 E|g_{t+1}|^2)``, which the cosine
concentrates on when many dimensions contribute (d = 10^4 in the paper's problem; checked against
Monte Carlo in ``tests/nqm/test_walk.py``). At the steady state it equals ``-lr h / 2`` on one
dimension, independent of B. On the paper's spectrum (h_i = 1/i) the gradient norm is carried by a
few high-curvature dimensions, so early in training and at large B the cosine does NOT concentrate;
:func:`gradient_cosine_monte_carlo` samples it (mean and spread over independent runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nqm import _validate as V
from nqm.optimizers import Optimizer
from nqm.problem import NQM

__all__ = ["WalkStats", "walk_stats", "CosineSample", "gradient_cosine_monte_carlo"]


@dataclass(frozen=True, eq=False)
class WalkStats:
    """Exact expectations along plain SGD's walk at the step counts ``steps`` (arrays of its
    shape).

    Attributes:
      steps: t (number of updates done; ``inf`` = steady state).
      loss: E L(theta_t) (the risk after t updates, as ``nqm.risk``).
      loss_next: E L(theta_{t+1}).
      cross: 1/2 sum counts h E[theta_t theta_{t+1}].
      grad_dot: E <g_t, g_{t+1}> (consecutive mini-batch gradients).
      grad_sq: E |g_t|^2.
      grad_sq_next: E |g_{t+1}|^2.
      lr, batch_size, power: the SGD run (constant learning rate, P = H^-power).
    """

    steps: np.ndarray
    loss: np.ndarray
    loss_next: np.ndarray
    cross: np.ndarray
    grad_dot: np.ndarray
    grad_sq: np.ndarray
    grad_sq_next: np.ndarray
    lr: float
    batch_size: float
    power: float

    def segment_loss(self, s) -> np.ndarray:
        """Expected loss at ``theta_t + s (theta_{t+1} - theta_t)``, shape ``steps.shape + s.shape``
        (s = 0: theta_t, s = 1: theta_{t+1}; any real s)."""
        s = np.asarray(s, dtype=np.float64)
        if not np.all(np.isfinite(s)):
            raise ValueError("s must be finite")
        q0, q1, q2 = (np.expand_dims(a, tuple(range(a.ndim, a.ndim + s.ndim)))
                      for a in (self.loss, self.cross, self.loss_next))
        return (1.0 - s) ** 2 * q0 + 2.0 * s * (1.0 - s) * q1 + s * s * q2

    @property
    def curvature(self) -> np.ndarray:
        """Second-order coefficient of the segment quadratic, ``q0 - 2 q1 + q2 = 1/2 E|h^(1/2)
        (theta_{t+1} - theta_t)|^2`` (>= 0)."""
        return self.loss - 2.0 * self.cross + self.loss_next

    @property
    def floor_s(self) -> np.ndarray:
        """Where on the segment the expected loss is lowest (the valley floor), s in R."""
        return (self.loss - self.cross) / self.curvature

    @property
    def floor_loss(self) -> np.ndarray:
        """Lowest expected loss on the line through theta_t and theta_{t+1}."""
        return self.loss - (self.loss - self.cross) ** 2 / self.curvature

    @property
    def valley_s(self) -> np.ndarray:
        """Where on the segment itself (s in [0, 1]) the expected loss is lowest: Xing et al.'s
        valley floor between two iterates (1 when the loss falls all the way to theta_{t+1})."""
        return np.clip(self.floor_s, 0.0, 1.0)

    @property
    def valley_loss(self) -> np.ndarray:
        """Lowest expected loss on the segment [theta_t, theta_{t+1}]."""
        s = self.valley_s
        return ((1.0 - s) ** 2 * self.loss + 2.0 * s * (1.0 - s) * self.cross
                + s * s * self.loss_next)

    @property
    def gradient_cosine(self) -> np.ndarray:
        """``E<g_t, g_{t+1}> / sqrt(E|g_t|^2 E|g_{t+1}|^2)``: a ratio of expectations, the value the
        cosine of consecutive gradients concentrates on in high dimension (not E[cos])."""
        return self.grad_dot / np.sqrt(self.grad_sq * self.grad_sq_next)


def _steps_array(steps) -> np.ndarray:
    try:
        ts = np.asarray(steps, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("steps must be integers >= 0 (or inf for the steady state)") from None
    if ts.ndim > 1 or np.any(np.isnan(ts)) or np.any(ts < 0) or np.any(np.isneginf(ts)):
        raise ValueError("steps must be a scalar or 1-D array of integers >= 0 (or inf)")
    finite = ts[np.isfinite(ts)]
    if np.any(finite != np.floor(finite)):
        raise ValueError("steps must be integers (numbers of updates) or inf")
    return ts


def walk_stats(problem: NQM, steps, *, lr: float, batch_size: float,
               power: float = 0.0) -> WalkStats:
    """Exact second-moment statistics of consecutive SGD iterates and gradients (see module doc).

    Args:
      problem: the NQM.
      steps: t, a number or 1-D array of integers >= 0; ``math.inf`` for the steady state.
      lr: constant learning rate (below the stability limit 2 / max h^(1-p)).
      batch_size: B >= 1 (``math.inf``: noise-free gradients).
      power: preconditioner P = H^-power, power in [0, 1].

    Example:
      >>> import math
      >>> from nqm import NQM
      >>> one = NQM.from_spectrum([1.0], bins=None)
      >>> cos = walk_stats(one, math.inf, lr=0.5, batch_size=8).gradient_cosine  # -lr h / 2
      >>> round(float(cos), 12)
      -0.25
    """
    if not isinstance(problem, NQM):
        raise ValueError(f"problem must be an nqm.NQM, got {type(problem).__name__}")
    ts = _steps_array(steps)
    B = V.batch_size(batch_size)
    opt = Optimizer(lr, 0.0, False, power)
    opt.check_stable(problem)
    a, p = opt.lr, opt.power
    h, w = problem.h, problem.counts
    k, _ = problem.preconditioned(p)
    sigma2 = np.zeros_like(h) if math.isinf(B) else problem.c / B
    step_noise = a * a * h ** (-2.0 * p) * sigma2     # lr^2 h^-2p sigma^2, added every step
    ak = a * k
    u = 1.0 - ak
    m_inf = step_noise / (ak * (2.0 - ak))               # 1 - u^2 = ak (2 - ak), no cancellation
    # u^(2t) = exp(2 t log|u|), log|u| via log1p for small lr k (accurate for t up to ~1e15)
    with np.errstate(divide="ignore"):
        log_u = np.where(ak < 1.0, np.log1p(-np.minimum(ak, 1.0)), np.log(np.abs(u)))
    tt = ts[..., None]                                    # (..., n_bins)
    with np.errstate(invalid="ignore"):
        decay = np.where(tt == 0.0, 1.0, np.exp(2.0 * tt * log_u))
    decay = np.where(np.isinf(tt), 0.0, decay)
    m = decay * (problem.x0sq - m_inf) + m_inf           # E[x_t^2]
    m_next = u * u * m + step_noise                       # E[x_{t+1}^2]
    xx = u * m                                            # E[x_t x_{t+1}]
    half = 0.5 * w * h
    g_dot = w * (h * h * xx - a * h ** (1.0 - p) * sigma2)
    return WalkStats(
        steps=ts, loss=np.sum(half * m, axis=-1), loss_next=np.sum(half * m_next, axis=-1),
        cross=np.sum(half * xx, axis=-1), grad_dot=np.sum(g_dot, axis=-1),
        grad_sq=np.sum(w * (h * h * m + sigma2), axis=-1),
        grad_sq_next=np.sum(w * (h * h * m_next + sigma2), axis=-1),
        lr=a, batch_size=B, power=p)


@dataclass(frozen=True, eq=False)
class CosineSample:
    """Monte Carlo estimate of the cosine between consecutive mini-batch gradients.

    Attributes:
      steps: t (sorted, unique); the cosine is between g_t and g_{t+1}.
      mean: mean over runs of cos(g_t, g_{t+1}).
      std: standard deviation over runs (the spread of one run, not the error of the mean).
      runs: number of independent runs; seed: the generator seed.
      lr, batch_size, power: the SGD run.
    """

    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    runs: int
    seed: int
    lr: float
    batch_size: float
    power: float


def gradient_cosine_monte_carlo(problem: NQM, steps, *, lr: float, batch_size: float,
                                power: float = 0.0, runs: int = 16,
                                seed: int = 0) -> CosineSample:
    """Sample cos(g_t, g_{t+1}) by simulating ``runs`` independent SGD runs on every dimension of
    ``problem`` (each bin expanded to ``counts`` dimensions, which must be integers).

    Cost: O(runs * d * max(steps)) (about 1 s for 16 runs of d = 10^4 over 1000 steps).

    Args:
      problem: the NQM (e.g. ``NQM.paper(bins=None)``, the exact d = 10^4 spectrum).
      steps: integers t >= 0 (any order; returned sorted and unique).
      lr, batch_size, power: plain SGD with P = H^-power (stable lr, B >= 1 or ``math.inf``).
      runs: independent runs >= 2; seed: seed of ``numpy.random.default_rng``.
    """
    if not isinstance(problem, NQM):
        raise ValueError(f"problem must be an nqm.NQM, got {type(problem).__name__}")
    ts = _steps_array(steps)
    if ts.size == 0 or not np.all(np.isfinite(ts)):
        raise ValueError("steps must be finite integers >= 0 for the Monte Carlo")
    ts = np.unique(ts).astype(np.int64)
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 2:
        raise ValueError(f"runs must be an integer >= 2, got {runs!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    B = V.batch_size(batch_size)
    opt = Optimizer(lr, 0.0, False, power)
    opt.check_stable(problem)
    counts = problem.counts
    if np.any(counts != np.round(counts)) or counts.sum() > 10_000_000:
        raise ValueError("problem.counts must be integers (at most 10^7 dimensions in all) "
                         "to expand the bins into dimensions")
    reps = counts.astype(np.int64)
    h = np.repeat(problem.h, reps)
    sd = np.zeros_like(h) if math.isinf(B) else np.sqrt(np.repeat(problem.c, reps) / B)
    step = opt.lr * h ** (-opt.power)
    rng = np.random.default_rng(int(seed))
    x = rng.standard_normal((runs, h.size)) * np.sqrt(np.repeat(problem.x0sq, reps))
    want = set(ts.tolist())
    out = np.empty((ts.size, runs))
    g, g_prev, hx = (np.empty_like(x) for _ in range(3))     # in place: no (runs, d) temporaries
    j = 0
    for t in range(int(ts[-1]) + 2):
        g_prev, g = g, g_prev
        rng.standard_normal(out=g)
        g *= sd
        np.multiply(h, x, out=hx)
        g += hx                                            # mini-batch gradient h x + noise
        if t - 1 in want:
            num = np.einsum("rd,rd->r", g_prev, g)
            out[j] = num / np.sqrt(np.einsum("rd,rd->r", g_prev, g_prev) *
                                   np.einsum("rd,rd->r", g, g))
            j += 1
        np.multiply(step, g, out=hx)
        x -= hx
    return CosineSample(steps=ts.astype(np.float64), mean=out.mean(axis=1),
                        std=out.std(axis=1, ddof=1), runs=int(runs), seed=int(seed),
                        lr=opt.lr, batch_size=B, power=opt.power)
