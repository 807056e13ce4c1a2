"""Layers the paper's models need beyond torch.nn: ghost batch norm, channel-normalized convolutions,
and the NTK-parameterized linear layer.

References:
    Hoffer, Hubara and Soudry (2017), "Train longer, generalize better" (ghost batch normalization).
    Zhang et al. (2019), appendix E.2 (ghost batch 32; channel-wise weight normalization for ResNet-32
    and VGG-11 instead of weight decay).
    Park et al. (2019), eq. (7)-(8) (standard vs NTK parameterization).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ChannelNormConv2d", "GhostBatchNorm2d", "NTKLinear"]


class GhostBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics come from ghost batches of ``ghost_batch_size`` examples.

    In training the batch (N, C, H, W) is split into consecutive chunks of ``ghost_batch_size`` (the
    last one smaller when N is not a multiple); each chunk is normalized with its own per-channel mean
    and biased variance, then scaled and shifted by the shared affine parameters. This keeps the
    training objective the same at every batch size (Zhang et al. 2019, appendix E.2). The running
    statistics used in evaluation are updated once per call with the average over chunks of the chunk
    means and of the unbiased chunk variances. With N <= ghost_batch_size, or in eval mode, this is
    exactly ``nn.BatchNorm2d``.
    """

    def __init__(self, num_features: int, ghost_batch_size: int = 32, eps: float = 1e-5,
                 momentum: float | None = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        if isinstance(ghost_batch_size, bool) or not isinstance(ghost_batch_size, int) \
                or ghost_batch_size < 2:
            # A chunk of one example has zero variance: normalization would erase the input.
            raise ValueError(f"ghost_batch_size must be an integer >= 2, got {ghost_batch_size!r}")
        self.ghost_batch_size = ghost_batch_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ghost_batch_size={self.ghost_batch_size}"

    def _chunk_norm(self, xg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # xg: (G, g, C, H, W) -> normalized (G, g, C, H, W), means (G, C), biased variances (G, C)
        mean = xg.mean(dim=(1, 3, 4), keepdim=True)
        var = xg.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
        y = (xg - mean) * torch.rsqrt(var + self.eps)
        y = y * self.weight.view(1, 1, -1, 1, 1) + self.bias.view(1, 1, -1, 1, 1)
        return y, mean.flatten(1), var.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        g = self.ghost_batch_size
        if not self.training or n <= g:
            return super().forward(x)
        full = n // g * g
        parts = [self._chunk_norm(x[:full].view(n // g, g, c, h, w))]
        if full < n:
            parts.append(self._chunk_norm(x[full:].unsqueeze(0)))
        with torch.no_grad():
            sizes = [g] * (n // g) + ([n - full] if full < n else [])
            counts = torch.tensor(sizes, dtype=x.dtype, device=x.device)[:, None] * h * w  # (G, 1)
            means = torch.cat([p[1] for p in parts])
            unbiased = torch.cat([p[2] for p in parts]) * counts / (counts - 1).clamp_min(1)
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            self.running_mean.lerp_(means.mean(0), factor)
            self.running_var.lerp_(unbiased.mean(0), factor)
        y = parts[0][0].reshape(full, c, h, w)
        if full < n:
            y = torch.cat([y, parts[1][0][0]])
        return y


class ChannelNormConv2d(nn.Conv2d):
    """A Conv2d whose filters are kept at unit Frobenius norm, one norm per output channel.

    Zhang et al. (2019), appendix E.2: "instead of using weight decay, we applied channel-wise weight
    normalization by constraining the Frobenius norm of each convolutional channel to be exactly 1".
    The constraint is a projection: in training mode, before the convolution, each output channel's
    filter is divided by its norm in place (without autograd), i.e. the optimizer's last update is
    projected back onto the unit sphere before the weight is used. The projection runs only when the
    weight changed since the last one (tracked by the tensor's version counter), so repeated forwards
    between optimizer steps leave the weight alone. The layer must be followed by a normalization
    (batch norm), which makes the network's function independent of filter scale; the projection then
    only fixes the effective learning rate. Under ``torch.func.functional_call`` (plain tensors, not
    Parameters) no projection happens.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._projected_version = -1
        with torch.no_grad():
            self.project_()

    def project_(self) -> None:
        """Divide each output channel's filter by its Frobenius norm, in place."""
        w = self.weight
        norms = w.detach().flatten(1).norm(dim=1).clamp_min(1e-12)
        w.detach().div_(norms.view(-1, *([1] * (w.dim() - 1))))
        self._projected_version = w._version

    def forward(self, x: Tensor) -> Tensor:
        if self.training and isinstance(self.weight, nn.Parameter) \
                and self.weight._version != self._projected_version:
            with torch.no_grad():
                self.project_()
        return super().forward(x)


class NTKLinear(nn.Module):
    """Park et al. (2019) eq. (8): ``z = W y / sqrt(fan_in) + b``, ``W ~ N(0, sigma_w^2)``,
    ``b ~ N(0, sigma_b^2)``.

    The 1/sqrt(fan_in) factor multiplies the input of an ordinary ``nn.Linear`` (``self.linear``), so
    hooks on that Linear (K-FAC) see the activations that the weight actually multiplies. At
    initialization the function has the same distribution as the standard parameterization (eq. 7,
    ``W ~ N(0, sigma_w^2 / fan_in)``); gradients differ (the weight gradient is 1/sqrt(fan_in) as large),
    which is what changes the optimal learning rate and batch size (Park et al., eq. 9-10).
    """

    def __init__(self, in_features: int, out_features: int, sigma_w: float, sigma_b: float) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(in_features)
        self.linear = nn.Linear(in_features, out_features)
        with torch.no_grad():
            self.linear.weight.normal_(0.0, sigma_w)
            self.linear.bias.normal_(0.0, sigma_b)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.6g}"

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x * self.scale)
