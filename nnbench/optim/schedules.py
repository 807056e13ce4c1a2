"""Learning-rate schedules: a schedule is a function step -> lr (Zhang et al. 2019, appendix E.3).

    constant        lr_t = lr
    linear_decay    lr_t = lr * (1 - (1 - decay_factor) * min(t, decay_steps) / decay_steps)

Linear decay (Shallue et al. 2018; Zhang et al. appendix E.3) falls linearly from lr
at t = 0 to decay_factor * lr at t = decay_steps and stays there. The step index t counts updates
taken so far (0 before the first update). The trial loop sets every ``param_group["lr"] =
schedule(step)`` before each step. Schedules are frozen dataclasses: callable, comparable, picklable.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from nnbench.optim import _validate as check

__all__ = ["SCHEDULES", "ConstantSchedule", "LinearDecaySchedule", "build_schedule", "schedule_hparams"]


def _step_index(step) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return int(step)


@dataclass(frozen=True)
class ConstantSchedule:
    """lr_t = lr for every step t."""

    lr: float

    def __call__(self, step: int) -> float:
        _step_index(step)
        return self.lr


@dataclass(frozen=True)
class LinearDecaySchedule:
    """lr_t = lr (1 - (1 - decay_factor) min(t, decay_steps) / decay_steps) (Shallue et al. 2018)."""

    lr: float
    decay_steps: int
    decay_factor: float

    def __call__(self, step: int) -> float:
        progress = min(_step_index(step), self.decay_steps) / self.decay_steps
        return self.lr * (1.0 - (1.0 - self.decay_factor) * progress)


SCHEDULES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"constant": ("lr",), "linear_decay": ("lr", "decay_steps", "decay_factor")}
)


def schedule_hparams(name: str) -> tuple[str, ...]:
    """The arguments `build_schedule(name, ...)` needs, e.g. ("lr", "decay_steps", "decay_factor")."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


def build_schedule(
    name: str,
    *,
    lr: float,
    decay_steps: int | None = None,
    decay_factor: float | None = None,
) -> Callable[[int], float]:
    """The schedule `name` as a function step -> learning rate.

    Args:
        name: "constant" or "linear_decay".
        lr: initial learning rate (> 0, finite).
        decay_steps: linear_decay only: steps until the final rate is reached (integer >= 1).
        decay_factor: linear_decay only: final rate / initial rate, in [0, 1].

    Raises:
        ValueError: unknown name, an invalid value, a decay argument missing for linear_decay or
            given for constant (the message names it).

    Example:
        >>> schedule = build_schedule("linear_decay", lr=0.1, decay_steps=100, decay_factor=0.01)
        >>> round(schedule(0), 6), round(schedule(50), 6), round(schedule(500), 6)
        (0.1, 0.0505, 0.001)
    """
    schedule_hparams(name)  # validates the name
    lr = check.positive("lr", lr)
    if name == "constant":
        for arg, value in (("decay_steps", decay_steps), ("decay_factor", decay_factor)):
            if value is not None:
                raise ValueError(f"{arg} is only used by 'linear_decay', not by 'constant'")
        return ConstantSchedule(lr=lr)
    for arg, value in (("decay_steps", decay_steps), ("decay_factor", decay_factor)):
        if value is None:
            raise ValueError(f"{arg} is required for the 'linear_decay' schedule")
    return LinearDecaySchedule(
        lr=lr,
        decay_steps=check.positive_int("decay_steps", decay_steps),
        decay_factor=check.unit_interval("decay_factor", decay_factor, upper_inclusive=True),
    )
