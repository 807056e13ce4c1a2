"""Quasi-random hyperparameter search with a stable trial index.

A study tunes each hyperparameter over a range on one of three scales (Shallue et al. 2018,
section 3 and appendix; Zhang et al. 2019, section 4 and appendix E.4):

* ``"linear"``: uniform in ``[low, high]``;
* ``"log"``: uniform in ``log(value)`` (learning rates, Adam's epsilon, K-FAC damping);
* ``"reverse_log"``: uniform in ``log(1 - value)``, for parameters close to one
  (momentum, Adam's beta1 / beta2, EMA decays), so that 0.9, 0.99 and 0.999 are equally likely.

Points come from a scrambled, seeded Halton sequence (scipy.stats.qmc; quasi-random search as in
Bousquet et al. 2017). Trial ``i`` always maps to the same point whatever the number of trials
requested, so a study extended from 8 to 16 trials keeps its first 8 and a resumed study re-creates
exactly the points it had.

Every scale maps the unit interval monotonically onto ``[low, high]`` (``u = 0`` is ``low``,
``u = 1`` is ``high``), which is also how :func:`edge_report` measures closeness to a boundary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import qmc

__all__ = ["SCALES", "Param", "SearchSpace", "QuasiRandomSearch", "edge_report", "focus_space"]

SCALES = ("linear", "log", "reverse_log")


def _finite(name: str, what: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Param {name!r}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"Param {name!r}: {what} must be finite, got {value!r}")
    return value


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: ``name`` in ``[low, high]`` on ``scale``.

    ``log`` needs ``0 < low``; ``reverse_log`` needs ``high < 1`` (it is uniform in ``log(1 - value)``).
    """

    name: str
    low: float
    high: float
    scale: str = "linear"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Param name must be a non-empty string, got {self.name!r}")
        low = _finite(self.name, "low", self.low)
        high = _finite(self.name, "high", self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if self.scale not in SCALES:
            raise ValueError(f"Param {self.name!r}: scale must be one of {SCALES}, got {self.scale!r}")
        if not low < high:
            raise ValueError(f"Param {self.name!r}: need low < high, got low={low}, high={high}")
        if self.scale == "log" and low <= 0:
            raise ValueError(f"Param {self.name!r}: a log scale needs low > 0, got low={low}")
        if self.scale == "reverse_log" and high >= 1:
            raise ValueError(
                f"Param {self.name!r}: a reverse_log scale (uniform in log(1 - value)) needs high < 1, "
                f"got high={high}"
            )

    def from_unit(self, u: float) -> float:
        """The value at unit coordinate ``u`` in [0, 1] (0 -> low, 1 -> high)."""
        if self.scale == "linear":
            return self.low + u * (self.high - self.low)
        if self.scale == "log":
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        a, b = math.log1p(-self.low), math.log1p(-self.high)  # log(1 - low) > log(1 - high)
        return -math.expm1(a + u * (b - a))

    def to_unit(self, value: float) -> float:
        """Inverse of :meth:`from_unit`: where ``value`` sits in the scaled range (0 low, 1 high)."""
        value = float(value)
        if self.scale == "linear":
            return (value - self.low) / (self.high - self.low)
        if self.scale == "log":
            if value <= 0:
                raise ValueError(f"Param {self.name!r}: value {value} is not > 0 on a log scale")
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        if value >= 1:
            raise ValueError(f"Param {self.name!r}: value {value} is not < 1 on a reverse_log scale")
        a, b = math.log1p(-self.low), math.log1p(-self.high)
        return (math.log1p(-value) - a) / (b - a)

    def to_dict(self) -> dict:
        return {"name": self.name, "low": self.low, "high": self.high, "scale": self.scale}


@dataclass(frozen=True)
class SearchSpace:
    """Named searched parameters plus fixed values (e.g. K-FAC's momentum when it is not tuned).

    ``fixed`` values are passed to every trial unchanged; a name may not be both searched and fixed.
    """

    params: tuple[Param, ...]
    fixed: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        params = tuple(self.params)
        for p in params:
            if not isinstance(p, Param):
                raise ValueError(f"SearchSpace params must be Param objects, got {p!r}")
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise ValueError(f"SearchSpace params: duplicate names in {names}")
        fixed = {str(k): _finite(str(k), "fixed value", v) for k, v in dict(self.fixed).items()}
        both = set(names) & set(fixed)
        if both:
            raise ValueError(f"SearchSpace: {sorted(both)} both searched and fixed")
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "fixed", fixed)

    @property
    def names(self) -> tuple[str, ...]:
        """Searched names, in order, then fixed names."""
        return tuple(p.name for p in self.params) + tuple(self.fixed)

    @property
    def dim(self) -> int:
        return len(self.params)

    def from_unit(self, u) -> dict[str, float]:
        """Hyperparameters at the unit-cube point ``u`` (length ``dim``), fixed values included."""
        u = np.asarray(u, dtype=float).reshape(-1)
        if u.shape[0] != self.dim:
            raise ValueError(f"SearchSpace.from_unit: u has {u.shape[0]} coordinates, expected {self.dim}")
        point = {p.name: p.from_unit(float(x)) for p, x in zip(self.params, u, strict=True)}
        point.update(self.fixed)
        return point

    def to_dict(self) -> dict:
        return {"params": [p.to_dict() for p in self.params], "fixed": dict(self.fixed)}

    @classmethod
    def from_dict(cls, d: Mapping) -> SearchSpace:
        """Inverse of :meth:`to_dict` (the JSON stored with every study)."""
        try:
            params = tuple(Param(**p) for p in d["params"])
            return cls(params, dict(d.get("fixed", {})))
        except (KeyError, TypeError) as e:
            raise ValueError(f"search space: not a SearchSpace dict ({e}): {d!r}") from None


