"""A plain-NumPy port of the AUTHORS' algorithm for the noisy quadratic model (the benchmark baseline).

Zhang et al. 2019 ("Which Algorithmic Choices Matter at Which Batch Sizes?") published one Colab
notebook (GitHub ``gd-zhang/noisy-quadratic-model``, ``nqm.ipynb``). This module re-implements what
that notebook computes, from the facts in ``shared/spec/NQM_OFFICIAL.md`` (no code copied), so that
benchmark scripts can time the notebook's way of working and compare their step counts with the
notebook's. It reproduces the notebook's behaviour INCLUDING its known mistakes, on purpose:

1. ``+1e-8`` in the denominator of the SGD steady state (``1 - (1 - lr P h)^2 + 1e-8``): small-curvature
   bins at small rates get a wrong noise floor.
2. Steps to target by bisection on t for ``risk(t) < target``, which assumes the risk is monotone in t
   and returns the last t that is NOT below target: one less than the number of updates after which
   the risk is below target (off by one). SGD clamps the answer to >= 1, momentum does not.
3. Momentum: the 3x3 second-moment transition of every bin is diagonalised with ``np.linalg.eig``;
   t-th power and steady state come from that decomposition, which loses accuracy (or fails) where
   the matrix is defective (critical damping).
4. Grid searches over fixed grids of rates (and momenta).

One deliberate deviation: where the notebook's bisection never finds a t below target (an unstable or
too small rate), it returns its upper bracket minus one (999,999,999 or 9,999,999) as a "step count";
here those cases return ``math.inf``, so that "never reaches the target" cannot be mistaken for a count.

Conventions of the notebook: per-bin gradient-noise variance ``sigma^2 = h / B`` (C = H), preconditioner
``P = h^-power``, ``E[x_0^2] = 1`` in every bin, risk ``1/2 sum counts h E[x^2]``, target 0.01.

Run ``python benchmarks/official_port.py --help`` for the command line (tuned steps of a few cells and
how long each took).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import scipy.optimize

__all__ = [
    "official_problem",
    "sgd_risk",
    "sgd_steps",
    "momentum_risk",
    "momentum_steps",
    "tune_sgd",
    "tune_momentum",
    "max_log_lr",
    "schedule_risk",
    "schedule_risk_and_grad",
    "optimize_schedule",
    "optimized_schedule_steps",
]

TARGET = 0.01            # the paper's target risk
SGD_HIGH = 10**9         # bisection bracket [0, 1e9) for SGD
MOMENTUM_HIGH = 10**7    # bisection bracket [0, 1e7) for momentum (and EMA)
SCHEDULE_HIGH = 10**8    # bisection bracket [0, 1e8) on the piece length of a schedule
SCHEDULE_INIT_LOG_LR = -5.0   # every schedule optimisation starts from log lr = -5 (natural log)


# ----------------------------------------------------------------------------------------------
# Problem
# ----------------------------------------------------------------------------------------------
def official_problem(ndim=10**4, n_bins=100):
    """The notebook's binned spectrum: h_i = 1/i, i = 1..ndim, quantised into ``n_bins`` bins.

    The grid is ``geomspace(h_1, h_ndim, n_bins)`` (1 .. 1e-4 by default). Walking down the sorted
    eigenvalues, each one is counted in the current grid value while it is >= that value, otherwise the
    walk moves to the next (smaller) grid value: every eigenvalue lands in the largest grid value not
    exceeding it, and is represented by that grid value. Like the notebook, all ``n_bins`` grid values
    are returned, including those with count 0 (they add nothing to the risk but cost time).

    Returns:
      (h_bins, counts): float64 arrays of shape (n_bins,). Initial risk 1/2 sum counts h_bins is
      4.702495573141032 for the defaults (0.5 * H_10000 = 4.8938 unbinned).
    """
    full_h = 1.0 / np.arange(1, ndim + 1)
    grid = np.geomspace(full_h[0], full_h[-1], n_bins)
    counts = np.zeros(n_bins)
    i, b = 0, 0
    while i < ndim:
        while i < ndim and full_h[i] >= grid[b]:
            counts[b] += 1
            i += 1
        b += 1
    return grid, counts


def _check(batch_size, h, counts, power, lr=1.0, beta=0.0, target=TARGET, t=0):
    """Clear ValueErrors naming the argument (the notebook had no checks; a benchmark should fail
    loudly on a typo rather than time a meaningless number)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 1 or h.size == 0 or not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError("h must be a non-empty 1-D array of finite values > 0")
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != h.shape or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"counts must have the shape of h {h.shape} and be finite and >= 0")
    if not (math.isfinite(power) and power >= 0):
        raise ValueError(f"power must be finite and >= 0, got {power!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    if not (math.isfinite(beta) and 0 <= beta <= 1):
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target must be finite and > 0, got {target!r}")
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"t must be finite and >= 0, got {t!r}")


