"""Schedules: the exact risk of piecewise-constant hyperparameters and its adjoint gradient.

``shared/spec/NQM.md`` section 2, "Schedules". A schedule is K pieces; piece i runs m_i steps with
constant (lr_i, beta_i) (``nqm._kernels.pieces``). The gradient of the final risk R with respect to
the K rates is a reverse (adjoint) pass over the pieces: with Lambda_K = dR/dS_K and
Lambda_i = P_i^T Lambda_(i+1) P_i, dR/dlr_i = <Lambda_(i+1), dS_(i+1)/dlr_i>, the last factor
carried forward through the doubling of piece i alone (each piece has one rate). The state is x
(SGD) or (x, v) (momentum), with the iterate average xbar appended when an EMA is on; the risk is
measured on x, or on xbar.
"""

import numpy as np
from numba import njit

from nqm._kernels.pieces import _mm, _mmt, _piece, _sandwich_add, _sgd_piece
from nqm._kernels.transition import SGD, _dtransition2, _transition2


@njit(cache=True)
def _fill_transition(opt, ema, k, lr, beta, omb, gamma, omg, A, D, b, dA, db):
    """Write (A, D = I - A, b) of one bin and their lr-derivatives (dA, db) into the 3x3 / 3
    buffers and return the state size n: x (SGD) or (x, v), with xbar appended when ``ema``:
    xbar' = gamma xbar + (1 - gamma) x', i.e. the row (1 - gamma) A_x. plus gamma on the diagonal
    and noise (1 - gamma) b_x (``omg`` = 1 - gamma, carried separately for precision)."""
    r = _transition2(opt, k, lr, beta, omb)
    dr = _dtransition2(opt, k, beta)
    n0 = 1 if opt == SGD else 2
    n = n0 + 1 if ema else n0
    for i in range(3):
        b[i] = 0.0
        db[i] = 0.0
        for j in range(3):
            A[i, j] = 0.0
            D[i, j] = 0.0
            dA[i, j] = 0.0
    A[0, 0] = r[0]
    D[0, 0] = r[4]
    b[0] = r[8]
    dA[0, 0] = dr[0]
    db[0] = dr[4]
    if n0 == 2:
        A[0, 1] = r[1]
        A[1, 0] = r[2]
        A[1, 1] = r[3]
        D[0, 1] = r[5]
        D[1, 0] = r[6]
        D[1, 1] = r[7]
        b[1] = r[9]
        dA[0, 1] = dr[1]
        dA[1, 0] = dr[2]
        dA[1, 1] = dr[3]
        db[1] = dr[5]
    if ema:
        e = n0
        for c in range(n0):
            A[e, c] = omg * A[0, c]
            D[e, c] = -omg * A[0, c]
            dA[e, c] = omg * dA[0, c]
        A[e, e] = gamma
        D[e, e] = omg
        b[e] = omg * b[0]
        db[e] = omg * db[0]
    return n


