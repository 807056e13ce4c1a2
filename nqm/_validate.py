"""Input checks shared by the public functions: every bad value raises a ValueError that names the
argument (never a traceback from inside numba, never a silently wrong number)."""

from __future__ import annotations

import math
import numbers

import numpy as np

TUNE = "tune"


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def real(name: str, value, *, low=None, high=None, low_open=False, high_open=False,
         allow_inf=False) -> float:
    """A real number in the given range, as a float."""
    if not _is_real(value):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def lr(value) -> float:
    return real("lr", value, low=0.0, low_open=True)


def batch_size(value) -> float:
    """A batch size B >= 1 (an integer in practice; any real >= 1 is accepted by the maths, and
    math.inf means noise-free full-batch gradients)."""
    return real("batch_size", value, low=1.0, allow_inf=True)


def momentum(value) -> float:
    return real("momentum", value, low=0.0, high=1.0, high_open=True)


def ema(value) -> float:
    """Decay gamma of an exponential moving average of the iterates, in [0, 1)."""
    return real("ema", value, low=0.0, high=1.0, high_open=True)


def power(value) -> float:
    return real("power", value, low=0.0, high=1.0)


def target(value) -> float:
    return real("target", value, low=0.0, low_open=True)


def steps(value, name: str = "steps") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def tunable(name: str, value, check):
    """Either the string 'tune' or a value accepted by ``check``."""
    if isinstance(value, str):
        if value != TUNE:
            raise ValueError(f"{name} must be a number or {TUNE!r}, got {value!r}")
        return TUNE
    return check(value)


def vector(name: str, value, *, positive: bool, size: int | None = None) -> np.ndarray:
    """A finite 1-D float array (> 0 if positive else >= 0); a scalar is broadcast to ``size``."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers") from None
    if arr.ndim == 0 and size is not None:
        arr = np.full(size, float(arr))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if size is not None and arr.size != size:
        raise ValueError(f"{name} must have {size} entries, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0")
    if not positive and np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0")
    return arr


def batch_sizes(value) -> np.ndarray:
    """Batch sizes >= 1 (math.inf allowed: noise-free)."""
    try:
        raw = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("batch_sizes must be an array of real numbers") from None
    if raw.ndim == 1 and np.any(raw < 1):   # one message for 0, 0.5 and -3
        raise ValueError(f"batch_sizes must all be >= 1, got {raw[raw < 1][0]:g}")
    finite = np.where(np.isposinf(raw), 1.0, raw) if raw.ndim == 1 else raw
    vector("batch_sizes", finite, positive=True)
    return raw


def choice(name: str, value, options) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value