def _noise_and_precond(h, batch_size, power):
    h = np.asarray(h, dtype=np.float64)
    return h, h / batch_size, h ** (-power)      # h, sigma^2 = h / B, P = h^-p


def _risk(h, s, counts):
    return 0.5 * np.sum(h * s * counts)


# ----------------------------------------------------------------------------------------------
# SGD: closed form with the +1e-8
# ----------------------------------------------------------------------------------------------
def _sgd_second_moment(s_init, lr, t, h, sigma_sq, precond):
    """E[x^2] per bin after t steps of (preconditioned) SGD, the notebook's closed form:
    decay = (1 - lr P h)^2, steady state s* = (P lr)^2 sigma^2 / (1 - decay + 1e-8),
    s_t = s* + decay^t (s_0 - s*). The +1e-8 is the notebook's (mistake 1)."""
    decay = (1.0 - lr * precond * h) ** 2
    steady = (precond * lr) ** 2 * sigma_sq / (1.0 - decay + 1e-8)
    return steady + decay ** t * (s_init - steady)


def sgd_risk(t, lr, batch_size, h, counts, power):
    """Risk after t steps of SGD with constant rate ``lr``, preconditioner h^-power, batch size B,
    as the notebook computes it (closed form per bin, with its +1e-8 in the steady state)."""
    _check(batch_size, h, counts, power, lr=lr, t=t)
    h, sigma_sq, precond = _noise_and_precond(h, batch_size, power)
    with np.errstate(over="ignore", invalid="ignore"):
        s = _sgd_second_moment(np.ones_like(h), lr, t, h, sigma_sq, precond)
        return _risk(h, s, counts)


def _bisect_last_not_below(risk_at, high, target):
    """The notebook's bisection: low = 0, high = bracket; probe mid = floor((low + high) / 2), move
    high down if risk(mid) < target else low up; stop when high = low + 1 and return low, i.e. the
    last probed t that is NOT below target (off by one, and only right if risk is monotone in t).
    Returns None when no probe was below target (the notebook returned high - 1 then)."""
    low, top = 0, high
    while low < high - 1:
        mid = (low + high) // 2
        if risk_at(mid) < target:
            high = mid
        else:
            low = mid
    return None if high == top else low


def sgd_steps(lr, batch_size, h, counts, power, target=TARGET):
    """Steps to target for SGD the notebook's way: bisection on t in [0, 1e9) for risk < target,
    answer clamped to >= 1. One less than the true number of updates (off by one); ``math.inf`` where
    the bisection never gets below target (unstable or too small rate)."""
    _check(batch_size, h, counts, power, lr=lr, target=target)
    h, sigma_sq, precond = _noise_and_precond(h, batch_size, power)
    s_init = np.ones_like(h)

    def risk_at(t):
        with np.errstate(over="ignore", invalid="ignore"):
            return _risk(h, _sgd_second_moment(s_init, lr, t, h, sigma_sq, precond), counts)

    low = _bisect_last_not_below(risk_at, SGD_HIGH, target)
    return math.inf if low is None else max(low, 1)


def tune_sgd(batch_size, power, h, counts, target=TARGET, n_lr=100):
    """The notebook's SGD grid search: ``n_lr`` log-spaced rates in [1e-5, 10^0.5] (only those below
    ~1.9 are stable), first rate with the strictly smallest step count wins.

    Returns:
      (best_steps, best_lr); (inf, nan) when no rate of the grid reaches the target.
    """
    _check(batch_size, h, counts, power, target=target)
    best, best_lr = math.inf, math.nan
    for lr in np.logspace(-5, 0.5, n_lr):
        steps = sgd_steps(lr, batch_size, h, counts, power, target)
        if steps < best:
            best, best_lr = steps, float(lr)
    return best, best_lr


