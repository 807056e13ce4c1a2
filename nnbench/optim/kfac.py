"""K-FAC: Kronecker-factored approximate natural gradient for nn.Linear and nn.Conv2d layers.

For a layer with (homogeneous) inputs a (a 1 appended when the layer has a bias) and pre-activation
outputs s = W a, the weight gradient of one example is g a^T with g = dl/ds, and K-FAC approximates the
layer's Fisher block by a Kronecker product (Martens & Grosse 2015, eq. 1-3; Zhang et al. 2019,
appendix A, eq. 11-12):

    F  ~=  A (x) G,    A = E[a a^T],    G = E[g g^T],
    F^-1 vec(V) = vec(G^-1 V A^-1)          (V = the layer's gradient, shape (d_out, d_in [+ 1])).

Convolutions (Grosse & Martens 2016, "KFC"; Zhang et al. appendix A, eq. 13) use the spatial
homogeneity / spatially uncorrelated derivatives approximations: a_t are the unfolded input patches at
each output location t in T, g_t the output gradients there, and

    A = E_n[ sum_t a_t a_t^T ],    G = E_n[ (1/|T|) sum_t g_t g_t^T ].

nn.Linear applied to inputs with extra leading dimensions (N, T, d) (sequences) is treated the same way,
with the positions as T; for the usual (N, d) inputs |T| = 1 and A, G are plain batch means.

Curvature: the **empirical Fisher**. The hooks see the gradients of the loss actually being minimised
(the trial loop's ``loss.backward()``), so G is built from those. The "true" Fisher would need an
extra backward pass per covariance update with labels sampled from the model's predictive
distribution, which needs to know the loss (softmax cross-entropy vs. Gaussian) and doubles the cost
of a covariance step; the empirical Fisher works unchanged for every loss of the workloads (cross
entropy, language-model cross entropy, MSE). It is a worse curvature model far from a minimum
(Kunstner et al. 2019); damping and KL clipping below keep steps bounded.

Batch-size scaling: the trial loss is the MEAN over the batch, so the gradient reaching a layer's
output is (1/N) dl_n/ds_n. The hook multiplies it by N so that G is the second moment of the
per-example output gradients, independent of the batch size (for a loss that is also averaged over
sequence positions, the "example" is the sequence: l_n is its mean token loss).

Statistics are captured by a forward hook on each layer (inputs; the covariance of the unfolded
patches is formed at once so no activation is kept alive) and a gradient hook on the layer's output
tensor. A tensor hook is used instead of ``register_full_backward_hook`` because the latter makes
the module's output a view that an in-place op following it (``nn.ReLU(inplace=True)``) may not
modify. Statistics are taken only when the module is in training mode, grad mode is enabled, the
tensors are not torch.func (vmap / grad) wrappers, and the coming step is a covariance-update step,
so evaluation passes and measurements do not pollute them. All forward/backward passes between two
``step()`` calls are averaged (weighted by batch size), so gradient accumulation and a module applied
twice in one forward are handled.

Per step k (k = 0, 1, ...):
  * if k % cov_update_every == 0: A <- eps A + (1 - eps) A_batch with eps = min(1 - 1/c, cov_ema_decay)
    at the c-th update (Martens & Grosse section 5), so the first update equals the batch statistics
    and the early estimates are plain running means;
  * if k % inv_update_every == 0: inverses of the factored-Tikhonov damped factors (Martens & Grosse
    section 6.3), (A + sqrt(damping) pi I)^-1 and (G + sqrt(damping) / pi I)^-1 with
    pi = sqrt((tr(A) / dim A) / (tr(G) / dim G)), via Cholesky;
  * U = G^-1 V A^-1 for every K-FAC layer; KL clipping (Ba et al. 2017, as in common K-FAC codes)
    nu = min(1, sqrt(kl_clip / (lr^2 sum_layers <U, V>))), U <- nu U;
  * every parameter: d = U (K-FAC layers) or its plain gradient (all other parameters: norm-layer
    scales, embeddings, grouped convolutions, ...), d <- d + weight_decay p (added after
    preconditioning, as in the kfac-pytorch code of Zhang et al.'s group), heavy-ball momentum
    buf <- momentum buf + d, p <- p - lr buf. With momentum = 0 this is plain (preconditioned) SGD.

References: J. Martens and R. Grosse, "Optimizing neural networks with Kronecker-factored approximate
curvature", ICML 2015. R. Grosse and J. Martens, "A Kronecker-factored approximate Fisher matrix for
convolution layers", ICML 2016. J. Ba, R. Grosse, J. Martens, "Distributed second-order optimization
using Kronecker-factored approximations", ICLR 2017. G. Zhang et al., "Which algorithmic choices
matter at which batch sizes?", NeurIPS 2019, appendix A.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnbench.optim import _validate as check

__all__ = ["KFAC", "LayerInverses"]


def _is_functorch_wrapped(tensor: Tensor) -> bool:
    """True for tensors living inside a torch.func transform (they must not escape into our state)."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(tensor))


