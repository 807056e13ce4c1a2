"""``python -m nqm`` subcommands for schedules and EMA: --json parses and holds what the API gives,
tables print, bad input is one clear error line (exit code 2)."""

import json

import pytest

import nqm
from nqm.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_optimize_schedule_json_matches_api(capsys):
    code, out, _ = _run(capsys, "optimize-schedule", "--batch-size", "1024", "--pieces", "10",
                        "--json")
    data = json.loads(out)
    api = nqm.optimize_schedule(batch_size=1024, n_pieces=10)
    assert code == 0 and data["steps"] == api.steps
    assert data["schedule"]["lr"] == api.schedule.lr.tolist()


def test_schedule_risk_json_and_table(capsys):
    argv = ["schedule-risk", "--batch-size", "64", "--lr", "1", "--total-steps", "2000",
            "--schedule", "step", "--boundaries", "1000", "1500", "--at", "0", "1000"]
    code, out, _ = _run(capsys, *argv, "--json")
    data = json.loads(out)
    sched = nqm.step_decay(1.0, boundaries=[1000, 1500], factor=0.1, steps=2000)
    assert code == 0 and data["steps"] == [0.0, 1000.0, 2000.0]
    assert data["risk"][-1] == pytest.approx(nqm.schedule_risk(nqm.NQM.paper(), sched,
                                                               batch_size=64), rel=1e-12)
    code, out, _ = _run(capsys, *argv[:-3], "--schedule", "cosine", "--warmup", "50")
    assert code == 0 and "warmup 50" in out


def test_tune_ema_and_schedule_sweep(capsys):
    code, out, _ = _run(capsys, "tune", "--batch-size", "256", "--momentum", "0", "--ema",
                        "tune", "--json")
    data = json.loads(out)
    assert code == 0 and data["tuned"] == ["lr", "ema"] and 0 < data["ema"] < 1
    code, out, _ = _run(capsys, "schedule-sweep", "--batch-sizes", "16", "4096", "--powers", "0",
                        "--pieces", "5", "--quiet")
    assert code == 0 and "optimized 5-piece" in out and "2^12" in out


@pytest.mark.parametrize("argv, word", [
    (["optimize-schedule", "--batch-size", "0"], "--batch-size"),
    (["optimize-schedule", "--batch-size", "16", "--pieces", "0"], "--pieces"),
    (["schedule-risk", "--batch-size", "16", "--lr", "-1", "--total-steps", "10"], "--lr"),
    (["steps", "--lr", "0.1", "--batch-size", "16", "--ema", "1.5"], "--ema"),
])
def test_errors_are_one_line(capsys, argv, word):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and word in err and "Traceback" not in err
