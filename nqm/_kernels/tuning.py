"""Tuning: the learning rate (and momentum) that minimise the steps to target of one cell.

``shared/spec/NQM.md`` section 3, "Optimal learning rate": a continuous optimisation of the relaxed
(real-valued) crossing time over x = log(lr / lr_max) and y = log(1 - momentum), then the exact
integer optimum (``_tune_cell``, one cell; it releases the GIL, so that ``nqm.tuning`` runs many
cells, batch sizes and powers, on a pool of threads).
"""

import math

import numpy as np
from numba import njit

from nqm._kernels.brent import _brent_init, _brent_next, _brent_tell
from nqm._kernels.crossings import BIG, _relaxed_steps, _steps_exact
from nqm._kernels.prepared import NCOL, _prepare, _risk_t
from nqm._kernels.transition import SGD, _lr_max, _transition2

# x = log(lr / lr_max) ranges over [X_LO, X_HI]; y = log(1 - momentum) over [Y_LO, 0].
X_LO = -46.0                     # lr = 1e-20 lr_max
X_HI = math.log1p(-1e-9)         # stay a hair inside the stability limit
Y_LO = math.log(1e-8)            # momentum up to 1 - 1e-8


@njit(cache=True)
def _params(opt, x, y, kmax):
    """(lr, beta, 1 - beta) from x = log(lr / lr_max(beta)) and y = log(1 - beta)."""
    if opt == SGD:
        # opt (== SGD), not the constant: a literal argument would compile _lr_max once more
        return _lr_max(opt, kmax, 0.0) * math.exp(x), 0.0, 1.0
    omb = math.exp(y)
    beta = 1.0 - omb
    return _lr_max(opt, kmax, beta) * math.exp(x), beta, omb


@njit(cache=True)
def _objective(opt, x, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm):
    """nfix < 0: relaxed steps to target at (x, y) (warm[0] holds the last crossing as a start).
    nfix >= 0: log of the exact risk after nfix steps."""
    lr, beta, omb = _params(opt, x, y, kmax)
    _prepare(opt, k, nv, x0sq, lr, beta, omb, prep)
    warm[1] += 1.0
    if nfix >= 0.0:
        # the exact risk: the polish exploits where oscillating bins happen to be in a trough
        return math.log(_risk_t(prep, wt, nfix))
    tg = warm[0]
    T = _relaxed_steps(prep, wt, target, tg)
    if T < BIG:
        warm[0] = T
    return T


