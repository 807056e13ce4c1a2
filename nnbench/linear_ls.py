"""Online Gaussian linear least squares as a noisy quadratic: the exact NQM, the exact expected risk,
and nnbench's measured risk curves and steps to target beside both.

The workload (``nnbench.data.linear_regression``, workload ``linear_ls``): x ~ N(0, diag(lambda)),
y = W* x + s N(0, I_K), model W (K x D, no bias), loss ``mean_{examples, outputs} (W x - y)^2``. Its
excess risk R(W) = (1/K) sum_k delta_k^T Sigma delta_k (delta = W - W*) is an NQM risk
1/2 sum h theta^2 with, per weight (k, i):

    h_i = 2 lambda_i / K,    per-example gradient (2/K)(delta_k^T x - eps_k) x_i,  mean h_i delta_ki.

Its per-example gradient variance is NOT the NQM's constant c (Gaussian fourth moments,
E[x x^T A x x^T] = 2 Sigma A Sigma + tr(A Sigma) Sigma):

    Var g_ki = (4 / K^2) (s^2 lambda_i + lambda_i^2 delta_ki^2 + lambda_i delta_k^T Sigma delta_k)
             = c_i (1 + (lambda_i delta_ki^2 + R_k) / s^2),      c_i = 4 s^2 lambda_i / K^2.

The NQM (:func:`nqm_problem`) keeps the label-noise part c_i; the multiplicative part is at most
2 R_k / s^2 of it, small once the risk is small against the label noise. Because only diagonal second
moments enter it, the EXACT expected risk still obeys a closed linear recursion on the per-weight
second moments of (delta, velocity), the NQM's one plus the rank-one coupling through R_k
(:func:`exact_risk_curve`): that quantifies the NQM's error. With ``target / s^2 = 0.02`` (the
workload's default) the NQM predicts about 3 % too few steps at small batch sizes and about 1 % at
large ones (printed by ``benchmarks/bench_linear_ls_agreement.py``); the error grows roughly like
1.3 target / s^2.

Measured side: nnbench's own trial loop (``nnbench.trial.run``: the workload's data source, model,
optimizer and evaluation) records the validation mse at every step; the workload's validation split is
the exact-risk design, so that mse IS R(W), with no evaluation noise. One run's crossing fluctuates;
the NQM predicts the crossing of the EXPECTED risk, so :func:`measure_risk_curves` averages the risk
curves of several seeds and :func:`crossing` takes the first crossing of that average (after a light
moving average that removes the early first passage of its residual noise), interpolated linearly in
log risk between evaluations (the NQM's prediction is interpolated the same way, unsmoothed).

Measured on the default workload (``benchmarks/bench_linear_ls_agreement.py``,
``tests/nnbench/test_linear_ls.py``): the NQM's tuned steps are within about 3 % (SGD) and 5 %
(momentum 0.9) of the EXACT expected risk's tuned steps at B = 8 .. 8192. At a fixed lr the gap can
be larger for momentum 0.9 at large B (about 15 % at B = 2048): there the NQM's fastest crossing is a
transient dip of an oscillating risk curve, which the omitted multiplicative noise partly fills.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import nqm

__all__ = [
    "nqm_problem",
    "exact_risk_curve",
    "crossing",
    "smooth_curve",
    "measure_risk_curves",
    "AgreementRow",
    "AgreementResult",
    "agreement",
    "lr_grid",
]

def _source_parts(source):
    lam = np.asarray(source.eigenvalues, dtype=np.float64)
    w_star = np.asarray(source.w_star, dtype=np.float64)
    return lam, w_star, float(source.noise_std)


def _init_variance(source, init_variance):
    if init_variance is None:
        # torch's nn.Linear default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1 / (3 fan_in)
        return 1.0 / (3.0 * source.input_shape[0])
    v = float(init_variance)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"init_variance must be finite and >= 0, got {init_variance!r}")
    return v


def nqm_problem(source, *, init_variance: float | None = None) -> nqm.NQM:
    """The NQM of a ``LinearRegressionSource`` trained by the ``linear_ls`` workload (mse loss, linear
    model without bias): one bin per input eigenvalue, holding the K weights of that direction.

    h_i = 2 lambda_i / K, c_i = 4 s^2 lambda_i / K^2 (label-noise part of the gradient variance, see
    the module docstring), counts K, x0sq_i = mean_k W*_ki^2 + init_variance (the risk is linear in
    the initial second moments, so merging the K weights of one direction into a bin is exact).

    Args:
        source: a ``nnbench.data.linear_regression.LinearRegressionSource``.
        init_variance: variance of each initial weight; default 1 / (3 D), torch's ``nn.Linear`` init.
    """
    lam, w_star, s = _source_parts(source)
    K = w_star.shape[0]
    x0sq = np.mean(w_star**2, axis=0) + _init_variance(source, init_variance)
    return nqm.NQM(h=2.0 * lam / K, c=4.0 * s * s * lam / K**2, counts=np.full(lam.size, float(K)),
                   x0sq=x0sq, name=f"linear least squares D={lam.size}, K={K}, s={s:g}")


def exact_risk_curve(source, *, lr: float, batch_size: int, steps: int, momentum: float = 0.0,
                     init_variance: float | None = None) -> np.ndarray:
    """The exact expected excess risk E[R(W_t)], t = 0..steps, of SGD (``momentum=0``) or torch's
    heavy-ball momentum on the Gaussian least-squares problem of ``source`` (fourth moments included;
    see the module docstring). Per weight (k, i) the second moments (xx, xv, vv) of (delta, v) evolve
    as in the NQM with the noise variance c_i (1 + (lambda_i xx_ki + R_k) / s^2) / B.
    """
    lam, w_star, s = _source_parts(source)
    lr = nqm.Optimizer(lr, momentum).lr  # validates lr and momentum
    beta = float(momentum)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    K = w_star.shape[0]
    h = 2.0 * lam / K                                   # (D,)
    xx = w_star**2 + _init_variance(source, init_variance)  # (K, D)
    xv = np.zeros_like(xx)
    vv = np.zeros_like(xx)
    # v' = beta v + h x + xi;  x' = (1 - lr h) x - lr beta v - lr xi
    a11, a12, a21, a22 = 1.0 - lr * h, -lr * beta, h, beta
    out = np.empty(steps + 1)
    out[0] = np.mean(xx @ lam)
    for t in range(steps):
        r_k = xx @ lam                                  # (K,) per-output excess risk
        sig = 4.0 / (K * K * batch_size) * (lam * lam * xx + lam * r_k[:, None] + s * s * lam)
        xx, xv, vv = (a11 * a11 * xx + 2 * a11 * a12 * xv + a12 * a12 * vv + lr * lr * sig,
                      a11 * a21 * xx + (a11 * a22 + a12 * a21) * xv + a12 * a22 * vv - lr * sig,
                      a21 * a21 * xx + 2 * a21 * a22 * xv + a22 * a22 * vv + sig)
        out[t + 1] = np.mean(xx @ lam)
        if not math.isfinite(out[t + 1]):
            out[t + 1:] = math.inf
            break
    return out


def smooth_curve(curve, width: float) -> np.ndarray:
    """Centred moving average whose half-window grows with the step: at step t the mean of
    curve[t - k .. t + k], k = floor(width * t) (shrunk symmetrically at the end of the curve)."""
    c = np.asarray(curve, dtype=np.float64)
    width = float(width)
    if not (math.isfinite(width) and width >= 0):
        raise ValueError(f"width must be finite and >= 0, got {width!r}")
    if width == 0 or c.size < 3:
        return c.copy()
    t = np.arange(c.size)
    k = np.minimum(np.floor(width * t).astype(np.int64), c.size - 1 - t)
    csum = np.concatenate([[0.0], np.cumsum(c)])
    return (csum[t + k + 1] - csum[t - k]) / (2 * k + 1)


def crossing(curve, target: float, *, smooth: float = 0.0) -> float:
    """First crossing of ``curve`` (risk at steps 0, 1, 2, ...) below ``target``, as a real number of
    steps: t - 1 + frac where t is the first step with curve[t] <= target and frac interpolates
    log(curve) linearly between t - 1 and t. 0 if curve[0] <= target; ``inf`` if never.

    ``smooth`` > 0 first applies :func:`smooth_curve` with that relative width. A measured (seed-
    averaged) curve still fluctuates from step to step, and near its floor it approaches the target
    so slowly that its FIRST passage comes early (a fluctuation, not the expected risk): on the
    ``linear_ls`` default at B = 8, 4 seeds, 15 % too early unsmoothed, 2.6 % with ``smooth=0.02``
    (which moves the crossing of a 160-run average by +0.6 %; numpy Monte Carlo). Keep ``smooth``
    small: a window of a few steps would also fill the transient dips of a momentum risk curve,
    which are real (the half-window is 0 below t = 1 / smooth).
    """
    c = np.asarray(curve, dtype=np.float64)
    target = float(target)
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"target must be finite and > 0, got {target!r}")
    if c.ndim != 1 or c.size == 0:
        raise ValueError("curve must be a non-empty 1-D sequence")
    if smooth:
        c = smooth_curve(c, smooth)
    below = np.nonzero(c <= target)[0]
    if below.size == 0:
        return math.inf
    t = int(below[0])
    if t == 0:
        return 0.0
    hi, lo = c[t - 1], c[t]
    if not (math.isfinite(hi) and hi > 0 and lo > 0):
        return float(t)
    return t - 1 + (math.log(hi) - math.log(target)) / (math.log(hi) - math.log(lo))


def measure_risk_curves(workload, *, optimizer: str, hparams, batch_size: int, steps: int,
                        seeds: Sequence[int], data=None, device="cpu") -> np.ndarray:
    """Validation mse (= excess risk on ``linear_ls``) after every step 0..steps of nnbench trials
    (``nnbench.trial.run``), one row per seed; a diverged trial's row is padded with ``inf``.

    The workload is run with ``eval_every=1``, ``max_steps=steps`` and an unreachable target (0), so
    every trial records its whole curve; ``seeds`` seed the model initialisation and the batches.
    """
    from nnbench.trial import run
    from nnbench.workloads import build_workload_data

    if workload.metric != "mse":
        raise ValueError(f"workload {workload.name!r}: measure_risk_curves needs the mse metric, "
                         f"got {workload.metric!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    w = workload.replace(eval_every=1, max_steps=int(steps), target=0.0)
    if data is None:
        data = build_workload_data(w, device=device)
    key = f"{w.eval_split}_mse"
    out = np.full((len(seeds), steps + 1), math.inf)
    for row, seed in enumerate(seeds):
        r = run(w, optimizer=optimizer, hparams=hparams, batch_size=batch_size, seed=int(seed),
                data=data, device=device)
        for m in r.measurements:
            if m.name == key:
                out[row, m.step] = m.value if math.isfinite(m.value) else math.inf
    return out


@dataclass(frozen=True)
class AgreementRow:
    """One (optimizer, batch size) of :func:`agreement`. Steps are real-valued crossings.

    Attributes:
      optimizer: "sgd" or "momentum" (nnbench names); momentum: beta (0 for sgd).
      batch_size: B.
      lr_predicted: the grid lr with the fewest NQM steps (the NQM tuned on the shared grid).
      predicted: NQM steps at lr_predicted (interpolated crossing of its exact risk curve).
      nqm_optimum: steps of the NQM's continuous optimum (``nqm.optimal_lr``, exact integer), for
        reference: the grid costs 0-2 % at small B and up to 8 % at the largest B, where the best lr
        sits just below the stability limit (above the grid's top point, 2^-1/4 of the limit).
      exact: the exact Gaussian expected risk's crossing at lr_predicted (fourth moments included).
      measured_at_predicted_lr: crossing of nnbench's seed-averaged risk curve at lr_predicted.
      measured_tuned: min over the measured grid lrs of the seed-averaged crossing (nnbench tuned
        per B on the same grid); lr_tuned: the grid lr achieving it.
      seed_spread: std over seeds of the single-seed crossings at lr_predicted, relative to their
        mean (how much ONE run fluctuates).
    """

    optimizer: str
    momentum: float
    batch_size: int
    lr_predicted: float
    predicted: float
    nqm_optimum: int
    exact: float
    measured_at_predicted_lr: float
    measured_tuned: float
    lr_tuned: float
    seed_spread: float

    @property
    def rel_error(self) -> float:
        """measured_tuned / predicted - 1."""
        return self.measured_tuned / self.predicted - 1.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "rel_error": self.rel_error}


@dataclass(frozen=True)
class AgreementResult:
    """Result of :func:`agreement`: rows plus critical batch sizes fitted (McCandlish form,
    ``nqm.critical_batch(batch_sizes=, steps=)``) to the measured tuned and the predicted steps of
    each optimizer, and the NQM's exact one (``bcrit_exact``, E_min / S_min with continuous tuning)."""

    rows: tuple[AgreementRow, ...]
    target: float
    seeds: int
    bcrit_measured: dict
    bcrit_predicted: dict
    bcrit_exact: dict

    def max_rel_error(self) -> float:
        return max(abs(r.rel_error) for r in self.rows)

    def bcrit_rel_error(self, optimizer: str) -> float:
        return self.bcrit_measured[optimizer] / self.bcrit_predicted[optimizer] - 1.0

    def table(self) -> str:
        lines = [f"steps to excess risk {self.target:g}: NQM vs exact Gaussian risk vs nnbench (mean of "
                 f"{self.seeds} seeds' risk curves); crossings interpolated; both tuned on one lr grid",
                 f"{'optimizer':>9} {'B':>6} {'lr':>8} {'NQM':>8} {'NQM opt':>8} {'exact':>8} "
                 f"{'meas@lr':>8} {'measured':>8} {'lr meas':>8} {'error':>7} {'1-seed sd':>9}"]
        for r in self.rows:
            lines.append(f"{r.optimizer:>9} {r.batch_size:>6d} {r.lr_predicted:>8.4g} {r.predicted:>8.1f} "
                         f"{r.nqm_optimum:>8d} {r.exact:>8.1f} {r.measured_at_predicted_lr:>8.1f} "
                         f"{r.measured_tuned:>8.1f} {r.lr_tuned:>8.4g} {100 * r.rel_error:>6.1f}% "
                         f"{100 * r.seed_spread:>8.1f}%")
        for opt in self.bcrit_measured:
            lines.append(f"B_crit {opt}: fitted to measured {self.bcrit_measured[opt]:.4g}, fitted to "
                         f"predicted {self.bcrit_predicted[opt]:.4g} ({100 * self.bcrit_rel_error(opt):+.1f}%), "
                         f"NQM exact E_min/S_min {self.bcrit_exact[opt]:.4g}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"target": self.target, "seeds": self.seeds, "rows": [r.to_dict() for r in self.rows],
                "bcrit_measured": self.bcrit_measured, "bcrit_predicted": self.bcrit_predicted,
                "bcrit_exact": self.bcrit_exact}


def _nqm_crossing(problem, lr, batch_size, momentum, target, steps_hint):
    n = max(int(steps_hint) + 2, 2)
    curve = nqm.risk_curve(problem, n, lr=lr, batch_size=batch_size, momentum=momentum).risk
    return crossing(curve, target)


def lr_grid(problem: nqm.NQM, *, momentum: float = 0.0, points_per_octave: int = 2,
            octaves: float = 9.0) -> np.ndarray:
    """The shared tuning grid: lr = limit * 2^(-k / points_per_octave), k = 1, 2, ... down to
    limit * 2^-octaves, with ``limit`` the NQM's stability limit (descending)."""
    limit = nqm.stability_limit(problem, momentum=momentum)
    n = int(round(octaves * points_per_octave))
    return limit * 2.0 ** (-np.arange(1, n + 1) / points_per_octave)


def agreement(workload, *, batch_sizes: Sequence[int], optimizers: Sequence[str] = ("sgd", "momentum"),
              momentum: float = 0.9, seeds: int = 4, points_per_octave: int = 4, keep: float = 1.1,
              smooth: float = 0.02, target: float | None = None, horizon: float = 1.5, device="cpu",
              progress: bool = False) -> AgreementResult:
    """nnbench's measured steps to target on a ``linear_ls`` workload beside the NQM's exact prediction.

    Tuning (the same for prediction and measurement): a 1-D log grid of lrs below the stability
    limit (:func:`lr_grid`), momentum fixed at ``momentum`` for "momentum". Predicted steps: the
    NQM's fewest steps over the grid. Measured: nnbench trials (:func:`measure_risk_curves`, ``seeds``
    seeds each, recorded for ``horizon`` times the NQM's steps at that lr) at every grid lr whose NQM
    steps are within ``keep`` times the NQM's best (the others are not measured: they cannot win
    unless the NQM is off by more than that factor); measured steps = fewest over those lrs of the
    crossing of the seed-averaged risk curve, smoothed with relative width ``smooth`` (see
    :func:`crossing`; the prediction is the NQM's exact, unsmoothed crossing).

    Args:
      workload: a ``linear_ls``-style workload (dataset ``linear_regression``, mse, linear model).
      batch_sizes: the sweep's batch sizes.
      target: excess-risk target (default: the workload's).
    """
    from tqdm.auto import tqdm

    from nnbench.workloads import build_workload_data

    if workload.dataset != "linear_regression":
        raise ValueError(f"workload {workload.name!r}: agreement needs the linear_regression data set, "
                         f"got {workload.dataset!r}")
    for opt in optimizers:
        if opt not in ("sgd", "momentum"):
            raise ValueError(f"optimizers: only 'sgd' and 'momentum' have an NQM counterpart here, got {opt!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    if not (math.isfinite(keep) and keep >= 1.0):
        raise ValueError(f"keep must be a finite number >= 1, got {keep!r}")
    target = float(workload.target if target is None else target)
    data = build_workload_data(workload, device=device)
    problem = nqm_problem(data)
    rows = []
    cells = [(o, int(b)) for o in optimizers for b in batch_sizes]
    for opt, B in tqdm(cells, desc="agreement", disable=not progress):
        beta = momentum if opt == "momentum" else 0.0
        steps_at = {}
        for lr in lr_grid(problem, momentum=beta, points_per_octave=points_per_octave):
            try:
                steps_at[float(lr)] = nqm.steps_to_target(problem, lr=float(lr), batch_size=B, momentum=beta,
                                                          target=target).steps
            except ValueError:
                pass  # the NQM's noise floor is above the target at this lr
        if not steps_at:
            raise ValueError(f"target={target!r} is unreachable at batch_size={B} on the lr grid")
        n_best = min(steps_at.values())
        lr_pred = min(steps_at, key=lambda lr: (steps_at[lr], -lr))
        predicted = _nqm_crossing(problem, lr_pred, B, beta, target, n_best)
        optimum = nqm.optimal_lr(problem, batch_size=B, momentum=beta, target=target).steps
        exact = crossing(exact_risk_curve(data, lr=lr_pred, batch_size=B, momentum=beta,
                                          steps=int(3 * n_best) + 10), target)
        hp_extra = {"momentum": beta} if opt == "momentum" else {}
        measured, spread = {}, math.nan
        for lr, n in steps_at.items():
            if n > keep * n_best:
                continue
            curves = measure_risk_curves(workload, optimizer=opt, hparams={"lr": lr, **hp_extra},
                                         batch_size=B, steps=int(math.ceil(horizon * n)) + 10,
                                         seeds=range(seeds), data=data, device=device)
            measured[lr] = crossing(curves.mean(axis=0), target, smooth=smooth)
            if lr == lr_pred and seeds > 1:
                single = np.array([crossing(c, target, smooth=smooth) for c in curves])
                spread = float(np.std(single) / np.mean(single)) if np.all(np.isfinite(single)) else math.inf
        lr_meas = min(measured, key=lambda lr: measured[lr])
        rows.append(AgreementRow(optimizer=opt, momentum=beta, batch_size=B, lr_predicted=lr_pred,
                                 predicted=predicted, nqm_optimum=int(optimum), exact=exact,
                                 measured_at_predicted_lr=measured[lr_pred],
                                 measured_tuned=measured[lr_meas], lr_tuned=lr_meas, seed_spread=spread))
    bm, bp, be = {}, {}, {}
    for opt in optimizers:
        sel = [r for r in rows if r.optimizer == opt]
        Bs = [r.batch_size for r in sel]
        if len(sel) >= 3 and all(math.isfinite(r.measured_tuned) and r.measured_tuned > 0 for r in sel):
            bm[opt] = nqm.critical_batch(batch_sizes=Bs, steps=[r.measured_tuned for r in sel]).value
            bp[opt] = nqm.critical_batch(batch_sizes=Bs, steps=[r.predicted for r in sel]).value
            be[opt] = nqm.critical_batch(problem, momentum=sel[0].momentum, target=target).value
    return AgreementResult(rows=tuple(rows), target=target, seeds=seeds, bcrit_measured=bm,
                           bcrit_predicted=bp, bcrit_exact=be)
