"""numba kernels of the exact noisy quadratic model (private; the public API validates, then calls).

Every kernel in the package lives in this ONE file: numba's on-disk cache does not notice changes in
other files, so kernels that call each other must share a file.

The mechanism (``shared/spec/NQM.md`` section 2): on one dimension (bin) every optimizer is a linear
recurrence on a state s of size n (x; (x, v) with momentum), ``s' = A s + b xi``, ``Var xi = sigma^2``,
whose second moments obey ``S' = A S A^T + sigma^2 b b^T`` with the closed form over a constant segment

    S_t = A^t (S_0 - S_inf) (A^t)^T + S_inf,      S_inf = A S_inf A^T + sigma^2 b b^T.

Two evaluations of that closed form live here:

* generic, any n <= 3 (``_matpow``, ``_lyapunov``, ``_segment``): A^t by binary powering carried out on
  E = I - A^(2^k) while A^(2^k) is near the identity (so small ``lr * h`` does not cancel) and
  directly afterwards; the Lyapunov equation solved as ``D S + S D^T - D S D^T = Q`` with D = I - A.
  This is the building block a piecewise-constant schedule chains (issue 3).
* fast, n <= 2, on a *prepared* per-bin representation (``_prepare_bin``) that every question of the
  package uses: with the roots l1, l2 of A (|l1| >= |l2|), Cayley-Hamilton gives
  ``A^t = p_t A - det(A) p_(t-1) I`` with ``p_t = l1^(t-1) F(t)``,
  ``F(t) = (1 - z^t) / (1 - z)``, ``z = l2 / l1`` (real roots; evaluated with expm1/log1p, so it stays
  exact at critical damping z = 1 where F(t) = t and an eigendecomposition fails) or
  ``F(t) = sin(t theta) / sin(theta)`` (complex roots rho e^(+-i theta)). With x_0 ~ N(0, x0sq) and
  v_0 = 0 the risk of a bin is ``wt * (x0sq y_t^2 + S_inf,xx - q_t)`` where ``y_t = (A^t)_xx`` is the
  noise-free trajectory and ``q_t = (A^t S_inf A^tT)_xx`` decays; ``S_inf,xx - q_t`` is the noise
  accumulated so far, increasing in t. Both are smooth functions of a real t (used by the optimizers'
  relaxation) and exact at integers.

Prepared row layout (``prep[j, :]``), ``E_t = exp((t - 1) L)``:

    0 kind   0: one-dimensional (SGD), 1: two real roots, 2: complex roots
    1 L      log |dominant root| (kind 0: log|1 - lr k|)
    2 lz     kind 1: log|z|;  kind 2: theta
    3 zs     kind 1: sign of z (1, 0, -1);  kind 2: sin(theta)
    4 w1     (A)_xx
    5 g1     kind 1: -l2;  kind 2: -rho        (y_t = E_t (w1 F(t) + g1 F(t-1)))
    6 qa     A_x S_inf A_x^T                    (q_t = E_t^2 (qa F_t^2 + 2 qb F_t F_(t-1) + qc F_(t-1)^2))
    7 qb     -mu (A_x S_inf)_x, mu = l2 or rho
    8 qc     mu^2 S_inf,xx
    9 sxx    S_inf,xx (kind 0: the steady state E[x^2])
    10 x0sq  initial E[x^2]
    11 pc    kind 2: (A_xx - A_vv) / (2 sin theta) (phase of y for the interval bounds)
    12-22    A (4), D (4), b (2), sigma^2: for the cancellation-free noise sum (``_noise_accum``)

Optimizer codes: 0 = SGD (n = 1), 1 = heavy ball, 2 = Nesterov (PyTorch's form), 3 = SGD with an
exponential moving average of the iterates (n = 2: state (xbar, x - xbar), risk on xbar; the
"momentum" slot carries the decay gamma), so that every constant-hyperparameter question (risk,
steps, tuning) works for it unchanged. Preconditioning is not a code: it is applied to the problem
(curvature k = h^(1-p), noise c h^(-2p)) before the kernels. Schedules (piecewise-constant rates and
momenta, with or without an EMA, states of size up to 3) are evaluated by ``_schedule_risk`` at
the end of this file.
"""

import math

import numpy as np
from numba import njit, prange

SGD, HEAVY_BALL, NESTEROV, SGD_EMA = 0, 1, 2, 3
NCOL = 23
# Largest step count the searches consider (2^53: every integer below it is exact in float64).
T_MAX = 9007199254740992.0
# x = log(lr / lr_max) ranges over [X_LO, X_HI]; y = log(1 - momentum) over [Y_LO, 0].
X_LO = -46.0                     # lr = 1e-20 lr_max
X_HI = math.log1p(-1e-9)         # stay a hair inside the stability limit
Y_LO = math.log(1e-8)            # momentum up to 1 - 1e-8
BIG = 1e300                      # objective value of an unreachable target
# Bounds used for pruning are trusted only beyond this relative margin (rounding).
PRUNE_RTOL = 1e-9


# =============================================================================================
# Per-optimizer transition (A, b), D = I - A without cancellation
# =============================================================================================
@njit(cache=True)
def _transition2(opt, k, lr, beta, omb):
    """2x2 (A, D, b) of one bin, plus 1 - det(A) computed without cancellation.

    opt 0 (SGD) returns the 1x1 system in the top-left corner (A[1,1] = D[1,1] = 0 unused).
    ``omb`` = 1 - beta, carried separately so that momenta close to 1 keep their precision.
    """
    if opt == SGD:
        ak = lr * k
        return (1.0 - ak, 0.0, 0.0, 0.0, ak, 0.0, 0.0, 0.0, -lr, 0.0, 1.0)
    if opt == SGD_EMA:
        # SGD with an EMA of the iterates, xbar' = gamma xbar + (1 - gamma) x' (beta = gamma,
        # omb = 1 - gamma), in the coordinates (xbar, w = x - xbar): x_0 = xbar_0 gives w_0 = 0, so
        # the state starts as (x_0, 0) and the risk is on the first entry, as for momentum. With
        # q = 1 - lr k: xbar' = (1 - (1 - gamma) lr k) xbar + (1 - gamma) q w - (1 - gamma) lr xi,
        # w' = -gamma lr k xbar + gamma q w - gamma lr xi; roots q and gamma (det = gamma q).
        ak = lr * k
        q = 1.0 - ak
        return (1.0 - omb * ak, omb * q, -beta * ak, beta * q,
                omb * ak, -omb * q, beta * ak, omb + beta * ak,
                -omb * lr, -beta * lr, omb + beta * ak)
    if opt == HEAVY_BALL:
        # v' = beta v + (k x + xi), x' = x - lr v'   (paper eqn. 5)
        ak = lr * k
        return (1.0 - ak, -lr * beta, k, beta,
                ak, lr * beta, -k, omb,
                -lr, 1.0, omb)
    # Nesterov: v' = beta v + g, x' = x - lr (g + beta v')
    akb = lr * (1.0 + beta) * k
    return (1.0 - akb, -lr * beta * beta, k, beta,
            akb, lr * beta * beta, -k, omb,
            -lr * (1.0 + beta), 1.0, omb + beta * lr * k)


@njit(cache=True)
def _lr_max(opt, kmax, beta):
    """Stability limit on the learning rate for the largest (preconditioned) curvature kmax:
    SGD 2 / k; heavy ball 2 (1 + beta) / k; Nesterov 2 (1 + beta) / ((1 + 2 beta) k)
    (Jury's conditions on z^2 - tr(A) z + det(A))."""
    if opt == SGD or opt == SGD_EMA:
        return 2.0 / kmax
    if opt == HEAVY_BALL:
        return 2.0 * (1.0 + beta) / kmax
    return 2.0 * (1.0 + beta) / ((1.0 + 2.0 * beta) * kmax)


