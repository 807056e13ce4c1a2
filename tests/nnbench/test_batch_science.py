"""nnbench.batch_science: Shallue et al.'s published layout, read into a store and written back.

The directories are built here, in the layout and with the field names of the batch_science README
(study.json, trial_id/metadata.json, trial_id/measurements.csv)."""

import csv
import json

import pytest

import nqm
from nnbench.batch_science import (
    export_batch_science,
    find_studies,
    import_batch_science,
    read_study,
    steps_to_result,
)
from nnbench.cli import main
from nnbench.compare import compare
from nnbench.store import Measurement, Status, Store, TrialResult
from nnbench.study import run_sweep, summarize_store
from tests.nnbench.tiny import tiny_teacher

CONFIGS = {
    "learning_rate": {"type": "DOUBLE", "min_value": 1e-4, "max_value": 10.0, "scale": "LOG_SCALE"},
    "momentum": {"type": "DOUBLE", "min_value": 0.9, "max_value": 0.9999, "scale": "REVERSE_LOG_SCALE"},
    "learning_rate_decay_steps": {"type": "INTEGER", "min_value": 300, "max_value": 600, "scale": ""},
    "label_smoothing": {"type": "DISCRETE", "feasible_points": [0.0, 0.01, 0.1]},
}


def _params(lr):
    return {"learning_rate": lr, "momentum": 0.95, "learning_rate_decay_steps": 400, "label_smoothing": 0.01}


