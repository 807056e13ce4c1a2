"""Library calls shared by several figures, memoised within one process so that
``python -m figures`` computes each tuned sweep once (every figure still works on its own)."""

from __future__ import annotations

import functools

from nqm import NQM, batch_size_sweep, optimize_schedule, schedule_sweep

PAPER_POWERS = (0.0, 0.25, 0.5, 0.75)


def batch_sizes(lo: int, hi: int, step: int = 1, *, quick: bool = False) -> tuple:
    """2^lo, 2^(lo+step), .., 2^hi; --quick keeps every other one."""
    exps = list(range(lo, hi + 1, step * (2 if quick else 1)))
    return tuple(2.0 ** e for e in exps)


@functools.cache
def paper_problem() -> NQM:
    """The paper's problem (d = 10^4, h_i = 1/i, C = H), 100 bins, accurate binning."""
    return NQM.paper()


@functools.cache
def sweep(momentum, batch_sizes: tuple, powers: tuple = PAPER_POWERS, target: float = 0.01):
    """Tuned steps to target (``nqm.batch_size_sweep``) on the paper problem."""
    return batch_size_sweep(paper_problem(), batch_sizes=list(batch_sizes), powers=list(powers),
                            momentum=momentum, target=target)


@functools.cache
def ema_sweep(batch_sizes: tuple, powers: tuple = PAPER_POWERS, target: float = 0.01):
    """SGD + EMA of the iterates with (lr, gamma) tuned jointly (``nqm.batch_size_sweep`` with
    ``ema="tune"``) on the paper problem."""
    return batch_size_sweep(paper_problem(), batch_sizes=list(batch_sizes), powers=list(powers),
                            momentum=0.0, ema="tune", target=target)


@functools.cache
def schedules(batch_sizes: tuple, powers: tuple = PAPER_POWERS, n_pieces: int = 10,
              target: float = 0.01):
    """Optimized K-piece SGD schedules (``nqm.schedule_sweep``) on the paper problem."""
    return schedule_sweep(paper_problem(), batch_sizes=list(batch_sizes), powers=list(powers),
                          n_pieces=n_pieces, target=target)


@functools.cache
def optimized_schedule(batch_size: float, power: float = 0.0, n_pieces: int = 50,
                       target: float = 0.01):
    """One optimized K-piece SGD schedule (``nqm.optimize_schedule``), with its piece lengths."""
    return optimize_schedule(paper_problem(), batch_size=batch_size, power=power,
                             n_pieces=n_pieces, target=target)
