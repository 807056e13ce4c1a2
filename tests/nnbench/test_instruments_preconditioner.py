"""Effective preconditioner power: the estimator on exact power laws, the instrument on a diagonal quadratic
with P = H^-p (recovers p) and on a small network against a dense P^1/2 H P^1/2; Adam's and K-FAC's
preconditioners against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnbench.instruments import (
    adam_preconditioner,
    diagonal_preconditioner,
    effective_power,
    kfac_preconditioner,
    power_from_spectra,
)
from nnbench.optim import build_optimizer

from .test_instruments_naive import DT, classification_data, exact_hessian, tiny_mlp


def test_estimator_is_exact_on_power_laws_and_scale_free():
    lam = 1.0 / np.arange(1, 31) ** 1.3
    for p in (0.0, 0.2, 0.5, 0.9):
        r = power_from_spectra(lam[::-1], 7.5 * lam ** (1 - p))     # any order, any scale of P
        assert r.power == pytest.approx(p, abs=1e-12)
        assert r.power_ratio == pytest.approx(p, abs=1e-12)
        assert r.stderr < 1e-10 and r.pairs == 30
    # PREDICTION.md section 3: top-30 ratio 14.9 -> 8.2 is p ~ 0.22
    assert power_from_spectra([14.9, 1.0], [8.2, 1.0]).power == pytest.approx(0.2203, abs=1e-3)


def test_estimator_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="too flat"):
        power_from_spectra([1.0, 0.9, 0.8], [1.0, 0.9, 0.8])
    with pytest.raises(ValueError, match="2 positive"):
        power_from_spectra([1.0, -1.0], [1.0, 0.5])
    with pytest.raises(ValueError, match="one length"):
        power_from_spectra([1.0, 0.1], [1.0])
    # negative curvature is dropped, the positive prefix measured
    r = power_from_spectra([4.0, 1.0, -0.5], [2.0, 1.0, -0.1])
    assert r.pairs == 2 and r.power == pytest.approx(0.5)


class Quadratic(nn.Module):
    """loss = 1/2 sum_i h_i w_i^2 through loss_fn(model(x), y): H = diag(h) exactly."""

    def __init__(self, h):
        super().__init__()
        self.register_buffer("root_h", torch.as_tensor(h, dtype=DT).sqrt())
        self.w = nn.Parameter(torch.ones(len(h), dtype=DT))

    def forward(self, x):
        return (self.w * self.root_h).expand(x.shape[0], -1)


def half_square(out, y):
    return 0.5 * out.pow(2).sum(dim=1).mean()


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.75])
def test_recovers_p_on_a_diagonal_quadratic(p):
    h = 1.0 / np.arange(1, 41)
    model = Quadratic(h)
    x = y = torch.zeros(2, 1, dtype=DT)
    pre = diagonal_preconditioner(3.0 * torch.as_tensor(h, dtype=DT) ** -p)
    r = effective_power(model, half_square, x, y, pre, k=12, num_steps=40)
    assert r.power == pytest.approx(p, abs=1e-8)
    assert r.power_ratio == pytest.approx(p, abs=1e-8)
    np.testing.assert_allclose(r.hessian_eigenvalues, h[:12], rtol=1e-9)


def test_network_with_known_diagonal_preconditioner_matches_dense():
    model = tiny_mlp()
    x, y = classification_data(20, 3)
    h = exact_hessian(model, F.cross_entropy, x, y)
    n = h.shape[0]
    d = torch.exp(torch.linspace(-2.0, 2.0, n, dtype=DT)[torch.randperm(n, generator=torch.Generator().manual_seed(0))])
    root = d.sqrt()
    dense = torch.linalg.eigvalsh(root[:, None] * h * root[None, :]).flip(0).numpy()
    lam = torch.linalg.eigvalsh(h).flip(0).numpy()
    k = 8
    r = effective_power(model, F.cross_entropy, x, y, diagonal_preconditioner(d), k=k, num_steps=n)
    np.testing.assert_allclose(r.hessian_eigenvalues, lam[:k], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(r.preconditioned_eigenvalues, dense[:k], rtol=1e-8, atol=1e-12)
    ref = power_from_spectra(lam[:k], dense[:k])
    assert r.power == pytest.approx(ref.power, abs=1e-8) and r.pairs == ref.pairs
    with pytest.raises(ValueError, match="parameters"):
        effective_power(model, F.cross_entropy, x, y, diagonal_preconditioner(d[:-1]), k=k)


def _train(model, opt, x, y, steps=3):
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def test_adam_preconditioner_is_its_bias_corrected_second_moment():
    model = tiny_mlp()
    x, y = classification_data(20, 3)
    opt = build_optimizer("adam", model, lr=1e-2, beta2=0.99, eps=1e-3)
    with pytest.raises(ValueError, match="no Adam second moment"):
        adam_preconditioner(opt, model)
    _train(model, opt, x, y)
    pre = adam_preconditioner(opt, model)
    v = torch.cat([opt.state[p]["exp_avg_sq"].reshape(-1) for p in model.parameters()])
    expected = 1.0 / ((v / (1 - 0.99**3)).sqrt() + 1e-3)
    ones = torch.ones(2, v.numel(), dtype=DT)
    torch.testing.assert_close(pre.sqrt_apply(pre.sqrt_apply(ones))[1], expected, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="Adam"):
        adam_preconditioner(torch.optim.SGD(model.parameters(), lr=0.1), model)


def test_kfac_preconditioner_squares_to_its_update_direction():
    model = tiny_mlp()
    x, y = classification_data(20, 3)
    opt = build_optimizer("kfac", model, lr=1e-2, damping=1e-2, kl_clip=None, inv_update_every=1)
    with pytest.raises(ValueError, match="no factor inverses"):
        kfac_preconditioner(opt, model)
    _train(model, opt, x, y, steps=2)
    pre = kfac_preconditioner(opt, model)
    n = sum(p.numel() for p in model.parameters())
    v = torch.randn(3, n, dtype=DT, generator=torch.Generator().manual_seed(1))
    pv = pre.sqrt_apply(pre.sqrt_apply(v))
    offset = 0
    for layer in (model[0], model[2]):
        a_inv, g_inv = (opt.state[layer.weight][k] for k in ("A_inv", "G_inv"))
        nw, nb = layer.weight.numel(), layer.bias.numel()
        for row in range(3):
            mat = torch.cat([v[row, offset:offset + nw].view_as(layer.weight),
                             v[row, offset + nw:offset + nw + nb].unsqueeze(1)], dim=1)
            ref = g_inv @ mat @ a_inv
            torch.testing.assert_close(pv[row, offset:offset + nw], ref[:, :-1].reshape(-1))
            torch.testing.assert_close(pv[row, offset + nw:offset + nw + nb], ref[:, -1])
        offset += nw + nb
    r = effective_power(model, F.cross_entropy, x, y, pre, k=16, num_steps=n)
    assert r.power > 0.0 and r.power < 1.5