# ----------------------------------------------------------------------------------------------
# Momentum: 3x3 second-moment transition, diagonalised with np.linalg.eig
# ----------------------------------------------------------------------------------------------
def _momentum_second_moment(lr, beta, t, h, sigma_sq, precond):
    """E[x^2] per bin after t steps of heavy-ball momentum, the notebook's way.

    With the displacement u_t = x_t - x_{t-1} and y = lr P h, one step is
    u' = beta u - y x - lr P xi, x' = x + u', so the moments m = (E[x^2], E[x u], E[u^2]) obey
    m' = T m + n (1, 1, 1) with n = (lr P)^2 sigma^2 and (paper appendix B)

        T = [[(1 - y)^2,     2 beta (1 - y),  beta^2],
             [-(1 - y) y,    beta (1 - 2 y),  beta^2],
             [y^2,          -2 beta y,        beta^2]].

    T = V diag(e) V^-1 by np.linalg.eig; in eigen-coordinates the steady state is (V^-1 n) / (1 - e)
    and m_t = V (e^t (V^-1 m_0 - m*) + m*), with m_0 = (1, 0, 0). The real part of E[x^2] is kept.
    Where T is defective (critical damping) V is singular and the result is inaccurate (mistake 3).
    """
    nbins = h.size
    y = lr * precond * h
    T = np.empty((nbins, 3, 3))
    T[:, 0, 0] = (1 - y) ** 2
    T[:, 0, 1] = 2 * beta * (1 - y)
    T[:, 1, 0] = -(1 - y) * y
    T[:, 1, 1] = beta * (1 - 2 * y)
    T[:, 2, 0] = y ** 2
    T[:, 2, 1] = -2 * beta * y
    T[:, :, 2] = beta ** 2
    noise = np.repeat(((precond * lr) ** 2 * sigma_sq)[:, None], 3, axis=1)     # (nbins, 3)
    m0 = np.zeros((nbins, 3))
    m0[:, 0] = 1.0

    e, V = np.linalg.eig(T)                                  # (nbins, 3), (nbins, 3, 3)
    V_inv = np.linalg.inv(V)
    m0_e = np.einsum("bij,bj->bi", V_inv, m0)
    noise_e = np.einsum("bij,bj->bi", V_inv, noise)
    steady_e = noise_e / (1 - e)
    mt_e = e ** t * (m0_e - steady_e) + steady_e
    mt = np.einsum("bij,bj->bi", V, mt_e)
    return mt[:, 0].real


def momentum_risk(t, lr, beta, batch_size, h, counts, power):
    """Risk after t steps of heavy-ball momentum (rate ``lr``, momentum ``beta``, preconditioner
    h^-power, batch size B), computed from the eigen-decomposition as the notebook does."""
    _check(batch_size, h, counts, power, lr=lr, beta=beta, t=t)
    h, sigma_sq, precond = _noise_and_precond(h, batch_size, power)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _risk(h, _momentum_second_moment(lr, beta, t, h, sigma_sq, precond), counts)


def momentum_steps(lr, beta, batch_size, h, counts, power, target=TARGET):
    """Steps to target for heavy-ball momentum the notebook's way: bisection on t in [0, 1e7) for
    risk < target (no clamp to >= 1). Off by one, and may miss the first crossing when the risk
    oscillates around the target (mistake 2); ``math.inf`` when no probe is below target."""
    _check(batch_size, h, counts, power, lr=lr, beta=beta, target=target)
    h, sigma_sq, precond = _noise_and_precond(h, batch_size, power)

    def risk_at(t):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return _risk(h, _momentum_second_moment(lr, beta, t, h, sigma_sq, precond), counts)

    low = _bisect_last_not_below(risk_at, MOMENTUM_HIGH, target)
    return math.inf if low is None else low


def tune_momentum(batch_size, power, h, counts, target=TARGET, n_lr=100, n_beta=20):
    """The notebook's momentum grid search: ``n_lr`` log-spaced rates in [1e-8, 10] (outer loop) times
    ``n_beta`` momenta ``1 - logspace(-5, 0, n_beta)`` (inner loop; the last one is 0), first pair with
    the strictly smallest step count wins.

    Returns:
      (best_steps, best_lr, best_beta); (inf, nan, nan) when no pair reaches the target.
    """
    _check(batch_size, h, counts, power, target=target)
    best, best_lr, best_beta = math.inf, math.nan, math.nan
    betas = 1 - np.logspace(-5, 0, n_beta)
    for lr in np.logspace(-8, 1, n_lr):
        for beta in betas:
            steps = momentum_steps(lr, beta, batch_size, h, counts, power, target)
            if steps < best:
                best, best_lr, best_beta = steps, float(lr), float(beta)
    return best, best_lr, best_beta


