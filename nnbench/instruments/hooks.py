"""Adapter from the instruments to the trial loop's hook form ``f(model, loss_fn, x, y) -> dict[str, float]``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ._functional import LossFn

TrialInstrument = Callable[..., dict[str, float]]


def _default_prefix(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return {"WalkTracker": "walk"}.get(name, name) + "."


def as_trial_instrument(fn: Callable[..., Any], *, prefix: str | None = None, **kwargs: Any) -> TrialInstrument:
    """Wrap an instrument so that the trial loop can call it every k steps and store floats.

    The returned callable accepts ``(model, loss_fn, x, y)`` or ``(model, loss_fn, (x, y))``, calls
    ``fn(model, loss_fn, x, y, **kwargs)`` and returns its result as ``{prefix + name: float}``
    (``result.as_measurements()`` for the result dataclasses; a dict is taken as is).

    Args:
        fn: an instrument of this package (e.g. ``gradient_noise_scale``, ``hutchinson_trace``,
            a ``WalkTracker`` instance) or any callable with that signature.
        prefix: prepended to every measurement name; default ``"<fn name>."`` (``"walk."`` for a
            WalkTracker). Pass ``""`` for bare names.
        **kwargs: keyword arguments bound for every call (e.g. ``k=3``, ``num_probes=8``).

    Example:
        >>> from nnbench.instruments import as_trial_instrument, hutchinson_trace
        >>> inst = as_trial_instrument(hutchinson_trace, num_probes=4)
        >>> inst.__name__
        'hutchinson_trace'
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable as fn(model, loss_fn, x, y, **kwargs), got {fn!r}")
    if prefix is None:
        prefix = _default_prefix(fn)
    elif not isinstance(prefix, str):
        raise ValueError(f"prefix must be a string, got {prefix!r}")

    def instrument(model: nn.Module, loss_fn: LossFn, *batch: Any) -> dict[str, float]:
        if len(batch) == 1 and isinstance(batch[0], (tuple, list)) and len(batch[0]) == 2:
            x, y = batch[0]
        elif len(batch) == 2:
            x, y = batch
        else:
            raise ValueError("an instrument is called as f(model, loss_fn, x, y) or f(model, loss_fn, (x, y))")
        result = fn(model, loss_fn, x, y, **kwargs)
        values = result.as_measurements() if hasattr(result, "as_measurements") else result
        if not isinstance(values, dict):
            raise ValueError(f"{instrument.__name__} returned {type(result).__name__}, not measurements")
        return {f"{prefix}{key}": float(value) for key, value in values.items()}

    instrument.__name__ = prefix.rstrip(".") or _default_prefix(fn).rstrip(".")
    instrument.__qualname__ = instrument.__name__
    return instrument
