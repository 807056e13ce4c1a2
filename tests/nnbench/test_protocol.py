"""nnbench.protocol: focused rounds, widening recorded in the store, seeds' median interval, resuming."""

import json
import math
import sqlite3

import numpy as np
import pytest

import nnbench.trial
from nnbench.protocol import format_protocol, median_interval, run_protocol
from nnbench.search import Param, QuasiRandomSearch, SearchSpace
from nnbench.store import Measurement, Status, Store, TrialResult
from nnbench.study import StudySpec
from nnbench.trial import trial_seed
from tests.nnbench.tiny import tiny_teacher

SPACE = {"sgd": SearchSpace((Param("lr", 0.01, 1.0, "log"),))}


def _fake_runner(steps_of, calls):
    """A runner that 'trains' nothing: trial steps = steps_of(hparams, seed), with 10% of each
    trial's time outside training (wall 0.1 -> 1.1 s, train 0.9 s)."""

    def runner(specs, store_path, **_):
        with Store(store_path) as store:
            for spec in specs:
                record = store.ensure_study(spec.definition(), spec.max_trials)
                search = QuasiRandomSearch(spec.search_space, spec.seed)
                for i in sorted(set(range(spec.max_trials)) - store.finished_indices(record.id)):
                    hp, seed = search.point(i), trial_seed(spec.seed, i)
                    steps = steps_of(hp, seed)
                    ok = steps <= spec.workload.max_steps
                    ms = (Measurement(0, "wall_time", 0.1), Measurement(0, "train_time", 0.0),
                          Measurement(steps, "wall_time", 1.1), Measurement(steps, "train_time", 0.9))
                    store.write_trial(record.id, TrialResult(
                        i, Status.COMPLETE if ok else Status.INCOMPLETE, hp, steps if ok else None,
                        steps, None, None, 1.0, "cpu", seed, measurements=ms))
                    calls.append((spec.batch_size, spec.protocol and spec.protocol["round"], i))
        return []

    return runner


def test_edge_best_widens_and_is_recorded(tmp_path):
    # steps fall with lr up to lr = 3, beyond the space's top (1.0): the best trial sits at the edge
    calls = []
    runner = _fake_runner(lambda hp, seed: int(round(1000 * (1 + abs(math.log(hp["lr"] / 3.0))))), calls)
    w, path = tiny_teacher(max_steps=10_000), tmp_path / "p.sqlite"
    out = run_protocol(w, ["sgd"], [64], path, first_round=32, focus_round=8, seeds=6, search_spaces=SPACE,
                       runner=runner)
    (s,) = out
    assert s.search.edges == {"lr": "high"} and s.widened == {"lr": "high"}
    assert s.best_round == "focus" and s.best_hparams["lr"] > 1.0  # the widened round found better
    assert s.eval_fraction == pytest.approx(0.1)
    # in the store, read by plain sqlite3: the focused study names its parent and the widened edge
    db = sqlite3.connect(path)
    rows = {key: json.loads(d) for key, d in db.execute("SELECT key, definition FROM studies")}
    db.close()
    focus = [d for d in rows.values() if d.get("protocol", {}).get("round") == "focus"]
    assert len(focus) == 1 and focus[0]["protocol"]["widened"] == {"lr": "high"}
    parent = rows[focus[0]["protocol"]["parent"]]
    assert parent["search_space"] == SPACE["sgd"].to_dict()
    # round 1 is an ordinary study: the one `run_sweep` stores for the same workload and space
    ordinary = StudySpec(w.replace(eval_grid="geometric"), "sgd", 64, SPACE["sgd"], 32).definition()
    assert "protocol" not in parent and parent == ordinary
    (lr,) = focus[0]["search_space"]["params"]
    assert lr["high"] > 1.0 and lr["low"] > 0.01  # beyond the edge, focused at the low end
    # the seeds round re-runs the best configuration, all hyperparameters fixed, 6 seeds
    seeds = [d for d in rows.values() if d.get("protocol", {}).get("round") == "seeds"]
    assert seeds[0]["search_space"] == {"params": [], "fixed": {"lr": s.best_hparams["lr"]}}
    assert s.seed_steps.n == 6 and s.seed_steps.median == s.best_steps  # fake steps ignore the seed


