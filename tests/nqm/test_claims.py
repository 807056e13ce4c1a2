"""The paper's claims 1-4 and 6 (shared/spec/NQM.md section 4) as assertions on the default problem
(d = 10^4, h_i = 1/i, C = H, accurate 100-bin binning, target 0.01)."""

import numpy as np
import pytest

import nqm

B = np.array([2.0 ** i for i in range(22)])


@pytest.fixture(scope="module")
def sweeps():
    p = nqm.NQM.paper()
    sgd = nqm.batch_size_sweep(p, batch_sizes=B, powers=[0.0, 0.5])
    mom = nqm.batch_size_sweep(p, batch_sizes=B, powers=[0.0, 0.5], momentum="tune")
    return p, sgd, mom


def test_claim1_perfect_scaling_then_no_benefit(sweeps):
    _, sgd, mom = sweeps
    for s in (sgd, mom):
        for i in range(2):
            ratio = s.steps[i, 1:] / s.steps[i, :-1]        # S(2B) / S(B)
            assert np.all(np.abs(ratio[:5] - 0.5) < 0.01)   # B = 1 .. 32: halves
            # beyond the critical batch: at most a few percent from doubling again
            assert s.steps[i, -1] / s.steps[i, -4] > 0.9
    # SGD p = 0: B_crit ~ 900, so 2^14 .. 2^21 gains less than 10 %
    assert sgd.steps[0, 21] / sgd.steps[0, 14] > 0.9


def test_claim2_momentum_little_at_small_batch_a_lot_at_large(sweeps):
    _, sgd, mom = sweeps
    ratio = sgd.steps[0] / mom.steps[0]
    small = ratio[2:9]                         # B = 4 .. 256
    assert np.all((small > 1.12) & (small < 1.3))
    assert np.all(ratio[2:6] < 1.2)            # B = 4 .. 32: 1.15 - 1.2x
    assert np.all(ratio[18:] > 35)             # B >= 2^18: ~40x
    p = nqm.NQM.paper()
    assert (nqm.critical_batch(p, momentum="tune").value
            > 10 * nqm.critical_batch(p).value)


def test_claim3_preconditioning_raises_critical_batch_and_helps_at_small_batch(sweeps):
    p, sgd, mom = sweeps
    assert np.all(sgd.steps[1, :6] < sgd.steps[0, :6] / 3)     # constant factor at small B
    b0 = nqm.critical_batch(p, power=0.0).value
    b5 = nqm.critical_batch(p, power=0.5).value
    bm5 = nqm.critical_batch(p, momentum="tune", power=0.5).value
    assert b5 > 5 * b0
    assert bm5 > b5                                           # momentum + preconditioning
    assert np.all(mom.steps[1] <= sgd.steps[1])


def test_claim4_optimal_lr_linear_then_stability_limit(sweeps):
    p, sgd, mom = sweeps
    lr0, lr5 = sgd.lr
    assert np.allclose(lr0[1:6] / lr0[:5], 2.0, rtol=0.02)     # linear scaling at small B
    lim0 = nqm.stability_limit(p, power=0.0)
    lim5 = nqm.stability_limit(p, power=0.5)
    assert np.all(lr0[16:] > 0.95 * lim0)                     # levels off at the limit
    assert np.all(lr5[:8] < lr0[:8])                          # larger p: lower optimal rate
    first0 = np.argmax(lr0 > 0.9 * lim0)
    first5 = np.argmax(lr5 > 0.9 * lim5)
    assert first5 > first0                                    # ... and a later level-off
    eff = mom.effective_lr[0]
    assert np.allclose(eff[:5] / lr0[:5], 1.0, rtol=0.35)     # momentum: effective rate ~ SGD's
    assert np.allclose(eff[1:6] / eff[:5], 2.0, rtol=0.05)


def test_claim6_same_shape_other_targets_critical_batch_grows_when_harder():
    p = nqm.NQM.paper()
    targets = (0.05, 0.01, 0.005)
    crit = [nqm.critical_batch(p, target=t).value for t in targets]
    assert crit[0] < crit[1] < crit[2]
    for t, bc in zip((0.05, 0.005), (crit[0], crit[2]), strict=True):
        # same shape: perfect scaling well below this target's B_crit, saturation well above
        s = nqm.batch_size_sweep(p, batch_sizes=B, powers=[0.0], target=t)
        ratio = s.steps[0, 1:] / s.steps[0, :-1]
        small = B[1:] <= bc / 16
        assert small.sum() >= 3 and np.all(np.abs(ratio[small] - 0.5) < 0.01)
        assert np.all(ratio[B[:-1] >= 16 * bc] > 0.97)
