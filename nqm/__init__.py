"""nqm: the noisy quadratic model of Zhang et al. (2019), computed exactly.

The public API is re-exported here; implementation lives in small modules around one family of
numba kernels (``nqm._kernels``). nqm never imports torch.

Start with ``nqm.critical_batch()`` (the paper's problem, SGD, target 0.01) or ``python -m nqm``.
"""

from nqm.bounds import LowerBoundResult, lower_bound_steps
from nqm.critical import CriticalBatchResult, critical_batch, e_min, s_min
from nqm.fit import CriticalBatchFit, CriticalBatchFitWarning, fit_critical_batch
from nqm.optimizers import Optimizer, stability_limit
from nqm.problem import NQM
from nqm.rates import convergence_rate
from nqm.risk import RiskCurve, risk, risk_curve, steady_state_risk
from nqm.schedule_opt import (
    FIG3B_BATCH_SIZES,
    OptimizedSchedule,
    ScheduleSweepResult,
    optimal_schedule_for_steps,
    optimize_schedule,
    schedule_sweep,
)
from nqm.schedules import (
    Schedule,
    ScheduleRiskCurve,
    constant,
    cosine_decay,
    exponential_decay,
    from_steps,
    linear_decay,
    piecewise_constant,
    schedule_risk,
    schedule_risk_curve,
    schedule_risk_grad,
    step_decay,
    warmup,
)
from nqm.steps import StepsResult, steps_to_target
from nqm.sweep import PAPER_BATCH_SIZES, PAPER_POWERS, SweepResult, batch_size_sweep
from nqm.tuning import OptimalResult, optimal_hyperparameters, optimal_lr
from nqm.walk import CosineSample, WalkStats, gradient_cosine_monte_carlo, walk_stats

__all__ = [
    "NQM",
    "Optimizer",
    "stability_limit",
    "risk",
    "risk_curve",
    "steady_state_risk",
    "RiskCurve",
    "steps_to_target",
    "StepsResult",
    "optimal_lr",
    "optimal_hyperparameters",
    "OptimalResult",
    "batch_size_sweep",
    "SweepResult",
    "PAPER_BATCH_SIZES",
    "PAPER_POWERS",
    "critical_batch",
    "CriticalBatchResult",
    "s_min",
    "e_min",
    "fit_critical_batch",
    "CriticalBatchFit",
    "CriticalBatchFitWarning",
    "lower_bound_steps",
    "LowerBoundResult",
    "convergence_rate",
    "walk_stats",
    "WalkStats",
    "gradient_cosine_monte_carlo",
    "CosineSample",
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
    "optimize_schedule",
    "optimal_schedule_for_steps",
    "OptimizedSchedule",
    "schedule_sweep",
    "ScheduleSweepResult",
    "FIG3B_BATCH_SIZES",
]
