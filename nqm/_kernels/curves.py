"""Risk curves: the total risk at many times t at once (``shared/spec/NQM.md`` section 3,
"Risk after t steps and the whole risk curve"), in parallel over t.
"""

import numpy as np
from numba import njit, prange

from nqm._kernels.prepared import _risk_t
from nqm._kernels.transition import _transition2


@njit(cache=True, parallel=True)
def _risk_curve(prep, wt, ts):
    """Total risk at every (integer or real) t of ts."""
    out = np.empty(ts.size)
    for i in prange(ts.size):
        out[i] = _risk_t(prep, wt, ts[i])
    return out


@njit(cache=True)
def _recurrence(opt, k, wt, nv, x0sq, lr, beta, omb, steps):
    """Risk after 0..steps updates by iterating S' = A S A^T + sigma^2 b b^T (O(steps) per bin;
    a cross-check of the closed form, and the exact method for short horizons)."""
    out = np.zeros(steps + 1)
    for j in range(k.size):
        r = _transition2(opt, k[j], lr, beta, omb)
        a00, a01, a10, a11, b0, b1 = r[0], r[1], r[2], r[3], r[8], r[9]
        X = x0sq[j]
        C = 0.0
        V = 0.0
        s2 = nv[j]
        out[0] += wt[j] * X
        for t in range(steps):
            Xn = a00 * a00 * X + 2.0 * a00 * a01 * C + a01 * a01 * V + s2 * b0 * b0
            Cn = a00 * a10 * X + (a00 * a11 + a01 * a10) * C + a01 * a11 * V + s2 * b0 * b1
            Vn = a10 * a10 * X + 2.0 * a10 * a11 * C + a11 * a11 * V + s2 * b1 * b1
            X = Xn
            C = Cn
            V = Vn
            out[t + 1] += wt[j] * X
    return out