# =============================================================================================
# Generic closed form over one constant segment (any n <= 3)
# =============================================================================================
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


# =============================================================================================
# Prepared per-bin representation (n <= 2)
# =============================================================================================
@njit(cache=True)
def _prepare_bin(opt, k, nv, x0sq, lr, beta, omb, row):
    """Fill ``row`` (see the module docstring) for one bin with curvature k, noise variance nv."""
    a00, a01, a10, a11, d00, d01, d10, d11, b0, b1, one_m_det = _transition2(opt, k, lr, beta, omb)
    row[10] = x0sq
    row[11] = 0.0
    row[12] = a00
    row[13] = a01
    row[14] = a10
    row[15] = a11
    row[16] = d00
    row[17] = d01
    row[18] = d10
    row[19] = d11
    row[20] = b0
    row[21] = b1
    row[22] = nv
    if opt == SGD:
        row[0] = 0.0
        q = a00
        if q == 0.0:
            row[1] = -690.0          # exp(2 t L) underflows to 0 for t >= 1
        elif d00 < 1.0:
            row[1] = math.log1p(-d00)
        else:
            row[1] = math.log(d00 - 1.0)
        # steady state sigma^2 b^2 / (d (2 - d)): no 1 - (1 - d)^2
        row[9] = nv * b0 * b0 / (d00 * (2.0 - d00)) if nv > 0.0 else 0.0
        row[2] = 0.0
        row[3] = 0.0
        row[4] = q
        row[5] = 0.0
        row[6] = 0.0
        row[7] = 0.0
        row[8] = 0.0
        return
    tau = d00 + d11
    delta = d00 * d11 - d01 * d10           # det D = (1 - l1)(1 - l2)
    trA = a00 + a11
    detA = a00 * a11 - a01 * a10
    disc = tau * tau - 4.0 * delta           # (l1 - l2)^2
    # Stationary second moments: S_inf = nv [(1 + det^2 s0) b b^T + s0 (Ab)(Ab)^T
    #                                        - det s1 ((Ab) b^T + b (Ab)^T)]
    # with s0 = sum p_k^2 = (1 + det) / (f1 f2 f3), s1 = sum p_k p_(k+1) = tr / (f1 f2 f3), and the
    # three stability factors f1 = (1 - l1)(1 - l2) = det D, f2 = 1 - l1 l2, f3 = (1 + l1)(1 + l2).
    f1 = delta
    f2 = one_m_det
    f3 = 4.0 - 2.0 * tau + delta
    if nv > 0.0:
        den = f1 * f2 * f3
        s0 = (1.0 + detA) / den
        s1 = trA / den
        ab0 = a00 * b0 + a01 * b1
        ab1 = a10 * b0 + a11 * b1
        cb = 1.0 + detA * detA * s0
        sxx = nv * (cb * b0 * b0 + s0 * ab0 * ab0 - 2.0 * detA * s1 * ab0 * b0)
        sxv = nv * (cb * b0 * b1 + s0 * ab0 * ab1 - detA * s1 * (ab0 * b1 + b0 * ab1))
        svv = nv * (cb * b1 * b1 + s0 * ab1 * ab1 - 2.0 * detA * s1 * ab1 * b1)
    else:
        sxx = 0.0
        sxv = 0.0
        svv = 0.0
    qa = a00 * a00 * sxx + 2.0 * a00 * a01 * sxv + a01 * a01 * svv
    qb = a00 * sxx + a01 * sxv
    row[4] = a00
    row[9] = sxx
    if disc >= 0.0:
        sd = math.sqrt(disc)
        row[0] = 1.0
        if trA >= 0.0:
            # l1 = 1 - w1 with w1 the small root of w^2 - tau w + delta (no cancellation)
            wb = 0.5 * (tau + sd)
            w1 = delta / wb if wb != 0.0 else 0.0
            l1 = 1.0 - w1
            L = math.log1p(-w1) if w1 < 0.5 else math.log(l1)
        else:
            l1 = 0.5 * (trA - sd)
            L = math.log(-l1)
        if l1 == 0.0:
            # A nilpotent (both roots 0): the state is pure noise after two steps
            row[1] = -690.0
            row[2] = 0.0
            row[3] = 0.0
            row[5] = 0.0
            row[6] = qa
            row[7] = 0.0
            row[8] = 0.0
            return
        l2 = detA / l1
        z = l2 / l1
        al1 = abs(l1)
        if z > 0.5:
            lz = math.log1p(-sd / al1)
            zs = 1.0
        elif z > 0.0:
            lz = math.log(z)
            zs = 1.0
        elif z == 0.0:
            lz = 0.0
            zs = 0.0
        else:
            lz = math.log(-z)
            zs = -1.0
        mu = l2
        row[1] = L
        row[2] = lz
        row[3] = zs
        row[5] = -l2
    else:
        row[0] = 2.0
        rho = math.sqrt(detA)
        theta = math.atan2(math.sqrt(-disc), trA)
        row[1] = 0.5 * math.log(detA) if detA < 0.5 else 0.5 * math.log1p(-one_m_det)
        row[2] = theta
        row[3] = math.sin(theta)
        row[5] = -rho
        # (A_xx - tr A / 2) / sin(theta), written as (A_xx - A_vv) / 2 to avoid cancellation
        row[11] = 0.5 * (a00 - a11) / row[3]
        mu = rho
    row[6] = qa
    row[7] = -mu * qb
    row[8] = mu * mu * sxx


@njit(cache=True)
def _prepare(opt, k, nv, x0sq, lr, beta, omb, prep):
    for j in range(k.size):
        _prepare_bin(opt, k[j], nv[j], x0sq[j], lr, beta, omb, prep[j])


@njit(cache=True)
def _F(kind, lz, zs, t):
    """F(t) = (1 - z^t) / (1 - z) (kind 1) or sin(t theta) / sin(theta) (kind 2) and dF/dt.
    Exact at integer t; a smooth extension in between (cos(pi t) |z|^t for z < 0)."""
    if kind == 2.0:
        return math.sin(t * lz) / zs, lz * math.cos(t * lz) / zs
    if zs > 0.0:
        if lz == 0.0:
            return t, 1.0
        em = math.expm1(lz)
        return math.expm1(t * lz) / em, lz * math.exp(t * lz) / em
    if zs == 0.0:
        # p_0 = 0, p_t = l1^(t-1) for t >= 1; linear in between
        if t >= 1.0:
            return 1.0, 0.0
        if t <= 0.0:
            return 0.0, 0.0
        return t, 1.0
    az = math.exp(t * lz)
    den = 1.0 + math.exp(lz)
    if t == math.floor(t):
        sgn = -1.0 if (t - 2.0 * math.floor(0.5 * t)) != 0.0 else 1.0
        return (1.0 - sgn * az) / den, -(az * lz * sgn) / den
    c = math.cos(math.pi * t)
    s = math.sin(math.pi * t)
    return (1.0 - c * az) / den, -(az * (lz * c - math.pi * s)) / den


@njit(cache=True)
def _mul2(a, b, c, d, e, f, g, h):
    """[[a, b], [c, d]] @ [[e, f], [g, h]]."""
    return a * e + b * g, a * f + b * h, c * e + d * g, c * f + d * h


