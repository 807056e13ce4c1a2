"""nnbench.ensemble: every member of a batched ensemble reproduces its single trial (nnbench.trial.run).

Agreement measured on the tiny teacher workload and a tiny CNN (CPU, float32): the same status, steps
to result, steps run, evaluation steps and measurement names, and values (losses, accuracies, learning
rates) within a relative 5e-7 for SGD, momentum, Nesterov, Adam and Adam without momentum, with and
without linear decay (a batched matrix product sums in another order than a single one); 6e-6 for a
member whose loss explodes (the explosion amplifies rounding). The tests allow REL = 1e-5 (1e-4 for
exploding members), far below any difference a wrong batch, initialisation or update would make.
"""

import math
import re
import threading
import types

import pytest
import torch

from nnbench.ensemble import auto_ensemble_size, ensemble_size, ensemble_supported, run_ensemble
from nnbench.store import Status
from nnbench.trial import run
from nnbench.workloads import build_workload_data
from tests.nnbench.tiny import tiny_teacher

TINY = tiny_teacher(target=0.8, max_steps=300)
REL = 1e-5

HPARAMS = {
    "sgd": [{"lr": 0.05}, {"lr": 0.2}, {"lr": 0.5}, {"lr": 1.0}],
    "momentum": [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.02, "momentum": 0.5},
                 {"lr": 0.1, "momentum": 0.8, "weight_decay": 1e-3}, {"lr": 0.01, "momentum": 0.99}],
    "nesterov": [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.3, "momentum": 0.0}],
    "adam": [{"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
             {"lr": 1e-2, "beta1": 0.5, "beta2": 0.99, "eps": 1e-6},
             {"lr": 3e-3, "beta1": 0.0, "beta2": 0.9999, "eps": 1e-4, "weight_decay": 1e-2},
             {"lr": 3e-2, "beta1": 0.99, "beta2": 0.999, "eps": 1e-8}],
    "adam_nomomentum": [{"lr": 1e-2, "beta2": 0.99, "eps": 1e-8}, {"lr": 3e-3}],
}


@pytest.fixture(scope="module")
def data():
    return build_workload_data(TINY, device="cpu")


def _values(result):
    """{(step, name): value} of the measurements that do not time anything."""
    return {(m.step, m.name): m.value for m in result.measurements if not m.name.endswith("time")}


def _skeleton(error):
    """An error message with its measured values blanked out, its step numbers kept."""
    return None if error is None else re.sub(r"(mean|initial loss) \S+", r"\1 #", error)


def assert_same_trial(got, want, rel=REL):
    """``got`` (from an ensemble) is ``want`` (a single trial) up to floating-point reassociation."""
    for attr in ("index", "status", "steps_to_result", "steps_run", "seed", "device", "hparams"):
        assert getattr(got, attr) == getattr(want, attr), attr
    assert _skeleton(got.error) == _skeleton(want.error)
    assert [(m.step, m.name) for m in got.measurements] == [(m.step, m.name) for m in want.measurements]
    g, w = _values(got), _values(want)
    for key, value in w.items():
        assert g[key] == pytest.approx(value, rel=rel, abs=1e-12, nan_ok=True), key
    for attr in ("final_metric", "best_metric"):
        assert (getattr(got, attr) is None) == (getattr(want, attr) is None)
        if getattr(want, attr) is not None:
            assert getattr(got, attr) == pytest.approx(getattr(want, attr), rel=rel)


