"""Fully connected models: a single linear layer, and Park et al.'s (2019) critical ReLU networks.

``fc``: ``depth`` hidden ReLU layers of ``width`` units and a linear output layer (Park et al. 2019,
"Details and Implications"; their Table 1 uses depth 1-3, widths 16-2048), at critical initialization
``sigma_w = sqrt(2)``, ``sigma_b = 1e-4`` (He et al. 2015 / Schoenholz et al. 2017), in one of two
parameterizations (the output layer too):

- ``"standard"`` (eq. 7): ``z = W y + b``, ``W ~ N(0, sigma_w^2 / fan_in)``, ``b ~ N(0, sigma_b^2)``;
- ``"ntk"`` (eq. 8): ``z = W y / sqrt(fan_in) + b``, ``W ~ N(0, sigma_w^2)``, ``b ~ N(0, sigma_b^2)``.

We follow Park et al.'s eq. (8) rather than Jacot et al.'s ``sigma_w W y / sqrt(fan_in)`` with
``W ~ N(0, 1)``: the functions at initialization are identical, but Park et al.'s learning rates (10.0
for NTK networks) are stated for their form. With ReLU and ``sigma_w^2 = 2`` the mean squared
pre-activation is preserved layer to layer: E[z_out^2] = 2 |x|^2 / D + (depth + 1) sigma_b^2 exactly
(in expectation over the initialization, at any width).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nnbench.models.layers import NTKLinear

__all__ = ["PARAMETERIZATIONS", "fc", "linear"]

PARAMETERIZATIONS = ("standard", "ntk")


def _standard_linear(fan_in: int, fan_out: int, sigma_w: float, sigma_b: float) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    with torch.no_grad():
        layer.weight.normal_(0.0, sigma_w / math.sqrt(fan_in))
        layer.bias.normal_(0.0, sigma_b)
    return layer


def fc(input_shape: tuple[int, ...], num_outputs: int, *, depth: int = 2, width: int = 512,
       parameterization: str = "standard", sigma_w: float = math.sqrt(2.0),
       sigma_b: float = 1e-4) -> nn.Sequential:
    """Park et al. (2019) fully connected ReLU network; input flattened, output logits (N, num_outputs).

    Args:
        input_shape: per-example shape (flattened to D = prod(input_shape)).
        num_outputs: output units (classes).
        depth: L, number of hidden layers (>= 0; 0 gives a linear model).
        width: N_l, units per hidden layer.
        parameterization: ``"standard"`` (eq. 7) or ``"ntk"`` (eq. 8).
        sigma_w, sigma_b: initialization scales (critical: sqrt(2) and 1e-4).
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {list(PARAMETERIZATIONS)}, "
                         f"got {parameterization!r}")
    for name, value in (("sigma_w", sigma_w), ("sigma_b", sigma_b)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    make = NTKLinear if parameterization == "ntk" else _standard_linear
    sizes = [math.prod(input_shape)] + [width] * depth + [num_outputs]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(make(fan_in, fan_out, float(sigma_w), float(sigma_b)))
        if i < depth:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def linear(input_shape: tuple[int, ...], num_outputs: int, *, bias: bool = True) -> nn.Sequential:
    """A single ``nn.Linear`` on the flattened input (PyTorch's default initialization); for tiny tests."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_outputs, bias=bool(bias)))
