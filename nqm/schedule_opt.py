"""Optimized piecewise-constant learning-rate schedules (paper section 3.6.2, Fig. 3b/3c, Fig. 13).

For a batch size and a target, :func:`optimize_schedule` finds the smallest number of steps T for
which a K-piece schedule reaches the target, and that schedule:

* **pieces**: K pieces (default 50, as the paper's Fig. 3c; 10 in Fig. 3b) of equal length where
  K divides T, otherwise of lengths floor(T/K) or ceil(T/K) (piece i ends at floor((i+1) T / K)),
  so that every integer T can be asked for; T < K uses T one-step pieces.
* **fixed T**: minimise the exact final risk (``nqm._kernels._schedule_risk``) over the K log-rates
  with scipy's L-BFGS-B and the adjoint gradient (objective log risk, variables
  x_i = log(lr_i / lr_max) in [-46, log(1 - 1e-9)]).
* **bound**: every rate below the stability limit lr_max of the constant optimizer (2 / k_max for
  SGD with k = h^(1-p); 2 (1 + beta) / k_max for heavy ball, ...). A piece at such a rate is stable
  on its own however long it lasts, so the optimized schedule stays bounded for any piece length;
  a larger bound would let short pieces grow high-curvature errors on purpose (Chebyshev-like
  step sizes), which the paper excluded "for stability". The authors bounded by
  2 / (k_max + k_min) instead (``shared/spec/NQM_OFFICIAL.md``): nearly the same at p = 0
  (k_min / k_max = 1e-4) but 10 % lower at p = 0.75, where it excludes the best constant rate.
* **search on T**: let r(T) be the optimized risk. The best constant rate (``nqm.optimal_lr``)
  reaches the target after N_c steps; the constant schedule is one of the candidates at every T and
  the starting point of the optimization at T = N_c, so r(N_c) <= target: the answer is never worse
  than the best constant rate (a structural guarantee, tested). Below N_c we bracket the crossing
  (first probe at the information-theoretic bound, then halving while feasible) and close the
  bracket by a safeguarded secant (Illinois) on log r - log target against log T, then bisection.
  This assumes r(T) crosses the target once. That is not a theorem: with equal pieces a longer
  schedule cannot exactly emulate a shorter one (every bin would need its own rate), so r need not
  be monotone in T. It is monotone to the optimizer's accuracy in every case we scanned
  (``tests/nqm/test_schedule_opt.py``), and a final local check re-optimizes T - 1, T - 2, ... from
  the solution at T and moves down while they reach the target. Each probe is warm-started from
  the nearest probe already solved (rates of piece i carried over) and from the constant rate.

Results: steps (exact for the returned schedule: its risk after ``steps`` is <= target), the
schedule, the best constant rate's steps, the lower bound; :func:`schedule_sweep` does it for a
grid of batch sizes and powers (the core's batch-size sweep API), with the optimized schedules'
initial and final rates (Fig. 13: the final rate scales linearly with B at small B).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from nqm import _kernels as K
from nqm import _validate as V
from nqm._threads import one_blas_thread
from nqm.bounds import lower_bound_steps
from nqm.optimizers import stability_limit
from nqm.problem import NQM
from nqm.schedules import Schedule
from nqm.sweep import PAPER_POWERS, _fmt_b
from nqm.tuning import _check_problem, tune_cells

__all__ = ["OptimizedSchedule", "optimize_schedule", "optimal_schedule_for_steps",
           "ScheduleSweepResult", "schedule_sweep", "FIG3B_BATCH_SIZES", "piece_lengths"]

FIG3B_BATCH_SIZES = tuple(2.0 ** i for i in range(2, 21, 2))     # 2^2, 2^4, .., 2^20
_LBFGS = {"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-10, "maxcor": 20}


@dataclass(frozen=True, eq=False)
class OptimizedSchedule:
    """Result of :func:`optimize_schedule`.

    Attributes:
      steps: smallest T found for which the optimized K-piece schedule reaches the target.
      schedule: that schedule (its exact risk after ``steps`` updates is ``risk`` <= target).
      risk: risk of ``schedule`` after ``steps`` updates.
      risk_before: optimized risk at ``steps - 1`` (> target; the initial risk if steps is 0).
      constant_steps, constant_lr: steps and rate of the best constant learning rate.
      lower_bound: information-theoretic bound sum(c / h) / (2 B target) (real-valued).
      lr_max: the bound on every rate (stability limit of the constant optimizer).
      batch_size, power, momentum, nesterov, ema, target, n_pieces: the question asked.
      probes: number of T at which the schedule was optimized; evaluations: risk + gradient
        evaluations in total.
    """

    steps: int
    schedule: Schedule
    risk: float
    risk_before: float
    constant_steps: int
    constant_lr: float
    lower_bound: float
    lr_max: float
    batch_size: float
    power: float
    momentum: float
    nesterov: bool
    ema: float | None
    target: float
    n_pieces: int
    probes: int
    evaluations: int

    @property
    def initial_lr(self) -> float:
        return float(self.schedule.lr[0])

    @property
    def final_lr(self) -> float:
        """Rate of the last piece (paper Fig. 13)."""
        return float(self.schedule.lr[-1])

    @property
    def speedup(self) -> float:
        """constant_steps / steps."""
        return self.constant_steps / self.steps if self.steps else math.inf

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "schedule"}
        d["schedule"] = self.schedule.to_dict()
        d["batch_size"] = None if math.isinf(self.batch_size) else self.batch_size
        d["initial_lr"] = self.initial_lr
        d["final_lr"] = self.final_lr
        return d


def piece_lengths(steps: int, n_pieces: int) -> np.ndarray:
    """Lengths of the min(n_pieces, steps) pieces of a ``steps``-step schedule: piece i ends at
    floor((i + 1) steps / K), so lengths differ by at most one (all equal when K divides T)."""
    Ke = min(int(n_pieces), int(steps))
    edges = (np.arange(Ke + 1, dtype=np.int64) * int(steps)) // Ke
    return np.diff(edges)


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """Carry per-piece values to n pieces (same relative position in training)."""
    if x.size == n:
        return x.copy()
    src = (np.arange(x.size) + 0.5) / x.size
    dst = (np.arange(n) + 0.5) / n
    return np.interp(dst, src, x)


class _Problem:
    """Kernel arguments of one cell, and the objective log risk(T; x) with its gradient."""

    def __init__(self, problem: NQM, batch_size, power, momentum, nesterov, ema, target):
        self.k, c_eff = problem.preconditioned(power)
        self.nv = np.zeros_like(c_eff) if math.isinf(batch_size) else c_eff / batch_size
        self.x0sq = problem.x0sq
        self.wt = 0.5 * problem.counts * problem.h
        self.opt = K.SGD if momentum == 0.0 else (K.NESTEROV if nesterov else K.HEAVY_BALL)
        self.momentum = momentum
        self.use_ema = ema is not None
        self.gamma = 0.0 if ema is None else ema
        self.lr_max = stability_limit(problem, momentum=momentum, nesterov=nesterov, power=power)
        self.lt = math.log(target)
        self.evaluations = 0

    def risk(self, x, lengths, grad):
        n = x.size
        beta = np.full(n, self.momentum)
        self.evaluations += 1
        r, g = K._schedule_risk(self.opt, self.use_ema, self.k, self.nv, self.x0sq, self.wt,
                                self.lr_max * np.exp(x), beta, 1.0 - beta, self.gamma,
                                1.0 - self.gamma, lengths, grad)
        return r[-1], g

    def minimize(self, lengths, starts):
        """Best of L-BFGS-B runs from the best of ``starts`` (log risk, x)."""
        n = lengths.size
        best_f, best_x = math.inf, None
        for x0 in starts:
            x0 = np.clip(_resample(x0, n), K.X_LO, K.X_HI)
            r, _ = self.risk(x0, lengths, False)
            f = math.log(r) if r > 0 else -math.inf
            if f < best_f:
                best_f, best_x = f, x0

        def fun(x):
            r, g = self.risk(x, lengths, True)
            return math.log(r), g / r

        import scipy.optimize  # here: importing it costs ~0.4 s, most users of nqm never need it

        with one_blas_thread():
            res = scipy.optimize.minimize(fun, best_x, jac=True, method="L-BFGS-B",
                                          bounds=[(K.X_LO, K.X_HI)] * n, options=_LBFGS)
        if res.fun < best_f:
            # the objective at res.x, re-evaluated exactly (not a line-search estimate)
            r, _ = self.risk(res.x, lengths, False)
            if math.log(r) < best_f:
                best_f, best_x = math.log(r), res.x.copy()
        return best_f, best_x


def _search(cell: _Problem, n_pieces: int, n_const: int, x_const: float, t_guess: float):
    """Smallest T whose optimized risk is <= target (see the module docstring).
    Returns (T, x at T, f at T, f at T - 1, probes)."""
    solved = {}                                        # T -> (f, x) with f = log risk - log target
    const = np.full(n_pieces, x_const)

    def probe(T, warm):
        f, x = cell.minimize(piece_lengths(T, n_pieces), [warm, const])
        solved[T] = (f - cell.lt, x)
        return solved[T]

    def nearest(T):
        return solved[min(solved, key=lambda s: abs(math.log(s) - math.log(T)))][1]

    hi = n_const
    f_hi, _ = probe(hi, const)
    for _ in range(64):
        # the constant rate reaches the target at n_const by the core's closed form; a crossing
        # within rounding (1e-14) of the target may evaluate a hair above it here: step on
        if f_hi <= 0.0:
            break
        hi += 1
        f_hi, _ = probe(hi, const)
    if f_hi > 0.0:
        raise ValueError("the best constant rate's schedule does not reach the target at its own "
                         "steps (internal inconsistency; please report)")
    lo, f_lo = 0, math.inf                             # T = 0: the initial risk (> target)
    # bracket: first probe at the lower bound, then halve while feasible
    T = int(min(hi - 1, max(1, math.floor(t_guess))))
    while T >= 1 and T < hi:
        f, _ = probe(T, nearest(T))
        if f > 0.0:
            lo, f_lo = T, f
            break
        hi, f_hi = T, f
        T = hi // 2
    fl, fh = f_lo, f_hi                                # Illinois-modified copies
    last, streak = 0, 0
    while hi - lo > 1:
        if streak >= 3 or lo < 1 or not math.isfinite(fl):
            T = (lo + hi) // 2                         # no usable secant, or stalled: bisect
            streak = 0
        else:
            # secant of f against log T between the brackets
            a, b = math.log(lo), math.log(hi)
            T = int(round(math.exp(a + (b - a) * fl / (fl - fh))))
        T = min(hi - 1, max(lo + 1, T))
        f, _ = probe(T, nearest(T))
        if f > 0.0:
            lo, f_lo, fl = T, f, f
            if last < 0:
                fh *= 0.5                              # Illinois: the other end is stuck
            streak = streak + 1 if last < 0 else 1
            last = -1
        else:
            hi, f_hi, fh = T, f, f
            if last > 0:
                fl *= 0.5
            streak = streak + 1 if last > 0 else 1
            last = 1
    # final local check: re-optimize below the answer from the answer's own schedule
    for _ in range(50):
        if lo < 1:
            break
        f, x = cell.minimize(piece_lengths(lo, n_pieces), [solved[hi][1], const, solved[lo][1]])
        f -= cell.lt
        solved[lo] = (min(f, solved[lo][0]), x if f < solved[lo][0] else solved[lo][1])
        if f > 0.0:
            break
        hi = lo
        lo -= 1
        if lo >= 1 and lo not in solved:
            probe(lo, solved[hi][1])
    f_before = solved[lo][0] if lo >= 1 else math.nan
    return hi, solved[hi][1], solved[hi][0], f_before, len(solved)


def _optimize_cell(problem, B, p, beta, nesterov, gamma, tgt, n_pieces, n_const, lr_const):
    cell = _Problem(problem, B, p, beta, nesterov, gamma, tgt)
    lb = (lower_bound_steps(problem, batch_size=B, target=tgt).steps_real
          if not math.isinf(B) else 1.0)
    if n_const == 0:
        T, x, f, fb, probes = 0, np.zeros(0), math.log(problem.initial_risk) - cell.lt, math.nan, 0
        sched = None
    else:
        x_const = math.log(lr_const / cell.lr_max)
        T, x, f, fb, probes = _search(cell, n_pieces, n_const, x_const, lb)
        sched = Schedule(cell.lr_max * np.exp(x), piece_lengths(T, n_pieces), None,
                         f"optimized {min(n_pieces, T)}-piece")
    return T, sched, math.exp(f + cell.lt), (math.exp(fb + cell.lt) if T else
                                             problem.initial_risk), lb, cell, probes


def _check(problem, batch_size, n_pieces, momentum, nesterov, power, ema, target):
    problem = _check_problem(problem)
    B = V.batch_size(batch_size)
    if isinstance(n_pieces, bool) or not isinstance(n_pieces, (int, np.integer)) or n_pieces < 1:
        raise ValueError(f"n_pieces must be an integer >= 1, got {n_pieces!r}")
    beta = V.momentum(momentum)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
    gamma = None if ema is None else V.ema(ema)
    if gamma is not None and beta != 0.0:
        raise ValueError("ema is supported with momentum=0 only in optimize_schedule "
                         f"(the constant-rate start needs SGD + EMA), got momentum={momentum!r}")
    return problem, B, int(n_pieces), beta, bool(nesterov), V.power(power), gamma, V.target(target)


def optimize_schedule(problem: NQM | None = None, *, batch_size: float, n_pieces: int = 50,
                      momentum: float = 0.0, nesterov: bool = False, power: float = 0.0,
                      ema: float | None = None, target: float = 0.01) -> OptimizedSchedule:
    """The smallest number of steps for which an optimized K-piece learning-rate schedule reaches
    ``target``, and that schedule (paper section 3.6.2; method and assumptions in the module
    docstring).

    Args:
      problem: the NQM (default ``NQM.paper()``).
      batch_size: B >= 1.
      n_pieces: K (paper: 50 in Fig. 3c, 10 in Fig. 3b).
      momentum: a fixed momentum (the rates are optimized with it held fixed), 0 for SGD.
      nesterov, power: the optimizer (see :class:`nqm.Optimizer`).
      ema: a fixed decay of an EMA of the iterates (SGD only), or None.
      target: target risk.

    Example:
      >>> from nqm import optimize_schedule
      >>> r = optimize_schedule(batch_size=2**10, n_pieces=10)
      >>> r.steps <= r.constant_steps
      True
    """
    problem, B, n, beta, nest, p, gamma, tgt = _check(problem, batch_size, n_pieces, momentum,
                                                      nesterov, power, ema, target)
    row = tune_cells(problem, [B], [p], beta, nest, tgt, gamma)[0, 0]
    if row[0] < 0:
        raise ValueError(f"target={tgt!r} is not reached by any constant rate at "
                         f"batch_size={B!r}")
    T, sched, risk, before, lb, cell, probes = _optimize_cell(problem, B, p, beta, nest, gamma,
                                                              tgt, n, int(row[0]), float(row[1]))
    if sched is None:
        sched = Schedule(np.array([float(row[1])]), np.array([1]), None, "none needed")
    return OptimizedSchedule(
        steps=T, schedule=sched, risk=risk, risk_before=before, constant_steps=int(row[0]),
        constant_lr=float(row[1]), lower_bound=lb, lr_max=cell.lr_max, batch_size=B, power=p,
        momentum=beta, nesterov=nest and beta > 0, ema=gamma, target=tgt, n_pieces=n,
        probes=probes, evaluations=cell.evaluations)


def optimal_schedule_for_steps(problem: NQM | None = None, *, steps: int, batch_size: float,
                               n_pieces: int = 50, momentum: float = 0.0, nesterov: bool = False,
                               power: float = 0.0, ema: float | None = None,
                               init=None) -> tuple[Schedule, float]:
    """The K-piece schedule of ``steps`` steps with the smallest final risk: L-BFGS-B with the
    adjoint gradient from the better of ``init`` (K rates, optional) and the constant schedule at
    lr_max / 10, rates bounded by the stability limit lr_max (module docstring).
    Returns (schedule, its exact final risk)."""
    problem, B, n, beta, nest, p, gamma, _ = _check(problem, batch_size, n_pieces, momentum,
                                                    nesterov, power, ema, 0.01)
    T = _steps_pos(steps)
    cell = _Problem(problem, B, p, beta, nest, gamma, 0.01)
    starts = [np.full(min(n, T), math.log(0.1))]
    if init is not None:
        lr0 = V.vector("init", init, positive=True)
        starts.insert(0, np.log(lr0 / cell.lr_max))
    f, x = cell.minimize(piece_lengths(T, n), starts)
    return (Schedule(cell.lr_max * np.exp(x), piece_lengths(T, n), None,
                     f"optimized {min(n, T)}-piece"), math.exp(f))


def _steps_pos(steps) -> int:
    T = V.steps(steps)
    if T < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return T


# ---------------------------------------------------------------------- sweeps
@dataclass(frozen=True, eq=False)
class ScheduleSweepResult:
    """Optimized-schedule steps on a grid of (power, batch size) (paper Fig. 3b, Fig. 13).

    Attributes:
      batch_sizes (nB,), powers (nP,).
      steps: optimized-schedule steps, int64 (nP, nB).
      constant_steps, constant_lr: best constant rate's steps and rate (nP, nB).
      initial_lr, final_lr: first and last rate of every optimized schedule (nP, nB).
      rates: every optimized schedule's rates, (nP, nB, K) (NaN where T < K pieces).
      lower_bound: information-theoretic bound (nB,).
      n_pieces, momentum, nesterov, ema, target, problem: the question asked.
    """

    batch_sizes: np.ndarray
    powers: np.ndarray
    steps: np.ndarray
    constant_steps: np.ndarray
    constant_lr: np.ndarray
    initial_lr: np.ndarray
    final_lr: np.ndarray
    rates: np.ndarray
    lower_bound: np.ndarray
    n_pieces: int
    momentum: float
    nesterov: bool
    ema: float | None
    target: float
    problem: str

    def table(self) -> str:
        lines = [f"steps to target {self.target:g} with optimized {self.n_pieces}-piece schedules "
                 f"(constant-rate steps in brackets), {self.problem}"]
        head = f"{'batch size':>10}" + "".join(
            f" | {'p=' + format(p, 'g'):>8} {'(const)':>9} {'final lr':>9}" for p in self.powers) \
            + f" | {'bound':>9}"
        lines += [head, "-" * len(head)]
        for j, b in enumerate(self.batch_sizes):
            row = f"{_fmt_b(b):>10}"
            for i in range(self.powers.size):
                row += (f" | {self.steps[i, j]:>8d} {'(' + str(self.constant_steps[i, j]) + ')':>9}"
                        f" {self.final_lr[i, j]:>9.3g}")
            lines.append(row + f" | {self.lower_bound[j]:>9.4g}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "batch_sizes": [None if math.isinf(b) else float(b) for b in self.batch_sizes],
            "powers": self.powers.tolist(), "steps": self.steps.tolist(),
            "constant_steps": self.constant_steps.tolist(),
            "constant_lr": self.constant_lr.tolist(), "initial_lr": self.initial_lr.tolist(),
            "final_lr": self.final_lr.tolist(),
            "rates": np.where(np.isnan(self.rates), None, self.rates).tolist(),
            "lower_bound": self.lower_bound.tolist(), "n_pieces": self.n_pieces,
            "momentum": self.momentum, "nesterov": self.nesterov, "ema": self.ema,
            "target": self.target, "problem": self.problem,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def schedule_sweep(problem: NQM | None = None, *, batch_sizes=FIG3B_BATCH_SIZES,
                   powers=PAPER_POWERS, n_pieces: int = 10, momentum: float = 0.0,
                   nesterov: bool = False, ema: float | None = None, target: float = 0.01,
                   progress: bool = False) -> ScheduleSweepResult:
    """Optimized-schedule steps for every (power, batch size) (paper Fig. 3b: 10 pieces, powers
    0, 0.25, 0.5, 0.75, B = 2^2, 2^4, .., 2^20), with the best constant rate of each cell tuned
    first (all cells at once, ``nqm.batch_size_sweep``'s kernel). ``progress``: a tqdm bar."""
    from tqdm import tqdm

    problem, _, n, beta, nest, _, gamma, tgt = _check(problem, 1.0, n_pieces, momentum, nesterov,
                                                      0.0, ema, target)
    B = V.batch_sizes(batch_sizes)
    if np.any(np.isinf(B)):
        raise ValueError("batch_sizes must be finite for schedule sweeps")
    P = V.vector("powers", powers, positive=False)
    for p in P:
        V.power(float(p))
    const = tune_cells(problem, B, P, beta, nest, tgt, gamma)
    if np.any(const[..., 0] < 0):
        raise ValueError(f"target={tgt!r} is not reached by any constant rate in some cell")
    shape = (P.size, B.size)
    steps = np.zeros(shape, np.int64)
    init = np.zeros(shape)
    final = np.zeros(shape)
    rates = np.full(shape + (n,), np.nan)
    with tqdm(total=P.size * B.size, disable=not progress, desc="schedules") as bar:
        for i, p in enumerate(P):
            for j, b in enumerate(B):
                T, sched, *_ = _optimize_cell(problem, float(b), float(p), beta, nest, gamma, tgt,
                                              n, int(const[i, j, 0]), float(const[i, j, 1]))
                steps[i, j] = T
                if sched is not None:
                    init[i, j] = sched.lr[0]
                    final[i, j] = sched.lr[-1]
                    rates[i, j, :sched.n_pieces] = sched.lr
                bar.update()
    bound = np.array([lower_bound_steps(problem, batch_size=b, target=tgt).steps_real for b in B])
    return ScheduleSweepResult(
        batch_sizes=B, powers=P, steps=steps, constant_steps=const[..., 0].astype(np.int64),
        constant_lr=const[..., 1].copy(), initial_lr=init, final_lr=final, rates=rates,
        lower_bound=bound, n_pieces=n, momentum=beta, nesterov=nest and beta > 0, ema=gamma,
        target=tgt, problem=problem.name)
