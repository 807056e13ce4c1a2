"""Fisher information trace, Park et al.'s Gamma and the SGD temperature g.

Park, Sohl-Dickstein, Le & Smith (2019), "The Effect of Network Width on Stochastic Gradient
Descent and Generalization" / "Optimal SGD hyperparameters for fully connected networks":
    g = lr N / (2 B (1 - m))                              (their eq. 3; N = training-set size)
    Gamma = E_{w ~ init}[tr F] / sqrt(P)                  (their eq. 6; P = number of parameters)
and they find g_opt * Gamma ~ C, a constant of the training set. Their F (eq. 5) is the covariance
of per-example loss gradients, which they approximate by the empirical Fisher.

Three traces, all means over the N examples of (x, y) of a per-example quantity (units: squared
loss-gradient norm, i.e. loss^2 / parameter^2):
* ``kind="true"``: tr F = E_x E_{y ~ p_model(.|x)} |grad_theta log p(y|x)|^2, the Fisher of the
  model's predictive distribution. ``likelihood="categorical"``: softmax over the output's last
  dimension; exact as sum_c p_c |grad log p_c|^2 for (N, C) outputs (``num_samples=None``), or
  with ``num_samples`` labels drawn per example (any (N, ..., C) output; positions are independent
  given x, so log p(y|x) sums over them). ``likelihood="gaussian"``: the output is the mean of a
  unit-variance Gaussian, tr F_i = ||d output_i / d theta||_F^2 exactly, or sampled.
* ``kind="empirical"``: (1/N) sum_i |grad loss_fn(model(x_i), y_i)|^2, labels from the data.
* ``kind="gradient_covariance"``: (1/N) sum_i |g_i - mean_j g_j|^2, Park et al.'s eq. 5 literally.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, jacrev, vmap

from ._functional import (
    FlatModel,
    LossFn,
    check_batch,
    check_model,
    check_optional_chunk,
    check_positive_int,
    check_seed,
    cpu_generator,
    eval_mode,
    example_chunks,
    to_float,
)
from .noise_scale import _centred_moments

FISHER_KINDS = ("true", "empirical", "gradient_covariance")
LIKELIHOODS = ("categorical", "gaussian")


@dataclass(frozen=True)
class FisherTrace:
    """A Fisher information trace (see the module docstring for the three kinds).

    Attributes:
        trace: mean over examples of the per-example trace.
        stderr: standard deviation of the per-example values / sqrt(N) (includes label-sampling
            noise when sampled); nan for ``gradient_covariance``.
        kind: "true", "empirical" or "gradient_covariance".
        likelihood: "categorical" or "gaussian" for kind="true", else "" (loss_fn is used).
        num_samples: labels drawn per example, or 0 for an exact expectation.
        num_examples: N.
        num_params: P.
    """

    trace: float
    stderr: float
    kind: str
    likelihood: str
    num_samples: int
    num_examples: int
    num_params: int

    def as_measurements(self) -> dict[str, float]:
        return {"trace": self.trace, "stderr": self.stderr, "trace_per_param": self.trace / self.num_params}


def _per_example_true_fisher(
    fm: FlatModel, x: Tensor, likelihood: str, num_samples: int | None, gen: torch.Generator
) -> Tensor:
    """(c,) per-example trace of the true Fisher for a chunk x."""
    theta = fm.theta0
    out = fm.output(theta, x).detach()
    if likelihood == "categorical":
        if out.ndim < 2:
            raise ValueError(f"categorical likelihood needs outputs of shape (N, ..., C), got {tuple(out.shape)}")
        probs = F.softmax(out, dim=-1)
        if num_samples is None:
            if out.ndim != 2:
                raise ValueError(
                    f"the exact categorical Fisher needs outputs of shape (N, C), got {tuple(out.shape)}; "
                    "pass num_samples to sample labels instead"
                )

            def log_probs(t: Tensor, xi: Tensor) -> Tensor:
                return F.log_softmax(fm.output(t, xi.unsqueeze(0))[0], dim=-1)  # (C,)

            jac = vmap(jacrev(log_probs), in_dims=(None, 0))(theta, x)  # (c, C, P)
            return (probs * (jac * jac).sum(dim=-1)).sum(dim=-1)
        flat = probs.reshape(-1, probs.shape[-1]).to("cpu", torch.float64)
        labels = torch.multinomial(flat, num_samples, replacement=True, generator=gen)  # (c*rest, S)
        labels = labels.reshape(*out.shape[:-1], num_samples).movedim(-1, 1).to(out.device)  # (c, S, ...)

        def log_lik(t: Tensor, xi: Tensor, yi: Tensor) -> Tensor:
            logp = F.log_softmax(fm.output(t, xi.unsqueeze(0))[0], dim=-1)
            return logp.gather(-1, yi.unsqueeze(-1)).sum()

    else:  # gaussian, unit variance: grad log p = J^T (y - f) with y - f ~ N(0, I)
        if num_samples is None:

            def output_i(t: Tensor, xi: Tensor) -> Tensor:
                return fm.output(t, xi.unsqueeze(0)).reshape(-1)  # (D,)

            jac = vmap(jacrev(output_i), in_dims=(None, 0))(theta, x)  # (c, D, P)
            return (jac * jac).sum(dim=(1, 2))
        noise = torch.randn((out.shape[0], num_samples, *out.shape[1:]), generator=gen, dtype=torch.float64)
        labels = noise.to(dtype=out.dtype, device=out.device)  # (c, S, ...) residuals y - f

        def log_lik(t: Tensor, xi: Tensor, yi: Tensor) -> Tensor:
            # d/dtheta of -|y - f|^2/2 at y - f = eps is J^T eps = d/dtheta (eps . f)
            return (yi * fm.output(t, xi.unsqueeze(0))[0]).sum()

    per_sample = vmap(vmap(grad(log_lik), in_dims=(None, None, 0)), in_dims=(None, 0, 0))
    g = per_sample(theta, x, labels)  # (c, S, P)
    return (g * g).sum(dim=-1).mean(dim=-1)


def fisher_trace(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    kind: str = "true",
    likelihood: str = "categorical",
    num_samples: int | None = None,
    seed: int = 0,
    chunk_size: int | None = None,
) -> FisherTrace:
    """Trace of the Fisher information on the examples of (x, y) (see the module docstring).

    Args:
        model: any module (eval mode, functional_call; never mutated).
        loss_fn: ``loss_fn(output, y) -> scalar`` mean loss; used by "empirical" and
            "gradient_covariance" (ignored by "true", which uses the model's own distribution).
        x, y: N examples (y ignored by "true" except for its batch size).
        kind: "true" | "empirical" | "gradient_covariance".
        likelihood: for kind="true": "categorical" (logits) or "gaussian" (unit-variance mean).
        num_samples: for kind="true": labels drawn per example; None = exact expectation.
        seed: seed of the label draws.
        chunk_size: examples processed at once (memory chunk_size x C x P for the exact
            categorical Fisher); None = all.
    """
    n = check_batch(x, y, min_size=2 if kind == "gradient_covariance" else 1)
    if kind not in FISHER_KINDS:
        raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    if num_samples is not None:
        num_samples = check_positive_int(num_samples, "num_samples")
        if kind != "true":
            raise ValueError(f"num_samples applies to kind='true' only, got kind={kind!r}")
    seed = check_seed(seed)
    chunk_size = check_optional_chunk(chunk_size)
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        if kind == "gradient_covariance":
            _, m2, _ = _centred_moments(fm, x, y, chunk_size, None)
            trace, stderr = to_float(m2) / n, math.nan
        else:
            gen = cpu_generator(seed)
            parts = []
            for sl in example_chunks(n, chunk_size):
                if kind == "true":
                    parts.append(_per_example_true_fisher(fm, x[sl], likelihood, num_samples, gen))
                else:
                    g = fm.per_example_gradients(x[sl], y[sl])
                    parts.append((g * g).sum(dim=1))
            values = torch.cat(parts).double().cpu()
            trace = float(values.mean())
            stderr = float(values.std(correction=1)) / math.sqrt(n) if n > 1 else math.nan
    return FisherTrace(
        trace=trace,
        stderr=stderr,
        kind=kind,
        likelihood=likelihood if kind == "true" else "",
        num_samples=0 if num_samples is None else num_samples,
        num_examples=n,
        num_params=fm.num_params,
    )


@dataclass(frozen=True)
class ParkGamma:
    """Park et al.'s Gamma = E_init[tr F] / sqrt(P) (their eq. 6).

    Attributes:
        gamma: mean over initialisations of tr F, divided by sqrt(P).
        stderr: standard error of gamma over the initialisations (nan for one seed).
        traces: tr F at each initialisation, in seed order.
        seeds: the seeds used (torch.manual_seed before each ``model_fn()``).
        num_params: P.
        kind: the Fisher kind used (see :func:`fisher_trace`).
    """

    gamma: float
    stderr: float
    traces: tuple[float, ...]
    seeds: tuple[int, ...]
    num_params: int
    kind: str

    def as_measurements(self) -> dict[str, float]:
        return {"gamma": self.gamma, "stderr": self.stderr}


def park_gamma(
    model_fn: Callable[[], nn.Module],
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    kind: str = "empirical",
    **fisher_kwargs,
) -> ParkGamma:
    """Gamma = E_{w ~ init}[tr F] / sqrt(P), averaging :func:`fisher_trace` over initialisations.

    Each initialisation is ``model_fn()`` called under ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng`` (the caller's random state is left untouched), moved to x's device.
    ``kind`` defaults to "empirical", the approximation Park et al. use; ``fisher_kwargs`` go to
    :func:`fisher_trace` (likelihood, num_samples, chunk_size, seed).
    """
    if not callable(model_fn):
        raise ValueError(f"model_fn must be a callable returning a fresh nn.Module, got {model_fn!r}")
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one initialisation seed")
    for s in seeds:
        check_seed(s)
    check_batch(x, y)
    cuda = [x.device.index or 0] if x.device.type == "cuda" else []
    traces, num_params = [], None
    for s in seeds:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(s)
            model = model_fn()
        check_model(model)
        model = model.to(x.device)
        result = fisher_trace(model, loss_fn, x, y, kind=kind, **fisher_kwargs)
        if num_params is not None and result.num_params != num_params:
            raise ValueError("model_fn must build the same architecture every time (parameter counts differ)")
        num_params = result.num_params
        traces.append(result.trace)
    t = torch.tensor(traces, dtype=torch.float64)
    root_p = math.sqrt(num_params)
    stderr = float(t.std(correction=1)) / math.sqrt(len(traces)) / root_p if len(traces) > 1 else math.nan
    return ParkGamma(
        gamma=float(t.mean()) / root_p,
        stderr=stderr,
        traces=tuple(traces),
        seeds=seeds,
        num_params=num_params,
        kind=kind,
    )


def sgd_temperature(lr: float, num_train: int, batch_size: int, momentum: float = 0.0) -> float:
    """Park et al.'s temperature g = lr N / (2 B (1 - m)) (their eq. 3; m = 0 for plain SGD).

    Args:
        lr: learning rate (> 0, finite).
        num_train: N, training-set size (integer >= 1).
        batch_size: B, integer in [1, N].
        momentum: heavy-ball momentum m in [0, 1).

    Returns:
        g, in units of lr (per example).
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    num_train = check_positive_int(num_train, "num_train")
    batch_size = check_positive_int(batch_size, "batch_size")
    if batch_size > num_train:
        raise ValueError(f"batch_size must not exceed num_train={num_train}, got {batch_size}")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    return lr * num_train / (2.0 * batch_size * (1.0 - momentum))