def write_study(root, batch_size, trials, *, dataset="mnist", model="simple_cnn_base",
                optimizer="nesterov_momentum", train_steps=600, configs=CONFIGS):
    """A study folder; trials: (trial_id, status, steps, lr, [(step, val/classification_error), ...])."""
    d = root / dataset / model / optimizer / str(batch_size)
    d.mkdir(parents=True)
    (d / "study.json").write_text(json.dumps({
        "batch_size": batch_size, "dataset": dataset, "early_stopping": False, "model": model,
        "optimizer": optimizer, "parameter_configs": configs, "train_steps": train_steps}))
    for tid, status, steps, lr, rows in trials:
        t = d / str(tid)
        t.mkdir()
        (t / "metadata.json").write_text(json.dumps({
            "_internal_study_name": "x", "_internal_trial_id": tid, "parameters": _params(lr),
            "status": status, "steps": steps, "trial_id": tid}))
        with (t / "measurements.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "train/cross_entropy_error", "val/classification_error"])
            for step, err in rows:
                w.writerow([step, 2.0 / (1 + step), "" if err is None else err])
    return d


def curve(first_below):
    """Error 0.5 until `first_below`, then 0.005 (below a 0.01 target)."""
    return [(s, 0.5 if s < first_below else 0.005) for s in range(0, 601, 100)]


def tree(root, points=((16, 400), (64, 200), (256, 100), (1024, 100)), optimizer="nesterov_momentum"):
    """A workload whose best COMPLETE trial at each B beats 0.01 first at the given step."""
    for b, first in points:
        write_study(root, b, optimizer=optimizer, trials=[
            (1, "COMPLETE", 600, 0.1, curve(first + 100)),
            (2, "COMPLETE", 600, 0.3, curve(first)),
            (3, "INCOMPLETE", 150, 1.0, curve(0)[:2]),         # beats the target at step 0: not COMPLETE
            (4, "INFEASIBLE", 200, 9.0, [(0, 0.9), (100, float("nan"))]),
            (5, "COMPLETE", 600, 0.01, curve(10_000)),         # never beats it
        ])


def test_their_rule_statuses_and_identities(tmp_path):
    tree(tmp_path)
    data = read_study(tmp_path / "mnist/simple_cnn_base/nesterov_momentum/64", target=0.01)
    d = data.definition
    assert (d["workload"], d["optimizer"], d["batch_size"], d["metric"], d["direction"], d["max_steps"]) == (
        "mnist_simple_cnn_base", "nesterov", 64, "val/classification_error", "min", 600)
    space = {p["name"]: p for p in d["search_space"]["params"]}
    assert set(space) == {"lr", "momentum", "learning_rate_decay_steps"}      # DISCRETE stays in study.json
    assert space["momentum"]["scale"] == "reverse_log" and space["lr"]["scale"] == "log"
    by_id = {t.index: t for t in data.trials}
    assert sorted(by_id) == [1, 2, 3, 4, 5]
    assert by_id[2].status is Status.COMPLETE and by_id[2].steps_to_result == 200
    assert by_id[1].steps_to_result == 300
    assert by_id[3].status is Status.INCOMPLETE and by_id[3].steps_to_result is None
    assert by_id[4].status is Status.INFEASIBLE and "INFEASIBLE" in by_id[4].error
    assert by_id[5].status is Status.INCOMPLETE and by_id[5].error is None and by_id[5].best_metric == 0.5
    assert by_id[2].hparams["lr"] == 0.3 and by_id[2].hparams["label_smoothing"] == 0.01
    assert by_id[4].final_metric is None and by_id[4].best_metric == 0.9
    names = {m.name for m in by_id[2].measurements}
    assert names == {"train/cross_entropy_error", "val/classification_error"}


def test_steps_to_result_is_strict_and_first():
    ms = [Measurement(s, "e", v) for s, v in [(0, 0.5), (100, 0.01), (200, 0.009), (300, 0.001)]]
    assert steps_to_result(ms, "e", 0.01, "min") == 200           # 0.01 does not beat 0.01
    assert steps_to_result(ms, "e", 0.01, "min", inclusive=True) == 100
    assert steps_to_result(ms, "e", 0.4, "max") == 0
    assert steps_to_result(ms, "other", 0.4, "max") is None


def test_import_any_subset_then_summaries(tmp_path):
    tree(tmp_path / "data")
    store = tmp_path / "s.sqlite"
    one = import_batch_science(tmp_path / "data/mnist/simple_cnn_base/nesterov_momentum/16", store, target=0.01)
    assert (one.studies, one.trials_written) == (1, 5)
    rest = import_batch_science(tmp_path / "data/mnist", store, target=0.01)    # the whole workload
    assert (rest.studies, rest.trials_written, rest.trials_skipped) == (4, 15, 5)
    again = import_batch_science(tmp_path / "data", store, target=0.01)
    assert again.trials_written == 0 and again.trials_skipped == 20
    got = {s.batch_size: s for s in summarize_store(store)}
    assert {b: s.steps_to_result for b, s in got.items()} == {16: 400, 64: 200, 256: 100, 1024: 100}
    assert got[64].counts == {"COMPLETE": 2, "INCOMPLETE": 2, "INFEASIBLE": 1}
    assert got[64].best_index == 2 and got[64].best_hparams["lr"] == 0.3


def _store_content(path):
    with Store(path, create=False) as store:
        out = {}
        for s in store.studies():
            trials = []
            for t in store.trials(s.id, with_measurements=True):
                ms = sorted((m.step, m.name, repr(m.value)) for m in t.measurements)
                trials.append((t.index, t.status, dict(t.hparams), t.steps_to_result, t.steps_run,
                               t.final_metric, t.best_metric, t.wall_time, t.device, t.seed, t.error, ms))
            out[s.key] = (s.definition, s.max_trials, trials)
        return out


def test_round_trip_of_imported_data(tmp_path):
    tree(tmp_path / "data")
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    import_batch_science(tmp_path / "data", a, target=0.01)
    report = export_batch_science(a, tmp_path / "out")
    assert (report.studies, report.trials) == (4, 20)
    import_batch_science(tmp_path / "out", b)                   # the target travels with the export
    assert _store_content(a) == _store_content(b)
    # the exported files keep their layout, statuses and field names
    meta = json.loads((tmp_path / "out/mnist/simple_cnn_base/nesterov_momentum/64/3/metadata.json").read_text())
    assert meta["status"] == "INCOMPLETE" and meta["trial_id"] == 3 and meta["steps"] == 150
    assert meta["parameters"]["learning_rate"] == 1.0 and meta["parameters"]["learning_rate_decay_steps"] == 400
    meta5 = json.loads((tmp_path / "out/mnist/simple_cnn_base/nesterov_momentum/64/5/metadata.json").read_text())
    assert meta5["status"] == "COMPLETE"
    study = json.loads((tmp_path / "out/mnist/simple_cnn_base/nesterov_momentum/64/study.json").read_text())
    assert study["parameter_configs"] == CONFIGS and study["train_steps"] == 600
    with (tmp_path / "out/mnist/simple_cnn_base/nesterov_momentum/64/2/measurements.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "step" and [r[0] for r in rows[1:]] == [str(s) for s in range(0, 601, 100)]


def test_round_trip_of_a_sweep(tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    run_sweep(tiny_teacher(max_steps=200), ["sgd"], [8, 32], 3, a, device="cpu", progress=False)
    export_batch_science(a, tmp_path / "out")
    study = json.loads((tmp_path / "out/teacher/fc/sgd/8/study.json").read_text())
    assert study["parameter_configs"]["learning_rate"]["scale"] == "LOG_SCALE"
    import_batch_science(tmp_path / "out", b)
    assert _store_content(a) == _store_content(b)                  # same study keys: the same studies
    assert [s.steps_to_result for s in summarize_store(a)] == [s.steps_to_result for s in summarize_store(b)]


def test_compare_reads_imported_studies_like_swept_ones(tmp_path):
    # SGD only: the NQM curve of a tuned-momentum family costs seconds, and the point is the reading
    pts = {"sgd": [(16, 800), (64, 300), (256, 200), (1024, 200)]}
    native = tmp_path / "native.sqlite"
    with Store(native) as store:
        for opt, ps in pts.items():
            for b, steps in ps:
                rec = store.ensure_study({
                    "workload": "mnist_simple_cnn_base", "optimizer": opt, "batch_size": b,
                    "metric": "val/classification_error", "target": 0.01, "direction": "min", "max_steps": 2000,
                    "seed": 0, "search_space": {"params": [], "fixed": {}}}, 1)
                store.write_trial(rec.id, TrialResult(
                    index=2, status=Status.COMPLETE, hparams=_params(0.3) | {"lr": 0.3}, steps_to_result=steps,
                    steps_run=2000, final_metric=0.005, best_metric=0.005, wall_time=0.0, device="x", seed=0))
    data = tmp_path / "data"
    for opt, ps in pts.items():
        for b, steps in ps:
            rows = [(s, 0.5 if s < steps else 0.005) for s in range(0, 2001, 100)]
            write_study(data, b, [(2, "COMPLETE", 2000, 0.3, rows)], optimizer=opt, train_steps=2000)
    imported = tmp_path / "imported.sqlite"
    import_batch_science(data, imported, target=0.01)
    small = nqm.NQM.paper(1000, bins=30)
    r_native = compare(native, out_dir=None, spectrum="paper", problem=small)
    r_imported = compare(imported, out_dir=None, spectrum="paper", problem=small)
    assert r_imported.points == r_native.points
    assert r_imported.rows == r_native.rows
    assert r_imported.metric == "val/classification_error" and r_imported.target == 0.01


@pytest.mark.parametrize("breakage, match", [
    (lambda d: (d / "2" / "metadata.json").unlink(), r"2/metadata\.json: missing"),
    (lambda d: (d / "2" / "measurements.csv").unlink(), r"2/measurements\.csv: missing"),
    (lambda d: (d / "study.json").write_text("{not json"), r"16/study\.json: not valid JSON"),
    (lambda d: (d / "2" / "measurements.csv").write_text("step,a\n0,x\n"),
     r"2/measurements\.csv: line 2, column 'a': 'x' is not a number"),
    (lambda d: (d / "2" / "measurements.csv").write_text("a,b\n0,1\n"), r"measurements\.csv: .*'step' column"),
    (lambda d: (d / "2" / "measurements.csv").write_text("step,a\n0\n"), r"measurements\.csv: line 2 has 1 fields"),
    (lambda d: (d / "2" / "metadata.json").write_text(json.dumps({"trial_id": 2, "status": "DONE", "steps": 1,
                                                                  "parameters": {}})), r"metadata\.json: status"),
    (lambda d: (d / "2" / "metadata.json").write_text(json.dumps({"trial_id": 7, "status": "COMPLETE", "steps": 1,
                                                                  "parameters": {}})), r"trial_id 7 differs"),
    (lambda d: (d / "2" / "metadata.json").write_text(json.dumps({"trial_id": 2, "status": "COMPLETE",
                                                                  "parameters": {}})), r"lacks the field 'steps'"),
    (lambda d: (d / "junk").mkdir(), r"junk: a trial folder's name must be its integer trial_id"),
])
def test_corrupt_or_partial_directories_name_the_file(tmp_path, breakage, match):
    d = write_study(tmp_path / "data", 16, [(2, "COMPLETE", 600, 0.3, curve(200))])
    breakage(d)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        import_batch_science(tmp_path / "data", tmp_path / "s.sqlite", target=0.01)


def test_missing_target_metric_and_empty_tree(tmp_path):
    write_study(tmp_path / "data", 16, [(2, "COMPLETE", 600, 0.3, curve(200))])
    with pytest.raises(ValueError, match=r"study\.json: .*pass --target"):
        import_batch_science(tmp_path / "data", tmp_path / "s.sqlite")
    with pytest.raises(ValueError, match=r"no trial measured 'val/accuracy'.*val/classification_error"):
        import_batch_science(tmp_path / "data", tmp_path / "s.sqlite", target=0.9, metric="val/accuracy")
    with pytest.raises(ValueError, match="--direction"):
        import_batch_science(tmp_path / "data", tmp_path / "s.sqlite", target=0.9, metric="val/score")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no study.json"):
        find_studies(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_studies(tmp_path / "nowhere")


def test_cli_import_status_compare_export(tmp_path, capsys):
    tree(tmp_path / "data", optimizer="sgd")
    store = str(tmp_path / "s.sqlite")
    assert main(["import-batch-science", str(tmp_path / "data"), "--target", "0.01", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "imported 4 studies" in out and "20 trials written" in out and "mnist_simple_cnn_base" in out
    assert main(["status", "--store", store]) == 0
    assert "mnist_simple_cnn_base" in capsys.readouterr().out
    assert main(["compare", "--store", store, "--spectrum", "paper", "--out", str(tmp_path / "figs"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["points"]["sgd"][1][:2] == [64.0, 200.0]
    assert main(["export", "--store", store, "--format", "batch-science", str(tmp_path / "out")]) == 0
    assert "wrote 4 studies (20 trials)" in capsys.readouterr().out
    assert main(["export", "--store", store, "--format", "batch-science", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["import-batch-science", str(tmp_path / "data"), "--store", store]) == 2
    err = capsys.readouterr().err
    assert "--target" in err and "Traceback" not in err
