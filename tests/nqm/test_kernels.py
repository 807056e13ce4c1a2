"""Closed-form risk (nqm._kernels via nqm.risk) against independent computations: the brute-force
second-moment recurrence of tests/nqm/naive.py (1e-10 relative), 50-digit mpmath (t up to 1e9),
Monte Carlo simulation of the stochastic process itself, and the matrix form of the closed form."""

import math

import mpmath as mp
import numpy as np
import pytest

import nqm
from tests.nqm.naive import closed_form_risk, monte_carlo_risk, second_moments_recurrence

# a small spectrum with c != h, uneven x0sq and counts (every term of the closed form matters)
H = np.array([1.0, 0.3, 0.01, 1e-4])
C = np.array([0.5, 1.0, 2.0, 0.1])
X0 = np.array([1.0, 2.0, 0.5, 3.0])
COUNTS = np.array([1.0, 3.0, 10.0, 100.0])
PROBLEM = nqm.NQM(H, C, COUNTS, X0)

# (lr, batch size, momentum, nesterov, power): every optimizer, critical damping of the h = 0.3
# bin (beta = (1 - sqrt(a h))^2), rates within 1e-4 of the stability limit, momentum near 1.
A_CRIT = 0.5
BETA_CRIT = (1.0 - math.sqrt(A_CRIT * 0.3)) ** 2
CASES = [
    (0.01, 4, 0.0, False, 0.0),
    (1.0, 4, 0.0, False, 0.0),
    (1.9999, 1, 0.0, False, 0.0),                 # SGD limit 2
    (0.3, 16, 0.0, False, 0.5),                   # preconditioned
    (0.1, 2, 0.0, False, 1.0),                    # Newton-like p = 1
    (0.05, 4, 0.9, False, 0.0),
    (3.7996, 64, 0.9, False, 0.0),                # heavy-ball limit 3.8
    (A_CRIT, 8, BETA_CRIT, False, 0.0),           # critical damping
    (0.001, 4, 0.999, False, 0.0),
    (0.2, 4, 0.9, True, 0.0),
    (1.3570, 32, 0.9, True, 0.0),                 # Nesterov limit 2 * 1.9 / 2.8 = 1.35714
    (0.3, 8, 0.5, True, 0.25),
    (A_CRIT, 8, BETA_CRIT, False, 0.5),
]


@pytest.mark.parametrize("lr, B, beta, nesterov, power", CASES)
def test_closed_form_matches_recurrence(lr, B, beta, nesterov, power):
    steps = 3000
    ref = second_moments_recurrence(H, C, X0, lr, B, steps, momentum=beta, nesterov=nesterov,
                                    power=power, counts=COUNTS)
    curve = nqm.risk_curve(PROBLEM, steps, lr=lr, batch_size=B, momentum=beta,
                           nesterov=nesterov, power=power)
    np.testing.assert_allclose(curve.risk, ref, rtol=1e-10, atol=0)


def _mp_risk(h, c, x0, lr, B, beta, nesterov, t):
    """One bin, 50 digits: A^t by mpmath's integer matrix power, S_inf from the Lyapunov equation
    solved as a linear system (written in A, not D)."""
    mp.mp.dps = 50
    h, c, lr, beta = mp.mpf(h), mp.mpf(c), mp.mpf(lr), mp.mpf(beta)
    s2 = c / B
    if beta == 0:
        A = mp.matrix([[1 - lr * h]])
        b = mp.matrix([[-lr]])
    elif nesterov:
        A = mp.matrix([[1 - lr * (1 + beta) * h, -lr * beta ** 2], [h, beta]])
        b = mp.matrix([[-lr * (1 + beta)], [1]])
    else:
        A = mp.matrix([[1 - lr * h, -lr * beta], [h, beta]])
        b = mp.matrix([[-lr], [1]])
    n = A.rows
    Q = s2 * b * b.T
    # vec(S) = vec(A S A^T) + vec(Q)  ->  (I - A (x) A) vec(S) = vec(Q)
    M = mp.eye(n * n)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                for m in range(n):
                    M[i * n + j, k * n + m] -= A[i, k] * A[j, m]
    vecS = mp.lu_solve(M, mp.matrix([Q[i, j] for i in range(n) for j in range(n)]))
    Sinf = mp.matrix(n, n)
    for i in range(n):
        for j in range(n):
            Sinf[i, j] = vecS[i * n + j]
    S0 = mp.zeros(n, n)
    S0[0, 0] = mp.mpf(x0)
    P = A ** int(t)
    S = P * (S0 - Sinf) * P.T + Sinf
    return 0.5 * h * S[0, 0]


