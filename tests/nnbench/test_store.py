"""nnbench.store: the SQLite file of studies, trials and measurements."""

import csv
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nnbench.store import (
    Measurement,
    Status,
    Store,
    StudyBusy,
    TrialFailure,
    TrialResult,
    study_key,
    study_leases,
)


def _definition(**over):
    d = dict(
        workload="toy",
        optimizer="sgd",
        batch_size=16,
        metric="accuracy",
        target=0.9,
        direction="max",
        max_steps=100,
        seed=0,
        search_space={"params": [{"name": "lr", "low": 0.01, "high": 1.0, "scale": "log"}], "fixed": {}},
    )
    d.update(over)
    return d


def _trial(index, status=Status.COMPLETE, steps=40, **over):
    d = dict(
        index=index,
        status=status,
        hparams={"lr": 0.1 * (index + 1)},
        steps_to_result=steps if status is Status.COMPLETE else None,
        steps_run=steps if status is Status.COMPLETE else 100,
        final_metric=0.93,
        best_metric=0.95,
        wall_time=1.5,
        device="cpu",
        seed=1000 + index,
        measurements=(
            Measurement(0, "validation_accuracy", 0.1),
            Measurement(20, "train_loss", 0.7),
            Measurement(20, "validation_accuracy", 0.93),
        ),
    )
    d.update(over)
    return TrialResult(**d)


def test_wal_foreign_keys_and_schema(tmp_path):
    path = tmp_path / "sub" / "s.sqlite"
    with Store(path) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    # independent reader: the three tables exist under Shallue et al.'s names
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert {"studies", "trials", "measurements"} <= tables


