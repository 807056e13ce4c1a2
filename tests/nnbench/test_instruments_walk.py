"""Xing et al. walk measurements and the trial-hook adapter, against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnbench.instruments import (
    WalkTracker,
    as_trial_instrument,
    flat_params,
    gradient_cosine,
    gradient_noise_scale,
    hutchinson_trace,
    segment_losses,
)

from .test_instruments_naive import DT, batch_grad, classification_data, flat, loss_value, tiny_mlp


class Scalar(nn.Module):
    """One parameter w; the 'output' is w for every example."""

    def __init__(self, w: float = 0.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w], dtype=DT))

    def forward(self, x):
        return self.w.expand(x.shape[0], 1)


def double_well(out, y):
    """(w^2 - 1)^2: minima at w = +-1 (loss 0), barrier at w = 0 (loss 1)."""
    return ((out**2 - 1) ** 2).mean()


ONE = (torch.zeros(2, 1, dtype=DT), torch.zeros(2, 1, dtype=DT))


def test_gradient_cosine_matches_formula():
    """cos = a.b / (|a||b|) (rel 1e-14); parallel -> 1, opposite -> -1, zero vector -> nan."""
    a = torch.tensor([1.0, 2.0, -2.0], dtype=DT)
    b = torch.tensor([0.5, -1.0, 4.0], dtype=DT)
    want = float(a @ b) / (float(a.norm()) * float(b.norm()))
    assert gradient_cosine(a, b) == pytest.approx(want, rel=1e-14)
    assert gradient_cosine(a, 3 * a) == pytest.approx(1.0, rel=1e-14)
    assert gradient_cosine(a, -a) == pytest.approx(-1.0, rel=1e-14)
    assert math.isnan(gradient_cosine(a, torch.zeros(3, dtype=DT)))
    with pytest.raises(ValueError, match="same shape"):
        gradient_cosine(a, b[:2])


def test_double_well_barrier_is_detected():
    """Segment -1.2 -> 1.2 crosses the barrier at w = 0 (height 1 - 0.44^2 = 0.8064 with a point at
    alpha = 1/2, rel 1e-12); segment 0.9 -> 1.2 inside one well has none."""
    model = Scalar()
    seg = segment_losses(model, double_well, torch.tensor([-1.2], dtype=DT), torch.tensor([1.2], dtype=DT), *ONE, num_points=11)
    assert seg.barrier
    end = (1.2**2 - 1) ** 2
    assert seg.barrier_height == pytest.approx(1.0 - end, rel=1e-12)
    inside = segment_losses(model, double_well, torch.tensor([0.9], dtype=DT), torch.tensor([1.2], dtype=DT), *ONE)
    assert not inside.barrier and inside.barrier_height == 0.0


def test_double_well_valley_floor_and_height():
    """Segment -1.2 -> -0.8 (5 points, alpha = 1/2 at w = -1): floor 0 at alpha 0.5, height
    L(-1.2) - 0 = 0.1936 (rel 1e-12); every point is the loss at (1 - alpha) a + alpha b."""
    seg = segment_losses(Scalar(), double_well, torch.tensor([-1.2], dtype=DT), torch.tensor([-0.8], dtype=DT), *ONE, num_points=5)
    np.testing.assert_allclose(seg.alphas, [0, 0.25, 0.5, 0.75, 1])
    ws = -1.2 + 0.4 * seg.alphas
    np.testing.assert_allclose(seg.losses, (ws**2 - 1) ** 2, rtol=1e-12, atol=1e-15)
    assert seg.valley_floor == pytest.approx(0.0, abs=1e-15) and seg.floor_alpha == 0.5
    assert seg.height_above_floor == pytest.approx((1.44 - 1) ** 2, rel=1e-12)
    assert not seg.barrier


def test_flat_segment_is_not_a_barrier():
    """Identical endpoints (a zero step): rounding must not register as a barrier."""
    model = tiny_mlp()
    x, y = classification_data(12, 3)
    theta = flat_params(model)
    seg = segment_losses(model, F.cross_entropy, theta, theta.clone(), x, y, num_points=7)
    assert not seg.barrier and seg.height_above_floor == pytest.approx(0.0, abs=1e-15)


def test_segment_losses_match_direct_evaluation_on_an_mlp():
    """Each interpolated full-batch loss equals the loss of a copy with those parameters (rel 1e-12),
    also when evaluated in chunks of 5 examples."""
    model = tiny_mlp()
    x, y = classification_data(17, 3)
    a = flat(model)
    b = a + 0.3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    for chunk in (None, 5):
        seg = segment_losses(model, F.cross_entropy, a, b, x, y, num_points=6, chunk_size=chunk)
        want = [loss_value(model, F.cross_entropy, a + t * (b - a), x, y) for t in np.linspace(0, 1, 6)]
        np.testing.assert_allclose(seg.losses, want, rtol=1e-12)


def test_walk_tracker_along_sgd_steps():
    """Four SGD steps on the MLP, tracker updated after each: distance from init, step length, gradient
    cosine (gradients from autograd) and the segment losses equal direct computations (rel 1e-10);
    the first update only reports what is defined; history keeps one segment per later update."""
    model = tiny_mlp()
    x_all, y_all = classification_data(24, 3)
    tracker = WalkTracker(full_batch=(x_all, y_all), num_points=5, keep_segments=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    theta0 = flat(model)
    prev_theta, prev_grad = None, None
    for step in range(4):
        xb, yb = x_all[6 * step : 6 * step + 6], y_all[6 * step : 6 * step + 6]
        out = tracker.update(model, F.cross_entropy, xb, yb)
        theta, g = flat(model), batch_grad(model, F.cross_entropy, xb, yb)
        assert out["distance_from_init"] == pytest.approx(float((theta - theta0).norm()), rel=1e-10, abs=1e-14)
        assert out["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-10)
        if prev_theta is None:
            assert set(out) == {"distance_from_init", "grad_norm"}
        else:
            assert out["step_length"] == pytest.approx(float((theta - prev_theta).norm()), rel=1e-10)
            cos = float(prev_grad @ g) / float(prev_grad.norm() * g.norm())
            assert out["grad_cosine"] == pytest.approx(cos, rel=1e-10)
            seg = segment_losses(model, F.cross_entropy, prev_theta, theta, x_all, y_all, num_points=5)
            assert out["valley_floor"] == pytest.approx(seg.valley_floor, rel=1e-12)
            assert out["segment_loss_start"] == pytest.approx(
                loss_value(model, F.cross_entropy, prev_theta, x_all, y_all), rel=1e-12
            )
            assert out["barrier"] in (0.0, 1.0)
        prev_theta, prev_grad = theta, g
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    assert tracker.num_updates == 4 and len(tracker.history) == 3
    assert all(isinstance(v, float) for v in out.values())


def test_walk_tracker_initial_model_and_mismatch():
    """initial= fixes theta_0; a model with another parameter count is rejected."""
    start = tiny_mlp(seed=1)
    model = tiny_mlp(seed=2)
    x, y = classification_data(6, 3)
    tracker = WalkTracker(initial=start)
    out = tracker.update(model, F.cross_entropy, x, y)
    assert out["distance_from_init"] == pytest.approx(float((flat(model) - flat(start)).norm()), rel=1e-12)
    with pytest.raises(ValueError, match="parameters"):
        tracker.update(nn.Linear(3, 3).to(DT), F.cross_entropy, x, y)
    # the trial hook form (model, loss_fn, (x, y)) is update()
    again = tracker(model, F.cross_entropy, (x, y))
    assert again["distance_from_init"] == out["distance_from_init"] and again["step_length"] == 0.0
    with pytest.raises(ValueError, match="called as"):
        tracker(model, F.cross_entropy, x)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"num_points": 2}, "num_points"), ({"barrier_rtol": -1.0}, "barrier_rtol"), ({"full_batch": (1, 2, 3)}, "full_batch")],
)
def test_walk_tracker_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WalkTracker(**kwargs)


def test_segment_losses_rejects_wrong_vectors():
    model = tiny_mlp()
    x, y = classification_data(4, 3)
    with pytest.raises(ValueError, match="theta_b"):
        segment_losses(model, F.cross_entropy, flat(model), torch.zeros(5, dtype=DT), x, y)


def test_trial_instrument_adapter_call_forms_prefix_and_floats():
    """Both hook forms give the same floats as the direct call; kwargs are bound; names are prefixed."""
    model = tiny_mlp()
    x, y = classification_data(10, 3)
    inst = as_trial_instrument(hutchinson_trace, num_probes=6, seed=3)
    assert inst.__name__ == "hutchinson_trace"
    direct = hutchinson_trace(model, F.cross_entropy, x, y, num_probes=6, seed=3)
    for got in (inst(model, F.cross_entropy, x, y), inst(model, F.cross_entropy, (x, y))):
        assert got == {"hutchinson_trace.trace": direct.trace, "hutchinson_trace.stderr": direct.stderr}
    bare = as_trial_instrument(gradient_noise_scale, prefix="")(model, F.cross_entropy, x, y)
    assert bare["b_simple"] == gradient_noise_scale(model, F.cross_entropy, x, y).b_simple
    assert all(type(v) is float for v in bare.values())
    walk = as_trial_instrument(WalkTracker())
    assert walk.__name__ == "walk"
    assert set(walk(model, F.cross_entropy, x, y)) == {"walk.distance_from_init", "walk.grad_norm"}
    with pytest.raises(ValueError, match="called as"):
        inst(model, F.cross_entropy, x)
    with pytest.raises(ValueError, match="fn must be callable"):
        as_trial_instrument(3)
    with pytest.raises(ValueError, match="not measurements"):
        as_trial_instrument(lambda m, l, x, y: 1.0)(model, F.cross_entropy, x, y)
