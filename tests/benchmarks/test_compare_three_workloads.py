"""benchmarks/compare_three_workloads.py: the reduced (--smoke) run end to end, and its table."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")  # the digits workload

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_three_workloads.py"


@pytest.fixture(scope="module")
def bench():
    # benchmarks/ is a folder of scripts, not a package: load the module from its file
    spec = importlib.util.spec_from_file_location("compare_three_workloads", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _stored_trials(folder: Path) -> set:
    """(store, study, trial index, wall time) of every trial stored under ``folder``: a trial run
    again would be stored with another wall time."""
    from nnbench.store import Store

    out = set()
    for path in sorted(folder.glob("*.sqlite")):
        with Store(path, create=False) as store:
            out |= {(path.name, s.key, t.index, t.wall_time) for s in store.studies() for t in store.trials(s.id)}
    return out


@pytest.mark.slow
def test_smoke_runs_every_stage_and_prints_the_table(bench, tmp_path, capsys):
    # two of the three workloads keep the test short: linear_ls (its search spaces come from
    # bench_compare_linear_ls.py) and digits_mlp_train (real data); teacher_fc runs the same code
    workloads = ["linear_ls", "digits_mlp_train"]
    args = ["--smoke", "--quiet", "--store-dir", str(tmp_path / "runs"), "--workloads", *workloads]
    assert bench.main([*args, "--write", "--results", str(tmp_path / "results"),
                       "--figures", str(tmp_path / "figures")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["workload", "optimizer", "predicted", "B_crit", "[95%]", "measured", "B_crit",
                                "[95%]", "pred/meas", "inside?"]
    assert lines[-1].startswith("time: ")
    for w in workloads:
        rows = [x.split()[1] for x in lines[2:] if x.startswith(w + " ") and "measured:" not in x]
        assert rows == ["sgd", "momentum", "adam"], lines
        result = json.loads((tmp_path / "results" / f"compare_{w}.json").read_text())
        assert result["optimizers"]["momentum"]["role"] == "predicted out of sample"
        assert (tmp_path / "figures" / f"compare_{w}.png").stat().st_size > 0
    # resumed: no trial runs again (the stores hold the same trials, by their row ids), and the rows
    # are those of the files just written
    stored = _stored_trials(tmp_path / "runs")
    assert bench.main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert _stored_trials(tmp_path / "runs") == stored and len(stored) > 0
    for r in out["rows"]:
        assert "fit_refused" not in r, r  # the smoke settings give SGD points the NQM can be fitted to
        saved = json.loads((tmp_path / "results" / f"compare_{r['workload']}.json").read_text())
        o = saved["optimizers"][r["optimizer"]]
        # the same fit as the measured points where they support one, else the NQM's exact limit
        predicted = o["predicted_same_fit_at_measured_batch_sizes"] or o["predicted_nqm_exact_limits"]
        same = [(r["predicted_b_crit"], predicted["b_crit"]),
                (r["measured_b_crit"], o["measured"]["b_crit"])]
        assert all(json.dumps(a) == json.dumps(b) for a, b in same)  # (as text: an interval may hold NaN)
        assert math.isfinite(r["predicted_b_crit"]["value"]) and r["predicted_b_crit"]["value"] > 0
        if r["measured_b_crit"] is not None:
            ratio = r["predicted_b_crit"]["value"] / r["measured_b_crit"]["value"]
            assert r["ratio_predicted_over_measured"] == pytest.approx(ratio)
            p = r["predicted_b_crit"]
            assert r["measured_inside_predicted_interval"] == (p["low"] <= r["measured_b_crit"]["value"] <= p["high"])
        else:
            assert r["measured_refused"] and r["ratio_predicted_over_measured"] is None


def test_table_shows_refusals_instead_of_numbers(bench):
    rows = [{"workload": "w", "optimizer": "sgd", "role": "fitted", "fit_refused": "steps do not decrease"},
            {"workload": "v", "optimizer": "momentum", "role": "predicted",
             "predicted_b_crit": {"value": 120.0, "low": 80.0, "high": 200.0}, "measured_b_crit": None,
             "measured_refused": "B_crit beyond the largest batch", "ratio_predicted_over_measured": None,
             "measured_inside_predicted_interval": None}]
    text = bench.format_table(rows)
    assert "w: no prediction, steps do not decrease" in text
    assert "v momentum measured: B_crit beyond the largest batch" in text
    line = next(x for x in text.splitlines() if x.startswith("v "))
    assert "120 [80, 200]" in line and "refused" in line
