"""Learning-rate (and momentum) schedules and their exact risk (``shared/spec/NQM.md`` section 2,
"Schedules"; paper section 3.6.2 and appendix E.3).

A :class:`Schedule` is piecewise constant: piece i runs ``lengths[i]`` steps with learning rate
``lr[i]`` (and momentum ``momentum[i]``). Per-step arrays are run-length encoded into pieces
(:func:`from_steps`), so a step schedule of K pieces costs K closed-form segments, O(K log T) per
bin, not O(T) (``nqm._kernels._schedule_risk``); a schedule that changes every step (linear decay,
cosine) has one piece per step. Step t = 0, 1, ... uses the rate of the piece it falls in; the risk
after T updates is that of the whole schedule (the convention of ``tests/nqm/naive.py``).

Named schedules (every rate in units of the learning rate, every length in steps):

* :func:`constant`: lr for ``steps`` steps.
* :func:`linear_decay` (Shallue et al. 2018, paper appendix E.3):
  ``lr_t = lr (1 - (1 - decay_factor) t / decay_steps)`` for t < decay_steps, then
  ``lr decay_factor``.
* :func:`step_decay`: lr multiplied by ``factor`` at every boundary.
* :func:`exponential_decay`: ``lr decay_rate^(t / decay_steps)`` (``staircase``: integer division).
* :func:`cosine_decay`: ``lr (f + (1 - f) (1 + cos(pi t / decay_steps)) / 2)``, then ``lr f``.
* :func:`warmup`: a linear ramp ``lr_0 (t + 1) / warmup_steps`` for ``warmup_steps`` steps, then
  any schedule (its own t restarting at 0).

Evaluation: :func:`schedule_risk` (final risk), :func:`schedule_risk_curve` (risk after every
step or at chosen steps), :func:`schedule_risk_grad` (final risk and its gradient with respect to
the log-rate of every piece, by the adjoint pass). Any optimizer of ``nqm.Optimizer``: momentum
(fixed, or per piece in the schedule), Nesterov, preconditioning P = H^-power, and an EMA of the
iterates (``ema``). Rates are not required to be stable: an unstable piece is evaluated exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nqm import _kernels as K
from nqm import _validate as V
from nqm.problem import NQM

__all__ = [
    "Schedule",
    "ScheduleRiskCurve",
    "constant",
    "piecewise_constant",
    "from_steps",
    "linear_decay",
    "step_decay",
    "exponential_decay",
    "cosine_decay",
    "warmup",
    "schedule_risk",
    "schedule_risk_curve",
    "schedule_risk_grad",
]


@dataclass(frozen=True, eq=False)
class Schedule:
    """A piecewise-constant schedule: ``lengths[i]`` steps at ``lr[i]`` (and ``momentum[i]``).

    Attributes:
      lr: learning rate of every piece, >= 0, shape (K,).
      lengths: steps of every piece, integers >= 1, shape (K,).
      momentum: momentum of every piece in [0, 1), shape (K,), or None (the momentum given to the
        evaluating function is used throughout).
      name: a short description.
    """

    lr: np.ndarray
    lengths: np.ndarray
    momentum: np.ndarray | None = None
    name: str = field(default="piecewise constant")

    def __post_init__(self):
        lr = V.vector("lr", self.lr, positive=False)
        raw = np.asarray(self.lengths)
        lengths = V.vector("lengths", raw, positive=True, size=lr.size)
        if np.any(lengths != np.floor(lengths)):
            raise ValueError("lengths must be integers >= 1 (steps per piece)")
        if lengths.sum() > K.T_MAX:
            raise ValueError("lengths must add up to at most 2^53 steps")
        lr = lr.copy()
        lr.setflags(write=False)
        lengths = lengths.astype(np.int64)
        lengths.setflags(write=False)
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "lengths", lengths)
        if self.momentum is not None:
            mom = V.vector("momentum", self.momentum, positive=False, size=lr.size)
            if np.any(mom >= 1.0):
                raise ValueError("momentum must be in [0, 1) in every piece")
            mom = mom.copy()
            mom.setflags(write=False)
            object.__setattr__(self, "momentum", mom)

    @property
    def steps(self) -> int:
        """Total number of steps T."""
        return int(self.lengths.sum())

    @property
    def n_pieces(self) -> int:
        return int(self.lr.size)

    @property
    def boundaries(self) -> np.ndarray:
        """Step at which every piece starts, and T at the end: shape (K + 1,)."""
        return np.concatenate([[0], np.cumsum(self.lengths)])

    def per_step(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(lr, momentum) of every step, shape (T,) each (momentum None if the schedule has
        none)."""
        lr = np.repeat(self.lr, self.lengths)
        mom = None if self.momentum is None else np.repeat(self.momentum, self.lengths)
        return lr, mom

    def to_dict(self) -> dict:
        return {"name": self.name, "lr": self.lr.tolist(), "lengths": self.lengths.tolist(),
                "momentum": None if self.momentum is None else self.momentum.tolist(),
                "steps": self.steps}

    def __repr__(self) -> str:
        return (f"Schedule({self.name!r}: {self.n_pieces} pieces, {self.steps} steps, "
                f"lr {self.lr[0]:.4g} -> {self.lr[-1]:.4g})")


