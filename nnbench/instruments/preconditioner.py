"""Effective preconditioner power: how strongly an optimizer's preconditioner compresses the Hessian.

The NQM models a preconditioned optimizer by P = H^-p (Zhang et al. 2019, section 3.3): the update
P g sees, along each eigendirection, the curvature h^(1 - p) instead of h. For a real optimizer P is
whatever it has estimated (Adam: its second moment; K-FAC: its Kronecker factors), and the power p it
acts like is a measurement, not an assumption (``shared/spec/PREDICTION.md`` section 3: Adam on
``teacher_fc`` compresses the top-30 eigenvalue ratio from 14.9 to 8.2, p ~ 0.22, not the p = 0.5 the
textbook identification gives).

Estimator. Let lambda_1 >= ... >= lambda_k be the k largest eigenvalues of the Hessian H and
mu_1 >= ... >= mu_k the k largest of P^1/2 H P^1/2 (the matrix whose spectrum governs preconditioned
gradient descent; it has the eigenvalues of P H). Pair them by rank and keep the pairs with both
positive. The **effective power** is

    p = 1 - slope,   slope = ordinary least-squares slope of log mu_(i) against log lambda_(i).

Why this estimator: it is exact for the model it stands for (P = c H^-p gives mu_i = c lambda_i^(1-p),
a straight line of slope 1 - p, for every k and every c); it does not depend on P's overall scale
(``c``, which the learning rate absorbs); it uses all k pairs, not only the two ends. The two-end
version, ``power_ratio`` = 1 - log(mu_1 / mu_k) / log(lambda_1 / lambda_k) (the compression of the top-k
condition number, the number PREDICTION.md quotes), is reported beside it. Rank pairing does not
assume that P and H share eigenvectors; when they do not, p describes how the spectrum's SHAPE is
compressed, which is what the NQM's steps depend on. A spectrum spread over less than a factor 2
(lambda_1 / lambda_k < 2) cannot fix a slope and is refused.

Preconditioners (:class:`Preconditioner`, applying P^1/2 to a batch of flat vectors):

* :func:`diagonal_preconditioner`: P = diag(d), any known diagonal.
* :func:`adam_preconditioner`: Adam's (``torch.optim.Adam``) P = diag(1 / (sqrt(v_hat) + eps)),
  v_hat = exp_avg_sq / (1 - beta2^t) the bias-corrected second moment (Kingma & Ba 2014, Algorithm
  1; the scalar lr and first-moment bias correction do not change p).
* :func:`kfac_preconditioner`: K-FAC's per-layer P = (A + pi sqrt(lambda) I)^-1 (x) (G + sqrt(lambda) /
  pi I)^-1 from its damped factor inverses (``nnbench.optim.KFAC``), P^1/2 vec(V) =
  vec(G_inv^1/2 V A_inv^1/2); parameters outside its Linear/Conv2d layers get P = I, as in its update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ._functional import (
    FlatModel,
    LossFn,
    batched,
    check_batch,
    check_model,
    check_positive_int,
    check_seed,
    cpu_generator,
    eval_mode,
    param_spec,
)
from ._lanczos import lanczos

__all__ = [
    "Preconditioner",
    "EffectivePower",
    "diagonal_preconditioner",
    "adam_preconditioner",
    "kfac_preconditioner",
    "power_from_spectra",
    "effective_power",
]

# A top-k spectrum spread over less than this factor cannot fix a slope in log-log.
MIN_SPREAD = 2.0


@dataclass(frozen=True)
class Preconditioner:
    """A symmetric positive definite preconditioner P over a model's flat trainable parameters.

    Attributes:
        name: what it is ("adam", "kfac", "diagonal").
        sqrt_apply: (n, P) -> (n, P), applies P^1/2 to each row (parameter order of
            ``model.named_parameters()``, as :func:`nnbench.instruments.flat_params`).
        num_params: P.
    """

    name: str
    sqrt_apply: Callable[[Tensor], Tensor]
    num_params: int


@dataclass(frozen=True)
class EffectivePower:
    """The effective power of a preconditioner (see the module docstring).

    Attributes:
        power: 1 - slope of log mu against log lambda (rank-paired, positive pairs).
        stderr: standard error of that slope (nan with 2 pairs).
        power_ratio: 1 - log(mu_1 / mu_k) / log(lambda_1 / lambda_k) over the same pairs.
        pairs: number of rank-paired positive eigenvalues used.
        hessian_eigenvalues: the top-k eigenvalues of H (descending).
        preconditioned_eigenvalues: the top-k eigenvalues of P^1/2 H P^1/2 (descending).
    """

    power: float
    stderr: float
    power_ratio: float
    pairs: int
    hessian_eigenvalues: tuple[float, ...]
    preconditioned_eigenvalues: tuple[float, ...]

    def as_measurements(self) -> dict[str, float]:
        return {"power": self.power, "power_stderr": self.stderr, "power_ratio": self.power_ratio,
                "pairs": float(self.pairs),
                "hessian_ratio": self.hessian_eigenvalues[0] / self.hessian_eigenvalues[self.pairs - 1],
                "preconditioned_ratio": (self.preconditioned_eigenvalues[0]
                                         / self.preconditioned_eigenvalues[self.pairs - 1])}


# ---------------------------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------------------------
def power_from_spectra(hessian_eigenvalues, preconditioned_eigenvalues) -> EffectivePower:
    """The effective power from the top-k eigenvalues of H and of P^1/2 H P^1/2 (any order).

    Both are sorted in descending order and paired by rank; pairs with a non-positive member are
    dropped (an NQM has no negative curvature). Raises ValueError with fewer than 2 positive pairs or
    a Hessian spread lambda_1 / lambda_k below 2 (no slope to measure).
    """
    lam = np.sort(np.asarray(hessian_eigenvalues, dtype=np.float64).reshape(-1))[::-1]
    mu = np.sort(np.asarray(preconditioned_eigenvalues, dtype=np.float64).reshape(-1))[::-1]
    if lam.size != mu.size:
        raise ValueError(f"hessian_eigenvalues and preconditioned_eigenvalues must have one length, got "
                         f"{lam.size} and {mu.size}")
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(mu))):
        raise ValueError("eigenvalues must be finite")
    n = int(np.sum((lam > 0) & (mu > 0)))       # descending: positive pairs are a prefix
    if n < 2:
        raise ValueError(f"need at least 2 positive eigenvalue pairs to measure a power, got {n}")
    x, y = np.log(lam[:n]), np.log(mu[:n])
    spread = math.exp(x[0] - x[-1])
    if spread < MIN_SPREAD:
        raise ValueError(f"the top-{n} Hessian eigenvalues span only a factor {spread:.3g} (< {MIN_SPREAD:g}): "
                         "too flat to measure how a preconditioner compresses them; use a larger k")
    xc = x - x.mean()
    slope = float(np.sum(xc * (y - y.mean())) / np.sum(xc * xc))
    stderr = math.nan
    if n > 2:
        resid = y - y.mean() - slope * xc
        stderr = float(math.sqrt(np.sum(resid * resid) / (n - 2) / np.sum(xc * xc)))
    ratio = 1.0 - float((y[0] - y[-1]) / (x[0] - x[-1]))
    return EffectivePower(power=1.0 - slope, stderr=stderr, power_ratio=ratio, pairs=n,
                          hessian_eigenvalues=tuple(float(v) for v in lam),
                          preconditioned_eigenvalues=tuple(float(v) for v in mu))


def _top_eigenvalues(matvec, p: int, k: int, m: int, seed: int, dtype, device) -> np.ndarray:
    """The k largest Ritz values of the symmetric operator ``matvec`` after m Lanczos steps."""
    gen = cpu_generator(seed)
    q0 = torch.randn((1, p), generator=gen, dtype=dtype).to(device)
    q0 = q0 / torch.linalg.vector_norm(q0)
    run = lanczos(matvec, q0, m, gen)
    theta = torch.linalg.eigvalsh(run.tridiagonal()[0])
    return theta.flip(0)[:k].double().cpu().numpy()


def effective_power(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor,
                    preconditioner: Preconditioner, *, k: int = 30, num_steps: int | None = None,
                    seed: int = 0, hvp_mode: str = "auto") -> EffectivePower:
    """The effective power p of ``preconditioner`` on the Hessian of the mean loss on (x, y).

    Args:
        model, loss_fn, x, y: the loss whose Hessian H is taken (at the model's current parameters,
            eval mode, as every instrument).
        preconditioner: P (:func:`adam_preconditioner`, :func:`kfac_preconditioner`,
            :func:`diagonal_preconditioner`).
        k: how many top eigenvalues of H and of P^1/2 H P^1/2 are paired.
        num_steps: Lanczos steps per operator (k <= m <= P); default min(P, max(60, 4k)). m = P gives
            every eigenvalue to rounding error.
        seed: seed of the Lanczos start vector (the same for both operators).
        hvp_mode: see :func:`nnbench.instruments.hessian_vector_product`.

    Cost: 2 m Hessian-vector products.
    """
    check_batch(x, y)
    k = check_positive_int(k, "k", minimum=2)
    seed = check_seed(seed)
    if not isinstance(preconditioner, Preconditioner):
        raise ValueError(f"preconditioner must be a Preconditioner, got {type(preconditioner).__name__}")
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        p = fm.num_params
        if preconditioner.num_params != p:
            raise ValueError(f"preconditioner acts on {preconditioner.num_params} parameters, the model has {p}")
        if k > p:
            raise ValueError(f"k must be at most the number of parameters {p}, got {k}")
        m = min(p, max(60, 4 * k)) if num_steps is None else check_positive_int(num_steps, "num_steps")
        if not k <= m <= p:
            raise ValueError(f"num_steps must lie in [k, P] = [{k}, {p}], got {m}")
        hvp = fm.hvp(x, y, mode=hvp_mode)

        def h_op(q: Tensor) -> Tensor:
            return batched(hvp, q, None)

        def ph_op(q: Tensor) -> Tensor:
            return preconditioner.sqrt_apply(h_op(preconditioner.sqrt_apply(q)))

        dtype, device = fm.spec.dtype, fm.spec.device
        lam = _top_eigenvalues(h_op, p, k, m, seed, dtype, device)
        mu = _top_eigenvalues(ph_op, p, k, m, seed, dtype, device)
    return power_from_spectra(lam, mu)


# ---------------------------------------------------------------------------------------------
# preconditioners
# ---------------------------------------------------------------------------------------------
def diagonal_preconditioner(diagonal: Tensor, *, name: str = "diagonal") -> Preconditioner:
    """P = diag(``diagonal``) (a 1-D tensor of positive entries, flat parameter order)."""
    if not isinstance(diagonal, Tensor) or diagonal.ndim != 1 or diagonal.numel() == 0:
        raise ValueError("diagonal must be a non-empty 1-D tensor")
    if not bool(torch.isfinite(diagonal).all()) or not bool((diagonal > 0).all()):
        raise ValueError("diagonal must be finite and > 0 (P must be positive definite)")
    root = diagonal.detach().sqrt()

    def sqrt_apply(v: Tensor) -> Tensor:
        return v * root.to(dtype=v.dtype, device=v.device)

    return Preconditioner(name=name, sqrt_apply=sqrt_apply, num_params=int(diagonal.numel()))


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def adam_preconditioner(optimizer: torch.optim.Optimizer, model: nn.Module) -> Preconditioner:
    """Adam's current diagonal preconditioner P = 1 / (sqrt(exp_avg_sq / (1 - beta2^t)) + eps).

    ``optimizer`` must be a ``torch.optim.Adam`` (or AdamW) over ``model``'s trainable parameters that
    has taken at least one step (with ``amsgrad``, max_exp_avg_sq is used, as in its update).
    """
    check_model(model)
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        raise ValueError(f"optimizer must be torch.optim.Adam or AdamW, got {type(optimizer).__name__}")
    spec = param_spec(model)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    parts = []
    for name in spec.names:
        prm = params[name]
        state = optimizer.state.get(prm, {})
        if id(prm) not in group_of or "exp_avg_sq" not in state:
            raise ValueError(f"parameter {name!r} has no Adam second moment (not optimised by this "
                             "optimizer, or no step taken yet)")
        group = group_of[id(prm)]
        second = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        t = float(state["step"])
        bias2 = 1.0 - group["betas"][1] ** t
        parts.append(1.0 / ((second.detach() / bias2).sqrt() + group["eps"]).reshape(-1))
    return diagonal_preconditioner(torch.cat(parts).to(spec.dtype), name="adam")


def _sym_sqrt(a: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (round-off negatives -> 0)."""
    evals, evecs = torch.linalg.eigh(0.5 * (a + a.T))
    return (evecs * evals.clamp_min(0.0).sqrt()) @ evecs.T