@njit(cache=True)
def _congruence2(p0, p1, p2, p3, s0, s1, s2):
    """Symmetric P S P^T for P = [[p0, p1], [p2, p3]], S = [[s0, s1], [s1, s2]]."""
    u0 = p0 * s0 + p1 * s1
    u1 = p0 * s1 + p1 * s2
    u2 = p2 * s0 + p3 * s1
    u3 = p2 * s1 + p3 * s2
    return u0 * p0 + u1 * p1, u0 * p2 + u1 * p3, u2 * p2 + u3 * p3


@njit(cache=True)
def _noise_accum(row, t):
    """((A^t)_xx, (sum_(k < t) A^k Q A^kT)_xx), Q = sigma^2 b b^T, integer t: the noise-free factor
    and the noise accumulated after
    t steps, by doubling V_(a+b) = V_a + A^a V_b A^aT. Every term is positive semidefinite, so
    nothing cancels (unlike S_inf - A^t S_inf A^tT when the bin is far below its steady state);
    powers of A near I are carried as E = I - A^(2^k) (see _matpow). O(log t)."""
    a00, a01, a10, a11 = row[12], row[13], row[14], row[15]
    e00, e01, e10, e11 = row[16], row[17], row[18], row[19]
    b0, b1, nv = row[20], row[21], row[22]
    w0, w1, w2 = nv * b0 * b0, nv * b0 * b1, nv * b1 * b1            # V_(2^k)
    near = max(max(abs(e00), abs(e01)), max(abs(e10), abs(e11))) < 0.5
    r00, r01, r10, r11 = 1.0, 0.0, 0.0, 1.0                           # R = A^r
    f00, f01, f10, f11 = 0.0, 0.0, 0.0, 0.0                           # I - R while res_near
    res_near = True
    v0 = 0.0                                                          # (V_r)_xx
    tt = int(t)
    while tt > 0:
        if tt & 1:
            c0, c1, c2 = _congruence2(r00, r01, r10, r11, w0, w1, w2)
            v0 += c0
            if res_near and near:
                g00, g01, g10, g11 = _mul2(f00, f01, f10, f11, e00, e01, e10, e11)
                f00 = f00 + e00 - g00
                f01 = f01 + e01 - g01
                f10 = f10 + e10 - g10
                f11 = f11 + e11 - g11
                r00, r01, r10, r11 = 1.0 - f00, -f01, -f10, 1.0 - f11
            else:
                r00, r01, r10, r11 = _mul2(r00, r01, r10, r11, a00, a01, a10, a11)
                res_near = False
        tt >>= 1
        if tt == 0:
            break
        c0, c1, c2 = _congruence2(a00, a01, a10, a11, w0, w1, w2)
        w0 += c0
        w1 += c1
        w2 += c2
        if near:
            g00, g01, g10, g11 = _mul2(e00, e01, e10, e11, e00, e01, e10, e11)
            e00 = 2.0 * e00 - g00
            e01 = 2.0 * e01 - g01
            e10 = 2.0 * e10 - g10
            e11 = 2.0 * e11 - g11
            a00, a01, a10, a11 = 1.0 - e00, -e01, -e10, 1.0 - e11
            near = max(max(abs(e00), abs(e01)), max(abs(e10), abs(e11))) < 0.5
        else:
            a00, a01, a10, a11 = _mul2(a00, a01, a10, a11, a00, a01, a10, a11)
    return r00, v0


@njit(cache=True)
def _bin_value(row, t, accurate):
    """E[x^2] of one bin after (real) t >= 0 steps and its derivative in t. With ``accurate`` and
    an integer t, terms that would cancel are recomputed by ``_noise_accum`` (the optimizers'
    smooth objective skips that)."""
    kind = row[0]
    if t == 0.0:
        return row[10], 0.0
    if kind == 0.0:
        # x0sq q^(2t) + S_inf (1 - q^(2t)), the second term with expm1 (no cancellation)
        L = row[1]
        e2 = math.exp(2.0 * t * L)
        return row[10] * e2 - row[9] * math.expm1(2.0 * t * L), 2.0 * L * (row[10] - row[9]) * e2
    L = row[1]
    E = math.exp((t - 1.0) * L)
    ft, dft = _F(kind, row[2], row[3], t)
    fm, dfm = _F(kind, row[2], row[3], t - 1.0)
    u = row[4] * ft + row[5] * fm
    du = row[4] * dft + row[5] * dfm
    y = E * u
    dy = L * y + E * du
    qf = row[6] * ft * ft + 2.0 * row[7] * ft * fm + row[8] * fm * fm
    dqf = 2.0 * (row[6] * ft * dft + row[7] * (dft * fm + ft * dfm) + row[8] * fm * dfm)
    E2 = E * E
    q = E2 * qf
    dq = 2.0 * L * q + E2 * dqf
    noise = row[9] - q
    x2 = row[10] * y * y
    if not accurate and kind == 2.0 and t * row[2] > 10.0 * math.pi:
        # Smooth relaxation: a bin that has gone through 5 to 15 oscillations is blended into its
        # phase average (<phi^2> = amp^2 / 2, <q> = (qa + 2 qb cos + qc) / (2 sin^2)), so that fast
        # lightly damped oscillations do not make the crossing time jagged in the hyperparameters.
        ph = (t * row[2] - 10.0 * math.pi) / (20.0 * math.pi)
        w = 1.0 if ph >= 1.0 else ph * ph * (3.0 - 2.0 * ph)
        sn = row[3]
        ax2 = row[10] * E2 * 0.5 * (row[11] * row[11] + row[5] * row[5])
        aq = E2 * (row[6] + 2.0 * row[7] * math.cos(row[2]) + row[8]) / (2.0 * sn * sn)
        val = (1.0 - w) * (x2 + noise) + w * (ax2 + row[9] - aq)
        dval = (1.0 - w) * (2.0 * row[10] * y * dy - dq) + w * 2.0 * L * (ax2 - aq)
        return val, dval
    if accurate and row[22] >= 0.0 and t == math.floor(t):
        # Magnitudes of the terms that cancel: in S_inf,xx - q_t when the bin is far below its
        # steady state, inside q_t and y_t when the roots are close (F ~ 1 / (1 - z) large).
        qmag = row[9] + E2 * (abs(row[6]) * ft * ft + 2.0 * abs(row[7] * ft * fm)
                              + abs(row[8]) * fm * fm)
        umag = abs(row[4] * ft) + abs(row[5] * fm)
        if qmag > 1e3 * (x2 + abs(noise)) or umag > 1e3 * abs(u):
            r00, noise = _noise_accum(row, t)
            x2 = row[10] * r00 * r00
    return x2 + noise, 2.0 * row[10] * y * dy - dq


@njit(cache=True)
def _risk_t(prep, wt, t):
    """Total risk after t steps (exact at integers)."""
    s = 0.0
    for j in range(wt.size):
        v, _ = _bin_value(prep[j], t, True)
        s += wt[j] * v
    return s


@njit(cache=True)
def _risk_dt(prep, wt, t):
    """Smooth total risk at real t and its derivative (no cancellation fallback)."""
    s = 0.0
    ds = 0.0
    for j in range(wt.size):
        v, dv = _bin_value(prep[j], t, False)
        s += wt[j] * v
        ds += wt[j] * dv
    return s, ds


@njit(cache=True)
def _floor(prep, wt):
    s = 0.0
    for j in range(wt.size):
        s += wt[j] * prep[j, 9]
    return s


@njit(cache=True)
def _initial(prep, wt):
    s = 0.0
    for j in range(wt.size):
        s += wt[j] * prep[j, 10]
    return s


