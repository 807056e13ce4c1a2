"""The model registry: ``MODELS`` maps a name to its builder, ``build_model`` validates and builds.

Every builder takes ``(input_shape, num_outputs, **kwargs)`` and returns an ``nn.Module`` whose
``forward(x)`` gives logits (N, num_outputs), or (N, T, vocab) for language models.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
from torch import nn

from nnbench.models.cnn import simple_cnn, vgg11
from nnbench.models.mlp import fc, linear
from nnbench.models.resnet import resnet8, resnet32
from nnbench.models.transformer import transformer

__all__ = ["MODELS", "build_model", "model_kwargs"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "linear": linear,
    "fc": fc,
    "simple_cnn": simple_cnn,
    "resnet8": resnet8,
    "resnet32": resnet32,
    "vgg11": vgg11,
    "transformer": transformer,
}


def model_kwargs(name: str) -> tuple[str, ...]:
    """The keyword options model ``name`` accepts besides ``input_shape`` and ``num_outputs``."""
    if name not in MODELS:
        raise ValueError(f"unknown model name={name!r}; known: {sorted(MODELS)}")
    params = inspect.signature(MODELS[name]).parameters
    return tuple(p for p in params if p not in ("input_shape", "num_outputs"))


def build_model(name: str, input_shape: tuple[int, ...], num_outputs: int, **kwargs) -> nn.Module:
    """Build model ``name`` for examples of ``input_shape`` and ``num_outputs`` outputs.

    Args:
        name: a key of ``MODELS``.
        input_shape: per-example shape, e.g. ``DataSource.input_shape``: (C, H, W) images, (T,) tokens,
            (D,) vectors.
        num_outputs: classes, vocabulary size, or regression outputs (``DataSource.num_outputs``).
        **kwargs: the builder's options (``model_kwargs(name)`` lists them).
    Raises:
        ValueError: unknown name or option (the message lists the known ones), or a bad shape/value.
    """
    allowed = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; it accepts {list(allowed)}")
    try:
        shape = tuple(input_shape)
    except TypeError as err:
        raise ValueError(f"input_shape must be a tuple of positive integers, got {input_shape!r}") from err
    if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive integers, got {input_shape!r}")
    if isinstance(num_outputs, bool) or not isinstance(num_outputs, (int, np.integer)) or num_outputs < 1:
        raise ValueError(f"num_outputs must be a positive integer, got {num_outputs!r}")
    return MODELS[name](tuple(int(s) for s in shape), int(num_outputs), **kwargs)
