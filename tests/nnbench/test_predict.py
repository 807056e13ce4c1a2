"""nnbench.predict: NQMs from measured spectra (checked against an explicit least-squares Hessian and
per-example gradients), the two-scale fit (recovers known scales), predictions and families."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nqm
from nnbench.models import build_model
from nnbench.predict import (
    FAMILIES,
    Family,
    _family,
    fit_scales,
    nqm_curve,
    nqm_from_hessian,
    nqm_from_spectrum,
    predict,
)

SMALL = nqm.NQM.paper(1000, bins=30)


def test_nqm_from_hessian_matches_explicit_least_squares():
    # least squares: H = 2 X^T X / n exactly, per-example gradients 2 (w.x - y) x
    gen = torch.Generator().manual_seed(0)
    n, d = 512, 6
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.linspace(1.0, 0.2, d, dtype=torch.float64)
    y = x @ torch.randn(d, 1, generator=gen, dtype=torch.float64) + 0.3 * torch.randn(n, 1, generator=gen,
                                                                                       dtype=torch.float64)
    torch.manual_seed(1)
    model = build_model("linear", (d,), 1, bias=False).double()
    p = nqm_from_hessian(model, lambda out, t: F.mse_loss(out, t), x, y, k=d, num_steps=d)
    X, Y = x.numpy(), y.numpy()[:, 0]
    w = model[1].weight.detach().numpy()[0]
    lam, U = np.linalg.eigh(2 * X.T @ X / n)
    order = np.argsort(-lam)
    lam, U = lam[order], U[:, order]
    g = 2 * (X @ w - Y)[:, None] * X                     # (n, d) per-example gradients
    proj = g @ U
    np.testing.assert_allclose(p.h, lam, rtol=1e-8)
    np.testing.assert_allclose(p.c, proj.var(axis=0, ddof=1), rtol=1e-6)
    # theta = distance to the batch's least-squares solution along each eigenvector
    w_ls = np.linalg.solve(X.T @ X, X.T @ Y)
    np.testing.assert_allclose(p.x0sq, ((w - w_ls) @ U) ** 2, rtol=1e-6)
    np.testing.assert_allclose(p.counts, 1.0)


def test_nqm_from_spectrum_drops_negative_curvature_and_validates():
    p = nqm_from_spectrum([2.0, -1.0, 0.5], [1.0, 1.0, 0.5], [1.0, 4.0, 1.0])
    np.testing.assert_allclose(p.h, [2.0, 0.5])
    with pytest.raises(ValueError, match="no positive curvature"):
        nqm_from_spectrum([-1.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="one length"):
        nqm_from_spectrum([1.0, 2.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="noise"):
        nqm_from_spectrum([1.0], [-1.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        nqm_from_spectrum([math.nan], [1.0], [1.0])


def test_families():
    assert FAMILIES["sgd"] == Family(0.0, 0.0)
    assert FAMILIES["momentum"].momentum == "tune" and FAMILIES["momentum"].power == 0.0
    assert FAMILIES["adam"].power == 0.5 and FAMILIES["kfac"].power == 0.75
    assert _family("adam", {"adam": 0.25}).power == 0.25
    with pytest.raises(ValueError, match="no NQM family"):
        _family("lamb")
    with pytest.raises(ValueError, match="powers"):
        _family("adam", {"adam": 1.5})


def test_curve_is_the_nqm_sweep():
    c = nqm_curve(FAMILIES["sgd"], problem=SMALL, batch_sizes=[1.0, 4.0, 16.0, 64.0])
    s = nqm.batch_size_sweep(SMALL, batch_sizes=[1, 4, 16, 64], powers=[0.0])
    np.testing.assert_allclose(c.steps, s.steps_relaxed[0])
    assert np.all(np.diff(c.steps) <= 0)
    # perfect scaling below the grid, saturation above it
    assert c.log_steps(np.log([0.5]))[0] == pytest.approx(math.log(c.steps[0] * 2))
    assert c.log_steps(np.log([1e9]))[0] == pytest.approx(math.log(c.s_inf))
    cb = nqm.critical_batch(SMALL)
    assert (c.b_crit, c.s_min, c.e_min) == (cb.value, cb.s_min, cb.e_min)


def test_fit_recovers_known_scales_and_predicts_the_other_optimizer():
    sgd = nqm_curve(FAMILIES["sgd"], problem=SMALL)
    mom = nqm_curve(FAMILIES["momentum"], problem=SMALL)
    B = np.array([8.0, 32, 128, 512, 2048])
    true_s, true_b = 0.05, 7.0
    meas = true_s * np.exp(sgd.log_steps(np.log(B / true_b)))
    fit = fit_scales({"sgd": (B, meas)}, {"sgd": sgd})
    assert fit.steps_scale == pytest.approx(true_s, rel=1e-3)
    assert fit.batch_scale == pytest.approx(true_b, rel=1e-3)
    assert fit.residual_rms < 1e-6 and fit.fitted_on == ("sgd",) and fit.n_points == 5
    p = predict("momentum", mom, fit, B)
    np.testing.assert_allclose(p.steps, true_s * np.exp(mom.log_steps(np.log(B / true_b))), rtol=1e-6)
    assert p.b_crit == pytest.approx(true_b * mom.b_crit, rel=1e-3)
    assert p.e_min == pytest.approx(true_s * true_b * mom.e_min, rel=2e-3)
    np.testing.assert_allclose(p.steps_at(B[1:3]), p.steps[1:3], rtol=1e-9)
    # a joint fit on both optimizers' exact points finds the same scales
    meas_m = true_s * np.exp(mom.log_steps(np.log(B / true_b)))
    joint = fit_scales({"sgd": (B, meas), "momentum": (B, meas_m)}, {"sgd": sgd, "momentum": mom})
    assert joint.batch_scale == pytest.approx(true_b, rel=1e-3) and joint.n_points == 10


def test_fit_bad_input():
    sgd = nqm_curve(FAMILIES["sgd"], problem=SMALL, batch_sizes=[1.0, 4.0])
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_scales({"sgd": ([8.0], [10.0])}, {"sgd": sgd})
    with pytest.raises(ValueError, match="steps must be finite"):
        fit_scales({"sgd": ([8.0, 16.0], [10.0, -1.0])}, {"sgd": sgd})
    with pytest.raises(ValueError, match="batch sizes"):
        fit_scales({"sgd": ([0.0, 16.0], [10.0, 5.0])}, {"sgd": sgd})
    with pytest.raises(ValueError, match="no NQM curve"):
        fit_scales({"adam": ([8.0, 16.0], [10.0, 5.0])}, {"sgd": sgd})


def test_d_grid_and_curve_bank_validation():
    from nnbench.predict import D_GRID, CurveBank, d_grid

    assert d_grid(4, 16) == (4, 5, 6, 8, 10, 13, 16)
    assert D_GRID[0] == 4 and D_GRID[-1] == 16384 and len(D_GRID) == 37
    with pytest.raises(ValueError, match="at least 2 x low"):
        d_grid(10, 15)
    with pytest.raises(ValueError, match="low"):
        d_grid(0, 15)
    with pytest.raises(ValueError, match="target"):
        CurveBank(target=-1.0)
    with pytest.raises(ValueError, match="bins"):
        CurveBank(bins=1)
    bank = CurveBank(bins=8)
    assert bank.problem(8).n_bins == 8 and bank.problem(100).n_bins <= 8
    c = bank.curve(FAMILIES["sgd"], 8)
    assert bank.curve(FAMILIES["sgd"], 8) is c          # computed once