# ---------------------------------------------------------------------- constructors
def _steps_arg(name: str, value, *, low: int = 1) -> int:
    v = V.steps(value, name)
    if v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return v


def _rate(name: str, value) -> float:
    return V.real(name, value, low=0.0)


def piecewise_constant(lr, lengths, momentum=None, *, name: str = "piecewise constant") -> Schedule:
    """``lengths[i]`` steps at ``lr[i]`` (and ``momentum[i]``)."""
    return Schedule(np.asarray(lr, dtype=np.float64), lengths, momentum, name)


def from_steps(lr, momentum=None, *, name: str = "per step") -> Schedule:
    """A schedule from per-step arrays (step t uses ``lr[t]``, ``momentum[t]``), with runs of equal
    values merged into pieces (so a step schedule given step by step still costs O(K log T))."""
    lr = V.vector("lr", lr, positive=False)
    mom = None if momentum is None else V.vector("momentum", momentum, positive=False,
                                                 size=lr.size)
    change = np.ones(lr.size, dtype=bool)
    change[1:] = lr[1:] != lr[:-1]
    if mom is not None:
        change[1:] |= mom[1:] != mom[:-1]
    starts = np.flatnonzero(change)
    lengths = np.diff(np.append(starts, lr.size))
    return Schedule(lr[starts], lengths, None if mom is None else mom[starts], name)


def constant(lr: float, steps: int) -> Schedule:
    """``steps`` steps at the constant rate ``lr``."""
    lr = _rate("lr", lr)
    return Schedule(np.array([lr]), np.array([_steps_arg("steps", steps)]), None,
                    f"constant {lr:g}")


def linear_decay(lr: float, *, decay_factor: float, decay_steps: int, steps: int) -> Schedule:
    """Linear decay of Shallue et al. 2018 (paper appendix E.3): ``lr (1 - (1 - decay_factor)
    t / decay_steps)`` for t < decay_steps, then ``lr decay_factor`` until ``steps``.

    Args:
      lr: initial learning rate.
      decay_factor: final rate as a fraction of lr, in [0, 1].
      decay_steps: steps to reach the final rate (>= 1).
      steps: total steps T (>= 1).
    """
    lr = _rate("lr", lr)
    alpha = V.real("decay_factor", decay_factor, low=0.0, high=1.0)
    n = _steps_arg("decay_steps", decay_steps)
    T = _steps_arg("steps", steps)
    t = np.arange(T, dtype=np.float64)
    rates = np.where(t < n, lr * (1.0 - (1.0 - alpha) * t / n), lr * alpha)
    return from_steps(rates, name=f"linear decay {lr:g} -> {lr * alpha:g} over {n}")


def step_decay(lr: float, *, boundaries, factor: float, steps: int) -> Schedule:
    """``lr`` multiplied by ``factor`` at every step of ``boundaries`` (increasing, in 1..steps-1):
    lr for t < boundaries[0], lr factor up to boundaries[1], ..."""
    lr = _rate("lr", lr)
    f = V.real("factor", factor, low=0.0)
    T = _steps_arg("steps", steps)
    b = np.asarray(boundaries, dtype=np.float64).reshape(-1)
    if b.size and (np.any(b != np.floor(b)) or np.any(b < 1) or np.any(b >= T)
                   or np.any(np.diff(b) <= 0)):
        raise ValueError(f"boundaries must be increasing integers in [1, steps - 1 = {T - 1}]")
    edges = np.concatenate([[0], b, [T]]).astype(np.int64)
    rates = lr * f ** np.arange(edges.size - 1)
    return Schedule(rates, np.diff(edges), None,
                    f"step decay {lr:g} x {f:g} at {b.astype(int).tolist()}")


