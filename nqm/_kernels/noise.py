"""The noise a bin has accumulated after t steps, by doubling: a sum of positive terms only.

``shared/spec/NQM.md`` section 2: with constant (A, b) the second moments after t steps from S_0 = 0
are ``V_t = sum_(k < t) A^k Q A^kT``, Q = sigma^2 b b^T, the term ``S_inf - A^t S_inf A^tT`` of the
closed form. Summed as ``V_(a+b) = V_a + A^a V_b A^aT`` nothing cancels, where the difference would
lose every digit for a bin far below its steady state. O(log t) 2x2 products.
"""

from numba import njit


@njit(cache=True)
def _mul2(a, b, c, d, e, f, g, h):
    """[[a, b], [c, d]] @ [[e, f], [g, h]]."""
    return a * e + b * g, a * f + b * h, c * e + d * g, c * f + d * h


@njit(cache=True)
def _congruence2(p0, p1, p2, p3, s0, s1, s2):
    """Symmetric P S P^T for P = [[p0, p1], [p2, p3]], S = [[s0, s1], [s1, s2]]."""
    u0 = p0 * s0 + p1 * s1
    u1 = p0 * s1 + p1 * s2
    u2 = p2 * s0 + p3 * s1
    u3 = p2 * s1 + p3 * s2
    return u0 * p0 + u1 * p1, u0 * p2 + u1 * p3, u2 * p2 + u3 * p3


@njit(cache=True)
def _noise_accum(row, t):
    """((A^t)_xx, (sum_(k < t) A^k Q A^kT)_xx), Q = sigma^2 b b^T, integer t: the noise-free factor
    and the noise accumulated after
    t steps, by doubling V_(a+b) = V_a + A^a V_b A^aT. Every term is positive semidefinite, so
    nothing cancels (unlike S_inf - A^t S_inf A^tT when the bin is far below its steady state);
    powers of A near I are carried as E = I - A^(2^k), E' = 2E - E^2, so that
    1 - lr h ~ 1 keeps its digits. O(log t)."""
    a00, a01, a10, a11 = row[12], row[13], row[14], row[15]
    e00, e01, e10, e11 = row[16], row[17], row[18], row[19]
    b0, b1, nv = row[20], row[21], row[22]
    w0, w1, w2 = nv * b0 * b0, nv * b0 * b1, nv * b1 * b1            # V_(2^k)
    near = max(max(abs(e00), abs(e01)), max(abs(e10), abs(e11))) < 0.5
    r00, r01, r10, r11 = 1.0, 0.0, 0.0, 1.0                           # R = A^r
    f00, f01, f10, f11 = 0.0, 0.0, 0.0, 0.0                           # I - R while res_near
    res_near = True
    v0 = 0.0                                                          # (V_r)_xx
    tt = int(t)
    while tt > 0:
        if tt & 1:
            c0, c1, c2 = _congruence2(r00, r01, r10, r11, w0, w1, w2)
            v0 += c0
            if res_near and near:
                g00, g01, g10, g11 = _mul2(f00, f01, f10, f11, e00, e01, e10, e11)
                f00 = f00 + e00 - g00
                f01 = f01 + e01 - g01
                f10 = f10 + e10 - g10
                f11 = f11 + e11 - g11
                r00, r01, r10, r11 = 1.0 - f00, -f01, -f10, 1.0 - f11
            else:
                r00, r01, r10, r11 = _mul2(r00, r01, r10, r11, a00, a01, a10, a11)
                res_near = False
        tt >>= 1
        if tt == 0:
            break
        c0, c1, c2 = _congruence2(a00, a01, a10, a11, w0, w1, w2)
        w0 += c0
        w1 += c1
        w2 += c2
        if near:
            g00, g01, g10, g11 = _mul2(e00, e01, e10, e11, e00, e01, e10, e11)
            e00 = 2.0 * e00 - g00
            e01 = 2.0 * e01 - g01
            e10 = 2.0 * e10 - g10
            e11 = 2.0 * e11 - g11
            a00, a01, a10, a11 = 1.0 - e00, -e01, -e10, 1.0 - e11
            near = max(max(abs(e00), abs(e01)), max(abs(e10), abs(e11))) < 0.5
        else:
            a00, a01, a10, a11 = _mul2(a00, a01, a10, a11, a00, a01, a10, a11)
    return r00, v0