def _inert_hook(module: nn.Module, args: tuple, output) -> None:
    """What a copy of the model gets in place of the statistics hook."""


class _CaptureHook:
    """The forward hook K-FAC registers. A deep copy or pickle of the model (weight averaging, a
    checkpoint) gets `_inert_hook` instead: the copy must neither feed this optimizer's statistics
    nor drag a copy of the optimizer along."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, module: nn.Module, args: tuple, output) -> None:
        self.fn(module, args, output)

    def __deepcopy__(self, memo):
        return _inert_hook

    def __reduce__(self):
        return (_make_inert_hook, ())


@dataclass(frozen=True)
class LayerInverses:
    """One K-FAC layer's damped inverses (A + pi sqrt(damping) I)^-1 and (G + sqrt(damping) / pi I)^-1."""

    name: str
    module: nn.Module
    has_bias: bool
    a_inv: Tensor
    g_inv: Tensor


def _make_inert_hook():
    return _inert_hook


@dataclass
class _Layer:
    """A preconditioned module and the statistics gathered since the last step (sums over calls)."""

    name: str
    module: nn.Module
    has_bias: bool
    a_sum: Tensor | None = None  # sum over calls of N * A_call
    g_sum: Tensor | None = None  # sum over calls of N * G_call
    count: int = 0  # sum over calls of N (calls whose backward has run)


def _input_covariance(module: nn.Module, x: Tensor, has_bias: bool) -> tuple[Tensor, int]:
    """A_call = (1/N) sum_n sum_t a_nt a_nt^T for one forward call, and N.

    Linear: x (N, ..., d_in); Conv2d: x (N, C, H, W) unfolded into patches (N, C kh kw, |T|).
    """
    if isinstance(module, nn.Conv2d):
        if x.dim() == 3:  # unbatched (C, H, W)
            x = x.unsqueeze(0)
        batch = x.shape[0]
        pad = module._reversed_padding_repeated_twice
        if any(pad):
            mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
            x = F.pad(x, pad, mode=mode)
        patches = F.unfold(x, module.kernel_size, dilation=module.dilation, stride=module.stride)
        a = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (N |T|, C kh kw)
    else:
        batch = x.shape[0] if x.dim() > 1 else 1
        a = x.reshape(-1, x.shape[-1])  # (N |T|, d_in)
    a = a.to(module.weight.dtype)
    if has_bias:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
    return a.T @ a / batch, batch