def kfac_preconditioner(optimizer, model: nn.Module) -> Preconditioner:
    """K-FAC's current preconditioner from its damped factor inverses (see the module docstring).

    ``optimizer`` is an ``nnbench.optim.KFAC`` over ``model`` whose inverses exist (one step taken).
    """
    from nnbench.optim.kfac import KFAC

    check_model(model)
    if not isinstance(optimizer, KFAC):
        raise ValueError(f"optimizer must be an nnbench.optim.KFAC, got {type(optimizer).__name__}")
    spec = param_spec(model)
    names = _param_names(model)
    offsets, start = {}, 0
    for name, numel in zip(spec.names, spec.numels, strict=True):
        offsets[name] = (start, numel)
        start += numel
    blocks = []
    for layer in optimizer.damped_inverses():
        w = layer.module.weight
        b = layer.module.bias if layer.has_bias else None
        blocks.append((offsets[names[id(w)]], w.shape[0], None if b is None else offsets[names[id(b)]],
                       _sym_sqrt(layer.g_inv).to(spec.dtype), _sym_sqrt(layer.a_inv).to(spec.dtype)))
    if not blocks:
        raise ValueError("the K-FAC optimizer has no factor inverses yet: take at least one step first")

    def sqrt_apply(v: Tensor) -> Tensor:
        out = v.clone()
        n = v.shape[0]
        for (w0, wn), d_out, bias, sg, sa in blocks:
            mat = v[:, w0:w0 + wn].reshape(n, d_out, -1)             # (n, d_out, d_in)
            if bias is not None:
                mat = torch.cat([mat, v[:, bias[0]:bias[0] + bias[1]].unsqueeze(2)], dim=2)
            mat = sg.to(v.device) @ mat @ sa.to(v.device)           # G_inv^1/2 V A_inv^1/2
            if bias is not None:
                out[:, bias[0]:bias[0] + bias[1]] = mat[:, :, -1]
                mat = mat[:, :, :-1]
            out[:, w0:w0 + wn] = mat.reshape(n, wn)
        return out

    return Preconditioner(name="kfac", sqrt_apply=sqrt_apply, num_params=spec.num_params)
