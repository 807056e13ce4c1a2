"""Tests of the reference implementations themselves (tests/nqm/naive.py) and of the port of the
authors' notebook (benchmarks/official_port.py): against each other, against Monte Carlo simulation
of the stochastic process, and against closed forms written out here."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from tests.nqm.naive import (
    brute_force_steps_to_target,
    lower_bound_steps,
    monte_carlo_risk,
    official_binning,
    second_moments_recurrence,
    sgd_risk_closed_form,
)


def _load_official_port():
    # benchmarks/ is a folder of scripts, not a package: load the module from its file.
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "official_port.py"
    spec = importlib.util.spec_from_file_location("official_port", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


op = _load_official_port()

H3 = np.array([1.0, 0.2, 0.03])          # a small spectrum for Monte Carlo (c = h)
PAPER_H = 1.0 / np.arange(1, 10**4 + 1)


# ----------------------------------------------------------------------------------------------
# Recurrence against the paper's closed form (eqn. 4), written out independently here
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lr, batch_size", [(0.5, 4), (1.9, 1), (0.01, 128)])
def test_sgd_recurrence_matches_paper_eqn4(lr, batch_size):
    h = np.array([1.0, 0.3, 0.01, 1e-4])
    c = np.array([0.5, 1.0, 2.0, 0.1])          # c != h on purpose
    x0sq = np.array([1.0, 2.0, 0.5, 3.0])
    counts = np.array([1.0, 3.0, 10.0, 100.0])
    steps = 300
    exact = second_moments_recurrence(h, c, x0sq, lr, batch_size, steps, counts=counts)
    t = np.arange(steps + 1)
    decay = (1.0 - lr * h[None, :]) ** (2 * t[:, None])
    l0 = 0.5 * h * x0sq
    eqn4 = decay * l0 + lr * c / (2 * batch_size * (2 - lr * h)) * (1 - decay)
    np.testing.assert_allclose(exact, eqn4 @ counts, rtol=1e-12)
    np.testing.assert_allclose(sgd_risk_closed_form(h, c, x0sq, lr, batch_size, t, counts),
                               eqn4 @ counts, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Recurrence against Monte Carlo simulation of the actual process
# ----------------------------------------------------------------------------------------------
STEPS = 120
LR_DECAY = np.linspace(0.6, 0.05, STEPS)
MOM_RAMP = np.linspace(0.0, 0.8, STEPS)
MC_CASES = {
    "sgd": dict(lr=0.5),
    "preconditioned_sgd": dict(lr=0.3, power=0.5),
    "heavy_ball_underdamped": dict(lr=0.1, momentum=0.9),
    "heavy_ball_overdamped": dict(lr=0.1, momentum=0.1),
    # critical damping of the h = 1 dimension: beta = (1 - sqrt(lr h))^2
    "heavy_ball_critical": dict(lr=0.25, momentum=(1 - math.sqrt(0.25)) ** 2),
    "heavy_ball_preconditioned": dict(lr=0.1, momentum=0.7, power=0.75),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "ema_sgd": dict(lr=0.5, ema=0.9),
    "ema_heavy_ball": dict(lr=0.1, momentum=0.5, ema=0.8),
    "ema_nesterov_preconditioned": dict(lr=0.1, momentum=0.6, nesterov=True, power=0.25, ema=0.7),
    "schedule": dict(lr=LR_DECAY, momentum=MOM_RAMP),
    "large_batch_direct_noise": dict(lr=0.5, batch_size=128),   # B > 64: N(0, c/B) sampled directly
}


@pytest.mark.parametrize("name", sorted(MC_CASES))
def test_recurrence_matches_monte_carlo(name):
    kw = dict(MC_CASES[name])
    lr = kw.pop("lr")
    batch_size = kw.pop("batch_size", 4)
    counts = np.array([1.0, 2.0, 5.0])
    exact = second_moments_recurrence(H3, H3, 1.0, lr, batch_size, STEPS, counts=counts, **kw)
    mean, stderr = monte_carlo_risk(H3, H3, 1.0, lr, batch_size, STEPS, counts=counts,
                                    n_runs=4000, seed=1, **kw)
    z = np.abs(mean - exact) / stderr
    assert np.all(np.isfinite(exact)) and np.all(stderr > 0)
    assert z.max() < 5.0, f"{name}: largest |MC - exact| / stderr = {z.max():.2f} at t={z.argmax()}"
    assert exact[-1] < 0.5 * exact[0]         # the comparison covers a run that actually moved


def test_monte_carlo_comparison_detects_a_wrong_batch_size():
    # The 5-stderr criterion above is not vacuous: a recurrence with the noise of B = 4 is rejected
    # by Monte Carlo at B = 2 (the floors differ by a factor ~2).
    exact_b4 = second_moments_recurrence(H3, H3, 1.0, 0.5, 4, STEPS)
    mean, stderr = monte_carlo_risk(H3, H3, 1.0, 0.5, 2, STEPS, n_runs=4000, seed=1)
    assert (np.abs(mean - exact_b4) / stderr).max() > 10.0


def test_monte_carlo_is_reproducible_and_seeded():
    a = monte_carlo_risk(H3, H3, 1.0, 0.5, 4, 10, n_runs=100, seed=3)
    b = monte_carlo_risk(H3, H3, 1.0, 0.5, 4, 10, n_runs=100, seed=3)
    c = monte_carlo_risk(H3, H3, 1.0, 0.5, 4, 10, n_runs=100, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


# ----------------------------------------------------------------------------------------------
# Recurrence: special cases that must coincide
# ----------------------------------------------------------------------------------------------
def test_zero_momentum_and_zero_ema_reduce_to_sgd():
    sgd = second_moments_recurrence(H3, H3, 1.0, 0.4, 8, 200)
    np.testing.assert_allclose(
        second_moments_recurrence(H3, H3, 1.0, 0.4, 8, 200, momentum=0.0, nesterov=True), sgd,
        rtol=1e-13)
    np.testing.assert_allclose(second_moments_recurrence(H3, H3, 1.0, 0.4, 8, 200, ema=0.0), sgd,
                               rtol=1e-13)


def test_preconditioning_is_sgd_on_a_transformed_problem():
    # Paper section 3.3: P = h^-p is SGD on curvature h^(1-p) with noise c h^(-2p); the risk is still
    # measured with h, i.e. with weights counts * h / h^(1-p) = counts * h^p on the transformed problem.
    p = 0.6
    c = np.array([0.3, 1.0, 2.0])
    pre = second_moments_recurrence(H3, c, 2.0, 0.2, 4, 150, momentum=0.5, power=p, ema=0.3)
    transformed = second_moments_recurrence(H3 ** (1 - p), c * H3 ** (-2 * p), 2.0, 0.2, 4, 150,
                                            momentum=0.5, ema=0.3, counts=H3 ** p)
    np.testing.assert_allclose(pre, transformed, rtol=1e-12)


@pytest.mark.parametrize("h, c, lr, beta, batch_size", [(0.5, 0.7, 0.3, 0.6, 2), (1.0, 1.0, 0.1, 0.9, 1),
                                                      (0.2, 0.3, 1.0, 0.3, 4)])
def test_heavy_ball_floor_matches_its_closed_form(h, c, lr, beta, batch_size):
    # Stationary E[x^2] of heavy ball on one quadratic dimension with additive noise of variance
    # s2 = c / B:  lr s2 (1 + beta) / (h (1 - beta) (2 (1 + beta) - lr h)); beta = 0 gives eqn. 4's floor.
    s2 = c / batch_size
    floor = lr * s2 * (1 + beta) / (h * (1 - beta) * (2 * (1 + beta) - lr * h))
    risk = second_moments_recurrence([h], c, 1.0, lr, batch_size, 20000, momentum=beta)
    assert risk[-1] == pytest.approx(0.5 * h * floor, rel=1e-10)


# ----------------------------------------------------------------------------------------------
# Official binning, steps to target, lower bound
# ----------------------------------------------------------------------------------------------
def test_official_binning_initial_risk():
    h_bins, counts = official_binning(PAPER_H)
    assert 0.5 * np.sum(counts * h_bins) == pytest.approx(4.702495573141032, rel=1e-13)
    assert 0.5 * np.sum(PAPER_H) == pytest.approx(4.893803018022174, rel=1e-13)
    assert counts.sum() == 10**4 and np.all(counts > 0)
    # eigenvalues equal to grid points (1 and 1e-4) land in those grid points' bins
    assert h_bins[0] == 1.0 and counts[0] == 1
    assert h_bins[-1] == 1e-4


def test_official_binning_rounds_every_eigenvalue_down_to_the_next_grid_value():
    h = np.array([0.95, 0.5, 0.5, 0.02, 2e-4, 1e-4])
    grid = np.geomspace(1.0, 1e-4, 100)
    h_bins, counts = official_binning(h)
    expected = {}
    for value in h:
        below = grid[grid <= value]
        expected[below.max()] = expected.get(below.max(), 0) + 1
    assert dict(zip(h_bins.tolist(), counts.tolist(), strict=True)) == expected


def test_official_binning_rejects_eigenvalues_below_h_min():
    with pytest.raises(ValueError, match="h_min"):
        official_binning([0.5, 1e-5])
    with pytest.raises(ValueError, match="n_bins"):
        official_binning([0.5], n_bins=0)


def test_brute_force_steps_to_target():
    curve = [0.5, 0.9, 0.3, 0.6, 0.2, 0.1]           # non-monotone
    assert brute_force_steps_to_target(curve, 0.3) == 2
    assert brute_force_steps_to_target(curve, 0.25) == 4
    assert brute_force_steps_to_target(curve, 0.6) == 2
    assert brute_force_steps_to_target(curve, 0.05) is None
    assert brute_force_steps_to_target([0.0, 1.0], 0.5) is None    # t = 0 does not count


def test_lower_bound_steps():
    assert lower_bound_steps(10**4, 16, 0.01) == pytest.approx(31250.0)
    with pytest.raises(ValueError, match="batch_size"):
        lower_bound_steps(10**4, 0, 0.01)
    with pytest.raises(ValueError, match="target"):
        lower_bound_steps(10**4, 16, float("nan"))


@pytest.mark.parametrize("kwargs, name", [
    (dict(batch_size=0), "batch_size"),
    (dict(lr=-0.1), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(lr=np.ones(3)), "lr"),
    (dict(momentum=1.5), "momentum"),
    (dict(h=[1.0, 0.0]), "h"),
    (dict(c=-1.0), "c"),
    (dict(ema=1.0), "ema"),
    (dict(steps=-1), "steps"),
    (dict(power=float("inf")), "power"),
    (dict(counts=[1.0, 2.0]), "counts"),
])
def test_bad_input_is_a_clear_value_error(kwargs, name):
    args = dict(h=H3, c=H3, x0sq=1.0, lr=0.1, batch_size=4, steps=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        second_moments_recurrence(**args)
    with pytest.raises(ValueError, match=name):
        monte_carlo_risk(**args, n_runs=10)


# ----------------------------------------------------------------------------------------------
# The port of the authors' notebook
# ----------------------------------------------------------------------------------------------
SMALL_H = np.array([1.0, 0.1, 0.01])
SMALL_COUNTS = np.array([1.0, 10.0, 100.0])


def test_official_problem_matches_reference_binning():
    h, counts = op.official_problem()
    assert h.shape == (100,) and counts.sum() == 10**4
    ref_h, ref_counts = official_binning(PAPER_H)
    np.testing.assert_array_equal(h[counts > 0], ref_h)
    np.testing.assert_array_equal(counts[counts > 0], ref_counts)
    assert 0.5 * np.sum(h * counts) == pytest.approx(4.702495573141032, rel=1e-13)


@pytest.mark.parametrize("power", [0.0, 0.5])
def test_port_sgd_risk_matches_recurrence_where_the_1e8_is_negligible(power):
    # Bins with lr P h >= 0.05 have 1 - (1 - lr P h)^2 >= 0.1, so the +1e-8 changes the floor by <= 1e-7.
    h, counts, lr, B = np.array([1.0, 0.5, 0.1]), np.array([1.0, 4.0, 20.0]), 0.5, 16
    exact = second_moments_recurrence(h, h, 1.0, lr, B, 400, power=power, counts=counts)
    for t in (0, 1, 37, 400):
        assert op.sgd_risk(t, lr, B, h, counts, power) == pytest.approx(exact[t], rel=1e-6)


def test_port_sgd_floor_is_wrong_by_the_documented_1e8():
    # NQM_OFFICIAL.md mistake 1: small curvature at a small rate. 1 - decay = 2 a h - (a h)^2 ~ 2e-7,
    # so the notebook's floor is too low by the factor (1 - decay) / (1 - decay + 1e-8) ~ 0.95.
    h, lr, B, t = np.array([1e-4]), 1e-3, 4, 10**10
    one_minus_decay = 1 - (1 - lr * h[0]) ** 2
    exact = sgd_risk_closed_form(h, h, 1.0, lr, B, t)
    port = op.sgd_risk(t, lr, B, h, np.ones(1), 0.0)
    assert port / exact == pytest.approx(one_minus_decay / (one_minus_decay + 1e-8), rel=1e-6)
    assert port / exact < 0.96


def test_port_sgd_steps_is_one_less_than_the_true_count():
    lr, B, target = 0.5, 64, 0.05
    exact = second_moments_recurrence(SMALL_H, SMALL_H, 1.0, lr, B, 2000, counts=SMALL_COUNTS)
    true_steps = brute_force_steps_to_target(exact, target)
    assert true_steps is not None and np.all(np.diff(exact[:true_steps + 1]) <= 0)   # monotone case
    assert op.sgd_steps(lr, B, SMALL_H, SMALL_COUNTS, 0.0, target) == true_steps - 1


def test_port_sgd_unstable_or_too_slow_rates_give_inf():
    assert op.sgd_steps(3.0, 64, SMALL_H, SMALL_COUNTS, 0.0, 0.05) == math.inf      # unstable
    assert op.sgd_steps(0.5, 1, SMALL_H, SMALL_COUNTS, 0.0, 1e-4) == math.inf       # floor above target


@pytest.mark.parametrize("lr, beta, power", [(0.1, 0.9, 0.0), (0.3, 0.5, 0.0), (0.05, 0.99, 0.5),
                                             (1.0, 0.2, 0.25)])
def test_port_momentum_risk_matches_recurrence(lr, beta, power):
    h, counts = op.official_problem()
    B = 16
    exact = second_moments_recurrence(h, h, 1.0, lr, B, 300, momentum=beta, power=power,
                                      counts=counts)
    for t in (1, 10, 300):
        assert op.momentum_risk(t, lr, beta, B, h, counts, power) == pytest.approx(exact[t],
                                                                                   rel=1e-8)


def test_port_momentum_steps_is_one_less_than_the_true_count():
    lr, beta, B, target = 0.1, 0.3, 64, 0.05         # overdamped in every bin
    exact = second_moments_recurrence(SMALL_H, SMALL_H, 1.0, lr, B, 3000, momentum=beta,
                                      counts=SMALL_COUNTS)
    true_steps = brute_force_steps_to_target(exact, target)
    assert true_steps is not None and np.all(np.diff(exact[:true_steps + 1]) <= 0)
    assert op.momentum_steps(lr, beta, B, SMALL_H, SMALL_COUNTS, 0.0, target) == true_steps - 1


def test_port_tuning_returns_the_best_grid_point():
    B, target = 64, 0.05
    steps, lr = op.tune_sgd(B, 0.0, SMALL_H, SMALL_COUNTS, target, n_lr=6)
    grid = np.logspace(-5, 0.5, 6)
    assert lr in grid
    per_rate = [op.sgd_steps(r, B, SMALL_H, SMALL_COUNTS, 0.0, target) for r in grid]
    assert steps == min(per_rate) and per_rate[-1] == math.inf     # 10^0.5 > 2 is unstable

    steps_m, lr_m, beta_m = op.tune_momentum(B, 0.0, SMALL_H, SMALL_COUNTS, target, n_lr=5,
                                             n_beta=3)
    assert lr_m in np.logspace(-8, 1, 5) and beta_m in 1 - np.logspace(-5, 0, 3)
    assert steps_m == op.momentum_steps(lr_m, beta_m, B, SMALL_H, SMALL_COUNTS, 0.0, target)
    assert steps_m < math.inf


def test_port_schedule_gradient_matches_finite_differences():
    h, counts = op.official_problem()
    log_rates = np.array([-0.5, -1.0, -2.5, -4.0])
    risk, grad = op.schedule_risk_and_grad(500, log_rates, 16, h, counts, 0.25)
    eps = 1e-6
    for j in range(log_rates.size):
        step = eps * np.eye(log_rates.size)[j]
        fd = (op.schedule_risk(500, log_rates + step, 16, h, counts, 0.25)
              - op.schedule_risk(500, log_rates - step, 16, h, counts, 0.25)) / (2 * eps)
        assert grad[j] == pytest.approx(fd, rel=1e-5)


def test_port_schedule_risk_matches_recurrence_with_a_step_schedule():
    # Forward pass of the schedule = the step-by-step recurrence with the rate of each piece
    # (bins with lr h >= 0.05, where the +1e-8 is negligible).
    h, counts, m = np.array([1.0, 0.5, 0.1]), np.array([1.0, 4.0, 20.0]), 40
    log_rates = np.log([1.2, 0.6, 0.5])
    per_step = np.repeat(np.exp(log_rates), m)
    exact = second_moments_recurrence(h, h, 1.0, per_step, 8, 3 * m, counts=counts)
    assert op.schedule_risk(m, log_rates, 8, h, counts, 0.0) == pytest.approx(exact[-1], rel=1e-6)
    # equal rates chained piece by piece = one closed form over all steps (the +1e-8 included)
    assert op.schedule_risk(m, [-1.0] * 3, 8, h, counts, 0.0) == pytest.approx(
        op.sgd_risk(3 * m, math.exp(-1.0), 8, h, counts, 0.0), rel=1e-12)


def test_port_optimized_schedule_steps_is_the_last_piece_length_not_reaching_target():
    B, target, n_pieces = 4, 0.05, 3
    steps, rates = op.optimized_schedule_steps(B, 0.0, SMALL_H, SMALL_COUNTS, target, n_pieces)
    m = steps // n_pieces
    assert steps == n_pieces * m and rates.shape == (n_pieces,)
    assert np.all(np.log(rates) <= op.max_log_lr(0.0) + 1e-12)

    def optimised_risk(piece_len):
        log_rates = op.optimize_schedule(piece_len, n_pieces, B, SMALL_H, SMALL_COUNTS, 0.0)
        return op.schedule_risk(piece_len, log_rates, B, SMALL_H, SMALL_COUNTS, 0.0)

    assert optimised_risk(m) >= target > optimised_risk(m + 1)


@pytest.mark.parametrize("call, name", [
    (lambda: op.sgd_steps(0.1, 0, SMALL_H, SMALL_COUNTS, 0.0), "batch_size"),
    (lambda: op.sgd_risk(10, float("nan"), 4, SMALL_H, SMALL_COUNTS, 0.0), "lr"),
    (lambda: op.momentum_steps(0.1, 1.5, 4, SMALL_H, SMALL_COUNTS, 0.0), "beta"),
    (lambda: op.tune_sgd(4, -1.0, SMALL_H, SMALL_COUNTS), "power"),
    (lambda: op.tune_momentum(4, 0.0, SMALL_H, SMALL_COUNTS[:2]), "counts"),
    (lambda: op.sgd_steps(0.1, 4, SMALL_H, SMALL_COUNTS, 0.0, target=0.0), "target"),
    (lambda: op.optimized_schedule_steps(4, 0.0, SMALL_H, SMALL_COUNTS, 0.05, 0), "n_pieces"),
])
def test_port_bad_input_is_a_clear_value_error(call, name):
    with pytest.raises(ValueError, match=name):
        call()
