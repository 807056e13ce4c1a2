"""Information-theoretic lower bound on steps (paper section 3.5).

Each gradient query of dimension i observes h_i (theta_i - theta*_i) with noise variance c_i, so after
N = B t examples no estimator of theta*_i beats variance c_i / (h_i^2 N) (Cramer-Rao), i.e. excess risk
1/2 h_i c_i / (h_i^2 N) = c_i / (2 h_i N). Summed: risk >= sum_i c_i / h_i / (2 N), and reaching
``target`` needs

    t >= sum_i (c_i / h_i) / (2 B target),

which for C = H (the paper's problem) is the paper's d / (2 B target). (It ignores the prior on
theta_0, as the paper does.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nqm import _validate as V
from nqm.problem import NQM

__all__ = ["LowerBoundResult", "lower_bound_steps"]


@dataclass(frozen=True)
class LowerBoundResult:
    """Attributes:
      steps: the smallest integer number of steps allowed by the bound (ceil of steps_real).
      steps_real: sum(c / h) / (2 B target).
      effective_dimension: sum_i c_i / h_i (= d when C = H).
      batch_size, target: the question asked.
    """

    steps: int
    steps_real: float
    effective_dimension: float
    batch_size: float
    target: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def lower_bound_steps(problem: NQM | None = None, *, batch_size: float,
                      target: float = 0.01) -> LowerBoundResult:
    """No optimizer reaches ``target`` in fewer steps than sum_i (c_i / h_i) / (2 B target)
    (d / (2 B target) for C = H).

    Example:
      >>> from nqm import lower_bound_steps
      >>> lower_bound_steps(batch_size=4).steps     # 10^4 / (2 * 4 * 0.01)
      125000
    """
    if problem is None:
        problem = NQM.paper()
    if not isinstance(problem, NQM):
        raise ValueError(f"problem must be an nqm.NQM or None, got {type(problem).__name__}")
    B = V.batch_size(batch_size)
    if math.isinf(B):
        raise ValueError("batch_size must be finite for the lower bound (it is 0 steps at inf)")
    tgt = V.target(target)
    d_eff = float(np.sum(problem.counts * problem.c / problem.h))
    real = d_eff / (2.0 * B * tgt)
    # guard the ceil against rounding (10^4 / 0.08 is 125000.00000000001 in floating point)
    steps = math.ceil(real * (1.0 - 1e-12))
    return LowerBoundResult(steps=steps, steps_real=real, effective_dimension=d_eff,
                            batch_size=B, target=tgt)