def exponential_decay(lr: float, *, decay_rate: float, decay_steps: int, steps: int,
                      staircase: bool = False) -> Schedule:
    """``lr decay_rate^(t / decay_steps)`` (``staircase``: ``t // decay_steps``, a step schedule
    of ceil(steps / decay_steps) pieces)."""
    lr = _rate("lr", lr)
    r = V.real("decay_rate", decay_rate, low=0.0, low_open=True)
    n = _steps_arg("decay_steps", decay_steps)
    T = _steps_arg("steps", steps)
    name = f"exponential decay {lr:g} x {r:g}^(t/{n})" + (" staircase" if staircase else "")
    if staircase:
        edges = np.append(np.arange(0, T, n), T)
        return Schedule(lr * r ** np.arange(edges.size - 1), np.diff(edges), None, name)
    return from_steps(lr * r ** (np.arange(T) / n), name=name)


def cosine_decay(lr: float, *, decay_steps: int, steps: int,
                 final_fraction: float = 0.0) -> Schedule:
    """Cosine decay ``lr (f + (1 - f) (1 + cos(pi t / decay_steps)) / 2)`` for t < decay_steps,
    then ``lr f`` (f = ``final_fraction``)."""
    lr = _rate("lr", lr)
    f = V.real("final_fraction", final_fraction, low=0.0, high=1.0)
    n = _steps_arg("decay_steps", decay_steps)
    T = _steps_arg("steps", steps)
    t = np.arange(T, dtype=np.float64)
    rates = np.where(t < n, lr * (f + (1.0 - f) * 0.5 * (1.0 + np.cos(np.pi * t / n))), lr * f)
    return from_steps(rates, name=f"cosine decay {lr:g} over {n}")


def warmup(schedule: Schedule, warmup_steps: int) -> Schedule:
    """Linear warmup ``lr_0 (t + 1) / warmup_steps`` for t < ``warmup_steps`` (lr_0 the first
    rate of ``schedule``), then ``schedule`` (which restarts its own step count at 0). Momentum,
    if the schedule has one, is that of its first piece during warmup."""
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be an nqm.Schedule, got {type(schedule).__name__}")
    w = _steps_arg("warmup_steps", warmup_steps)
    ramp = schedule.lr[0] * np.arange(1, w + 1) / w
    lr = np.concatenate([ramp, schedule.lr])
    lengths = np.concatenate([np.ones(w, dtype=np.int64), schedule.lengths])
    mom = None
    if schedule.momentum is not None:
        mom = np.concatenate([np.full(w, schedule.momentum[0]), schedule.momentum])
    return Schedule(lr, lengths, mom, f"warmup {w}, then {schedule.name}")


# ---------------------------------------------------------------------- evaluation
@dataclass(frozen=True, eq=False)
class ScheduleRiskCurve:
    """Risk of a schedule at several step counts.

    Attributes:
      steps: step counts t (float64 integers, 0..T).
      risk: expected risk after t updates.
      schedule: the schedule evaluated.
      batch_size, power, nesterov, ema: the rest of the optimizer.
    """

    steps: np.ndarray
    risk: np.ndarray
    schedule: Schedule
    batch_size: float
    power: float
    nesterov: bool
    ema: float | None

    def to_dict(self) -> dict:
        return {"steps": self.steps.tolist(), "risk": self.risk.tolist(),
                "schedule": self.schedule.to_dict(),
                "batch_size": None if math.isinf(self.batch_size) else self.batch_size,
                "power": self.power, "nesterov": self.nesterov, "ema": self.ema}


def kernel_args(problem: NQM, schedule: Schedule, *, batch_size, momentum=0.0,
                nesterov: bool = False, power: float = 0.0, ema=None):
    """Validated arguments of ``K._schedule_risk`` (everything but lr, lengths and grad):
    (opt, use_ema, k, nv, x0sq, wt, beta, omb, gamma, omg)."""
    if not isinstance(problem, NQM):
        raise ValueError(f"problem must be an nqm.NQM, got {type(problem).__name__}")
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be an nqm.Schedule, got {type(schedule).__name__}")
    B = V.batch_size(batch_size)
    p = V.power(power)
    beta = V.momentum(momentum)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
    if schedule.momentum is not None:
        if beta != 0.0:
            raise ValueError("give momentum either in the schedule or as momentum=, not both")
        betas = schedule.momentum.astype(np.float64)
    else:
        betas = np.full(schedule.n_pieces, beta)
    gamma = None if ema is None else V.ema(ema)
    if np.any(betas > 0.0):
        opt = K.NESTEROV if nesterov else K.HEAVY_BALL
    else:
        opt = K.SGD
    k, c_eff = problem.preconditioned(p)
    nv = np.zeros_like(c_eff) if math.isinf(B) else c_eff / B
    wt = 0.5 * problem.counts * problem.h
    g = 0.0 if gamma is None else gamma
    return (opt, gamma is not None, k, nv, problem.x0sq, wt, betas, 1.0 - betas, g, 1.0 - g)


