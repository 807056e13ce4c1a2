"""The noisy quadratic model itself: a (binned) spectrum of curvatures, noise and initial state.

Zhang et al. 2019, section 3 (``shared/spec/NQM.md`` section 1): the loss is 1/2 sum_i h_i theta_i^2,
one gradient query returns h theta + eps with eps ~ N(0, C), C = diag(c_i); a mini-batch of B queries
has noise covariance C / B; theta_0 ~ N(0, diag(x0sq)). Every dimension evolves independently, so
dimensions with (nearly) equal curvature can be grouped into bins simulated once and weighted by
their count. Risk = 1/2 sum_j counts_j h_j E[theta_j^2].

Binning (``binning=``):

* ``"official"``: the authors' notebook (``shared/spec/NQM_OFFICIAL.md``): grid
  ``geomspace(h_max, h_min, bins)``; each eigenvalue goes to the largest grid value not above it and
  is represented by that grid value (so every curvature is rounded DOWN); empty bins are dropped.
  Noise of a bin: h_bin times the mean of c_i / h_i (for C = H that is h_bin, as in the notebook).
  On the paper's problem the initial risk becomes 4.702495573141032 instead of
  0.5 H_10000 = 4.893803018022174 (-3.9 %).
* ``"accurate"`` (default): ``bins`` intervals equally wide in log h between h_min and h_max; a bin is
  represented by the MEAN curvature and MEAN noise of its members, and by the curvature-weighted mean
  of x0sq. This preserves sum_i h_i x0sq_i (the initial risk, exactly) and sum_i c_i (the steady-state
  risk at small rates, a sum_i c_i / (4 B)). Measured errors against the unbinned d = 10^4 problem are
  in the README table and ``tests/nqm/test_problem.py``.
* ``"none"``: one bin per distinct eigenvalue (exact, slower: 10^4 bins for the paper's problem).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nqm import _validate as V

BINNINGS = ("accurate", "official", "none")


@dataclass(frozen=True, eq=False)
class NQM:
    """A (binned) noisy quadratic model. Arrays have one entry per bin.

    Attributes:
      h: curvature (Hessian eigenvalue) of each bin, > 0.
      c: gradient-noise variance of ONE example in each bin, >= 0 (mini-batch: c / B).
      counts: number of dimensions in each bin (weights), > 0.
      x0sq: initial E[theta^2] of each bin, >= 0.
      name: a short description, shown in tables.
    """

    h: np.ndarray
    c: np.ndarray
    counts: np.ndarray
    x0sq: np.ndarray
    name: str = field(default="custom")

    def __post_init__(self):
        h = V.vector("h", self.h, positive=True)
        n = h.size
        c = V.vector("c", self.c, positive=False, size=n)
        counts = V.vector("counts", self.counts, positive=True, size=n)
        x0sq = V.vector("x0sq", self.x0sq, positive=False, size=n)
        for key, arr in (("h", h), ("c", c), ("counts", counts), ("x0sq", x0sq)):
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def paper(cls, d: int = 10_000, *, bins: int | None = 100,
              binning: str = "accurate") -> NQM:
        """The paper's default problem (section 3.6): h_i = 1/i, i = 1..d (condition number d),
        C = H, theta_0 ~ N(0, I); ``bins`` bins with the given binning (``bins=None`` or
        ``binning="none"``: unbinned)."""
        d = _dimension(d)
        h = 1.0 / np.arange(1, d + 1, dtype=np.float64)
        return cls.from_spectrum(h, bins=bins, binning=binning,
                                 name=f"paper d={d}, h_i=1/i, C=H ({_describe(bins, binning)})")

    @classmethod
    def power_law(cls, d: int = 10_000, *, a: float = 1.0, q: float = 1.0, x0sq: float = 1.0,
                  bins: int | None = 100, binning: str = "accurate") -> NQM:
        """Power-law spectrum h_i = i^-a, noise c_i = h_i^q, E[theta_0^2] = x0sq (a = q = 1 is the
        paper's problem)."""
        d = _dimension(d)
        a = V.real("a", a, low=0.0, low_open=True)
        q = V.real("q", q)
        h = np.arange(1, d + 1, dtype=np.float64) ** -a
        return cls.from_spectrum(h, c=h ** q, x0sq=x0sq, bins=bins, binning=binning,
                                 name=f"power law d={d}, a={a:g}, q={q:g} "
                                      f"({_describe(bins, binning)})")

    @classmethod
    def from_spectrum(cls, h, c=None, x0sq=1.0, *, bins: int | None = 100,
                      binning: str = "accurate", name: str = "spectrum") -> NQM:
        """An NQM from explicit per-dimension arrays (e.g. a measured Hessian spectrum).

        Args:
          h: curvatures, > 0, shape (d,).
          c: per-example gradient-noise variances, shape (d,) or scalar; default c = h (C = H).
          x0sq: initial E[theta^2], scalar or (d,); default 1.
          bins: number of bins (``None``: unbinned).
          binning: "accurate", "official" or "none" (see the module docstring).
        """
        h = V.vector("h", h, positive=True)
        c = h if c is None else V.vector("c", c, positive=False, size=h.size)   # NQM copies
        x0sq = V.vector("x0sq", x0sq, positive=False, size=h.size)
        V.choice("binning", binning, BINNINGS)
        if bins is None or binning == "none":
            return cls(*_merge_equal(h, c, x0sq), name=name)
        bins = _bins(bins)
        if binning == "official":
            return cls(*_official_binning(h, c, x0sq, bins), name=name)
        return cls(*_accurate_binning(h, c, x0sq, bins), name=name)

    # ------------------------------------------------------------------ properties
    @property
    def dimension(self) -> float:
        """Number of dimensions d (sum of the counts)."""
        return float(np.sum(self.counts))

    @property
    def n_bins(self) -> int:
        return int(self.h.size)

    @property
    def initial_risk(self) -> float:
        """1/2 sum counts h x0sq."""
        return float(0.5 * np.sum(self.counts * self.h * self.x0sq))

    def preconditioned(self, power: float) -> tuple[np.ndarray, np.ndarray]:
        """(curvature k = h^(1-p), noise c h^(-2p)) seen by an optimizer preconditioned with
        P = H^-p (paper section 3.3); the risk is still measured with h."""
        p = V.power(power)
        return self.h ** (1.0 - p), self.c * self.h ** (-2.0 * p)

    def __repr__(self) -> str:
        return (f"NQM({self.name!r}: {self.n_bins} bins, d={self.dimension:g}, "
                f"h in [{self.h.min():.3g}, {self.h.max():.3g}], "
                f"initial risk {self.initial_risk:.6g})")


# ---------------------------------------------------------------------- helpers
def _dimension(d) -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d must be an integer >= 1, got {d!r}")
    return int(d)


def _bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1 (or None for no binning), got {bins!r}")
    return int(bins)


def _describe(bins, binning) -> str:
    return "unbinned" if bins is None or binning == "none" else f"{bins} bins, {binning}"


def _merge_equal(h, c, x0sq):
    """One bin per distinct (h, c, x0sq) triple (exact), by decreasing h, then increasing c and
    x0sq. Strictly decreasing h (e.g. h_i = i^-a) needs no sort: O(d)."""
    if np.all(h[1:] < h[:-1]):
        return h, c, np.ones(h.size), x0sq
    order = np.lexsort((x0sq, c, -h))
    h, c, x0sq = h[order], c[order], x0sq[order]
    first = np.ones(h.size, dtype=bool)
    first[1:] = (h[1:] != h[:-1]) | (c[1:] != c[:-1]) | (x0sq[1:] != x0sq[:-1])
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, h.size)).astype(np.float64)
    return h[starts], c[starts], counts, x0sq[starts]


