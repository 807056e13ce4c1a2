"""A sweep killed with SIGKILL mid-way resumes without losing or repeating finished trials, whether its
trials run one at a time or as batched ensembles."""

import signal
import sqlite3
import subprocess
import sys

import pytest

from tests.nnbench.killing import sigkill_after_first_trial

# One at a time: 2 studies x 5 trials; every trial runs its whole 1,500-step budget (the target is out of
# reach), about half a second each on one CPU thread, so the kill lands with some trials stored, not all.
ALONE = ["-m", "nnbench", "sweep", "--workload", "teacher_fc", "--quick", "--optimizers", "sgd",
         "--batch-sizes", "16", "64", "--trials", "5", "--max-steps", "1500", "--eval-every", "100",
         "--target", "0.999", "--device", "cpu", "--threads", "1", "--quiet", "--ensemble", "1"]
# Ensembles of 4: 1 study x 8 trials over lr in [3e-3, 5]; the members stop at different steps (trial 1
# of the first ensemble reaches 0.7 after 200 steps, trials 2 and 3 after 500, trial 0 runs the whole
# budget), so the first trial stored is a member of the first ensemble that finished while the rest of
# it trains: the kill lands mid-ensemble.
ENSEMBLE = ["-m", "nnbench", "sweep", "--workload", "teacher_fc", "--quick", "--optimizers", "sgd",
            "--batch-sizes", "64", "--trials", "8", "--max-steps", "1000", "--eval-every", "50",
            "--target", "0.7", "--device", "cpu", "--threads", "1", "--quiet", "--ensemble", "4"]


def _rows(path):
    db = sqlite3.connect(path, timeout=30)
    try:
        trials = db.execute(
            "SELECT study_id, trial_index, status, hparams, steps_run, final_metric, wall_time, finished "
            "FROM trials ORDER BY study_id, trial_index").fetchall()  # fmt: skip
        measurements = db.execute(
            "SELECT study_id, trial_index, COUNT(*) FROM measurements GROUP BY study_id, trial_index").fetchall()
    finally:
        db.close()
    return trials, dict(((s, i), n) for s, i, n in measurements)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
@pytest.mark.parametrize("args, studies, per_study", [(ALONE, 2, 5), (ENSEMBLE, 1, 8)], ids=["alone", "ensemble"])
def test_sigkill_then_resume(tmp_path, args, studies, per_study):
    expected = studies * per_study
    store = str(tmp_path / "resume.sqlite")
    cmd = [sys.executable, *args, "--store", store]
    sigkill_after_first_trial(cmd, store)
    killed_trials, killed_meas = _rows(store)
    assert len(killed_trials) in range(1, expected), "the kill should land mid-sweep"
    # a trial is atomic: no measurements without their trial row (the one killed mid-run left nothing)
    assert set(killed_meas) == {(s, i) for s, i, *_ in killed_trials}

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials, meas = _rows(store)
    keys = [(s, i) for s, i, *_ in trials]
    assert len(keys) == len(set(keys)) == expected  # nothing repeated, nothing missing
    assert sorted({i for _, i in keys}) == list(range(per_study))
    # every trial finished before the kill is preserved exactly (same values, same finish time:
    # it was not re-run), with its measurements
    by_key = {(t[0], t[1]): t for t in trials}
    for t in killed_trials:
        assert by_key[(t[0], t[1])] == t
        assert meas[(t[0], t[1])] == killed_meas[(t[0], t[1])]
    statuses = {t[2] for t in trials}
    assert statuses == ({"INCOMPLETE"} if args is ALONE else {"COMPLETE", "INCOMPLETE"})
