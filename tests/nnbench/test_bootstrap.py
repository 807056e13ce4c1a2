"""nnbench.bootstrap: study points, the two-level resample, percentile intervals, refusal reasons and the
measured critical batch size with intervals on exact and noisy hyperbolas."""

import math

import numpy as np
import pytest

import nqm
from nnbench.bootstrap import (
    Interval,
    measured_critical_batch,
    percentile_interval,
    resample,
    study_points,
    unsupported,
)

B = [16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0]
S_MIN, E_MIN = 20.0, 40_000.0          # B_crit 2000


def hyperbola(b):
    return S_MIN + E_MIN / b


def test_study_points_take_the_fewest_complete_steps():
    b, s = study_points({64: [30, None, 12], 16: [math.nan, 50], 8: [None, math.nan]})
    np.testing.assert_array_equal(b, [16.0, 64.0])
    np.testing.assert_array_equal(s, [50.0, 12.0])
    with pytest.raises(ValueError, match="> 0"):
        study_points({8: [0]})
    with pytest.raises(ValueError, match="batch sizes"):
        study_points({0.5: [3]})


def test_resample_draws_studies_then_trials():
    trials = {8: [1.0, 2.0, 3.0], 16: [4.0], 32: [5.0, 6.0]}
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        r = resample(trials, rng)
        assert len(r) == 3
        for b, s in r:
            assert s.size == len(trials[int(b)]) and set(s) <= set(trials[int(b)])
        seen.add(tuple(sorted(b for b, _ in r)))
    assert len(seen) > 3                       # studies repeat and drop out across resamples


def test_percentile_interval():
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    assert all(math.isnan(v) for v in percentile_interval([math.nan], 0.9))
    assert str(Interval(1.0, 0.5, 2.0)) == "1 [0.5, 2]"


def test_unsupported_reasons():
    assert unsupported(B, [hyperbola(b) for b in B]) is None
    assert "3" in unsupported(B[:2], [5, 4])
    assert "do not decrease" in unsupported(B, [10 * b**0.2 for b in B])
    small = B[:3]
    assert "beyond the largest batch measured" in unsupported(small, [hyperbola(b) for b in small])
    big = [2e4, 5e4, 1e5]
    assert "below the smallest batch measured" in unsupported(big, [hyperbola(b) for b in big])


def test_measured_critical_batch_exact_and_noisy():
    exact = measured_critical_batch({b: [hyperbola(b)] for b in B}, n_boot=30)
    assert exact.refused is None and exact.b_crit.value == pytest.approx(E_MIN / S_MIN, rel=1e-6)
    assert exact.b_crit.low == pytest.approx(exact.b_crit.value, rel=1e-5)   # no scatter, no width
    fit = nqm.critical_batch(batch_sizes=B, steps=[hyperbola(b) for b in B])
    assert exact.s_min.value == pytest.approx(fit.s_min) and exact.replicates == 30
    # multiplicative scatter of the points: the interval covers the truth and has width
    rng = np.random.default_rng(3)
    noisy = {b: [hyperbola(b) * math.exp(rng.normal(0, 0.1)), hyperbola(b) * 1.5] for b in B}
    r = measured_critical_batch(noisy, n_boot=200, seed=1)
    assert r.b_crit.low < E_MIN / S_MIN < r.b_crit.high and r.b_crit.high > 1.1 * r.b_crit.low
    assert r.steps_interval.shape == (len(B), 2)
    refused = measured_critical_batch({b: [hyperbola(b)] for b in B[:3]}, n_boot=5)
    assert refused.b_crit is None and "beyond" in refused.refused
    with pytest.raises(ValueError, match="n_boot"):
        measured_critical_batch(noisy, n_boot=-1)
    with pytest.raises(ValueError, match="level"):
        measured_critical_batch(noisy, level=1.5)