def _compare(workload, optimizer, hparams, data, batch_size=16, threads=1, **kwargs):
    members = [(10 + i, h, 1000 + 7 * i) for i, h in enumerate(hparams)]
    finished = []
    got = run_ensemble(workload, optimizer=optimizer, batch_size=batch_size, members=members, device="cpu",
                       data=data, on_result=finished.append, threads=threads, **kwargs)
    want = [run(workload, optimizer=optimizer, hparams=h, batch_size=batch_size, seed=s, index=i, device="cpu",
                data=data, **kwargs) for i, h, s in members]
    assert [r.index for r in got] == [m[0] for m in members]  # results in the order of the members
    for g, w in zip(got, want, strict=True):
        assert_same_trial(g, w, rel=REL if w.status is not Status.INFEASIBLE else 10 * REL)
    # on_result saw each member once, as it finished (by the step it stopped at, within a shard:
    # shards are consecutive members and run concurrently, so across shards the order is the clock's)
    assert sorted(r.index for r in finished) == sorted(m[0] for m in members)
    n = min(threads, len(members))
    for a, b in zip([len(members) * i // n for i in range(n)], [len(members) * i // n for i in range(1, n + 1)], strict=True):
        shard = [r.steps_run for r in finished if r.index in {m[0] for m in members[a:b]}]
        assert shard == sorted(shard)
    return got


@pytest.mark.parametrize("optimizer", list(HPARAMS))
def test_members_reproduce_their_single_trials(data, optimizer):
    got = _compare(TINY, optimizer, HPARAMS[optimizer], data)
    assert any(r.status is Status.COMPLETE for r in got)


def test_members_reproduce_linear_decay_per_member(data):
    w = TINY.replace(schedule="linear_decay", max_steps=120, target=0.99)  # all run the whole budget
    hparams = [{"lr": 0.5, "decay_steps": 40.0, "decay_factor": 0.1},
               {"lr": 0.2, "decay_steps": 100.0, "decay_factor": 0.5, "momentum": 0.9},
               {"lr": 0.1, "decay_steps": 12.4, "decay_factor": 0.01, "momentum": 0.0}]
    got = _compare(w, "nesterov", hparams, data)
    lrs = [[v for (s, n), v in sorted(_values(r).items()) if n == "lr"] for r in got]
    assert lrs[0][-1] == pytest.approx(0.05) and lrs[2][-1] == pytest.approx(0.001)  # decayed, per member


def test_a_diverging_member_does_not_poison_the_others(data):
    # lr = 1e30: the first step's loss is non-finite; lr = 3: the loss explodes within ~20 steps.
    hparams = [{"lr": 0.5}, {"lr": 1e30}, {"lr": 0.2}, {"lr": 3.0}]
    got = _compare(TINY, "sgd", hparams, data, batch_size=8)
    assert [r.status for r in got] == [Status.COMPLETE, Status.INFEASIBLE, Status.COMPLETE, Status.INFEASIBLE]
    assert "non-finite" in got[1].error and "exploded" in got[3].error
    assert not math.isfinite([m.value for m in got[1].measurements if m.name == "train_loss"][-1])
    for r in (got[0], got[2]):
        assert all(math.isfinite(v) for v in _values(r).values())


def test_members_split_over_threads_reproduce_their_single_trials(data):
    before = torch.get_num_threads()
    # 5 members on 2 threads: shards of 2 and 3, finishing at different steps; two diverge
    hparams = [{"lr": 0.5}, {"lr": 1e30}, {"lr": 0.2}, {"lr": 3.0}, {"lr": 0.05}]
    got = _compare(TINY, "sgd", hparams, data, batch_size=8, threads=2)
    assert Status.INFEASIBLE in {r.status for r in got} and Status.COMPLETE in {r.status for r in got}
    assert torch.get_num_threads() == before


def test_an_error_in_on_result_stops_every_shard(data):
    seen = []

    def on_result(result):
        seen.append(result.index)
        raise KeyboardInterrupt  # e.g. the user's Ctrl-C while the driver stores a result

    members = [(i, {"lr": lr}, i) for i, lr in enumerate((3.0, 0.05, 0.1, 0.2))]
    with pytest.raises(KeyboardInterrupt):
        run_ensemble(TINY.replace(target=0.99), optimizer="sgd", batch_size=8, members=members, device="cpu",
                     data=data, on_result=on_result, threads=2)
    assert seen == [0]  # the diverging member, first and only
    assert not [t for t in threading.enumerate() if t.name.startswith("ensemble-shard")]


def test_the_generic_vmap_path_on_a_cnn():
    # simple_cnn is not a fully connected net: the forward pass runs as functional_call under vmap.
    w = tiny_teacher(
        name="tiny_images", dataset="synthetic_images", dataset_kwargs={"num_train": 256, "num_validation": 64,
                                                                       "size": 8, "seed": 0},
        model="simple_cnn", model_kwargs={"channels": (4, 8), "hidden": 16}, target=0.9, max_steps=40)
    images = build_workload_data(w, device="cpu")
    _compare(w, "momentum", [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.2, "momentum": 0.5}], images, batch_size=32,
             threads=2)


def test_global_rng_untouched(data):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    run_ensemble(TINY.replace(max_steps=20), optimizer="adam", batch_size=16, members=[(0, {"lr": 0.01}, 5)],
                 device="cpu", data=data)
    assert torch.equal(torch.rand(3), before)


def _shapes(input_shape, num_outputs=10):
    return types.SimpleNamespace(input_shape=input_shape, num_outputs=num_outputs)


def test_which_trials_can_form_an_ensemble():
    assert ensemble_supported(TINY, "adam", _shapes((8,))) == (True, "")
    ok, why = ensemble_supported(TINY, "kfac", _shapes((8,)))
    assert not ok and "KFAC" in why
    for model in ("resnet32", "vgg11"):
        ok, why = ensemble_supported(tiny_teacher(model=model, model_kwargs={}), "sgd", _shapes((3, 32, 32)))
        assert not ok and "in place" in why  # channel-normalised convolutions (and batch norm)
    no_wn = tiny_teacher(model="resnet32", model_kwargs={"weight_norm": False})
    ok, why = ensemble_supported(no_wn, "sgd", _shapes((3, 32, 32)))
    assert not ok and "batch-norm" in why
    for model, shape in (("resnet8", (3, 32, 32)), ("simple_cnn", (1, 16, 16)), ("transformer", (16,))):
        assert ensemble_supported(tiny_teacher(model=model, model_kwargs={}), "momentum", _shapes(shape))[0]


def test_ensemble_size():
    small = _shapes((8,), 4)
    assert ensemble_size(TINY, "sgd", small, "cpu", "auto") == (16, "")
    assert ensemble_size(TINY, "sgd", small, "cpu", 5) == (5, "")
    assert ensemble_size(TINY, "kfac", small, "cpu", 1) == (1, "")
    size, why = ensemble_size(TINY, "kfac", small, "cpu", "auto")
    assert size == 1 and "kfac" in why
    wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1000, 1000))  # ~1M parameters
    assert auto_ensemble_size("cpu", wide) == 8
    assert auto_ensemble_size("cpu", torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))) == 1  # CPU: FC nets only
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(ValueError, match="ensemble"):
            ensemble_size(TINY, "sgd", small, "cpu", bad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"members": []}, "at least one"),
        ({"members": [(1, {"lr": 0.1}, 0), (1, {"lr": 0.2}, 1)]}, "duplicate"),
        ({"optimizer": "kfac"}, "one at a time"),
        ({"members": [(0, {"momentum": 0.9}, 0)]}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"check_every": 0}, "check_every"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_input(data, kwargs, match):
    args = {"optimizer": "sgd", "batch_size": 8, "members": [(0, {"lr": 0.1}, 0)], **kwargs}
    with pytest.raises(ValueError, match=match):
        run_ensemble(TINY, device="cpu", data=data, **args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_members_reproduce_their_single_trials_on_gpu():
    gpu_data = build_workload_data(TINY, device="cuda")
    for optimizer in ("momentum", "adam"):
        members = [(i, h, 1000 + i) for i, h in enumerate(HPARAMS[optimizer])]
        got = run_ensemble(TINY, optimizer=optimizer, batch_size=16, members=members, device="cuda", data=gpu_data)
        for g, (i, h, s) in zip(got, members, strict=True):
            want = run(TINY, optimizer=optimizer, hparams=h, batch_size=16, seed=s, index=i, device="cuda",
                       data=gpu_data)
            assert g.device.startswith("cuda")
            assert_same_trial(g, want)
