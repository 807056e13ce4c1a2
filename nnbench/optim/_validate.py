"""Hyperparameter checks shared by the optimizer and schedule builders.

Each check takes the argument's name so that the `ValueError` says which argument is wrong; each
returns the value converted to a plain Python ``float``/``int`` (numpy scalars from a search come in
as ``numpy.float64``).
"""

from __future__ import annotations

import math
import numbers


def real(name: str, value) -> float:
    """`value` as a finite float; bools, non-numbers and NaN/inf raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def positive(name: str, value) -> float:
    """A finite float > 0 (learning rates, eps, damping)."""
    value = real(name, value)
    if value <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def non_negative(name: str, value) -> float:
    """A finite float >= 0 (weight decay)."""
    value = real(name, value)
    if value < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def unit_interval(name: str, value, *, upper_inclusive: bool = False) -> float:
    """A float in [0, 1) (momentum, Adam betas, EMA decays), or [0, 1] if `upper_inclusive`."""
    value = real(name, value)
    too_high = value > 1.0 if upper_inclusive else value >= 1.0
    if value < 0.0 or too_high:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return value


def positive_int(name: str, value) -> int:
    """An integer >= 1 (update intervals, step counts); integral floats such as 10.0 are accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        value = int(value)
    else:
        as_float = float(value)
        if not math.isfinite(as_float) or as_float != math.floor(as_float):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        value = int(as_float)
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
    return value
