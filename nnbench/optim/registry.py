"""The optimizers of Zhang et al. 2019 (section 4, appendix E.4) by name: `build_optimizer`.

    name              update (g = gradient + weight_decay * p)                   hyperparameters
    sgd               p <- p - lr g                                              lr
    momentum          v <- momentum v + g;  p <- p - lr v                        lr, momentum
    nesterov          v <- momentum v + g;  p <- p - lr (g + momentum v)         lr, momentum
    adam              Kingma & Ba 2014, torch.optim.Adam                         lr, beta1, beta2, eps
    adam_nomomentum   Adam with beta1 = 0 fixed (RMSProp with bias correction)   lr, beta2, eps
    kfac              K-FAC (nnbench.optim.kfac), no momentum                    lr, damping, kl_clip, ...
    kfac_momentum     K-FAC with heavy-ball momentum                             + momentum

All also take weight_decay (L2 coefficient, default 0). The first five wrap torch.optim. torch's
heavy ball (dampening 0) is v' = m v + g, x' = x - lr v': exactly the form the NQM analyses
(Zhang et al. eqn. 5; spec/NQM.md section 2), so the effective learning rate is lr / (1 - m); and its
Nesterov form is the one spec/NQM.md writes out for the NQM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

from nnbench.optim import _validate as check
from nnbench.optim.kfac import KFAC

__all__ = ["HPARAM_DEFAULTS", "OPTIMIZERS", "OptimizerSpec", "build_optimizer", "optimizer_hparams"]

# Checks per hyperparameter name: value -> validated value (ValueError naming the argument).
_CHECKS: Mapping[str, Callable] = MappingProxyType(
    {
        "lr": lambda v: check.positive("lr", v),
        "momentum": lambda v: check.unit_interval("momentum", v),
        "beta1": lambda v: check.unit_interval("beta1", v),
        "beta2": lambda v: check.unit_interval("beta2", v),
        "eps": lambda v: check.positive("eps", v),
        "damping": lambda v: check.positive("damping", v),
        "kl_clip": lambda v: None if v is None else check.positive("kl_clip", v),
        "cov_ema_decay": lambda v: check.unit_interval("cov_ema_decay", v),
        "cov_update_every": lambda v: check.positive_int("cov_update_every", v),
        "inv_update_every": lambda v: check.positive_int("inv_update_every", v),
        "weight_decay": lambda v: check.non_negative("weight_decay", v),
    }
)

_KFAC_DEFAULTS = {
    "damping": 1e-3,  # lambda of the factored Tikhonov damping (Martens & Grosse section 6.3)
    "kl_clip": 1e-3,  # trust region on lr^2 <U, V>, the usual K-FAC default (Ba et al. 2017)
    "cov_ema_decay": 0.95,  # Martens & Grosse section 5
    "cov_update_every": 1,  # the factors are cheap for the small nets here
    "inv_update_every": 10,  # the eigendecompositions are not
    "weight_decay": 0.0,
}


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer.

    Attributes:
        name: registry key.
        hparams: accepted hyperparameter names (lr first); lr is required, the rest have defaults.
        defaults: default value of every hyperparameter except lr.
        build: (model, validated hparams incl. defaults) -> torch.optim.Optimizer.
        description: one line for --help texts.
    """

    name: str
    hparams: tuple[str, ...]
    defaults: Mapping[str, float | int | None]
    build: Callable[[nn.Module, dict], torch.optim.Optimizer]
    description: str


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    return params


def _sgd(model, h, *, momentum: float = 0.0, nesterov: bool = False):
    return torch.optim.SGD(
        _trainable(model), lr=h["lr"], momentum=momentum, nesterov=nesterov,
        weight_decay=h["weight_decay"],
    )


def _adam(model, h, *, beta1: float):
    return torch.optim.Adam(
        _trainable(model), lr=h["lr"], betas=(beta1, h["beta2"]), eps=h["eps"],
        weight_decay=h["weight_decay"],
    )


def _kfac(model, h, *, momentum: float):
    kfac_hparams = {k: h[k] for k in _KFAC_DEFAULTS}
    return KFAC(model, lr=h["lr"], momentum=momentum, **kfac_hparams)


