"""Per-dimension convergence rates of the constant-hyperparameter optimizers (paper section 3.2,
eqn. 7 and Fig. 2).

On one bin of curvature k the mean state evolves as ``E[s_{t+1}] = A E[s_t]`` (``nqm.Optimizer``
supplies A), so ``E[x_t]`` shrinks like ``rho(A)^t`` with rho the spectral radius of A, and the
noise-free part of the risk (first term of paper eqn. 4 / 6) like ``rho(A)^(2t)``. For SGD
``rho = |1 - lr k|``; for heavy ball it is the larger modulus of the roots of
``z^2 - (1 + beta - lr k) z + beta`` (paper eqn. 7 in the overdamped case, ``sqrt(beta)`` when
underdamped), which at small ``lr`` is close to ``1 - lr k / (1 - beta)``: SGD's rate at the
effective learning rate ``lr / (1 - beta)``.
"""

from __future__ import annotations

import numpy as np

from nqm.optimizers import Optimizer
from nqm.problem import NQM

__all__ = ["convergence_rate"]


def convergence_rate(problem: NQM, *, lr: float, momentum: float = 0.0, nesterov: bool = False,
                     power: float = 0.0) -> np.ndarray:
    """Per-step contraction factor of ``E[theta]`` in every bin: the spectral radius of the bin's
    transition matrix A (dimensionless; < 1 iff the optimizer is stable in that bin).

    Args:
      problem: the NQM; one value is returned per bin (``problem.h`` order).
      lr, momentum, nesterov, power: the optimizer (see :class:`nqm.Optimizer`). Unlike the risk
        functions this does not require a stable ``lr``: rates >= 1 show where it is unstable.

    Returns:
      float64 array of shape ``(problem.n_bins,)``.

    Example:
      >>> from nqm import NQM
      >>> one = NQM.from_spectrum([1.0], bins=None)
      >>> float(convergence_rate(one, lr=0.25)[0])      # |1 - lr h|
      0.75
    """
    if not isinstance(problem, NQM):
        raise ValueError(f"problem must be an nqm.NQM, got {type(problem).__name__}")
    A, _, _ = Optimizer(lr, momentum, nesterov, power).transition(problem)
    if A.shape[1] == 1:
        return np.abs(A[:, 0, 0])
    # 2x2 per bin: roots of z^2 - tr z + det; the modulus of a complex pair is sqrt(det)
    tr = A[:, 0, 0] + A[:, 1, 1]
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    disc = tr * tr - 4.0 * det
    root = np.sqrt(np.abs(disc))
    real_pair = np.maximum(np.abs(tr + root), np.abs(tr - root)) / 2.0
    complex_pair = np.sqrt(np.abs(det))
    return np.where(disc >= 0.0, real_pair, complex_pair)
