"""Hessian instruments (Lanczos, power iteration, Hutchinson, SLQ) against the explicit Hessian."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnbench.instruments import (
    hessian_eigenvalues,
    hessian_vector_product,
    hutchinson_trace,
    power_iteration,
    spectral_density,
)
from nnbench.instruments._lanczos import lanczos

from .test_instruments_naive import (
    DT,
    classification_data,
    exact_hessian,
    regression_data,
    tiny_linear,
    tiny_mlp,
)


@pytest.fixture(scope="module")
def mlp_case():
    model = tiny_mlp()
    x, y = classification_data(20, 3)
    h = exact_hessian(model, F.cross_entropy, x, y)
    return model, x, y, h


def rel(a, b) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_hvp_equals_explicit_hessian_times_vector(mlp_case, mode):
    """H v and H V (batched rows) vs the explicit Hessian (rel 1e-10 in norm)."""
    model, x, y, h = mlp_case
    v = torch.randn(5, h.shape[0], dtype=DT, generator=torch.Generator().manual_seed(3))
    one = hessian_vector_product(model, F.cross_entropy, x, y, v[0], hvp_mode=mode)
    many = hessian_vector_product(model, F.cross_entropy, x, y, v, hvp_mode=mode)
    assert torch.linalg.norm(one - h @ v[0]) < 1e-10 * torch.linalg.norm(h @ v[0])
    assert torch.linalg.norm(many - v @ h) < 1e-10 * torch.linalg.norm(v @ h)


def test_hvp_with_mse_loss_falls_back_to_reverse_mode():
    """F.mse_loss breaks forward-over-reverse in torch (pytorch#123996); 'auto' still gives H v (rel 1e-10)."""
    model = tiny_linear()
    x, y = regression_data(10, 4)
    h = exact_hessian(model, F.mse_loss, x, y)
    v = torch.linspace(-1, 1, h.shape[0], dtype=DT)
    hv = hessian_vector_product(model, F.mse_loss, x, y, v)
    assert torch.linalg.norm(hv - h @ v) < 1e-10 * torch.linalg.norm(h @ v)


class TinyAttention(nn.Module):
    """Causal 2-head self-attention through F.scaled_dot_product_attention on (N, heads, T, hs) inputs,
    which on the CPU dispatches to the fused flash kernel (no second derivative)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.qkv = nn.Linear(4, 12).to(DT)
        self.out = nn.Linear(4, 3).to(DT)

    def forward(self, x):  # (N, T, 4)
        n, t, _ = x.shape
        q, k, v = (z.view(n, t, 2, 2).transpose(1, 2) for z in self.qkv(x).chunk(3, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(n, t, 4)
        return self.out(a).mean(1)


def test_hvp_through_fused_attention_uses_the_math_kernel():
    """Hessian-vector products through SDPA equal the explicit Hessian built with the math kernel (rel 1e-10)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = TinyAttention()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, 4, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (5,), generator=gen)
    with sdpa_kernel([SDPBackend.MATH]):
        h = exact_hessian(model, F.cross_entropy, x, y)
    v = torch.randn(h.shape[0], generator=gen, dtype=DT)
    for mode in ("forward", "reverse"):
        hv = hessian_vector_product(model, F.cross_entropy, x, y, v, hvp_mode=mode)
        assert torch.linalg.norm(hv - h @ v) < 1e-10 * torch.linalg.norm(h @ v)


