"""nnbench.engines: the seam (tasks, groups, run_group, the data cache), the local engine, failures."""

import subprocess
import sys
import types

import pytest

import nnbench.trial
from nnbench.engines import DataCache, TrialOptions, TrialTask, groups_of, make_engine, run_group
from nnbench.engines.local import LocalEngine
from nnbench.engines.ray import RayEngine, _check_reachable
from nnbench.search import Param, QuasiRandomSearch, SearchSpace
from nnbench.store import Status, Store, TrialFailure, TrialResult
from nnbench.study import StudySpec, run_sweep, study_tasks
from nnbench.trial import trial_seed
from tests.nnbench.engines.faulty import fails_when_first_weight_positive
from tests.nnbench.tiny import TINY

SPACE = SearchSpace((Param("lr", 0.03, 3.0, "log"),))
QUICK = TINY.replace(max_steps=60, target=1.01)  # every trial INCOMPLETE after 60 steps


def _spec(**changes):
    return StudySpec(**{"workload": QUICK, "optimizer": "sgd", "batch_size": 8, "search_space": SPACE,
                        "max_trials": 4, "seed": 3, **changes})


def test_study_tasks_are_the_studys_points_and_seeds():
    tasks = study_tasks(_spec(), 7, [0, 2, 3])
    search = QuasiRandomSearch(SPACE, 3)
    assert [t.index for t in tasks] == [0, 2, 3]
    for t in tasks:
        assert t.study_id == 7 and t.optimizer == "sgd" and t.batch_size == 8 and t.workload is QUICK
        assert t.hparams == search.point(t.index)
        assert t.seed == trial_seed(3, t.index)
    assert study_tasks(_spec(), 7, [2])[0] == tasks[1]  # deterministic: the same task every time


def test_groups_of():
    tasks = study_tasks(_spec(max_trials=5), 1, range(5))
    assert [[t.index for t in g] for g in groups_of(tasks, 2)] == [[0, 1], [2, 3], [4]]
    assert groups_of(tasks, 1) == [[t] for t in tasks]
    assert groups_of([], 3) == []
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="group_size"):
            groups_of(tasks, bad)


def test_run_group_reports_every_task_and_a_raising_trial_as_its_failure(monkeypatch):
    tasks = study_tasks(_spec(), 1, range(4))
    real = nnbench.trial.run

    def flaky(*args, **kwargs):
        if kwargs["index"] == 2:
            raise RuntimeError("out of memory, say")
        return real(*args, **kwargs)

    monkeypatch.setattr(nnbench.trial, "run", flaky)
    seen = []
    data = DataCache().get(QUICK, device="cpu", data_dir=None)
    for task in tasks:  # groups of one: one trial each (a larger group is an ensemble)
        run_group([task], data=data, device="cpu", on_result=lambda task, outcome: seen.append((task, outcome)))
    assert [t for t, _ in seen] == tasks
    assert [type(o) for _, o in seen] == [TrialResult, TrialResult, TrialFailure, TrialResult]
    failure = seen[2][1]
    assert failure.index == 2 and "RuntimeError: out of memory, say" in failure.error
    assert "Traceback" in failure.error  # the whole traceback is kept
    for task, result in seen[:2] + seen[3:]:
        assert result.index == task.index and result.seed == task.seed and dict(result.hparams) == task.hparams


def test_a_raising_ensemble_fails_its_unreported_members(monkeypatch):
    import nnbench.ensemble

    tasks = study_tasks(_spec(), 1, range(4))
    real = nnbench.ensemble.run_ensemble

    def dies_after_one(workload, *, members, on_result, **kwargs):
        def first_only(result):
            on_result(result)
            raise RuntimeError("out of memory, say")
        return real(workload, members=members, on_result=first_only, **kwargs)

    monkeypatch.setattr(nnbench.ensemble, "run_ensemble", dies_after_one)
    seen = []
    data = DataCache().get(QUICK.replace(target=0.0), device="cpu", data_dir=None)
    run_group(tasks, data=data, device="cpu", on_result=lambda task, outcome: seen.append((task, outcome)))
    assert sorted(t.index for t, _ in seen) == [0, 1, 2, 3]  # every member reported once
    kinds = [type(o) for _, o in seen]
    assert kinds[0] is TrialResult and kinds[1:] == [TrialFailure] * 3
    assert all("RuntimeError: out of memory, say" in o.error for _, o in seen[1:])


def test_run_group_refuses_mixed_studies():
    a = study_tasks(_spec(), 1, [0])
    b = study_tasks(_spec(batch_size=16), 1, [1])
    with pytest.raises(ValueError, match="one study"):
        run_group(a + b, data=None, device="cpu", on_result=print)
    with pytest.raises(ValueError, match="once"):
        run_group(a + a, data=None, device="cpu", on_result=print)
    run_group([], data=None, device="cpu", on_result=print)  # nothing to do


def test_data_cache_builds_once_per_data_set(monkeypatch):
    import nnbench.engines as engines

    built = []
    monkeypatch.setattr(engines, "build_workload_data", lambda w, **kw: built.append(w.dataset) or object())
    cache = DataCache()
    first = cache.get(QUICK, device="cpu", data_dir=None)
    assert cache.get(QUICK.replace(max_steps=7, target=0.5), device="cpu", data_dir=None) is first  # same data
    other = QUICK.replace(dataset_kwargs={"num_eval": 256})
    assert cache.get(other, device="cpu", data_dir=None) is not first
    assert len(built) == 2


