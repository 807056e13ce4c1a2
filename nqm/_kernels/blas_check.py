"""Start numba's CPU target without importing all of scipy.linalg.

The first kernel call of a process (a cached kernel too) loads numba's implementations of numpy,
among them ``numba.np.arraymath``, which on import checks that a BLAS is available by importing
``scipy.linalg.cython_blas``, i.e. the whole of ``scipy.linalg`` (~0.2 s of a ~1.3 s
``python -m nqm``). No kernel of nqm calls BLAS (no ``np.dot``, ``@`` or ``np.linalg`` in
``nqm._kernels``). ``skip_blas_import`` imports ``numba.np.arraymath`` with that check answered
"available" (scipy, a dependency of nqm, provides it); numba's linear algebra still imports
scipy's BLAS itself when a kernel that uses it is compiled, so other numba code in the process
works as before. Nothing computed changes: the check only decides whether numba registers its
BLAS-based implementations, which it does either way.
"""

from __future__ import annotations

import sys


def _available() -> None:
    """numba's ``ensure_blas`` for the duration of the import: BLAS is there (scipy's)."""


def skip_blas_import() -> None:
    """Import ``numba.np.arraymath`` without its ``import scipy.linalg.cython_blas`` (once per
    process, before the first kernel runs; a no-op if it is already imported or numba's layout
    is not the one this was written for)."""
    if "numba.np.arraymath" in sys.modules:
        return
    from numba.np import linalg

    check = getattr(linalg, "ensure_blas", None)
    if check is None:
        return
    linalg.ensure_blas = _available           # arraymath binds this name when it is imported
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        linalg.ensure_blas = check             # numba's linear algebra checks for real