@njit(cache=True)
def _best_x(opt, y, x_guess, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, xtol):
    """Minimise the objective over x in [X_LO, X_HI] at fixed y. With x_guess outside the range a
    coarse scan brackets the minimum; otherwise a bracket is grown from x_guess (steps doubling).
    Brent then starts from the best point of the bracket. Returns (x, f)."""
    if x_guess >= X_LO and x_guess <= X_HI:
        step = 0.05
        xm = x_guess
        fm = _objective(opt, xm, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
        xr = min(X_HI, xm + step)
        fr = _objective(opt, xr, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
        if fr < fm:
            xl = xm
            xm, fm = xr, fr
            while xm < X_HI:
                step *= 2.0
                xn = min(X_HI, xm + step)
                fn = _objective(opt, xn, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
                if fn >= fm:
                    xr = xn
                    break
                xl = xm
                xm, fm = xn, fn
                xr = xm
        else:
            while xm > X_LO:
                xn = max(X_LO, xm - step)
                fn = _objective(opt, xn, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
                if fn >= fm:
                    xl = xn
                    break
                xr = xm
                xm, fm = xn, fn
                step *= 2.0
                xl = xm
            if xm <= X_LO:
                xl = X_LO
    else:
        npts = 24
        fm = BIG * 1e300
        xm = X_HI
        ib = 0
        # scan from the stability limit downwards (the warm start of the crossing follows)
        for i in range(npts - 1, -1, -1):
            xi = X_LO + (X_HI - X_LO) * i / (npts - 1)
            f = _objective(opt, xi, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
            if f < fm:
                fm = f
                xm = xi
                ib = i
        xl = X_LO + (X_HI - X_LO) * max(ib - 1, 0) / (npts - 1)
        xr = X_LO + (X_HI - X_LO) * min(ib + 1, npts - 1) / (npts - 1)
    st = np.empty(11)
    _brent_init(st, xl, xr, xm, fm, xtol)
    for _ in range(200):
        u = _brent_next(st)
        if math.isnan(u):
            break
        fu = _objective(opt, u, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
        _brent_tell(st, u, fu)
    return st[4], st[7]


@njit(cache=True)
def _best_xy(opt, y_lo, y_hi, x0, y0, k, nv, x0sq, wt, kmax, target, nfix, prep, warm):
    """Minimise over (x, y), y in [y_lo, y_hi]: Brent over y of the minimum over x (nested; each
    inner search starts from the x of the nearest y seen so far). With y0 outside the range a coarse
    scan of y (8 points from no momentum towards 1 - 1e-8) brackets the minimum first; otherwise the bracket
    is y0 +- 0.5. Returns (x, y, f). Tolerances are loose (1e-4 in x, 3e-4 in y): the exact integer
    optimum is settled afterwards by the polish of ``_tune_cell``."""
    xtol = 1e-4
    if y0 >= y_lo and y0 <= y_hi:
        ym = y0
        xm, fm = _best_x(opt, ym, x0, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, xtol)
        yl = max(y_lo, y0 - 0.5)
        yr = min(y_hi, y0 + 0.5)
    else:
        npts = 8
        fm = BIG * 1e300
        xcur = x0
        ym = y_hi
        xm = x0
        for i in range(npts):
            yy = y_hi + (y_lo - y_hi) * i / (npts - 1)
            xcur, f = _best_x(opt, yy, xcur, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, 1e-4)
            if f < fm:
                fm = f
                ym = yy
                xm = xcur
        dy = (y_hi - y_lo) / (npts - 1)
        yl = max(y_lo, ym - dy)
        yr = min(y_hi, ym + dy)
        xm, fm = _best_x(opt, ym, xm, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, xtol)
    st = np.empty(11)
    _brent_init(st, yl, yr, ym, fm, 3e-4)
    xbest = xm
    xcur = xm
    for _ in range(100):
        u = _brent_next(st)
        if math.isnan(u):
            break
        xu, fu = _best_x(opt, u, xcur, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, xtol)
        if fu <= st[7]:
            xbest = xu
        xcur = xbest
        _brent_tell(st, u, fu)
    return xbest, st[4], st[7]


@njit(cache=True)
def _steps_recurrence(opt, k, wt, nv, x0sq, lr, beta, omb, target, nmax):
    """First t in 1..nmax with risk(t) <= target by iterating the second moments of all bins
    together (O(t) but a few flops per bin and step: the fast exact method for short horizons),
    or -1 if none."""
    nb = k.size
    X = np.empty(nb)
    C = np.zeros(nb)
    Vv = np.zeros(nb)
    co = np.empty((nb, 6))
    for j in range(nb):
        r = _transition2(opt, k[j], lr, beta, omb)
        co[j, 0] = r[0]
        co[j, 1] = r[1]
        co[j, 2] = r[2]
        co[j, 3] = r[3]
        co[j, 4] = r[8]
        co[j, 5] = r[9]
        X[j] = x0sq[j]
    t = 1.0
    while t <= nmax:
        s = 0.0
        for j in range(nb):
            a00, a01, a10, a11, b0, b1 = co[j, 0], co[j, 1], co[j, 2], co[j, 3], co[j, 4], co[j, 5]
            x_, c_, v_ = X[j], C[j], Vv[j]
            X[j] = a00 * a00 * x_ + 2.0 * a00 * a01 * c_ + a01 * a01 * v_ + nv[j] * b0 * b0
            C[j] = (a00 * a10 * x_ + (a00 * a11 + a01 * a10) * c_ + a01 * a11 * v_
                    + nv[j] * b0 * b1)
            Vv[j] = a10 * a10 * x_ + 2.0 * a10 * a11 * c_ + a11 * a11 * v_ + nv[j] * b1 * b1
            s += wt[j] * X[j]
        if s <= target:
            return t
        t += 1.0
    return -1.0


@njit(cache=True)
def _exact_at(opt, x, y, k, nv, x0sq, wt, kmax, target, prep, t_guess):
    lr, beta, omb = _params(opt, x, y, kmax)
    _prepare(opt, k, nv, x0sq, lr, beta, omb, prep)
    return _steps_exact(prep, wt, target, t_guess)


@njit(cache=True, nogil=True)
def _steps_at(opt, x, y, k, nv, x0sq, wt, target, t_guess):
    """Exact steps to target at (x, y) (the tuner's coordinates) for one cell; -1 if never."""
    prep = np.empty((k.size, NCOL))
    return _exact_at(opt, x, y, k, nv, x0sq, wt, np.max(k), target, prep, t_guess)


@njit(cache=True, nogil=True)
def _tune_cell(opt, tune_beta, y_fixed, k, nv, x0sq, wt, target, out):
    """Tune lr (and momentum if tune_beta) for one cell to minimise steps to target.

    1. continuous: minimise the relaxed (real) crossing time over x = log(lr / lr_max) (and
       y = log(1 - beta)), Brent / nested Brent after coarse scans;
    2. exact: N = exact first crossing at the optimum; then, while some nearby (x, y) brings the risk
       after N - 1 steps to the target (a smooth minimisation of risk(N - 1)), move there and
       recompute N. min over hyperparameters of N is exactly the least n with min risk(n) <= target.
       Below 1000 steps (momentum at large B, where oscillations make N jagged) a local grid of
       exact N (9 x 9, steps 0.05 in x and 0.1 in y, recentred while it improves) comes first.

    out: [steps, lr, beta, 1 - beta, relaxed steps, x, y, objective evaluations]
    """
    nb = k.size
    prep = np.empty((nb, NCOL))
    warm = np.zeros(2)          # [last relaxed crossing (warm start), objective evaluations]
    kmax = np.max(k)
    if opt == SGD or not tune_beta:
        y = y_fixed
        x, T = _best_x(opt, y, X_LO - 1.0, k, nv, x0sq, wt, kmax, target, -1.0, prep, warm, 1e-9)
    else:
        x, y, T = _best_xy(opt, Y_LO, 0.0, X_LO - 1.0, 1.0, k, nv, x0sq, wt, kmax, target, -1.0,
                           prep, warm)
    N = _exact_at(opt, x, y, k, nv, x0sq, wt, kmax, target, prep, T if T < BIG else 1.0)
    lt = math.log(target)
    if opt != SGD and 0.0 < N < 1000.0:
        # Few steps: lightly damped bins oscillate and the integer landscape is jagged (lucky dips
        # give up to ~10 % fewer steps than the smooth relaxation, and with a fixed momentum the
        # best dip can lie in another basin of lr altogether: 27 vs 34 steps seen on a linear
        # least-squares NQM at B = 8192, momentum 0.9). Exact evaluations by the step-by-step
        # recurrence are cheap here (early exit at the best N so far): scan x over the top 8 e-folds
        # of lr below the stability limit (a crossing within 1000 steps needs lr that large) ...
        bx = x
        for i in range(161):
            xi = X_HI - 8.0 + 0.05 * i
            lr_i, beta_i, omb_i = _params(opt, xi, y, kmax)
            Ni = _steps_recurrence(opt, k, wt, nv, x0sq, lr_i, beta_i, omb_i, target, N - 1.0)
            if 0.0 <= Ni < N:
                N = Ni
                bx = xi
        x = bx
    if tune_beta and opt != SGD and 0.0 < N < 1000.0:
        # ... and, with momentum tuned too, a local 9 x 9 grid in (x, y), recentred while it
        # improves (at most 4 times).
        for _ in range(4):
            bx = x
            by = y
            for i in range(-4, 5):
                for jj in range(-4, 5):
                    xi = min(X_HI, max(X_LO, x + 0.05 * i))
                    yi = min(0.0, max(Y_LO, y + 0.1 * jj))
                    lr_i, beta_i, omb_i = _params(opt, xi, yi, kmax)
                    Ni = _steps_recurrence(opt, k, wt, nv, x0sq, lr_i, beta_i, omb_i, target,
                                           N - 1.0)
                    if 0.0 <= Ni < N:
                        N = Ni
                        bx = xi
                        by = yi
            if bx == x and by == y:
                break
            x = bx
            y = by
    if opt != SGD and 0.0 < N < 1000.0:
        # the recurrence is exact up to rounding: settle N with the closed form
        N = _exact_at(opt, x, y, k, nv, x0sq, wt, kmax, target, prep, N)
    for _ in range(50):
        if N <= 1.0:
            break
        n = N - 1.0
        if opt == SGD or not tune_beta:
            xn, fn = _best_x(opt, y, x, k, nv, x0sq, wt, kmax, target, n, prep, warm, 1e-10)
            yn = y
        else:
            xn, yn, fn = _best_xy(opt, Y_LO, 0.0, x, y, k, nv, x0sq, wt, kmax, target, n, prep,
                                  warm)
        if fn > lt:
            break
        Nn = _exact_at(opt, xn, yn, k, nv, x0sq, wt, kmax, target, prep, n)
        if Nn < 0.0 or Nn >= N:
            break
        N = Nn
        x = xn
        y = yn
    lr, beta, omb = _params(opt, x, y, kmax)
    out[0] = N
    out[1] = lr
    out[2] = beta
    out[3] = omb
    out[4] = T
    out[5] = x
    out[6] = y
    out[7] = warm[1]