def test_local_engine_runs_groups_in_order():
    tasks = study_tasks(_spec(), 1, range(4))
    seen = []
    LocalEngine().run(groups_of(tasks, 3), device="cpu", data_dir=None, on_result=lambda t, o: seen.append(o))
    assert [o.index for o in seen] == [0, 1, 2, 3]
    assert {o.status for o in seen} == {Status.INCOMPLETE}
    assert make_engine("local") == LocalEngine()
    with pytest.raises(ValueError, match="engine must be one of local, ray"):
        make_engine("slurm")


def test_failed_trials_are_recorded_unfinished_and_retried(tmp_path):
    path = tmp_path / "f.sqlite"
    kwargs = dict(device="cpu", progress=False, search_spaces={"sgd": SPACE},
                  instruments=[fails_when_first_weight_positive], instrument_every=1000)
    first = run_sweep(QUICK, ["sgd"], [8], 6, path, **kwargs)[0]
    failed = set(first.failures)
    assert len(failed) in range(1, 6), "the instrument should fail some trials, not all"
    assert all("RuntimeError: instrument refused a positive first weight" in e for e in first.failures.values())
    assert first.trials_done == 6 - len(failed)
    again = run_sweep(QUICK, ["sgd"], [8], 6, path, **kwargs)[0]  # the failed ones (only) run again
    assert set(again.failures) == failed
    with Store(path) as store:
        log = store.failures(first.study_id)
        assert sorted(f.index for f in log) == sorted(2 * list(failed))  # two attempts each, both kept
        assert len(store.trials(first.study_id)) == 6 - len(failed)
    # the same sweep asking for ensembles of 4 reaches the same outcome (instrumented: one at a time)
    other = run_sweep(QUICK, ["sgd"], [8], 6, tmp_path / "g.sqlite", ensemble=4, **kwargs)[0]
    assert set(other.failures) == failed and other.counts == first.counts


def test_ray_engine_options_are_checked_without_ray():
    assert RayEngine().worker_device("auto") == "cpu"
    assert RayEngine(gpus_per_trial=0.25).worker_device("auto") == "cuda"
    assert RayEngine(gpus_per_trial=0.25).worker_device("CUDA") == "cuda"
    for engine, device, match in [
        (RayEngine(), "cuda", "gpus_per_trial > 0"),
        (RayEngine(gpus_per_trial=1), "cpu", "drop --gpus-per-trial"),
        (RayEngine(gpus_per_trial=1), "cuda:1", "Ray picks"),
        (RayEngine(), "tpu", "device must be"),
    ]:
        with pytest.raises(ValueError, match=match):
            engine.worker_device(device)
    for kwargs, match in [
        ({"cpus_per_trial": -1}, "cpus_per_trial"),
        ({"cpus_per_trial": 0}, "both 0"),
        ({"gpus_per_trial": 1.5}, "whole number"),
        ({"num_cpus": 0}, "num_cpus"),
        ({"num_cpus": 2, "address": "auto"}, "drop num_cpus or address"),
        ({"max_retries": -1}, "max_retries"),
        ({"threads": 0}, "threads"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"address": ""}, "HOST:PORT"),
        ({"address": "headnode"}, "HOST:PORT"),
    ]:
        with pytest.raises(ValueError, match=match):
            RayEngine(**kwargs)
    assert RayEngine(address="10.0.0.1:6379").address == "10.0.0.1:6379"
    # nothing to run: no Ray is needed or started
    RayEngine().run([], device="cpu", data_dir=None, on_result=print)
    # a head address where nothing listens is refused at once (Ray itself would retry for minutes)
    with pytest.raises(ValueError, match="no Ray head answers there"):
        _check_reachable("127.0.0.1:1")


def test_importing_nnbench_and_a_local_sweep_never_import_ray(tmp_path):
    code = (
        "import sys\n"
        "import nnbench, nnbench.engines, nnbench.engines.local, nnbench.engines.ray, nnbench.study\n"
        "from tests.nnbench.tiny import TINY\n"
        f"nnbench.run_sweep(TINY.replace(max_steps=20), ['sgd'], [8], 1, {str(tmp_path / 's.sqlite')!r}, "
        "device='cpu', progress=False)\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_task_options_are_frozen_and_picklable():
    import pickle

    task = TrialTask(workload=QUICK, optimizer="sgd", batch_size=8, study_id=1, index=0, hparams={"lr": 1},
                     seed=5, options=TrialOptions([fails_when_first_weight_positive], 10))
    assert task.hparams == {"lr": 1.0} and task.options.instruments == (fails_when_first_weight_positive,)
    assert pickle.loads(pickle.dumps(task)) == task
    with pytest.raises(AttributeError):
        task.index = 3


def test_local_engine_gives_ensembles_their_threads(monkeypatch):
    import torch

    import nnbench.engines.local as local

    seen = []
    monkeypatch.setattr(local, "run_group", lambda group, **kw: seen.append((len(group), kw["threads"])))
    before = torch.get_num_threads()
    tasks = study_tasks(_spec(), 1, range(4))
    data = types.SimpleNamespace(device=torch.device("cpu"))  # the caller's data set, used as it is
    LocalEngine(ensemble_threads=before + 1).run([tasks[:3], tasks[3:]], device="cpu", data_dir=None,
                                                 on_result=print, data=data)
    LocalEngine().run([tasks[:3]], device="cpu", data_dir=None, on_result=print, data=data)
    assert seen == [(3, before + 1), (1, before + 1), (3, before)]  # run_ensemble's threads; default: torch's
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="ensemble_threads"):
        LocalEngine(ensemble_threads=0)
