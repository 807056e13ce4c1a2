"""Critical batch size: the exact limits against the tuned steps they are limits of, the other
definitions, and the fit of measured points."""

import math

import numpy as np
import pytest
from numba import njit

import nqm

PAPER = nqm.NQM.paper()


def test_default_call_and_repr():
    r = nqm.critical_batch()
    assert r.definition == "mccandlish" and r.optimizer == "sgd"
    assert r.value == pytest.approx(r.e_min / r.s_min)
    assert r.value > 850 and r.value < 950
    text = repr(r)
    assert "B_crit=" in text and "S_min=" in text and "E_min=" in text


def test_limits_bracket_the_tuned_steps():
    """E_min <= B S(B) with B S(B) -> E_min as B -> 0; S_min <= S(B) with S(B) -> S_min."""
    r = nqm.critical_batch(PAPER)
    s1 = nqm.optimal_lr(PAPER, batch_size=1).steps
    s4 = nqm.optimal_lr(PAPER, batch_size=4).steps
    assert r.e_min <= 1 * s1 <= 4 * s4
    assert s1 / r.e_min - 1 < 1e-3     # B S(B) at B = 1
    big = nqm.optimal_lr(PAPER, batch_size=2**21).steps
    assert r.s_min <= big and big / r.s_min - 1 < 0.01
    assert r.s_min == nqm.optimal_lr(PAPER, batch_size=math.inf).steps


def test_tuned_momentum_limit_is_below_sgd():
    """Tuned momentum's small-batch limit is an underdamped oscillator, not SGD at the effective
    rate: E_min is ~1.17x smaller, and B S(B) at B = 1 approaches it from above."""
    em = nqm.e_min(PAPER, momentum="tune")
    es = nqm.e_min(PAPER)
    assert es / em == pytest.approx(1.17, abs=0.05)
    s1 = nqm.optimal_hyperparameters(PAPER, batch_size=1).steps
    assert em <= s1 * 1.001 and s1 / em - 1 < 0.005
    assert nqm.e_min(PAPER, momentum=0.9) == pytest.approx(es, rel=1e-9)   # fixed: SGD limit


def test_other_definitions_are_ordered():
    mc = nqm.critical_batch(PAPER).value
    ps = nqm.critical_batch(PAPER, definition="perfect_scaling").value
    sat = nqm.critical_batch(PAPER, definition="saturation").value
    assert ps < mc < sat
    # for an exact hyperbola these would be 0.1 B_crit and 10 B_crit; the NQM is close to it
    assert 0.1 * mc < ps < 0.5 * mc and 5 * mc < sat < 20 * mc


def test_fit_recovers_a_hyperbola():
    B = np.array([8.0, 32, 128, 512, 2048, 8192])
    steps = 700.0 + 6.3e5 / B
    r = nqm.critical_batch(batch_sizes=B, steps=steps)
    assert r.definition == "mccandlish_fit"
    assert r.value == pytest.approx(900.0, rel=1e-6)
    assert r.s_min == pytest.approx(700.0, rel=1e-6) and r.residual_rms < 1e-8
    noisy = steps * np.exp(np.array([0.03, -0.02, 0.01, -0.03, 0.02, 0.0]))
    assert nqm.critical_batch(batch_sizes=B, steps=noisy).value == pytest.approx(900, rel=0.15)