@njit(cache=True)
def _schedule_risk(opt, ema, k, nv, x0sq, wt, lr, beta, omb, gamma, omg, lengths, grad):
    """Exact risk of a piecewise-constant schedule, and its gradient.

    Args: opt (SGD / HEAVY_BALL / NESTEROV code; momentum pieces may have beta = 0), ema (bool),
      per bin k (preconditioned curvature), nv (noise variance), x0sq, wt (risk weight); per piece
      lr, beta, omb = 1 - beta, lengths (int64, >= 1); gamma, omg = 1 - gamma of the EMA; grad.
    Returns (risk, g): risk[i] = total risk after the first i pieces (i = 0..K); with ``grad``,
      g[i] = d risk[K] / d log lr_i (else zeros). O(K log T) per bin; the reverse pass stores P_i
      and dS_(i+1) of one bin at a time (O(K) memory).
    """
    K = lr.size
    nb = k.size
    risk = np.zeros(K + 1)
    g = np.zeros(K)
    n0 = 1 if opt == SGD else 2
    if n0 == 1 and not ema:
        Qs = np.empty(K)
        dSs = np.empty(K)
        for j in range(nb):
            s = x0sq[j]
            risk[0] += wt[j] * s
            for i in range(K):
                Q, V, dQ, dV = _sgd_piece(k[j], lr[i], lengths[i])
                if grad:
                    Qs[i] = Q
                    dSs[i] = dQ * s + nv[j] * dV
                s = Q * s + nv[j] * V
                risk[i + 1] += wt[j] * s
            if grad:
                lam = wt[j]
                for i in range(K - 1, -1, -1):
                    g[i] += lam * dSs[i]
                    lam *= Qs[i]
        for i in range(K):
            g[i] *= lr[i]
        return risk, g
    r = n0 if ema else 0                       # measured entry: xbar or x
    A = np.zeros((3, 3))
    D = np.zeros((3, 3))
    dA = np.zeros((3, 3))
    b = np.zeros(3)
    db = np.zeros(3)
    P = np.zeros((3, 3))
    dP = np.zeros((3, 3))
    V = np.zeros((3, 3))
    dV = np.zeros((3, 3))
    S = np.zeros((3, 3))
    Sn = np.zeros((3, 3))
    Lam = np.zeros((3, 3))
    w = np.zeros((12, 3, 3))
    Ps = np.zeros((K if grad else 1, 3, 3))
    dSs = np.zeros((K if grad else 1, 3, 3))
    n = n0 + 1 if ema else n0
    for j in range(nb):
        for a_ in range(3):
            for c_ in range(3):
                S[a_, c_] = 0.0
        # x_0 ~ N(0, x0sq), v_0 = 0, xbar_0 = x_0
        S[0, 0] = x0sq[j]
        if ema:
            S[0, r] = x0sq[j]
            S[r, 0] = x0sq[j]
            S[r, r] = x0sq[j]
        risk[0] += wt[j] * S[r, r]
        for i in range(K):
            _fill_transition(opt, ema, k[j], lr[i], beta[i], omb[i], gamma, omg, A, D, b, dA, db)
            _piece(n, A, D, b, dA, db, lengths[i], grad, P, dP, V, dV, w)
            for a_ in range(n):
                for c_ in range(n):
                    Sn[a_, c_] = nv[j] * V[a_, c_]
            if grad:
                dS = dSs[i]
                for a_ in range(n):
                    for c_ in range(n):
                        Ps[i, a_, c_] = P[a_, c_]
                        dS[a_, c_] = nv[j] * dV[a_, c_]
                # dS += dP S P^T + P S dP^T (S does not depend on lr_i)
                _mm(dP, S, w[8], n)
                _mmt(w[8], P, w[9], n)
                for a_ in range(n):
                    for c_ in range(n):
                        dS[a_, c_] += w[9][a_, c_] + w[9][c_, a_]
            _sandwich_add(P, S, Sn, n, w[8], w[9])
            for a_ in range(n):
                for c_ in range(n):
                    S[a_, c_] = 0.5 * (Sn[a_, c_] + Sn[c_, a_])
            risk[i + 1] += wt[j] * S[r, r]
        if grad:
            for a_ in range(3):
                for c_ in range(3):
                    Lam[a_, c_] = 0.0
            Lam[r, r] = wt[j]
            for i in range(K - 1, -1, -1):
                s = 0.0
                for a_ in range(n):
                    for c_ in range(n):
                        s += Lam[a_, c_] * dSs[i, a_, c_]
                g[i] += s
                # Lambda_i = P_i^T Lambda_(i+1) P_i
                Pi = Ps[i]
                for a_ in range(n):
                    for c_ in range(n):
                        acc = 0.0
                        for q_ in range(n):
                            acc += Lam[a_, q_] * Pi[q_, c_]
                        w[8][a_, c_] = acc
                for a_ in range(n):
                    for c_ in range(n):
                        acc = 0.0
                        for q_ in range(n):
                            acc += Pi[q_, a_] * w[8][q_, c_]
                        Lam[a_, c_] = acc
    for i in range(K):
        g[i] *= lr[i]
    return risk, g
