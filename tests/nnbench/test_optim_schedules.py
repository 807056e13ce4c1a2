"""Learning-rate schedules (Zhang et al. 2019 appendix E.3; Shallue et al. 2018 linear decay)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from nnbench.optim import SCHEDULES, build_schedule, schedule_hparams


def test_constant_schedule_is_lr_at_every_step():
    schedule = build_schedule("constant", lr=0.25)
    assert [schedule(t) for t in (0, 1, 10, 10**9)] == [0.25] * 4


@pytest.mark.parametrize("decay_factor", [0.0, 0.01, 0.5, 1.0])
def test_linear_decay_values_at_start_middle_end_and_beyond(decay_factor):
    lr, decay_steps = 0.4, 200
    schedule = build_schedule("linear_decay", lr=lr, decay_steps=decay_steps, decay_factor=decay_factor)
    final = lr * decay_factor
    assert schedule(0) == pytest.approx(lr, rel=1e-15)
    assert schedule(decay_steps // 2) == pytest.approx(0.5 * (lr + final), rel=1e-14, abs=1e-16)
    assert schedule(decay_steps) == pytest.approx(final, rel=1e-14, abs=1e-16)
    assert schedule(decay_steps + 1) == schedule(10 * decay_steps) == schedule(decay_steps)
    # linear in between: equal decrements per step
    values = np.array([schedule(t) for t in range(decay_steps + 1)])
    assert np.allclose(np.diff(values), (final - lr) / decay_steps, rtol=1e-9, atol=1e-15)


def test_schedules_are_picklable_values_and_accept_numpy_steps():
    schedule = build_schedule("linear_decay", lr=0.1, decay_steps=10, decay_factor=0.1)
    assert pickle.loads(pickle.dumps(schedule)) == schedule
    assert schedule(np.int64(5)) == schedule(5)
    assert build_schedule("linear_decay", lr=0.1, decay_steps=np.float64(10.0), decay_factor=0.1) == schedule


def test_schedule_hparams_lists_what_each_schedule_needs():
    assert tuple(SCHEDULES) == ("constant", "linear_decay")
    assert schedule_hparams("constant") == ("lr",)
    assert schedule_hparams("linear_decay") == ("lr", "decay_steps", "decay_factor")


@pytest.mark.parametrize(
    "name, kwargs, argument",
    [
        ("cosine", dict(lr=0.1), "known schedules: constant, linear_decay"),
        ("constant", dict(lr=0.0), "lr"),
        ("constant", dict(lr=-1.0), "lr"),
        ("constant", dict(lr=math.inf), "lr"),
        ("constant", dict(lr=0.1, decay_steps=10), "decay_steps"),
        ("constant", dict(lr=0.1, decay_factor=0.5), "decay_factor"),
        ("linear_decay", dict(lr=0.1, decay_factor=0.5), "decay_steps"),
        ("linear_decay", dict(lr=0.1, decay_steps=10), "decay_factor"),
        ("linear_decay", dict(lr=0.1, decay_steps=0, decay_factor=0.5), "decay_steps"),
        ("linear_decay", dict(lr=0.1, decay_steps=2.5, decay_factor=0.5), "decay_steps"),
        ("linear_decay", dict(lr=0.1, decay_steps=10, decay_factor=1.5), "decay_factor"),
        ("linear_decay", dict(lr=0.1, decay_steps=10, decay_factor=-0.1), "decay_factor"),
        ("linear_decay", dict(lr=math.nan, decay_steps=10, decay_factor=0.5), "lr"),
    ],
)
def test_invalid_schedule_arguments_raise_value_error_naming_them(name, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        build_schedule(name, **kwargs)


@pytest.mark.parametrize("step", [-1, 1.5, True, "3"])
def test_invalid_steps_raise_value_error(step):
    for schedule in (
        build_schedule("constant", lr=0.1),
        build_schedule("linear_decay", lr=0.1, decay_steps=10, decay_factor=0.1),
    ):
        with pytest.raises(ValueError, match="step"):
            schedule(step)