@njit(cache=True)
def _noise_part(row, t):
    """S_inf,xx - q_t: the noise accumulated after t steps (increasing in integer t)."""
    if row[0] == 0.0:
        return -row[9] * math.expm1(2.0 * t * row[1])
    if t == 0.0:
        return 0.0
    E = math.exp((t - 1.0) * row[1])
    ft, _ = _F(row[0], row[2], row[3], t)
    fm, _ = _F(row[0], row[2], row[3], t - 1.0)
    qf = row[6] * ft * ft + 2.0 * row[7] * ft * fm + row[8] * fm * fm
    noise = row[9] - E * E * qf
    if noise < 1e-3 * row[9]:
        noise = _noise_accum(row, t)[1]
    return noise


@njit(cache=True)
def _min_abs_y(row, t0, t1):
    """Lower bound of |y_t| / E_(t1) ... precisely: min over integers t in [t0, t1] (t0 >= 1) of
    |y_t| is >= exp((t1 - 1) L) * (returned value)."""
    kind = row[0]
    if kind == 0.0:
        return 1.0       # kind 0 handled by the caller
    w1 = row[4]
    g1 = row[5]
    if kind == 1.0:
        zs = row[3]
        if zs == 0.0:
            return abs(w1)
        if zs > 0.0:
            # phi(t) = w1 F(t) + g1 F(t-1) is affine in z^t, hence monotone in t: endpoints
            f0, _ = _F(1.0, row[2], zs, t0)
            f0m, _ = _F(1.0, row[2], zs, t0 - 1.0)
            f1, _ = _F(1.0, row[2], zs, t1)
            f1m, _ = _F(1.0, row[2], zs, t1 - 1.0)
            p0 = w1 * f0 + g1 * f0m
            p1 = w1 * f1 + g1 * f1m
        else:
            # z < 0: zeta = z^t in [-|z|^t0, |z|^t0]; phi = ((w1 - l2) + (l1 - w1) zeta) / (1 - z)
            # with g1 = -l2 and l1 = l2 / z
            az = math.exp(row[2])
            z = -az
            l2 = -g1
            l1 = l2 / z if z != 0.0 else 0.0
            zeta = math.exp(t0 * row[2])
            den = 1.0 - z
            p0 = ((w1 - l2) - (l1 - w1) * zeta) / den
            p1 = ((w1 - l2) + (l1 - w1) * zeta) / den
        if (p0 > 0.0) != (p1 > 0.0) or p0 == 0.0 or p1 == 0.0:
            return 0.0
        return min(abs(p0), abs(p1))
    # complex: phi(t) = pc sin(t theta) + rho cos(t theta) = amp sin(t theta + psi)
    theta = row[2]
    pc = row[11]
    rho = -g1
    if (t1 - t0) * theta >= math.pi:
        return 0.0
    amp = math.hypot(pc, rho)
    psi = math.atan2(rho, pc)
    ph0 = t0 * theta + psi
    ph1 = t1 * theta + psi
    kz = math.ceil(ph0 / math.pi)
    if kz * math.pi <= ph1:
        return 0.0
    return amp * min(abs(math.sin(ph0)), abs(math.sin(ph1)))


@njit(cache=True)
def _lower_bound(prep, wt, t0, t1):
    """A lower bound of the total risk over all integers t in [t0, t1], t0 >= 1:
    noise-free part at its smallest |y| with the envelope at t1, noise part at t0."""
    s = 0.0
    for j in range(wt.size):
        row = prep[j]
        if row[0] == 0.0:
            s += wt[j] * (row[10] * math.exp(2.0 * t1 * row[1]) + _noise_part(row, t0))
        else:
            m = _min_abs_y(row, t0, t1)
            E = math.exp((t1 - 1.0) * row[1]) * m
            s += wt[j] * (row[10] * E * E + _noise_part(row, t0))
    return s


# =============================================================================================
# Steps to target: exact first crossing (integers) and the smooth relaxation (real t)
# =============================================================================================
@njit(cache=True)
def _first_crossing(prep, wt, target, t_lo, t_hi):
    """Smallest integer t in [t_lo, t_hi] with risk(t) <= target, or -1. Depth-first branch and
    bound, earliest interval first: an interval is skipped when the lower bound of the risk over it
    is above the target; short intervals are scanned exactly."""
    lo_s = np.empty(256)
    hi_s = np.empty(256)
    lo_s[0] = t_lo
    hi_s[0] = t_hi
    top = 1
    thr = target * (1.0 + PRUNE_RTOL)
    while top > 0:
        top -= 1
        a = lo_s[top]
        b = hi_s[top]
        if b - a < 32.0:
            t = a
            while t <= b:
                if _risk_t(prep, wt, t) <= target:
                    return t
                t += 1.0
            continue
        if _lower_bound(prep, wt, a, b) > thr:
            continue
        m = math.floor(0.5 * (a + b))
        lo_s[top] = m + 1.0
        hi_s[top] = b
        lo_s[top + 1] = a
        hi_s[top + 1] = m
        top += 2
    return -1.0


@njit(cache=True)
def _steps_exact(prep, wt, target, t_guess):
    """Exact steps to target: the first integer t >= 1 with risk(t) <= target (0 if the initial
    risk already is). Returns -1 when the risk never gets there (steady state >= target and no
    transient dip), -2 when it would take more than 2^53 steps."""
    if _initial(prep, wt) <= target:
        return 0.0
    floor = _floor(prep, wt)
    if floor < target:
        t = max(1.0, math.ceil(t_guess))
        while _risk_t(prep, wt, t) > target:
            t *= 2.0
            if t > T_MAX:
                return -2.0
        return _first_crossing(prep, wt, target, 1.0, t)
    # the steady state is not below target: only a transient dip can reach it; beyond t_lim the
    # accumulated noise alone exceeds the target
    thr = target * (1.0 + PRUNE_RTOL)
    t = 1.0
    while True:
        s = 0.0
        for j in range(wt.size):
            s += wt[j] * _noise_part(prep[j], t)
        if s > thr:
            break
        t *= 2.0
        if t > T_MAX:
            return -2.0
    return _first_crossing(prep, wt, target, 1.0, t)


@njit(cache=True)
def _log_excess(prep, wt, lt, s):
    """g(s) = log risk(e^s) - log target on the smooth risk, and dg/ds."""
    t = math.exp(s)
    r, dr = _risk_dt(prep, wt, t)
    if r <= 0.0:
        return -1.0, 0.0
    return math.log(r) - lt, t * dr / r


@njit(cache=True)
def _zeroin(prep, wt, lt, a, fa, b, fb, xtol):
    """Brent's root finder (Brent 1973, 'zeroin') for g on [a, b] with g(a), g(b) of opposite
    signs; derivative-free, superlinear where g is smooth, never worse than bisection."""
    c, fc = a, fa
    d = b - a
    e = d
    for _ in range(200):
        if (fb > 0.0) == (fc > 0.0):
            c, fc = a, fa
            d = b - a
            e = d
        if abs(fc) < abs(fb):
            a, fa = b, fb
            b, fb = c, fc
            c, fc = a, fa
        tol = 2.0 * 2.2e-16 * abs(b) + 0.5 * xtol
        m = 0.5 * (c - b)
        if abs(m) <= tol or fb == 0.0:
            break
        if abs(e) >= tol and abs(fa) > abs(fb):
            s_ = fb / fa
            if a == c:
                p = 2.0 * m * s_
                q = 1.0 - s_
            else:
                q = fa / fc
                r = fb / fc
                p = s_ * (2.0 * m * q * (q - r) - (b - a) * (r - 1.0))
                q = (q - 1.0) * (r - 1.0) * (s_ - 1.0)
            if p > 0.0:
                q = -q
            else:
                p = -p
            if 2.0 * p < min(3.0 * m * q - abs(tol * q), abs(e * q)):
                e = d
                d = p / q
            else:
                d = m
                e = m
        else:
            d = m
            e = m
        a, fa = b, fb
        b = b + (d if abs(d) > tol else (tol if m > 0 else -tol))
        fb, _ = _log_excess(prep, wt, lt, b)
    return b


