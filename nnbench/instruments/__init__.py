"""Measurements for the theory, on any model + loss + data, via torch.func.

Every instrument takes ``(model, loss_fn, x, y)`` (``loss_fn(output, y)`` a scalar mean loss),
evaluates the model in eval mode through ``functional_call`` without mutating it, works on CPU or
CUDA in float32 or float64, and returns a small frozen dataclass with named fields and an
``as_measurements()`` dict. ``as_trial_instrument`` turns any of them into the trial loop's hook.

* Gradient noise scale (McCandlish et al. 2018): ``gradient_noise_scale`` (B_simple, exact from
  per-example gradients), ``two_batch_noise_scale`` / ``unbiased_gradient_estimates`` (the cheap
  two-batch-size estimator), ``hessian_noise_scale`` (B_noise with Hessian-vector products).
* Fisher (Park et al. 2019): ``fisher_trace`` (true / empirical / gradient covariance),
  ``park_gamma`` (E_init[tr F] / sqrt(P)), ``sgd_temperature`` (g = lr N / (2 B (1 - m))).
* Hessian: ``hessian_vector_product``, ``hessian_eigenvalues`` (Lanczos), ``power_iteration``,
  ``hutchinson_trace``, ``spectral_density`` (stochastic Lanczos quadrature).
* Preconditioners: ``effective_power`` (the power p of P = H^-p an optimizer's preconditioner acts
  like, from the spectra of H and P^1/2 H P^1/2), ``adam_preconditioner``, ``kfac_preconditioner``.
* Xing et al. 2018: ``WalkTracker``, ``gradient_cosine``, ``segment_losses``.
"""

from ._functional import ParamSpec, flat_params, param_spec
from .fisher import FisherTrace, ParkGamma, fisher_trace, park_gamma, sgd_temperature
from .hessian import (
    HessianEigen,
    HessianTrace,
    PowerIteration,
    SpectralDensity,
    hessian_eigenvalues,
    hessian_vector_product,
    hutchinson_trace,
    power_iteration,
    spectral_density,
)
from .hooks import as_trial_instrument
from .noise_scale import (
    NoiseScale,
    SimpleNoiseScale,
    TwoBatchNoiseScale,
    gradient_noise_scale,
    hessian_noise_scale,
    two_batch_noise_scale,
    unbiased_gradient_estimates,
)
from .preconditioner import (
    EffectivePower,
    Preconditioner,
    adam_preconditioner,
    diagonal_preconditioner,
    effective_power,
    kfac_preconditioner,
    power_from_spectra,
)
from .walk import Segment, WalkTracker, gradient_cosine, segment_losses

__all__ = [
    "EffectivePower",
    "FisherTrace",
    "HessianEigen",
    "HessianTrace",
    "NoiseScale",
    "ParamSpec",
    "ParkGamma",
    "PowerIteration",
    "Preconditioner",
    "Segment",
    "SimpleNoiseScale",
    "SpectralDensity",
    "TwoBatchNoiseScale",
    "WalkTracker",
    "adam_preconditioner",
    "as_trial_instrument",
    "diagonal_preconditioner",
    "effective_power",
    "fisher_trace",
    "flat_params",
    "gradient_cosine",
    "gradient_noise_scale",
    "hessian_eigenvalues",
    "hessian_noise_scale",
    "hessian_vector_product",
    "hutchinson_trace",
    "kfac_preconditioner",
    "park_gamma",
    "param_spec",
    "power_from_spectra",
    "power_iteration",
    "segment_losses",
    "sgd_temperature",
    "spectral_density",
    "two_batch_noise_scale",
    "unbiased_gradient_estimates",
]
