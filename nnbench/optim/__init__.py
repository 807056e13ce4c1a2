"""Optimizers (SGD, momentum, Nesterov, Adam, Adam without momentum, K-FAC) and lr schedules."""

from nnbench.optim.kfac import KFAC
from nnbench.optim.registry import (
    HPARAM_DEFAULTS,
    OPTIMIZERS,
    OptimizerSpec,
    build_optimizer,
    optimizer_hparams,
)
from nnbench.optim.schedules import (
    SCHEDULES,
    ConstantSchedule,
    LinearDecaySchedule,
    build_schedule,
    schedule_hparams,
)

__all__ = [
    "HPARAM_DEFAULTS",
    "KFAC",
    "OPTIMIZERS",
    "SCHEDULES",
    "ConstantSchedule",
    "LinearDecaySchedule",
    "OptimizerSpec",
    "build_optimizer",
    "build_schedule",
    "optimizer_hparams",
    "schedule_hparams",
]
