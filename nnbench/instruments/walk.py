"""Xing, Arpit, Tsirigotis & Bengio (2018), "A Walk with SGD": measurements along the trajectory.

Between consecutive iterates theta_a (previous) and theta_b (current) they track (their sec. 2-4):
* the cosine of the angle between consecutive mini-batch gradients, cos(g_a, g_b);
* the distance from initialisation ||theta_b - theta_0||;
* the full-training-set loss along the segment theta(alpha) = theta_a + alpha (theta_b - theta_a),
  alpha in [0, 1] at k uniformly spaced points (endpoints included). Its minimum is the
  *valley floor*; the *height* of the iterate theta_a above the floor is L(theta_a) - floor (sec. 4);
  a *barrier is crossed* when some interpolated point has a loss higher than both endpoints
  (their footnote 2).

:class:`WalkTracker` keeps theta_0, the previous parameters and the previous gradient in memory
(three vectors of P numbers; no checkpoints). Called every k steps instead of every step, "consecutive"
means k steps apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ._functional import (
    FlatModel,
    LossFn,
    check_batch,
    check_optional_chunk,
    check_positive_int,
    eval_mode,
    example_chunks,
    flat_params,
    to_float,
)


def gradient_cosine(g_a: Tensor, g_b: Tensor) -> float:
    """cos angle(g_a, g_b) = g_a . g_b / (|g_a| |g_b|); nan if either vector is zero."""
    if not isinstance(g_a, Tensor) or not isinstance(g_b, Tensor) or g_a.shape != g_b.shape:
        raise ValueError("g_a and g_b must be tensors of the same shape")
    a, b = g_a.reshape(-1).double(), g_b.reshape(-1).double()
    den = to_float(torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))
    return to_float(a @ b) / den if den > 0 else math.nan


def full_batch_loss(fm: FlatModel, theta: Tensor, x: Tensor, y: Tensor, chunk_size: int | None) -> float:
    """Mean loss over all of (x, y) at theta, in chunks (loss_fn is a mean: chunks are weighted by size)."""
    n = int(x.shape[0])
    total = 0.0
    with torch.no_grad():
        for sl in example_chunks(n, chunk_size):
            total += to_float(fm.loss(theta, x[sl], y[sl])) * (sl.stop - sl.start)
    return total / n


@dataclass(frozen=True, eq=False)  # holds an array: compare by identity
class Segment:
    """Full-batch loss along the segment between two parameter vectors (Xing et al. sec. 3-4).

    Attributes:
        alphas: (k,) interpolation coefficients in [0, 1], endpoints included.
        losses: (k,) full-batch loss at theta_a + alpha (theta_b - theta_a).
        valley_floor: min of ``losses``.
        floor_alpha: alpha at which the floor is reached.
        height_above_floor: losses[0] - valley_floor, the height of theta_a above the floor.
        barrier: True when an interior point exceeds both endpoints (by more than the tolerance).
        barrier_height: max interior loss - max endpoint loss when ``barrier``, else 0.
    """

    alphas: np.ndarray
    losses: np.ndarray
    valley_floor: float
    floor_alpha: float
    height_above_floor: float
    barrier: bool
    barrier_height: float

    def as_measurements(self) -> dict[str, float]:
        return {
            "segment_loss_start": float(self.losses[0]),
            "segment_loss_end": float(self.losses[-1]),
            "valley_floor": self.valley_floor,
            "floor_alpha": self.floor_alpha,
            "height_above_floor": self.height_above_floor,
            "barrier": float(self.barrier),
            "barrier_height": self.barrier_height,
        }


def _segment(
    fm: FlatModel,
    theta_a: Tensor,
    theta_b: Tensor,
    x: Tensor,
    y: Tensor,
    num_points: int,
    chunk_size: int | None,
    barrier_rtol: float,
) -> Segment:
    alphas = np.linspace(0.0, 1.0, num_points)
    losses = np.array([full_batch_loss(fm, theta_a + float(a) * (theta_b - theta_a), x, y, chunk_size) for a in alphas])
    i_min = int(np.argmin(losses))
    top = max(losses[0], losses[-1])
    interior = float(losses[1:-1].max()) if num_points > 2 else -math.inf
    barrier = bool(interior > top + barrier_rtol * abs(top))
    return Segment(
        alphas=alphas,
        losses=losses,
        valley_floor=float(losses[i_min]),
        floor_alpha=float(alphas[i_min]),
        height_above_floor=float(losses[0] - losses[i_min]),
        barrier=barrier,
        barrier_height=float(interior - top) if barrier else 0.0,
    )


def _check_segment_args(num_points: object, barrier_rtol: object) -> None:
    check_positive_int(num_points, "num_points", minimum=3)
    if isinstance(barrier_rtol, bool) or not isinstance(barrier_rtol, (int, float)) or not (
        math.isfinite(barrier_rtol) and barrier_rtol >= 0
    ):
        raise ValueError(f"barrier_rtol must be a finite number >= 0, got {barrier_rtol!r}")


def segment_losses(
    model: nn.Module,
    loss_fn: LossFn,
    theta_a: Tensor,
    theta_b: Tensor,
    x: Tensor,
    y: Tensor,
    *,
    num_points: int = 11,
    chunk_size: int | None = None,
    barrier_rtol: float = 1e-6,
) -> Segment:
    """Full-batch loss of ``model``'s architecture along the segment from ``theta_a`` to ``theta_b``.

    Args:
        model: supplies the architecture (and buffers); its own parameters are not used or changed.
        theta_a, theta_b: flat parameter vectors (order of :func:`flat_params`).
        x, y: the full training set (or the subset standing for it).
        num_points: k >= 3 uniformly spaced alphas in [0, 1], endpoints included.
        chunk_size: examples per forward pass (None: all at once).
        barrier_rtol: an interior point counts as a barrier only above max(endpoints) * (1 + rtol),
            so that rounding on a flat segment is not reported as a barrier.
    """
    check_batch(x, y)
    _check_segment_args(num_points, barrier_rtol)
    chunk_size = check_optional_chunk(chunk_size)
    with eval_mode(model):
        fm = FlatModel(model, loss_fn)
        p = fm.num_params
        for name, t in (("theta_a", theta_a), ("theta_b", theta_b)):
            if not isinstance(t, Tensor) or t.shape != (p,):
                raise ValueError(f"{name} must be a flat tensor of shape ({p},)")
        cast = dict(dtype=fm.spec.dtype, device=fm.spec.device)
        return _segment(fm, theta_a.to(**cast), theta_b.to(**cast), x, y, num_points, chunk_size, barrier_rtol)


class WalkTracker:
    """Stateful Xing et al. measurements, updated once per (instrumented) training step.

    Keeps theta_0, the previous parameters and the previous mini-batch gradient in memory.
    ``update(model, loss_fn, x, y, full_batch=(X, Y))`` returns a dict of floats:
        distance_from_init      ||theta - theta_0||
        grad_norm               |g| of the mini-batch gradient at theta on (x, y)
        step_length             ||theta - theta_prev||                    (from the 2nd call)
        grad_cosine             cos(g_prev, g)                            (from the 2nd call)
        segment_loss_start/end, valley_floor, floor_alpha, height_above_floor, barrier (0/1),
        barrier_height          along theta_prev -> theta on the full batch (2nd call on, when a
                                full batch is given)
    Keys that are not yet defined are left out (no nan placeholders). ``history`` keeps every
    :class:`Segment` (k floats each) when ``keep_segments=True``.

    Args:
        full_batch: default (X, Y) for the segment losses; ``update(..., full_batch=...)`` overrides.
        num_points: interpolation points per segment (>= 3).
        initial: a model whose current parameters are theta_0; default: the first ``update``'s.
        chunk_size: examples per forward pass for the full-batch losses.
        barrier_rtol: see :func:`segment_losses`.
        keep_segments: store each segment in ``history``.

    The tracker is also a trial instrument: ``tracker(model, loss_fn, (x, y))`` is ``update``
    (unprefixed names; wrap it in ``as_trial_instrument`` for "walk."-prefixed ones).
    """

    def __init__(
        self,
        *,
        full_batch: tuple[Tensor, Tensor] | None = None,
        num_points: int = 11,
        initial: nn.Module | None = None,
        chunk_size: int | None = None,
        barrier_rtol: float = 1e-6,
        keep_segments: bool = False,
    ) -> None:
        _check_segment_args(num_points, barrier_rtol)
        if full_batch is not None:
            self._check_full_batch(full_batch)
        self.full_batch = full_batch
        self.num_points = num_points
        self.chunk_size = check_optional_chunk(chunk_size)
        self.barrier_rtol = float(barrier_rtol)
        self.keep_segments = bool(keep_segments)
        self.history: list[Segment] = []
        self.num_updates = 0
        self._theta0 = flat_params(initial) if initial is not None else None
        self._theta_prev: Tensor | None = None
        self._grad_prev: Tensor | None = None

    @staticmethod
    def _check_full_batch(full_batch: object) -> None:
        if not isinstance(full_batch, tuple) or len(full_batch) != 2:
            raise ValueError("full_batch must be a tuple (X, Y) of tensors")
        check_batch(*full_batch, name="full_batch X")

    def __call__(self, model: nn.Module, loss_fn: LossFn, *batch: Tensor | tuple[Tensor, Tensor]) -> dict[str, float]:
        """The trial hook: ``tracker(model, loss_fn, x, y)`` or ``tracker(model, loss_fn, (x, y))``."""
        if len(batch) == 1 and isinstance(batch[0], (tuple, list)) and len(batch[0]) == 2:
            batch = tuple(batch[0])
        if len(batch) != 2:
            raise ValueError("WalkTracker is called as tracker(model, loss_fn, x, y) or tracker(model, loss_fn, (x, y))")
        return self.update(model, loss_fn, *batch)

    def update(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        x: Tensor,
        y: Tensor,
        *,
        full_batch: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, float]:
        """Record the current iterate of ``model`` (mini-batch (x, y)) and return the measurements."""
        check_batch(x, y)
        if full_batch is not None:
            self._check_full_batch(full_batch)
        full_batch = full_batch if full_batch is not None else self.full_batch
        with eval_mode(model):
            fm = FlatModel(model, loss_fn)
            theta = fm.theta0
            if self._theta0 is None:
                self._theta0 = theta.clone()
            if self._theta0.shape != theta.shape:
                raise ValueError(
                    f"model has {theta.numel()} parameters but the tracker started with {self._theta0.numel()}"
                )
            self._theta0 = self._theta0.to(device=theta.device, dtype=theta.dtype)
            g = fm.gradient(x, y).detach()
            out = {
                "distance_from_init": to_float(torch.linalg.vector_norm(theta - self._theta0)),
                "grad_norm": to_float(torch.linalg.vector_norm(g)),
            }
            if self._theta_prev is not None:
                prev = self._theta_prev.to(device=theta.device, dtype=theta.dtype)
                out["step_length"] = to_float(torch.linalg.vector_norm(theta - prev))
                out["grad_cosine"] = gradient_cosine(self._grad_prev.to(g.device), g)
                if full_batch is not None:
                    seg = _segment(fm, prev, theta, *full_batch, self.num_points, self.chunk_size, self.barrier_rtol)
                    out.update(seg.as_measurements())
                    if self.keep_segments:
                        self.history.append(seg)
        self._theta_prev = theta.clone()
        self._grad_prev = g.clone()
        self.num_updates += 1
        return out
