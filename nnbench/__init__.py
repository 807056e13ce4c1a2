"""nnbench: real-network steps-to-target sweeps over batch sizes and optimizers (PyTorch).

The public names below are re-exported lazily (PEP 562): ``import nnbench`` imports no torch, so the
torch-free parts (``nnbench.store``, ``nnbench.search``, ``status``/``export`` on a machine without
torch) stay importable; touching ``nnbench.build_model`` and the like imports the module that owns it.

Subpackages: ``nnbench.data`` (data sources), ``nnbench.models``, ``nnbench.optim`` (optimizers incl.
K-FAC, schedules), ``nnbench.instruments`` (torch.func measurements); modules ``workloads``,
``search``, ``trial``, ``ensemble``, ``study``, ``store``, ``batch_science`` (Shallue et al.'s published layout),
``device``, ``cli``.
"""

from importlib import import_module

# public name -> module that defines it
_EXPORTS = {
    "DATASETS": "nnbench.data",
    "DataSource": "nnbench.data",
    "build_dataset": "nnbench.data",
    "MODELS": "nnbench.models",
    "build_model": "nnbench.models",
    "OPTIMIZERS": "nnbench.optim",
    "HPARAM_DEFAULTS": "nnbench.optim",
    "KFAC": "nnbench.optim",
    "SCHEDULES": "nnbench.optim",
    "build_optimizer": "nnbench.optim",
    "build_schedule": "nnbench.optim",
    "optimizer_hparams": "nnbench.optim",
    "Workload": "nnbench.workloads",
    "WORKLOADS": "nnbench.workloads",
    "get_workload": "nnbench.workloads",
    "Param": "nnbench.search",
    "SearchSpace": "nnbench.search",
    "QuasiRandomSearch": "nnbench.search",
    "Status": "nnbench.store",
    "Store": "nnbench.store",
    "TrialResult": "nnbench.store",
    "Measurement": "nnbench.store",
    "StudySpec": "nnbench.study",
    "StudySummary": "nnbench.study",
    "run_sweep": "nnbench.study",
    "run_ensemble": "nnbench.ensemble",
    "ensemble_supported": "nnbench.ensemble",
    "summarize_store": "nnbench.study",
    "import_batch_science": "nnbench.batch_science",
    "export_batch_science": "nnbench.batch_science",
    "resolve_device": "nnbench.device",
    "as_trial_instrument": "nnbench.instruments",
    "gradient_noise_scale": "nnbench.instruments",
    "hessian_eigenvalues": "nnbench.instruments",
    "fisher_trace": "nnbench.instruments",
    "WalkTracker": "nnbench.instruments",
}
# names whose attribute in the owning module differs
_RENAMED = {"run_trial": ("nnbench.trial", "run")}

__all__ = sorted([*_EXPORTS, *_RENAMED])


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name in _RENAMED:
        module, attr = _RENAMED[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'nnbench' has no attribute {name!r}")


def __dir__():
    return __all__
