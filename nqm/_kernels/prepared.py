"""The prepared per-bin representation (state size n <= 2) and the risk at any real t >= 0.

``shared/spec/NQM.md`` section 2: on one bin every optimizer is ``s' = A s + b xi`` and the second
moments obey ``S_t = A^t (S_0 - S_inf) (A^t)^T + S_inf``. With the roots l1, l2 of A
(|l1| >= |l2|), Cayley-Hamilton gives ``A^t = p_t A - det(A) p_(t-1) I`` with
``p_t = l1^(t-1) F(t)``, ``F(t) = (1 - z^t) / (1 - z)``, ``z = l2 / l1`` (real roots; evaluated with
expm1/log1p, so it stays exact at critical damping z = 1 where F(t) = t and an eigendecomposition
fails) or ``F(t) = sin(t theta) / sin(theta)`` (complex roots rho e^(+-i theta)). With
x_0 ~ N(0, x0sq) and v_0 = 0 the risk of a bin is ``wt * (x0sq y_t^2 + S_inf,xx - q_t)`` where
``y_t = (A^t)_xx`` is the noise-free trajectory and ``q_t = (A^t S_inf A^tT)_xx`` decays;
``S_inf,xx - q_t`` is the noise accumulated so far, increasing in t. Both are smooth functions of a
real t (used by the optimizers' relaxation) and exact at integers.

Prepared row layout (``prep[j, :]``, NCOL columns), ``E_t = exp((t - 1) L)``:

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
"""

import math

import numpy as np
from numba import njit

from nqm._kernels.noise import _noise_accum
from nqm._kernels.transition import SGD, _transition2

NCOL = 23


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
        # np.bool_, not True: numba types a literal constant argument as its own type and would
        # compile _bin_value once for True and once for False
        v, _ = _bin_value(prep[j], t, np.bool_(True))
        s += wt[j] * v
    return s


@njit(cache=True)
def _risk_dt(prep, wt, t):
    """Smooth total risk at real t and its derivative (no cancellation fallback)."""
    s = 0.0
    ds = 0.0
    for j in range(wt.size):
        v, dv = _bin_value(prep[j], t, np.bool_(False))
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
