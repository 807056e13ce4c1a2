"""Fisher trace, Park et al.'s Gamma and temperature against explicit loops and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnbench.instruments import fisher_trace, park_gamma, sgd_temperature

from .test_instruments_naive import (
    DT,
    classification_data,
    per_example_grads,
    regression_data,
    tiny_linear,
    tiny_mlp,
    true_fisher_trace_categorical,
)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("chunk_size", [None, 4])
@pytest.mark.parametrize("build,dim", [(tiny_linear, 4), (tiny_mlp, 3)])
def test_true_fisher_exact_equals_sum_over_classes(build, dim, chunk_size):
    """Exact categorical true Fisher vs the loop sum_i sum_c p_ic |grad log p_ic|^2 / N (rel 1e-10)."""
    model = build()
    x, y = classification_data(10, dim)
    r = fisher_trace(model, F.cross_entropy, x, y, kind="true", chunk_size=chunk_size)
    assert rel(r.trace, true_fisher_trace_categorical(model, x)) < 1e-10
    assert r.kind == "true" and r.likelihood == "categorical" and r.num_samples == 0
    assert r.num_examples == 10 and r.num_params == sum(p.numel() for p in model.parameters())


def test_true_fisher_sampled_labels_agree_within_stderr():
    """2000 labels per example: sampled trace within 4 stderr of the exact one (the stderr combines
    example and label noise; both estimates are on the same 10 examples, so the exact value is the
    expectation of the sampled one)."""
    model = tiny_mlp()
    x, y = classification_data(10, 3)
    exact = fisher_trace(model, F.cross_entropy, x, y).trace
    sampled = fisher_trace(model, F.cross_entropy, x, y, num_samples=2000, seed=4)
    assert sampled.num_samples == 2000
    # the per-example stderr is dominated by differences between examples; bound the sampling error
    # with it, which is conservative for the label noise alone
    assert abs(sampled.trace - exact) < 4 * sampled.stderr
    assert rel(sampled.trace, exact) < 0.05


def test_true_fisher_of_sequence_outputs_sums_positions():
    """(N, T, C) outputs: sampled labels estimate sum_t sum_c p_tc |grad log p_tc|^2 (the explicit loop),
    rel 5% with 3000 samples; the exact mode asks for (N, C) outputs."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3).to(DT)  # applied per position: (N, T, 4) -> (N, T, 3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 4, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (6, 2), generator=gen)
    exact = true_fisher_trace_categorical(model, x)
    sampled = fisher_trace(model, F.cross_entropy, x, y, num_samples=3000, seed=1).trace
    assert rel(sampled, exact) < 0.05
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        fisher_trace(model, F.cross_entropy, x, y)


def test_gaussian_fisher_of_linear_model_has_closed_form():
    """Linear(4, 3) with a unit-variance Gaussian likelihood: tr F_i = 3 (|x_i|^2 + 1) exactly
    (rel 1e-12); sampled residuals agree within 5% (3000 samples)."""
    model = tiny_linear()
    x, y = regression_data(8, 4)
    closed = float((3 * ((x**2).sum(1) + 1)).mean())
    r = fisher_trace(model, F.mse_loss, x, y, likelihood="gaussian")
    assert rel(r.trace, closed) < 1e-12 and r.likelihood == "gaussian"
    s = fisher_trace(model, F.mse_loss, x, y, likelihood="gaussian", num_samples=3000, seed=2)
    assert rel(s.trace, closed) < 0.05


def test_gaussian_fisher_of_mlp_equals_jacobian_norm():
    """tanh MLP: tr F_i = ||d f(x_i) / d theta||_F^2 from an explicit loop over outputs (rel 1e-10)."""
    model = tiny_mlp()
    x, _ = classification_data(6, 3)
    params = list(model.parameters())
    total = 0.0
    for i in range(6):
        out = model(x[i : i + 1])[0]
        for k in range(3):
            g = torch.autograd.grad(out[k], params, retain_graph=True)
            total += sum(float((gi**2).sum()) for gi in g)
    r = fisher_trace(model, F.mse_loss, x, torch.zeros(6, 3, dtype=DT), likelihood="gaussian")
    assert rel(r.trace, total / 6) < 1e-10


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_empirical_and_covariance_traces_equal_per_example_formulas(chunk_size):
    """Empirical Fisher = mean |g_i|^2; gradient covariance (Park eq. 5) = mean |g_i - G|^2 (rel 1e-10)."""
    model = tiny_mlp()
    x, y = classification_data(11, 3)
    g = per_example_grads(model, F.cross_entropy, x, y)
    emp = fisher_trace(model, F.cross_entropy, x, y, kind="empirical", chunk_size=chunk_size)
    cov = fisher_trace(model, F.cross_entropy, x, y, kind="gradient_covariance", chunk_size=chunk_size)
    assert rel(emp.trace, float((g**2).sum(1).mean())) < 1e-10
    assert rel(cov.trace, float(((g - g.mean(0)) ** 2).sum(1).mean())) < 1e-10
    assert emp.stderr > 0 and math.isnan(cov.stderr) and emp.likelihood == ""
    assert set(emp.as_measurements()) == {"trace", "stderr", "trace_per_param"}


