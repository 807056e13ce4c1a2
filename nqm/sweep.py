"""Steps to target and optimal hyperparameters for many batch sizes and preconditioner powers at
once (paper Fig. 3a, Fig. 11, Fig. 12): every cell tuned exactly (``nqm.tuning``), cells run in
parallel."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from nqm import _validate as V
from nqm.bounds import lower_bound_steps
from nqm.problem import NQM
from nqm.tuning import _check_problem, tune_cells

__all__ = ["SweepResult", "batch_size_sweep", "PAPER_BATCH_SIZES", "PAPER_POWERS"]

PAPER_BATCH_SIZES = tuple(2.0 ** i for i in range(22))     # 2^0 .. 2^21
PAPER_POWERS = (0.0, 0.25, 0.5, 0.75)


@dataclass(frozen=True, eq=False)
class SweepResult:
    """Tuned steps to target on a grid of (power, batch size).

    Attributes:
      batch_sizes: shape (nB,).
      powers: shape (nP,).
      steps: exact tuned steps, int64, shape (nP, nB).
      lr: optimal learning rates, shape (nP, nB).
      momentum: momentum used (tuned or fixed; 0 for SGD), shape (nP, nB).
      steps_relaxed: optimum of the smooth relaxation, shape (nP, nB).
      lower_bound: information-theoretic bound d / (2 B target) (C = H), shape (nB,).
      optimizer: "sgd", "heavy_ball", "nesterov" or "sgd+ema"; momentum_tuned: whether momentum
        (or, for "sgd+ema", the EMA decay) was tuned.
      target: target risk; problem: description of the NQM.
      ema: decay gamma of the EMA of the iterates per cell, shape (nP, nB), or None (no EMA).
    """

    batch_sizes: np.ndarray
    powers: np.ndarray
    steps: np.ndarray
    lr: np.ndarray
    momentum: np.ndarray
    steps_relaxed: np.ndarray
    lower_bound: np.ndarray
    optimizer: str
    momentum_tuned: bool
    target: float
    problem: str
    ema: np.ndarray | None = None

    @property
    def effective_lr(self) -> np.ndarray:
        """lr / (1 - momentum) (paper Fig. 12 b, c)."""
        return self.lr / (1.0 - self.momentum)

    def table(self) -> str:
        """A readable table: one row per batch size, steps (and optimal effective lr) per power."""
        what = self.optimizer + (" (tuned momentum)" if self.momentum_tuned else "")
        lines = [f"steps to target {self.target:g}, {what}, {self.problem}"]
        head = f"{'batch size':>12}" + "".join(
            f" | {'p=' + format(p, 'g'):>9} {'eff. lr':>9}" for p in self.powers) + \
            f" | {'bound':>10}"
        lines += [head, "-" * len(head)]
        for j, b in enumerate(self.batch_sizes):
            row = f"{_fmt_b(b):>12}"
            for i in range(self.powers.size):
                row += f" | {self.steps[i, j]:>9d} {self.effective_lr[i, j]:>9.3g}"
            row += f" | {_fmt_steps(self.lower_bound[j]):>10}"
            lines.append(row)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "optimizer": self.optimizer, "momentum_tuned": self.momentum_tuned,
            "target": self.target, "problem": self.problem,
            "batch_sizes": [None if math.isinf(b) else float(b) for b in self.batch_sizes],
            "powers": self.powers.tolist(), "steps": self.steps.tolist(),
            "lr": self.lr.tolist(), "momentum": self.momentum.tolist(),
            "effective_lr": self.effective_lr.tolist(),
            "steps_relaxed": self.steps_relaxed.tolist(),
            "lower_bound": self.lower_bound.tolist(),
            "ema": None if self.ema is None else self.ema.tolist(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _fmt_steps(x: float) -> str:
    """A real number of steps: whole steps when large, three significant digits when small."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def _fmt_b(b: float) -> str:
    if math.isinf(b):
        return "inf"
    e = math.log2(b)
    return f"2^{int(e)}" if e == int(e) else f"{b:g}"


def batch_size_sweep(problem: NQM | None = None, *, batch_sizes=PAPER_BATCH_SIZES,
                     powers=PAPER_POWERS, momentum=0.0, nesterov: bool = False,
                     ema=None, target: float = 0.01) -> SweepResult:
    """Tuned steps to target for every (power, batch size): paper Fig. 3a (with ``momentum=0`` and
    ``momentum="tune"``), Fig. 11 (other targets) and Fig. 12 (``.lr``, ``.effective_lr``).

    Args:
      problem: the NQM (default ``NQM.paper()``).
      batch_sizes: batch sizes (default 2^0 .. 2^21; ``math.inf`` allowed: noise-free).
      powers: preconditioner powers (default 0, 0.25, 0.5, 0.75).
      momentum: 0 (SGD), a fixed beta, or "tune".
      nesterov: Nesterov momentum instead of heavy ball.
      ema: None, a fixed decay gamma of an EMA of the iterates, or "tune" (with momentum=0:
        SGD + EMA with (lr, gamma) tuned jointly).
      target: target risk.

    Example:
      >>> from nqm import batch_size_sweep
      >>> s = batch_size_sweep(batch_sizes=[16, 1024], powers=[0.0])
      >>> s.steps.shape
      (1, 2)
    """
    problem = _check_problem(problem)
    B = V.batch_sizes(batch_sizes)
    P = V.vector("powers", powers, positive=False)
    for p in P:
        V.power(float(p))
    mom = V.tunable("momentum", momentum, V.momentum)
    tgt = V.target(target)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
    em = None if ema is None else V.tunable("ema", ema, V.ema)
    out = tune_cells(problem, B, P, mom, bool(nesterov), tgt, em)
    if np.any(out[..., 0] < 0):
        raise ValueError(f"target={tgt!r} could not be reached within 2^53 steps in some cell")
    optimizer = "sgd" if mom == 0.0 else ("nesterov" if nesterov else "heavy_ball")
    beta = out[..., 2] if optimizer != "sgd" else np.zeros(out.shape[:2])
    gamma = None
    if em is not None:
        optimizer = "sgd+ema"
        gamma = out[..., 2].copy()
        beta = np.zeros(out.shape[:2])
    bound = np.array([lower_bound_steps(problem, batch_size=b, target=tgt).steps_real
                      if not math.isinf(b) else 0.0 for b in B])
    return SweepResult(
        batch_sizes=B, powers=P, steps=out[..., 0].astype(np.int64), lr=out[..., 1].copy(),
        momentum=beta.copy(), steps_relaxed=out[..., 4].copy(), lower_bound=bound,
        optimizer=optimizer, momentum_tuned=V.TUNE in (mom, em), target=tgt, problem=problem.name,
        ema=gamma)
