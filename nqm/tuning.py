"""Optimal hyperparameters: the learning rate (and momentum, and preconditioner power where asked)
that minimise the exact steps to target at a given batch size (paper section 3.6.1, Fig. 12).

The paper tuned on grids. Here (``nqm._kernels._tune_cell``):

1. a continuous search on x = log(lr / lr_max) (lr_max the stability limit for the current momentum,
   so the search never leaves the stable region) and y = log(1 - momentum): coarse scans, then
   Brent's method (nested for momentum), on a smooth relaxation of the steps, the real t where the
   closed-form risk (fast oscillations of lightly damped bins replaced by their phase average)
   comes down to the target;
2. the exact integer optimum: N = exact first crossing at that point; then, while a nearby
   (x, y) brings the exact risk after N - 1 steps to the target, move there. This uses the exact
   characterisation  min over hyperparameters of N  =  the least n with  min risk(n) <= target.

The integer landscape is slightly jagged where lightly damped bins oscillate (momentum at large B):
the optimum found is a local one of that landscape, typically within 0.2 % of the best seen in
exhaustive checks, and never worse than the notebook's grid (``benchmarks/bench_nqm_sweep.py``).
A sweep (``tune_cells``) then offers each cell its neighbours' optimum (``_adopt_neighbours``), and
a single cell (:func:`optimal_lr`, :func:`optimal_hyperparameters`) is tuned together with its
neighbours B/2 and 2B on the factor-2 ladder of paper Fig. 3a (``_tune_one``), so that asking for
one cell never gives more steps than a sweep over that ladder (checked on all 88 cells of Fig. 3a,
both binnings, SGD and tuned momentum: ``tests/nqm/test_tuning.py`` holds the cheap part).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import config as numba_config

from nqm import _kernels as K
from nqm import _validate as V
from nqm._memo import memo
from nqm.optimizers import stability_limit
from nqm.problem import NQM

__all__ = ["OptimalResult", "optimal_lr", "optimal_hyperparameters"]


@dataclass(frozen=True)
class OptimalResult:
    """Result of :func:`optimal_lr` / :func:`optimal_hyperparameters`.

    Attributes:
      steps: exact steps to target with the hyperparameters below.
      lr: learning rate.
      momentum: momentum beta (0 for SGD).
      nesterov: Nesterov momentum (else heavy ball).
      power: preconditioner power p.
      batch_size: B (inf: noise-free).
      target: target risk.
      steps_relaxed: optimum of the smooth relaxation (real-valued; the exact integer ``steps`` can
        be slightly lower where oscillations dip early, or up to one higher).
      lr_max: stability limit of lr for this momentum and power.
      tuned: which hyperparameters were optimised, e.g. ("lr", "momentum") or ("lr", "ema").
      ema: decay gamma of the EMA of the iterates (tuned or fixed), or None.
    """

    steps: int
    lr: float
    momentum: float
    nesterov: bool
    power: float
    batch_size: float
    target: float
    steps_relaxed: float
    lr_max: float
    tuned: tuple
    ema: float | None = None

    @property
    def effective_lr(self) -> float:
        """lr / (1 - momentum) (paper section 3.2)."""
        return self.lr / (1.0 - self.momentum)

    @property
    def examples(self) -> float:
        return self.batch_size * self.steps

    @property
    def at_stability_limit(self) -> bool:
        """True when lr is within 1 % of the stability limit."""
        return self.lr > 0.99 * self.lr_max

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["batch_size"] = None if math.isinf(self.batch_size) else self.batch_size
        d["tuned"] = list(self.tuned)
        d["effective_lr"] = self.effective_lr
        return d


def _check_problem(problem) -> NQM:
    if problem is None:
        return NQM.paper()
    if not isinstance(problem, NQM):
        raise ValueError(f"problem must be an nqm.NQM or None, got {type(problem).__name__}")
    return problem


def tune_cells(problem: NQM, batch_sizes, powers, momentum, nesterov: bool,
               target: float, ema=None) -> np.ndarray:
    """Tune every (power, batch size) pair at once (cells in parallel). ``momentum`` is a float
    (fixed; 0 = SGD) or "tune"; ``ema`` None, a fixed decay gamma or "tune" (then momentum must
    be 0: SGD + EMA, kernel code 3, whose second hyperparameter is gamma). Returns an array (len(powers), len(batch_sizes), 8) of
    [steps, lr, beta, 1 - beta, relaxed steps, x, y, objective evaluations]; steps < 0 flags a
    failure."""
    B = np.asarray(batch_sizes, dtype=np.float64)
    P = np.asarray(powers, dtype=np.float64)
    tune = momentum == V.TUNE
    if ema is not None:
        if momentum != 0.0:
            raise ValueError("ema (a fixed decay or 'tune') is supported with momentum=0 only "
                             f"(SGD with an average of the iterates), got momentum={momentum!r}")
        tune = ema == V.TUNE
        code = K.SGD_EMA
        y_fixed = 0.0 if tune else math.log1p(-ema)
    elif tune:
        code = K.NESTEROV if nesterov else K.HEAVY_BALL
        y_fixed = 0.0
    elif momentum == 0.0:
        code, y_fixed = K.SGD, 0.0
    else:
        code = K.NESTEROV if nesterov else K.HEAVY_BALL
        y_fixed = math.log1p(-momentum)
    nb = problem.n_bins
    ncell = P.size * B.size
    Kc = np.empty((ncell, nb))
    NVc = np.empty((ncell, nb))
    for i, p in enumerate(P):
        k, c_eff = problem.preconditioned(float(p))
        for j, b in enumerate(B):
            Kc[i * B.size + j] = k
            NVc[i * B.size + j] = 0.0 if math.isinf(b) else c_eff / b
    wt = 0.5 * problem.counts * problem.h
    # each cell is tuned on its own, so a cell already tuned on this problem (e.g. by a sweep
    # before the S_min ladder) is taken from the problem's memo, not tuned again
    done = memo(problem)
    keys = [("tuned cell", code, bool(tune), float(y_fixed), float(p), float(b), float(target))
            for p in P for b in B]
    todo: dict = {}
    for i, key in enumerate(keys):
        if key not in done:
            todo.setdefault(key, i)
    if todo:
        idx = list(todo.values())
        rows = _tune_rows(code, bool(tune), float(y_fixed), Kc[idx], NVc[idx], problem.x0sq, wt,
                          float(target))
        done.update(zip(todo, rows, strict=True))
    out = np.array([done[key] for key in keys]).reshape(P.size, B.size, 8)
    _adopt_neighbours(out, code, B, Kc.reshape(P.size, B.size, nb), NVc.reshape(P.size, B.size, nb),
                      problem.x0sq, wt, target)
    return out


def _tune_rows(code: int, tune: bool, y_fixed: float, Kc, NVc, x0sq, wt,
               target: float) -> np.ndarray:
    """Tune the cells (rows of Kc: preconditioned curvatures, NVc: noise variances c_eff / B) in
    parallel, one cell a task on a pool of ``numba.config.NUMBA_NUM_THREADS`` threads (the kernel
    releases the GIL; cells take ~1 to ~100 ms, so tasks handed out as threads free up balance
    them). Each cell's arithmetic is its own: the rows do not depend on the pool."""
    out = np.empty((Kc.shape[0], 8))

    def tune_cell(i: int) -> None:
        K._tune_cell(code, tune, y_fixed, Kc[i], NVc[i], x0sq, wt, target, out[i])

    workers = min(numba_config.NUMBA_NUM_THREADS, out.shape[0])
    if workers <= 1:
        for i in range(out.shape[0]):
            tune_cell(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(tune_cell, range(out.shape[0])))
    return out


