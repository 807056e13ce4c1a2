"""Optimized piecewise-constant schedules: never worse than the best constant rate (structural),
the returned schedule reaches the target exactly at the returned steps, agreement with an
independent optimizer on the brute-force recurrence, the paper's claims (section 3.6.2: claim 5 of
shared/spec/NQM.md, Fig. 13), monotonicity of the optimized risk in T near the answer (the
assumption of the search), momentum/EMA, sweeps, the authors' algorithm, bad input."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize

import nqm
from nqm import NQM
from tests.nqm.naive import second_moments_recurrence

PAPER = NQM.paper()
SMALL = NQM.paper(bins=20)


def _check_result(problem, r, **kw):
    """The schedule is what was claimed: its exact risk after r.steps is r.risk <= target, every
    rate is within the bound, and it never needs more steps than the best constant rate."""
    assert r.schedule.steps == r.steps
    assert r.schedule.n_pieces == min(r.n_pieces, r.steps)
    assert np.all(r.schedule.lr < r.lr_max)
    exact = nqm.schedule_risk(problem, r.schedule, batch_size=r.batch_size, power=r.power, **kw)
    assert exact == pytest.approx(r.risk, rel=1e-12)
    assert r.risk <= r.target < r.risk_before
    assert r.steps <= r.constant_steps
    const = nqm.optimal_lr(problem, batch_size=r.batch_size, power=r.power, target=r.target,
                           **kw)
    assert (const.steps, const.lr) == (r.constant_steps, r.constant_lr)


@pytest.mark.parametrize("B, power, n_pieces", [(4, 0.0, 50), (2**10, 0.0, 10), (2**16, 0.75, 10),
                                                (2**20, 0.75, 50)])
def test_never_worse_than_best_constant_rate(B, power, n_pieces):
    r = nqm.optimize_schedule(PAPER, batch_size=B, power=power, n_pieces=n_pieces)
    _check_result(PAPER, r)


@pytest.mark.parametrize("kw", [{"momentum": 0.9, "batch_size": 2**12},
                                {"momentum": 0.5, "nesterov": True, "batch_size": 256},
                                {"ema": 0.9, "batch_size": 64}])
def test_momentum_and_ema_schedules(kw):
    B = kw.pop("batch_size")
    r = nqm.optimize_schedule(SMALL, batch_size=B, n_pieces=10, **kw)
    _check_result(SMALL, r, **kw)
    assert r.steps < 0.8 * r.constant_steps


def test_agrees_with_independent_optimizer_on_brute_force_recurrence():
    """scipy L-BFGS-B with finite differences on the plain recurrence (no closed form, no adjoint)
    reaches the target at our steps and not 1 % earlier: the two agree within 1 % in steps."""
    problem = NQM.paper(d=1000, bins=8)
    B, K, target = 64, 4, 0.05
    r = nqm.optimize_schedule(problem, batch_size=B, n_pieces=K, target=target)
    lr_max = 2.0 / problem.h.max()

    def best_risk(T):
        lengths = np.diff((np.arange(K + 1) * T) // K)

        def f(x):
            lr = np.repeat(lr_max * np.exp(x), lengths)
            return math.log(second_moments_recurrence(problem.h, problem.c, problem.x0sq, lr, B,
                                                      T, counts=problem.counts)[-1])

        return math.exp(min(scipy.optimize.minimize(
            f, x0, method="L-BFGS-B", bounds=[(-46.0, -1e-9)] * K,
            options={"ftol": 1e-14, "gtol": 1e-10}).fun
            for x0 in (np.full(K, -1.0), np.linspace(-0.1, -4.0, K))))

    assert r.steps > 300
    assert best_risk(r.steps) <= target
    assert best_risk(math.floor(0.99 * r.steps)) > target


def test_optimized_risk_is_monotone_in_steps_near_the_answer():
    """The search assumes the optimized risk crosses the target once; scan T around the answer."""
    r = nqm.optimize_schedule(PAPER, batch_size=2**10, n_pieces=10)
    risks = []
    init = r.schedule.lr
    for T in range(int(0.9 * r.steps), int(1.1 * r.steps), max(1, r.steps // 100)):
        sched, risk = nqm.optimal_schedule_for_steps(PAPER, steps=T, batch_size=2**10,
                                                     n_pieces=10, init=init)
        risks.append(risk)
        init = sched.lr
    risks = np.array(risks)
    assert np.all(np.diff(risks) <= 1e-9 * risks[1:])


def test_claim5_closes_most_of_the_gap_at_small_batch_none_at_large():
    """Paper section 3.6.2 / shared/spec/NQM.md claim 5, Fig. 3b (10 pieces) and 3c (50)."""
    for power in (0.0, 0.25, 0.5, 0.75):
        small = nqm.optimize_schedule(PAPER, batch_size=4, power=power, n_pieces=50)
        gap_closed = (small.constant_steps - small.steps) / (small.constant_steps
                                                             - small.lower_bound)
        assert gap_closed > 0.9, (power, gap_closed)
        # within 1.5x of the bound, except plain SGD on this spectrum (1.55x: one shared
        # schedule cannot be efficient for all curvatures; 1.54x with 200 pieces)
        assert small.steps < (1.6 if power == 0.0 else 1.5) * small.lower_bound
        large = nqm.optimize_schedule(PAPER, batch_size=2**18, power=power, n_pieces=50)
        assert large.steps > 0.9 * large.constant_steps


def test_fig13_final_rate_scales_linearly_with_batch_size():
    s = nqm.schedule_sweep(PAPER, batch_sizes=[4, 16, 64, 256], powers=[0.0, 0.5], n_pieces=50)
    for i in range(2):
        slope = np.polyfit(np.log(s.batch_sizes), np.log(s.final_lr[i]), 1)[0]
        assert slope > 0.85 and slope < 1.2, slope
    # and every schedule starts high and decays (the paper's shape)
    assert np.all(s.initial_lr > 10 * s.final_lr)


def test_sweep_shapes_table_json():
    s = nqm.schedule_sweep(SMALL, batch_sizes=[16, 4096], powers=[0.0, 0.5], n_pieces=5)
    assert s.steps.shape == (2, 2) and s.rates.shape == (2, 2, 5)
    assert np.all(s.steps <= s.constant_steps)
    assert "optimized 5-piece" in s.table()
    d = json.loads(s.to_json())
    assert d["steps"] == s.steps.tolist() and d["n_pieces"] == 5
    single = nqm.optimize_schedule(SMALL, batch_size=4096, power=0.5, n_pieces=5)
    assert single.steps == s.steps[1, 1]


def _official_port():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "official_port.py"
    spec = importlib.util.spec_from_file_location("official_port", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_never_worse_than_the_authors_algorithm():
    """On the authors' binning and at the same number of steps, our optimized schedule has an
    exact risk <= that of the notebook algorithm's schedule; and our steps are <= the notebook's
    (which returns K m, one piece less than the K (m + 1) updates its schedule needs, and searches
    multiples of K only) wherever its schedule truly reaches the target. At B = 4 it does not:
    its +1e-8 lowers the noise floor of small curvatures, so its count is a few steps short."""
    op = _official_port()
    h, counts = op.official_problem()
    problem = NQM.paper(binning="official")
    K = 10
    for B, power in ((4, 0.0), (2**8, 0.0), (2**12, 0.5)):
        theirs, _ = op.optimized_schedule_steps(B, power, h, counts, n_pieces=K)
        m = theirs // K + 1
        lr = np.exp(op.optimize_schedule(m, K, B, h, counts, power))
        their_exact = nqm.schedule_risk(problem, nqm.piecewise_constant(lr, [m] * K),
                                        batch_size=B, power=power)
        _, ours_at = nqm.optimal_schedule_for_steps(problem, steps=K * m, batch_size=B,
                                                    n_pieces=K, power=power, init=lr)
        assert ours_at <= their_exact * (1 + 1e-9)
        ours = nqm.optimize_schedule(problem, batch_size=B, power=power, n_pieces=K)
        if their_exact <= 0.01:
            assert ours.steps <= K * m
        else:
            assert B == 4 and ours.steps <= K * m * 1.001


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 4, "n_pieces": 0}, "n_pieces"),
    ({"batch_size": 4, "n_pieces": 2.5}, "n_pieces"),
    ({"batch_size": 4, "target": -1.0}, "target"),
    ({"batch_size": 4, "momentum": 0.5, "ema": 0.9}, "momentum"),
    ({"batch_size": 4, "power": 1.5}, "power"),
])
def test_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        nqm.optimize_schedule(SMALL, **kw)


def test_unreachable_target_and_trivial_target():
    with pytest.raises(ValueError, match="target"):
        nqm.optimize_schedule(SMALL, batch_size=1, target=1e-30)
    r = nqm.optimize_schedule(SMALL, batch_size=4, target=100.0)
    assert r.steps == 0
    with pytest.raises(ValueError, match="steps"):
        nqm.optimal_schedule_for_steps(SMALL, steps=0, batch_size=4)
