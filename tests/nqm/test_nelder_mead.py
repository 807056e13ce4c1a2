"""nqm._nelder_mead reproduces scipy's Nelder-Mead bit for bit, also when it stops early because
the search has entered a cycle (an objective whose value jitters with a warm start)."""

import math

import numpy as np
import pytest
import scipy.optimize

from nqm import NQM
from nqm import _kernels as K
from nqm._nelder_mead import nelder_mead
from nqm.critical import _sgd_flow_e_min

OPTIONS = {"xatol": 1e-6, "fatol": 1e-10}


def _jittery_bowl():
    """A valley whose value also depends on how often it was called (mod 5), by more than fatol:
    scipy never converges, the search collapses onto a point and cycles there."""
    state = {"last": 0}

    def fun(z):
        state["last"] = (state["last"] + 1) % 5
        return (z[0] - 0.3) ** 2 + 10.0 * (z[1] + 0.7) ** 2 + 1.0 + 1e-8 * state["last"]

    return state, fun


def _oscillator_examples(problem, damping):
    """The objective of tuned momentum's E_min (``nqm.critical._momentum_flow_e_min``), started
    at gamma n_sgd = damping."""
    n_sgd, kappa = _sgd_flow_e_min(problem, 0.0, 0.01)
    k, c_eff = problem.preconditioned(0.0)
    wt = 0.5 * problem.counts * problem.h
    state = {"last": damping}

    def fun(z):
        r, gamma = math.exp(z[0]), math.exp(z[1])
        tau = K._osc_crossing(r, gamma, k, c_eff, problem.x0sq, wt, 0.01, state["last"])
        if tau < 0:
            return 1e300
        state["last"] = tau
        return tau / gamma / n_sgd

    return state, fun, np.array([math.log(kappa), math.log(damping / n_sgd)])


@pytest.mark.parametrize("maxiter", [5, 60, 150, 151, 400, 401, 1000])
def test_same_result_as_scipy_when_it_cycles(maxiter):
    state, fun = _jittery_bowl()
    want = scipy.optimize.minimize(fun, [2.0, 1.0], method="Nelder-Mead",
                                   options={**OPTIONS, "maxiter": maxiter})
    state, fun = _jittery_bowl()
    x, f, iterations = nelder_mead(fun, [2.0, 1.0], maxiter=maxiter, state=lambda: state["last"],
                                   **OPTIONS)
    assert f == want.fun and np.array_equal(x, want.x)
    assert want.nit == maxiter and iterations <= min(maxiter, 150)


def test_tuned_momentum_e_min_search_stops_early_with_scipys_result():
    problem = NQM.paper(10_000, bins=20)     # this start cycles after ~120 iterations
    state, fun, z0 = _oscillator_examples(problem, 3.0)
    want = scipy.optimize.minimize(fun, z0, method="Nelder-Mead",
                                   options={**OPTIONS, "maxiter": 2000})
    state, fun, z0 = _oscillator_examples(problem, 3.0)
    x, f, iterations = nelder_mead(fun, z0, maxiter=2000, state=lambda: state["last"], **OPTIONS)
    assert f == want.fun and np.array_equal(x, want.x)
    assert want.nit == 2000 and iterations < 200


def test_converged_search_matches_scipy():
    fun = scipy.optimize.rosen
    want = scipy.optimize.minimize(fun, [-1.2, 1.0, 0.5], method="Nelder-Mead",
                                   options={**OPTIONS, "maxiter": 3000})
    x, f, iterations = nelder_mead(fun, [-1.2, 1.0, 0.5], maxiter=3000, **OPTIONS)
    assert f == want.fun and np.array_equal(x, want.x) and iterations == want.nit
