"""nnbench.study: sweeps, steps to result, resuming / extending studies, edge flags."""

import signal
import sqlite3
import sys

import pytest

import nnbench.trial
from nnbench.search import Param, QuasiRandomSearch, SearchSpace
from nnbench.store import Status, Store, StudyBusy, TrialResult
from nnbench.study import StudySpec, best_trial, format_table, run_sweep, summarize, summarize_store
from tests.nnbench.test_store import hold_leases
from tests.nnbench.tiny import TINY

SPACE = {"sgd": SearchSpace((Param("lr", 0.03, 3.0, "log"),))}


@pytest.fixture
def count_trials(monkeypatch):
    calls = []
    real = nnbench.trial.run

    def counting(*args, **kwargs):
        calls.append((kwargs["batch_size"], kwargs["index"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(nnbench.trial, "run", counting)
    return calls


def test_sweep_steps_to_result_decrease_with_batch_size(tmp_path, count_trials):
    path = tmp_path / "sweep.sqlite"
    summaries = run_sweep(TINY, ["sgd"], [8, 32, 128], 5, path, device="cpu", progress=False, seed=0,
                          search_spaces=SPACE)
    steps = [s.steps_to_result for s in summaries]
    assert all(s is not None for s in steps), steps
    assert steps[0] > steps[1] > steps[2], steps
    assert len(count_trials) == 15
    # the stored rows, read back by plain sqlite3: steps to result = fewest steps over COMPLETE trials
    db = sqlite3.connect(path)
    for s in summaries:
        rows = db.execute(
            "SELECT t.trial_index, t.status, t.steps_to_result FROM trials t JOIN studies s ON s.id = t.study_id "
            "WHERE s.batch_size = ? ORDER BY t.trial_index", (s.batch_size,)).fetchall()  # fmt: skip
        assert [r[0] for r in rows] == list(range(5))
        complete = [r[2] for r in rows if r[1] == "COMPLETE"]
        assert s.steps_to_result == min(complete)
        assert s.counts["COMPLETE"] == len(complete) and s.trials_done == 5
        assert s.best_hparams["lr"] == pytest.approx(QuasiRandomSearch(SPACE["sgd"], 0).point(s.best_index)["lr"])
    n_meas = db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    db.close()
    assert n_meas > 15 * 5
    # the table names the studies and their steps
    table = format_table(summaries)
    assert "tiny_teacher" in table and str(steps[0]) in table


def test_resume_and_extend_run_only_missing_trials(tmp_path, count_trials):
    path = tmp_path / "s.sqlite"
    w = TINY.replace(max_steps=60, target=1.01)  # all INCOMPLETE, quick
    first = run_sweep(w, ["sgd"], [8, 16], 3, path, device="cpu", progress=False, search_spaces=SPACE)
    assert len(count_trials) == 6
    with Store(path) as store:
        before = {s.id: store.trials(s.id) for s in store.studies()}
    again = run_sweep(w, ["sgd"], [8, 16], 3, path, device="cpu", progress=False, search_spaces=SPACE)
    assert len(count_trials) == 6  # nothing re-run
    assert [s.study_id for s in again] == [s.study_id for s in first]
    run_sweep(w, ["sgd"], [8, 16], 5, path, device="cpu", progress=False, search_spaces=SPACE)
    assert sorted(count_trials[6:]) == [(8, 3), (8, 4), (16, 3), (16, 4)]  # only the new indices
    with Store(path) as store:
        for sid, old in before.items():
            new = store.trials(sid)
            assert [t.index for t in new] == list(range(5))
            assert new[:3] == old  # finished trials untouched
            assert store.study(sid).max_trials == 5
    # a different definition (another seed) is another study
    run_sweep(w, ["sgd"], [8], 1, path, device="cpu", progress=False, search_spaces=SPACE, seed=1)
    assert len(summarize_store(path)) == 3


def test_divergent_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    space = {"sgd": SearchSpace((Param("lr", 0.1, 1e4, "log"),))}
    summaries = run_sweep(TINY, ["sgd"], [8], 6, tmp_path / "d.sqlite", device="cpu", progress=False,
                          search_spaces=space)
    s = summaries[0]
    assert s.counts["INFEASIBLE"] >= 2 and s.trials_done == 6
    with Store(tmp_path / "d.sqlite") as store:
        bad = [t for t in store.trials(s.study_id) if t.status is Status.INFEASIBLE]
    assert all(t.error and t.hparams["lr"] > 1.0 for t in bad)


def test_ensembles_store_what_one_trial_at_a_time_stores(tmp_path, count_trials):
    space = {"sgd": SearchSpace((Param("lr", 0.03, 30.0, "log"),))}  # some trials diverge
    kwargs = {"device": "cpu", "progress": False, "search_spaces": space}
    alone = run_sweep(TINY, ["sgd"], [8, 32], 5, tmp_path / "one.sqlite", ensemble=1, **kwargs)
    assert len(count_trials) == 10
    together = run_sweep(TINY, ["sgd"], [8, 32], 5, tmp_path / "many.sqlite", ensemble=3, **kwargs)
    assert len(count_trials) == 10  # chunks of 3 + 2 trials per study: ensembles only, no single trial
    assert [(s.counts, s.steps_to_result, s.best_index) for s in together] == \
        [(s.counts, s.steps_to_result, s.best_index) for s in alone]
    assert sum(s.counts["INFEASIBLE"] for s in alone) >= 2 and sum(s.counts["COMPLETE"] for s in alone) >= 4
    with Store(tmp_path / "one.sqlite") as one, Store(tmp_path / "many.sqlite") as many:
        for a, b in zip(alone, together, strict=True):
            for x, y in zip(one.trials(a.study_id), many.trials(b.study_id), strict=True):
                assert (x.index, x.status, x.steps_to_result, x.steps_run, x.hparams, x.seed) == \
                    (y.index, y.status, y.steps_to_result, y.steps_run, y.hparams, y.seed)
                assert [(m.step, m.name) for m in x.measurements] == [(m.step, m.name) for m in y.measurements]


def test_a_crash_mid_ensemble_keeps_the_members_stored_and_resumes_the_rest(tmp_path, monkeypatch):
    import nnbench.ensemble

    path = tmp_path / "crash.sqlite"
    kwargs = {"device": "cpu", "progress": False, "search_spaces": SPACE, "ensemble": 4}
    real_write = Store.write_trial

    def crash_after_one(self, study_id, result):
        if self.trials(study_id):
            raise KeyboardInterrupt  # the process dies while the other members still train
        real_write(self, study_id, result)

    monkeypatch.setattr(Store, "write_trial", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(TINY, ["sgd"], [8], 4, path, **kwargs)
    monkeypatch.setattr(Store, "write_trial", real_write)
    with Store(path) as store:
        (study,) = store.studies()
        (first,) = store.trials(study.id)
    members_run = []
    real_ensemble = nnbench.ensemble.run_ensemble

    def counting(*args, members, **kw):
        members_run.extend(i for i, _, _ in members)
        return real_ensemble(*args, members=members, **kw)

    monkeypatch.setattr(nnbench.ensemble, "run_ensemble", counting)
    run_sweep(TINY, ["sgd"], [8], 4, path, **kwargs)
    assert sorted(members_run) == sorted(set(range(4)) - {first.index})  # the stored one is not re-run
    with Store(path) as store:
        trials = store.trials(study.id)
    assert [t.index for t in trials] == list(range(4)) and trials[first.index] == first


def test_ensembles_fall_back_to_one_trial_at_a_time(tmp_path, count_trials):
    w = TINY.replace(max_steps=20, target=1.01)
    with pytest.warns(UserWarning, match="KFAC.*one at a time"):
        run_sweep(w, ["kfac"], [8], 2, tmp_path / "k.sqlite", device="cpu", progress=False, ensemble=2)
    assert len(count_trials) == 2
    run_sweep(w, ["kfac"], [16], 2, tmp_path / "k.sqlite", device="cpu", progress=False, ensemble="auto")
    assert len(count_trials) == 4  # auto picks one at a time without a warning


def _result(index, status, steps, lr):
    return TrialResult(index=index, status=status, hparams={"lr": lr}, steps_to_result=steps,
                       steps_run=steps or 100, final_metric=0.5, best_metric=0.5, wall_time=0.1, device="cpu",
                       seed=index)


def test_best_trial_and_edge_flags(tmp_path):
    space = SearchSpace((Param("lr", 0.01, 1.0, "log"),))
    trials = [
        _result(0, Status.INCOMPLETE, None, 0.1),
        _result(1, Status.COMPLETE, 50, 0.95),  # at the top of the log range: u = 0.989
        _result(2, Status.COMPLETE, 50, 0.2),
        _result(3, Status.INFEASIBLE, None, 0.99),
    ]
    assert best_trial(trials).index == 1  # ties -> lowest index
    assert best_trial(trials[:1]) is None
    spec = StudySpec(workload=TINY, optimizer="sgd", batch_size=8, search_space=space, max_trials=4)
    with Store(tmp_path / "e.sqlite") as store:
        sid = store.ensure_study(spec.definition(), 4).id
        for t in trials:
            store.write_trial(sid, t)
        s = summarize(store, sid)
    assert s.steps_to_result == 50 and s.best_index == 1 and s.edges == {"lr": "high"}
    assert s.counts == {"COMPLETE": 2, "INCOMPLETE": 1, "INFEASIBLE": 1}
    assert "!lr=high" in format_table([s])


@pytest.mark.parametrize(
    "args, match",
    [
        ((["adamw"], [8], 2), "unknown optimizer"),
        (([], [8], 2), "at least one optimizer"),
        ((["sgd"], [0], 2), "batch_sizes"),
        ((["sgd"], [], 2), "batch size"),
        ((["sgd"], [8], 0), "trials_per_study"),
        ((["sgd"], [8], 2, {"ensemble": 0}), "ensemble"),
        ((["sgd"], [8], 2, {"ensemble": "all"}), "ensemble"),
    ],
)
def test_bad_sweeps(tmp_path, args, match):
    kwargs = args[3] if len(args) > 3 else {}
    with pytest.raises(ValueError, match=match):
        run_sweep(TINY, *args[:3], tmp_path / "x.sqlite", device="cpu", progress=False, **kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        StudySpec(workload=TINY, optimizer="sgd", batch_size=0, search_space=SPACE["sgd"], max_trials=1)


def test_failed_data_load_writes_no_study(tmp_path):
    path = tmp_path / "s.sqlite"
    with pytest.raises((ValueError, FileNotFoundError)):
        run_sweep("mnist_simple_cnn", ["sgd"], [16], 1, path, device="cpu", progress=False,
                  data_dir=str(tmp_path / "missing"))
    assert not path.exists()
    with Store(path) as store:  # an existing store gains no empty study either
        store.ensure_study(StudySpec(TINY, "sgd", 8, SPACE["sgd"], 1).definition(), 1)
    with pytest.raises((ValueError, FileNotFoundError)):
        run_sweep("mnist_simple_cnn", ["sgd"], [16], 1, path, device="cpu", progress=False,
                  data_dir=str(tmp_path / "missing"))
    assert [s.workload for s in summarize_store(path)] == ["tiny_teacher"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX flock and SIGKILL")
def test_second_sweep_on_a_study_is_refused_at_once(tmp_path, count_trials):
    path = tmp_path / "s.sqlite"
    w = TINY.replace(max_steps=60, target=1.01)  # all INCOMPLETE, quick
    holder = hold_leases(path, [StudySpec(w, "sgd", 16, SPACE["sgd"], 1).definition()])
    try:
        with pytest.raises(StudyBusy, match=rf"tiny_teacher/sgd/B=16 .*\(pid {holder.pid} on host"):
            run_sweep(w, ["sgd"], [8, 16], 1, path, device="cpu", progress=False, search_spaces=SPACE)
        assert count_trials == [] and not path.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    run_sweep(w, ["sgd"], [8, 16], 1, path, device="cpu", progress=False, search_spaces=SPACE)
    assert len(count_trials) == 2


def test_progress_bars_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    w = TINY.replace(max_steps=60, target=1.01)
    run_sweep(w, ["sgd"], [8, 16], 1, tmp_path / "a.sqlite", device="cpu", search_spaces=SPACE)
    lines = capsys.readouterr().err.splitlines()   # not a terminal: a line per finished study
    assert len(lines) == 2 and lines[0].startswith("tiny_teacher sgd B=8: 1 of 1 trials"), lines
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    run_sweep(w, ["sgd"], [8, 16], 1, tmp_path / "b.sqlite", device="cpu", search_spaces=SPACE)
    err = capsys.readouterr().err
    assert "tiny_teacher trials" in err and "\r" in err and "B=8: 1 of 1" not in err
    run_sweep(w, ["sgd"], [8, 16], 1, tmp_path / "c.sqlite", device="cpu", progress=False,
              search_spaces=SPACE)
    assert capsys.readouterr().err == ""
