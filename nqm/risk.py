"""Exact expected risk of a constant-hyperparameter optimizer on an NQM.

Risk after t updates (``shared/spec/NQM.md`` section 2): ``1/2 sum_j counts_j h_j E[x_j^2]`` with
E[x^2] the xx entry of the second moments ``S_t = A^t (S_0 - S_inf) A^tT + S_inf``, evaluated in
closed form (O(1) per bin and per t, exact at critical damping and for t up to 2^53; see
``nqm._kernels``). For SGD it is paper eqn. 4,
``(1 - a h)^(2t) E[l_0] + a c / (2 B (2 - a h)) (1 - (1 - a h)^(2t))``, summed over bins.
With ``ema=gamma`` the risk is that of the exponential moving average of the iterates (see
``nqm.optimizers``); momentum with an EMA (a 3-dimensional state) is evaluated by the schedule
kernel as a one-piece schedule (O(log t) per bin and t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nqm import _kernels as K
from nqm import _validate as V
from nqm.optimizers import Optimizer, stability_limit
from nqm.problem import NQM

__all__ = ["RiskCurve", "risk", "risk_curve", "steady_state_risk", "stability_limit"]


@dataclass(frozen=True, eq=False)
class RiskCurve:
    """Risk at several step counts.

    Attributes:
      steps: step counts t (number of updates), float64 (integers).
      risk: expected risk after each t.
      optimizer: the optimizer evaluated.
      batch_size: B.
      steady_state: limit of the risk as t -> infinity (nan for momentum with an EMA).
    """

    steps: np.ndarray
    risk: np.ndarray
    optimizer: Optimizer
    batch_size: float
    steady_state: float

    def to_dict(self) -> dict:
        return {"steps": self.steps.tolist(), "risk": self.risk.tolist(),
                "lr": self.optimizer.lr, "momentum": self.optimizer.momentum,
                "nesterov": self.optimizer.nesterov, "power": self.optimizer.power,
                "ema": self.optimizer.ema, "batch_size": _json_number(self.batch_size), "steady_state": self.steady_state}


def _json_number(x: float):
    return None if math.isinf(x) else x


def prepared(problem: NQM, optimizer: Optimizer, batch_size: float):
    """Validated kernel inputs: (prepared rows, weights) for ``optimizer`` at ``batch_size``."""
    if not isinstance(problem, NQM):
        raise ValueError(f"problem must be an nqm.NQM, got {type(problem).__name__}")
    B = V.batch_size(batch_size)
    optimizer.check_stable(problem)
    k, c_eff = problem.preconditioned(optimizer.power)
    nv = np.zeros_like(c_eff) if math.isinf(B) else c_eff / B
    prep = np.empty((k.size, K.NCOL))
    y = optimizer.y
    K._prepare(optimizer.code, k, nv, problem.x0sq, optimizer.lr, y, 1.0 - y, prep)
    wt = 0.5 * problem.counts * problem.h
    return prep, wt


def _momentum_ema_curve(problem: NQM, optimizer: Optimizer, batch_size: float,
                        ts: np.ndarray) -> np.ndarray:
    """Risk at the (integer) step counts ts of momentum + EMA (3-dimensional state): a constant
    schedule cut at the sorted distinct ts, evaluated piece by piece by the schedule kernel."""
    if not isinstance(problem, NQM):
        raise ValueError(f"problem must be an nqm.NQM, got {type(problem).__name__}")
    B = V.batch_size(batch_size)
    optimizer.check_stable(problem)
    k, c_eff = problem.preconditioned(optimizer.power)
    nv = np.zeros_like(c_eff) if math.isinf(B) else c_eff / B
    uniq = np.unique(ts)
    ends = uniq[uniq > 0]
    lengths = np.diff(np.concatenate([[0.0], ends])).astype(np.int64)
    npc = lengths.size
    out = np.full(1, 0.5 * float(np.sum(problem.counts * problem.h * problem.x0sq)))
    if npc:
        beta = np.full(npc, optimizer.momentum)
        out, _ = K._schedule_risk(optimizer.base_code, True, k, nv, problem.x0sq,
                                  0.5 * problem.counts * problem.h, np.full(npc, optimizer.lr),
                                  beta, 1.0 - beta, optimizer.ema, 1.0 - optimizer.ema, lengths,
                                  False)
    at = np.concatenate([[0.0], ends])
    return out[np.searchsorted(at, ts)]


def risk(problem: NQM, steps: int, *, lr: float, batch_size: float, momentum: float = 0.0,
         nesterov: bool = False, power: float = 0.0, ema: float | None = None) -> float:
    """Expected risk after ``steps`` updates.

    Args:
      problem: the NQM (e.g. ``NQM.paper()``).
      steps: number of updates t >= 0.
      lr: learning rate, below the stability limit (see :func:`stability_limit`).
      batch_size: B >= 1 (``math.inf``: noise-free).
      momentum: beta in [0, 1); 0 is (preconditioned) SGD.
      nesterov: Nesterov instead of heavy-ball momentum.
      power: preconditioner P = H^-power, power in [0, 1].
      ema: decay gamma in [0, 1) of an EMA of the iterates (risk measured on the average), or None.

    Example:
      >>> from nqm import NQM, risk
      >>> round(risk(NQM.paper(), 0, lr=0.1, batch_size=1), 6)
      4.893803
    """
    t = V.steps(steps)
    opt = Optimizer(lr, momentum, nesterov, power, ema)
    if opt.ema is not None and opt.momentum != 0.0:
        return float(_momentum_ema_curve(problem, opt, batch_size, np.array([float(t)]))[0])
    prep, wt = prepared(problem, opt, batch_size)
    return float(K._risk_t(prep, wt, float(t)))


def risk_curve(problem: NQM, steps, *, lr: float, batch_size: float, momentum: float = 0.0,
               nesterov: bool = False, power: float = 0.0,
               ema: float | None = None) -> RiskCurve:
    """Risk at t = 0, 1, ..., steps (``steps`` an int) or at every t of an array of step counts."""
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        ts = np.arange(V.steps(steps) + 1, dtype=np.float64)
    else:
        ts = V.vector("steps", steps, positive=False)
        if np.any(ts != np.floor(ts)):
            raise ValueError("steps must be integers (numbers of updates)")
    opt = Optimizer(lr, momentum, nesterov, power, ema)
    if opt.ema is not None and opt.momentum != 0.0:
        return RiskCurve(ts, _momentum_ema_curve(problem, opt, batch_size, ts), opt,
                         V.batch_size(batch_size), math.nan)
    prep, wt = prepared(problem, opt, batch_size)
    return RiskCurve(ts, K._risk_curve(prep, wt, ts), opt, V.batch_size(batch_size),
                     float(K._floor(prep, wt)))


def steady_state_risk(problem: NQM, *, lr: float, batch_size: float, momentum: float = 0.0,
                      nesterov: bool = False, power: float = 0.0,
                      ema: float | None = None) -> float:
    """Limit of the risk as t -> infinity (the noise floor): 1/2 sum counts h S_inf,xx, from the
    discrete Lyapunov equation (SGD: a c / (2 B (2 - a h)) per dimension)."""
    prep, wt = prepared(problem, Optimizer(lr, momentum, nesterov, power, ema), batch_size)
    return float(K._floor(prep, wt))
