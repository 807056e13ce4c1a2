"""Private plumbing shared by the instruments: parameters as one flat vector, pure loss closures.

Every instrument measures the deterministic function ``theta -> loss_fn(model(x; theta), y)``
through :func:`torch.func.functional_call`; the module itself is never mutated. The model is put
in ``eval()`` mode for the duration of a measurement (and its previous per-module modes restored),
because per-example gradients, Hessian-vector products and Lanczos need one well-defined function
of the parameters: dropout would draw fresh masks at every call, and batch-norm in training mode
would make one example's loss depend on the rest of the batch (and update running statistics).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp
from torch.nn.attention import SDPBackend, sdpa_kernel

LossFn = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------
def check_model(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def check_loss_fn(loss_fn: object) -> None:
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable as loss_fn(output, y) -> scalar, got {loss_fn!r}")


def check_batch(x: object, y: object, *, min_size: int = 1, name: str = "x") -> int:
    """Validate a batch (x, y) of tensors with a common leading size >= min_size; return that size."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(y, Tensor):
        raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{name} and y need a leading batch dimension, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name} and y must have the same batch size, got {x.shape[0]} and {y.shape[0]}")
    n = int(x.shape[0])
    if n < min_size:
        raise ValueError(f"batch size of {name} must be at least {min_size} here, got {n}")
    return n


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_optional_chunk(chunk_size: object) -> int | None:
    if chunk_size is None:
        return None
    return check_positive_int(chunk_size, "chunk_size")


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def check_finite_positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# parameters <-> flat vector
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """Names and shapes of a model's trainable parameters, in ``named_parameters()`` order.

    Tied parameters appear once (``named_parameters`` removes duplicates; ``functional_call``
    re-ties them). Parameters with ``requires_grad=False`` are constants, not coordinates.
    """

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    numels: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    @property
    def num_params(self) -> int:
        return sum(self.numels)

    def flatten(self, tensors: dict[str, Tensor]) -> Tensor:
        """dict name -> tensor  ->  1-D vector of length ``num_params``."""
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """1-D vector -> dict name -> tensor (views of ``flat``; differentiable under torch.func)."""
        out: dict[str, Tensor] = {}
        offset = 0
        for name, shape, numel in zip(self.names, self.shapes, self.numels, strict=True):
            out[name] = flat[offset : offset + numel].view(shape)
            offset += numel
        return out


def param_spec(model: nn.Module) -> ParamSpec:
    """The :class:`ParamSpec` of ``model``'s trainable parameters (ValueError if none or mixed dtypes)."""
    check_model(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no trainable parameters (requires_grad=True): nothing to measure")
    dtypes = {p.dtype for _, p in named}
    devices = {p.device for _, p in named}
    if len(dtypes) != 1:
        raise ValueError(f"model parameters must share one dtype to be flattened, got {sorted(map(str, dtypes))}")
    if len(devices) != 1:
        raise ValueError(f"model parameters must live on one device, got {sorted(map(str, devices))}")
    if not named[0][1].dtype.is_floating_point:
        raise ValueError(f"model parameters must be floating point, got {named[0][1].dtype}")
    return ParamSpec(
        names=tuple(n for n, _ in named),
        shapes=tuple(p.shape for _, p in named),
        numels=tuple(p.numel() for _, p in named),
        dtype=named[0][1].dtype,
        device=named[0][1].device,
    )


def flat_params(model: nn.Module, spec: ParamSpec | None = None) -> Tensor:
    """The trainable parameters of ``model`` as one detached 1-D vector (a copy)."""
    spec = spec or param_spec(model)
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in spec.names]).clone()


def _constants(model: nn.Module, spec: ParamSpec) -> dict[str, Tensor]:
    """Frozen parameters and buffers, passed to functional_call unchanged."""
    trainable = set(spec.names)
    consts = {n: p.detach() for n, p in model.named_parameters() if n not in trainable}
    consts.update({n: b for n, b in model.named_buffers()})
    return consts


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's previous ``training`` flag on exit."""
    check_model(model)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, was_training in flags:
            m.training = was_training


