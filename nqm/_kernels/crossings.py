"""Steps to target: the exact first integer crossing and the smooth (real t) relaxation.

``shared/spec/NQM.md`` section 3, "Steps to target": the first t with total risk <= target. The risk
is not always monotone in t (momentum oscillates; a bin that starts below its floor rises), so the
exact answer is a depth-first branch and bound over integer intervals, pruned by a lower bound of
the risk over each interval (``_lower_bound``). The tuners minimise instead the real t at which the
smooth risk of ``nqm._kernels.prepared`` comes down to the target (``_relaxed_steps``).
"""

import math

import numpy as np
from numba import njit

from nqm._kernels.prepared import _F, _floor, _initial, _noise_part, _risk_dt, _risk_t

# Largest step count the searches consider (2^53: every integer below it is exact in float64).
T_MAX = 9007199254740992.0
BIG = 1e300                      # objective value of an unreachable target
# Bounds used for pruning are trusted only beyond this relative margin (rounding).
PRUNE_RTOL = 1e-9


@njit(cache=True)
def _min_abs_y(row, t0, t1):
    """Lower bound of |y_t| / E_(t1) ... precisely: min over integers t in [t0, t1] (t0 >= 1) of
    |y_t| is >= exp((t1 - 1) L) * (returned value)."""
    kind = row[0]
    if kind == 0.0:
        return 1.0       # kind 0 handled by the caller
    w1 = row[4]
    g1 = row[5]
    if kind == 1.0:
        zs = row[3]
        if zs == 0.0:
            return abs(w1)
        if zs > 0.0:
            # phi(t) = w1 F(t) + g1 F(t-1) is affine in z^t, hence monotone in t: endpoints
            f0, _ = _F(1.0, row[2], zs, t0)
            f0m, _ = _F(1.0, row[2], zs, t0 - 1.0)
            f1, _ = _F(1.0, row[2], zs, t1)
            f1m, _ = _F(1.0, row[2], zs, t1 - 1.0)
            p0 = w1 * f0 + g1 * f0m
            p1 = w1 * f1 + g1 * f1m
        else:
            # z < 0: zeta = z^t in [-|z|^t0, |z|^t0]; phi = ((w1 - l2) + (l1 - w1) zeta) / (1 - z)
            # with g1 = -l2 and l1 = l2 / z
            az = math.exp(row[2])
            z = -az
            l2 = -g1
            l1 = l2 / z if z != 0.0 else 0.0
            zeta = math.exp(t0 * row[2])
            den = 1.0 - z
            p0 = ((w1 - l2) - (l1 - w1) * zeta) / den
            p1 = ((w1 - l2) + (l1 - w1) * zeta) / den
        if (p0 > 0.0) != (p1 > 0.0) or p0 == 0.0 or p1 == 0.0:
            return 0.0
        return min(abs(p0), abs(p1))
    # complex: phi(t) = pc sin(t theta) + rho cos(t theta) = amp sin(t theta + psi)
    theta = row[2]
    pc = row[11]
    rho = -g1
    if (t1 - t0) * theta >= math.pi:
        return 0.0
    amp = math.hypot(pc, rho)
    psi = math.atan2(rho, pc)
    ph0 = t0 * theta + psi
    ph1 = t1 * theta + psi
    kz = math.ceil(ph0 / math.pi)
    if kz * math.pi <= ph1:
        return 0.0
    return amp * min(abs(math.sin(ph0)), abs(math.sin(ph1)))


@njit(cache=True)
def _lower_bound(prep, wt, t0, t1):
    """A lower bound of the total risk over all integers t in [t0, t1], t0 >= 1:
    noise-free part at its smallest |y| with the envelope at t1, noise part at t0."""
    s = 0.0
    for j in range(wt.size):
        row = prep[j]
        if row[0] == 0.0:
            s += wt[j] * (row[10] * math.exp(2.0 * t1 * row[1]) + _noise_part(row, t0))
        else:
            m = _min_abs_y(row, t0, t1)
            E = math.exp((t1 - 1.0) * row[1]) * m
            s += wt[j] * (row[10] * E * E + _noise_part(row, t0))
    return s


@njit(cache=True)
def _first_crossing(prep, wt, target, t_lo, t_hi):
    """Smallest integer t in [t_lo, t_hi] with risk(t) <= target, or -1. Depth-first branch and
    bound, earliest interval first: an interval is skipped when the lower bound of the risk over it
    is above the target; short intervals are scanned exactly."""
    lo_s = np.empty(256)
    hi_s = np.empty(256)
    lo_s[0] = t_lo
    hi_s[0] = t_hi
    top = 1
    thr = target * (1.0 + PRUNE_RTOL)
    while top > 0:
        top -= 1
        a = lo_s[top]
        b = hi_s[top]
        if b - a < 32.0:
            t = a
            while t <= b:
                if _risk_t(prep, wt, t) <= target:
                    return t
                t += 1.0
            continue
        if _lower_bound(prep, wt, a, b) > thr:
            continue
        m = math.floor(0.5 * (a + b))
        lo_s[top] = m + 1.0
        hi_s[top] = b
        lo_s[top + 1] = a
        hi_s[top + 1] = m
        top += 2
    return -1.0