def _adopt_neighbours(out, code, B, Kc, NVc, x0sq, wt, target) -> None:
    """Where the tuner stopped in a local optimum, try the optimum of the neighbouring batch sizes
    (same power, so the same coordinates x, y), in place. At fixed hyperparameters the expected risk
    only falls as B grows (the noise term scales with 1/B), so the smaller neighbour's optimum
    reaches the target no later: after the ascending pass tuned steps never increase with B, and
    the descending pass keeps that (a cell that takes its larger neighbour's optimum still needs at
    least the neighbour's steps)."""
    order = np.argsort(B, kind="stable")
    for i in range(out.shape[0]):
        for sweep in (order, order[::-1]):
            for a, j in zip(sweep[:-1], sweep[1:], strict=True):
                cur = out[i, j]
                if out[i, a, 0] < 0:
                    continue
                n = K._steps_at(code, out[i, a, 5], out[i, a, 6], Kc[i, j], NVc[i, j], x0sq, wt,
                                target, cur[0] if cur[0] > 0 else 1.0)
                if 0.0 <= n < cur[0] or (cur[0] < 0 <= n):
                    cur[0] = n
                    cur[1:4] = out[i, a, 1:4]
                    cur[5:7] = out[i, a, 5:7]


def _tune_one(problem: NQM, batch_size: float, power: float, momentum, nesterov: bool,
               target: float, ema=None) -> np.ndarray:
    """The tuned row (as in :func:`tune_cells`) of one cell, tuned together with its neighbours
    B/2 (if >= 1) and 2B and offered their optima: the jagged few-step landscape at large B can
    stop the tuner of one cell in a local optimum that a neighbour's optimum beats (3x the cost of
    one cell). B = inf has no neighbours."""
    if math.isinf(batch_size):
        ladder = [batch_size]
    else:
        ladder = [b for b in (batch_size / 2, batch_size, batch_size * 2) if b >= 1.0]
    rows = tune_cells(problem, ladder, [power], momentum, nesterov, target, ema)[0]
    return rows[ladder.index(batch_size)]


