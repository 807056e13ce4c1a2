"""Hessian of the loss through Hessian-vector products: top eigenvalues, trace, spectral density.

H is the Hessian of the mean loss ``loss_fn(model(x), y)`` with respect to the trainable parameters
(flattened to one vector of length P), at the model's current parameters, in eval mode. It is never
formed: every method only needs v -> H v (forward-over-reverse ``jvp(grad)`` by default), so memory
is a few copies of the parameters per probe plus the Lanczos basis.

* :func:`hessian_eigenvalues`: top-k (or bottom-k) eigenvalues by Lanczos with full
  reorthogonalisation; :func:`power_iteration`: the eigenvalue of largest magnitude.
* :func:`hutchinson_trace`: tr(H) = E[v^T H v] over Rademacher v (Hutchinson 1990), with stderr.
* :func:`spectral_density`: stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019, sec. 3;
  Golub & Meurant 2009): per probe, Ritz values (nodes) and squared first components of T's
  eigenvectors (weights) give a quadrature rule for q^T f(H) q, exact for polynomials of degree
  < 2m; averaged over probes and broadened by a Gaussian it estimates the eigenvalue density
  phi(t) = (1/P) sum_i delta(t - lambda_i).
All random draws come from a seeded CPU generator (results do not depend on the device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ._functional import (
    FlatModel,
    LossFn,
    batched,
    check_batch,
    check_finite_positive,
    check_optional_chunk,
    check_positive_int,
    check_seed,
    cpu_generator,
    eval_mode,
    rademacher,
    to_float,
)
from ._lanczos import lanczos

# Lanczos bases above this many bytes are built a few probes at a time (SLQ).
_BASIS_BYTES = 2**28


def hessian_vector_product(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, v: Tensor, *, hvp_mode: str = "auto"
) -> Tensor:
    """H v for a flat vector v of length P, or each row of a (n, P) matrix.

    The parameter order is that of ``model.named_parameters()`` (trainable ones), as in
    :func:`nnbench.instruments.flat_params`. ``hvp_mode``: "forward" (``jvp`` of ``grad``, the
    cheapest), "reverse" (``vjp`` of ``grad``) or "auto" (forward when a trial product succeeds,
    else reverse: ``F.mse_loss`` fails under forward-over-reverse in torch 2.x, pytorch#123996).
    """
    check_batch(x, y)
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        p = fm.num_params
        if not isinstance(v, Tensor) or v.ndim not in (1, 2) or v.shape[-1] != p:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"v must be a tensor of shape ({p},) or (n, {p}), got {shape}")
        v = v.to(dtype=fm.spec.dtype, device=fm.spec.device)
        hvp = fm.hvp(x, y, mode=hvp_mode)
        return hvp(v) if v.ndim == 1 else batched(hvp, v, None)


# ---------------------------------------------------------------------------------------------
# top eigenvalues
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HessianEigen:
    """Extreme Hessian eigenvalues from Lanczos.

    Attributes:
        eigenvalues: the k Ritz values, descending for ``which="largest"``, ascending for "smallest".
        residuals: ||H u_i - theta_i u_i|| for each Ritz pair (a bound on the distance from theta_i
            to an eigenvalue of H).
        converged: every residual <= tol * max(|theta|) (tol as passed).
        num_steps: Lanczos steps taken (Hessian-vector products).
        eigenvectors: (k, P) unit Ritz vectors when requested, else None.
    """

    eigenvalues: tuple[float, ...]
    residuals: tuple[float, ...]
    converged: bool
    num_steps: int
    eigenvectors: Tensor | None = field(default=None, repr=False, compare=False)

    def as_measurements(self) -> dict[str, float]:
        out = {f"eigenvalue_{i + 1}": v for i, v in enumerate(self.eigenvalues)}
        out.update({f"residual_{i + 1}": r for i, r in enumerate(self.residuals)})
        return out


def hessian_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    k: int = 1,
    num_steps: int | None = None,
    which: str = "largest",
    tol: float = 1e-3,
    seed: int = 0,
    return_eigenvectors: bool = False,
    hvp_mode: str = "auto",
) -> HessianEigen:
    """The k largest (or smallest) eigenvalues of H by Lanczos with full reorthogonalisation.

    Args:
        model, loss_fn, x, y: the loss whose Hessian is taken (mean over the batch).
        k: how many eigenvalues.
        num_steps: Lanczos steps m (k <= m <= P); default min(P, max(30, 3k)). m = P gives every
            eigenvalue to rounding error.
        which: "largest" (algebraic, e.g. the sharpness lambda_max) or "smallest" (most negative).
        tol: relative residual under which a Ritz pair counts as converged (for ``converged``).
        seed: seed of the random start vector.
        return_eigenvectors: also return the (k, P) Ritz vectors.
        hvp_mode: "auto", "forward" or "reverse" (see :func:`hessian_vector_product`).
    """
    check_batch(x, y)
    k = check_positive_int(k, "k")
    seed = check_seed(seed)
    tol = check_finite_positive(tol, "tol")
    if which not in ("largest", "smallest"):
        raise ValueError(f"which must be 'largest' or 'smallest', got {which!r}")
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        p = fm.num_params
        if k > p:
            raise ValueError(f"k must be at most the number of parameters {p}, got {k}")
        m = min(p, max(30, 3 * k)) if num_steps is None else check_positive_int(num_steps, "num_steps")
        if not k <= m <= p:
            raise ValueError(f"num_steps must lie in [k, P] = [{k}, {p}], got {m}")
        gen = cpu_generator(seed)
        q0 = torch.randn((1, p), generator=gen, dtype=fm.spec.dtype).to(fm.spec.device)
        q0 = q0 / torch.linalg.vector_norm(q0)
        hvp = fm.hvp(x, y, mode=hvp_mode)
        run = lanczos(lambda q: batched(hvp, q, None), q0, m, gen)
    theta, s = torch.linalg.eigh(run.tridiagonal()[0])  # ascending
    order = torch.arange(m - 1, m - 1 - k, -1) if which == "largest" else torch.arange(k)
    theta, s = theta[order], s[:, order]
    residuals = (run.beta_last[0] * s[-1, :]).abs()
    values = tuple(float(t) for t in theta.cpu())
    res = tuple(float(r) for r in residuals.cpu())
    scale = max(abs(v) for v in values)
    vectors = (s.T @ run.basis[0]) if return_eigenvectors else None
    return HessianEigen(
        eigenvalues=values,
        residuals=res,
        converged=all(r <= tol * scale for r in res),
        num_steps=m,
        eigenvectors=vectors,
    )


@dataclass(frozen=True)
class PowerIteration:
    """The dominant (largest-magnitude) Hessian eigenvalue by power iteration.

    Attributes:
        eigenvalue: Rayleigh quotient u^T H u of the final unit vector u.
        residual: ||H u - eigenvalue u||.
        iterations: Hessian-vector products used.
        converged: the relative change of the Rayleigh quotient fell below ``tol``.
    """

    eigenvalue: float
    residual: float
    iterations: int
    converged: bool

    def as_measurements(self) -> dict[str, float]:
        return {"eigenvalue": self.eigenvalue, "residual": self.residual, "iterations": float(self.iterations)}


def power_iteration(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    max_iters: int = 100,
    tol: float = 1e-6,
    seed: int = 0,
    hvp_mode: str = "auto",
) -> PowerIteration:
    """The eigenvalue of H of largest magnitude by power iteration u <- H u / ||H u||.

    Converges at the rate |lambda_2 / lambda_1| per step; stops when the Rayleigh quotient changes
    by less than ``tol`` relative, or after ``max_iters`` products. Near a minimum the dominant
    eigenvalue is lambda_max (the sharpness); where a negative eigenvalue is larger in magnitude,
    that is what this returns (use :func:`hessian_eigenvalues` for the algebraic top).
    """
    check_batch(x, y)
    max_iters = check_positive_int(max_iters, "max_iters")
    tol = check_finite_positive(tol, "tol")
    seed = check_seed(seed)
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        hvp = fm.hvp(x, y, mode=hvp_mode)
        gen = cpu_generator(seed)
        u = torch.randn(fm.num_params, generator=gen, dtype=fm.spec.dtype).to(fm.spec.device)
        u = u / torch.linalg.vector_norm(u)
        hu = hvp(u)
        value = to_float(u @ hu)
        converged = False
        iterations = 1
        while iterations < max_iters:
            norm = torch.linalg.vector_norm(hu)
            if to_float(norm) == 0.0:  # H u = 0: u is an eigenvector of eigenvalue 0
                converged = True
                break
            u = hu / norm
            hu = hvp(u)
            iterations += 1
            new = to_float(u @ hu)
            if abs(new - value) <= tol * abs(new):
                value, converged = new, True
                break
            value = new
        residual = to_float(torch.linalg.vector_norm(hu - value * u))
    return PowerIteration(eigenvalue=value, residual=residual, iterations=iterations, converged=converged)


# ---------------------------------------------------------------------------------------------
# trace and spectral density
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HessianTrace:
    """Hutchinson's estimate of tr(H).

    Attributes:
        trace: mean over probes of v^T H v (Rademacher v), unbiased for tr(H).
        stderr: sample standard deviation of v^T H v over probes / sqrt(num_probes) (nan if 1 probe).
        num_probes: number of probes.
    """

    trace: float
    stderr: float
    num_probes: int

    def as_measurements(self) -> dict[str, float]:
        return {"trace": self.trace, "stderr": self.stderr}


def hutchinson_trace(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    num_probes: int = 32,
    seed: int = 0,
    chunk_size: int | None = None,
    hvp_mode: str = "auto",
) -> HessianTrace:
    """tr(H) ~ (1/n) sum_j v_j^T H v_j with Rademacher v_j (Hutchinson 1990).

    Var(v^T H v) = 2 (||H||_F^2 - sum_i H_ii^2), so the estimate is exact when H is diagonal.

    Args:
        num_probes: n >= 1 probes.
        chunk_size: Hessian-vector products vectorised this many probes at a time (None: all).
    """
    check_batch(x, y)
    num_probes = check_positive_int(num_probes, "num_probes")
    seed = check_seed(seed)
    chunk_size = check_optional_chunk(chunk_size)
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        gen = cpu_generator(seed)
        v = rademacher((num_probes, fm.num_params), gen, dtype=fm.spec.dtype, device=fm.spec.device)
        hv = batched(fm.hvp(x, y, mode=hvp_mode), v, chunk_size)
        quad = (v * hv).sum(dim=1).double().cpu()
    trace = float(quad.mean())
    stderr = float(quad.std(correction=1)) / math.sqrt(num_probes) if num_probes > 1 else math.nan
    return HessianTrace(trace=trace, stderr=stderr, num_probes=num_probes)


@dataclass(frozen=True, eq=False)  # arrays: compare by identity
class SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian eigenvalue density.

    Attributes:
        nodes: (num_probes, m) Ritz values of each probe's tridiagonal T.
        weights: (num_probes, m) squared first components of T's eigenvectors; each row sums to 1.
        num_params: P.
        grid: eigenvalue grid on which ``density`` is given.
        density: Gaussian-broadened density on ``grid`` (integrates to ~1 over the real line).
        sigma: the Gaussian's standard deviation (eigenvalue units).

    For any polynomial f of degree < 2m, ``(weights * f(nodes)).sum(1)`` equals q^T f(H) q of each
    unit probe q, and its mean over probes estimates (1/P) tr f(H).
    """

    nodes: np.ndarray
    weights: np.ndarray
    num_params: int
    grid: np.ndarray
    density: np.ndarray
    sigma: float

    def moment(self, order: int) -> float:
        """Estimate of (1/P) tr(H^order) (exact per probe for order < 2m)."""
        order = check_positive_int(order, "order", minimum=0)
        return float(np.mean(np.sum(self.weights * self.nodes**order, axis=1)))

    def trace(self) -> float:
        """Estimate of tr(H) = P * first moment."""
        return self.num_params * self.moment(1)

    def density_at(self, grid: np.ndarray, sigma: float) -> np.ndarray:
        """The density broadened by a Gaussian of standard deviation ``sigma`` at the points ``grid``."""
        sigma = check_finite_positive(sigma, "sigma")
        return _broaden(self.nodes, self.weights, np.asarray(grid, dtype=float), sigma)

    def as_measurements(self) -> dict[str, float]:
        return {
            "trace": self.trace(),
            "lambda_min": float(self.nodes.min()),
            "lambda_max": float(self.nodes.max()),
        }


def _broaden(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    # (G, n, m) Gaussian kernels, averaged over probes and weighted within each probe
    z = (grid[:, None, None] - nodes[None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2.0 * math.pi))
    return (kernel * weights[None]).sum(axis=2).mean(axis=1)


def spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    num_probes: int = 10,
    num_steps: int = 80,
    seed: int = 0,
    grid_size: int = 512,
    sigma: float | None = None,
    probe_batch_size: int | None = None,
    hvp_mode: str = "auto",
) -> SpectralDensity:
    """Eigenvalue density of H by stochastic Lanczos quadrature (Ghorbani et al. 2019, sec. 3).

    Each unit Rademacher probe q = v / sqrt(P) starts a Lanczos run of m steps with full
    reorthogonalisation; T = S diag(theta) S^T gives nodes theta and weights S[0, :]^2.

    Args:
        num_probes: independent probes averaged.
        num_steps: m Lanczos steps per probe (capped at P).
        grid_size: points of the density grid, which spans the nodes +- 5 sigma.
        sigma: Gaussian broadening; default 1% of the node range (or 1e-3 * max(1, |node|) if the
            range is 0).
        probe_batch_size: probes run side by side (vectorised HVPs); default: as many as keep the
            Lanczos bases under 256 MiB.
    """
    check_batch(x, y)
    num_probes = check_positive_int(num_probes, "num_probes")
    num_steps = check_positive_int(num_steps, "num_steps")
    seed = check_seed(seed)
    grid_size = check_positive_int(grid_size, "grid_size", minimum=2)
    if sigma is not None:
        sigma = check_finite_positive(sigma, "sigma")
    if probe_batch_size is not None:
        probe_batch_size = check_positive_int(probe_batch_size, "probe_batch_size")
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        p = fm.num_params
        m = min(num_steps, p)
        if probe_batch_size is None:
            itemsize = torch.finfo(fm.spec.dtype).bits // 8
            probe_batch_size = max(1, min(num_probes, _BASIS_BYTES // (m * p * itemsize)))
        gen = cpu_generator(seed)
        probes = rademacher((num_probes, p), gen, dtype=fm.spec.dtype, device=fm.spec.device) / math.sqrt(p)
        hvp = fm.hvp(x, y, mode=hvp_mode)
        nodes, weights = [], []
        for start in range(0, num_probes, probe_batch_size):
            run = lanczos(lambda q: batched(hvp, q, None), probes[start : start + probe_batch_size], m, gen)
            theta, s = torch.linalg.eigh(run.tridiagonal())
            nodes.append(theta.double().cpu())
            weights.append((s[:, 0, :] ** 2).double().cpu())
    node_arr = torch.cat(nodes).numpy()
    weight_arr = torch.cat(weights).numpy()
    lo, hi = float(node_arr.min()), float(node_arr.max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else 1e-3 * max(1.0, abs(hi))
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size)
    return SpectralDensity(
        nodes=node_arr,
        weights=weight_arr,
        num_params=p,
        grid=grid,
        density=_broaden(node_arr, weight_arr, grid, sigma),
        sigma=sigma,
    )
