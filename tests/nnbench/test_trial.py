"""nnbench.trial (and nnbench.device): one trial's protocol, statuses, measurements, instruments."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from nnbench.device import resolve_device
from nnbench.store import Status
from nnbench.trial import evaluate, make_loss, run, trial_seed
from nnbench.workloads import build_workload_data
from tests.nnbench.tiny import tiny_teacher

TINY = tiny_teacher(target=0.8, max_steps=400)


@pytest.fixture(scope="module")
def data():
    return build_workload_data(TINY, device="cpu")


def _metric_series(result, name):
    return [(m.step, m.value) for m in result.measurements if m.name == name]


# -- device ---------------------------------------------------------------------------------------
def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu0", 3, ""):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:1")


# -- evaluation against an independent computation -----------------------------------------------
def test_evaluate_classification_and_lm_by_hand():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3))
    x = rng.normal(size=(37, 5))
    y = rng.integers(0, 3, size=37)
    model = nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w.T))
    logits = x @ w
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(37), y].mean()
    acc = (logits.argmax(axis=1) == y).mean()
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y)
    got = evaluate(model, xt, yt, task="classification", metric="accuracy", batch_size=8)  # ragged batches
    assert got["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert got["loss"] == pytest.approx(ce, rel=1e-9)
    got = evaluate(model, xt, yt, task="classification", metric="cross_entropy", batch_size=100)
    assert got["cross_entropy"] == pytest.approx(ce, rel=1e-9)
    # language model: (N, T, V) logits, per-token averages
    lm = nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        lm.weight.copy_(torch.tensor(w.T))
    x3, y3 = xt.reshape(37, 1, 5).repeat(1, 2, 1), yt.reshape(37, 1).repeat(1, 2)
    got = evaluate(lm, x3, y3, task="language_model", metric="cross_entropy", batch_size=10)
    assert got["cross_entropy"] == pytest.approx(ce, rel=1e-9)


def test_evaluate_regression_and_mode_restored():
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))
    x, y = torch.randn(20, 4), torch.randn(20, 2)
    model.train()
    got = evaluate(model, x, y, task="regression", metric="mse", batch_size=7)
    with torch.no_grad():
        expected = ((model[0](x) - y) ** 2).mean().item()  # dropout is off in eval mode
    assert got["mse"] == pytest.approx(expected, rel=1e-6)
    assert model.training
    with pytest.raises(ValueError, match="accuracy"):
        evaluate(model, x, y, task="regression", metric="accuracy")


def test_make_loss_label_smoothing():
    w = TINY.replace(label_smoothing=0.1)
    out, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    logp = torch.log_softmax(out, dim=1)
    expected = -(0.9 * logp[torch.arange(6), y] + 0.1 * logp.mean(dim=1)).mean()
    assert make_loss(w, "classification")(out, y).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="regression"):
        make_loss(TINY, "regression")


# -- trial statuses --------------------------------------------------------------------------------
def test_complete_trial_protocol(data):
    r = run(TINY, optimizer="sgd", hparams={"lr": 0.3}, batch_size=32, seed=1, data=data, device="cpu")
    assert r.status is Status.COMPLETE and r.error is None
    acc = _metric_series(r, "validation_accuracy")
    # evaluated at step 0 and every eval_every steps; steps to result = first evaluation at the target
    assert [s for s, _ in acc] == list(range(0, r.steps_to_result + 1, TINY.eval_every))
    assert all(v < TINY.target for _, v in acc[:-1]) and acc[-1][1] >= TINY.target
    assert r.steps_run == r.steps_to_result == acc[-1][0]
    assert r.final_metric == acc[-1][1] == r.best_metric
    # the other measurements at every evaluation after step 0
    for name in ("train_loss", "validation_loss", "lr", "train_time", "wall_time"):
        steps = [s for s, _ in _metric_series(r, name)]
        assert steps[-1] == r.steps_to_result, name
    assert all(v == 0.3 for _, v in _metric_series(r, "lr"))
    times = [v for _, v in _metric_series(r, "train_time")]
    assert times == sorted(times) and times[-1] <= r.wall_time
    assert r.device == "cpu" and r.hparams == {"lr": 0.3}


def test_incomplete_trial(data):
    w = TINY.replace(target=1.01, max_steps=55)  # accuracy can never reach 1.01
    r = run(w, optimizer="momentum", hparams={"lr": 0.05, "momentum": 0.9}, batch_size=16, seed=2, data=data,
            device="cpu")
    assert r.status is Status.INCOMPLETE and r.steps_to_result is None and r.steps_run == 55
    steps = [s for s, _ in _metric_series(r, "validation_accuracy")]
    assert steps == [0, 10, 20, 30, 40, 50, 55]  # a final evaluation at the end of the budget
    assert r.best_metric == max(v for _, v in _metric_series(r, "validation_accuracy"))


def test_divergence_is_infeasible_not_fatal(data):
    # lr = 3 on batches of 8: the loss climbs to ~100x its initial value within 20 steps.
    r = run(TINY, optimizer="sgd", hparams={"lr": 3.0}, batch_size=8, seed=1, data=data, device="cpu")
    assert r.status is Status.INFEASIBLE and r.steps_to_result is None
    assert "exploded" in r.error and r.steps_run <= 40
    # an absurd lr: non-finite loss, caught at the first check
    r = run(TINY, optimizer="sgd", hparams={"lr": 1e30}, batch_size=8, seed=1, data=data, device="cpu",
            check_every=1)
    assert r.status is Status.INFEASIBLE and "non-finite" in r.error and r.steps_run <= 3
    assert not math.isfinite(_metric_series(r, "train_loss")[-1][1])


def test_same_seed_same_trial_and_global_rng_untouched(data):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = run(TINY, optimizer="adam", hparams={"lr": 0.01}, batch_size=16, seed=5, data=data, device="cpu")
    after = torch.rand(3)
    assert torch.equal(before, after)  # the trial ran in a private RNG scope
    b = run(TINY, optimizer="adam", hparams={"lr": 0.01}, batch_size=16, seed=5, data=data, device="cpu")
    c = run(TINY, optimizer="adam", hparams={"lr": 0.01}, batch_size=16, seed=6, data=data, device="cpu")
    values = lambda r: [(m.step, m.name, m.value) for m in r.measurements if "time" not in m.name]  # noqa: E731
    assert values(a) == values(b)
    assert values(a) != values(c)
    assert trial_seed(0, 1) == trial_seed(0, 1) != trial_seed(0, 2) != trial_seed(1, 2)


def test_instruments_hook(data):
    calls = []

    def grad_norm(model, loss_fn, batch):
        x, y = batch
        calls.append(x.shape[0])
        model.zero_grad()
        loss_fn(model(x), y).backward()
        norm = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
        model.zero_grad()
        return {"grad_norm": norm.item(), "batch": x.shape[0]}

    w = TINY.replace(target=1.01, max_steps=30)
    r = run(w, optimizer="sgd", hparams={"lr": 0.1}, batch_size=16, seed=3, data=data, device="cpu",
            instruments=[grad_norm], instrument_every=10)
    assert calls == [16, 16, 16]
    assert [s for s, _ in _metric_series(r, "grad_norm")] == [0, 10, 20]
    assert all(v > 0 for _, v in _metric_series(r, "grad_norm"))
    # train_loss at an evaluation = mean of the losses of the steps since the previous one: checked
    # against an instrument that recomputes each step's loss (same parameters, same batch)
    def step_loss(model, loss_fn, batch):
        with torch.no_grad():
            return {"step_loss": loss_fn(model(batch[0]), batch[1]).item()}

    r1 = run(w, optimizer="sgd", hparams={"lr": 0.1}, batch_size=16, seed=3, data=data, device="cpu",
             instruments=[step_loss], instrument_every=1, check_every=7)
    per_step = [v for _, v in _metric_series(r1, "step_loss")]
    assert len(per_step) == 30
    train = dict(_metric_series(r1, "train_loss"))
    assert train[10] == pytest.approx(np.mean(per_step[0:10]), rel=1e-5)
    assert train[30] == pytest.approx(np.mean(per_step[20:30]), rel=1e-5)
    # measuring does not change training: same trial without the instrument
    plain = run(w, optimizer="sgd", hparams={"lr": 0.1}, batch_size=16, seed=3, data=data, device="cpu")
    assert _metric_series(plain, "validation_accuracy") == _metric_series(r, "validation_accuracy")


def test_linear_decay_schedule_applied(data):
    w = TINY.replace(schedule="linear_decay", target=1.01, max_steps=40)
    hp = {"lr": 0.2, "decay_steps": 20.4, "decay_factor": 0.1}  # decay_steps rounded to 20
    r = run(w, optimizer="sgd", hparams=hp, batch_size=16, seed=0, data=data, device="cpu")
    lrs = dict(_metric_series(r, "lr"))
    # the lr of the last step before each evaluation: schedule(step - 1)
    assert lrs[10] == pytest.approx(0.2 * (1 - 0.9 * 9 / 20))
    assert lrs[20] == pytest.approx(0.2 * (1 - 0.9 * 19 / 20))
    assert lrs[40] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="decay"):
        run(w, optimizer="sgd", hparams={"lr": 0.2}, batch_size=16, seed=0, data=data, device="cpu")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hparams={"lr": 0.1, "momentum": 0.9}), "not used by optimizer 'sgd'"),
        (dict(hparams={"momentum": 0.9}), "lr"),
        (dict(batch_size=0), "batch_size"),
        (dict(instruments=[lambda model, loss_fn, batch: {}]), "instrument_every"),
        (dict(device="tpu"), "device"),
        (dict(divergence_factor=0.5), "divergence_factor"),
        (dict(hparams={"lr": -1.0}), "lr"),
        (dict(optimizer="adamw"), "unknown optimizer"),
    ],
)
def test_bad_input(data, kwargs, match):
    args = dict(optimizer="sgd", hparams={"lr": 0.1}, batch_size=8, seed=0, data=data, device="cpu")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run(TINY, **args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trial_on_gpu():
    gpu_data = build_workload_data(TINY, device="cuda")
    r = run(TINY, optimizer="sgd", hparams={"lr": 0.3}, batch_size=32, seed=1, data=gpu_data, device="cuda")
    assert r.status is Status.COMPLETE and r.device.startswith("cuda")
    # a CPU-built data source is moved to the trial's device
    cpu_data = build_workload_data(TINY, device="cpu")
    r2 = run(TINY, optimizer="adam", hparams={"lr": 0.01}, batch_size=32, seed=1, data=cpu_data, device="cuda")
    assert r2.status in (Status.COMPLETE, Status.INCOMPLETE) and r2.device.startswith("cuda")


@pytest.mark.parametrize("rel", [0.01, 0.03, 0.1, 0.5])
def test_geometric_grid_relative_granularity(rel):
    from nnbench.trial import GEOMETRIC_FROM, is_eval_step

    n = 200_000
    w = tiny_teacher(eval_grid="geometric", eval_rel_step=rel, max_steps=n)
    steps = [s for s in range(n + 1) if is_eval_step(w, s)]
    assert steps[: GEOMETRIC_FROM + 1] == list(range(GEOMETRIC_FROM + 1)) and steps[-1] == n
    for a, b in zip(steps[GEOMETRIC_FROM:-2], steps[GEOMETRIC_FROM + 1 : -1], strict=True):
        # a crossing in (a, b] is reported within 1 + rel; and no finer than the geometric ratio
        assert a * (1 + rel) <= b <= a * (1 + rel) + 1, (a, b)
    assert len(steps) <= GEOMETRIC_FROM + 2 + math.log(n / GEOMETRIC_FROM) / math.log1p(rel)


def test_geometric_grid_steps_to_result_within_relative_step():
    # evaluation changes nothing in training: the same trial on every step and on a 10% grid
    every = run(tiny_teacher(eval_every=1), optimizer="sgd", hparams={"lr": 0.3}, batch_size=8, seed=1,
                device="cpu")
    geo = run(tiny_teacher(eval_grid="geometric", eval_rel_step=0.1), optimizer="sgd", hparams={"lr": 0.3},
              batch_size=8, seed=1, device="cpu")
    assert every.status is geo.status is Status.COMPLETE and every.steps_to_result > 32
    assert every.steps_to_result <= geo.steps_to_result < 1.1 * every.steps_to_result
    evals = sorted({m.step for m in geo.measurements if m.name == "train_time"})
    assert evals[:33] == list(range(33)) and evals[-1] == geo.steps_to_result