def _run(problem, schedule, grad, **kw):
    opt, use_ema, k, nv, x0sq, wt, beta, omb, g, omg = kernel_args(problem, schedule, **kw)
    # writable copies, as every other caller passes: numba would compile the kernel once more
    # for read-only arrays (a distinct type), 3 CPU-s
    return K._schedule_risk(opt, use_ema, k, nv, x0sq, wt, schedule.lr.astype(np.float64), beta,
                            omb, g, omg, schedule.lengths.astype(np.int64), grad)


def schedule_risk(problem: NQM, schedule: Schedule, *, batch_size: float, momentum: float = 0.0,
                  nesterov: bool = False, power: float = 0.0, ema: float | None = None) -> float:
    """Exact expected risk after the whole schedule (``schedule.steps`` updates).

    Args:
      problem: the NQM.
      schedule: a :class:`Schedule` (e.g. ``linear_decay(1.0, decay_factor=0.01, ...)``).
      batch_size: B >= 1 (``math.inf``: noise-free).
      momentum: a fixed momentum (when the schedule has none).
      nesterov, power, ema: the optimizer (see :class:`nqm.Optimizer`).

    Example:
      >>> from nqm import NQM, constant, schedule_risk, step_decay
      >>> s = step_decay(1.0, boundaries=[20000], factor=0.1, steps=30000)
      >>> decayed = schedule_risk(NQM.paper(), s, batch_size=64)
      >>> decayed < 0.5 * schedule_risk(NQM.paper(), constant(1.0, 30000), batch_size=64)
      True
    """
    risk, _ = _run(problem, schedule, False, batch_size=batch_size, momentum=momentum,
                   nesterov=nesterov, power=power, ema=ema)
    return float(risk[-1])


def schedule_risk_grad(problem: NQM, schedule: Schedule, *, batch_size: float,
                       momentum: float = 0.0, nesterov: bool = False, power: float = 0.0,
                       ema: float | None = None) -> tuple[float, np.ndarray]:
    """Final risk and its gradient with respect to ``log lr`` of every piece, shape (K,), by the
    adjoint (reverse) pass over the pieces, at the cost of about two forward passes."""
    risk, g = _run(problem, schedule, True, batch_size=batch_size, momentum=momentum,
                   nesterov=nesterov, power=power, ema=ema)
    return float(risk[-1]), g


def schedule_risk_curve(problem: NQM, schedule: Schedule, *, batch_size: float,
                        momentum: float = 0.0, nesterov: bool = False, power: float = 0.0,
                        ema: float | None = None, steps=None) -> ScheduleRiskCurve:
    """Risk after t updates for every t = 0..T (``steps=None``) or for the integer step counts
    in ``steps`` (each in 0..T). The pieces are cut at the requested steps, so a few points of a
    long step schedule cost O((K + len(steps)) log T)."""
    T = schedule.steps
    if steps is None:
        ts = np.arange(T + 1, dtype=np.float64)
    else:
        ts = V.vector("steps", steps, positive=False)
        if np.any(ts != np.floor(ts)) or np.any(ts > T):
            raise ValueError(f"steps must be integers in [0, {T}] (the schedule's length)")
    bounds = schedule.boundaries
    cuts = np.union1d(bounds, ts.astype(np.int64))
    idx = np.searchsorted(bounds, cuts[:-1], side="right") - 1      # piece of every refined cut
    refined = Schedule(schedule.lr[idx], np.diff(cuts),
                       None if schedule.momentum is None else schedule.momentum[idx],
                       schedule.name)
    risk, _ = _run(problem, refined, False, batch_size=batch_size, momentum=momentum,
                   nesterov=nesterov, power=power, ema=ema)
    out = risk[np.searchsorted(cuts, ts.astype(np.int64))]
    return ScheduleRiskCurve(ts, out, schedule, V.batch_size(batch_size), V.power(power),
                             bool(nesterov), None if ema is None else V.ema(ema))
