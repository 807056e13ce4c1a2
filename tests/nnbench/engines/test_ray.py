"""The Ray engine on a local Ray instance with 2 CPUs: same trials as the local engine, a worker killed
with SIGKILL mid-sweep costs nothing (or, with retries used up, one recorded failure), a raising trial is
a recorded failure, and a killed driver resumes."""

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray", reason='the ray engine needs ray: pip install "nqm-bench[cluster]"')

from nnbench.engines.ray import RayEngine  # noqa: E402
from nnbench.search import Param, SearchSpace  # noqa: E402
from nnbench.store import Store  # noqa: E402
from nnbench.study import run_sweep  # noqa: E402
from tests.nnbench.engines.faulty import fails_when_first_weight_positive  # noqa: E402
from tests.nnbench.killing import sigkill_after_first_trial, stored_trials  # noqa: E402
from tests.nnbench.tiny import TINY  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds Ray's worker processes in /proc"),
]

SPACE = {"sgd": SearchSpace((Param("lr", 0.03, 3.0, "log"),))}
# Every trial runs its whole 1,500-step budget (the target is out of reach): about a second each, so a
# worker killed after the first trial is stored is in the middle of another.
LONG = TINY.replace(max_steps=1500, target=1.01)


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance with 2 CPUs for this module; the engine uses it as it is (and tests connect to it)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield context.address_info["gcs_address"]
    ray.shutdown()


def _rows(path, columns="s.batch_size, t.trial_index, t.status, t.hparams, t.seed, t.steps_to_result, "
                        "t.steps_run, t.final_metric, t.best_metric, t.finished"):
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute(f"SELECT {columns} FROM trials t JOIN studies s ON s.id = t.study_id "
                          "ORDER BY s.batch_size, t.trial_index").fetchall()
    finally:
        db.close()


def _descends_from_us(pid: int) -> bool:
    """Whether ``pid`` is a descendant of this test process (a worker of the Ray instance it started),
    so that no other Ray on the machine is touched."""
    me = os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/status") as f:
                pid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
        except (OSError, StopIteration):
            return False
        if pid == me:
            return True
    return False