def test_park_gamma_averages_traces_over_seeded_initialisations():
    """Gamma = mean_seed tr F / sqrt(P) with each init built under torch.manual_seed(seed) (rel 1e-12,
    traces from the explicit loop); the caller's random state is untouched."""

    def model_fn():
        return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)

    x, y = classification_data(8, 3)
    state = torch.get_rng_state()
    r = park_gamma(model_fn, F.cross_entropy, x, y, seeds=(0, 1, 2), kind="true")
    assert torch.equal(torch.get_rng_state(), state)
    traces = []
    for s in (0, 1, 2):
        torch.manual_seed(s)
        traces.append(true_fisher_trace_categorical(model_fn(), x))
    for got, want in zip(r.traces, traces, strict=True):
        assert rel(got, want) < 1e-10
    p = 38
    assert r.num_params == p and r.seeds == (0, 1, 2) and r.kind == "true"
    assert rel(r.gamma, sum(traces) / 3 / math.sqrt(p)) < 1e-10
    t = torch.tensor(traces, dtype=DT)
    assert rel(r.stderr, float(t.std()) / math.sqrt(3) / math.sqrt(p)) < 1e-10
    assert len({round(v, 12) for v in r.traces}) == 3  # different initialisations


def test_park_gamma_default_is_empirical_fisher():
    x, y = classification_data(8, 3)
    r = park_gamma(lambda: tiny_mlp(), F.cross_entropy, x, y, seeds=(7,))
    assert r.kind == "empirical" and math.isnan(r.stderr)
    g = per_example_grads(tiny_mlp(), F.cross_entropy, x, y)  # tiny_mlp seeds itself identically
    assert rel(r.gamma, float((g**2).sum(1).mean()) / math.sqrt(38)) < 1e-10


def test_sgd_temperature_values():
    """g = lr N / (2 B (1 - m)): 0.1 * 50000 / (2 * 128 * 0.1) = 195.3125 exactly; SGD m = 0."""
    assert sgd_temperature(0.1, 50000, 128, momentum=0.9) == pytest.approx(195.3125, rel=1e-14)
    assert sgd_temperature(0.5, 1000, 10) == 25.0


@pytest.mark.parametrize(
    "args,match",
    [
        ((0.0, 100, 10), "lr"),
        ((math.inf, 100, 10), "lr"),
        ((0.1, 0, 10), "num_train"),
        ((0.1, 100, 0), "batch_size"),
        ((0.1, 100, 101), "batch_size"),
        ((0.1, 100, 10, 1.0), "momentum"),
        ((0.1, 100, 10, -0.1), "momentum"),
        ((0.1, 100.5, 10), "num_train"),
    ],
)
def test_sgd_temperature_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        sgd_temperature(*args)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kind": "fancy"}, "kind"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"num_samples": 0}, "num_samples"),
        ({"kind": "empirical", "num_samples": 5}, "num_samples"),
        ({"seed": -3}, "seed"),
        ({"chunk_size": -1}, "chunk_size"),
    ],
)
def test_fisher_trace_rejects_bad_options(kwargs, match):
    x, y = classification_data(5, 3)
    with pytest.raises(ValueError, match=match):
        fisher_trace(tiny_mlp(), F.cross_entropy, x, y, **kwargs)


def test_park_gamma_rejects_bad_builders():
    x, y = classification_data(5, 3)
    with pytest.raises(ValueError, match="model_fn"):
        park_gamma(None, F.cross_entropy, x, y)
    with pytest.raises(ValueError, match="seeds"):
        park_gamma(tiny_mlp, F.cross_entropy, x, y, seeds=())
    sizes = iter([5, 6])
    with pytest.raises(ValueError, match="same architecture"):
        park_gamma(lambda: nn.Linear(3, next(sizes)).to(DT), F.cross_entropy, x, y, seeds=(0, 1))
