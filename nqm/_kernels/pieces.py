"""One constant piece of a schedule in closed form, with its derivative in the piece's rate.

``shared/spec/NQM.md`` section 2, "Schedules": piece i runs m steps with constant (lr, beta), so its
second moments follow the closed form of one constant segment, S -> P S P^T + sigma^2 V with
P = A^m and V = sum_(j < m) A^j b b^T A^jT: O(log m) per piece and bin by doubling (``_piece``,
states of size up to 3), or O(1) for SGD (``_sgd_piece``, paper eqn. 4). Small dense helpers on the
leading n x n blocks of 3x3 buffers come first.
"""

import math

from numba import njit


@njit(cache=True)
def _mm(X, Y, Z, n):
    """Z = X @ Y (leading n x n blocks)."""
    for i in range(n):
        for j in range(n):
            s = 0.0
            for q_ in range(n):
                s += X[i, q_] * Y[q_, j]
            Z[i, j] = s


@njit(cache=True)
def _mmt(X, Y, Z, n):
    """Z = X @ Y^T (leading n x n blocks)."""
    for i in range(n):
        for j in range(n):
            s = 0.0
            for q_ in range(n):
                s += X[i, q_] * Y[j, q_]
            Z[i, j] = s


@njit(cache=True)
def _sandwich_add(P, S, out, n, t1, t2):
    """out += P S P^T."""
    _mm(P, S, t1, n)
    _mmt(t1, P, t2, n)
    for i in range(n):
        for j in range(n):
            out[i, j] += t2[i, j]


@njit(cache=True)
def _dsandwich_add(P, dP, S, dS, out, n, t1, t2):
    """out += d(P S P^T) = dP S P^T + P S dP^T + P dS P^T (S symmetric)."""
    _mm(dP, S, t1, n)
    _mmt(t1, P, t2, n)
    for i in range(n):
        for j in range(n):
            out[i, j] += t2[i, j] + t2[j, i]
    _sandwich_add(P, dS, out, n, t1, t2)