def test_same_definition_same_study_and_extension(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        a = store.ensure_study(_definition(), max_trials=8)
        b = store.ensure_study(_definition(), max_trials=16)  # extending keeps the study
        c = store.ensure_study(_definition(batch_size=32), max_trials=8)
        assert a.id == b.id != c.id
        assert store.study(a.id).max_trials == 16
        assert store.ensure_study(_definition(), max_trials=4).max_trials == 16  # never shrinks
        assert a.key == study_key(_definition())
        assert a.search_space == _definition()["search_space"]
        assert [s.batch_size for s in store.studies()] == [16, 32]


def test_trial_round_trip_and_reopen(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        sid = store.ensure_study(_definition(), max_trials=4).id
        written = [
            _trial(0),
            _trial(1, Status.INCOMPLETE),
            _trial(
                2,
                Status.INFEASIBLE,
                final_metric=None,
                best_metric=None,
                error="non-finite training loss at step 7",
                measurements=(Measurement(7, "train_loss", math.nan), Measurement(7, "lr", 3.0)),
            ),
        ]
        for t in written:
            store.write_trial(sid, t)
    with Store(path, create=False) as store:  # a new connection reads everything back
        assert store.finished_indices(sid) == {0, 1, 2}
        back = store.trials(sid, with_measurements=True)
        for w, b in zip(written, back, strict=True):
            assert b.index == w.index and b.status is w.status and b.hparams == pytest.approx(w.hparams)
            assert b.steps_to_result == w.steps_to_result and b.error == w.error and b.seed == w.seed
            assert b.final_metric == w.final_metric and b.wall_time == w.wall_time
            assert len(b.measurements) == len(w.measurements)
            for mb, mw in zip(b.measurements, w.measurements, strict=True):
                assert (mb.step, mb.name) == (mw.step, mw.name)
                assert mb.value == mw.value or (math.isnan(mb.value) and math.isnan(mw.value))


def test_trial_is_atomic(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        sid = store.ensure_study(_definition(), max_trials=4).id
        store.write_trial(sid, _trial(0))
        with pytest.raises(ValueError, match="already stored"):
            store.write_trial(sid, _trial(0, steps=10))
        # a measurement that cannot be written rolls the whole trial back
        bad = _trial(1, measurements=(Measurement(5, None, 1.0),))
        with pytest.raises(ValueError, match="cannot write trial 1"):
            store.write_trial(sid, bad)
        assert store.finished_indices(sid) == {0}
        assert store.trials(sid)[0].steps_to_result == 40
        n = store._db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
        assert n == 3


def test_export_csv(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        s1 = store.ensure_study(_definition(), max_trials=2).id
        s2 = store.ensure_study(_definition(optimizer="momentum", search_space={
            "params": [{"name": "lr", "low": 0.01, "high": 1.0, "scale": "log"},
                       {"name": "momentum", "low": 0.5, "high": 0.99, "scale": "reverse_log"}],
            "fixed": {}}), max_trials=1).id  # fmt: skip
        store.write_trial(s1, _trial(0))
        store.write_trial(s1, _trial(1, Status.INCOMPLETE))
        store.write_trial(s2, _trial(0, hparams={"lr": 0.2, "momentum": 0.9}))
        n = store.export_csv(tmp_path / "out" / "t.csv", measurements=tmp_path / "m.csv")
    assert n == 3
    with open(tmp_path / "out" / "t.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["COMPLETE", "COMPLETE", "INCOMPLETE"]  # momentum < sgd
    assert rows[0]["optimizer"] == "momentum" and float(rows[0]["hp_momentum"]) == 0.9
    assert rows[1]["hp_momentum"] == "" and rows[1]["steps_to_result"] == "40"
    assert rows[2]["steps_to_result"] == ""
    with open(tmp_path / "m.csv") as f:
        mrows = list(csv.DictReader(f))
    assert len(mrows) == 9 and {r["name"] for r in mrows} == {"validation_accuracy", "train_loss"}


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        Store(tmp_path / "missing.sqlite", create=False)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(ValueError, match="not a readable SQLite file"):
        Store(junk)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE people (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="not an nnbench store"):
        Store(other)
    with pytest.raises(ValueError, match="directory"):
        Store(tmp_path)


def test_bad_definitions(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        with pytest.raises(ValueError, match="lacks"):
            store.ensure_study({"workload": "toy"}, max_trials=1)
        with pytest.raises(ValueError, match="max_trials"):
            store.ensure_study(dict(_definition(), max_trials=3), max_trials=1)
        with pytest.raises(ValueError, match="max_trials"):
            store.ensure_study(_definition(), max_trials=-1)
        with pytest.raises(ValueError, match="finite"):
            store.ensure_study(_definition(target=float("nan")), max_trials=1)
        with pytest.raises(ValueError, match="no study"):
            store.study(99)


# Holds the leases of the definitions in argv[2] (JSON) on the store argv[1] until killed.
_HOLDER = """
import json, sys, time
from nnbench.store import study_leases
with study_leases(sys.argv[1], json.loads(sys.argv[2])):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_leases(store, definitions):
    """A subprocess holding the leases of ``definitions`` (returned once it holds them)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(store), json.dumps(definitions)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline() == "held\n"
    return proc


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX flock and SIGKILL")
def test_second_writer_refused_and_killed_holder_released(tmp_path):
    store = tmp_path / "s.sqlite"
    holder = hold_leases(store, [_definition(batch_size=64)])
    try:
        with study_leases(store, [_definition(batch_size=16)]):  # another study: no conflict
            pass
        with pytest.raises(StudyBusy) as e, study_leases(store, [_definition(), _definition(batch_size=64)]):
            pass
        assert f"toy/sgd/B=64 in store {str(store)!r}" in str(e.value)
        assert f"pid {holder.pid} on host" in str(e.value)
        # the lease taken before the refusal (B=16) was released with it
        with study_leases(store, [_definition()]):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder: the OS drops its lock
        holder.wait(timeout=30)
    with study_leases(store, [_definition(batch_size=64)]):
        assert (tmp_path / "s.sqlite.leases").is_dir()
    assert not (tmp_path / "s.sqlite.leases").exists()  # released leases leave nothing behind
    assert not store.exists()


def test_find_study_writes_nothing(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        assert store.find_study(_definition()) is None and store.studies() == []
        rec = store.ensure_study(_definition(), 3)
        assert store.find_study(_definition()) == rec


def test_failures_are_logged_apart_and_leave_the_trial_unfinished(tmp_path):
    path = tmp_path / "f.sqlite"
    with Store(path) as store:
        sid = store.ensure_study(_definition(), max_trials=3).id
        store.write_failure(sid, TrialFailure(1, "RuntimeError: boom"))
        assert store.finished_indices(sid) == set()  # a failure is not a finished trial
        store.write_failure(sid, TrialFailure(1, "WorkerCrashedError: lost"))
        store.write_trial(sid, _trial(1))  # a later attempt finishes it
        assert store.finished_indices(sid) == {1}
        assert store.failures(sid) == [TrialFailure(1, "RuntimeError: boom"), TrialFailure(1, "WorkerCrashedError: lost")]
        with pytest.raises(ValueError, match="non-empty error"):
            store.write_failure(sid, TrialFailure(2, ""))
    db = sqlite3.connect(path)
    assert db.execute("SELECT study_id, trial_index, error FROM failures ORDER BY rowid").fetchall() == [
        (sid, 1, "RuntimeError: boom"), (sid, 1, "WorkerCrashedError: lost")]
    db.close()


def test_a_store_without_the_failures_table_gains_it(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store(path) as store:
        sid = store.ensure_study(_definition(), max_trials=1).id
        store.write_trial(sid, _trial(0))
    db = sqlite3.connect(path)
    db.execute("DROP TABLE failures")  # as written before failures were recorded
    db.commit()
    db.close()
    with Store(path, create=False) as store:
        assert store.failures(sid) == [] and store.finished_indices(sid) == {0}
        store.write_failure(sid, TrialFailure(0, "x"))
