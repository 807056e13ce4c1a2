"""Generic closed form over one constant segment, any state size n <= 3 (the reference path).

``shared/spec/NQM.md`` section 2: ``S_t = A^t (S_0 - S_inf) (A^t)^T + S_inf`` with A^t by binary
powering carried out on E = I - A^(2^k) while A^(2^k) is near the identity (so small ``lr * h`` does
not cancel) and directly afterwards, and the Lyapunov equation ``S_inf = A S_inf A^T + sigma^2 b b^T``
solved as ``D S + S D^T - D S D^T = Q`` with D = I - A.
"""

import numpy as np
from numba import njit

from nqm._kernels.transition import SGD, _transition2


@njit(cache=True)
def _matpow(A, D, n, t):
    """A^t (n x n, t >= 0 integer) by binary powering. While A^(2^k) is close to I it is carried as
    E = I - A^(2^k) (E' = 2E - E^2), so that 1 - lr h ~ 1 does not lose digits; once ||E|| >= 1/2
    the powers are squared directly."""
    I = np.eye(n)
    E = np.ascontiguousarray(D[:n, :n])
    P = np.ascontiguousarray(A[:n, :n])
    near = np.max(np.abs(E)) < 0.5
    R = I.copy()                 # result, direct form
    F = np.zeros((n, n))         # result as I - R while res_near
    res_near = True
    tt = int(t)
    while tt > 0:
        if tt & 1:
            if res_near and near:
                F = F + E - F @ E
                R = I - F
            else:
                R = R @ P
                res_near = False
        tt >>= 1
        if tt == 0:
            break
        if near:
            E = 2.0 * E - E @ E
            P = I - E
            near = np.max(np.abs(E)) < 0.5
        else:
            P = P @ P
    return R


@njit(cache=True)
def _lyapunov(D, b, n):
    """S with S = A S A^T + b b^T (unit noise), A = I - D, solved as D S + S D^T - D S D^T = b b^T
    on the n (n + 1) / 2 independent entries of the symmetric S (Gaussian elimination, pivoting)."""
    m = n * (n + 1) // 2
    ii = np.empty(m, np.int64)
    jj = np.empty(m, np.int64)
    c = 0
    for i in range(n):
        for j in range(i, n):
            ii[c] = i
            jj[c] = j
            c += 1
    Dn = np.ascontiguousarray(D[:n, :n])
    DnT = np.ascontiguousarray(Dn.T)
    M = np.zeros((m, m))
    rhs = np.zeros(m)
    for col in range(m):
        Eb = np.zeros((n, n))
        Eb[ii[col], jj[col]] = 1.0
        Eb[jj[col], ii[col]] = 1.0
        Lv = Dn @ Eb + Eb @ DnT - Dn @ Eb @ DnT
        for row in range(m):
            M[row, col] = Lv[ii[row], jj[row]]
    for row in range(m):
        rhs[row] = b[ii[row]] * b[jj[row]]
    sol = np.linalg.solve(M, rhs)
    S = np.zeros((n, n))
    for col in range(m):
        S[ii[col], jj[col]] = sol[col]
        S[jj[col], ii[col]] = sol[col]
    return S


@njit(cache=True)
def _segment(A, D, b, sigma2, S0, n, t):
    """Second moments after t steps of one constant (A, b): A^t (S_0 - S_inf) A^tT + S_inf."""
    Sinf = sigma2 * _lyapunov(D, b, n)
    P = _matpow(A, D, n, t)
    dev = np.ascontiguousarray(S0[:n, :n]) - Sinf
    return P @ dev @ np.ascontiguousarray(P.T) + Sinf


@njit(cache=True)
def _risk_generic(opt, k, wt, nv, x0sq, lr, beta, omb, t):
    """Total risk after integer t steps from the generic segment kernel (reference path)."""
    total = 0.0
    for j in range(k.size):
        r = _transition2(opt, k[j], lr, beta, omb)
        n = 1 if opt == SGD else 2
        A = np.array([[r[0], r[1]], [r[2], r[3]]])
        D = np.array([[r[4], r[5]], [r[6], r[7]]])
        b = np.array([r[8], r[9]])
        S0 = np.zeros((2, 2))
        S0[0, 0] = x0sq[j]
        S = _segment(A, D, b, nv[j], S0, n, t)
        total += wt[j] * S[0, 0]
    return total
