"""Gradient noise scales of McCandlish et al. (2018), "An Empirical Model of Large-Batch Training".

Notation (per example i of a batch of N, flat parameters of length P):
    g_i      gradient of example i's loss,
    G        true gradient (expectation of g_i over the data distribution),  G_hat = mean_i g_i,
    Sigma    per-example gradient covariance,   Sigma_hat = sum_i (g_i - G_hat)(g_i - G_hat)^T / (N - 1),
    H        Hessian of the mean loss.
    B_simple = tr(Sigma) / |G|^2                        (McCandlish et al. eq. 2.8)
    B_noise  = tr(H Sigma) / (G^T H G)                  (eq. 2.7; B_noise = B_simple when H is a
                                                         multiple of the identity)
Both are in units of examples (a batch size).

Estimators, decided here and stated in the field names:
* ``trace_sigma`` uses the unbiased 1/(N-1) covariance.
* ``b_simple`` divides by the plug-in |G_hat|^2. This is the noise scale of the batch itself taken
  as the data distribution (up to the N/(N-1) factor) and is always finite and positive.
* ``b_simple_unbiased`` divides by the unbiased |G|^2 estimate |G_hat|^2 - tr(Sigma_hat)/N
  (E|G_hat|^2 = |G|^2 + tr(Sigma)/N for i.i.d. examples). A ratio of unbiased estimates is not
  unbiased, but it is consistent, and it is what one wants when (x, y) is a sample from a much
  larger training set; it is +inf when the denominator is <= 0 (the batch cannot resolve |G|^2).
The same two versions are given for B_noise, with G^T H G debiased as G_hat^T H G_hat - tr(H Sigma_hat)/N
(unbiased for a fixed H).

``two_batch_noise_scale`` is the cheap estimator of McCandlish et al. appendix A.1: from the squared
norms of gradients over batches of two sizes B_small < B_big,
    E|G_B|^2 = |G|^2 + tr(Sigma)/B   =>
    |G|^2  ~ (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small),
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big),
both unbiased for i.i.d. examples (sampling with replacement; shuffled epochs of a training set much
larger than B_big are close to that). McCandlish et al. average the two estimates over many steps
before dividing: callers logging them every k steps should do the same with the stored components.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from ._functional import (
    FlatModel,
    LossFn,
    check_batch,
    check_optional_chunk,
    check_positive_int,
    eval_mode,
    example_chunks,
    to_float,
)


def _ratio(num: float, den: float) -> float:
    """num / den, +inf when the denominator is not positive (estimate unresolvable), nan stays nan."""
    if math.isnan(num) or math.isnan(den):
        return math.nan
    return num / den if den > 0.0 else math.inf


def _floats(obj: object) -> dict[str, float]:
    return {k: float(v) for k, v in asdict(obj).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass(frozen=True)
class SimpleNoiseScale:
    """B_simple from per-example gradients of one batch (see the module docstring).

    Attributes:
        b_simple: tr(Sigma_hat) / |G_hat|^2, in examples.
        b_simple_unbiased: tr(Sigma_hat) / (|G_hat|^2 - tr(Sigma_hat)/N); +inf if that is <= 0.
        trace_sigma: tr(Sigma_hat), unbiased (1/(N-1)) per-example gradient covariance trace.
        grad_norm_sq: |G_hat|^2, squared norm of the mean gradient.
        grad_norm_sq_unbiased: |G_hat|^2 - tr(Sigma_hat)/N, unbiased estimate of |G|^2 (may be < 0).
        batch_size: N, the number of examples used.
    """

    b_simple: float
    b_simple_unbiased: float
    trace_sigma: float
    grad_norm_sq: float
    grad_norm_sq_unbiased: float
    batch_size: int

    def as_measurements(self) -> dict[str, float]:
        return _floats(self)


@dataclass(frozen=True)
class NoiseScale:
    """B_noise (Hessian-weighted) together with B_simple, from one batch (see the module docstring).

    Attributes:
        b_noise: tr(H Sigma_hat) / (G_hat^T H G_hat), in examples (meaningful where G^T H G > 0).
        b_noise_unbiased: tr(H Sigma_hat) / (G_hat^T H G_hat - tr(H Sigma_hat)/N); +inf if <= 0.
        trace_h_sigma: tr(H Sigma_hat) = sum_i (g_i - G_hat)^T H (g_i - G_hat) / (N - 1).
        g_h_g: G_hat^T H G_hat.
        b_simple, b_simple_unbiased, trace_sigma, grad_norm_sq, grad_norm_sq_unbiased, batch_size:
            as in :class:`SimpleNoiseScale`.
    """

    b_noise: float
    b_noise_unbiased: float
    trace_h_sigma: float
    g_h_g: float
    b_simple: float
    b_simple_unbiased: float
    trace_sigma: float
    grad_norm_sq: float
    grad_norm_sq_unbiased: float
    batch_size: int

    def as_measurements(self) -> dict[str, float]:
        return _floats(self)


def _centred_moments(
    fm: FlatModel, x: Tensor, y: Tensor, chunk_size: int | None, hvp
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Mean per-example gradient, sum_i |g_i - mean|^2 and (if hvp) sum_i (g_i - mean)^T H (g_i - mean).

    One pass over chunks of examples; chunks are merged with Chan et al.'s pairwise update
    (M2 = M2_a + M2_b + |delta|^2 n_a n_b / n), so memory is O(chunk_size * P) and the centring is
    exact (no |g|^2 - |mean|^2 cancellation).
    """
    count = 0
    mean: Tensor | None = None
    m2 = torch.zeros((), dtype=fm.spec.dtype, device=fm.spec.device)
    m2h = m2.clone() if hvp is not None else None
    for sl in example_chunks(int(x.shape[0]), chunk_size):
        g = fm.per_example_gradients(x[sl], y[sl])  # (c, P)
        c = int(g.shape[0])
        chunk_mean = g.mean(dim=0)
        d = g - chunk_mean
        chunk_m2 = (d * d).sum()
        chunk_m2h = (d * vmap(hvp)(d)).sum() if hvp is not None else None
        if mean is None:
            mean, m2, m2h = chunk_mean, chunk_m2, chunk_m2h
        else:
            delta = chunk_mean - mean
            w = count * c / (count + c)
            m2 = m2 + chunk_m2 + (delta @ delta) * w
            if hvp is not None:
                m2h = m2h + chunk_m2h + (delta @ hvp(delta)) * w
            mean = mean + delta * (c / (count + c))
        count += c
    return mean, m2, m2h