def _result(problem, row, momentum_in, nesterov, power, batch_size, target, tuned, ema=None):
    if row[0] < 0:
        raise ValueError(f"target={target!r} could not be reached within 2^53 steps at "
                         f"batch_size={batch_size!r} with any stable hyperparameters")
    gamma = None if ema is None else float(row[2])
    beta = float(row[2]) if ema is None and (momentum_in == V.TUNE or momentum_in != 0.0) else 0.0
    return OptimalResult(
        steps=int(row[0]), lr=float(row[1]), momentum=beta, nesterov=bool(nesterov and beta > 0),
        power=float(power), batch_size=float(batch_size), target=float(target),
        steps_relaxed=float(row[4]),
        lr_max=stability_limit(problem, momentum=beta, nesterov=nesterov, power=power),
        tuned=tuned, ema=gamma)


def optimal_lr(problem: NQM | None = None, *, batch_size: float, momentum: float = 0.0,
               nesterov: bool = False, power: float = 0.0, ema: float | None = None,
               target: float = 0.01) -> OptimalResult:
    """The learning rate that minimises the exact steps to ``target`` at ``batch_size``, with the
    momentum (or the EMA decay) and preconditioner power held fixed.

    Args:
      problem: the NQM (default: ``NQM.paper()``).
      batch_size: B >= 1 (``math.inf``: noise-free).
      momentum: fixed beta in [0, 1) (0: SGD).
      nesterov: Nesterov instead of heavy ball.
      power: fixed preconditioner power in [0, 1].
      ema: fixed decay gamma of an EMA of the iterates (SGD only), or None.
      target: target risk (paper: 0.01).

    Example:
      >>> from nqm import optimal_lr
      >>> r = optimal_lr(batch_size=2**18)      # paper problem, SGD: limited by stability
      >>> r.at_stability_limit
      True
    """
    problem = _check_problem(problem)
    B, p, tgt = V.batch_size(batch_size), V.power(power), V.target(target)
    beta = V.momentum(momentum)
    gamma = None if ema is None else V.ema(ema)
    row = _tune_one(problem, B, p, beta, bool(nesterov), tgt, gamma)
    return _result(problem, row, beta, nesterov, p, B, tgt, ("lr",), gamma)


def optimal_hyperparameters(problem: NQM | None = None, *, batch_size: float,
                            momentum="tune", nesterov: bool = False, power=0.0, ema=None,
                            target: float = 0.01) -> OptimalResult:
    """Jointly optimal learning rate, momentum (``momentum="tune"``, default; or a fixed value) and,
    with ``power="tune"``, preconditioner power in [0, 1] (an outer bounded Brent search on the
    relaxed steps, endpoints included). With ``ema="tune"`` (and ``momentum=0``) the decay gamma
    of an EMA of the iterates is tuned jointly with lr instead of momentum (SGD + EMA); a number
    fixes it.

    Returns an :class:`OptimalResult`; ``tuned`` lists what was optimised.
    """
    problem = _check_problem(problem)
    B, tgt = V.batch_size(batch_size), V.target(target)
    mom = V.tunable("momentum", momentum, V.momentum)
    pw = V.tunable("power", power, V.power)
    em = None if ema is None else V.tunable("ema", ema, V.ema)
    tuned = ("lr",) + (("momentum",) if mom == V.TUNE else ()) + (("power",) if pw == V.TUNE else ())
    tuned += ("ema",) if em == V.TUNE else ()
    if pw != V.TUNE:
        row = _tune_one(problem, B, pw, mom, bool(nesterov), tgt, em)
        return _result(problem, row, mom, nesterov, pw, B, tgt, tuned, em)
    rows = {}

    def relaxed(p):
        r = tune_cells(problem, [B], [p], mom, bool(nesterov), tgt, em)[0, 0]
        rows[p] = r
        return r[4]

    import scipy.optimize  # here: importing it costs ~0.4 s, most callers never need it

    opt = scipy.optimize.minimize_scalar(relaxed, bounds=(0.0, 1.0), method="bounded",
                                         options={"xatol": 1e-4})
    for p in (0.0, 1.0):
        relaxed(p)
    best = min(rows, key=lambda p: (rows[p][0], rows[p][4]))
    del opt
    row = _tune_one(problem, B, best, mom, bool(nesterov), tgt, em)
    return _result(problem, row, mom, nesterov, best, B, tgt, tuned, em)