def _output_grad_covariance(module: nn.Module, grad: Tensor, batch: int) -> Tensor:
    """G_call = (1/(N |T|)) sum_n sum_t g_nt g_nt^T with g = N * grad (per-example gradients)."""
    if isinstance(module, nn.Conv2d):
        if grad.dim() == 3:
            grad = grad.unsqueeze(0)
        g = grad.permute(0, 2, 3, 1).reshape(-1, grad.shape[1])  # (N |T|, C_out)
    else:
        g = grad.reshape(-1, grad.shape[-1])  # (N |T|, d_out)
    g = g.to(module.weight.dtype) * batch
    return g.T @ g / g.shape[0]


def _damped_inverse(factor: Tensor, damping: Tensor) -> Tensor:
    """(factor + damping I)^-1 for a symmetric PSD factor and damping > 0.

    Cholesky (about 5x faster than an eigendecomposition at dimension 2304 on a CPU); where round-off
    makes the damped factor indefinite (damping tiny against the factor's scale), the
    eigendecomposition with the negative round-off eigenvalues clipped to 0.
    """
    if not bool(torch.isfinite(factor).all()):
        # A diverged run: hand NaNs on so the trial sees a non-finite loss, instead of raising.
        return torch.full_like(factor, math.nan)
    symmetric = 0.5 * (factor + factor.T)
    eye = torch.eye(factor.shape[0], dtype=factor.dtype, device=factor.device)
    chol, info = torch.linalg.cholesky_ex(symmetric + damping * eye)
    if int(info) == 0:
        return torch.cholesky_inverse(chol)
    evals, evecs = torch.linalg.eigh(symmetric)
    return (evecs / (evals.clamp_min(0.0) + damping)) @ evecs.T


