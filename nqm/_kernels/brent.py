"""Brent's bounded minimisation of a function of one variable, as ``scipy.optimize.fminbound``,
in reverse-communication form (the caller evaluates), so that one implementation serves every
search of the tuner: the state is st = [a, b, v, w, x, fv, fw, fx, d, e, xtol].

Brent, "Algorithms for Minimization without Derivatives" (1973), chapter 5.
"""

import math

from numba import njit

GOLDEN = 0.3819660112501051


@njit(cache=True)
def _brent_init(st, a, b, x, fx, xtol):
    st[0] = a
    st[1] = b
    st[2] = x
    st[3] = x
    st[4] = x
    st[5] = fx
    st[6] = fx
    st[7] = fx
    st[8] = 0.0
    st[9] = 0.0
    st[10] = xtol


@njit(cache=True)
def _brent_next(st):
    """Next point to evaluate, or NaN when converged (the minimum is st[4], value st[7])."""
    a, b, v, w, x, fv, fw, fx, d, e, xtol = (st[0], st[1], st[2], st[3], st[4], st[5], st[6],
                                             st[7], st[8], st[9], st[10])
    xm = 0.5 * (a + b)
    tol1 = 1e-12 * abs(x) + xtol / 3.0
    tol2 = 2.0 * tol1
    if abs(x - xm) <= tol2 - 0.5 * (b - a):
        return math.nan
    golden_step = True
    if abs(e) > tol1:
        r = (x - w) * (fx - fv)
        q = (x - v) * (fx - fw)
        p = (x - v) * q - (x - w) * r
        q = 2.0 * (q - r)
        if q > 0.0:
            p = -p
        q = abs(q)
        rr = e
        e = d
        if q != 0.0 and abs(p) < abs(0.5 * q * rr) and p > q * (a - x) and p < q * (b - x) \
                and math.isfinite(p / q):
            d = p / q
            u = x + d
            if (u - a) < tol2 or (b - u) < tol2:
                d = tol1 if xm >= x else -tol1
            golden_step = False
    if golden_step:
        e = (a - x) if x >= xm else (b - x)
        d = GOLDEN * e
    st[8] = d
    st[9] = e
    return x + (d if abs(d) >= tol1 else (tol1 if d > 0 else -tol1))


@njit(cache=True)
def _brent_tell(st, u, fu):
    a, b, v, w, x, fv, fw, fx = st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]
    if fu <= fx:
        if u >= x:
            a = x
        else:
            b = x
        v, fv = w, fw
        w, fw = x, fx
        x, fx = u, fu
    else:
        if u < x:
            a = u
        else:
            b = u
        if fu <= fw or w == x:
            v, fv = w, fw
            w, fw = u, fu
        elif fu <= fv or v == x or v == w:
            v, fv = u, fu
    st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7] = a, b, v, w, x, fv, fw, fx