def gradient_noise_scale(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, *, chunk_size: int | None = None
) -> SimpleNoiseScale:
    """B_simple = tr(Sigma) / |G|^2 from exact per-example gradients (``vmap(grad)``) of one batch.

    McCandlish et al. (2018) eq. 2.8. Costs about N single-example backward passes (vectorised).

    Args:
        model: any module; evaluated in eval mode through ``functional_call`` (never mutated).
        loss_fn: ``loss_fn(output, y) -> scalar`` mean loss over the batch.
        x, y: a batch of N >= 2 examples (on the model's device).
        chunk_size: per-example gradients are formed this many at a time (memory chunk_size x P);
            None = all N at once.

    Returns:
        :class:`SimpleNoiseScale`.
    """
    n = check_batch(x, y, min_size=2)
    chunk_size = check_optional_chunk(chunk_size)
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        mean, m2, _ = _centred_moments(fm, x, y, chunk_size, None)
        return _simple(to_float(mean @ mean), to_float(m2) / (n - 1), n)


def _simple(grad_norm_sq: float, trace_sigma: float, n: int) -> SimpleNoiseScale:
    unbiased = grad_norm_sq - trace_sigma / n
    return SimpleNoiseScale(
        b_simple=_ratio(trace_sigma, grad_norm_sq),
        b_simple_unbiased=_ratio(trace_sigma, unbiased),
        trace_sigma=trace_sigma,
        grad_norm_sq=grad_norm_sq,
        grad_norm_sq_unbiased=unbiased,
        batch_size=n,
    )


def hessian_noise_scale(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    chunk_size: int | None = None,
    hvp_mode: str = "auto",
) -> NoiseScale:
    """B_noise = tr(H Sigma) / (G^T H G) with exact per-example gradients and Hessian-vector products.

    McCandlish et al. (2018) eq. 2.7: tr(H Sigma_hat) = sum_i (g_i - G_hat)^T H (g_i - G_hat) / (N-1),
    N Hessian-vector products (forward-over-reverse, vectorised with ``vmap``), H the Hessian of the
    mean loss on the same batch. Also returns B_simple (same per-example gradients).

    Args:
        model, loss_fn, x, y, chunk_size: as in :func:`gradient_noise_scale`.
        hvp_mode: ``"auto"`` (default), ``"forward"`` (jvp of grad) or ``"reverse"`` (vjp of grad);
            see :func:`nnbench.instruments.hessian_vector_product`.

    Returns:
        :class:`NoiseScale`.
    """
    n = check_batch(x, y, min_size=2)
    chunk_size = check_optional_chunk(chunk_size)
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        hvp = fm.hvp(x, y, mode=hvp_mode)
        mean, m2, m2h = _centred_moments(fm, x, y, chunk_size, hvp)
        g_h_g = to_float(mean @ hvp(mean))
        simple = _simple(to_float(mean @ mean), to_float(m2) / (n - 1), n)
    trace_h_sigma = to_float(m2h) / (n - 1)
    return NoiseScale(
        b_noise=_ratio(trace_h_sigma, g_h_g),
        b_noise_unbiased=_ratio(trace_h_sigma, g_h_g - trace_h_sigma / n),
        trace_h_sigma=trace_h_sigma,
        g_h_g=g_h_g,
        **asdict(simple),
    )


