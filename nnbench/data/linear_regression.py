"""Online linear least squares with Gaussian inputs: the one real workload that IS a noisy quadratic.

Every training example is fresh (the NQM's online setting, Zhang et al. 2019 section 3):

    x ~ N(0, Sigma),  Sigma = diag(lambda),  lambda_i = scale * i^-decay  (i = 1..dim)
    y = W* x + noise_std * N(0, I_K)          (K = ``num_outputs`` independent targets)

The input covariance is diagonal, i.e. the coordinate axes are its eigenbasis. A rotation would change
nothing for SGD or momentum (both are rotation invariant) and would only matter for diagonal
preconditioners such as Adam; it is not offered, so that the NQM's eigen-directions are the weights.

With the workload's loss ``F.mse_loss`` (the mean of (w_k^T x - y_k)^2 over examples AND outputs), the
expected loss of weights W is ``s^2 + (1/K) sum_k (w_k - w*_k)^T Sigma (w_k - w*_k)``: the excess risk is
an NQM risk 1/2 sum h theta^2 over the d K weights with curvature h_i = 2 lambda_i / K (see
``nnbench.linear_ls`` for the gradient noise and the exact correspondence).

The ``"validation"`` split is not a sample: it is the exact-risk design ``X = sqrt(dim) Sigma^(1/2)``
(dim rows, one per eigen-direction) with noise-free targets ``X W*^T``, so that its mean squared error
is EXACTLY the excess risk ``(1/K) sum_k (w_k - w*_k)^T Sigma (w_k - w*_k)`` of the current weights
(because X^T X / dim = Sigma): evaluation adds no sampling noise, and the workload's target is a target
on the excess risk.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from nnbench.data.source import (
    OnlineDataSource,
    check_nonneg_float,
    check_positive_int,
    check_seed,
    derive_seed,
)

__all__ = ["LinearRegressionSource", "linear_regression"]


def _check_positive_float(value, name: str) -> float:
    v = check_nonneg_float(value, name)
    if v == 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


class LinearRegressionSource(OnlineDataSource):
    """Gaussian inputs with covariance diag(``eigenvalues``), targets ``W* x + noise`` (see the module).

    Attributes (besides the ``DataSource`` ones):
        eigenvalues: lambda_i, the input covariance spectrum, float64 numpy array (dim,), descending.
        w_star: the teacher weights W*, float64 numpy array (num_outputs, dim).
        noise_std: s, the standard deviation of the label noise (irreducible mse s^2).
    """

    def __init__(self, *, dim: int, num_outputs: int, decay: float, scale: float, noise_std: float,
                 w_star_std: float, seed: int, device) -> None:
        seed = check_seed(seed)
        dim = check_positive_int(dim, "dim")
        super().__init__(num_eval=dim, eval_seed=derive_seed(seed, 5), device=device)
        self.name = "linear_regression"
        self.task = "regression"
        self.input_shape = (dim,)
        self.num_outputs = check_positive_int(num_outputs, "num_outputs")
        self.noise_std = check_nonneg_float(noise_std, "noise_std")
        decay = check_nonneg_float(decay, "decay")
        scale = _check_positive_float(scale, "scale")
        w_star_std = check_nonneg_float(w_star_std, "w_star_std")
        self.eigenvalues = scale * np.arange(1, dim + 1, dtype=np.float64) ** -decay
        gen = np.random.default_rng(derive_seed(seed, 4))
        self.w_star = w_star_std * gen.standard_normal((self.num_outputs, dim))
        self._sqrt_lam = torch.tensor(np.sqrt(self.eigenvalues), dtype=torch.float32)  # (D,)
        self._w_star = torch.tensor(self.w_star, dtype=torch.float32)  # (K, D)
        self._move(self.device)

    def _move(self, device: torch.device) -> None:
        self._sqrt_lam, self._w_star = self._sqrt_lam.to(device), self._w_star.to(device)

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        dev = generator.device
        x = torch.randn(n, self.input_shape[0], generator=generator, device=dev) * self._sqrt_lam  # (N, D)
        noise = torch.randn(n, self.num_outputs, generator=generator, device=dev)  # (N, K)
        return x, x @ self._w_star.T + self.noise_std * noise

    def eval_data(self, split: str = "validation") -> tuple[Tensor, Tensor]:
        """The exact-risk design (see the module docstring): its mse is the excess risk, exactly."""
        self._check_split(split)
        if self._eval is None:
            dim = self.input_shape[0]
            x = torch.diag(self._sqrt_lam.cpu() * math.sqrt(dim))  # (D, D): X^T X / D = Sigma
            self._eval = ((x).to(self.device), (x @ self._w_star.cpu().T).to(self.device))
        return self._eval

    def excess_risk(self, weight) -> float:
        """(1/K) sum_k (w_k - w*_k)^T Sigma (w_k - w*_k) for a weight matrix (K, dim) (numpy or torch),
        computed in float64: what the validation mse measures."""
        w = weight.detach().double().cpu().numpy() if isinstance(weight, Tensor) else np.asarray(weight, float)
        if w.shape != self.w_star.shape:
            raise ValueError(f"weight must have shape {self.w_star.shape}, got {w.shape}")
        delta = w - self.w_star
        return float(np.mean(delta**2 @ self.eigenvalues))


def linear_regression(*, root=None, device="cpu", dim: int = 16, num_outputs: int = 32, decay: float = 1.5,
                      scale: float = 1.0, noise_std: float = 1.0, w_star_std: float = 1.0,
                      seed: int = 0) -> LinearRegressionSource:
    """Online Gaussian linear least squares (see the module docstring).

    Args:
        root: unused (embedded data). device: where batches are drawn.
        dim: D, input dimension. num_outputs: K independent targets sharing the inputs (K problems with
            the same spectrum: the expected risk is that of one, its fluctuations are sqrt(K) smaller).
        decay, scale: input covariance eigenvalues lambda_i = scale * i^-decay (condition number
            dim^decay).
        noise_std: s, label-noise standard deviation (irreducible mse s^2).
        w_star_std: teacher weights W* ~ N(0, w_star_std^2) per entry, drawn once from ``seed``.
        seed: fixes W*.
    """
    return LinearRegressionSource(dim=dim, num_outputs=num_outputs, decay=decay, scale=scale,
                                  noise_std=noise_std, w_star_std=w_star_std, seed=seed, device=device)
