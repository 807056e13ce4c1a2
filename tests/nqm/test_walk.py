"""nqm.walk against Monte Carlo simulation of SGD written from the update equations, against
nqm.risk, and against hand-derived steady-state values."""

import math

import numpy as np
import pytest

from nqm import NQM, risk
from nqm.walk import gradient_cosine_monte_carlo, walk_stats


def _simulate(h, c, x0sq, lr, batch_size, power, t, n, rng):
    """n independent SGD chains: returns (x_t, x_{t+1}, g_t, g_{t+1}), each of shape (n, d).
    g is the mini-batch gradient h x + xi (xi ~ N(0, c / B)) whose preconditioned form makes the
    step."""
    sd = np.sqrt(c / batch_size)
    x = rng.standard_normal((n, h.size)) * np.sqrt(x0sq)
    pre = h ** -power
    gs, xs = [], []
    for step in range(t + 2):
        g = h * x + sd * rng.standard_normal(x.shape)
        if step >= t:
            gs.append(g)
            xs.append(x)
        x = x - lr * pre * g
    return xs[0], xs[1], gs[0], gs[1]


def _within(sample, value, k=4.5):
    se = sample.std(ddof=1) / math.sqrt(sample.size)
    assert abs(sample.mean() - value) < k * se + 1e-12, (sample.mean(), value, se)


@pytest.mark.parametrize("lr,batch_size,power,t", [(0.9, 4.0, 0.0, 3), (1.5, 2.0, 0.0, 12),
                                                   (0.2, 8.0, 0.5, 7)])
def test_second_moments_match_monte_carlo(lr, batch_size, power, t):
    rng = np.random.default_rng(7)
    h = 1.0 / np.arange(1, 9, dtype=np.float64)
    c = 0.5 * h + 0.1
    problem = NQM.from_spectrum(h, c=c, x0sq=2.0, bins=None)
    x, x1, g, g1 = _simulate(h, c, 2.0, lr, batch_size, power, t, 100_000, rng)
    w = walk_stats(problem, t, lr=lr, batch_size=batch_size, power=power)
    _within(0.5 * np.sum(h * x * x, axis=1), w.loss)
    _within(0.5 * np.sum(h * x1 * x1, axis=1), w.loss_next)
    _within(0.5 * np.sum(h * x * x1, axis=1), w.cross)
    _within(np.sum(g * g1, axis=1), w.grad_dot)
    _within(np.sum(g * g, axis=1), w.grad_sq)
    _within(np.sum(g1 * g1, axis=1), w.grad_sq_next)
    for s in (-0.4, 0.5, 1.3):
        xs = x + s * (x1 - x)
        _within(0.5 * np.sum(h * xs * xs, axis=1), w.segment_loss(s))


def test_monte_carlo_cosine_matches_an_independent_simulation():
    rng = np.random.default_rng(11)
    h = np.array([1.0, 0.5, 0.2, 0.05])
    problem = NQM.from_spectrum(h, bins=None)
    for lr, B, t in [(1.5, 4.0, 2), (0.6, 64.0, 9)]:
        _, _, g, g1 = _simulate(h, h, 1.0, lr, B, 0.0, t, 20_000, rng)
        ref = np.sum(g * g1, axis=1) / np.linalg.norm(g, axis=1) / np.linalg.norm(g1, axis=1)
        got = gradient_cosine_monte_carlo(problem, [t], lr=lr, batch_size=B, runs=20_000, seed=5)
        se = math.hypot(ref.std() / math.sqrt(ref.size), got.std[0] / math.sqrt(got.runs))
        assert abs(got.mean[0] - ref.mean()) < 4.5 * se, (lr, B, t)
        assert got.std[0] == pytest.approx(ref.std(), rel=0.05)


def test_monte_carlo_cosine_noise_free_one_dimension_is_the_sign_of_one_minus_lr_h():
    one = NQM.from_spectrum([1.0], bins=None)
    for lr, sign in [(0.5, 1.0), (1.5, -1.0)]:
        got = gradient_cosine_monte_carlo(one, [0, 3], lr=lr, batch_size=math.inf, runs=4)
        np.testing.assert_allclose(got.mean, sign, rtol=1e-12)


def test_cosine_ratio_of_expectations_is_close_to_the_sampled_cosine_where_it_concentrates():
    # paper spectrum, d = 10^4, small batch, after the transient: the noise (spread over many
    # dimensions) dominates the gradients and the cosine concentrates on the ratio
    problem = NQM.paper(bins=None)
    got = gradient_cosine_monte_carlo(problem, [30], lr=1.0, batch_size=16, runs=8, seed=1)
    ratio = float(walk_stats(problem, 30, lr=1.0, batch_size=16).gradient_cosine)
    assert got.mean[0] == pytest.approx(ratio, abs=0.05)


