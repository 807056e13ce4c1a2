"""nqm.rates.convergence_rate against the roots of the characteristic polynomial written from the
update equations, and against the decay of the exact noise-free risk."""

import math

import numpy as np
import pytest

from nqm import NQM, risk
from nqm.rates import convergence_rate


def _one(h):
    return NQM.from_spectrum([h], bins=None)


@pytest.mark.parametrize("h,lr,beta", [(1.0, 0.01, 0.5), (1.0, 0.01, 0.95), (0.3, 1.2, 0.1),
                                       (1.0, 0.5, 0.0), (1e-3, 2.0, 0.999), (2.0, 1.9, 0.9)])
def test_heavy_ball_rate_is_largest_root_modulus(h, lr, beta):
    # paper eqn. 7: roots of z^2 - (1 + beta - lr h) z + beta
    roots = np.roots([1.0, -(1.0 + beta - lr * h), beta])
    expected = np.max(np.abs(roots))
    got = convergence_rate(_one(h), lr=lr, momentum=beta)[0]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_nesterov_rate_is_spectral_radius_of_pytorch_form():
    h, lr, beta = 0.7, 0.4, 0.8
    A = np.array([[1 - lr * (1 + beta) * h, -lr * beta ** 2], [h, beta]])
    expected = np.max(np.abs(np.linalg.eigvals(A)))
    got = convergence_rate(_one(h), lr=lr, momentum=beta, nesterov=True)[0]
    assert got == pytest.approx(expected, rel=1e-12)


def test_sgd_rate_with_preconditioning_is_one_minus_lr_k():
    p = NQM.paper(bins=20)
    got = convergence_rate(p, lr=0.3, power=0.5)
    np.testing.assert_allclose(got, np.abs(1 - 0.3 * p.h ** 0.5), rtol=1e-14)


def test_unstable_rate_is_reported_not_rejected():
    assert convergence_rate(_one(1.0), lr=3.0)[0] == pytest.approx(2.0)


@pytest.mark.parametrize("beta", [0.0, 0.6])
def test_rate_matches_decay_of_noise_free_risk(beta):
    # risk(t) ~ const * rate^(2t) for an overdamped single dimension without noise
    one, lr, t = _one(0.05), 0.2, 400
    ratio = risk(one, t + 1, lr=lr, batch_size=math.inf, momentum=beta) / \
        risk(one, t, lr=lr, batch_size=math.inf, momentum=beta)
    assert math.sqrt(ratio) == pytest.approx(convergence_rate(one, lr=lr, momentum=beta)[0],
                                             rel=1e-6)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="problem"):
        convergence_rate("paper", lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        convergence_rate(_one(1.0), lr=-0.1)
    with pytest.raises(ValueError, match="momentum"):
        convergence_rate(_one(1.0), lr=0.1, momentum=1.0)
