"""nnbench.workloads: the registry, search spaces, variants, and that every embedded workload runs."""

import pytest
import torch

from nnbench.data import DATASETS, dataset_kwargs
from nnbench.models import MODELS, model_kwargs
from nnbench.optim import OPTIMIZERS, optimizer_hparams
from nnbench.search import QuasiRandomSearch
from nnbench.store import Status
from nnbench.trial import run
from nnbench.workloads import WORKLOADS, Workload, build_workload_data, get_workload


def test_registry_is_consistent_with_data_models_optimizers():
    names = list(WORKLOADS)
    assert names[:3] == ["teacher_fc", "synthetic_images_cnn", "markov_lm_transformer"]  # embedded first
    for name in ("mnist_simple_cnn", "fmnist_simple_cnn", "cifar10_resnet8", "cifar10_resnet32",
                 "cifar10_vgg11", "text_lm_transformer"):
        assert WORKLOADS[name].needs_data_dir
    for w in WORKLOADS.values():
        assert w.dataset in DATASETS and w.model in MODELS
        assert set(w.dataset_kwargs) <= set(dataset_kwargs(w.dataset)), w.name
        assert set(w.model_kwargs) <= set(model_kwargs(w.model)), w.name
        assert w.quick().name == w.name
        for opt in OPTIMIZERS:
            space = w.search_space(opt)
            allowed = set(optimizer_hparams(opt)) | {"decay_steps", "decay_factor"}
            assert set(space.names) <= allowed, (w.name, opt)
            assert "lr" in space.names
            assert ("decay_steps" in space.names) == (w.schedule == "linear_decay")


def test_search_space_scales():
    w = get_workload("teacher_fc")
    by_name = {p.name: p for p in w.search_space("kfac_momentum").params}
    assert by_name["lr"].scale == "log"
    assert by_name["momentum"].scale == "reverse_log" and by_name["cov_ema_decay"].scale == "reverse_log"
    assert by_name["damping"].scale == "log" and by_name["kl_clip"].scale == "log"
    adam = {p.name: p for p in w.search_space("adam").params}
    assert adam["beta1"].scale == adam["beta2"].scale == "reverse_log" and adam["eps"].scale == "log"
    assert "beta1" not in w.search_space("adam_nomomentum").names
    # the Transformer's K-FAC keeps momentum and the EMA decay fixed (Zhang et al. E.4)
    lm = get_workload("markov_lm_transformer").search_space("kfac_momentum")
    assert lm.fixed == {"momentum": 0.9, "cov_ema_decay": 0.95}
    assert {p.name for p in lm.params} == {"lr", "damping", "kl_clip"}
    # linear decay: decay_steps relative to the budget
    r32 = get_workload("cifar10_resnet32")
    steps = {p.name: p for p in r32.search_space("sgd").params}["decay_steps"]
    assert steps.high == r32.max_steps and steps.low == pytest.approx(0.1 * r32.max_steps)
    with pytest.raises(ValueError, match="unknown optimizer"):
        w.search_space("lamb")


def test_quick_and_replace():
    w = get_workload("teacher_fc")
    q = w.quick()
    assert q.max_steps < w.max_steps and q.dataset_kwargs["num_eval"] < w.dataset_kwargs["num_eval"]
    assert q.dataset_kwargs["input_dim"] == w.dataset_kwargs["input_dim"]  # merged, not replaced
    assert q.definition() != w.definition()
    assert w.replace(target=0.5).definition()["target"] == 0.5
    with pytest.raises(ValueError, match="unknown field"):
        w.replace(colour="red")
    with pytest.raises(ValueError, match="max_steps"):
        w.replace(max_steps=0)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(loss="hinge"), "loss"),
        (dict(metric="f1"), "metric"),
        (dict(target=float("inf")), "target"),
        (dict(eval_every=0), "eval_every"),
        (dict(direction="up"), "direction"),
        (dict(schedule="cosine"), "schedule"),
        (dict(label_smoothing=1.0), "label_smoothing"),
        (dict(lr_ranges={"sgd": (1.0, 0.1), "adam": (1e-4, 1e-2), "kfac": (1e-3, 1.0)}), "low < high"),
    ],
)
def test_bad_workloads(changes, match):
    base = dict(name="x", dataset="teacher", model="fc", metric="accuracy", target=0.5, eval_every=1, max_steps=1)
    with pytest.raises(ValueError, match=match):
        Workload(**{**base, **changes})


def test_unknown_and_missing_data():
    with pytest.raises(ValueError, match="known workloads"):
        get_workload("imagenet_resnet50")
    with pytest.raises(ValueError, match="data_dir"):
        build_workload_data(get_workload("mnist_simple_cnn"))


@pytest.mark.parametrize("name", ["teacher_fc", "synthetic_images_cnn", "markov_lm_transformer", "digits_mlp",
                                  "digits_cnn", "digits_mlp_train"])
def test_embedded_workloads_run(name):
    # A few steps of each embedded workload with each optimizer family: shapes, losses, metrics fit.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        w = get_workload(name).quick().replace(max_steps=4, eval_every=2)
        if not name.startswith("digits"):  # digits is small already (400 validation images)
            w = w.replace(**({"dataset_kwargs": {"num_eval": 64}} if name == "teacher_fc" else
                             {"dataset_kwargs": {"num_validation": 64}}))
        data = build_workload_data(w, device="cpu")
        for opt in ("sgd", "adam", "kfac"):
            hp = QuasiRandomSearch(w.search_space(opt), seed=0).point(0)
            r = run(w, optimizer=opt, hparams=hp, batch_size=8, seed=0, data=data, device="cpu")
            assert r.status in (Status.COMPLETE, Status.INCOMPLETE, Status.INFEASIBLE)
            assert r.final_metric is not None or r.status is Status.INFEASIBLE
    finally:
        torch.set_num_threads(before)


def test_eval_grid_in_definition_only_when_not_default():
    w = get_workload("teacher_fc")
    assert "eval_grid" not in w.definition()  # stored studies keep their identity
    g = w.replace(eval_grid="geometric")
    assert g.definition() == {**w.definition(), "eval_grid": "geometric", "eval_rel_step": 0.03}
    with pytest.raises(ValueError, match="eval_grid"):
        w.replace(eval_grid="log")
    with pytest.raises(ValueError, match="eval_rel_step"):
        w.replace(eval_grid="geometric", eval_rel_step=0.0)


def test_digits_mlp_train_targets_the_training_loss_of_digits_mlp():
    # the same data, net and budget as digits_mlp; only the target differs: training cross entropy
    train, mlp = get_workload("digits_mlp_train"), get_workload("digits_mlp")
    assert (train.eval_split, train.metric, train.direction) == ("train", "cross_entropy", "min")
    changed = {k for k, v in train.definition().items() if mlp.definition()[k] != v}
    assert changed == {"name", "eval_split", "metric", "target", "direction"}
    assert train.quick().max_steps == mlp.quick().max_steps