# ---------------------------------------------------------------------------------------------
# the cheap two-batch-size estimator (McCandlish et al. appendix A.1)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TwoBatchNoiseScale:
    """Unbiased |G|^2 and tr(Sigma) from gradient norms at two batch sizes, and their ratio.

    Attributes:
        b_simple: trace_sigma / grad_norm_sq (+inf when grad_norm_sq <= 0), in examples.
        grad_norm_sq: unbiased estimate of |G|^2 (may be negative for noisy inputs).
        trace_sigma: unbiased estimate of tr(Sigma) (may be negative for noisy inputs).
        small_norm_sq: |G_small|^2, averaged over the disjoint small batches used.
        big_norm_sq: |G_big|^2.
        batch_size_small, batch_size_big: B_small < B_big.
        num_small_batches: how many disjoint small batches were averaged.
    """

    b_simple: float
    grad_norm_sq: float
    trace_sigma: float
    small_norm_sq: float
    big_norm_sq: float
    batch_size_small: int
    batch_size_big: int
    num_small_batches: int

    def as_measurements(self) -> dict[str, float]:
        return _floats(self)


def unbiased_gradient_estimates(
    small_norm_sq: float, big_norm_sq: float, batch_size_small: int, batch_size_big: int
) -> tuple[float, float]:
    """(|G|^2, tr(Sigma)) estimates from |G_B|^2 at two batch sizes (McCandlish et al. appendix A.1).

    Exact inversion of E|G_B|^2 = |G|^2 + tr(Sigma)/B at B = batch_size_small and batch_size_big:
        |G|^2     = (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
        tr(Sigma) = (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big)

    Args:
        small_norm_sq, big_norm_sq: squared gradient norms (finite, >= 0).
        batch_size_small, batch_size_big: integers with 1 <= batch_size_small < batch_size_big.
    """
    for name, value in (("small_norm_sq", small_norm_sq), ("big_norm_sq", big_norm_sq)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    b_small = check_positive_int(batch_size_small, "batch_size_small")
    b_big = check_positive_int(batch_size_big, "batch_size_big")
    if b_big <= b_small:
        raise ValueError(f"batch_size_big must exceed batch_size_small, got {b_big} <= {b_small}")
    return _two_batch(float(small_norm_sq), float(big_norm_sq), b_small, b_big)


def _two_batch(small_norm_sq: float, big_norm_sq: float, b_small: int, b_big: int) -> tuple[float, float]:
    # unvalidated: non-finite gradient norms (a diverged model) propagate as nan
    grad_norm_sq = (b_big * big_norm_sq - b_small * small_norm_sq) / (b_big - b_small)
    trace_sigma = (small_norm_sq - big_norm_sq) / (1.0 / b_small - 1.0 / b_big)
    return grad_norm_sq, trace_sigma


def two_batch_noise_scale(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, *, small_batch_size: int
) -> TwoBatchNoiseScale:
    """The cheap B_simple estimator from one batch: B_big = len(x), B_small = ``small_batch_size``.

    The batch is cut into k = B_big // B_small disjoint small batches (a ragged tail only enters the
    big batch); |G_small|^2 is averaged over them (same expectation, lower variance), |G_big|^2 is the
    gradient norm of the whole batch. Costs k + 1 batched backward passes, no per-example gradients.
    The examples of (x, y) must be i.i.d. draws (see the module docstring).
    """
    n = check_batch(x, y, min_size=2)
    b_small = check_positive_int(small_batch_size, "small_batch_size")
    if b_small >= n:
        raise ValueError(f"small_batch_size must be smaller than the batch size {n}, got {b_small}")
    k = n // b_small
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        g_big = fm.gradient(x, y)
        xs = x[: k * b_small].reshape(k, b_small, *x.shape[1:])
        ys = y[: k * b_small].reshape(k, b_small, *y.shape[1:])
        g_small = vmap(grad(fm.loss), in_dims=(None, 0, 0))(fm.theta0, xs, ys)  # (k, P)
        small_norm_sq = to_float((g_small * g_small).sum(dim=1).mean())
        big_norm_sq = to_float(g_big @ g_big)
    grad_norm_sq, trace_sigma = _two_batch(small_norm_sq, big_norm_sq, b_small, n)
    return TwoBatchNoiseScale(
        b_simple=_ratio(trace_sigma, grad_norm_sq),
        grad_norm_sq=grad_norm_sq,
        trace_sigma=trace_sigma,
        small_norm_sq=small_norm_sq,
        big_norm_sq=big_norm_sq,
        batch_size_small=b_small,
        batch_size_big=n,
        num_small_batches=k,
    )
