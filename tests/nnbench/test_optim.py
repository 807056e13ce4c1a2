"""nnbench.optim registry: names, hyperparameters, the update forms, loss reduction, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnbench.optim import HPARAM_DEFAULTS, KFAC, OPTIMIZERS, build_optimizer, optimizer_hparams

NAMES = ("sgd", "momentum", "nesterov", "adam", "adam_nomomentum", "kfac", "kfac_momentum")


def test_registry_holds_the_papers_optimizers_with_their_hyperparameters():
    assert tuple(OPTIMIZERS) == NAMES
    assert optimizer_hparams("sgd") == ("lr", "weight_decay")
    assert optimizer_hparams("momentum") == ("lr", "momentum", "weight_decay")
    assert optimizer_hparams("nesterov") == ("lr", "momentum", "weight_decay")
    assert optimizer_hparams("adam") == ("lr", "beta1", "beta2", "eps", "weight_decay")
    assert optimizer_hparams("adam_nomomentum") == ("lr", "beta2", "eps", "weight_decay")
    kfac = ("damping", "kl_clip", "cov_ema_decay", "cov_update_every", "inv_update_every", "weight_decay")
    assert optimizer_hparams("kfac") == ("lr", *kfac)
    assert optimizer_hparams("kfac_momentum") == ("lr", "momentum", *kfac)
    for name in NAMES:
        assert set(HPARAM_DEFAULTS[name]) == set(optimizer_hparams(name)) - {"lr"}
        assert HPARAM_DEFAULTS[name]["weight_decay"] == 0.0


def test_built_optimizers_have_the_requested_settings():
    model = nn.Linear(3, 2)
    sgd = build_optimizer("sgd", model, lr=0.1).param_groups[0]
    assert (sgd["lr"], sgd["momentum"], sgd["nesterov"]) == (0.1, 0.0, False)
    heavy = build_optimizer("momentum", model, lr=0.1, momentum=0.8).param_groups[0]
    assert (heavy["momentum"], heavy["nesterov"], heavy["dampening"]) == (0.8, False, 0)
    nesterov = build_optimizer("nesterov", model, lr=0.1, momentum=0.8).param_groups[0]
    assert (nesterov["momentum"], nesterov["nesterov"]) == (0.8, True)
    adam = build_optimizer("adam", model, lr=1e-3, beta1=0.8, beta2=0.99, eps=1e-6).param_groups[0]
    assert (adam["betas"], adam["eps"]) == ((0.8, 0.99), 1e-6)
    assert build_optimizer("adam_nomomentum", model, lr=1e-3).param_groups[0]["betas"] == (0.0, 0.999)
    kfac = build_optimizer("kfac", model, lr=0.1, damping=0.01, inv_update_every=np.float64(5.0))
    assert isinstance(kfac, KFAC) and kfac.param_groups[0]["momentum"] == 0.0
    assert (kfac.param_groups[0]["damping"], kfac.inv_update_every) == (0.01, 5)
    kfac_m = build_optimizer("kfac_momentum", model, lr=0.1, kl_clip=None)
    assert kfac_m.param_groups[0]["momentum"] == 0.9 and kfac_m.param_groups[0]["kl_clip"] is None
    # nesterov with momentum 0 is SGD (torch refuses nesterov=True there)
    assert build_optimizer("nesterov", model, lr=0.1, momentum=0.0).param_groups[0]["nesterov"] is False


# ---- the update forms against hand-written recurrences on a quadratic ----------------------------
class _Quadratic(nn.Module):
    """f(x) = 1/2 x^T H x - b^T x, gradient H x - b."""

    def __init__(self):
        super().__init__()
        self.x = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        self.h = torch.diag(torch.tensor([2.0, 0.5, 0.1], dtype=torch.float64))
        self.b = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)

    def forward(self):
        return 0.5 * self.x @ self.h @ self.x - self.b @ self.x

    def grad(self, x):
        return self.h @ x - self.b


def _torch_trajectory(name, steps=5, **hparams):
    model = _Quadratic()
    opt = build_optimizer(name, model, **hparams)
    out = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model().backward()
        opt.step()
        out.append(model.x.detach().clone())
    return torch.stack(out)


def _reference_trajectory(update, steps=5):
    q = _Quadratic()
    x, state, out = q.x.detach().clone(), {}, []
    for t in range(1, steps + 1):
        x = update(x, q.grad(x), state, t)
        out.append(x)
    return torch.stack(out)


def test_sgd_with_weight_decay_is_x_minus_lr_times_gradient_plus_l2():
    lr, wd = 0.3, 0.01
    ref = _reference_trajectory(lambda x, g, s, t: x - lr * (g + wd * x))
    assert torch.allclose(_torch_trajectory("sgd", lr=lr, weight_decay=wd), ref, rtol=1e-12, atol=1e-14)


def test_momentum_is_the_nqm_heavy_ball_form():
    lr, m = 0.3, 0.7

    def heavy_ball(x, g, s, t):  # v' = m v + g, x' = x - lr v'   (spec/NQM.md section 2)
        s["v"] = m * s.get("v", torch.zeros_like(x)) + g
        return x - lr * s["v"]

    ref = _reference_trajectory(heavy_ball)
    assert torch.allclose(_torch_trajectory("momentum", lr=lr, momentum=m), ref, rtol=1e-12, atol=1e-14)


def test_nesterov_is_the_pytorch_form_of_spec_nqm():
    lr, m = 0.3, 0.7

    def nesterov(x, g, s, t):  # v' = m v + g, x' = x - lr (g + m v')
        s["v"] = m * s.get("v", torch.zeros_like(x)) + g
        return x - lr * (g + m * s["v"])

    ref = _reference_trajectory(nesterov)
    assert torch.allclose(_torch_trajectory("nesterov", lr=lr, momentum=m), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, beta1", [("adam", 0.8), ("adam_nomomentum", 0.0)])
def test_adam_and_adam_without_momentum_follow_kingma_and_ba(name, beta1):
    lr, beta2, eps = 0.05, 0.99, 1e-6

    def adam(x, g, s, t):  # Kingma & Ba 2014, algorithm 1
        s["m"] = beta1 * s.get("m", torch.zeros_like(x)) + (1 - beta1) * g
        s["v"] = beta2 * s.get("v", torch.zeros_like(x)) + (1 - beta2) * g**2
        m_hat, v_hat = s["m"] / (1 - beta1**t), s["v"] / (1 - beta2**t)
        return x - lr * m_hat / (v_hat.sqrt() + eps)

    hparams = dict(lr=lr, beta2=beta2, eps=eps)
    if name == "adam":
        hparams["beta1"] = beta1
    ref = _reference_trajectory(adam)
    assert torch.allclose(_torch_trajectory(name, **hparams), ref, rtol=1e-10, atol=1e-12)


# ---- every optimizer reduces the loss on a fixed problem ------------------------------------------
# A 3-class problem labelled by a random linear teacher, a tiny CNN (so K-FAC sees Conv2d and
# Linear), 60 full-batch steps. At these rates every optimizer ends below 0.02x the initial loss, and
# still below 0.25x with 3x smaller rates (measured once), so the 0.25x bound is robust and still
# fails for an optimizer that does not descend.
LEARNING_RATES = {
    "sgd": 0.3, "momentum": 0.03, "nesterov": 0.03, "adam": 0.01, "adam_nomomentum": 0.01,
    "kfac": 0.1, "kfac_momentum": 0.03,
}


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_reduces_the_loss_of_a_fixed_problem(name):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 6, 6, generator=gen)
    y = (x.flatten(1) @ torch.randn(72, 3, generator=gen)).argmax(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    opt = build_optimizer(name, model, lr=LEARNING_RATES[name])
    with torch.no_grad():
        initial = F.cross_entropy(model(x), y).item()
    for _ in range(60):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    assert final < 0.25 * initial, (name, initial, final)


# ---- bad input ------------------------------------------------------------------------------------
def test_unknown_optimizer_names_list_the_known_ones():
    with pytest.raises(ValueError, match="known optimizers: sgd, momentum, nesterov, adam"):
        build_optimizer("lamb", nn.Linear(2, 2), lr=0.1)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        optimizer_hparams("rmsprop")


@pytest.mark.parametrize(
    "name, hparams, argument",
    [
        ("sgd", dict(lr=0.1, momentum=0.9), "momentum"),  # sgd has no momentum
        ("adam_nomomentum", dict(lr=0.1, beta1=0.9), "beta1"),  # beta1 is fixed at 0
        ("adam", dict(lr=0.1, damping=1.0), "damping"),
        ("kfac", dict(lr=0.1, momentum=0.9), "momentum"),  # that is kfac_momentum
        ("sgd", dict(momentum=0.9), "lr"),  # unknown before missing
        ("sgd", dict(), "lr is required"),
        ("sgd", dict(lr=-0.1), "lr"),
        ("sgd", dict(lr=0.0), "lr"),
        ("sgd", dict(lr=math.inf), "lr"),
        ("sgd", dict(lr=math.nan), "lr"),
        ("sgd", dict(lr=True), "lr"),
        ("sgd", dict(lr="0.1"), "lr"),
        ("momentum", dict(lr=0.1, momentum=1.0), "momentum"),
        ("nesterov", dict(lr=0.1, momentum=-0.1), "momentum"),
        ("adam", dict(lr=0.1, beta1=1.0), "beta1"),
        ("adam", dict(lr=0.1, beta2=-0.5), "beta2"),
        ("adam_nomomentum", dict(lr=0.1, eps=0.0), "eps"),
        ("sgd", dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
        ("kfac", dict(lr=0.1, damping=-1.0), "damping"),
        ("kfac", dict(lr=0.1, kl_clip=0.0), "kl_clip"),
        ("kfac", dict(lr=0.1, cov_ema_decay=1.5), "cov_ema_decay"),
        ("kfac", dict(lr=0.1, cov_update_every=0), "cov_update_every"),
        ("kfac_momentum", dict(lr=0.1, inv_update_every=1.5), "inv_update_every"),
        ("kfac_momentum", dict(lr=0.1, momentum=math.nan), "momentum"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_them(name, hparams, argument):
    with pytest.raises(ValueError, match=argument):
        build_optimizer(name, nn.Linear(2, 2), **hparams)


@pytest.mark.parametrize("name", NAMES)
def test_models_without_trainable_parameters_are_rejected(name):
    with pytest.raises(ValueError, match="model"):
        build_optimizer(name, [nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="trainable parameters"):
        build_optimizer(name, nn.Linear(2, 2).requires_grad_(False), lr=0.1)
