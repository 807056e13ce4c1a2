"""Schedules: exact risk of piecewise-constant and per-step learning-rate (and momentum) schedules
against the plain step-by-step recurrence (tests/nqm/naive.py) to 1e-10, named schedules against
their formulas, the O(K log T) path against the core's constant-rate closed form, the adjoint
gradient against finite differences, and bad input."""

import math

import numpy as np
import pytest

import nqm
from nqm import NQM
from nqm import schedules as S
from tests.nqm.naive import second_moments_recurrence

PAPER = NQM.paper()
SMALL = NQM.from_spectrum(np.array([1.0, 0.3, 0.01, 1e-4]), c=np.array([0.5, 1.0, 2.0, 0.1]),
                          x0sq=np.array([1.0, 2.0, 0.5, 3.0]), bins=None)
RNG = np.random.default_rng(7)
LENGTHS = RNG.integers(1, 400, 8)
RATES = RNG.uniform(0.02, 1.2, 8)
MOMENTA = RNG.uniform(0.0, 0.9, 8)


def _ref(problem, schedule, batch_size, **kw):
    """Risk after every step by the naive recurrence, with the schedule's per-step arrays."""
    lr, mom = schedule.per_step()
    if mom is not None:
        kw["momentum"] = mom
    return second_moments_recurrence(problem.h, problem.c, problem.x0sq, lr, batch_size,
                                     schedule.steps, counts=problem.counts, **kw)