# ----------------------------------------------------------------------------------------------
# Optimised piecewise-constant schedules (paper section 3.6.2)
# ----------------------------------------------------------------------------------------------
def max_log_lr(power):
    """The notebook's upper bound on every piece's log-rate: log(2 / (1 + 10^(-4(1-p)) + 1e-4)),
    about log 2 / (h_max + h_min) of the preconditioned spectrum of the official problem
    (h_max = 1, h_min = 1e-4 hard-coded, as in the notebook)."""
    return math.log(2.0 / (1.0 + 10.0 ** (-4.0 * (1.0 - power)) + 1e-4))


def schedule_risk(piece_len, log_rates, batch_size, h, counts, power):
    """Final risk after ``len(log_rates)`` pieces of ``piece_len`` SGD steps each, piece j at rate
    exp(log_rates[j]): the SGD closed form (with its +1e-8) applied piece after piece."""
    return schedule_risk_and_grad(piece_len, log_rates, batch_size, h, counts, power)[0]


def schedule_risk_and_grad(piece_len, log_rates, batch_size, h, counts, power):
    """Final risk of a piecewise-constant schedule and its gradient with respect to the log-rates.

    The notebook differentiated its forward pass with autograd; this is the same derivative written
    out (a reverse pass). Per piece j and bin, with a = exp(l_j), u = a P h, decay D = (1 - u)^2,
    steady state s* = a^2 P^2 sigma^2 / (1 - D + 1e-8) and m = piece_len:
        s_{j+1} = s* + D^m (s_j - s*),
        d s_{j+1} / d s_j = D^m,
        d s_{j+1} / d l_j = m D^(m-1) dD (s_j - s*) + (1 - D^m) s* (2 + dD / (1 - D + 1e-8)),
    where dD = dD/dl_j = -2 (1 - u) u.

    Returns:
      (risk, grad): a float and an array shaped like ``log_rates``.
    """
    _check(batch_size, h, counts, power, t=piece_len)
    h, sigma_sq, precond = _noise_and_precond(h, batch_size, power)
    log_rates = np.asarray(log_rates, dtype=np.float64)
    m = int(piece_len)
    s = np.ones_like(h)
    saved = []                                        # what the reverse pass needs, per piece
    for l in log_rates:
        a = math.exp(l)
        u = a * precond * h
        D = (1.0 - u) ** 2
        denom = 1.0 - D + 1e-8
        steady = (precond * a) ** 2 * sigma_sq / denom
        Dm = D ** m
        saved.append((u, D, denom, steady, Dm, s))
        s = steady + Dm * (s - steady)
    risk = _risk(h, s, counts)

    grad = np.empty_like(log_rates)
    adj = 0.5 * h * counts                            # d risk / d s after the last piece
    for j in range(len(log_rates) - 1, -1, -1):
        u, D, denom, steady, Dm, s_before = saved[j]
        dD = -2.0 * (1.0 - u) * u
        dDm = m * D ** (m - 1) * dD if m > 0 else np.zeros_like(D)
        d_steady = steady * (2.0 + dD / denom)
        grad[j] = np.sum(adj * (dDm * (s_before - steady) + (1.0 - Dm) * d_steady))
        adj = adj * Dm
    return float(risk), grad


def optimize_schedule(piece_len, n_pieces, batch_size, h, counts, power, maxiter=None):
    """The notebook's schedule optimisation for a fixed piece length: minimise the final risk over the
    ``n_pieces`` log-rates with scipy's L-BFGS-B (``minimize`` with bounds and a gradient), from
    log lr = -5 for every piece, each log-rate bounded above by :func:`max_log_lr`.
    ``maxiter=None`` keeps scipy's default (the notebook's); a benchmark may pass a smaller one.

    Returns:
      the optimised log-rates, shape (n_pieces,).
    """
    upper = max_log_lr(power)
    options = {} if maxiter is None else {"maxiter": int(maxiter)}
    result = scipy.optimize.minimize(
        lambda l: schedule_risk_and_grad(piece_len, l, batch_size, h, counts, power),
        np.full(n_pieces, SCHEDULE_INIT_LOG_LR), jac=True,
        bounds=scipy.optimize.Bounds(-np.inf, upper), method="L-BFGS-B", options=options,
    )
    return result.x


