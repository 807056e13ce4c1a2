"""Steps to target: the exact first crossing of the risk below a target.

Convention: ``steps`` is the number of updates after which the expected risk is <= target for the
first time (1-based; 0 if the initial risk already is). The authors' notebook returns one less (the
last t whose risk is NOT below target) and finds it by bisection, which assumes the risk is monotone
in t; it is not (momentum oscillates; a bin that starts below its noise floor rises). Here the first
crossing is exact: a branch and bound over integer intervals prunes every interval whose lower bound
on the risk (noise-free part at its smallest, accumulated noise at its start) is above the target,
and evaluates the closed form at single integers (``nqm._kernels._steps_exact``).

If the steady-state risk is not below the target the risk can still dip below it transiently; that
dip is the first crossing. If it never gets there, :func:`steps_to_target` raises a ValueError that
says so (an unreachable target is an error, not a number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nqm import _kernels as K
from nqm import _validate as V
from nqm.optimizers import Optimizer
from nqm.problem import NQM
from nqm.risk import prepared

__all__ = ["StepsResult", "steps_to_target"]


@dataclass(frozen=True)
class StepsResult:
    """Result of :func:`steps_to_target`.

    Attributes:
      steps: number of updates until the risk is first <= target (0 if it starts there).
      risk: risk after ``steps`` updates (<= target).
      risk_before: risk after ``steps - 1`` updates (> target; the initial risk if steps == 0).
      steady_state: the risk's limit as t -> infinity.
      target, batch_size, lr, momentum, nesterov, power, ema: the question asked.
    """

    steps: int
    risk: float
    risk_before: float
    steady_state: float
    target: float
    batch_size: float
    lr: float
    momentum: float
    nesterov: bool
    power: float
    ema: float | None = None

    @property
    def examples(self) -> float:
        """Examples processed: batch_size * steps."""
        return self.batch_size * self.steps

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["batch_size"] = None if math.isinf(self.batch_size) else self.batch_size
        return d


def exact_steps(prep, wt, target: float, t_guess: float = 1.0) -> int:
    """Kernel call with the error handling shared by the public functions."""
    n = K._steps_exact(prep, wt, target, t_guess)
    if n == -1.0:
        raise ValueError(
            f"target={target!r} is unreachable: the steady-state risk "
            f"{K._floor(prep, wt):.6g} is not below it and the risk never dips below it")
    if n == -2.0:
        raise ValueError(f"target={target!r} is not reached within 2^53 steps")
    return int(n)


def steps_to_target(problem: NQM, *, lr: float, batch_size: float, momentum: float = 0.0,
                    nesterov: bool = False, power: float = 0.0, ema: float | None = None,
                    target: float = 0.01) -> StepsResult:
    """Exact number of updates until the expected risk first reaches ``target``.

    Args:
      problem: the NQM.
      lr: learning rate (below the stability limit).
      batch_size: B >= 1 (``math.inf``: noise-free).
      momentum, nesterov, power: the optimizer (see :class:`nqm.Optimizer`).
      ema: decay gamma of an EMA of the iterates (risk on the average; SGD only), or None.
      target: target risk > 0 (paper: 0.01).

    Raises:
      ValueError: bad input, an unstable lr, or an unreachable target.

    Example:
      >>> from nqm import NQM, steps_to_target
      >>> steps_to_target(NQM.paper(), lr=0.5, batch_size=1024).steps > 0
      True
    """
    tgt = V.target(target)
    opt = Optimizer(lr, momentum, nesterov, power, ema)
    prep, wt = prepared(problem, opt, batch_size)
    guess = K._relaxed_steps(prep, wt, tgt, 1.0)
    n = exact_steps(prep, wt, tgt, guess if guess < K.BIG else 1.0)
    return StepsResult(
        steps=n, risk=float(K._risk_t(prep, wt, float(n))),
        risk_before=float(K._risk_t(prep, wt, float(max(n - 1, 0)))),
        steady_state=float(K._floor(prep, wt)), target=tgt, batch_size=V.batch_size(batch_size),
        lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov, power=opt.power, ema=opt.ema)
