"""No thread pool for small linear algebra: scipy's optimizers call BLAS on vectors of at most a
few thousand entries, where OpenBLAS threads cost far more than they save (and spin, taking the
cores from everything else, on a busy machine)."""

from __future__ import annotations

import functools


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()       # the BLAS libraries loaded now (numpy's and scipy's)


def one_blas_thread():
    """Context manager: every BLAS library (numpy's and scipy's OpenBLAS, MKL ...) uses one
    thread inside. Import scipy.optimize before the first call, so that its BLAS is seen."""
    return _controller().limit(limits=1, user_api="blas")
