"""NQM construction and binning: the authors' binning reproduced exactly, the accurate binning's
preserved sums, and the measured error of each against the unbinned d = 10^4 problem."""

import numpy as np
import pytest

import nqm
from tests.nqm.naive import official_binning

H_10000 = 0.5 * np.sum(1.0 / np.arange(1, 10**4 + 1))


def test_official_binning_reproduces_the_notebook():
    p = nqm.NQM.paper(binning="official")
    assert p.initial_risk == pytest.approx(4.702495573141032, rel=1e-15)
    h_ref, counts_ref = official_binning(1.0 / np.arange(1, 10**4 + 1))
    np.testing.assert_array_equal(np.sort(p.h), np.sort(h_ref))
    np.testing.assert_array_equal(p.counts[np.argsort(p.h)], counts_ref[np.argsort(h_ref)])
    np.testing.assert_array_equal(p.c, p.h)             # C = H per bin, as in the notebook
    assert p.dimension == 10**4


def test_accurate_binning_preserves_initial_risk_and_noise():
    full = nqm.NQM.paper(bins=None)
    p = nqm.NQM.paper()
    assert full.n_bins == 10**4 and full.initial_risk == pytest.approx(H_10000, rel=1e-14)
    assert p.initial_risk == pytest.approx(H_10000, rel=1e-14)
    assert np.sum(p.counts * p.c) == pytest.approx(np.sum(full.counts * full.c), rel=1e-14)
    assert p.n_bins <= 100 and p.dimension == 10**4


def test_power_law_and_explicit_arrays():
    p = nqm.NQM.power_law(1000, a=2.0, q=0.5, bins=None)
    i = np.arange(1, 1001)
    np.testing.assert_allclose(np.sort(p.h), np.sort(i ** -2.0))
    np.testing.assert_allclose(p.c, p.h ** 0.5)
    # repeated eigenvalues merge into one bin without changing anything
    q = nqm.NQM.from_spectrum([1.0, 1.0, 0.5], c=[2.0, 2.0, 1.0], bins=None)
    assert q.n_bins == 2 and q.dimension == 3
    assert q.initial_risk == pytest.approx(1.25)


@pytest.mark.parametrize("binning, bins, max_err", [("accurate", 100, 2e-3),
                                                    ("official", 100, 5e-2)])
def test_binning_error_against_unbinned_problem(binning, bins, max_err):
    """Steps to target at fixed rates on the binned problem vs the unbinned d = 10^4 one.
    Measured (tuned SGD, B = 4 .. 2^18): accurate 100 bins within 0.11 %, B_crit 0.05 %;
    official binning -0.4 % .. +3.3 %, B_crit -3.6 % (README table)."""
    full = nqm.NQM.paper(bins=None)
    p = nqm.NQM.paper(bins=bins, binning=binning)
    errs = []
    for lr, B in ((0.2, 64), (1.9, 16384)):
        a = nqm.steps_to_target(p, lr=lr, batch_size=B).steps
        b = nqm.steps_to_target(full, lr=lr, batch_size=B).steps
        errs.append(abs(a / b - 1))
    assert max(errs) < max_err
    if binning == "official":
        assert max(errs) > 1e-2          # the official binning's bias is visible


def test_problem_is_frozen():
    p = nqm.NQM.paper()
    with pytest.raises(ValueError):
        p.h[0] = 2.0
    with pytest.raises(AttributeError):
        p.h = np.ones(3)
    assert "initial risk 4.8938" in repr(p)