def optimized_schedule_steps(batch_size, power, h, counts, target=TARGET, n_pieces=10, *,
                             maxiter=None, high=SCHEDULE_HIGH):
    """Steps to target with an optimised piecewise-constant schedule, the notebook's way.

    Bisection on the piece length m in [0, ``high``) (default 1e8): at every probe the log-rates are
    re-optimised from scratch (:func:`optimize_schedule`) and the probe counts as reached when the
    optimised final risk is < target. As for constant rates, the answer is the last m NOT below
    target (clamped to >= 1), and the rates returned are those of the LAST PROBE, not necessarily
    those of the answer. Total steps = n_pieces * m.

    Returns:
      (steps, rates): ``n_pieces * m`` (``math.inf`` when no probe reaches the target) and the
      learning rates (not log) of the last probe, shape (n_pieces,).
    """
    _check(batch_size, h, counts, power, target=target)
    if isinstance(n_pieces, bool) or not isinstance(n_pieces, (int, np.integer)) or n_pieces < 1:
        raise ValueError(f"n_pieces must be an integer >= 1, got {n_pieces!r}")
    if int(high) < 2:
        raise ValueError(f"high must be >= 2, got {high!r}")
    last_log_rates = np.full(n_pieces, SCHEDULE_INIT_LOG_LR)

    def risk_at(m):
        nonlocal last_log_rates
        last_log_rates = optimize_schedule(m, n_pieces, batch_size, h, counts, power, maxiter)
        with np.errstate(over="ignore", invalid="ignore"):
            return schedule_risk(m, last_log_rates, batch_size, h, counts, power)

    low = _bisect_last_not_below(risk_at, int(high), target)
    steps = math.inf if low is None else n_pieces * max(low, 1)
    return steps, np.exp(last_log_rates)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python benchmarks/official_port.py",
        description="Tuned steps to target on the official NQM problem (d = 1e4, h_i = 1/i, 100 bins, "
                    "target 0.01) computed the way the authors' notebook does, and how long each "
                    "cell took. This is the baseline that benchmarks compare the nqm package with.",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 2**16],
                        help="batch sizes to tune (default: 16 65536)")
    parser.add_argument("--power", type=float, default=0.0,
                        help="preconditioner power p, P = h^-p (default 0)")
    parser.add_argument("--target", type=float, default=TARGET, help="target risk (default 0.01)")
    parser.add_argument("--quick", action="store_true",
                        help="coarse grids (20 rates, 5 momenta) instead of the notebook's 100 x 20")
    parser.add_argument("--no-momentum", action="store_true", help="tune plain SGD only")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if any(b < 1 for b in args.batch_sizes):
        parser.error("--batch-sizes must all be >= 1")
    if not (math.isfinite(args.power) and args.power >= 0):
        parser.error("--power must be finite and >= 0")
    if not (math.isfinite(args.target) and args.target > 0):
        parser.error("--target must be finite and > 0")
    return args


def main(argv=None):
    from tqdm import tqdm

    args = _parse_args(argv)
    h, counts = official_problem()
    n_lr, n_beta = (20, 5) if args.quick else (100, 20)
    rows = []
    cells = [(b, kind) for b in args.batch_sizes
             for kind in (["sgd"] if args.no_momentum else ["sgd", "momentum"])]
    for batch_size, kind in tqdm(cells, disable=args.quiet, desc="cells"):
        start = time.perf_counter()
        if kind == "sgd":
            steps, lr = tune_sgd(batch_size, args.power, h, counts, args.target, n_lr=n_lr)
            beta = None
        else:
            steps, lr, beta = tune_momentum(batch_size, args.power, h, counts, args.target,
                                            n_lr=n_lr, n_beta=n_beta)
        seconds = time.perf_counter() - start
        rows.append({"optimizer": kind, "batch_size": batch_size, "power": args.power,
                     "steps": None if math.isinf(steps) else int(steps), "lr": lr,
                     "momentum": beta, "seconds": seconds})
    if args.json:
        print(json.dumps({"grid": {"n_lr": n_lr, "n_beta": n_beta}, "target": args.target,
                          "results": rows}, indent=2))
    else:
        print(f"official port, target {args.target}, grid {n_lr} rates"
              + ("" if args.no_momentum else f" x {n_beta} momenta"))
        print(f"{'optimizer':>9} {'B':>8} {'p':>5} {'steps':>10} {'lr':>10} {'momentum':>9} {'s':>8}")
        for r in rows:
            mom = "" if r["momentum"] is None else f"{r['momentum']:.6f}"
            steps = "never" if r["steps"] is None else str(r["steps"])
            print(f"{r['optimizer']:>9} {r['batch_size']:>8} {r['power']:>5} {steps:>10} "
                  f"{r['lr']:>10.4g} {mom:>9} {r['seconds']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