def test_protocol_is_deterministic_in_the_stored_results(tmp_path):
    def steps(hp, seed):
        return int(round(500 * (1 + math.log(hp["lr"] / 0.1) ** 2))) + seed % 50

    a, b = [], []
    ra = run_protocol(tiny_teacher(), ["sgd"], [8], tmp_path / "a.sqlite", first_round=8, focus_round=4, seeds=4,
                      search_spaces=SPACE, runner=_fake_runner(steps, a))
    rb = run_protocol(tiny_teacher(), ["sgd"], [8], tmp_path / "b.sqlite", first_round=8, focus_round=4, seeds=4,
                      search_spaces=SPACE, runner=_fake_runner(steps, b))
    assert a == b and [r.to_dict() for r in ra] == [r.to_dict() for r in rb]
    (s,) = ra
    assert s.widened == {} and s.search.edges == {}
    # the focused space spans the best 3 trials of round 1 plus a 15% margin (scaled range), inside
    with Store(tmp_path / "a.sqlite") as store:
        first = store.trials(s.search.study_id)
        best3 = sorted((t for t in first if t.status is Status.COMPLETE), key=lambda t: (t.steps_to_result, t.index))[:3]
        focus_space = SearchSpace.from_dict(store.study(s.focus.study_id).search_space)
    u = [SPACE["sgd"].params[0].to_unit(t.hparams["lr"]) for t in best3]
    (p,) = focus_space.params
    assert SPACE["sgd"].params[0].to_unit(p.low) == pytest.approx(max(0.0, min(u) - 0.15))
    assert SPACE["sgd"].params[0].to_unit(p.high) == pytest.approx(min(1.0, max(u) + 0.15))


def test_median_interval_order_statistics():
    m = median_interval([5, 1, 4, 2, 3, 9, 7, 8, 6, 10])
    assert m.median == 5.5
    # n = 10: [x_(2), x_(9)] covers 1 - 2 * 11/1024; [x_(3), x_(8)] would cover only 89%
    assert (m.low, m.high) == (2, 9) and m.coverage == pytest.approx(1 - 22 / 1024)
    # the coverage, checked by simulation (independent of the binomial formula)
    rng = np.random.default_rng(0)
    x = np.sort(rng.random((20_000, 10)), axis=1)
    assert np.mean((x[:, 1] <= 0.5) & (0.5 <= x[:, 8])) == pytest.approx(m.coverage, abs=0.005)
    # a value beyond the budget is an order statistic like any other; too few values cover less
    m = median_interval([30, math.inf, 20])
    assert (m.median, m.low, m.high, m.coverage) == (30, 20, math.inf, 0.75)
    assert m.to_dict()["high"] is None
    with pytest.raises(ValueError, match="at least 2"):
        median_interval([3])


def test_real_protocol_resumes_without_repeating(tmp_path, monkeypatch):
    calls = []
    real = nnbench.trial.run

    def counting(*args, **kwargs):
        calls.append((kwargs["seed"], dict(kwargs["hparams"])))
        return real(*args, **kwargs)

    monkeypatch.setattr(nnbench.trial, "run", counting)
    w, path = tiny_teacher(max_steps=300), tmp_path / "p.sqlite"
    kw = dict(first_round=3, focus_round=2, seeds=3, search_spaces=SPACE, device="cpu", progress=False)
    (s,) = run_protocol(w, ["sgd"], [128], path, **kw)
    assert len(calls) == 8
    seeds = [seed for seed, _ in calls[5:]]
    assert len(set(seeds)) == 3 and not set(seeds) & {seed for seed, _ in calls[:5]}
    assert all(hp == s.best_hparams for _, hp in calls[5:])
    assert s.seed_steps.n == 3 and s.seed_steps.coverage == 0.75 and "covers only 75%" in s.notes[0]
    assert s.eval_fraction > 0 and s.eval_fraction < 1
    assert "sgd" in format_protocol([s])
    again = run_protocol(w, ["sgd"], [128], path, **kw)
    assert len(calls) == 8 and [x.to_dict() for x in again] == [s.to_dict()]


def test_protocol_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        run_protocol(tiny_teacher(), ["sgd"], [8], tmp_path / "x.sqlite", seeds=1)
    with pytest.raises(ValueError, match="first_round"):
        run_protocol(tiny_teacher(), ["sgd"], [8], tmp_path / "x.sqlite", first_round=0)
    with pytest.raises(ValueError, match="confidence"):
        run_protocol(tiny_teacher(), ["sgd"], [8], tmp_path / "x.sqlite", confidence=1.5)
    with pytest.raises(ValueError, match="unknown optimizer"):
        run_protocol(tiny_teacher(), ["sgdd"], [8], tmp_path / "x.sqlite")
