"""Nelder-Mead that stops as soon as its remaining iterations can no longer change the result.

The iterations are those of ``scipy.optimize.minimize(method="Nelder-Mead")`` (scipy 1.11 - 1.17,
non-adaptive, default initial simplex, no bounds), step for step, so the result is bit-identical to
scipy's with the same ``maxiter``, ``xatol`` and ``fatol``. One thing is added: the objective may
carry state between calls (a warm start), and the whole state of the search after an iteration
(simplex, its values, the objective's state) is remembered. When a state recurs, every later
iteration repeats a known cycle, so the state that iteration ``maxiter`` would end in is known
without running it; that state is returned. This is exact, not a tolerance: a search that has
collapsed onto one point whose value jitters with the warm start (scipy then runs all ``maxiter``
iterations, because the value spread never falls below ``fatol``) ends after one period.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np

__all__ = ["nelder_mead"]

# scipy's coefficients (reflection, expansion, contraction, shrink) and initial simplex steps
RHO, CHI, PSI, SIGMA = 1, 2, 0.5, 0.5
NONZDELT, ZDELT = 0.05, 0.00025


def nelder_mead(fun: Callable[[np.ndarray], float], x0, *, xatol: float, fatol: float,
                maxiter: int, state: Callable[[], Hashable] = lambda: None):
    """Minimise ``fun`` from ``x0``; ``state()`` returns the objective's own state (whatever its
    next value depends on besides the point). Returns (x, f, iterations run): the best point and
    value scipy would return after at most ``maxiter`` iterations."""
    x0 = np.asarray(np.atleast_1d(x0).flatten(), dtype=np.float64)
    N = len(x0)
    sim = np.empty((N + 1, N), dtype=x0.dtype)
    sim[0] = x0
    for k in range(N):
        y = np.array(x0, copy=True)
        y[k] = (1 + NONZDELT) * y[k] if y[k] != 0 else ZDELT
        sim[k + 1] = y
    fsim = np.full((N + 1,), np.inf, dtype=float)

    def f(x):
        return fun(np.copy(x))

    for k in range(N + 1):
        fsim[k] = f(sim[k])
    for _ in range(2):                  # scipy sorts twice (ties may be reordered)
        ind = np.argsort(fsim)
        sim = np.take(sim, ind, 0)
        fsim = np.take(fsim, ind, 0)
    iterations = 1
    seen: dict = {}
    history: list = []
    one2np1 = list(range(1, N + 1))
    while iterations < maxiter:
        if (np.max(np.ravel(np.abs(sim[1:] - sim[0]))) <= xatol
                and np.max(np.abs(fsim[0] - fsim[1:])) <= fatol):
            break
        xbar = np.add.reduce(sim[:-1], 0) / N
        xr = (1 + RHO) * xbar - RHO * sim[-1]
        fxr = f(xr)
        if fxr < fsim[0]:
            xe = (1 + RHO * CHI) * xbar - RHO * CHI * sim[-1]
            fxe = f(xe)
            if fxe < fxr:
                sim[-1], fsim[-1] = xe, fxe
            else:
                sim[-1], fsim[-1] = xr, fxr
        elif fxr < fsim[-2]:
            sim[-1], fsim[-1] = xr, fxr
        else:
            doshrink = False
            if fxr < fsim[-1]:
                xc = (1 + PSI * RHO) * xbar - PSI * RHO * sim[-1]
                fxc = f(xc)
                if fxc <= fxr:
                    sim[-1], fsim[-1] = xc, fxc
                else:
                    doshrink = True
            else:
                xcc = (1 - PSI) * xbar + PSI * sim[-1]
                fxcc = f(xcc)
                if fxcc < fsim[-1]:
                    sim[-1], fsim[-1] = xcc, fxcc
                else:
                    doshrink = True
            if doshrink:
                for j in one2np1:
                    sim[j] = sim[0] + SIGMA * (sim[j] - sim[0])
                    fsim[j] = f(sim[j])
        iterations += 1
        ind = np.argsort(fsim)
        sim = np.take(sim, ind, 0)
        fsim = np.take(fsim, ind, 0)
        key = (sim.tobytes(), fsim.tobytes(), state())
        if key in seen:
            # iterations seen[key] .. now repeat forever: jump to the state of iteration maxiter
            first = seen[key]
            sim, fsim = history[first + (maxiter - first) % (iterations - first) - 2]
            break
        seen[key] = iterations
        history.append((sim.copy(), fsim.copy()))      # history[i]: after iteration i + 2
    return sim[0], float(np.min(fsim)), iterations
