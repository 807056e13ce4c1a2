"""nqm: the noisy quadratic model of Zhang et al. (2019), computed exactly.

The public API is re-exported here; implementation lives in small modules around one family of
numba kernels (``nqm._kernels``). nqm never imports torch.

Start with ``nqm.critical_batch()`` (the paper's problem, SGD, target 0.01) or ``python -m nqm``.
"""

from __future__ import annotations

import importlib
import sys
import types

# public name -> module that defines it; imported on first use (PEP 562), so that
# ``import nqm`` does not load numba, the kernels or scipy until something is computed
_EXPORTS = {
    "NQM": "nqm.problem",
    "Optimizer": "nqm.optimizers",
    "stability_limit": "nqm.optimizers",
    "risk": "nqm.risk",
    "risk_curve": "nqm.risk",
    "steady_state_risk": "nqm.risk",
    "RiskCurve": "nqm.risk",
    "steps_to_target": "nqm.steps",
    "StepsResult": "nqm.steps",
    "optimal_lr": "nqm.tuning",
    "optimal_hyperparameters": "nqm.tuning",
    "OptimalResult": "nqm.tuning",
    "batch_size_sweep": "nqm.sweep",
    "SweepResult": "nqm.sweep",
    "PAPER_BATCH_SIZES": "nqm.sweep",
    "PAPER_POWERS": "nqm.sweep",
    "critical_batch": "nqm.critical",
    "CriticalBatchResult": "nqm.critical",
    "s_min": "nqm.critical",
    "e_min": "nqm.critical",
    "fit_critical_batch": "nqm.fit",
    "CriticalBatchFit": "nqm.fit",
    "CriticalBatchFitWarning": "nqm.fit",
    "lower_bound_steps": "nqm.bounds",
    "LowerBoundResult": "nqm.bounds",
    "convergence_rate": "nqm.rates",
    "walk_stats": "nqm.walk",
    "WalkStats": "nqm.walk",
    "gradient_cosine_monte_carlo": "nqm.walk",
    "CosineSample": "nqm.walk",
    "Schedule": "nqm.schedules",
    "ScheduleRiskCurve": "nqm.schedules",
    "constant": "nqm.schedules",
    "piecewise_constant": "nqm.schedules",
    "from_steps": "nqm.schedules",
    "linear_decay": "nqm.schedules",
    "step_decay": "nqm.schedules",
    "exponential_decay": "nqm.schedules",
    "cosine_decay": "nqm.schedules",
    "warmup": "nqm.schedules",
    "schedule_risk": "nqm.schedules",
    "schedule_risk_curve": "nqm.schedules",
    "schedule_risk_grad": "nqm.schedules",
    "optimize_schedule": "nqm.schedule_opt",
    "optimal_schedule_for_steps": "nqm.schedule_opt",
    "OptimizedSchedule": "nqm.schedule_opt",
    "schedule_sweep": "nqm.schedule_opt",
    "ScheduleSweepResult": "nqm.schedule_opt",
    "FIG3B_BATCH_SIZES": "nqm.schedule_opt",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nqm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value             # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """Importing the submodule ``nqm.risk`` binds it as attribute ``risk`` of the package; the
    public ``nqm.risk`` is the function, so that binding is dropped (the module stays importable
    by name, ``importlib.import_module("nqm.risk")``)."""

    def __setattr__(self, name, value):
        if not (name in _EXPORTS and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

