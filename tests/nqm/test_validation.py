"""Bad input gives a clear ValueError naming the argument, never an error from inside numba."""

import math

import numpy as np
import pytest

import nqm

P = nqm.NQM.paper(bins=20)
OK = dict(lr=0.5, batch_size=64)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(lr=math.nan), "lr"),
    (dict(lr=math.inf), "lr"), (dict(lr="0.1"), "lr"), (dict(lr=True), "lr"),
    (dict(batch_size=0), "batch_size"), (dict(batch_size=0.5), "batch_size"),
    (dict(batch_size=math.nan), "batch_size"), (dict(batch_size=-4), "batch_size"),
    (dict(momentum=1.0), "momentum"), (dict(momentum=-0.1), "momentum"),
    (dict(momentum=math.nan), "momentum"),
    (dict(power=-0.1), "power"), (dict(power=1.5), "power"),
    (dict(target=0.0), "target"), (dict(target=-1.0), "target"),
    (dict(target=math.inf), "target"),
    (dict(lr=2.5), "stability limit 2"),                             # unstable SGD
    (dict(lr=3.0, momentum=0.4), "stability limit"),                 # heavy ball limit 2.8
    (dict(lr=1.6, momentum=0.4, nesterov=True), "lr=1.6 is unstable"),   # limit 1.556
    (dict(nesterov="yes", momentum=0.5), "nesterov"),
])
def test_steps_to_target_bad_input(kwargs, match):
    args = {**OK, **kwargs}
    with pytest.raises(ValueError, match=match):
        nqm.steps_to_target(P, **args)


@pytest.mark.parametrize("call, match", [
    (lambda: nqm.risk(P, -1, **OK), "steps"),
    (lambda: nqm.risk(P, 1.5, **OK), "steps"),
    (lambda: nqm.risk_curve(P, [0, 1.5], **OK), "steps"),
    (lambda: nqm.risk("paper", 1, **OK), "problem"),
    (lambda: nqm.optimal_lr(P, batch_size=0), "batch_size"),
    (lambda: nqm.optimal_hyperparameters(P, batch_size=4, momentum="tuned"), "momentum"),
    (lambda: nqm.optimal_hyperparameters(P, batch_size=4, power="auto"), "power"),
    (lambda: nqm.batch_size_sweep(P, batch_sizes=[0, 2]), "batch_sizes must all be >= 1, got 0"),
    (lambda: nqm.batch_size_sweep(P, batch_sizes=[0.5]), "batch_sizes must all be >= 1, got 0.5"),
    (lambda: nqm.batch_size_sweep(P, batch_sizes=[1, 2], powers=[2.0]), "power"),
    (lambda: nqm.batch_size_sweep(P, batch_sizes=[]), "batch_sizes"),
    (lambda: nqm.lower_bound_steps(P, batch_size=0), "batch_size"),
    (lambda: nqm.NQM.paper(0), "d must be"),
    (lambda: nqm.NQM.paper(bins=0), "bins"),
    (lambda: nqm.NQM.paper(binning="fancy"), "binning"),
    (lambda: nqm.NQM.from_spectrum([1.0, -1.0]), "h must be > 0"),
    (lambda: nqm.NQM.from_spectrum([1.0, np.nan]), "h must be finite"),
    (lambda: nqm.NQM.from_spectrum([1.0, 0.5], c=[1.0]), "c must have 2"),
    (lambda: nqm.NQM.from_spectrum([1.0, 0.5], x0sq=-1.0), "x0sq"),
    (lambda: nqm.NQM(np.ones(2), np.ones(2), np.zeros(2), np.ones(2)), "counts"),
    (lambda: nqm.NQM.power_law(100, a=0.0), "a must be"),
    (lambda: nqm.Optimizer(lr=0.1, momentum=1.2), "momentum"),
])
def test_other_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unstable_message_states_the_limit():
    with pytest.raises(ValueError) as err:
        nqm.risk(P, 10, lr=2.0, batch_size=4)           # exactly at the limit is unstable too
    msg = str(err.value)
    assert "lr=2.0" in msg and "stability limit 2" in msg


def test_stability_limits():
    assert nqm.stability_limit(P) == pytest.approx(2.0)
    assert nqm.stability_limit(P, momentum=0.9) == pytest.approx(3.8)
    assert nqm.stability_limit(P, momentum=0.9, nesterov=True) == pytest.approx(3.8 / 2.8)
    # just below the limit works, and the risk is finite
    r = nqm.risk(P, 1000, lr=2.0 * (1 - 1e-9), batch_size=4)
    assert math.isfinite(r)