def test_lanczos_core_recovers_every_eigenvalue_with_multiplicities():
    """m = P steps on a dense matrix with repeated eigenvalues (forces breakdown and restart):
    the Ritz values equal eigvalsh to 1e-10 absolute, the basis is orthonormal to 1e-12."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=gen, dtype=DT))
    eig = torch.tensor([3.0, 3.0, 3.0, 1.0, 1.0, 0.0, 0.0, 0.0, -2.0, 5.0, 5.0, 0.5], dtype=DT)
    a = q @ torch.diag(eig) @ q.T
    q0 = torch.randn(2, 12, generator=gen, dtype=DT)
    q0 = q0 / q0.norm(dim=1, keepdim=True)
    run = lanczos(lambda v: v @ a, q0, 12, gen)
    ritz = torch.linalg.eigvalsh(run.tridiagonal())
    for row in ritz:
        assert torch.allclose(row, torch.sort(eig).values, atol=1e-10)
    gram = run.basis @ run.basis.transpose(1, 2)
    assert torch.allclose(gram, torch.eye(12, dtype=DT).expand(2, 12, 12), atol=1e-12)
    assert (run.beta == 0).any()  # the invariant subspace (5 distinct eigenvalues) was left


@pytest.mark.parametrize("num_steps", [None, 38])
def test_lanczos_top_eigenvalues_match_eigvalsh(mlp_case, num_steps):
    """Top-3 Lanczos eigenvalues vs torch.linalg.eigvalsh of the explicit Hessian (rel 1e-6),
    with the default 30 steps and with m = P = 38; Ritz vectors satisfy H u = lambda u (rel 1e-6)."""
    model, x, y, h = mlp_case
    exact = torch.linalg.eigvalsh(h).flip(0)[:3]
    r = hessian_eigenvalues(model, F.cross_entropy, x, y, k=3, num_steps=num_steps, return_eigenvectors=True)
    assert r.num_steps == (30 if num_steps is None else 38)
    assert r.converged
    for got, want in zip(r.eigenvalues, exact.tolist(), strict=True):
        assert rel(got, want) < 1e-6
    for lam, u in zip(r.eigenvalues, r.eigenvectors, strict=True):
        assert torch.linalg.norm(h @ u - lam * u) < 1e-6 * abs(lam)
    assert set(r.as_measurements()) == {f"eigenvalue_{i}" for i in (1, 2, 3)} | {f"residual_{i}" for i in (1, 2, 3)}


def test_lanczos_smallest_eigenvalues_match_eigvalsh(mlp_case):
    """which='smallest' with m = P: the two most negative eigenvalues (rel 1e-6)."""
    model, x, y, h = mlp_case
    exact = torch.linalg.eigvalsh(h)[:2]
    assert exact[0] < 0  # the tiny MLP has negative curvature here
    r = hessian_eigenvalues(model, F.cross_entropy, x, y, k=2, which="smallest", num_steps=h.shape[0])
    for got, want in zip(r.eigenvalues, exact.tolist(), strict=True):
        assert rel(got, want) < 1e-6


def test_power_iteration_finds_dominant_eigenvalue(mlp_case):
    """Power iteration vs the eigenvalue of largest magnitude (rel 1e-6)."""
    model, x, y, h = mlp_case
    eig = torch.linalg.eigvalsh(h)
    dominant = float(eig[eig.abs().argmax()])
    r = power_iteration(model, F.cross_entropy, x, y, max_iters=2000, tol=1e-12)
    assert r.converged and r.iterations < 2000
    assert rel(r.eigenvalue, dominant) < 1e-6


def test_float32_lanczos_agrees_with_float64(mlp_case):
    """The top eigenvalue of a float32 copy agrees with the float64 one to 1e-4 relative."""
    model, x, y, h = mlp_case
    want = float(torch.linalg.eigvalsh(h)[-1])
    model32 = tiny_mlp().float()
    got = hessian_eigenvalues(model32, F.cross_entropy, x.float(), y, k=1).eigenvalues[0]
    assert rel(got, want) < 1e-4


class DiagonalQuadratic(nn.Module):
    """'Model' whose output is its parameter vector; with loss sum a_i w_i^2 / 2 the Hessian is diag(a)."""

    def __init__(self, p: int):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, p, dtype=DT))

    def forward(self, x):
        return self.w.expand(x.shape[0], -1)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    """Rademacher probes give v^T diag(a) v = sum a exactly (rel 1e-12) and zero spread."""
    a = torch.arange(1.0, 11.0, dtype=DT)

    def loss_fn(out, y):
        return 0.5 * (a * out**2).sum(dim=1).mean()

    x = torch.zeros(3, 1, dtype=DT)
    r = hutchinson_trace(DiagonalQuadratic(10), loss_fn, x, x, num_probes=5)
    assert rel(r.trace, float(a.sum())) < 1e-12 and r.stderr < 1e-12


def test_hutchinson_trace_is_within_its_stderr_of_the_exact_trace(mlp_case):
    """400 probes: |estimate - tr H| < 4 stderr; the stderr is within 25% of the theoretical
    sqrt(2 (||H||_F^2 - sum H_ii^2) / n) for Rademacher probes; chunking does not change it."""
    model, x, y, h = mlp_case
    r = hutchinson_trace(model, F.cross_entropy, x, y, num_probes=400, seed=1)
    exact = float(torch.trace(h))
    assert abs(r.trace - exact) < 4 * r.stderr
    theory = math.sqrt(2 * (float((h**2).sum()) - float((torch.diag(h) ** 2).sum())) / 400)
    assert abs(r.stderr - theory) < 0.25 * theory
    chunked = hutchinson_trace(model, F.cross_entropy, x, y, num_probes=400, seed=1, chunk_size=64)
    assert rel(chunked.trace, r.trace) < 1e-12


def test_slq_quadrature_reproduces_probe_moments_exactly(mlp_case):
    """With m = P steps, for each probe q: sum w = 1 and sum w theta^k = q^T H^k q for k = 1..5
    (rel 1e-8); the moments are averages of these; the SLQ trace equals Hutchinson's with the same
    probes (rel 1e-10) and lies within 4 Hutchinson stderrs of tr H."""
    model, x, y, h = mlp_case
    p = h.shape[0]
    sd = spectral_density(model, F.cross_entropy, x, y, num_probes=6, num_steps=p, seed=2, probe_batch_size=4)
    assert sd.nodes.shape == (6, p) and sd.weights.shape == (6, p) and sd.num_params == p
    np.testing.assert_allclose(sd.weights.sum(axis=1), 1.0, rtol=1e-12)
    hut = hutchinson_trace(model, F.cross_entropy, x, y, num_probes=6, seed=2)
    # the probes are the same Rademacher draws, normalised: recover them from Hutchinson's generator
    gen = torch.Generator().manual_seed(2)
    q = (2 * torch.randint(0, 2, (6, p), generator=gen) - 1).to(DT) / math.sqrt(p)
    hk = torch.eye(p, dtype=DT)
    for k in range(1, 6):
        hk = hk @ h
        exact_k = ((q @ hk) * q).sum(dim=1).numpy()
        got_k = (sd.weights * sd.nodes**k).sum(axis=1)
        np.testing.assert_allclose(got_k, exact_k, rtol=1e-8, atol=1e-12)
        assert rel(sd.moment(k), float(exact_k.mean())) < 1e-8
    assert rel(sd.trace(), hut.trace) < 1e-10
    assert abs(sd.trace() - float(torch.trace(h))) < 4 * hut.stderr


def test_slq_with_few_steps_keeps_low_moments_and_a_normalised_density(mlp_case):
    """m = 4 steps: moments up to 2m - 1 = 7 are still exact per probe (rel 1e-6 for k = 7, spectral
    range bound); the broadened density integrates to 1 (rel 1e-3) and its mean is the first
    moment (abs 1e-3 of the spectral range)."""
    model, x, y, h = mlp_case
    p = h.shape[0]
    sd = spectral_density(model, F.cross_entropy, x, y, num_probes=3, num_steps=4, seed=0)
    gen = torch.Generator().manual_seed(0)
    q = (2 * torch.randint(0, 2, (3, p), generator=gen) - 1).to(DT) / math.sqrt(p)
    h7 = torch.linalg.matrix_power(h, 7)
    np.testing.assert_allclose((sd.weights * sd.nodes**7).sum(axis=1), ((q @ h7) * q).sum(1).numpy(), rtol=1e-6)
    mass = np.trapezoid(sd.density, sd.grid)
    assert abs(mass - 1.0) < 1e-3
    span = float(sd.nodes.max() - sd.nodes.min())
    assert abs(np.trapezoid(sd.grid * sd.density, sd.grid) - sd.moment(1)) < 1e-3 * span
    again = sd.density_at(sd.grid, sd.sigma)
    np.testing.assert_allclose(again, sd.density, rtol=1e-12)


def test_results_are_reproducible_with_the_seed(mlp_case):
    """Same seed -> identical numbers; another seed -> a different Hutchinson estimate."""
    model, x, y, _ = mlp_case
    a = hutchinson_trace(model, F.cross_entropy, x, y, num_probes=8, seed=5)
    b = hutchinson_trace(model, F.cross_entropy, x, y, num_probes=8, seed=5)
    c = hutchinson_trace(model, F.cross_entropy, x, y, num_probes=8, seed=6)
    assert a == b and a.trace != c.trace


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, x, y: hessian_eigenvalues(m, F.cross_entropy, x, y, k=0), "k must"),
        (lambda m, x, y: hessian_eigenvalues(m, F.cross_entropy, x, y, k=39), "k must"),
        (lambda m, x, y: hessian_eigenvalues(m, F.cross_entropy, x, y, k=2, num_steps=40), "num_steps"),
        (lambda m, x, y: hessian_eigenvalues(m, F.cross_entropy, x, y, which="middle"), "which"),
        (lambda m, x, y: hessian_eigenvalues(m, F.cross_entropy, x, y, seed=-1), "seed"),
        (lambda m, x, y: hessian_eigenvalues(m, F.cross_entropy, x, y, tol=math.nan), "tol"),
        (lambda m, x, y: power_iteration(m, F.cross_entropy, x, y, max_iters=0), "max_iters"),
        (lambda m, x, y: hutchinson_trace(m, F.cross_entropy, x, y, num_probes=0), "num_probes"),
        (lambda m, x, y: spectral_density(m, F.cross_entropy, x, y, sigma=-1.0), "sigma"),
        (lambda m, x, y: spectral_density(m, F.cross_entropy, x, y, grid_size=1), "grid_size"),
        (lambda m, x, y: hessian_vector_product(m, F.cross_entropy, x, y, torch.ones(5)), "shape"),
        (lambda m, x, y: hessian_vector_product(m, F.cross_entropy, x, y, torch.ones(38), hvp_mode="x"), "hvp_mode"),
        (lambda m, x, y: hutchinson_trace(m, F.cross_entropy, x[:0], y[:0]), "at least 1"),
    ],
)
def test_bad_input_raises_value_error(mlp_case, call, match):
    model, x, y, _ = mlp_case
    with pytest.raises(ValueError, match=match):
        call(model, x, y)


def test_model_without_trainable_parameters_is_rejected():
    model = tiny_linear().requires_grad_(False)
    x, y = regression_data(4, 4)
    with pytest.raises(ValueError, match="no trainable parameters"):
        hutchinson_trace(model, F.mse_loss, x, y)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_results_match_cpu(mlp_case):
    """On CUDA (float64) the Lanczos top eigenvalue and Hutchinson trace equal the CPU ones (rel 1e-9);
    probes are drawn on the CPU, so the same seed gives the same probes."""
    model, x, y, _ = mlp_case
    cuda_model = tiny_mlp().cuda()
    xc, yc = x.cuda(), y.cuda()
    a = hessian_eigenvalues(model, F.cross_entropy, x, y, k=2)
    b = hessian_eigenvalues(cuda_model, F.cross_entropy, xc, yc, k=2)
    assert all(rel(u, v) < 1e-9 for u, v in zip(b.eigenvalues, a.eigenvalues, strict=True))
    ha = hutchinson_trace(model, F.cross_entropy, x, y, num_probes=16)
    hb = hutchinson_trace(cuda_model, F.cross_entropy, xc, yc, num_probes=16)
    assert rel(hb.trace, ha.trace) < 1e-9
    sa = spectral_density(model, F.cross_entropy, x, y, num_probes=2, num_steps=10)
    sb = spectral_density(cuda_model, F.cross_entropy, xc, yc, num_probes=2, num_steps=10)
    np.testing.assert_allclose(sb.nodes, sa.nodes, rtol=1e-8, atol=1e-10)
