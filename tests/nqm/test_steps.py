"""Exact steps to target against a brute-force scan of the recurrence (tests/nqm/naive.py),
including risk curves that are not monotone on purpose."""

import math

import numpy as np
import pytest

import nqm
from tests.nqm.naive import brute_force_steps_to_target, second_moments_recurrence

PAPER = nqm.NQM.paper(binning="official")


def _brute(problem, lr, B, beta=0.0, nesterov=False, power=0.0, target=0.01, horizon=20000):
    curve = second_moments_recurrence(problem.h, problem.c, problem.x0sq, lr, B, horizon,
                                      momentum=beta, nesterov=nesterov, power=power,
                                      counts=problem.counts)
    return brute_force_steps_to_target(curve, target), curve


@pytest.mark.parametrize("lr, B, beta, nesterov, power", [
    (1.5, 4096, 0.0, False, 0.0),
    (1.9, 2**18, 0.0, False, 0.0),
    (0.15, 1024, 0.0, False, 0.5),
    (3.6, 2**18, 0.96, False, 0.0),       # oscillates around the target (mistake 2)
    (3.0, 2**16, 0.95, False, 0.0),
    (0.5, 4096, 0.9, True, 0.25),
    (2.5, 2**20, 0.6, False, 0.75),
])
def test_paper_problem_matches_brute_force(lr, B, beta, nesterov, power):
    want, _ = _brute(PAPER, lr, B, beta, nesterov, power)
    got = nqm.steps_to_target(PAPER, lr=lr, batch_size=B, momentum=beta, nesterov=nesterov,
                              power=power)
    assert want is not None and got.steps == want
    assert got.risk <= 0.01 < got.risk_before


def test_underdamped_momentum_first_dip_not_later_crossing():
    """Noise-free heavy ball on two stiff bins: the risk oscillates and dips below the target
    several times before it stays below; the first dip is the answer."""
    p = nqm.NQM(np.array([1.0, 0.6]), np.zeros(2), np.ones(2), np.ones(2))
    lr, beta, target = 1.2, 0.9, 2e-3
    want, curve = _brute(p, lr, 1, beta, target=target, horizon=3000)
    later = np.flatnonzero(curve <= target)
    above_after = np.any(curve[want + 1:] > target)
    assert above_after, "the case must be non-monotone to test anything"
    got = nqm.steps_to_target(p, lr=lr, batch_size=math.inf, momentum=beta, target=target)
    assert got.steps == want == later[later >= 1][0]


def test_bin_below_its_floor_rises_transient_dip_reaches_unreachable_floor():
    """A stiff noise-free bin decays fast; a flat noisy bin starts at 0 (below its floor) and rises
    slowly to a floor above the target. The total dips below the target once, then rises above it
    for good: that dip is the first crossing."""
    p = nqm.NQM(np.array([1.0, 0.01]), np.array([0.0, 0.8]), np.ones(2), np.array([1.0, 0.0]))
    lr, B, target = 0.1, 1, 0.005
    want, curve = _brute(p, lr, B, target=target, horizon=20000)
    floor = nqm.steady_state_risk(p, lr=lr, batch_size=B)
    assert floor > target and want is not None and curve[-1] > target
    got = nqm.steps_to_target(p, lr=lr, batch_size=B, target=target)
    assert got.steps == want


def test_unreachable_target_raises():
    p = nqm.NQM(np.array([1.0, 0.01]), np.array([0.0, 0.8]), np.ones(2), np.array([1.0, 0.0]))
    _, curve = _brute(p, 0.1, 1, target=0.001, horizon=20000)
    assert curve[1:].min() > 0.001                       # the dip does not get there
    with pytest.raises(ValueError, match="target=0.001 is unreachable"):
        nqm.steps_to_target(p, lr=0.1, batch_size=1, target=0.001)
    with pytest.raises(ValueError, match="unreachable"):
        nqm.steps_to_target(PAPER, lr=1.0, batch_size=1, target=0.01)   # floor ~ 0.48 > target


def test_initial_risk_below_target_is_zero_steps():
    r = nqm.steps_to_target(PAPER, lr=0.1, batch_size=1, target=10.0)
    assert r.steps == 0 and r.risk == pytest.approx(PAPER.initial_risk)


def test_notebook_bisection_is_off_by_one():
    """The notebook returns the last t NOT below target; ours is the first t at or below it."""
    ours = nqm.steps_to_target(PAPER, lr=1.5, batch_size=4096).steps
    curve = second_moments_recurrence(PAPER.h, PAPER.c, PAPER.x0sq, 1.5, 4096, ours + 1,
                                      counts=PAPER.counts)
    assert curve[ours] <= 0.01 < curve[ours - 1]


def test_long_horizon_steps_beyond_a_brute_force_scan():
    """10^8-step crossing: consistent with the closed form at the integers around it."""
    r = nqm.steps_to_target(PAPER, lr=1e-4, batch_size=64, target=0.01)
    assert r.steps > 10**7
    before = nqm.risk(PAPER, r.steps - 1, lr=1e-4, batch_size=64)
    at = nqm.risk(PAPER, r.steps, lr=1e-4, batch_size=64)
    assert at <= 0.01 < before
