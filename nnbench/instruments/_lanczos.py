"""Lanczos tridiagonalisation with full reorthogonalisation, for a batch of start vectors at once.

Pure linear algebra on a batched symmetric mat-vec (rows in, rows out); no model code here, so it is
tested against dense matrices directly. Reference: Golub & Van Loan, Matrix Computations, sec. 10.1;
the quadrature view (Ritz values as Gauss nodes, squared first eigenvector components as weights) is
Golub & Meurant (2009) and, for neural-network Hessians, Ghorbani, Krishnan & Xiao (2019).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LanczosRun:
    """The output of m Lanczos steps from n unit start vectors (rows of ``q0``).

    Attributes:
        alpha: (n, m) diagonals of the tridiagonal matrices T.
        beta: (n, m - 1) off-diagonals (0 where the Krylov space was exhausted and the run was
            continued with a fresh orthogonal random vector).
        beta_last: (n,) norm of the residual after the last step (||H Q - Q T|| = beta_last).
        basis: (n, m, P) orthonormal Lanczos vectors.
    """

    alpha: Tensor
    beta: Tensor
    beta_last: Tensor
    basis: Tensor

    def tridiagonal(self) -> Tensor:
        """(n, m, m) the symmetric tridiagonal matrices T."""
        t = torch.diag_embed(self.alpha)
        if self.beta.shape[1] > 0:
            t = t + torch.diag_embed(self.beta, offset=1) + torch.diag_embed(self.beta, offset=-1)
        return t


def _orthogonalise(w: Tensor, basis: Tensor) -> Tensor:
    """Remove from each row of w (n, P) its components along basis rows (n, k, P); twice ("twice is enough")."""
    for _ in range(2):
        coeffs = torch.einsum("nkp,np->nk", basis, w)
        w = w - torch.einsum("nk,nkp->np", coeffs, basis)
    return w


def lanczos(
    matvec: Callable[[Tensor], Tensor], q0: Tensor, num_steps: int, generator: torch.Generator
) -> LanczosRun:
    """Run ``num_steps`` Lanczos steps of the symmetric operator ``matvec`` from the rows of ``q0``.

    Args:
        matvec: (n, P) -> (n, P), applies the symmetric P x P operator to each row.
        q0: (n, P) start vectors of unit norm.
        num_steps: m, with 1 <= m <= P.
        generator: CPU generator for the random continuation vectors drawn on breakdown.

    Every new vector is orthogonalised against all previous ones (full reorthogonalisation), so the
    Ritz values do not acquire spurious copies. When beta_j falls below a relative tolerance (the
    start vector's Krylov space is invariant), beta_j is set to 0 and the run goes on from a random
    vector orthogonal to the basis: T becomes block-diagonal, the first block's quadrature is exact,
    and the later blocks add further (exact) eigenvalues for the top-k use.
    """
    n, p = q0.shape
    m = num_steps
    dtype, device = q0.dtype, q0.device
    # Below this relative size a residual is rounding noise: the Krylov space is invariant.
    tol = 100.0 * torch.finfo(dtype).eps
    basis = torch.zeros((n, m, p), dtype=dtype, device=device)
    alpha = torch.zeros((n, m), dtype=dtype, device=device)
    beta = torch.zeros((n, max(m - 1, 0)), dtype=dtype, device=device)
    scale = torch.zeros(n, dtype=dtype, device=device)
    basis[:, 0] = q0
    beta_last = torch.zeros(n, dtype=dtype, device=device)
    for j in range(m):
        q = basis[:, j]
        w = matvec(q)
        a = (q * w).sum(dim=1)
        alpha[:, j] = a
        w = w - a[:, None] * q
        if j > 0:
            w = w - beta[:, j - 1, None] * basis[:, j - 1]
        w = _orthogonalise(w, basis[:, : j + 1])
        b = torch.linalg.vector_norm(w, dim=1)
        scale = torch.maximum(scale, torch.maximum(a.abs(), b))
        if j == m - 1:
            beta_last = b
            break
        broken = b <= tol * scale
        if bool(broken.any()):
            idx = broken.nonzero().flatten()
            fresh = torch.randn((len(idx), p), generator=generator, dtype=dtype).to(device)
            fresh = _orthogonalise(fresh, basis[idx, : j + 1])
            w = w.clone()
            w[idx] = fresh
            b = torch.where(broken, torch.zeros_like(b), b)
        beta[:, j] = b
        basis[:, j + 1] = w / torch.linalg.vector_norm(w, dim=1, keepdim=True)
    return LanczosRun(alpha=alpha, beta=beta, beta_last=beta_last, basis=basis)
