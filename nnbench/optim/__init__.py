"""Optimizers (SGD, momentum, Nesterov, Adam, Adam without momentum, K-FAC) and lr schedules."""

from nnbench.optim.kfac import KFAC
from nnbench.optim.registry import HPARAM_DEFAULTS
from nnbench.optim.registry import OPTIMIZERS
from nnbench.optim.registry import OptimizerSpec
from nnbench.optim.registry import build_optimizer
from nnbench.optim.registry import optimizer_hparams
from nnbench.optim.schedules import SCHEDULES
from nnbench.optim.schedules import ConstantSchedule
from nnbench.optim.schedules import LinearDecaySchedule
from nnbench.optim.schedules import build_schedule
from nnbench.optim.schedules import schedule_hparams

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