def _official_binning(h, c, x0sq, bins):
    """The authors' binning (see the module docstring)."""
    hi, lo = float(h.max()), float(h.min())
    if bins == 1 or hi == lo:
        grid = np.array([lo])
    else:
        grid = np.geomspace(hi, lo, bins)           # descending, as in the notebook
    # index of the largest grid value <= h_i (grid is descending: first index with grid <= h)
    idx = np.searchsorted(-grid, -h, side="left")
    idx = np.minimum(idx, grid.size - 1)
    # the bin is represented by its grid value exactly, its noise by h_bin * mean(c_i / h_i)
    # (exactly h_bin for C = H); _aggregate returns bins in descending curvature, as the grid
    hs, ratio, counts, xs = _aggregate(idx, grid.size, grid[idx], c / h, x0sq, None)
    hs = grid[np.unique(idx)]
    return hs, hs * ratio, counts, xs


def _accurate_binning(h, c, x0sq, bins):
    """Log-spaced intervals; mean curvature, mean noise, h-weighted mean x0sq per bin."""
    lo, hi = float(h.min()), float(h.max())
    if bins == 1 or hi == lo:
        idx = np.zeros(h.size, dtype=np.int64)
    else:
        edges = np.geomspace(lo, hi, bins + 1)
        idx = np.clip(np.searchsorted(edges, h, side="right") - 1, 0, bins - 1)
    return _aggregate(idx, bins, h, c, x0sq, h)


def _aggregate(idx, nbins, h_rep, c_rep, x0sq, hweight):
    counts = np.bincount(idx, minlength=nbins).astype(np.float64)
    keep = counts > 0
    hs = np.bincount(idx, weights=h_rep, minlength=nbins)[keep] / counts[keep]
    cs = np.bincount(idx, weights=c_rep, minlength=nbins)[keep] / counts[keep]
    if hweight is None:
        xs = np.bincount(idx, weights=x0sq, minlength=nbins)[keep] / counts[keep]
    else:
        num = np.bincount(idx, weights=hweight * x0sq, minlength=nbins)[keep]
        xs = num / np.bincount(idx, weights=hweight, minlength=nbins)[keep]
    order = np.argsort(-hs, kind="stable")
    return hs[order], cs[order], counts[keep][order], xs[order]
