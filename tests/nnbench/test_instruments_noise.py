"""Gradient noise scales (McCandlish et al. 2018) against explicit per-example gradients and Hessians."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnbench.instruments import (
    gradient_noise_scale,
    hessian_noise_scale,
    two_batch_noise_scale,
    unbiased_gradient_estimates,
)

from .test_instruments_naive import (
    DT,
    classification_data,
    exact_hessian,
    per_example_grads,
    regression_data,
    tiny_linear,
    tiny_mlp,
)

CASES = [
    ("linear_mse", tiny_linear, F.mse_loss, lambda: regression_data(12, 4)),
    ("mlp_ce", tiny_mlp, F.cross_entropy, lambda: classification_data(12, 3)),
]


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("chunk_size", [None, 5])
@pytest.mark.parametrize("name,build,loss_fn,data", CASES)
def test_b_simple_equals_explicit_covariance(name, build, loss_fn, data, chunk_size):
    """B_simple and its parts vs the covariance of looped per-example gradients (rel 1e-10)."""
    model = build()
    x, y = data()
    g = per_example_grads(model, loss_fn, x, y)
    n = g.shape[0]
    mean = g.mean(0)
    sigma = torch.cov(g.T)  # unbiased, 1/(N-1)
    tr, gg = float(torch.trace(sigma)), float(mean @ mean)
    r = gradient_noise_scale(model, loss_fn, x, y, chunk_size=chunk_size)
    assert r.batch_size == n
    assert rel(r.trace_sigma, tr) < 1e-10
    assert rel(r.grad_norm_sq, gg) < 1e-10
    assert rel(r.b_simple, tr / gg) < 1e-10
    assert rel(r.grad_norm_sq_unbiased, gg - tr / n) < 1e-10
    if gg - tr / n > 0:
        assert rel(r.b_simple_unbiased, tr / (gg - tr / n)) < 1e-10
    else:
        assert r.b_simple_unbiased == math.inf


def test_b_simple_unbiased_is_finite_when_gradient_dominates():
    """The regression case has |G|^2 >> tr(Sigma)/N, so the debiased ratio is finite and larger."""
    r = gradient_noise_scale(tiny_linear(), F.mse_loss, *regression_data(12, 4))
    assert math.isfinite(r.b_simple_unbiased) and r.b_simple_unbiased > r.b_simple > 0


@pytest.mark.parametrize("chunk_size", [None, 5])
@pytest.mark.parametrize("name,build,loss_fn,data", CASES)
def test_b_noise_equals_explicit_hessian_formula(name, build, loss_fn, data, chunk_size):
    """B_noise = tr(H Sigma) / (G^T H G) with the explicit Hessian and covariance (rel 1e-8)."""
    model = build()
    x, y = data()
    g = per_example_grads(model, loss_fn, x, y)
    n = g.shape[0]
    h = exact_hessian(model, loss_fn, x, y)
    sigma = torch.cov(g.T)
    mean = g.mean(0)
    t_hs, ghg = float(torch.trace(h @ sigma)), float(mean @ h @ mean)
    r = hessian_noise_scale(model, loss_fn, x, y, chunk_size=chunk_size)
    assert rel(r.trace_h_sigma, t_hs) < 1e-8
    assert rel(r.g_h_g, ghg) < 1e-8
    assert rel(r.b_noise, t_hs / ghg) < 1e-8
    if ghg - t_hs / n > 0:
        assert rel(r.b_noise_unbiased, t_hs / (ghg - t_hs / n)) < 1e-8
    assert rel(r.b_simple, float(torch.trace(sigma)) / float(mean @ mean)) < 1e-10


def test_b_noise_reverse_mode_hvp_agrees_with_forward():
    """hvp_mode='reverse' (vjp of grad) gives the same B_noise as forward-over-reverse (rel 1e-10)."""
    model = tiny_mlp()
    x, y = classification_data(10, 3)
    a = hessian_noise_scale(model, F.cross_entropy, x, y, hvp_mode="forward")
    b = hessian_noise_scale(model, F.cross_entropy, x, y, hvp_mode="reverse")
    assert rel(b.b_noise, a.b_noise) < 1e-10


def test_b_noise_equals_b_simple_for_isotropic_hessian():
    """For the loss |w - y|^2 / 2 (H = I) B_noise = B_simple exactly (McCandlish et al. sec. 2.2; rel 1e-12)."""

    class Point(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=DT))

        def forward(self, x):
            return self.w.expand(x.shape[0], 3)

    def loss_fn(out, y):
        return 0.5 * ((out - y) ** 2).sum(dim=1).mean()

    x, y = regression_data(9, 3)
    r = hessian_noise_scale(Point(), loss_fn, x, y)
    assert rel(r.b_noise, r.b_simple) < 1e-12


def test_two_batch_estimator_inverts_the_expectations_exactly():
    """Feeding E|G_B|^2 = |G|^2 + tr(Sigma)/B at both sizes returns |G|^2 and tr(Sigma) (rel 1e-12)."""
    g2, tr = 0.37, 5.1
    for b_small, b_big in ((1, 2), (8, 64), (30, 31)):
        got_g2, got_tr = unbiased_gradient_estimates(g2 + tr / b_small, g2 + tr / b_big, b_small, b_big)
        assert rel(got_g2, g2) < 1e-12 and rel(got_tr, tr) < 1e-12


def test_two_batch_estimator_is_unbiased_over_random_batches():
    """Mean of the estimates over 300 with-replacement batches (B=16, b=4) vs the exact population
    |G|^2 and tr(Sigma_pop) (1/N covariance): tolerance 4 Monte-Carlo standard errors."""
    model = tiny_linear()
    x_all, y_all = regression_data(40, 4, seed=5)
    g = per_example_grads(model, F.mse_loss, x_all, y_all)
    mean = g.mean(0)
    g2_exact = float(mean @ mean)
    tr_exact = float(((g - mean) ** 2).sum(1).mean())
    gen = torch.Generator().manual_seed(0)
    g2s, trs = [], []
    for _ in range(300):
        idx = torch.randint(0, 40, (16,), generator=gen)
        r = two_batch_noise_scale(model, F.mse_loss, x_all[idx], y_all[idx], small_batch_size=4)
        g2s.append(r.grad_norm_sq)
        trs.append(r.trace_sigma)
    for draws, exact in ((torch.tensor(g2s), g2_exact), (torch.tensor(trs), tr_exact)):
        se = float(draws.std()) / math.sqrt(len(draws))
        assert abs(float(draws.mean()) - exact) < 4 * se, (float(draws.mean()), exact, se)


def test_two_batch_components_match_direct_gradients():
    """small_norm_sq = mean over the disjoint sub-batches of |G_sub|^2, big_norm_sq = |G_batch|^2 (rel 1e-12);
    the ragged tail (B=14, b=4: 3 sub-batches) enters only the big batch."""
    model = tiny_mlp()
    x, y = classification_data(14, 3)
    r = two_batch_noise_scale(model, F.cross_entropy, x, y, small_batch_size=4)
    g = per_example_grads(model, F.cross_entropy, x, y)
    subs = [g[4 * i : 4 * i + 4].mean(0) for i in range(3)]
    small = sum(float(s @ s) for s in subs) / 3
    big = float(g.mean(0) @ g.mean(0))
    assert r.num_small_batches == 3 and r.batch_size_big == 14 and r.batch_size_small == 4
    assert rel(r.small_norm_sq, small) < 1e-12 and rel(r.big_norm_sq, big) < 1e-12
    g2, tr = unbiased_gradient_estimates(small, big, 4, 14)
    assert rel(r.grad_norm_sq, g2) < 1e-10 and rel(r.trace_sigma, tr) < 1e-10
    assert r.b_simple == pytest.approx(tr / g2, rel=1e-10) if g2 > 0 else r.b_simple == math.inf


def test_float32_model_runs_and_agrees_with_float64():
    """A float32 copy gives B_simple within 1e-4 relative of the float64 value."""
    model = tiny_mlp()
    x, y = classification_data(12, 3)
    ref = gradient_noise_scale(model, F.cross_entropy, x, y).b_simple
    got = gradient_noise_scale(model.float(), F.cross_entropy, x.float(), y).b_simple
    assert rel(got, ref) < 1e-4


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, x, y: gradient_noise_scale(m, F.mse_loss, x[:1], y[:1]), "at least 2"),
        (lambda m, x, y: gradient_noise_scale(m, F.mse_loss, x, y[:-1]), "same batch size"),
        (lambda m, x, y: gradient_noise_scale(m, F.mse_loss, x, y, chunk_size=0), "chunk_size"),
        (lambda m, x, y: gradient_noise_scale("model", F.mse_loss, x, y), "model"),
        (lambda m, x, y: gradient_noise_scale(m, None, x, y), "loss_fn"),
        (lambda m, x, y: hessian_noise_scale(m, F.mse_loss, x, y, hvp_mode="sideways"), "mode"),
        (lambda m, x, y: two_batch_noise_scale(m, F.mse_loss, x, y, small_batch_size=12), "small_batch_size"),
        (lambda m, x, y: two_batch_noise_scale(m, F.mse_loss, x, y, small_batch_size=0), "small_batch_size"),
        (lambda m, x, y: unbiased_gradient_estimates(-1.0, 1.0, 2, 4), "small_norm_sq"),
        (lambda m, x, y: unbiased_gradient_estimates(1.0, math.nan, 2, 4), "big_norm_sq"),
        (lambda m, x, y: unbiased_gradient_estimates(1.0, 1.0, 4, 4), "batch_size_big"),
        (lambda m, x, y: gradient_noise_scale(m, lambda out, t: ((out - t) ** 2).sum(1), x, y), "scalar"),
    ],
)
def test_bad_input_raises_value_error(call, match):
    x, y = regression_data(12, 4)
    with pytest.raises(ValueError, match=match):
        call(tiny_linear(), x, y)


def test_model_state_and_modes_are_left_untouched():
    """A model with dropout and batch-norm in train mode: the instrument runs in eval mode (equal to an
    explicit eval-mode call, rel 1e-12), restores every module's training flag, and changes no
    parameter or running statistic."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 3)).to(DT)
    x, y = classification_data(16, 3)
    with torch.no_grad():  # give the running statistics non-trivial values
        model(x * 2 + 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r_train = hessian_noise_scale(model, F.cross_entropy, x, y)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.eval()
    r_eval = hessian_noise_scale(model, F.cross_entropy, x, y)
    assert not model.training
    assert rel(r_train.b_noise, r_eval.b_noise) < 1e-12 and rel(r_train.b_simple, r_eval.b_simple) < 1e-12