class KFAC(torch.optim.Optimizer):
    """K-FAC (Martens & Grosse 2015; conv: Grosse & Martens 2016), see the module docstring.

    Every trainable parameter of `model` is optimised: weights (and biases) of nn.Linear and
    nn.Conv2d (groups = 1) layers get the Kronecker-factored natural-gradient direction, all other
    parameters their plain gradient; both then go through weight decay, heavy-ball momentum and lr.
    Hooks are registered on `model` here; call ``remove_hooks()`` to detach the optimizer.

    Args:
        model: the network; its nn.Linear / nn.Conv2d modules are preconditioned.
        lr: learning rate (> 0). Read from ``param_groups[0]["lr"]`` at every step (schedules).
        momentum: heavy-ball coefficient in [0, 1) (v <- momentum v + d, p <- p - lr v).
        damping: Tikhonov damping lambda > 0 of the Fisher blocks, split over the factors with pi.
            Read when the inverses are recomputed.
        kl_clip: trust-region bound on lr^2 <U, V> (> 0), or None for no clipping.
        cov_ema_decay: EMA decay in [0, 1) of the factors (cap of min(1 - 1/c, decay)).
        cov_update_every: update the factors every this many steps (>= 1).
        inv_update_every: recompute the damped inverses every this many steps (>= 1).
        weight_decay: L2 coefficient (>= 0), added to the preconditioned direction.

    Raises:
        ValueError: a hyperparameter out of range (the message names it), or `model` not an
            nn.Module with trainable parameters.

    Limitations: the statistics assume the loss is a mean over the batch's first dimension (a loss
    rescaled by a constant rescales G, i.e. the effective damping). A weight tied between an
    nn.Linear and another module (a Transformer's output layer sharing the embedding matrix) gets
    its whole gradient preconditioned with the Linear's factors only; Zhang et al. appendix A.1
    combine both uses. A Linear that is not called through its forward (nn.MultiheadAttention's
    out_proj) never gets statistics and keeps the plain gradient.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float,
        momentum: float = 0.0,
        damping: float = 1e-3,
        kl_clip: float | None = 1e-3,
        cov_ema_decay: float = 0.95,
        cov_update_every: int = 1,
        inv_update_every: int = 10,
        weight_decay: float = 0.0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model has no trainable parameters (requires_grad=True)")
        defaults = dict(
            lr=check.positive("lr", lr),
            momentum=check.unit_interval("momentum", momentum),
            damping=check.positive("damping", damping),
            kl_clip=None if kl_clip is None else check.positive("kl_clip", kl_clip),
            weight_decay=check.non_negative("weight_decay", weight_decay),
            kfac_step=0,  # steps taken; in the group so that state_dict() saves it
        )
        self.cov_ema_decay = check.unit_interval("cov_ema_decay", cov_ema_decay)
        self.cov_update_every = check.positive_int("cov_update_every", cov_update_every)
        self.inv_update_every = check.positive_int("inv_update_every", inv_update_every)
        super().__init__(params, defaults)

        self._layers: list[_Layer] = []
        self._hooks = []
        for name, module in model.named_modules():
            if not _is_preconditionable(module):
                continue
            has_bias = module.bias is not None and module.bias.requires_grad
            layer = _Layer(name=name, module=module, has_bias=has_bias)
            self._layers.append(layer)
            hook = _CaptureHook(functools.partial(self._capture, layer))
            self._hooks.append(module.register_forward_hook(hook))

    @property
    def preconditioned_modules(self) -> tuple[str, ...]:
        """Names (as in ``model.named_modules()``) of the layers K-FAC preconditions."""
        return tuple(layer.name for layer in self._layers)

    def damped_inverses(self) -> tuple[LayerInverses, ...]:
        """The current damped factor inverses of every layer that has them (read-only use: the
        effective-power instrument builds K-FAC's preconditioner from these)."""
        out = []
        for layer in self._layers:
            state = self.state[layer.module.weight]
            if "A_inv" in state:
                out.append(LayerInverses(layer.name, layer.module, layer.has_bias, state["A_inv"], state["G_inv"]))
        return tuple(out)

    def remove_hooks(self) -> None:
        """Detach the statistics hooks from the model (the optimizer then only uses old factors)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    # ---- statistics capture -------------------------------------------------------------------
    def _capture(self, layer: _Layer, module: nn.Module, args: tuple, output: Tensor) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        if self.param_groups[0]["kfac_step"] % self.cov_update_every != 0:
            return
        x = args[0]
        if not isinstance(output, Tensor) or not output.requires_grad:
            return
        if _is_functorch_wrapped(x) or _is_functorch_wrapped(output):
            return
        with torch.no_grad():
            a_cov, batch = _input_covariance(module, x.detach(), layer.has_bias)
        output.register_hook(functools.partial(self._capture_grad, layer, a_cov, batch))

    def _capture_grad(self, layer: _Layer, a_cov: Tensor, batch: int, grad: Tensor) -> None:
        # Runs during backward; A joins the sums only with its G, so forwards without backward
        # (e.g. a measurement in training mode) leave no half-pair behind.
        with torch.no_grad():
            g_cov = _output_grad_covariance(layer.module, grad.detach(), batch)
            if layer.count == 0:
                layer.a_sum, layer.g_sum = batch * a_cov, batch * g_cov
            else:
                layer.a_sum += batch * a_cov
                layer.g_sum += batch * g_cov
            layer.count += batch

    # ---- the step ----------------------------------------------------------------------------
    def _update_factors(self) -> None:
        for layer in self._layers:
            if layer.count == 0:
                continue  # not used in this step's forward/backward: keep the old factors
            state = self.state[layer.module.weight]
            a_batch, g_batch = layer.a_sum / layer.count, layer.g_sum / layer.count
            updates = state.get("num_cov_updates", 0) + 1
            decay = min(1.0 - 1.0 / updates, self.cov_ema_decay)
            if updates == 1:
                state["A"], state["G"] = a_batch, g_batch
            else:
                state["A"].mul_(decay).add_(a_batch, alpha=1.0 - decay)
                state["G"].mul_(decay).add_(g_batch, alpha=1.0 - decay)
            state["num_cov_updates"] = updates

    def _update_inverses(self, damping: float, *, only_missing: bool) -> None:
        for layer in self._layers:
            state = self.state[layer.module.weight]
            if "A" not in state or (only_missing and "A_inv" in state):
                continue
            a, g = state["A"], state["G"]
            mean_eig_a = torch.diagonal(a).sum() / a.shape[0]
            mean_eig_g = torch.diagonal(g).sum() / g.shape[0]
            # pi balances the damping between the factors; 1 where a trace vanishes (zero grads).
            usable = (mean_eig_a > 0) & (mean_eig_g > 0)
            pi = torch.where(usable, torch.sqrt(mean_eig_a / mean_eig_g), torch.ones_like(mean_eig_a))
            sqrt_damping = math.sqrt(damping)
            state["A_inv"] = _damped_inverse(a, sqrt_damping * pi)
            state["G_inv"] = _damped_inverse(g, sqrt_damping / pi)

    def _preconditioned_directions(self, lr: float, kl_clip: float | None) -> dict[Tensor, Tensor]:
        """{param: nu U} for the weights and biases of the K-FAC layers that have factors."""
        directions: dict[Tensor, Tensor] = {}
        inner_products = []
        for layer in self._layers:
            weight, bias = layer.module.weight, layer.module.bias
            state = self.state[weight]
            if weight.grad is None or "A_inv" not in state:
                continue  # no statistics yet: the plain gradient is used for this layer
            v = weight.grad.reshape(weight.shape[0], -1)  # (d_out, d_in) / (C_out, C_in kh kw)
            if layer.has_bias:
                bias_grad = bias.grad if bias.grad is not None else torch.zeros_like(bias)
                v = torch.cat([v, bias_grad.unsqueeze(1)], dim=1)
            u = state["G_inv"] @ v @ state["A_inv"]
            inner_products.append((u * v).sum())
            if layer.has_bias:
                directions[weight] = u[:, :-1].reshape(weight.shape)
                if bias.grad is not None:
                    directions[bias] = u[:, -1].clone()
            else:
                directions[weight] = u.reshape(weight.shape)
        if kl_clip is not None and inner_products:
            # nu = min(1, sqrt(kl_clip / (lr^2 sum <U, V>))) without a host sync; a zero sum gives 1.
            quadratic = (lr**2) * torch.stack(inner_products).sum().clamp_min(0.0)
            nu = torch.sqrt(kl_clip / quadratic).clamp(max=1.0)
            for direction in directions.values():
                direction.mul_(nu)
        return directions

    @torch.no_grad()
    def step(self, closure=None):
        """One K-FAC step (see the module docstring); `closure` re-evaluates the loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        step = group["kfac_step"]
        lr = check.non_negative("lr", group["lr"])  # 0 is legal at the end of a linear decay
        momentum, weight_decay = group["momentum"], group["weight_decay"]

        if step % self.cov_update_every == 0:
            self._update_factors()
        self._update_inverses(group["damping"], only_missing=step % self.inv_update_every != 0)
        directions = self._preconditioned_directions(lr, group["kl_clip"])

        for param in group["params"]:
            if param.grad is None:
                continue
            direction = directions.get(param, param.grad)
            if weight_decay != 0.0:
                direction = direction.add(param, alpha=weight_decay)
            if momentum != 0.0:
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = direction.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(direction)
                direction = state["momentum_buffer"]
            param.add_(direction, alpha=-lr)

        for layer in self._layers:  # statistics of this step are consumed (or stale): drop them
            layer.a_sum = layer.g_sum = None
            layer.count = 0
        group["kfac_step"] = step + 1
        return loss


def _is_preconditionable(module: nn.Module) -> bool:
    """nn.Linear, and nn.Conv2d with groups = 1 (grouped/depthwise convs have no single A, G)."""
    if isinstance(module, nn.Conv2d):
        ok = module.groups == 1
    else:
        ok = isinstance(module, nn.Linear)
    return ok and module.weight.requires_grad