@pytest.mark.parametrize("h, lr, B, beta, nesterov", [
    (1e-4, 1.0, 4, 0.0, False),
    (1e-4, 1e-3, 1, 0.0, False),            # a h = 1e-7: (1 - a h)^t must not lose digits
    (1.0, 1.9999999, 1024, 0.0, False),
    (0.01, 0.5, 4, 0.9, False),
    (1e-4, 1.0, 4, (1 - math.sqrt(1e-4)) ** 2, False),   # critical damping
    (1e-4, 0.01, 16, 0.99999, False),
    (0.5, 0.7, 64, 0.9, True),
])
@pytest.mark.parametrize("t", [10, 10**3, 10**6, 10**9])
def test_closed_form_matches_mpmath_up_to_1e9_steps(h, lr, B, beta, nesterov, t):
    prob = nqm.NQM(np.array([h]), np.array([h]), np.array([1.0]), np.array([1.0]))
    got = nqm.risk(prob, t, lr=lr, batch_size=B, momentum=beta, nesterov=nesterov)
    ref = float(_mp_risk(h, h, 1.0, lr, B, beta, nesterov, t))
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_closed_form_matches_matrix_power_and_lyapunov_solve():
    """The prepared closed form against the matrix form of the same closed form, written with
    library linear algebra (numpy's matrix_power, scipy's Lyapunov solver; tests/nqm/naive.py),
    at t up to 123456 for every case: critical damping, rates near the stability limit."""
    for lr, B, beta, nesterov, power in CASES:
        for t in (1, 7, 100, 2999, 123456):
            ref = closed_form_risk(H, C, X0, lr, B, t, momentum=beta, nesterov=nesterov,
                                   power=power, counts=COUNTS)
            fast = nqm.risk(PROBLEM, t, lr=lr, batch_size=B, momentum=beta, nesterov=nesterov,
                            power=power)
            assert fast == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("lr, beta, nesterov, power", [
    (0.5, 0.0, False, 0.0),
    (0.4, 0.0, False, 0.5),
    (0.2, 0.7, False, 0.0),
    (0.5, (1 - math.sqrt(0.5 * 0.2)) ** 2, False, 0.0),      # critical damping of h = 0.2
    (0.3, 0.8, True, 0.0),
    (2.8, 0.5, False, 0.0),          # heavy-ball limit 3.0: near-unstable
])
def test_closed_form_matches_monte_carlo(lr, beta, nesterov, power):
    """Sampled noise, 4000 independent runs: every t within 5 standard errors of the MC mean
    (31 times per case; a fixed seed keeps it deterministic)."""
    h = np.array([1.0, 0.2, 0.03])
    steps, B = 30, 2
    mean, se = monte_carlo_risk(h, h, 1.0, lr, B, steps, momentum=beta, nesterov=nesterov,
                                power=power, n_runs=4000, seed=1)
    prob = nqm.NQM(h, h, np.ones(3), np.ones(3))
    exact = nqm.risk_curve(prob, steps, lr=lr, batch_size=B, momentum=beta, nesterov=nesterov,
                           power=power).risk
    assert np.all(np.abs(exact - mean) <= 5.0 * se)


def test_steady_state_matches_closed_forms():
    # SGD: a c / (2 B (2 - a h)) per dimension (paper eqn. 4)
    lr, B = 0.7, 8
    want = np.sum(COUNTS * lr * C / (2 * B * (2 - lr * H)))
    assert nqm.steady_state_risk(PROBLEM, lr=lr, batch_size=B) == pytest.approx(want, rel=1e-13)
    # heavy ball: E[x^2] = a sigma^2 (1 + beta) / (h (1 - beta) (2 (1 + beta) - a h))
    beta = 0.9
    ex2 = lr * (C / B) * (1 + beta) / (H * (1 - beta) * (2 * (1 + beta) - lr * H))
    want = np.sum(0.5 * COUNTS * H * ex2)
    got = nqm.steady_state_risk(PROBLEM, lr=lr, batch_size=B, momentum=beta)
    assert got == pytest.approx(want, rel=1e-12)


def test_noise_free_batch_inf_has_zero_floor():
    curve = nqm.risk_curve(PROBLEM, [0, 10, 10**4], lr=0.5, batch_size=math.inf, momentum=0.5)
    assert curve.steady_state == 0.0
    ref = second_moments_recurrence(H, 0.0 * C, X0, 0.5, 1, 10**4, momentum=0.5, counts=COUNTS)
    np.testing.assert_allclose(curve.risk, ref[[0, 10, 10**4]], rtol=1e-10)
