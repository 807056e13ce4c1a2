"""Slow, obviously correct references for the instrument tests (and checks of the references).

Nothing here uses nnbench.instruments: per-example gradients are a Python loop of
``torch.autograd.grad`` on the module's own parameters; the Hessian is the dense
``torch.func.hessian`` (jacobian of the jacobian, no Hessian-vector products) of the loss of a
deep copy of the model with its own parameter slicing; losses at given parameter vectors use
``torch.nn.utils.vector_to_parameters`` on a copy.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

DT = torch.float64


def tiny_linear(seed: int = 0) -> nn.Module:
    """Linear(4, 3): 15 parameters."""
    torch.manual_seed(seed)
    return nn.Linear(4, 3).to(DT)


def tiny_mlp(seed: int = 0) -> nn.Module:
    """Linear(3, 5) - tanh - Linear(5, 3): 38 parameters."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)


def classification_data(n: int, dim: int, classes: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen, dtype=DT)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


def regression_data(n: int, dim: int, out: int = 3, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen, dtype=DT)
    y = 3.0 + torch.randn(n, out, generator=gen, dtype=DT)  # offset: the gradient dominates the noise
    return x, y


def flat(model: nn.Module) -> torch.Tensor:
    return parameters_to_vector(model.parameters()).detach().clone()


def loss_at(model: nn.Module, loss_fn, theta: torch.Tensor, x, y) -> torch.Tensor:
    """loss_fn(model_theta(x), y) on a copy of model with parameters theta (differentiable in theta)."""
    clone = copy.deepcopy(model)
    names = [n for n, _ in clone.named_parameters()]
    offset, params = 0, {}
    for n, p in clone.named_parameters():
        params[n] = theta[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    assert offset == theta.numel() and len(names) == len(params)
    return loss_fn(torch.func.functional_call(clone, params, (x,)), y)


def exact_hessian(model: nn.Module, loss_fn, x, y) -> torch.Tensor:
    return torch.func.hessian(lambda t: loss_at(model, loss_fn, t, x, y))(flat(model))


def loss_value(model: nn.Module, loss_fn, theta: torch.Tensor, x, y) -> float:
    clone = copy.deepcopy(model)
    vector_to_parameters(theta, clone.parameters())
    with torch.no_grad():
        return float(loss_fn(clone(x), y))


def per_example_grads(model: nn.Module, loss_fn, x, y) -> torch.Tensor:
    """(N, P) loop over examples."""
    rows = []
    for i in range(x.shape[0]):
        loss = loss_fn(model(x[i : i + 1]), y[i : i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))]))
    return torch.stack(rows)


def batch_grad(model: nn.Module, loss_fn, x, y) -> torch.Tensor:
    loss = loss_fn(model(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def true_fisher_trace_categorical(model: nn.Module, x) -> float:
    """(1/N) sum_i sum_c p_ic |grad log p_ic|^2 by a loop over examples and classes."""
    total = 0.0
    for i in range(x.shape[0]):
        logp = F.log_softmax(model(x[i : i + 1])[0], dim=-1).reshape(-1, model(x[:1]).shape[-1])  # (positions, C)
        probs = logp.exp().detach()
        for t in range(logp.shape[0]):
            for c in range(logp.shape[1]):
                g = torch.autograd.grad(logp[t, c], list(model.parameters()), retain_graph=True)
                total += float(probs[t, c]) * sum(float((gi * gi).sum()) for gi in g)
    return total / x.shape[0]


# ---- checks of the references themselves ---------------------------------------------------------
def test_exact_hessian_matches_finite_differences_of_gradient():
    """Reference Hessian vs central differences of the reference gradient (rel 1e-6)."""
    model = tiny_mlp()
    x, y = classification_data(7, 3)
    h = exact_hessian(model, F.cross_entropy, x, y)
    theta = flat(model)

    def grad_at(t):
        t = t.clone().requires_grad_(True)
        return torch.autograd.grad(loss_at(model, F.cross_entropy, t, x, y), t)[0]

    eps = 1e-5
    for j in (0, 11, 37):
        e = torch.zeros_like(theta)
        e[j] = eps
        column = (grad_at(theta + e) - grad_at(theta - e)) / (2 * eps)
        assert torch.allclose(column, h[:, j], rtol=1e-6, atol=1e-8)
    assert torch.allclose(h, h.T, atol=1e-12)


def test_per_example_grads_average_to_batch_gradient():
    """Mean of the looped per-example gradients = batch gradient of the mean loss (rel 1e-12)."""
    model = tiny_linear()
    x, y = regression_data(9, 4)
    g = per_example_grads(model, F.mse_loss, x, y)
    assert torch.allclose(g.mean(0), batch_grad(model, F.mse_loss, x, y), rtol=1e-12, atol=1e-14)
