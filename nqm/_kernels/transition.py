"""Per-optimizer transition of one bin: (A, b) of ``s' = A s + b xi``, D = I - A without
cancellation, the derivative of (A, b) in the learning rate, and the stability limit on the rate.

``shared/spec/NQM.md`` section 2 gives (A, b) for each optimizer: SGD (``A = [1 - lr k]``,
``b = [-lr]``), heavy ball (paper eqn. 5), Nesterov (PyTorch's form) and SGD with an exponential
moving average of the iterates. Everything else in this package is written in terms of (A, D, b).

Optimizer codes: 0 = SGD (n = 1), 1 = heavy ball, 2 = Nesterov (PyTorch's form), 3 = SGD with an
exponential moving average of the iterates (n = 2: state (xbar, x - xbar), risk on xbar; the
"momentum" slot carries the decay gamma), so that every constant-hyperparameter question (risk,
steps, tuning) works for it unchanged. Preconditioning is not a code: it is applied to the problem
(curvature k = h^(1-p), noise c h^(-2p)) before the kernels.
"""

from numba import njit

SGD, HEAVY_BALL, NESTEROV, SGD_EMA = 0, 1, 2, 3


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


@njit(cache=True)
def _dtransition2(opt, k, beta):
    """Derivative with respect to lr of (A, b) of ``_transition2`` (both are affine in lr):
    (dA00, dA01, dA10, dA11, db0, db1)."""
    if opt == SGD:
        return (-k, 0.0, 0.0, 0.0, -1.0, 0.0)
    if opt == HEAVY_BALL:
        return (-k, -beta, 0.0, 0.0, -1.0, 0.0)
    return (-(1.0 + beta) * k, -beta * beta, 0.0, 0.0, -(1.0 + beta), 0.0)
