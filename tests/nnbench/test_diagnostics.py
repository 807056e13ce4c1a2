"""nnbench.diagnostics: lambda_max along an SGD run against an independent eigenvalue (linear least
squares, where the Hessian is fixed and known), the configuration taken from a store, the verdict."""

import json
import math

import numpy as np
import pytest
import torch

from nnbench.cli import main
from nnbench.diagnostics import (
    NQM_STABILITY_LIMIT,
    diagnose_store,
    sharpness_along_sgd,
    stored_sgd_run,
)
from nnbench.predict import FAMILIES, CurveBank
from nnbench.search import SearchSpace
from nnbench.store import Status, Store, TrialResult
from nnbench.study import StudySpec
from nnbench.workloads import build_workload_data, get_workload

LINEAR = get_workload("linear_ls")


def probe_lambda_max(workload, size, seed):
    """Top eigenvalue of the mse Hessian 2 X^T X / (n * outputs) of the probe batch (numpy)."""
    data = build_workload_data(workload, device="cpu")
    x, _ = next(data.train_stream(size, seed + 1))
    x = x.double().numpy()
    return float(np.linalg.eigvalsh(2 * x.T @ x / (x.shape[0] * data.num_outputs))[-1])


def test_sharpness_of_a_fixed_quadratic_is_its_eigenvalue():
    torch.manual_seed(0)
    d = sharpness_along_sgd(LINEAR, hparams={"lr": 4.0}, batch_size=8, steps=20, every=10, probe_size=64,
                            lanczos_steps=30)
    want = probe_lambda_max(LINEAR, 64, 0)
    assert [c.step for c in d.checkpoints] == [0, 10, 20] and d.steps_run <= 21
    for c in d.checkpoints:     # the Hessian of a quadratic does not move along the run
        assert c.lambda_max == pytest.approx(want, rel=1e-6) and c.lr == 4.0
        assert c.lr_lambda == pytest.approx(4.0 * want, rel=1e-6)
    assert (d.beyond_limit == ()) == (4.0 * want <= NQM_STABILITY_LIMIT)
    assert "below" in d.table() and json.loads(json.dumps(d.to_dict()))["checkpoints"][0]["step"] == 0
    high = sharpness_along_sgd(LINEAR, hparams={"lr": 3.0 / want}, batch_size=8, steps=1, every=1, probe_size=64,
                               lanczos_steps=30)
    assert high.beyond_limit[0] == 0 and "exceeds the NQM's stability limit" in high.verdict()
    with pytest.raises(ValueError, match="every must be"):
        sharpness_along_sgd(LINEAR, hparams={"lr": 1.0}, batch_size=8, every=0)
    with pytest.raises(ValueError, match="lr"):
        sharpness_along_sgd(LINEAR, hparams={}, batch_size=8)


def write_sgd_store(path, workload, batches=(4, 16, 64), steps=lambda b: 100 // b + 1):
    with Store(path) as store:
        for b in batches:
            space = SearchSpace((), {"lr": 0.5 * b ** 0.5})
            rec = store.ensure_study(StudySpec(workload, "sgd", b, space, 1).definition(), 1)
            store.write_trial(rec.id, TrialResult(
                index=0, status=Status.COMPLETE, hparams={"lr": 0.5 * b ** 0.5}, steps_to_result=steps(b),
                steps_run=steps(b), final_metric=0.01, best_metric=0.01, wall_time=0.1, device="cpu", seed=0))


def test_stored_configuration_and_cli(tmp_path, capsys):
    quick = LINEAR.quick()
    store = tmp_path / "s.sqlite"
    write_sgd_store(store, quick)
    w, b, hp = stored_sgd_run(store)
    assert w.definition() == quick.definition() and (b, hp) == (16, {"lr": 2.0})
    assert stored_sgd_run(store, batch_size=50)[1:] == (64, {"lr": 4.0})
    d = diagnose_store(store, batch_size=3, steps=2, every=2, probe_size=32)
    assert d.batch_size == 4 and [c.step for c in d.checkpoints] == [0, 2]
    assert all(math.isfinite(c.lambda_max) for c in d.checkpoints)


def test_cli_compare_diagnose(tmp_path, capsys):
    # SGD points on the NQM curve of d = 64 at batch scale 4: the fit succeeds, B_crit ~ 10^3
    curve = CurveBank(target=0.01, bins=24).curve(FAMILIES["sgd"], 64)
    store = tmp_path / "s.sqlite"
    batches = [2**e for e in range(3, 15)]
    write_sgd_store(store, LINEAR.quick(), batches,
                    steps=lambda b: max(1, round(float(np.exp(curve.log_steps(np.log([b / 4.0]))[0])))))
    argv = ["compare", "--store", str(store), "--out", str(tmp_path), "--d-range", "32", "128", "--bootstrap", "3",
            "--diagnose", "--diagnose-steps", "4"]
    assert main(argv + ["--json"]) == 0
    diag = json.loads(capsys.readouterr().out)["sharpness_diagnostic"]
    assert [c["step"] for c in diag["checkpoints"]] == [0, 1, 2, 3, 4] and diag["workload"] == "linear_ls"
    assert diag["batch_size"] in batches and diag["hparams"] == {"lr": 0.5 * diag["batch_size"] ** 0.5}
    assert main(argv) == 0
    assert "lr*lambda_max" in capsys.readouterr().out
    assert main(argv + ["--spectrum", "paper"]) == 2
    assert "--diagnose applies to --spectrum fit" in capsys.readouterr().err
