"""Critical batch size: the exact limits against the tuned steps they are limits of, the other
definitions, and the fit of measured points."""

import math

import numpy as np
import pytest

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