class QuasiRandomSearch:
    """Seeded scrambled-Halton points over a :class:`SearchSpace`, addressed by trial index.

    ``point(i)`` depends only on ``(space, seed, i)``: it is row ``i`` of the scrambled Halton
    sequence, reached with ``fast_forward`` so that no other point is needed.

    Examples:
        >>> space = SearchSpace((Param("lr", 1e-3, 1.0, "log"), Param("momentum", 0.5, 0.999, "reverse_log")))
        >>> search = QuasiRandomSearch(space, seed=0)
        >>> search.point(3) == search.points(8)[3]
        True
    """

    def __init__(self, space: SearchSpace, seed: int):
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.space = space
        self.seed = int(seed)

    def unit(self, index: int) -> np.ndarray:
        """Unit-cube coordinates of trial ``index`` (shape ``(dim,)``)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"trial index must be a non-negative integer, got {index!r}")
        if self.space.dim == 0:
            return np.zeros(0)
        sampler = qmc.Halton(self.space.dim, scramble=True, seed=self.seed)
        if index:
            sampler.fast_forward(int(index))
        return sampler.random(1)[0]

    def point(self, index: int) -> dict[str, float]:
        """Hyperparameters of trial ``index``."""
        return self.space.from_unit(self.unit(index))

    def points(self, n: int) -> list[dict[str, float]]:
        """The first ``n`` points (the same as ``[point(i) for i in range(n)]``)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if self.space.dim == 0:
            return [dict(self.space.fixed) for _ in range(n)]
        units = qmc.Halton(self.space.dim, scramble=True, seed=self.seed).random(int(n))
        return [self.space.from_unit(u) for u in units]


def edge_report(space: SearchSpace, hparams: Mapping[str, float], tol: float = 0.05) -> dict[str, str]:
    """Searched parameters of ``hparams`` within ``tol`` of a boundary, in the scaled unit range.

    Returns ``{name: "low" | "high"}`` (empty when the point is inside): a best trial at an edge means
    the search space should probably be widened (Zhang et al. 2019, section 4: "we verified after each
    experiment that the optimal metaparameter values were far from the search space boundaries").
    """
    tol = float(tol)
    if not (0 <= tol < 0.5):
        raise ValueError(f"tol must be in [0, 0.5), got {tol}")
    edges = {}
    for p in space.params:
        if p.name not in hparams:
            raise ValueError(f"edge_report: hparams lack searched parameter {p.name!r}")
        u = p.to_unit(hparams[p.name])
        if u <= tol:
            edges[p.name] = "low"
        elif u >= 1 - tol:
            edges[p.name] = "high"
    return edges


def _widened_value(p: Param, u: float) -> float:
    """``p.from_unit(u)`` for ``u`` beyond [0, 1], kept inside the parameter's natural domain: a
    reverse_log value (a momentum, a decay) and a linear one whose range starts at >= 0 stay >= 0
    (a log value is > 0 by construction)."""
    value = p.from_unit(u)
    if p.scale != "log" and p.low >= 0:
        value = max(value, 0.0)
    return value


def focus_space(
    space: SearchSpace,
    best: Sequence[Mapping[str, float]],
    *,
    margin: float = 0.15,
    widen: float = 0.5,
    tol: float = 0.05,
) -> tuple[SearchSpace, dict[str, str]]:
    """A search space focused around the best trials of a search over ``space``, widened at an edge.

    ``best``: the hyperparameters of the best trials, best first (at least one). Per searched
    parameter, in the scaled unit range of ``space`` (0 = low, 1 = high): the focused range spans the
    best trials' coordinates widened by ``margin`` on each side, intersected with [0, 1]; where the
    best trial sits within ``tol`` of an edge (:func:`edge_report`) that end is instead moved beyond
    the edge, to ``-widen`` or ``1 + widen`` (a fraction of the original scaled range), since the
    optimum may lie outside (Zhang et al. 2019, section 4; Shallue et al. 2018 widened by hand).
    Fixed values stay fixed. A pure function of its arguments: the same stored trials give the same
    space.

    Returns:
        ``(focused space, widened)``, ``widened`` as ``{name: "low" | "high"}``.
    """
    best = list(best)
    if not best:
        raise ValueError("focus_space: best must hold at least one trial's hyperparameters")
    for name, value in (("margin", margin), ("widen", widen)):
        if not (isinstance(value, (int, float)) and 0 < value <= 1):
            raise ValueError(f"focus_space: {name} must be a number in (0, 1], got {value!r}")
    edges = edge_report(space, best[0], tol)
    params, widened = [], {}
    for p in space.params:
        units = [p.to_unit(point[p.name]) for point in best]
        lo = -widen if edges.get(p.name) == "low" else max(0.0, min(units) - margin)
        hi = 1 + widen if edges.get(p.name) == "high" else min(1.0, max(units) + margin)
        # the original ends exactly where the focused range reaches them (no round-off beyond)
        low = p.low if lo == 0 else _widened_value(p, lo)
        high = p.high if hi == 1 else _widened_value(p, hi)
        focused = Param(p.name, low, high, p.scale)
        # an edge at the end of a parameter's domain (momentum 0) cannot be widened: not recorded
        if focused.low < p.low:
            widened[p.name] = "low"
        if focused.high > p.high:
            widened[p.name] = "high"
        params.append(focused)
    return SearchSpace(tuple(params), dict(space.fixed)), widened