def _busy_workers() -> list[int]:
    """PIDs of our Ray workers running a group of trials (Ray titles them ``ray::<task name>``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if title.startswith(b"ray::run_group_task") and _descends_from_us(int(entry)):
            pids.append(int(entry))
    return pids


def _kill_a_busy_worker_after_first_trial(store: str, killed: list, timeout: float = 90.0) -> threading.Thread:
    """A thread that waits for the first stored trial, then SIGKILLs a worker that is running a trial,
    appending ``(pid, rows stored before the kill)`` to ``killed``."""

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stored_trials(store) >= 1:
                busy = _busy_workers()
                if busy:
                    before = _rows(store)
                    os.kill(busy[0], signal.SIGKILL)
                    killed.append((busy[0], before))
                    return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_ray_sweep_runs_the_same_trials_as_the_local_engine(ray_address, tmp_path):
    w = TINY.replace(max_steps=300)
    common = dict(device="cpu", progress=False, search_spaces=SPACE, seed=4)
    local = run_sweep(w, ["sgd"], [8, 32], 4, tmp_path / "local.sqlite", **common)
    remote = run_sweep(w, ["sgd"], [8, 32], 4, tmp_path / "ray.sqlite", engine=RayEngine(), **common)
    strip = [row[:-1] for row in _rows(tmp_path / "local.sqlite")]  # all but the finish time
    assert strip == [row[:-1] for row in _rows(tmp_path / "ray.sqlite")]
    assert len(strip) == 8 and any(row[5] is not None for row in strip)  # some reach the target
    for a, b in zip(local, remote, strict=True):
        assert (a.steps_to_result, a.best_index, a.counts) == (b.steps_to_result, b.best_index, b.counts)
    # measurements too, bit for bit, except the clocks
    with Store(tmp_path / "local.sqlite") as x, Store(tmp_path / "ray.sqlite") as y:
        for sx, sy in zip(x.studies(), y.studies(), strict=True):
            for tx, ty in zip(x.trials(sx.id, with_measurements=True), y.trials(sy.id, with_measurements=True),
                              strict=True):
                def values(t):
                    return [m for m in t.measurements if not m.name.endswith("_time")]

                assert values(tx) == values(ty) and values(tx)
    # ensembles of 4 shipped as one Ray task each: the same outcomes (values up to rounding)
    grouped = run_sweep(w, ["sgd"], [8, 32], 4, tmp_path / "ens.sqlite", engine=RayEngine(), ensemble=4, **common)
    for a, b in zip(local, grouped, strict=True):
        assert (a.steps_to_result, a.best_index, a.counts) == (b.steps_to_result, b.best_index, b.counts)


def test_a_killed_worker_costs_only_its_trial_which_is_retried(ray_address, tmp_path):
    store = str(tmp_path / "kill.sqlite")
    killed = []
    watcher = _kill_a_busy_worker_after_first_trial(store, killed)
    summaries = run_sweep(LONG, ["sgd"], [8], 5, store, device="cpu", progress=False, search_spaces=SPACE,
                          engine=RayEngine())
    watcher.join(timeout=5)
    assert killed, "no busy worker was found to kill"
    _, before = killed[0]
    assert len(before) in range(1, 5), "the kill should land mid-sweep"
    after = _rows(store)
    keys = [(r[0], r[1]) for r in after]
    assert len(keys) == len(set(keys)) == 5  # nothing lost, nothing repeated
    assert set(before) <= set(after)  # trials stored before the kill are untouched (same finish time)
    assert not summaries[0].failures and summaries[0].trials_done == 5


def test_a_worker_lost_beyond_the_retries_is_a_recorded_failure_that_a_rerun_retries(ray_address, tmp_path):
    store = str(tmp_path / "lost.sqlite")
    killed = []
    watcher = _kill_a_busy_worker_after_first_trial(store, killed)
    args = (LONG, ["sgd"], [8], 4, store)
    kwargs = dict(device="cpu", progress=False, search_spaces=SPACE)
    (first,) = run_sweep(*args, engine=RayEngine(max_retries=0), **kwargs)
    watcher.join(timeout=5)
    assert killed
    assert len(first.failures) == 1 and first.trials_done == 3
    (error,) = first.failures.values()
    assert "WorkerCrashedError" in error and "0 retries" in error
    (second,) = run_sweep(*args, engine=RayEngine(), **kwargs)
    assert not second.failures and second.trials_done == 4
    with Store(store) as s:
        assert [f.index for f in s.failures(first.study_id)] == list(first.failures)  # the log keeps it


def test_a_raising_trial_is_recorded_with_its_error_as_on_the_local_engine(ray_address, tmp_path):
    w = TINY.replace(max_steps=40, target=1.01)
    kwargs = dict(device="cpu", progress=False, search_spaces=SPACE, instruments=[fails_when_first_weight_positive],
                  instrument_every=1000)
    (local,) = run_sweep(w, ["sgd"], [8], 6, tmp_path / "local.sqlite", **kwargs)
    (remote,) = run_sweep(w, ["sgd"], [8], 6, tmp_path / "ray.sqlite", engine=RayEngine(), **kwargs)
    assert len(remote.failures) in range(1, 6)
    assert set(remote.failures) == set(local.failures)
    for index, error in remote.failures.items():
        assert error.strip().splitlines()[-1] == local.failures[index].strip().splitlines()[-1]
        assert "RuntimeError: instrument refused a positive first weight" in error
    assert remote.counts == local.counts


def test_a_killed_driver_resumes(ray_address, tmp_path):
    store = str(tmp_path / "driver.sqlite")
    cmd = [sys.executable, "-m", "nnbench", "sweep", "--engine", "ray", "--address", ray_address,
           "--workload", "teacher_fc", "--quick", "--optimizers", "sgd", "--batch-sizes", "16",
           "--trials", "4", "--max-steps", "1500", "--eval-every", "100", "--target", "0.999", "--device", "cpu",
           "--quiet", "--ensemble", "1", "--store", store]  # one trial a task: stored one by one
    sigkill_after_first_trial(cmd, store, timeout=90)
    before = _rows(store)
    assert len(before) in range(1, 4)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = _rows(store)
    keys = [(r[0], r[1]) for r in after]
    assert len(keys) == len(set(keys)) == 4
    assert set(_rows(store)) >= set(before)  # finished trials kept exactly, not re-run
    assert {r[2] for r in after} == {"INCOMPLETE"}
