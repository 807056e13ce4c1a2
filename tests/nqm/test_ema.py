"""Exponential moving average of the iterates (EMA, decay gamma) as an optimizer option: exact risk
against the plain step-by-step recurrence and Monte Carlo (tests/nqm/naive.py), exactly at the
defective point gamma = 1 - lr h^(1-p) where the authors' eigendecomposition breaks, exact steps
to target against a brute-force scan, and the tuned (lr, gamma)."""

import math

import numpy as np
import pytest

import nqm
from nqm import NQM
from tests.nqm.naive import (
    brute_force_steps_to_target,
    monte_carlo_risk,
    second_moments_recurrence,
)

SMALL = NQM.from_spectrum(np.array([1.0, 0.3, 0.01, 1e-4]), c=np.array([0.5, 1.0, 2.0, 0.1]),
                          x0sq=np.array([1.0, 2.0, 0.5, 3.0]), bins=None)
PAPER = NQM.paper()


def _ref(problem, steps, **kw):
    return second_moments_recurrence(problem.h, problem.c, problem.x0sq, kw.pop("lr"),
                                     kw.pop("batch_size"), steps, counts=problem.counts, **kw)


@pytest.mark.parametrize("kw", [
    dict(lr=0.5, ema=0.9),
    dict(lr=1.5, ema=0.3, power=0.25),
    dict(lr=0.05, ema=0.999),
    dict(lr=0.2, ema=0.0),                                   # gamma = 0: the average is x itself
    dict(lr=0.1, momentum=0.5, ema=0.8),                     # 3-dimensional state
    dict(lr=0.1, momentum=0.6, nesterov=True, power=0.25, ema=0.7),
])
@pytest.mark.parametrize("problem", [SMALL, PAPER], ids=["small", "paper"])
def test_ema_risk_matches_recurrence(problem, kw):
    steps = 400
    ours = nqm.risk_curve(problem, steps, batch_size=8, **kw).risk
    ref = _ref(problem, steps, batch_size=8, **kw)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    assert nqm.risk(problem, 123, batch_size=8, **kw) == pytest.approx(ref[123], rel=1e-10)


def test_ema_zero_decay_is_plain_sgd():
    a = nqm.risk_curve(PAPER, [0, 10, 1000, 10**6], lr=0.3, batch_size=4, ema=0.0).risk
    b = nqm.risk_curve(PAPER, [0, 10, 1000, 10**6], lr=0.3, batch_size=4).risk
    np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("kw", [dict(lr=0.5, ema=0.9), dict(lr=0.1, momentum=0.5, ema=0.8),
                                dict(lr=0.3, power=0.5, ema=0.7)])
def test_ema_risk_agrees_with_monte_carlo(kw):
    h = np.array([1.0, 0.2, 0.03])
    problem = NQM.from_spectrum(h, bins=None)
    steps = 60
    mean, se = monte_carlo_risk(h, h, 1.0, kw["lr"], 4, steps, momentum=kw.get("momentum", 0.0),
                                power=kw.get("power", 0.0), ema=kw["ema"], n_runs=6000, seed=3)
    ours = nqm.risk_curve(problem, steps, batch_size=4, **kw).risk
    for t in (1, 5, 20, 60):
        assert abs(ours[t] - mean[t]) < 4.5 * se[t], (t, ours[t], mean[t], se[t])


@pytest.mark.parametrize("power", [0.0, 0.5])
def test_ema_exact_at_defective_decay(power):
    """gamma = 1 - lr k of one bin: the two roots of that bin's transition coincide (a Jordan
    block; the notebook's np.linalg.eig returned a negative risk there)."""
    lr = 0.4
    k = PAPER.h ** (1.0 - power)
    gamma = 1.0 - lr * k[30]
    kw = dict(lr=lr, ema=gamma, power=power, batch_size=16)
    ours = nqm.risk_curve(PAPER, 3000, **kw).risk
    ref = _ref(PAPER, 3000, **kw)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    assert np.all(ours > 0)
    target = 1.2 * nqm.steady_state_risk(PAPER, **kw)
    at = nqm.steps_to_target(PAPER, target=target, **kw)
    assert at.steps == brute_force_steps_to_target(_ref(PAPER, at.steps + 10, **kw), target)


@pytest.mark.parametrize("kw", [dict(lr=0.9, ema=0.95, batch_size=64),
                                dict(lr=1.9, ema=0.5, batch_size=2**14, power=0.25)])
def test_ema_steps_to_target_matches_brute_force(kw):
    target = 0.05
    r = nqm.steps_to_target(PAPER, target=target, **kw)
    ref = _ref(PAPER, r.steps + 50, **kw)
    assert r.steps == brute_force_steps_to_target(ref, target)
    assert r.ema == kw["ema"]


def test_tuned_ema_beats_grid_and_sgd():
    B, target = 256, 0.05
    tuned = nqm.optimal_hyperparameters(PAPER, batch_size=B, momentum=0.0, ema="tune",
                                        target=target)
    assert tuned.tuned == ("lr", "ema") and 0.0 <= tuned.ema < 1.0
    assert nqm.steps_to_target(PAPER, lr=tuned.lr, ema=tuned.ema, batch_size=B,
                               target=target).steps == tuned.steps
    best_grid = math.inf
    for lr in np.geomspace(0.05, 1.99, 12):
        for gamma in 1.0 - np.geomspace(1e-4, 1.0, 10)[:-1]:
            best_grid = min(best_grid, nqm.steps_to_target(PAPER, lr=lr, ema=gamma, batch_size=B,
                                                           target=target).steps)
    assert tuned.steps <= best_grid
    sgd = nqm.optimal_lr(PAPER, batch_size=B, target=target)
    assert tuned.steps <= sgd.steps
    fixed = nqm.optimal_lr(PAPER, batch_size=B, ema=tuned.ema, target=target)
    assert fixed.steps <= tuned.steps + 1 and fixed.ema == tuned.ema


def test_ema_sweep_helps_at_small_batch_only():
    s = nqm.batch_size_sweep(PAPER, batch_sizes=[16, 2**16], powers=[0.0], momentum=0.0,
                             ema="tune")
    sgd = nqm.batch_size_sweep(PAPER, batch_sizes=[16, 2**16], powers=[0.0])
    assert s.optimizer == "sgd+ema" and s.ema.shape == (1, 2)
    # averaging removes most of the noise floor at small B, and cannot beat the noise-free
    # large-batch regime by much
    assert s.steps[0, 0] < 0.3 * sgd.steps[0, 0]
    assert s.steps[0, 1] > 0.9 * sgd.steps[0, 1]
    assert s.to_dict()["ema"] == s.ema.tolist()


@pytest.mark.parametrize("bad, match", [(1.0, "ema"), (-0.1, "ema"), (math.nan, "ema"),
                                        ("x", "ema")])
def test_bad_ema_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        nqm.risk(PAPER, 10, lr=0.1, batch_size=4, ema=bad)


def test_momentum_with_ema_steps_is_a_clear_error():
    with pytest.raises(ValueError, match="momentum"):
        nqm.steps_to_target(PAPER, lr=0.1, momentum=0.5, ema=0.9, batch_size=4)
    with pytest.raises(ValueError, match="momentum"):
        nqm.optimal_hyperparameters(PAPER, batch_size=4, momentum="tune", ema="tune")