def _spec(name, defaults, build, description) -> OptimizerSpec:
    return OptimizerSpec(
        name=name, hparams=("lr", *defaults), defaults=MappingProxyType(dict(defaults)),
        build=build, description=description,
    )


_ADAM_DEFAULTS = {"beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}  # torch / Kingma & Ba defaults

OPTIMIZERS: Mapping[str, OptimizerSpec] = MappingProxyType(
    {
        "sgd": _spec("sgd", {"weight_decay": 0.0}, _sgd, "plain SGD"),
        "momentum": _spec(
            "momentum", {"momentum": 0.9, "weight_decay": 0.0},
            lambda m, h: _sgd(m, h, momentum=h["momentum"]),
            "heavy-ball momentum: v <- m v + g, p <- p - lr v",
        ),
        "nesterov": _spec(
            "nesterov", {"momentum": 0.9, "weight_decay": 0.0},
            # torch refuses nesterov=True with momentum 0; the update is then plain SGD anyway.
            lambda m, h: _sgd(m, h, momentum=h["momentum"], nesterov=h["momentum"] > 0),
            "Nesterov momentum: v <- m v + g, p <- p - lr (g + m v)",
        ),
        "adam": _spec(
            "adam", {"beta1": 0.9, **_ADAM_DEFAULTS},
            lambda m, h: _adam(m, h, beta1=h["beta1"]), "Adam (Kingma & Ba 2014)",
        ),
        "adam_nomomentum": _spec(
            "adam_nomomentum", dict(_ADAM_DEFAULTS),
            lambda m, h: _adam(m, h, beta1=0.0), "Adam with beta1 = 0 (no first-moment EMA)",
        ),
        "kfac": _spec(
            "kfac", dict(_KFAC_DEFAULTS), lambda m, h: _kfac(m, h, momentum=0.0),
            "K-FAC for Linear/Conv2d layers (Martens & Grosse 2015), no momentum",
        ),
        "kfac_momentum": _spec(
            "kfac_momentum", {"momentum": 0.9, **_KFAC_DEFAULTS},
            lambda m, h: _kfac(m, h, momentum=h["momentum"]), "K-FAC with heavy-ball momentum",
        ),
    }
)

HPARAM_DEFAULTS: Mapping[str, Mapping[str, float | int | None]] = MappingProxyType(
    {name: spec.defaults for name, spec in OPTIMIZERS.items()}
)


def _spec_for(name: str) -> OptimizerSpec:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known optimizers: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def optimizer_hparams(name: str) -> tuple[str, ...]:
    """The hyperparameter names `build_optimizer(name, ...)` accepts, lr first.

    >>> optimizer_hparams("momentum")
    ('lr', 'momentum', 'weight_decay')
    """
    return _spec_for(name).hparams


def build_optimizer(name: str, model: nn.Module, **hparams) -> torch.optim.Optimizer:
    """The optimizer `name` over `model`'s trainable parameters (one parameter group).

    Args:
        name: a key of OPTIMIZERS ("sgd", "momentum", "nesterov", "adam", "adam_nomomentum",
            "kfac", "kfac_momentum").
        model: the network. K-FAC registers its statistics hooks on it here.
        **hparams: lr (required) and any of `optimizer_hparams(name)`; the others take
            HPARAM_DEFAULTS[name].

    Returns:
        A torch.optim.Optimizer; the trial loop sets ``param_groups[i]["lr"]`` before each step.

    Raises:
        ValueError: unknown name, a hyperparameter this optimizer does not take, lr missing, a value
            out of range (the message names it), or a model without trainable parameters.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> build_optimizer("nesterov", model, lr=0.1, momentum=0.9).param_groups[0]["nesterov"]
        True
    """
    spec = _spec_for(name)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    unknown = sorted(set(hparams) - set(spec.hparams))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} does not take hyperparameter(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(spec.hparams)}"
        )
    if "lr" not in hparams:
        raise ValueError(f"lr is required for optimizer {name!r}")
    values = {**spec.defaults, **hparams}
    validated = {key: _CHECKS[key](value) for key, value in values.items()}
    return spec.build(model, validated)
