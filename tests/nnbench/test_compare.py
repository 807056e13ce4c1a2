"""nnbench.compare / ``nnbench compare``: a store whose points ARE a scaled NQM must be predicted exactly;
table, JSON, figure and errors."""

import json

import numpy as np
import pytest

import nqm
from nnbench.cli import main
from nnbench.compare import compare, measured_points
from nnbench.predict import FAMILIES, nqm_curve
from nnbench.store import Status, Store, TrialResult

SMALL = nqm.NQM.paper(1000, bins=30)
BATCHES = [8, 32, 128, 512, 2048]
STEPS_SCALE, BATCH_SCALE = 0.5, 7.0
LR_SCALE = 3.0


def _space(names):
    return {"params": [{"name": n, "low": 1e-4, "high": 0.999 if n == "momentum" else 100.0,
                        "scale": "reverse_log" if n == "momentum" else "log"} for n in names], "fixed": {}}


def _write_store(path, workload="toy", optimizers=("sgd", "momentum"), target=0.5, incomplete=()):
    """Studies whose best trial has exactly the scaled NQM's steps and lr (one trial each)."""
    with Store(path) as store:
        for opt in optimizers:
            curve = nqm_curve(FAMILIES[opt], problem=SMALL)
            for b in BATCHES:
                names = ["lr", "momentum"] if opt == "momentum" else ["lr"]
                definition = {"workload": workload, "optimizer": opt, "batch_size": b, "metric": "accuracy",
                              "target": target, "direction": "max", "max_steps": 10**6, "seed": 0,
                              "search_space": _space(names)}
                rec = store.ensure_study(definition, 1)
                z = np.log([b / BATCH_SCALE])
                steps = int(round(STEPS_SCALE * np.exp(curve.log_steps(z))[0]))
                eff_lr = LR_SCALE * np.exp(curve.log_effective_lr(z))[0]
                hp = {"lr": eff_lr * 0.1, "momentum": 0.9} if opt == "momentum" else {"lr": eff_lr}
                done = (opt, b) not in incomplete
                store.write_trial(rec.id, TrialResult(
                    index=0, status=Status.COMPLETE if done else Status.INCOMPLETE, hparams=hp,
                    steps_to_result=steps if done else None, steps_run=steps, final_metric=0.9,
                    best_metric=0.9, wall_time=0.1, device="cpu", seed=0))


def test_compare_predicts_a_scaled_nqm_exactly(tmp_path):
    store = tmp_path / "s.sqlite"
    _write_store(store)
    r = compare(store, out_dir=tmp_path / "figs", spectrum="paper", problem=SMALL)
    assert r.scales.fitted_on == ("sgd",)
    assert r.scales.steps_scale == pytest.approx(STEPS_SCALE, rel=0.02)
    assert r.scales.batch_scale == pytest.approx(BATCH_SCALE, rel=0.03)
    # momentum was not fitted: its points are predicted from SGD's scales (rounding to whole steps only)
    meas = np.array([p[1] for p in r.points["momentum"]])
    np.testing.assert_allclose(r.predictions["momentum"].steps_at(BATCHES), meas, rtol=0.03)
    rows = {row.optimizer: row for row in r.rows}
    curve = nqm_curve(FAMILIES["momentum"], problem=SMALL)
    assert rows["momentum"].predicted_b_crit == pytest.approx(r.scales.batch_scale * curve.b_crit)
    assert rows["sgd"].lr_scale == pytest.approx(LR_SCALE, rel=0.03)
    assert rows["momentum"].lr_scale == pytest.approx(LR_SCALE, rel=0.03)
    # the McCandlish fit to the points is the measured B_crit
    fit = nqm.critical_batch(batch_sizes=BATCHES, steps=[p[1] for p in r.points["sgd"]])
    assert rows["sgd"].measured_b_crit == pytest.approx(fit.value)
    assert r.ordering_small[2] == r.ordering_small[1] and r.ordering_large[2] == r.ordering_large[1]
    assert r.ordering_large[1][0] == "momentum"          # momentum helps at large B (claim 2)
    png = tmp_path / "figs" / "compare_toy.png"
    assert r.figure == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(r.to_dict())
    text = r.table()
    assert "B_crit meas" in text and "ordering at the largest" in text and "(same)" in text


def test_missing_points_and_selection(tmp_path):
    store = tmp_path / "s.sqlite"
    _write_store(store, incomplete={("sgd", 8), ("sgd", 32), ("sgd", 128)})
    _write_store(store, workload="other", optimizers=("sgd",))
    with pytest.raises(ValueError, match="several"):
        measured_points(store)
    w, metric, target, points, missing = measured_points(store, workload="toy")
    assert (w, metric, target) == ("toy", "accuracy", 0.5)
    assert sorted(missing) == ["sgd B=128", "sgd B=32", "sgd B=8"] and len(points["sgd"]) == 2
    with pytest.raises(ValueError, match="no studies of 'nope'"):
        measured_points(store, workload="nope")
    with pytest.raises(ValueError, match="target"):
        measured_points(store, workload="toy", target=0.7)
    # only 2 SGD points: the scales are still fitted, an unknown fit_on is an error
    r = compare(store, workload="toy", out_dir=None, spectrum="paper", problem=SMALL)
    assert r.figure is None and {row.optimizer: row.measured_b_crit for row in r.rows}["sgd"] is None
    with pytest.raises(ValueError, match="fit_on"):
        compare(store, workload="toy", out_dir=None, spectrum="paper", problem=SMALL, fit_on=["adam"])


def test_cli_compare(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    _write_store(store, optimizers=("sgd",))
    assert main(["compare", "--spectrum", "paper", "--store", str(store), "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["workload"] == "toy" and out["rows"][0]["optimizer"] == "sgd"
    assert (tmp_path / "compare_toy.png").exists()
    assert main(["compare", "--store", str(tmp_path / "missing.sqlite")]) == 2
    assert "no such file" in capsys.readouterr().err
