"""Slow, obviously correct NumPy references for the noisy quadratic model (NQM).

Everything here is written straight from the update equations of Zhang et al. 2019 ("Which
Algorithmic Choices Matter at Which Batch Sizes?", NeurIPS 2019; the maths is restated in
``shared/spec/NQM.md``). It never imports ``nqm``: the fast package is tested AGAINST these functions,
so they must not share code or formalism with it. Loops over time are fine; speed is not a goal.

The model, per dimension i (all dimensions are independent):

* loss ``1/2 h_i x_i^2``; one gradient query returns ``h_i x_i + eps``, ``eps ~ N(0, c_i)``;
  a mini-batch of ``batch_size`` queries averages them, so its noise ``xi`` has variance ``c_i / B``;
* ``x_0 ~ N(0, x0sq)`` (mean 0, ``E[x_0^2] = x0sq``), velocity ``v_0 = 0``, average ``xbar_0 = x_0``;
* preconditioner ``P = h^-power``; the preconditioned gradient is ``g = h^-p (h x + xi)``;
* heavy ball (paper eqn. 5): ``v' = beta v + g``, ``x' = x - lr v'`` (``beta = 0``: plain SGD);
* Nesterov (PyTorch's form): ``v' = beta v + g``, ``x' = x - lr (g + beta v')``;
* EMA of the iterates with decay ``gamma``: ``xbar' = gamma xbar + (1 - gamma) x'``; the risk is then
  measured on ``xbar``;
* risk ``1/2 sum_i counts_i h_i E[x_i^2]`` (``counts``: weights of binned eigenvalues, default 1).

``lr`` and ``momentum`` are scalars or per-step schedules of length ``steps`` (step t uses ``lr[t]``).
Risk curves are returned for ``t = 0 .. steps`` (``steps + 1`` values, index = number of updates).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "second_moments_recurrence",
    "monte_carlo_risk",
    "official_binning",
    "brute_force_steps_to_target",
    "lower_bound_steps",
    "sgd_risk_closed_form",
    "closed_form_risk",
]

# Above this batch size monte_carlo_risk samples the mini-batch mean N(0, c/B) directly instead of
# averaging B draws of N(0, c): averaging costs B normals per dimension, chain and step.
MAX_EXACT_BATCH = 64


# ----------------------------------------------------------------------------------------------
# Input checking (clear ValueErrors that name the argument)
# ----------------------------------------------------------------------------------------------
def _positive_vector(name: str, value) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0")
    return arr


def _per_dimension(name: str, value, d: int) -> np.ndarray:
    """A non-negative finite scalar or length-d array, broadcast to length d."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(d, float(arr))
    if arr.shape != (d,):
        raise ValueError(f"{name} must be a scalar or have shape ({d},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return arr


def _schedule(name: str, value, steps: int, low: float, high: float) -> np.ndarray:
    """A scalar or a length-steps array with every entry in [low, high], as a length-steps array."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(steps, float(arr))
    if arr.shape != (steps,):
        raise ValueError(f"{name} must be a scalar or have shape ({steps},) (one value per step), "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < low) or np.any(arr > high):
        raise ValueError(f"{name} must be finite and in [{low}, {high}]")
    return arr


def _check_common(h, c, x0sq, lr, batch_size, steps, momentum, power, ema, counts):
    h = _positive_vector("h", h)
    d = h.size
    c = _per_dimension("c", c, d)
    x0sq = _per_dimension("x0sq", x0sq, d)
    counts = np.ones(d) if counts is None else _per_dimension("counts", counts, d)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not (isinstance(power, (int, float, np.number)) and math.isfinite(power) and power >= 0):
        raise ValueError(f"power must be a finite number >= 0, got {power!r}")
    if ema is not None and not (isinstance(ema, (int, float, np.number)) and 0 <= ema < 1):
        raise ValueError(f"ema must be None or a decay in [0, 1), got {ema!r}")
    lr = _schedule("lr", lr, int(steps), 0.0, math.inf)
    momentum = _schedule("momentum", momentum, int(steps), 0.0, 1.0)
    return h, c, x0sq, lr, int(batch_size), int(steps), momentum, float(power), ema, counts


# ----------------------------------------------------------------------------------------------
# Exact second moments, step by step
# ----------------------------------------------------------------------------------------------
def second_moments_recurrence(h, c, x0sq, lr, batch_size, steps, *, momentum=0.0, nesterov=False,
                              power=0.0, ema=None, counts=None) -> np.ndarray:
    """Exact expected total risk ``1/2 sum_i counts_i h_i E[x_i^2]`` for t = 0 .. steps.

    Tracks the second moments X = E[x^2], V = E[v^2], C = E[x v] (and, with an EMA, Y = E[xbar^2],
    Z = E[x xbar], W = E[v xbar]) of every dimension, expanding the expectation of the products of
    the update equations term by term (the noise of step t is independent of the state before it).
    With k = h^(1-p) (preconditioned curvature) and n = h^(-2p) c / B (variance of the preconditioned
    mini-batch noise), one step of both momentum forms reads

        v' = k x + beta v + q xi                    (q = h^-p, Var(q xi) = n)
        x' = r x - s v - w q xi

    heavy ball (paper eqn. 5, appendix B):   r = 1 - lr k,            s = lr beta,    w = lr
    Nesterov (v' = beta v + g, x' = x - lr (g + beta v')):
                                             r = 1 - lr (1 + beta) k, s = lr beta^2,  w = lr (1 + beta)

    and plain / preconditioned SGD is heavy ball with beta = 0 (paper eqn. 4 and section 3.3).

    Args:
      h: curvatures h_i > 0, shape (d,).
      c: gradient-noise variance per example, scalar or (d,) (the paper uses c = h).
      x0sq: E[x_0^2] per dimension, scalar or (d,) (the paper uses 1).
      lr: learning rate, scalar or per-step array of shape (steps,).
      batch_size: B >= 1; the mini-batch noise variance is c / B.
      steps: number of updates T.
      momentum: beta in [0, 1], scalar or per-step array (0: SGD).
      nesterov: use PyTorch's Nesterov form instead of heavy ball.
      power: preconditioner P = h^-power (paper section 3.3).
      ema: decay gamma of an exponential moving average of the iterates, or None; with an EMA the
        risk is measured on xbar.
      counts: weight of each dimension (bin counts), default 1.

    Returns:
      float64 array of shape (steps + 1,): the total risk after t updates. A diverging run gives
      inf / nan (no error: that is the exact answer of the recurrence in floating point).
    """
    h, c, x0sq, lr, batch_size, steps, momentum, power, ema, counts = _check_common(
        h, c, x0sq, lr, batch_size, steps, momentum, power, ema, counts)
    k = h ** (1.0 - power)                     # curvature seen through the preconditioner
    n = h ** (-2.0 * power) * c / batch_size   # variance of h^-p xi
    weight = 0.5 * counts * h                  # risk = sum weight * E[x^2] (measured with h, not k)

    X = x0sq.copy()            # E[x^2]
    V = np.zeros_like(X)       # E[v^2]
    C = np.zeros_like(X)       # E[x v]
    Y = x0sq.copy()            # E[xbar^2]   (xbar_0 = x_0)
    Z = x0sq.copy()            # E[x xbar]
    W = np.zeros_like(X)       # E[v xbar]

    risk = np.empty(steps + 1)
    risk[0] = np.sum(weight * (Y if ema is not None else X))
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            a, beta = lr[t], momentum[t]
            if nesterov:
                r, s, w = 1.0 - a * (1.0 + beta) * k, a * beta * beta, a * (1.0 + beta)
            else:
                r, s, w = 1.0 - a * k, a * beta, a
            # E[product of the new values] from the old moments; the noise is independent of them.
            X_new = r * r * X + s * s * V - 2.0 * r * s * C + w * w * n
            V_new = k * k * X + beta * beta * V + 2.0 * k * beta * C + n
            C_new = r * k * X + (r * beta - s * k) * C - s * beta * V - w * n
            if ema is not None:
                g = ema
                xbar_x_new = r * Z - s * W            # E[xbar x'] (xbar is before the step)
                xbar_v_new = k * Z + beta * W         # E[xbar v']
                Y = g * g * Y + 2.0 * g * (1.0 - g) * xbar_x_new + (1.0 - g) ** 2 * X_new
                Z = g * xbar_x_new + (1.0 - g) * X_new
                W = g * xbar_v_new + (1.0 - g) * C_new
            X, V, C = X_new, V_new, C_new
            risk[t + 1] = np.sum(weight * (Y if ema is not None else X))
    return risk


def sgd_risk_closed_form(h, c, x0sq, lr, batch_size, t, counts=None) -> np.ndarray:
    """Paper eqn. 4 for plain SGD with a constant rate, per t (array of step counts):

        E[l_t] = (1 - a h)^{2t} E[l_0] + a c / (2 B (2 - a h)) (1 - (1 - a h)^{2t}),

    summed over dimensions with weights ``counts``. Requires a h != 2.
    """
    h = _positive_vector("h", h)
    c = _per_dimension("c", c, h.size)
    x0sq = _per_dimension("x0sq", x0sq, h.size)
    counts = np.ones(h.size) if counts is None else _per_dimension("counts", counts, h.size)
    t = np.asarray(t, dtype=np.float64)[..., None]
    decay = (1.0 - lr * h) ** (2.0 * t)
    per_dim = decay * 0.5 * h * x0sq + lr * c / (2.0 * batch_size * (2.0 - lr * h)) * (1.0 - decay)
    return np.sum(counts * per_dim, axis=-1)


def closed_form_risk(h, c, x0sq, lr, batch_size, t, *, momentum=0.0, nesterov=False, power=0.0,
                     counts=None) -> float:
    """Total risk after t updates with constant hyperparameters from the closed form of
    ``shared/spec/NQM.md`` section 2, one 2x2 matrix equation per dimension, with library linear
    algebra: the state (x, v) follows ``s' = A s + b (q xi)`` with the A, b of
    ``second_moments_recurrence`` (A = [[r, -s], [k, beta]], b = [-w, 1]), so
    ``S_t = A^t (S_0 - S_inf) A^tT + S_inf`` with ``S_inf`` from ``scipy.linalg``'s discrete
    Lyapunov solver and ``A^t`` from ``numpy.linalg.matrix_power`` (t a non-negative integer).
    Accurate to about t * 1e-16 relative; meant for t up to ~10^6.
    """
    import scipy.linalg

    h, c, x0sq, lr, batch_size, _, momentum, power, _, counts = _check_common(
        h, c, x0sq, lr, batch_size, 1, momentum, power, None, counts)
    a, beta = float(lr[0]), float(momentum[0])
    k = h ** (1.0 - power)
    n = h ** (-2.0 * power) * c / batch_size
    if nesterov:
        r, s, w = 1.0 - a * (1.0 + beta) * k, a * beta * beta, a * (1.0 + beta)
    else:
        r, s, w = 1.0 - a * k, a * beta, a
    total = 0.0
    for i in range(h.size):
        A = np.array([[r[i], -s], [k[i], beta]])
        b = np.array([-w, 1.0])
        S_inf = scipy.linalg.solve_discrete_lyapunov(A, n[i] * np.outer(b, b))
        P = np.linalg.matrix_power(A, int(t))
        S0 = np.array([[x0sq[i], 0.0], [0.0, 0.0]])
        S = P @ (S0 - S_inf) @ P.T + S_inf
        total += 0.5 * counts[i] * h[i] * S[0, 0]
    return total


# ----------------------------------------------------------------------------------------------
# Monte Carlo simulation of the stochastic process itself
# ----------------------------------------------------------------------------------------------
def monte_carlo_risk(h, c, x0sq, lr, batch_size, steps, *, momentum=0.0, nesterov=False, power=0.0,
                     ema=None, counts=None, n_runs=4000, seed=0, max_exact_batch=MAX_EXACT_BATCH):
    """Sample mean and standard error of the total risk over ``n_runs`` independent runs.

    Simulates the optimizer on the NQM exactly as defined in the module docstring: x_0 drawn from
    N(0, x0sq), fresh mini-batch noise every step. The mini-batch noise is the MEAN of
    ``batch_size`` independent N(0, c) gradient-noise draws when ``batch_size <= max_exact_batch``
    (this checks the c / B law instead of assuming it); above that it is drawn directly from
    N(0, c / B), which has the same distribution and costs B times fewer normals.

    Args: as :func:`second_moments_recurrence`, plus
      n_runs: number of independent chains (simulated together, vectorised).
      seed: seed of the numpy Generator.
      max_exact_batch: largest batch size whose noise is built from individual draws.

    Returns:
      (mean_risk, stderr): two float64 arrays of shape (steps + 1,), the sample mean over runs of
      ``1/2 sum_i counts_i h_i x_i(t)^2`` (of xbar with an EMA) and its standard error
      (sample standard deviation / sqrt(n_runs)).
    """
    h, c, x0sq, lr, batch_size, steps, momentum, power, ema, counts = _check_common(
        h, c, x0sq, lr, batch_size, steps, momentum, power, ema, counts)
    if isinstance(n_runs, bool) or not isinstance(n_runs, (int, np.integer)) or n_runs < 2:
        raise ValueError(f"n_runs must be an integer >= 2, got {n_runs!r}")
    rng = np.random.default_rng(seed)
    d = h.size
    precond = h ** (-power)
    weight = 0.5 * counts * h
    noise_std = np.sqrt(c)                                   # one example's gradient noise

    x = rng.standard_normal((n_runs, d)) * np.sqrt(x0sq)     # (runs, d)
    v = np.zeros_like(x)
    xbar = x.copy()
    samples = np.empty((steps + 1, n_runs))                  # risk of every run at every t
    samples[0] = (x * x) @ weight
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            if batch_size <= max_exact_batch:
                draws = rng.standard_normal((n_runs, d, batch_size)) * noise_std[:, None]
                xi = draws.mean(axis=2)
            else:
                xi = rng.standard_normal((n_runs, d)) * (noise_std / math.sqrt(batch_size))
            g = precond * (h * x + xi)
            v = momentum[t] * v + g
            if nesterov:
                x = x - lr[t] * (g + momentum[t] * v)
            else:
                x = x - lr[t] * v
            if ema is not None:
                xbar = ema * xbar + (1.0 - ema) * x
            measured = xbar if ema is not None else x
            samples[t + 1] = (measured * measured) @ weight
    mean = samples.mean(axis=1)
    stderr = samples.std(axis=1, ddof=1) / math.sqrt(n_runs)
    return mean, stderr


# ----------------------------------------------------------------------------------------------
# The authors' binning, steps to target, lower bound
# ----------------------------------------------------------------------------------------------
def official_binning(h, n_bins=100, h_max=1.0, h_min=1e-4):
    """Quantise eigenvalues the way the authors' notebook does (``shared/spec/NQM_OFFICIAL.md``).

    Grid: ``np.geomspace(h_max, h_min, n_bins)`` (descending). Each eigenvalue goes to the LARGEST grid
    value that does not exceed it (so every curvature is rounded down); a bin is represented by its
    grid value and weighted by the number of eigenvalues in it; empty bins are dropped. The comparison
    ``grid <= h`` is done in floating point on the same grid as the notebook, so eigenvalues that equal
    a grid value (1 and 1e-4 for h_i = 1/i) land in that grid value's bin, as they do there.

    Returns:
      (h_bins, counts): the represented curvatures (descending) and their counts (float64).
    Raises:
      ValueError: an eigenvalue is below h_min (no grid value does not exceed it), or bad arguments.
    """
    h = _positive_vector("h", h)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    if not (math.isfinite(h_min) and math.isfinite(h_max) and 0 < h_min < h_max):
        raise ValueError(f"need 0 < h_min < h_max (finite), got h_min={h_min!r}, h_max={h_max!r}")
    if np.any(h < h_min):
        raise ValueError(f"h has eigenvalues below h_min={h_min!r}; the official binning has no bin "
                         f"for them")
    grid = np.geomspace(h_max, h_min, n_bins)
    not_above = grid[None, :] <= h[:, None]          # (d, n_bins): grid value does not exceed h_i
    bin_of = np.argmax(not_above, axis=1)            # first True = largest such grid value
    counts = np.bincount(bin_of, minlength=n_bins).astype(np.float64)
    keep = counts > 0
    return grid[keep], counts[keep]


def brute_force_steps_to_target(risk_curve, target):
    """First t >= 1 with ``risk_curve[t] <= target`` (the number of updates), or None if never.

    A plain scan, exact for non-monotone curves (momentum oscillations, dimensions starting below
    their noise floor). ``risk_curve[0]`` is the risk before any update and is not considered.
    """
    risk = np.asarray(risk_curve, dtype=np.float64)
    if risk.ndim != 1:
        raise ValueError(f"risk_curve must be 1-D, got shape {risk.shape}")
    if not (isinstance(target, (int, float, np.number)) and math.isfinite(target)):
        raise ValueError(f"target must be a finite number, got {target!r}")
    for t in range(1, risk.size):
        if risk[t] <= target:
            return t
    return None


def lower_bound_steps(d, batch_size, target):
    """Information-theoretic lower bound on steps (paper section 3.5): with C = H the NQM is
    maximum-likelihood estimation of a Gaussian mean, so after N = B t examples no method beats
    risk d / (2 N); reaching ``target`` needs t >= d / (2 B target). Returned as a float."""
    if not (isinstance(d, (int, float, np.number)) and d > 0):
        raise ValueError(f"d must be > 0, got {d!r}")
    if not (isinstance(batch_size, (int, float, np.number)) and batch_size > 0):
        raise ValueError(f"batch_size must be > 0, got {batch_size!r}")
    if not (isinstance(target, (int, float, np.number)) and math.isfinite(target) and target > 0):
        raise ValueError(f"target must be finite and > 0, got {target!r}")
    return d / (2.0 * batch_size * target)
