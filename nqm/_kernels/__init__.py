"""numba kernels of the exact noisy quadratic model (private; the public API validates, then calls).

The mechanism (``shared/spec/NQM.md`` section 2): on one dimension (bin) every optimizer is a linear
recurrence on a state s of size n (x; (x, v) with momentum; xbar appended for an EMA),
``s' = A s + b xi``, ``Var xi = sigma^2``, whose second moments obey
``S' = A S A^T + sigma^2 b b^T`` with the closed form over a constant segment

    S_t = A^t (S_0 - S_inf) (A^t)^T + S_inf,      S_inf = A S_inf A^T + sigma^2 b b^T.

One topic a module; each imports only modules above it in this list:

* ``transition``  (A, b, D = I - A) of each optimizer, its lr-derivative, the stability limit;
* ``noise``       the noise accumulated after t steps, by doubling (nothing cancels);
* ``prepared``    the per-bin representation (n <= 2) every constant-hyperparameter question uses,
  and the risk at any real t;
* ``crossings``   steps to target: exact first crossing and the smooth relaxation;
* ``brent``       Brent's bounded minimisation in reverse-communication form;
* ``tuning``      the optimal learning rate (and momentum) of one cell;
* ``limits``      the small-batch limits (gradient flow, damped oscillator): E_min;
* ``curves``      risk at many t;
* ``pieces``      one constant piece of a schedule in closed form, with its lr-derivative;
* ``schedules``   the exact risk of a piecewise-constant schedule and its adjoint gradient.

The public modules import the kernels from this package (``from nqm import _kernels as K``); the
names below are re-exported for them.

Cache: every kernel is compiled with ``cache=True``. numba keys a cached kernel on its own file
only, and a kernel that calls a kernel of another module carries the callee's compiled code in
its own cache entry, so an edit of one module could leave its callers running stale code. At
import this package therefore hashes its sources (every ``*.py`` file here) and compares the
digest with the stamp ``kernel-sources.sha256`` in the cache directory; if they differ, it
deletes this package's cache files (``*.nbi``, ``*.nbc`` of these modules only) and writes the new
stamp, so every kernel is recompiled once (``nqm._kernels.cache.drop_stale_cache``). With
unchanged sources the cache is loaded as usual.

Start-up: numba's CPU target imports all of scipy.linalg to check for a BLAS that no kernel here
uses; ``nqm._kernels.blas_check`` skips that import (~0.2 s of every process).
"""

from nqm._kernels.blas_check import skip_blas_import
from nqm._kernels.cache import drop_stale_cache
from nqm._kernels.crossings import BIG, T_MAX, _relaxed_steps, _steps_exact
from nqm._kernels.curves import _risk_curve
from nqm._kernels.limits import _e_min, _osc_crossing
from nqm._kernels.prepared import NCOL, _floor, _prepare, _risk_t
from nqm._kernels.schedules import _schedule_risk
from nqm._kernels.transition import HEAVY_BALL, NESTEROV, SGD, SGD_EMA, _lr_max, _transition2
from nqm._kernels.tuning import X_HI, X_LO, _steps_at, _tune_cell

__all__ = [
    "BIG", "HEAVY_BALL", "NCOL", "NESTEROV", "SGD", "SGD_EMA", "T_MAX", "X_HI", "X_LO",
    "_e_min", "_floor", "_lr_max", "_osc_crossing", "_prepare", "_relaxed_steps", "_risk_curve",
    "_risk_t", "_schedule_risk", "_steps_at", "_steps_exact", "_transition2",
    "_tune_cell",
]

drop_stale_cache(__name__)
skip_blas_import()          # numba's start-up would import all of scipy.linalg for a BLAS check