def test_fit_of_the_nqm_own_curve_is_close_to_the_exact_definition():
    B = np.array([2.0 ** i for i in range(0, 22, 3)])
    s = nqm.batch_size_sweep(PAPER, batch_sizes=B, powers=[0.0])
    fit = nqm.critical_batch(batch_sizes=B, steps=s.steps[0])
    assert fit.value == pytest.approx(nqm.critical_batch(PAPER).value, rel=0.3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_sizes=[1, 2], steps=[10, 5]), "at least 3"),
    (dict(batch_sizes=[1, 2, 4], steps=[10, -5, 3]), "steps"),
    (dict(batch_sizes=[1, 2, 4], steps=[10, 5]), "steps"),
    (dict(batch_sizes=[1, 2, 4]), "both"),
    (dict(batch_sizes=[0.5, 2, 4], steps=[10, 5, 3]), "batch_sizes"),
    (dict(definition="knee"), "definition"),
    (dict(tolerance=0.0, definition="saturation"), "tolerance"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nqm.critical_batch(**kwargs)


def test_tuned_momentum_s_min_is_below_every_batch_size_and_a_dense_grid():
    """S_min with tuned momentum: the exact steps land on a jagged few-step landscape (lucky
    oscillation dips); S_min is never above the tuned steps at a finite B, nor above a dense grid."""
    smin = nqm.s_min(PAPER, momentum="tune")
    sweep = nqm.batch_size_sweep(PAPER, batch_sizes=[2.0**e for e in range(16, 24)], powers=[0.0],
                                 momentum="tune")
    assert smin <= sweep.steps.min()
    best = math.inf
    for one_minus_m in np.geomspace(1e-3, 1.0, 30, endpoint=False):
        m = 1.0 - one_minus_m
        lr_max = nqm.stability_limit(PAPER, momentum=m)
        for lr in lr_max * np.geomspace(1e-3, 1.0, 60, endpoint=False):
            try:
                n = nqm.steps_to_target(PAPER, lr=lr, batch_size=math.inf, momentum=m).steps
            except ValueError:      # too slow to reach the target within the search's horizon
                continue
            best = min(best, n)
    assert smin <= best



@njit
def _flow_crossing_margin_1e9(prep, wt, target, n_guess):
    """The small-batch limit's exact crossing searched as before its pruning margin was tightened
    (1e-9): n_hi doubled from n_guess until the risk is at the target, depth-first halving of
    [0, n_hi], an interval dropped when its lower bound (decay at its right end, noise at its left
    end) exceeds target (1 + 1e-9), bisection in the first leaf (relative width 1e-13) whose right
    end reaches the target. Written out here (not compiled into nqm): math.exp / math.expm1 as
    in nqm's kernels."""

    def risk(t):
        s = 0.0
        for j in range(wt.size):
            e = 2.0 * t * prep[j, 1]
            s += wt[j] * (prep[j, 10] * math.exp(e) - prep[j, 9] * math.expm1(e))
        return s

    n_hi = max(n_guess, 1e-300)
    while risk(n_hi) > target:
        n_hi *= 2.0
    lo_s = [0.0]
    hi_s = [n_hi]
    while len(lo_s) > 0:
        a = lo_s.pop()
        b = hi_s.pop()
        lb = 0.0
        for j in range(wt.size):
            lb += wt[j] * (prep[j, 10] * math.exp(2.0 * b * prep[j, 1])
                           + -prep[j, 9] * math.expm1(2.0 * a * prep[j, 1]))
        if lb > target * (1.0 + 1e-9):
            continue
        if b - a <= 1e-13 * b:
            if risk(b) <= target:
                lo = a
                hi = b
                while True:
                    mid = 0.5 * (lo + hi)
                    if mid <= lo or mid >= hi:
                        return hi
                    if risk(mid) <= target:
                        hi = mid
                    else:
                        lo = mid
            continue
        m = 0.5 * (a + b)
        lo_s += [m, a]
        hi_s += [b, m]
    return -1.0


@pytest.mark.parametrize("problem, power, target", [
    (nqm.NQM.paper(1000, bins=8), 0.0, 0.01),                           # risk monotone
    (nqm.NQM.power_law(1000, a=1.5, q=0.3, bins=8), 0.5, 0.02),
    (nqm.NQM(np.array([1.0, 0.3, 0.01, 1e-4]), np.array([0.5, 1.0, 2.0, 0.1]),   # a bin rises
             np.array([1.0, 3.0, 10.0, 100.0]), np.array([1.0, 0.01, 0.5, 3.0])), 0.0, 0.02),
    (nqm.NQM.paper(), 0.5, 0.01),                                       # the main job's
])
def test_flow_crossing_is_the_one_the_wider_pruning_margin_finds(problem, power, target):
    """E_min's exact crossing prunes with a margin that just covers rounding (4 (nb + 8) 2^-53):
    the same float as with the margin 1e-9 (which leaves ~10^4 unprunable leaves before the
    crossing on the paper's problem), at the optimal kappa and below it, from a far and a near
    start. (Above it the floor nears the target and the 1e-9 search takes minutes.)"""
    from nqm._kernels.limits import _e_min, _flow_crossing_exact, _prepare_flow
    from nqm._kernels.prepared import NCOL

    k, c_eff = problem.preconditioned(power)
    wt = 0.5 * problem.counts * problem.h
    n, kappa = _e_min(k, c_eff, problem.x0sq, wt, target)
    prep = np.empty((k.size, NCOL))
    for kap in (kappa, 0.7 * kappa, 0.9 * kappa):
        _prepare_flow(kap, k, c_eff, problem.x0sq, prep)
        for guess in (1.0, n):
            new = _flow_crossing_exact(prep, wt, target, guess)
            assert new > 0 and new == _flow_crossing_margin_1e9(prep, wt, target, guess)
            assert new == n or kap != kappa
