"""Smoke tests of ``python -m nqm``: tables, --json parses, errors are one clear line."""

import argparse
import json
import re
import subprocess
import sys

import pytest

from nqm.cli import build_parser, main


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_main_job_json(capsys):
    code, out, _ = _run(capsys, "--json", "--quiet")
    data = json.loads(out)
    assert code == 0 and len(data["batch_sizes"]) == 22
    names = [o["name"] for o in data["optimizers"]]
    assert names == ["SGD", "momentum (tuned)", "SGD, P=H^-0.5"]
    crit = [o["critical_batch"]["value"] for o in data["optimizers"]]
    assert crit[0] < crit[2] and crit[0] < crit[1]
    sgd = data["optimizers"][0]["steps"]
    assert sgd[0] > sgd[-1] > 0


def test_main_job_table(capsys):
    code, out, _ = _run(capsys, "--quiet", "--bins", "30")
    assert code == 0 and "Critical batch size" in out and "2^21" in out


@pytest.mark.parametrize("argv, key", [
    (["steps", "--lr", "0.5", "--batch-size", "1024"], "steps"),
    (["risk", "--lr", "0.5", "--batch-size", "64", "--steps", "0", "100"], "risk"),
    (["optimal-lr", "--batch-size", "256", "--power", "0.5"], "lr"),
    (["tune", "--batch-size", "256"], "momentum"),
    (["sweep", "--batch-sizes", "16", "4096", "--powers", "0", "0.5"], "steps"),
    (["critical-batch", "--definition", "saturation"], "value"),
    (["critical-batch", "--points", "64:9000", "256:2600", "1024:1100", "4096:700"], "b_crit"),
    (["lower-bound", "--batch-size", "4"], "steps"),
    (["--problem", "power-law", "--a", "1.5", "--d", "1000", "steps", "--lr", "1",
      "--batch-size", "inf"], "steps"),
])
def test_subcommands_json(capsys, argv, key):
    code, out, _ = _run(capsys, *argv, "--json", "--quiet")
    assert code == 0 and key in json.loads(out)


def test_subcommand_table(capsys):
    code, out, _ = _run(capsys, "steps", "--lr", "0.5", "--batch-size", "1024")
    assert code == 0 and "steps:" in out


def test_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["steps", "--lr", "5", "--batch-size", "4"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "stability limit" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["critical-batch", "--points", "64-9000"])
    assert "B:STEPS" in capsys.readouterr().err


def test_module_help():
    out = subprocess.run([sys.executable, "-m", "nqm", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "critical batch size" in out and "sweep" in out


def test_problem_and_output_options_work_before_and_after_the_subcommand(capsys):
    # argparse lets a subcommand's defaults overwrite options given before it: `nqm --d 1000
    # --json lower-bound` once printed the d = 10^4 answer as a table
    args = ["lower-bound", "--batch-size", "4"]
    outputs = [_run(capsys, *argv)[1] for argv in (["--d", "1000", "--json", *args],
                                                    [*args, "--d", "1000", "--json"])]
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["steps"] == 12500          # d / (2 B target) with d = 1000
    assert json.loads(_run(capsys, "--json", *args)[1])["steps"] == 125000   # the default d


@pytest.mark.parametrize("argv, flag", [
    (["schedule-risk", "--batch-size", "64", "--lr", "1", "--total-steps", "0"], "--total-steps"),
    (["schedule-risk", "--batch-size", "64", "--lr", "1", "--total-steps", "9",
      "--decay-factor", "-1"], "--decay-factor must be >= 0"),
    (["schedule-risk", "--batch-size", "64", "--lr", "1", "--total-steps", "9", "--schedule",
      "step", "--boundaries", "20"], "--boundaries must be"),
    (["optimize-schedule", "--batch-size", "16", "--pieces", "0"], "--pieces"),
    (["sweep", "--batch-sizes", "0", "64"], "--batch-sizes: expected a batch size >= 1"),
    (["sweep", "--batch-sizes", "0.5"], "--batch-sizes: expected a batch size >= 1"),
    (["risk", "--lr", "0.1", "--batch-size", "4", "--steps", "-1"], "--steps"),
    (["lower-bound", "--batch-size", "inf"], "--batch-size must be finite"),
    (["tune", "--batch-size", "4", "--momentum", "0.5", "--ema", "tune"], "--momentum=0.5"),
    (["--target", "-1", "steps", "--lr", "0.1", "--batch-size", "4"], "--target must be > 0"),
])
def test_errors_name_the_flags_typed(capsys, argv, flag):
    """A bad value is reported with the flag the user typed, never the Python argument behind it
    (``--total-steps 0`` once said ``decay_steps must be ...``)."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and flag in line and "Traceback" not in line
    assert re.search(r"(?<!-)\b[a-z]+_[a-z_]+\b", line) is None, line   # no API name left


def test_every_subcommand_has_a_description():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in subs.choices.items():
        assert p.description and len(p.description) > 40, name
        assert "".join(p.description.split()) in "".join(p.format_help().split()), name


def test_lower_bound_table_aligned(capsys):
    code, out, _ = _run(capsys, "lower-bound", "--batch-size", "64")
    assert code == 0 and "effective_dimension" in out
    assert len({line.index(":") for line in out.splitlines()}) == 1, out


def test_schedule_risk_warns_above_the_stability_limit(capsys):
    argv = ["schedule-risk", "--batch-size", "64", "--total-steps", "200", "--schedule", "constant"]
    code, out, err = _run(capsys, *argv, "--lr", "3")
    assert code == 0 and "warning" in err and "stability limit 2" in err and "200 of 200" in err
    code, out, err = _run(capsys, *argv, "--lr", "1", "--warmup", "10")
    assert code == 0 and err == ""


def test_no_progress_bar_off_a_terminal(capsys):
    # stderr is not a terminal here (captured): no bar although --quiet is not given
    code, out, err = _run(capsys, "schedule-sweep", "--batch-sizes", "16", "--powers", "0",
                          "--pieces", "2")
    assert code == 0 and "2^4" in out and err == ""