@njit(cache=True)
def _relaxed_steps(prep, wt, target, t_guess):
    """Real t where the smooth risk(t) comes down to the target (in s = log t: one Newton step from
    t_guess, secant steps until the sign of risk - target changes, then Brent's root finder; the
    derivative is not trusted further, because lightly damped bins add fast small wiggles).
    The smooth objective of the optimizers: where the risk is not monotone it may find a later
    crossing than the first (the exact integer answer is computed by ``_steps_exact``).
    Returns 0 if the initial risk is <= target and BIG * floor / target (>= BIG, growing with the
    floor so that searches are pushed back) if the steady state is >= target."""
    if _initial(prep, wt) <= target:
        return 0.0
    fl = _floor(prep, wt)
    if fl >= target:
        return BIG * (fl / target)
    lt = math.log(target)
    # start a little before the previous crossing, so that the search meets the first crossing
    # (not a later one) when the risk wiggles around the target
    s0 = math.log(t_guess) - 0.1 if t_guess > 1.0 else 0.0
    g0, dg0 = _log_excess(prep, wt, lt, s0)
    if g0 == 0.0:
        return t_guess
    step = -g0 / dg0 if dg0 < 0.0 else (0.5 if g0 > 0.0 else -0.5)
    step = max(-2.0, min(2.0, step))
    if abs(step) < 1e-9:
        step = 1e-9 if g0 > 0.0 else -1e-9
    for _ in range(200):
        s1 = s0 + step
        if s1 > 36.8:                     # beyond T_MAX
            return BIG
        if s1 < -14.0:                    # crossing within 1e-6 of a step: flat relaxation
            return math.exp(s1)
        g1, _ = _log_excess(prep, wt, lt, s1)
        if (g1 > 0.0) != (g0 > 0.0):
            return math.exp(_zeroin(prep, wt, lt, s0, g0, s1, g1, 1e-10 * max(1.0, abs(s1))))
        # secant extrapolation (at least doubling, at most 2 in log t) in the same direction
        sec = -g1 * (s1 - s0) / (g1 - g0) if g1 != g0 else 2.0 * step
        if (sec > 0.0) != (step > 0.0) or abs(sec) < 2.0 * abs(step):
            sec = 2.0 * step
        step = max(-2.0, min(2.0, sec))
        s0, g0 = s1, g1
    return BIG


# =============================================================================================
# Tuning: continuous optimisation of the relaxed steps, then the exact integer optimum
# =============================================================================================
@njit(cache=True)
def _params(opt, x, y, kmax):
    """(lr, beta, 1 - beta) from x = log(lr / lr_max(beta)) and y = log(1 - beta)."""
    if opt == SGD:
        return _lr_max(SGD, kmax, 0.0) * math.exp(x), 0.0, 1.0
    omb = math.exp(y)
    beta = 1.0 - omb
    return _lr_max(opt, kmax, beta) * math.exp(x), beta, omb


@njit(cache=True)
def _objective(opt, x, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm):
    """nfix < 0: relaxed steps to target at (x, y) (warm[0] holds the last crossing as a start).
    nfix >= 0: log of the exact risk after nfix steps."""
    lr, beta, omb = _params(opt, x, y, kmax)
    _prepare(opt, k, nv, x0sq, lr, beta, omb, prep)
    warm[1] += 1.0
    if nfix >= 0.0:
        # the exact risk: the polish exploits where oscillating bins happen to be in a trough
        return math.log(_risk_t(prep, wt, nfix))
    tg = warm[0]
    T = _relaxed_steps(prep, wt, target, tg)
    if T < BIG:
        warm[0] = T
    return T


# Brent's bounded minimisation (as scipy.optimize.fminbound) in reverse-communication form, so
# that one implementation serves every search: st = [a, b, v, w, x, fv, fw, fx, d, e, xtol].
GOLDEN = 0.3819660112501051


@njit(cache=True)
def _brent_init(st, a, b, x, fx, xtol):
    st[0] = a
    st[1] = b
    st[2] = x
    st[3] = x
    st[4] = x
    st[5] = fx
    st[6] = fx
    st[7] = fx
    st[8] = 0.0
    st[9] = 0.0
    st[10] = xtol


@njit(cache=True)
def _brent_next(st):
    """Next point to evaluate, or NaN when converged (the minimum is st[4], value st[7])."""
    a, b, v, w, x, fv, fw, fx, d, e, xtol = (st[0], st[1], st[2], st[3], st[4], st[5], st[6],
                                             st[7], st[8], st[9], st[10])
    xm = 0.5 * (a + b)
    tol1 = 1e-12 * abs(x) + xtol / 3.0
    tol2 = 2.0 * tol1
    if abs(x - xm) <= tol2 - 0.5 * (b - a):
        return math.nan
    golden_step = True
    if abs(e) > tol1:
        r = (x - w) * (fx - fv)
        q = (x - v) * (fx - fw)
        p = (x - v) * q - (x - w) * r
        q = 2.0 * (q - r)
        if q > 0.0:
            p = -p
        q = abs(q)
        rr = e
        e = d
        if q != 0.0 and abs(p) < abs(0.5 * q * rr) and p > q * (a - x) and p < q * (b - x) \
                and math.isfinite(p / q):
            d = p / q
            u = x + d
            if (u - a) < tol2 or (b - u) < tol2:
                d = tol1 if xm >= x else -tol1
            golden_step = False
    if golden_step:
        e = (a - x) if x >= xm else (b - x)
        d = GOLDEN * e
    st[8] = d
    st[9] = e
    return x + (d if abs(d) >= tol1 else (tol1 if d > 0 else -tol1))


@njit(cache=True)
def _brent_tell(st, u, fu):
    a, b, v, w, x, fv, fw, fx = st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]
    if fu <= fx:
        if u >= x:
            a = x
        else:
            b = x
        v, fv = w, fw
        w, fw = x, fx
        x, fx = u, fu
    else:
        if u < x:
            a = u
        else:
            b = u
        if fu <= fw or w == x:
            v, fv = w, fw
            w, fw = u, fu
        elif fu <= fv or v == x or v == w:
            v, fv = u, fu
    st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7] = a, b, v, w, x, fv, fw, fx