def test_loss_is_the_risk_of_nqm_risk():
    p = NQM.paper()
    w = walk_stats(p, [0, 1, 17, 5000], lr=0.7, batch_size=32, power=0.25)
    for i, t in enumerate([0, 1, 17, 5000]):
        assert w.loss[i] == pytest.approx(risk(p, t, lr=0.7, batch_size=32, power=0.25), rel=1e-10)
        assert w.loss_next[i] == pytest.approx(risk(p, t + 1, lr=0.7, batch_size=32, power=0.25),
                                               rel=1e-10)


def test_steady_state_is_the_large_t_limit_and_single_dimension_cosine_is_minus_lr_h_over_2():
    p = NQM.paper(bins=30)
    w = walk_stats(p, [1e7, math.inf], lr=0.5, batch_size=64)
    np.testing.assert_allclose(w.loss[0], w.loss[1], rtol=1e-9)
    np.testing.assert_allclose(w.gradient_cosine[0], w.gradient_cosine[1], rtol=1e-9)
    for B in (1.0, 1e6):    # derived by hand: E<g g'> / E|g|^2 = -lr h / 2 at any B
        one = NQM.from_spectrum([0.8], bins=None)
        assert float(walk_stats(one, math.inf, lr=0.3, batch_size=B).gradient_cosine) == \
            pytest.approx(-0.12, rel=1e-12)


def test_valley_floor_is_the_minimum_of_the_segment_quadratic():
    w = walk_stats(NQM.paper(bins=40), [0, 3, 300], lr=1.6, batch_size=128)
    s = np.linspace(-1.0, 2.0, 30001)
    curve = w.segment_loss(s)                      # (3, len(s))
    np.testing.assert_allclose(curve.min(axis=1), w.floor_loss, rtol=1e-7)
    np.testing.assert_allclose(s[curve.argmin(axis=1)], w.floor_s, atol=2e-4)
    inside = np.linspace(0.0, 1.0, 10001)
    seg = w.segment_loss(inside)
    np.testing.assert_allclose(seg.min(axis=1), w.valley_loss, rtol=1e-7)
    np.testing.assert_allclose(inside[seg.argmin(axis=1)], w.valley_s, atol=2e-4)
    # stationary walk: theta_t and theta_{t+1} have the same law, so the floor is at s = 1/2
    st = walk_stats(NQM.paper(bins=40), math.inf, lr=1.6, batch_size=128)
    assert float(st.floor_s) == pytest.approx(0.5, rel=1e-12)


def test_noise_free_walk_has_no_noise_terms():
    one = NQM.from_spectrum([1.0], bins=None)
    w = walk_stats(one, 2, lr=0.25, batch_size=math.inf)
    # x_t = 0.75^t x_0, g = h x: cosine exactly 1 for a single dimension
    assert float(w.gradient_cosine) == pytest.approx(1.0)
    assert float(w.loss) == pytest.approx(0.5 * 0.75 ** 4)


def test_bad_input_names_the_argument():
    p = NQM.paper(bins=10)
    with pytest.raises(ValueError, match="steps"):
        walk_stats(p, -1, lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match="steps"):
        walk_stats(p, 1.5, lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match="steps"):
        walk_stats(p, float("nan"), lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match="lr"):
        walk_stats(p, 1, lr=50.0, batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        walk_stats(p, 1, lr=0.1, batch_size=0)
    with pytest.raises(ValueError, match="power"):
        walk_stats(p, 1, lr=0.1, batch_size=4, power=2.0)
    with pytest.raises(ValueError, match="problem"):
        walk_stats(None, 1, lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match="runs"):
        gradient_cosine_monte_carlo(p, [1], lr=0.1, batch_size=4, runs=1)
    with pytest.raises(ValueError, match="steps"):
        gradient_cosine_monte_carlo(p, [math.inf], lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match="counts"):
        gradient_cosine_monte_carlo(NQM.from_spectrum([1.0, 0.5], bins=None).__class__(
            h=[1.0], c=[1.0], counts=[1.5], x0sq=[1.0]), [1], lr=0.1, batch_size=4)
    with pytest.raises(ValueError, match="s must be finite"):
        walk_stats(p, 1, lr=0.1, batch_size=4).segment_loss([0.0, np.inf])


@pytest.mark.parametrize("name", ["nqm.walk", "nqm.rates"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