@njit(cache=True)
def _piece(n, A, D, b, dA, db, m, grad, P, dP, V, dV, w):
    """Closed form of m >= 1 steps of one constant (A, b): P = A^m and
    V = sum_(j < m) A^j b b^T A^jT (unit noise), and with ``grad`` their lr-derivatives dP, dV.

    Binary powering over the bits of m, with V_(r + s) = V_r + A^r V_s A^rT and
    V_(2s) = V_s + A^s V_s A^sT: every term is positive semidefinite, so nothing cancels (the
    Lyapunov form S_inf - A^m S_inf A^mT would where a bin is far below its steady state), and it
    holds for any A (defective, e.g. critical damping; unstable pieces). While A^(2^j) is near I it
    is carried as E = I - A^(2^j), E' = 2E - E^2, so that 1 - lr h ~ 1 keeps its digits (as in
    ``_noise_accum``). The derivatives follow every product by the product rule (forward mode in
    the one rate of this piece). ``w``: workspace (12, 3, 3)."""
    if m == 1:
        for i in range(n):
            for j in range(n):
                P[i, j] = A[i, j]
                V[i, j] = b[i] * b[j]
                dP[i, j] = dA[i, j]
                dV[i, j] = db[i] * b[j] + b[i] * db[j]
        return
    X, E, dX, W, dW, R, F, dR, t1, t2, t3, t4 = (w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
                                                 w[8], w[9], w[10], w[11])
    near = False
    emax = 0.0
    for i in range(n):
        for j in range(n):
            X[i, j] = A[i, j]
            E[i, j] = D[i, j]
            dX[i, j] = dA[i, j]
            W[i, j] = b[i] * b[j]
            dW[i, j] = db[i] * b[j] + b[i] * db[j]
            R[i, j] = 1.0 if i == j else 0.0
            F[i, j] = 0.0
            dR[i, j] = 0.0
            V[i, j] = 0.0
            dV[i, j] = 0.0
            emax = max(emax, abs(D[i, j]))
    near = emax < 0.5
    res_near = True
    tt = m
    while tt > 0:
        if tt & 1:
            # V_(r+s) = V_r + A^r V_s A^rT, A^(r+s) = A^r A^s
            if grad:
                _dsandwich_add(R, dR, W, dW, dV, n, t1, t2)
                _mm(dR, X, t3, n)
                _mm(R, dX, t4, n)
                for i in range(n):
                    for j in range(n):
                        t3[i, j] += t4[i, j]
            _sandwich_add(R, W, V, n, t1, t2)
            if res_near and near:
                _mm(F, E, t1, n)
                for i in range(n):
                    for j in range(n):
                        F[i, j] = F[i, j] + E[i, j] - t1[i, j]
                        R[i, j] = (1.0 if i == j else 0.0) - F[i, j]
            else:
                _mm(R, X, t1, n)
                for i in range(n):
                    for j in range(n):
                        R[i, j] = t1[i, j]
                res_near = False
            if grad:
                for i in range(n):
                    for j in range(n):
                        dR[i, j] = t3[i, j]
        tt >>= 1
        if tt == 0:
            break
        # doubling: V_(2s) = V_s + A^s V_s A^sT, A^(2s) = A^s A^s
        if grad:
            # t3 = d(X W X^T) with the old W, dW
            for i in range(n):
                for j in range(n):
                    t3[i, j] = 0.0
            _dsandwich_add(X, dX, W, dW, t3, n, t1, t2)
            for i in range(n):
                for j in range(n):
                    dW[i, j] += t3[i, j]
        for i in range(n):
            for j in range(n):
                t3[i, j] = W[i, j]
        _sandwich_add(X, t3, W, n, t1, t2)
        if grad:
            _mm(dX, X, t3, n)
            _mm(X, dX, t4, n)
            for i in range(n):
                for j in range(n):
                    dX[i, j] = t3[i, j] + t4[i, j]
        if near:
            _mm(E, E, t1, n)
            emax = 0.0
            for i in range(n):
                for j in range(n):
                    E[i, j] = 2.0 * E[i, j] - t1[i, j]
                    X[i, j] = (1.0 if i == j else 0.0) - E[i, j]
                    emax = max(emax, abs(E[i, j]))
            near = emax < 0.5
        else:
            _mm(X, X, t1, n)
            for i in range(n):
                for j in range(n):
                    X[i, j] = t1[i, j]
    for i in range(n):
        for j in range(n):
            P[i, j] = R[i, j]
            dP[i, j] = dR[i, j]


@njit(cache=True)
def _sgd_piece(k, lr, m):
    """One SGD bin (curvature k) over m >= 1 steps at rate lr, in closed form (paper eqn. 4):
    E[x^2] -> Q E[x^2] + sigma^2 V with Q = (1 - lr k)^(2m), V = lr^2 (1 - Q) / (1 - (1 - lr k)^2).
    Returns (Q, V, dQ/dlr, dV/dlr). 1 - Q and 1 - |1 - lr k| are formed with expm1 / log1p and
    without subtraction, so small lr k keeps its digits; exact at lr k = 1 and 2."""
    ak = lr * k
    q = 1.0 - ak
    if m == 1:
        return q * q, lr * lr, -2.0 * k * q, 2.0 * lr
    gap = ak if ak <= 1.0 else 2.0 - ak            # 1 - |q| (negative when unstable)
    L2 = 2.0 * m * math.log1p(-gap) if gap < 1.0 else -math.inf
    Q = math.exp(L2)
    one_m_Q = -math.expm1(L2)
    tw = 2.0 - ak
    # dQ/dlr = 2m q^(2m-1) (-k)
    if q == 0.0:
        dQ = 0.0
    else:
        dQ = -2.0 * m * k * Q / q
    if tw == 0.0:
        # |q| = 1: V = lr^2 m, dV = 2 lr m + lr^2 k m (m - 1)
        return Q, lr * lr * m, dQ, 2.0 * lr * m + lr * lr * k * m * (m - 1.0)
    u = lr / (k * tw)                              # lr^2 / (1 - q^2)
    V = u * one_m_Q
    dV = 2.0 * one_m_Q / (k * tw * tw) - u * dQ
    return Q, V, dQ, dV