CASES = {
    "sgd": ({}, {}),
    "preconditioned": ({"power": 0.5}, {"power": 0.5}),
    "heavy_ball": ({"momentum": 0.6}, {"momentum": 0.6}),
    "nesterov_per_piece_momentum": ({"nesterov": True, "per_piece": True},
                                    {"nesterov": True}),
    "ema_sgd": ({"ema": 0.95}, {"ema": 0.95}),
    "ema_heavy_ball_preconditioned": ({"momentum": 0.5, "ema": 0.9, "power": 0.25},
                                      {"momentum": 0.5, "ema": 0.9, "power": 0.25}),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("problem", [SMALL, PAPER], ids=["small", "paper"])
def test_piecewise_risk_matches_recurrence(problem, name):
    ours_kw, ref_kw = (dict(d) for d in CASES[name])
    per_piece = ours_kw.pop("per_piece", False)
    sched = S.piecewise_constant(RATES * (0.5 if ours_kw.get("momentum") else 1.0), LENGTHS,
                                 MOMENTA if per_piece else None)
    ref = _ref(problem, sched, 16, **ref_kw)
    curve = S.schedule_risk_curve(problem, sched, batch_size=16, **ours_kw)
    np.testing.assert_allclose(curve.risk, ref, rtol=1e-10)
    assert S.schedule_risk(problem, sched, batch_size=16, **ours_kw) == pytest.approx(
        ref[-1], rel=1e-10)


def test_per_step_schedule_matches_recurrence_and_is_run_length_encoded():
    lr = np.repeat([1.0, 0.3, 0.3, 0.05], [500, 200, 300, 1000])
    sched = S.from_steps(lr)
    assert sched.n_pieces == 3 and sched.lengths.tolist() == [500, 500, 1000]
    ref = _ref(PAPER, S.from_steps(lr), 64)
    assert S.schedule_risk(PAPER, sched, batch_size=64) == pytest.approx(ref[-1], rel=1e-10)
    curve = S.schedule_risk_curve(PAPER, sched, batch_size=64, steps=[0, 1, 499, 500, 777, 2000])
    np.testing.assert_allclose(curve.risk, ref[[0, 1, 499, 500, 777, 2000]], rtol=1e-10)


@pytest.mark.parametrize("steps", [10**3, 10**6, 10**9])
def test_long_constant_piece_matches_core_closed_form(steps):
    """One piece of a billion steps costs O(log T); it must equal the core's closed form (an
    independent evaluation: Cayley-Hamilton powers / eqn. 4), also when split in pieces."""
    for kw in ({"lr": 0.01}, {"lr": 1e-5, "power": 0.5}, {"lr": 0.05, "momentum": 0.9},
               {"lr": 0.2, "ema": 0.99}):
        lr = kw.pop("lr")
        core = nqm.risk(PAPER, steps, lr=lr, batch_size=4, **kw)
        one = S.schedule_risk(PAPER, S.constant(lr, steps), batch_size=4, **kw)
        split = S.schedule_risk(PAPER, S.piecewise_constant([lr] * 3, [steps // 3, steps // 3,
                                                             steps - 2 * (steps // 3)]),
                                batch_size=4, **kw)
        assert one == pytest.approx(core, rel=1e-10)
        assert split == pytest.approx(core, rel=1e-10)


def test_unstable_piece_is_evaluated_exactly():
    sched = S.piecewise_constant([0.5, 2.3, 0.5], [50, 7, 50])       # 2.3 > 2 / h_max
    ref = _ref(SMALL, sched, 4)
    assert S.schedule_risk(SMALL, sched, batch_size=4) == pytest.approx(ref[-1], rel=1e-10)


def test_noise_free_batch():
    sched = S.step_decay(1.0, boundaries=[100], factor=0.1, steps=300)
    lr, _ = sched.per_step()
    ref = second_moments_recurrence(PAPER.h, np.zeros_like(PAPER.h), PAPER.x0sq, lr, 1, 300,
                                    counts=PAPER.counts)
    assert S.schedule_risk(PAPER, sched, batch_size=math.inf) == pytest.approx(ref[-1], rel=1e-10)


# --------------------------------------------------------------------------- named schedules
def test_linear_decay_is_shallues_formula():
    s = S.linear_decay(0.8, decay_factor=0.1, decay_steps=100, steps=150)
    lr, _ = s.per_step()
    t = np.arange(150)
    expect = np.where(t < 100, 0.8 - (1 - 0.1) * 0.8 * t / 100, 0.08)
    np.testing.assert_allclose(lr, expect, rtol=1e-14)
    assert s.steps == 150 and s.lengths[-1] == 50           # the flat tail is one piece


def test_step_exponential_cosine_warmup_formulas():
    s = S.step_decay(1.0, boundaries=[10, 25], factor=0.5, steps=40)
    assert s.lr.tolist() == [1.0, 0.5, 0.25] and s.lengths.tolist() == [10, 15, 15]
    e = S.exponential_decay(1.0, decay_rate=0.5, decay_steps=10, steps=30)
    np.testing.assert_allclose(e.per_step()[0], 0.5 ** (np.arange(30) / 10), rtol=1e-14)
    es = S.exponential_decay(1.0, decay_rate=0.5, decay_steps=10, steps=25, staircase=True)
    assert es.lr.tolist() == [1.0, 0.5, 0.25] and es.lengths.tolist() == [10, 10, 5]
    c = S.cosine_decay(2.0, decay_steps=20, steps=25, final_fraction=0.1)
    t = np.arange(25)
    expect = np.where(t < 20, 2.0 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t / 20))), 0.2)
    np.testing.assert_allclose(c.per_step()[0], expect, rtol=1e-14)
    w = S.warmup(S.constant(0.6, 10), 3)
    np.testing.assert_allclose(w.per_step()[0], [0.2, 0.4, 0.6] + [0.6] * 10, rtol=1e-14)
    assert w.steps == 13


@pytest.mark.parametrize("make", [
    lambda: S.linear_decay(1.5, decay_factor=0.01, decay_steps=800, steps=1000),
    lambda: S.cosine_decay(1.0, decay_steps=1000, steps=1000),
    lambda: S.warmup(S.exponential_decay(1.0, decay_rate=0.1, decay_steps=500, steps=900), 100),
])
def test_named_schedules_match_recurrence(make):
    sched = make()
    ref = _ref(PAPER, sched, 32, momentum=0.5)
    ours = S.schedule_risk_curve(PAPER, sched, batch_size=32, momentum=0.5).risk
    np.testing.assert_allclose(ours, ref, rtol=1e-10)


def test_a_decaying_schedule_beats_its_constant_start_at_small_batch():
    """Sanity of the physics: decay lowers the noise floor (paper section 3.6.2)."""
    const = S.schedule_risk(PAPER, S.constant(1.0, 20000), batch_size=4)
    decay = S.schedule_risk(PAPER, S.linear_decay(1.0, decay_factor=0.01, decay_steps=20000,
                                                  steps=20000), batch_size=4)
    assert decay < 0.5 * const


# --------------------------------------------------------------------------- gradient
@pytest.mark.parametrize("kw", [{}, {"power": 0.75}, {"momentum": 0.8},
                                {"momentum": 0.7, "nesterov": True}, {"ema": 0.9},
                                {"momentum": 0.5, "ema": 0.95}])
def test_adjoint_gradient_matches_finite_differences(kw):
    lengths = np.array([1, 3, 40, 200, 1000, 5])
    lr = np.array([0.9, 1.5, 0.4, 0.1, 0.02, 0.3]) * (0.5 if "momentum" in kw else 1.0)
    risk, g = S.schedule_risk_grad(PAPER, S.piecewise_constant(lr, lengths), batch_size=8, **kw)
    eps = 1e-5
    for i in range(lr.size):
        up, dn = lr.copy(), lr.copy()
        up[i] *= math.exp(eps)
        dn[i] *= math.exp(-eps)
        fd = (S.schedule_risk(PAPER, S.piecewise_constant(up, lengths), batch_size=8, **kw)
              - S.schedule_risk(PAPER, S.piecewise_constant(dn, lengths), batch_size=8, **kw)) \
            / (2 * eps)
        assert g[i] == pytest.approx(fd, rel=1e-6, abs=1e-9 * risk)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda: S.piecewise_constant([0.1, -0.1], [1, 1]), "lr"),
    (lambda: S.piecewise_constant([0.1, math.nan], [1, 1]), "lr"),
    (lambda: S.piecewise_constant([0.1, 0.2], [1, 0]), "lengths"),
    (lambda: S.piecewise_constant([0.1, 0.2], [1, 1.5]), "lengths"),
    (lambda: S.piecewise_constant([0.1, 0.2], [1]), "lengths"),
    (lambda: S.piecewise_constant([0.1], [1], [1.0]), "momentum"),
    (lambda: S.constant(0.1, 0), "steps"),
    (lambda: S.linear_decay(0.1, decay_factor=1.5, decay_steps=10, steps=10), "decay_factor"),
    (lambda: S.linear_decay(0.1, decay_factor=0.5, decay_steps=0, steps=10), "decay_steps"),
    (lambda: S.step_decay(0.1, boundaries=[5, 3], factor=0.1, steps=10), "boundaries"),
    (lambda: S.step_decay(0.1, boundaries=[10], factor=0.1, steps=10), "boundaries"),
    (lambda: S.exponential_decay(0.1, decay_rate=0.0, decay_steps=3, steps=10), "decay_rate"),
    (lambda: S.warmup([0.1], 3), "schedule"),
    (lambda: S.schedule_risk(PAPER, [0.1], batch_size=4), "schedule"),
    (lambda: S.schedule_risk(PAPER, S.constant(0.1, 5), batch_size=0), "batch_size"),
    (lambda: S.schedule_risk(PAPER, S.constant(0.1, 5), batch_size=4, ema=1.0), "ema"),
    (lambda: S.schedule_risk(PAPER, S.piecewise_constant([0.1], [5], [0.5]), batch_size=4,
                             momentum=0.9), "momentum"),
    (lambda: S.schedule_risk_curve(PAPER, S.constant(0.1, 5), batch_size=4, steps=[6]),
     "steps"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("name", ["nqm.schedules", "nqm.schedule_opt"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