@njit(cache=True)
def _steps_exact(prep, wt, target, t_guess):
    """Exact steps to target: the first integer t >= 1 with risk(t) <= target (0 if the initial
    risk already is). Returns -1 when the risk never gets there (steady state >= target and no
    transient dip), -2 when it would take more than 2^53 steps."""
    if _initial(prep, wt) <= target:
        return 0.0
    floor = _floor(prep, wt)
    if floor < target:
        t = max(1.0, math.ceil(t_guess))
        while _risk_t(prep, wt, t) > target:
            t *= 2.0
            if t > T_MAX:
                return -2.0
        return _first_crossing(prep, wt, target, 1.0, t)
    # the steady state is not below target: only a transient dip can reach it; beyond t_lim the
    # accumulated noise alone exceeds the target
    thr = target * (1.0 + PRUNE_RTOL)
    t = 1.0
    while True:
        s = 0.0
        for j in range(wt.size):
            s += wt[j] * _noise_part(prep[j], t)
        if s > thr:
            break
        t *= 2.0
        if t > T_MAX:
            return -2.0
    return _first_crossing(prep, wt, target, 1.0, t)


@njit(cache=True)
def _log_excess(prep, wt, lt, s):
    """g(s) = log risk(e^s) - log target on the smooth risk, and dg/ds."""
    t = math.exp(s)
    r, dr = _risk_dt(prep, wt, t)
    if r <= 0.0:
        return -1.0, 0.0
    return math.log(r) - lt, t * dr / r


@njit(cache=True)
def _zeroin(prep, wt, lt, a, fa, b, fb, xtol):
    """Brent's root finder (Brent 1973, 'zeroin') for g on [a, b] with g(a), g(b) of opposite
    signs; derivative-free, superlinear where g is smooth, never worse than bisection."""
    c, fc = a, fa
    d = b - a
    e = d
    for _ in range(200):
        if (fb > 0.0) == (fc > 0.0):
            c, fc = a, fa
            d = b - a
            e = d
        if abs(fc) < abs(fb):
            a, fa = b, fb
            b, fb = c, fc
            c, fc = a, fa
        tol = 2.0 * 2.2e-16 * abs(b) + 0.5 * xtol
        m = 0.5 * (c - b)
        if abs(m) <= tol or fb == 0.0:
            break
        if abs(e) >= tol and abs(fa) > abs(fb):
            s_ = fb / fa
            if a == c:
                p = 2.0 * m * s_
                q = 1.0 - s_
            else:
                q = fa / fc
                r = fb / fc
                p = s_ * (2.0 * m * q * (q - r) - (b - a) * (r - 1.0))
                q = (q - 1.0) * (r - 1.0) * (s_ - 1.0)
            if p > 0.0:
                q = -q
            else:
                p = -p
            if 2.0 * p < min(3.0 * m * q - abs(tol * q), abs(e * q)):
                e = d
                d = p / q
            else:
                d = m
                e = m
        else:
            d = m
            e = m
        a, fa = b, fb
        b = b + (d if abs(d) > tol else (tol if m > 0 else -tol))
        fb, _ = _log_excess(prep, wt, lt, b)
    return b


@njit(cache=True)
def _relaxed_steps(prep, wt, target, t_guess):
    """Real t where the smooth risk(t) comes down to the target (in s = log t: one Newton step from
    t_guess, secant steps until the sign of risk - target changes, then Brent's root finder; the
    derivative is not trusted further, because lightly damped bins add fast small wiggles).
    The smooth objective of the optimizers: where the risk is not monotone it may find a later
    crossing than the first (the exact integer answer is computed by ``_steps_exact``).
    Returns 0 if the initial risk is <= target and BIG * floor / target (>= BIG, growing with the
    floor so that searches are pushed back) if the steady state is >= target."""
    if _initial(prep, wt) <= target:
        return 0.0
    fl = _floor(prep, wt)
    if fl >= target:
        return BIG * (fl / target)
    lt = math.log(target)
    # start a little before the previous crossing, so that the search meets the first crossing
    # (not a later one) when the risk wiggles around the target
    s0 = math.log(t_guess) - 0.1 if t_guess > 1.0 else 0.0
    g0, dg0 = _log_excess(prep, wt, lt, s0)
    if g0 == 0.0:
        return t_guess
    step = -g0 / dg0 if dg0 < 0.0 else (0.5 if g0 > 0.0 else -0.5)
    step = max(-2.0, min(2.0, step))
    if abs(step) < 1e-9:
        step = 1e-9 if g0 > 0.0 else -1e-9
    for _ in range(200):
        s1 = s0 + step
        if s1 > 36.8:                     # beyond T_MAX
            return BIG
        if s1 < -14.0:                    # crossing within 1e-6 of a step: flat relaxation
            return math.exp(s1)
        g1, _ = _log_excess(prep, wt, lt, s1)
        if (g1 > 0.0) != (g0 > 0.0):
            return math.exp(_zeroin(prep, wt, lt, s0, g0, s1, g1, 1e-10 * max(1.0, abs(s1))))
        # secant extrapolation (at least doubling, at most 2 in log t) in the same direction
        sec = -g1 * (s1 - s0) / (g1 - g0) if g1 != g0 else 2.0 * step
        if (sec > 0.0) != (step > 0.0) or abs(sec) < 2.0 * abs(step):
            sec = 2.0 * step
        step = max(-2.0, min(2.0, sec))
        s0, g0 = s1, g1
    return BIG