# ---------------------------------------------------------------------------------------------
# pure closures of the flat parameter vector
# ---------------------------------------------------------------------------------------------
class FlatModel:
    """``model`` as pure functions of a flat parameter vector ``theta`` (length ``spec.num_params``).

    Use inside :func:`eval_mode`. ``theta0`` is the model's current parameter vector.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        check_model(model)
        check_loss_fn(loss_fn)
        self.model = model
        self.loss_fn = loss_fn
        self.spec = param_spec(model)
        self.consts = _constants(model, self.spec)
        self.theta0 = flat_params(model, self.spec)

    @property
    def num_params(self) -> int:
        return self.spec.num_params

    def output(self, theta: Tensor, x: Tensor) -> Tensor:
        params = self.spec.unflatten(theta)
        params.update(self.consts)
        return functional_call(self.model, params, (x,))

    def loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Mean loss on the batch (x, y), as ``loss_fn`` defines it; must be a scalar."""
        value = self.loss_fn(self.output(theta, x), y)
        if value.ndim != 0:
            raise ValueError(
                f"loss_fn must return a scalar (mean over the batch), got shape {tuple(value.shape)}"
            )
        return value

    def example_loss(self, theta: Tensor, xi: Tensor, yi: Tensor) -> Tensor:
        """Loss of one example (xi, yi) without its batch dimension (for vmap over examples)."""
        return self.loss(theta, xi.unsqueeze(0), yi.unsqueeze(0))

    def gradient(self, x: Tensor, y: Tensor, theta: Tensor | None = None) -> Tensor:
        """Flat gradient of the mean batch loss at ``theta`` (default: the model's parameters)."""
        theta = self.theta0 if theta is None else theta
        return grad(self.loss)(theta, x, y)

    def per_example_gradients(self, x: Tensor, y: Tensor, theta: Tensor | None = None) -> Tensor:
        """(N, P) per-example gradients by ``vmap(grad)`` over the examples of (x, y)."""
        theta = self.theta0 if theta is None else theta
        return torch.func.vmap(grad(self.example_loss), in_dims=(None, 0, 0))(theta, x, y)

    def hvp(self, x: Tensor, y: Tensor, *, mode: str = "auto") -> Callable[[Tensor], Tensor]:
        """v -> H v with H the Hessian of the mean loss on (x, y) at ``theta0``.

        ``mode="forward"``: forward-over-reverse (``jvp`` of ``grad``), the cheapest;
        ``mode="reverse"``: reverse-over-reverse (``vjp`` of ``grad``, valid since H is symmetric),
        for losses or layers whose backward lacks a forward-mode AD rule;
        ``mode="auto"``: forward if one trial product succeeds, else reverse. (In torch 2.x,
        ``F.mse_loss`` with reduction="mean" fails under forward-over-reverse with "ZeroTensors are
        immutable", pytorch/pytorch#123996.) Products run with the "math" attention kernel, since the
        fused scaled-dot-product-attention kernels have no second derivative.
        The returned function also accepts a batch of vectors under ``torch.func.vmap``.
        """
        if mode not in HVP_MODES:
            raise ValueError(f"hvp_mode must be one of {HVP_MODES}, got {mode!r}")
        theta = self.theta0

        def g(t: Tensor) -> Tensor:
            return grad(self.loss)(t, x, y)

        # The fused attention kernels (flash / memory-efficient) have no second derivative; the
        # "math" kernel computes the same attention with differentiable primitives.
        def forward(v: Tensor) -> Tensor:
            with sdpa_kernel([SDPBackend.MATH]):
                return jvp(g, (theta,), (v,))[1]

        def reverse(v: Tensor) -> Tensor:
            with sdpa_kernel([SDPBackend.MATH]):
                return vjp(g, theta)[1](v)[0]

        if mode == "forward":
            return forward
        if mode == "reverse":
            return reverse
        try:
            forward(torch.ones_like(theta))
        except (RuntimeError, NotImplementedError):
            return reverse
        return forward


HVP_MODES = ("auto", "forward", "reverse")


def batched(fn: Callable[[Tensor], Tensor], vectors: Tensor, chunk_size: int | None) -> Tensor:
    """Apply ``fn`` (one vector -> one vector) to every row of ``vectors`` with vmap, in chunks."""
    return torch.func.vmap(fn, chunk_size=chunk_size)(vectors)


def example_chunks(n: int, chunk_size: int | None) -> Iterator[slice]:
    """Slices covering range(n) in pieces of at most ``chunk_size`` (one piece when None)."""
    step = n if chunk_size is None else chunk_size
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def to_float(t: Tensor | float) -> float:
    return float(t.item()) if isinstance(t, Tensor) else float(t)


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator: probes are drawn on the CPU and moved, so results do not depend on the device."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def rademacher(shape: tuple[int, ...], gen: torch.Generator, *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Entries +-1 with probability 1/2 each (drawn on the CPU from ``gen``)."""
    bits = torch.randint(0, 2, shape, generator=gen, dtype=torch.int64)
    return (2 * bits - 1).to(dtype=dtype, device=device)
