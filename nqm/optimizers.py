"""The optimizers, each described by its per-dimension transition (A, b) (``shared/spec/NQM.md``
section 2): on one bin of curvature k the state s (x, or (x, v) with momentum) evolves as
``s' = A s + b xi`` with ``Var xi = sigma^2 = c_eff / B``.

* SGD (paper eqn. 4):            A = [1 - a k],                                b = [-a]
* heavy ball (eqn. 5, app. B):   A = [[1 - a k, -a beta], [k, beta]],          b = [-a, 1]
* Nesterov (PyTorch's form):     A = [[1 - a (1+beta) k, -a beta^2], [k, beta]], b = [-a (1+beta), 1]

An exponential moving average of the iterates (``ema=gamma``: xbar' = gamma xbar + (1 - gamma) x',
the risk measured on xbar; Polyak-style averaging, paper section 3.3) is a transform too: it appends
xbar to the state, with the row (1 - gamma) A_x. plus gamma on the diagonal and noise (1 - gamma) b_x
(``shared/spec/NQM.md`` section 2). For SGD the kernels take it in the coordinates
(xbar, w = x - xbar), where it starts as (x_0, 0) like momentum's (x_0, v_0 = 0):

* SGD + EMA:  A = [[1 - (1-gamma) a k, (1-gamma)(1 - a k)], [-gamma a k, gamma (1 - a k)]],
              b = [-(1-gamma) a, -gamma a];  roots 1 - a k and gamma (defective where they meet:
              gamma = 1 - a k, handled exactly as critical damping).

so every constant-hyperparameter question (risk, steps to target, tuning of (lr, gamma), sweeps)
runs on the same kernels. Momentum with an EMA has a 3-dimensional state; its risk is computed by
the schedule kernel (a one-piece schedule), steps to target and tuning are for SGD + EMA only.
EMA does not change the stability limit (|gamma| < 1).

Preconditioning with P = H^-p is a transform of the problem, not a new optimizer: the optimizer sees
curvature k = h^(1-p) and noise c h^(-2p) (paper section 3.3), the risk is measured with h.
D = I - A is formed directly (e.g. [[a k, a beta], [-k, 1 - beta]] for heavy ball) so that small
a k does not cancel; the kernels (``nqm._kernels``) only ever see (A, b, D).

Stability (Jury's conditions on z^2 - tr(A) z + det(A)): SGD a k_max < 2; heavy ball
a k_max < 2 (1 + beta); Nesterov a k_max < 2 (1 + beta) / (1 + 2 beta).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nqm import _kernels as K
from nqm import _validate as V
from nqm.problem import NQM


@dataclass(frozen=True)
class Optimizer:
    """A constant-hyperparameter optimizer: SGD (momentum 0), heavy-ball or Nesterov momentum, with
    an optional preconditioner P = H^-power.

    Attributes:
      lr: learning rate a > 0.
      momentum: beta in [0, 1) (0: plain or preconditioned SGD).
      nesterov: PyTorch's Nesterov form instead of heavy ball (ignored when momentum = 0).
      power: preconditioner power p in [0, 1].
      ema: decay gamma in [0, 1) of an exponential moving average of the iterates on which the
        risk is measured, or None (no averaging).
    """

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    power: float = 0.0
    ema: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "lr", V.lr(self.lr))
        object.__setattr__(self, "momentum", V.momentum(self.momentum))
        object.__setattr__(self, "power", V.power(self.power))
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov must be True or False, got {self.nesterov!r}")
        object.__setattr__(self, "nesterov", bool(self.nesterov))
        if self.ema is not None:
            object.__setattr__(self, "ema", V.ema(self.ema))

    @property
    def code(self) -> int:
        """Kernel code: 0 SGD, 1 heavy ball, 2 Nesterov, 3 SGD + EMA. Momentum + EMA (a state of
        size 3) has no code of the constant-hyperparameter kernels: ValueError."""
        if self.ema is not None:
            if self.momentum != 0.0:
                raise ValueError(
                    "momentum with ema has a 3-dimensional state: its risk and risk curve are exact "
                    "(nqm.risk, nqm.risk_curve, nqm.schedule_risk), but steps to target and tuning "
                    "support ema only with momentum=0")
            return K.SGD_EMA
        if self.momentum == 0.0:
            return K.SGD
        return K.NESTEROV if self.nesterov else K.HEAVY_BALL

    @property
    def base_code(self) -> int:
        """Kernel code of the optimizer without its EMA (0 SGD, 1 heavy ball, 2 Nesterov)."""
        if self.momentum == 0.0:
            return K.SGD
        return K.NESTEROV if self.nesterov else K.HEAVY_BALL

    @property
    def y(self) -> float:
        """The second hyperparameter of the kernels (momentum beta, or gamma for SGD + EMA)."""
        return self.ema if self.code == K.SGD_EMA else self.momentum

    @property
    def name(self) -> str:
        base = "sgd" if self.base_code == K.SGD else ("nesterov" if self.nesterov else "heavy_ball")
        if self.ema is not None:
            base += f", ema={self.ema:g}"
        return base if self.power == 0.0 else f"{base}, P=H^-{self.power:g}"

    @property
    def effective_lr(self) -> float:
        """a / (1 - beta): momentum SGD behaves like SGD with this rate at small rates (section 3.2)."""
        return self.lr / (1.0 - self.momentum)

    def stability_limit(self, problem: NQM) -> float:
        """Largest stable learning rate for this momentum and power on ``problem`` (exclusive)."""
        return stability_limit(problem, momentum=self.momentum, nesterov=self.nesterov,
                               power=self.power)

    def transition(self, problem: NQM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-bin (A, b, D), shapes (n_bins, n, n), (n_bins, n), (n_bins, n, n) with n = 1 for SGD
        and 2 with momentum (state (x, v)) or SGD + EMA (state (xbar, x - xbar))."""
        k, _ = problem.preconditioned(self.power)
        n = 1 if self.code == K.SGD else 2
        y = self.y
        A = np.empty((k.size, n, n))
        D = np.empty((k.size, n, n))
        b = np.empty((k.size, n))
        for j, kj in enumerate(k):
            r = K._transition2(self.code, float(kj), self.lr, y, 1.0 - y)
            A[j] = np.array([[r[0], r[1]], [r[2], r[3]]])[:n, :n]
            D[j] = np.array([[r[4], r[5]], [r[6], r[7]]])[:n, :n]
            b[j] = np.array([r[8], r[9]])[:n]
        return A, b, D

    def check_stable(self, problem: NQM) -> None:
        """ValueError naming lr (and stating the limit) when lr is not below the stability limit."""
        limit = self.stability_limit(problem)
        if not self.lr < limit:
            raise ValueError(
                f"lr={self.lr!r} is unstable for {self.name} on this problem: it must be below the "
                f"stability limit {limit:.10g} (momentum={self.momentum:g}, power={self.power:g}, "
                f"largest preconditioned curvature {np.max(problem.preconditioned(self.power)[0]):.6g})")


def stability_limit(problem: NQM, *, momentum: float = 0.0, nesterov: bool = False,
                    power: float = 0.0) -> float:
    """Largest stable learning rate (exclusive) on ``problem``: 2 / k_max for SGD, 2 (1 + beta) / k_max
    for heavy ball, 2 (1 + beta) / ((1 + 2 beta) k_max) for Nesterov, with k_max = max h^(1-p)."""
    beta = V.momentum(momentum)
    k, _ = problem.preconditioned(V.power(power))
    code = K.SGD if beta == 0.0 else (K.NESTEROV if nesterov else K.HEAVY_BALL)
    return float(K._lr_max(code, float(np.max(k)), beta))
