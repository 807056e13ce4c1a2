"""Risk curves: the total risk at many times t at once (``shared/spec/NQM.md`` section 3,
"Risk after t steps and the whole risk curve"), in parallel over t.
"""

import numpy as np
from numba import njit, prange

from nqm._kernels.prepared import _risk_t


@njit(cache=True, parallel=True)
def _risk_curve(prep, wt, ts):
    """Total risk at every (integer or real) t of ts."""
    out = np.empty(ts.size)
    for i in prange(ts.size):
        out[i] = _risk_t(prep, wt, ts[i])
    return out
