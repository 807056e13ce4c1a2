"""Small-batch limits (B -> 0 with the rate scaled with B): E_min of McCandlish et al.

``shared/spec/NQM.md`` section 3, "Critical batch size": with lr = kappa B and n = B t examples,
SGD becomes gradient flow with noise, ``(1 - lr k)^(2t) -> exp(-2 kappa k n)``, so that
``E[x^2] = (x0sq - s) exp(-2 kappa k n) + s`` with ``s = kappa c / (2 k)`` (``_e_min``: the
examples to target minimised over kappa).
Tuned momentum becomes a damped oscillator ``x'' + x' + w2 x = noise`` in dimensionless time
(``_osc_crossing``: the first time the risk reaches the target).
"""

import math

import numpy as np
from numba import njit

from nqm._kernels.crossings import BIG, _relaxed_steps
from nqm._kernels.prepared import NCOL, _floor, _initial, _noise_part, _risk_t


@njit(cache=True)
def _prepare_flow(kappa, k, c_eff, x0sq, prep):
    """Prepared rows (kind 0, continuous time n = examples) of the limit lr = kappa B, t = n / B:
    E[x^2] = (x0sq - s) exp(-2 kappa k n) + s with s = kappa c_eff / (2 k)."""
    for j in range(k.size):
        row = prep[j]
        row[0] = 0.0
        row[1] = -kappa * k[j]
        row[9] = kappa * c_eff[j] / (2.0 * k[j])
        row[10] = x0sq[j]
        for c in range(2, 9):
            row[c] = 0.0
        row[11] = 0.0


@njit(cache=True)
def _flow_crossing_exact(prep, wt, target, n_guess):
    """First real n with risk(n) <= target for kind-0 rows in continuous time (bisection after a
    branch and bound on real intervals, relative width 1e-13). -1 if never.

    The result is the bisection inside the leftmost leaf of the (fixed) tree of halved intervals
    whose right end has risk <= target, provided no pruned interval holds such a leaf. An interval
    [a, b] is pruned when its lower bound (each bin's decay at b, its noise at a) exceeds
    target (1 + rtol). Every term of the bound and of the risk is non-negative and the bound is
    termwise at most the risk at any point of [a, b]; in floating point it can exceed it only by
    the rounding of exp and expm1 (1 ulp each), of the products and of the sum over nb terms, in
    all less than (2 nb + 14) 2^-53 relative. rtol = 4 (nb + 8) 2^-53 covers that, so the result
    is the same for any larger margin (the 1e-9 of ``PRUNE_RTOL`` included), while the band of
    leaves just before the crossing that no bound can prune is ~10^4 times narrower (about a
    thousand times fewer intervals on the paper's problem)."""
    if _initial(prep, wt) <= target:
        return 0.0
    if _floor(prep, wt) >= target:
        return -1.0
    n_hi = max(n_guess, 1e-300)
    while _risk_t(prep, wt, n_hi) > target:
        n_hi *= 2.0
    lo_s = np.empty(400)
    hi_s = np.empty(400)
    lo_s[0] = 0.0
    hi_s[0] = n_hi
    top = 1
    thr = target * (1.0 + 4.0 * (wt.size + 8) * 2.0**-53)
    while top > 0:
        top -= 1
        a = lo_s[top]
        b = hi_s[top]
        lb = 0.0
        for j in range(wt.size):
            row = prep[j]
            lb += wt[j] * (row[10] * math.exp(2.0 * b * row[1]) + _noise_part(row, a))
        if lb > thr:
            continue
        if b - a <= 1e-13 * b or top > 390:
            if _risk_t(prep, wt, b) <= target:
                # the crossing is in [a, b]; bisect to the end
                lo = a
                hi = b
                for _ in range(200):
                    mid = 0.5 * (lo + hi)
                    if mid <= lo or mid >= hi:
                        break
                    if _risk_t(prep, wt, mid) <= target:
                        hi = mid
                    else:
                        lo = mid
                return hi
            continue
        m = 0.5 * (a + b)
        lo_s[top] = m
        hi_s[top] = b
        lo_s[top + 1] = a
        hi_s[top + 1] = m
        top += 2
    return -1.0


@njit(cache=True)
def _flow_objective(lk, k, c_eff, x0sq, wt, target, prep, warm):
    _prepare_flow(math.exp(lk), k, c_eff, x0sq, prep)
    T = _relaxed_steps(prep, wt, target, warm[0])
    if T < BIG:
        warm[0] = T
    return T