@njit(cache=True)
def _best_x(opt, y, x_guess, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, xtol):
    """Minimise the objective over x in [X_LO, X_HI] at fixed y. With x_guess outside the range a
    coarse scan brackets the minimum; otherwise a bracket is grown from x_guess (steps doubling).
    Brent then starts from the best point of the bracket. Returns (x, f)."""
    if x_guess >= X_LO and x_guess <= X_HI:
        step = 0.05
        xm = x_guess
        fm = _objective(opt, xm, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
        xr = min(X_HI, xm + step)
        fr = _objective(opt, xr, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
        if fr < fm:
            xl = xm
            xm, fm = xr, fr
            while xm < X_HI:
                step *= 2.0
                xn = min(X_HI, xm + step)
                fn = _objective(opt, xn, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
                if fn >= fm:
                    xr = xn
                    break
                xl = xm
                xm, fm = xn, fn
                xr = xm
        else:
            while xm > X_LO:
                xn = max(X_LO, xm - step)
                fn = _objective(opt, xn, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
                if fn >= fm:
                    xl = xn
                    break
                xr = xm
                xm, fm = xn, fn
                step *= 2.0
                xl = xm
            if xm <= X_LO:
                xl = X_LO
    else:
        npts = 24
        fm = BIG * 1e300
        xm = X_HI
        ib = 0
        # scan from the stability limit downwards (the warm start of the crossing follows)
        for i in range(npts - 1, -1, -1):
            xi = X_LO + (X_HI - X_LO) * i / (npts - 1)
            f = _objective(opt, xi, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
            if f < fm:
                fm = f
                xm = xi
                ib = i
        xl = X_LO + (X_HI - X_LO) * max(ib - 1, 0) / (npts - 1)
        xr = X_LO + (X_HI - X_LO) * min(ib + 1, npts - 1) / (npts - 1)
    st = np.empty(11)
    _brent_init(st, xl, xr, xm, fm, xtol)
    for _ in range(200):
        u = _brent_next(st)
        if math.isnan(u):
            break
        fu = _objective(opt, u, y, k, nv, x0sq, wt, kmax, target, nfix, prep, warm)
        _brent_tell(st, u, fu)
    return st[4], st[7]


@njit(cache=True)
def _best_xy(opt, y_lo, y_hi, x0, y0, k, nv, x0sq, wt, kmax, target, nfix, prep, warm):
    """Minimise over (x, y), y in [y_lo, y_hi]: Brent over y of the minimum over x (nested; each
    inner search starts from the x of the nearest y seen so far). With y0 outside the range a coarse
    scan of y (8 points from no momentum towards 1 - 1e-8) brackets the minimum first; otherwise the bracket
    is y0 +- 0.5. Returns (x, y, f). Tolerances are loose (1e-4 in x, 3e-4 in y): the exact integer
    optimum is settled afterwards by the polish of ``_tune_cell``."""
    xtol = 1e-4
    if y0 >= y_lo and y0 <= y_hi:
        ym = y0
        xm, fm = _best_x(opt, ym, x0, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, xtol)
        yl = max(y_lo, y0 - 0.5)
        yr = min(y_hi, y0 + 0.5)
    else:
        npts = 8
        fm = BIG * 1e300
        xcur = x0
        ym = y_hi
        xm = x0
        for i in range(npts):
            yy = y_hi + (y_lo - y_hi) * i / (npts - 1)
            xcur, f = _best_x(opt, yy, xcur, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, 1e-4)
            if f < fm:
                fm = f
                ym = yy
                xm = xcur
        dy = (y_hi - y_lo) / (npts - 1)
        yl = max(y_lo, ym - dy)
        yr = min(y_hi, ym + dy)
        xm, fm = _best_x(opt, ym, xm, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, xtol)
    st = np.empty(11)
    _brent_init(st, yl, yr, ym, fm, 3e-4)
    xbest = xm
    xcur = xm
    for _ in range(100):
        u = _brent_next(st)
        if math.isnan(u):
            break
        xu, fu = _best_x(opt, u, xcur, k, nv, x0sq, wt, kmax, target, nfix, prep, warm, xtol)
        if fu <= st[7]:
            xbest = xu
        xcur = xbest
        _brent_tell(st, u, fu)
    return xbest, st[4], st[7]


@njit(cache=True)
def _steps_recurrence(opt, k, wt, nv, x0sq, lr, beta, omb, target, nmax):
    """First t in 1..nmax with risk(t) <= target by iterating the second moments of all bins
    together (O(t) but a few flops per bin and step: the fast exact method for short horizons),
    or -1 if none."""
    nb = k.size
    X = np.empty(nb)
    C = np.zeros(nb)
    Vv = np.zeros(nb)
    co = np.empty((nb, 6))
    for j in range(nb):
        r = _transition2(opt, k[j], lr, beta, omb)
        co[j, 0] = r[0]
        co[j, 1] = r[1]
        co[j, 2] = r[2]
        co[j, 3] = r[3]
        co[j, 4] = r[8]
        co[j, 5] = r[9]
        X[j] = x0sq[j]
    t = 1.0
    while t <= nmax:
        s = 0.0
        for j in range(nb):
            a00, a01, a10, a11, b0, b1 = co[j, 0], co[j, 1], co[j, 2], co[j, 3], co[j, 4], co[j, 5]
            x_, c_, v_ = X[j], C[j], Vv[j]
            X[j] = a00 * a00 * x_ + 2.0 * a00 * a01 * c_ + a01 * a01 * v_ + nv[j] * b0 * b0
            C[j] = (a00 * a10 * x_ + (a00 * a11 + a01 * a10) * c_ + a01 * a11 * v_
                    + nv[j] * b0 * b1)
            Vv[j] = a10 * a10 * x_ + 2.0 * a10 * a11 * c_ + a11 * a11 * v_ + nv[j] * b1 * b1
            s += wt[j] * X[j]
        if s <= target:
            return t
        t += 1.0
    return -1.0


@njit(cache=True)
def _exact_at(opt, x, y, k, nv, x0sq, wt, kmax, target, prep, t_guess):
    lr, beta, omb = _params(opt, x, y, kmax)
    _prepare(opt, k, nv, x0sq, lr, beta, omb, prep)
    return _steps_exact(prep, wt, target, t_guess)


@njit(cache=True)
def _steps_at(opt, x, y, k, nv, x0sq, wt, target, t_guess):
    """Exact steps to target at (x, y) (the tuner's coordinates) for one cell; -1 if never."""
    prep = np.empty((k.size, NCOL))
    return _exact_at(opt, x, y, k, nv, x0sq, wt, np.max(k), target, prep, t_guess)


@njit(cache=True)
def _tune_cell(opt, tune_beta, y_fixed, k, nv, x0sq, wt, target, out):
    """Tune lr (and momentum if tune_beta) for one cell to minimise steps to target.

    1. continuous: minimise the relaxed (real) crossing time over x = log(lr / lr_max) (and
       y = log(1 - beta)), Brent / nested Brent after coarse scans;
    2. exact: N = exact first crossing at the optimum; then, while some nearby (x, y) brings the risk
       after N - 1 steps to the target (a smooth minimisation of risk(N - 1)), move there and
       recompute N. min over hyperparameters of N is exactly the least n with min risk(n) <= target.
       Below 1000 steps (momentum at large B, where oscillations make N jagged) a local grid of
       exact N (9 x 9, steps 0.05 in x and 0.1 in y, recentred while it improves) comes first.

    out: [steps, lr, beta, 1 - beta, relaxed steps, x, y, objective evaluations]
    """
    nb = k.size
    prep = np.empty((nb, NCOL))
    warm = np.zeros(2)          # [last relaxed crossing (warm start), objective evaluations]
    kmax = np.max(k)
    if opt == SGD or not tune_beta:
        y = y_fixed
        x, T = _best_x(opt, y, X_LO - 1.0, k, nv, x0sq, wt, kmax, target, -1.0, prep, warm, 1e-9)
    else:
        x, y, T = _best_xy(opt, Y_LO, 0.0, X_LO - 1.0, 1.0, k, nv, x0sq, wt, kmax, target, -1.0,
                           prep, warm)
    N = _exact_at(opt, x, y, k, nv, x0sq, wt, kmax, target, prep, T if T < BIG else 1.0)
    lt = math.log(target)
    if opt != SGD and 0.0 < N < 1000.0:
        # Few steps: lightly damped bins oscillate and the integer landscape is jagged (lucky dips
        # give up to ~10 % fewer steps than the smooth relaxation, and with a fixed momentum the
        # best dip can lie in another basin of lr altogether: 27 vs 34 steps seen on a linear
        # least-squares NQM at B = 8192, momentum 0.9). Exact evaluations by the step-by-step
        # recurrence are cheap here (early exit at the best N so far): scan x over the top 8 e-folds
        # of lr below the stability limit (a crossing within 1000 steps needs lr that large) ...
        bx = x
        for i in range(161):
            xi = X_HI - 8.0 + 0.05 * i
            lr_i, beta_i, omb_i = _params(opt, xi, y, kmax)
            Ni = _steps_recurrence(opt, k, wt, nv, x0sq, lr_i, beta_i, omb_i, target, N - 1.0)
            if 0.0 <= Ni < N:
                N = Ni
                bx = xi
        x = bx
    if tune_beta and opt != SGD and 0.0 < N < 1000.0:
        # ... and, with momentum tuned too, a local 9 x 9 grid in (x, y), recentred while it
        # improves (at most 4 times).
        for _ in range(4):
            bx = x
            by = y
            for i in range(-4, 5):
                for jj in range(-4, 5):
                    xi = min(X_HI, max(X_LO, x + 0.05 * i))
                    yi = min(0.0, max(Y_LO, y + 0.1 * jj))
                    lr_i, beta_i, omb_i = _params(opt, xi, yi, kmax)
                    Ni = _steps_recurrence(opt, k, wt, nv, x0sq, lr_i, beta_i, omb_i, target,
                                           N - 1.0)
                    if 0.0 <= Ni < N:
                        N = Ni
                        bx = xi
                        by = yi
            if bx == x and by == y:
                break
            x = bx
            y = by
    if opt != SGD and 0.0 < N < 1000.0:
        # the recurrence is exact up to rounding: settle N with the closed form
        N = _exact_at(opt, x, y, k, nv, x0sq, wt, kmax, target, prep, N)
    for _ in range(50):
        if N <= 1.0:
            break
        n = N - 1.0
        if opt == SGD or not tune_beta:
            xn, fn = _best_x(opt, y, x, k, nv, x0sq, wt, kmax, target, n, prep, warm, 1e-10)
            yn = y
        else:
            xn, yn, fn = _best_xy(opt, Y_LO, 0.0, x, y, k, nv, x0sq, wt, kmax, target, n, prep,
                                  warm)
        if fn > lt:
            break
        Nn = _exact_at(opt, xn, yn, k, nv, x0sq, wt, kmax, target, prep, n)
        if Nn < 0.0 or Nn >= N:
            break
        N = Nn
        x = xn
        y = yn
    lr, beta, omb = _params(opt, x, y, kmax)
    out[0] = N
    out[1] = lr
    out[2] = beta
    out[3] = omb
    out[4] = T
    out[5] = x
    out[6] = y
    out[7] = warm[1]


@njit(cache=True, parallel=True)
def _tune_cells(opt, tune_beta, y_fixed, K, NV, x0sq, wt, target):
    """Tune every cell (rows of K: preconditioned curvatures, NV: noise variances) in parallel.
    Returns an array (ncells, 8) of _tune_cell outputs."""
    nc = K.shape[0]
    out = np.empty((nc, 8))
    half = (nc + 1) // 2
    for i in prange(nc):
        # interleave: the threads' contiguous chunks get even and odd cells, so neighbouring
        # (similarly expensive) cells are split between them
        c = 2 * i if i < half else 2 * (i - half) + 1
        _tune_cell(opt[c], tune_beta[c], y_fixed[c], K[c], NV[c], x0sq, wt, target[c], out[c])
    return out


# =============================================================================================
# Small-rate (B -> 0) limit of SGD: gradient flow with noise (E_min of McCandlish et al.)
# =============================================================================================
@njit(cache=True)
def _prepare_flow(kappa, k, c_eff, x0sq, prep):
    """Prepared rows (kind 0, continuous time n = examples) of the limit lr = kappa B, t = n / B:
    E[x^2] = (x0sq - s) exp(-2 kappa k n) + s with s = kappa c_eff / (2 k)."""
    for j in range(k.size):
        row = prep[j]
        row[0] = 0.0
        row[1] = -kappa * k[j]
        row[9] = kappa * c_eff[j] / (2.0 * k[j])
        row[10] = x0sq[j]
        for c in range(2, 9):
            row[c] = 0.0
        row[11] = 0.0


@njit(cache=True)
def _flow_crossing_exact(prep, wt, target, n_guess):
    """First real n with risk(n) <= target for kind-0 rows in continuous time (bisection after a
    branch and bound on real intervals, relative width 1e-13). -1 if never."""
    if _initial(prep, wt) <= target:
        return 0.0
    if _floor(prep, wt) >= target:
        return -1.0
    n_hi = max(n_guess, 1e-300)
    while _risk_t(prep, wt, n_hi) > target:
        n_hi *= 2.0
    lo_s = np.empty(400)
    hi_s = np.empty(400)
    lo_s[0] = 0.0
    hi_s[0] = n_hi
    top = 1
    thr = target * (1.0 + PRUNE_RTOL)
    while top > 0:
        top -= 1
        a = lo_s[top]
        b = hi_s[top]
        lb = 0.0
        for j in range(wt.size):
            row = prep[j]
            lb += wt[j] * (row[10] * math.exp(2.0 * b * row[1]) + _noise_part(row, a))
        if lb > thr:
            continue
        if b - a <= 1e-13 * b or top > 390:
            if _risk_t(prep, wt, b) <= target:
                # the crossing is in [a, b]; bisect to the end
                lo = a
                hi = b
                for _ in range(200):
                    mid = 0.5 * (lo + hi)
                    if mid <= lo or mid >= hi:
                        break
                    if _risk_t(prep, wt, mid) <= target:
                        hi = mid
                    else:
                        lo = mid
                return hi
            continue
        m = 0.5 * (a + b)
        lo_s[top] = m
        hi_s[top] = b
        lo_s[top + 1] = a
        hi_s[top + 1] = m
        top += 2
    return -1.0


@njit(cache=True)
def _flow_objective(lk, k, c_eff, x0sq, wt, target, prep, warm):
    _prepare_flow(math.exp(lk), k, c_eff, x0sq, prep)
    T = _relaxed_steps(prep, wt, target, warm[0])
    if T < BIG:
        warm[0] = T
    return T


@njit(cache=True)
def _e_min(k, c_eff, x0sq, wt, target):
    """E_min = min over kappa of the examples n at which the B -> 0 limit reaches the target
    (scan of log kappa, Brent, then the exact first crossing at the optimum).
    Returns (E_min, kappa)."""
    nb = k.size
    prep = np.empty((nb, NCOL))
    warm = np.ones(1)
    # kappa k_max ranges over [1e-20, 1e20] (no stability limit in this limit)
    base = -math.log(np.max(k))
    npts = 41
    best = BIG * 10.0
    ib = 0
    for i in range(npts):
        lk = base + (-46.0 + 92.0 * i / (npts - 1))
        f = _flow_objective(lk, k, c_eff, x0sq, wt, target, prep, warm)
        if f < best:
            best = f
            ib = i
    lo = base + (-46.0 + 92.0 * max(ib - 1, 0) / (npts - 1))
    hi = base + (-46.0 + 92.0 * min(ib + 1, npts - 1) / (npts - 1))
    golden = 0.3819660112501051
    # golden-section search (the objective is smooth and unimodal in log kappa)
    c1 = hi - (1.0 - golden) * (hi - lo)
    c2 = lo + (1.0 - golden) * (hi - lo)
    f1 = _flow_objective(c1, k, c_eff, x0sq, wt, target, prep, warm)
    f2 = _flow_objective(c2, k, c_eff, x0sq, wt, target, prep, warm)
    for _ in range(200):
        if hi - lo < 1e-11 * max(1.0, abs(lo)):
            break
        if f1 <= f2:
            hi = c2
            c2 = c1
            f2 = f1
            c1 = hi - (1.0 - golden) * (hi - lo)
            f1 = _flow_objective(c1, k, c_eff, x0sq, wt, target, prep, warm)
        else:
            lo = c1
            c1 = c2
            f1 = f2
            c2 = lo + (1.0 - golden) * (hi - lo)
            f2 = _flow_objective(c2, k, c_eff, x0sq, wt, target, prep, warm)
    lk = c1 if f1 <= f2 else c2
    _prepare_flow(math.exp(lk), k, c_eff, x0sq, prep)
    n = _flow_crossing_exact(prep, wt, target, warm[0])
    return n, math.exp(lk)


# =============================================================================================
# Curves and sweeps of risk
# =============================================================================================
@njit(cache=True, parallel=True)
def _risk_curve(prep, wt, ts):
    """Total risk at every (integer or real) t of ts."""
    out = np.empty(ts.size)
    for i in prange(ts.size):
        out[i] = _risk_t(prep, wt, ts[i])
    return out


@njit(cache=True)
def _recurrence(opt, k, wt, nv, x0sq, lr, beta, omb, steps):
    """Risk after 0..steps updates by iterating S' = A S A^T + sigma^2 b b^T (O(steps) per bin;
    a cross-check of the closed form, and the exact method for short horizons)."""
    out = np.zeros(steps + 1)
    for j in range(k.size):
        r = _transition2(opt, k[j], lr, beta, omb)
        a00, a01, a10, a11, b0, b1 = r[0], r[1], r[2], r[3], r[8], r[9]
        X = x0sq[j]
        C = 0.0
        V = 0.0
        s2 = nv[j]
        out[0] += wt[j] * X
        for t in range(steps):
            Xn = a00 * a00 * X + 2.0 * a00 * a01 * C + a01 * a01 * V + s2 * b0 * b0
            Cn = a00 * a10 * X + (a00 * a11 + a01 * a10) * C + a01 * a11 * V + s2 * b0 * b1
            Vn = a10 * a10 * X + 2.0 * a10 * a11 * C + a11 * a11 * V + s2 * b1 * b1
            X = Xn
            C = Cn
            V = Vn
            out[t + 1] += wt[j] * X
    return out


# =============================================================================================
# Small-batch limit of tuned momentum: the damped oscillator (E_min of tuned momentum)
# =============================================================================================
@njit(cache=True)
def _osc_risk(tau, w2, sxx, svv, x0sq, wt):
    """Risk at dimensionless time tau of the limit x'' + x' + w2 x = noise (per bin):
    E[x^2] = x0sq P_xx^2 + sxx (1 - P_xx^2) - svv P_xv^2, P = exp(M tau), M = [[0, -1], [w2, -1]].
    exp(-tau/2) cosh / sinh are written with the slow rate -w2 / (1/2 + mu) and expm1, so nothing
    cancels near critical damping (w2 = 1/4)."""
    s = 0.0
    for j in range(wt.size):
        disc = 0.25 - w2[j]
        if disc >= 0.0:
            mu = math.sqrt(disc)
            slow = math.exp(-w2[j] / (0.5 + mu) * tau)
            fast = math.exp(-(0.5 + mu) * tau)
            ch = 0.5 * (slow + fast)
            if mu * tau > 0.0:
                sh = slow * -math.expm1(-2.0 * mu * tau) / (2.0 * mu)
            else:
                sh = tau * math.exp(-0.5 * tau)
        else:
            nu = math.sqrt(-disc)
            env = math.exp(-0.5 * tau)
            ch = env * math.cos(nu * tau)
            sh = env * math.sin(nu * tau) / nu
        pxx = ch + 0.5 * sh
        s += wt[j] * (x0sq[j] * pxx * pxx + sxx[j] * (1.0 - pxx * pxx) - svv[j] * sh * sh)
    return s


@njit(cache=True)
def _osc_crossing(r, gamma, k, c_eff, x0sq, wt, target, tau_guess):
    """First tau (dimensionless, = gamma n) with risk <= target in the oscillator limit with
    effective rate r and damping gamma (per example): scan upwards at 1 % resolution from below
    the guess, then bisection to 1e-13. Returns -1 if the steady state is not below target."""
    nb = k.size
    w2 = np.empty(nb)
    sxx = np.empty(nb)
    svv = np.empty(nb)
    fl = 0.0
    for j in range(nb):
        w2[j] = r * k[j] / gamma
        sxx[j] = r * c_eff[j] / (2.0 * k[j])
        svv[j] = r * r * c_eff[j] / (2.0 * gamma)
        fl += wt[j] * sxx[j]
    if fl >= target:
        return -1.0
    tau = max(0.9 * tau_guess, 1e-9)
    while tau > 1e-9 and _osc_risk(tau, w2, sxx, svv, x0sq, wt) <= target:
        tau *= 0.5
    while True:
        nxt = tau * 1.01
        if _osc_risk(nxt, w2, sxx, svv, x0sq, wt) <= target:
            break
        tau = nxt
        if tau > 1e30:
            return -1.0
    lo = tau
    hi = nxt
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if hi - lo <= 1e-13 * hi:
            break
        if _osc_risk(mid, w2, sxx, svv, x0sq, wt) <= target:
            hi = mid
        else:
            lo = mid
    return hi


# =============================================================================================
# Schedules: piecewise-constant hyperparameters, the exact risk and its adjoint gradient
# =============================================================================================
# A schedule is K pieces; piece i runs m_i steps with constant (lr_i, beta_i), so its second moments
# follow the closed form of one constant segment, S -> P S P^T + sigma^2 V with P = A^m and
# V = sum_(j < m) A^j b b^T A^jT (``shared/spec/NQM.md`` section 2, "Schedules"): O(log m) per piece
# and bin by doubling (``_piece``), or O(1) for SGD (``_sgd_piece``). The gradient of the final
# risk R with respect to the K rates is a reverse (adjoint) pass over the pieces: with
# Lambda_K = dR/dS_K and Lambda_i = P_i^T Lambda_(i+1) P_i,
# dR/dlr_i = <Lambda_(i+1), dS_(i+1)/dlr_i>, the last factor carried forward through the
# doubling of piece i alone (each piece has one rate).
# The state is x (SGD) or (x, v) (momentum), with the iterate average xbar appended when an EMA is
# on; the risk is measured on x, or on xbar.


@njit(cache=True)
def _dtransition2(opt, k, beta):
    """Derivative with respect to lr of (A, b) of ``_transition2`` (both are affine in lr):
    (dA00, dA01, dA10, dA11, db0, db1)."""
    if opt == SGD:
        return (-k, 0.0, 0.0, 0.0, -1.0, 0.0)
    if opt == HEAVY_BALL:
        return (-k, -beta, 0.0, 0.0, -1.0, 0.0)
    return (-(1.0 + beta) * k, -beta * beta, 0.0, 0.0, -(1.0 + beta), 0.0)


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
    is carried as E = I - A^(2^j), E' = 2E - E^2, so that 1 - lr h ~ 1 keeps its digits (as
    ``_matpow``). The derivatives follow every product by the product rule (forward mode in the one
    rate of this piece). ``w``: workspace (12, 3, 3)."""
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