@njit(cache=True, nogil=True)
def _e_min(k, c_eff, x0sq, wt, target):
    """E_min = min over kappa of the examples n at which the B -> 0 limit reaches the target
    (scan of log kappa, Brent, then the exact first crossing at the optimum).
    Returns (E_min, kappa)."""
    nb = k.size
    prep = np.empty((nb, NCOL))
    warm = np.ones(1)
    # kappa k_max ranges over [1e-20, 1e20] (no stability limit in this limit)
    base = -math.log(np.max(k))
    npts = 41
    best = BIG * 10.0
    ib = 0
    for i in range(npts):
        lk = base + (-46.0 + 92.0 * i / (npts - 1))
        f = _flow_objective(lk, k, c_eff, x0sq, wt, target, prep, warm)
        if f < best:
            best = f
            ib = i
    lo = base + (-46.0 + 92.0 * max(ib - 1, 0) / (npts - 1))
    hi = base + (-46.0 + 92.0 * min(ib + 1, npts - 1) / (npts - 1))
    golden = 0.3819660112501051
    # golden-section search (the objective is smooth and unimodal in log kappa)
    c1 = hi - (1.0 - golden) * (hi - lo)
    c2 = lo + (1.0 - golden) * (hi - lo)
    f1 = _flow_objective(c1, k, c_eff, x0sq, wt, target, prep, warm)
    f2 = _flow_objective(c2, k, c_eff, x0sq, wt, target, prep, warm)
    for _ in range(200):
        if hi - lo < 1e-11 * max(1.0, abs(lo)):
            break
        if f1 <= f2:
            hi = c2
            c2 = c1
            f2 = f1
            c1 = hi - (1.0 - golden) * (hi - lo)
            f1 = _flow_objective(c1, k, c_eff, x0sq, wt, target, prep, warm)
        else:
            lo = c1
            c1 = c2
            f1 = f2
            c2 = lo + (1.0 - golden) * (hi - lo)
            f2 = _flow_objective(c2, k, c_eff, x0sq, wt, target, prep, warm)
    lk = c1 if f1 <= f2 else c2
    _prepare_flow(math.exp(lk), k, c_eff, x0sq, prep)
    n = _flow_crossing_exact(prep, wt, target, warm[0])
    return n, math.exp(lk)


@njit(cache=True)
def _osc_risk(tau, w2, sxx, svv, x0sq, wt):
    """Risk at dimensionless time tau of the limit x'' + x' + w2 x = noise (per bin):
    E[x^2] = x0sq P_xx^2 + sxx (1 - P_xx^2) - svv P_xv^2, P = exp(M tau), M = [[0, -1], [w2, -1]].
    exp(-tau/2) cosh / sinh are written with the slow rate -w2 / (1/2 + mu) and expm1, so nothing
    cancels near critical damping (w2 = 1/4)."""
    s = 0.0
    for j in range(wt.size):
        disc = 0.25 - w2[j]
        if disc >= 0.0:
            mu = math.sqrt(disc)
            slow = math.exp(-w2[j] / (0.5 + mu) * tau)
            fast = math.exp(-(0.5 + mu) * tau)
            ch = 0.5 * (slow + fast)
            if mu * tau > 0.0:
                sh = slow * -math.expm1(-2.0 * mu * tau) / (2.0 * mu)
            else:
                sh = tau * math.exp(-0.5 * tau)
        else:
            nu = math.sqrt(-disc)
            env = math.exp(-0.5 * tau)
            ch = env * math.cos(nu * tau)
            sh = env * math.sin(nu * tau) / nu
        pxx = ch + 0.5 * sh
        s += wt[j] * (x0sq[j] * pxx * pxx + sxx[j] * (1.0 - pxx * pxx) - svv[j] * sh * sh)
    return s


@njit(cache=True, nogil=True)
def _osc_crossing(r, gamma, k, c_eff, x0sq, wt, target, tau_guess):
    """First tau (dimensionless, = gamma n) with risk <= target in the oscillator limit with
    effective rate r and damping gamma (per example): scan upwards at 1 % resolution from below
    the guess, then bisection to 1e-13. Returns -1 if the steady state is not below target."""
    nb = k.size
    w2 = np.empty(nb)
    sxx = np.empty(nb)
    svv = np.empty(nb)
    fl = 0.0
    for j in range(nb):
        w2[j] = r * k[j] / gamma
        sxx[j] = r * c_eff[j] / (2.0 * k[j])
        svv[j] = r * r * c_eff[j] / (2.0 * gamma)
        fl += wt[j] * sxx[j]
    if fl >= target:
        return -1.0
    tau = max(0.9 * tau_guess, 1e-9)
    while tau > 1e-9 and _osc_risk(tau, w2, sxx, svv, x0sq, wt) <= target:
        tau *= 0.5
    while True:
        nxt = tau * 1.01
        if _osc_risk(nxt, w2, sxx, svv, x0sq, wt) <= target:
            break
        tau = nxt
        if tau > 1e30:
            return -1.0
    lo = tau
    hi = nxt
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if hi - lo <= 1e-13 * hi:
            break
        if _osc_risk(mid, w2, sxx, svv, x0sq, wt) <= target:
            hi = mid
        else:
            lo = mid
    return hi
