"""nnbench.cli: sweep / status / export / workloads, JSON output, clear errors."""

import argparse
import csv
import json
import subprocess
import sys

import pytest
import torch

from nnbench.cli import build_parser, main


@pytest.fixture(autouse=True)
def restore_threads():
    # `sweep` sets torch's thread count for its process; give the test process its own back.
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


SWEEP = ["sweep", "--workload", "teacher_fc", "--quick", "--optimizers", "sgd", "adam", "--batch-sizes", "32",
         "--trials", "2", "--max-steps", "40", "--eval-every", "20", "--device", "cpu", "--quiet"]


def test_sweep_status_export(tmp_path, capsys):
    store = str(tmp_path / "runs" / "nn.sqlite")
    assert main(SWEEP + ["--store", store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(s["optimizer"], s["batch_size"], s["trials_done"]) for s in out] == [("sgd", 32, 2), ("adam", 32, 2)]
    assert all(s["max_steps"] == 40 and s["workload"] == "teacher_fc" for s in out)

    assert main(["status", "--store", store, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert sorted(s["optimizer"] for s in status) == ["adam", "sgd"]
    assert main(["status", "--store", store]) == 0
    text = capsys.readouterr().out
    assert "teacher_fc" in text and "of 2" in text
    assert main(["status", "--store", store, "--workload", "other"]) == 0
    assert "no studies" in capsys.readouterr().out

    trials_csv, meas_csv = tmp_path / "t.csv", tmp_path / "m.csv"
    assert main(["export", "--store", store, "--out", str(trials_csv), "--measurements", str(meas_csv)]) == 0
    assert "wrote 4 trials" in capsys.readouterr().out
    rows = list(csv.DictReader(trials_csv.open()))
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"COMPLETE", "INCOMPLETE", "INFEASIBLE"}
    assert "hp_lr" in rows[0] and "hp_beta2" in rows[0]
    names = {r["name"] for r in csv.DictReader(meas_csv.open())}
    assert {"validation_accuracy", "train_loss", "lr", "train_time"} <= names

    # the text table of a (resumed: nothing left to run) sweep
    assert main(SWEEP + ["--store", store]) == 0
    text = capsys.readouterr().out
    assert "steps to validation accuracy >= 0.76" in text and "budget 40 steps" in text


def test_workloads_listing(capsys):
    assert main(["workloads"]) == 0
    text = capsys.readouterr().out
    assert "teacher_fc" in text and "needs --data-dir" in text
    assert main(["workloads", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["teacher_fc"]["needs_data_dir"] is False and listing["cifar10_resnet8"]["needs_data_dir"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["status", "--store", "{tmp}/missing.sqlite"], "no such file"),
        (["export", "--store", "{tmp}/missing.sqlite", "--out", "{tmp}/x.csv"], "no such file"),
        (SWEEP[:5] + ["nadam"] + SWEEP[7:] + ["--store", "{tmp}/s.sqlite"], "unknown optimizer"),
        (["sweep", "--workload", "mnist_simple_cnn", "--store", "{tmp}/s.sqlite", "--quiet"], "data-dir"),
        (SWEEP + ["--store", "{tmp}/s.sqlite", "--cpus-per-trial", "2"], "--cpus-per-trial needs --engine ray"),
        (SWEEP + ["--store", "{tmp}/s.sqlite", "--address", "auto", "--max-retries", "1"],
         "--address and --max-retries need --engine ray"),
        (SWEEP + ["--store", "{tmp}/s.sqlite", "--engine", "ray", "--gpus-per-trial", "-1"], "--gpus-per-trial"),
        (SWEEP + ["--store", "{tmp}/s.sqlite", "--engine", "ray", "--address", "auto", "--num-cpus", "2"],
         "drop --num-cpus or --address"),
        (SWEEP + ["--store", "{tmp}/s.sqlite", "--engine", "ray", "--device", "cuda"], "--gpus-per-trial"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, argv, match):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", ["--threads", "--batch-sizes", "--trials", "--max-steps", "--eval-every"])
def test_counts_must_be_positive_and_errors_name_the_flag(capsys, flag):
    with pytest.raises(SystemExit) as e:
        main(SWEEP + [flag, "0"])
    assert e.value.code == 2
    assert f"argument {flag}: expected a positive integer, got '0'" in capsys.readouterr().err


def test_failed_data_load_leaves_no_study(tmp_path, capsys):
    store = str(tmp_path / "s.sqlite")
    argv = ["sweep", "--workload", "mnist_simple_cnn", "--data-dir", str(tmp_path / "none"), "--store", store]
    assert main(argv) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["status", "--store", store]) == 2
    assert "no such file" in capsys.readouterr().err


def test_every_subcommand_has_a_description():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in subs.choices.items():
        assert p.description and len(p.description) > 40, name
        assert "%%" not in p.format_help(), name


def test_failed_trials_are_reported_and_the_exit_status_is_1(tmp_path, capsys, monkeypatch):
    import nnbench.trial

    real = nnbench.trial.run

    def flaky(*args, **kwargs):
        if kwargs["index"] == 1 and kwargs["optimizer"] == "adam":
            raise RuntimeError("CUDA out of memory, say")
        return real(*args, **kwargs)

    monkeypatch.setattr(nnbench.trial, "run", flaky)
    store = str(tmp_path / "s.sqlite")
    one = ["--ensemble", "1"]  # trials one at a time: through the replaced nnbench.trial.run
    assert main(SWEEP + one + ["--store", store]) == 1
    captured = capsys.readouterr()
    assert "(1 failed)" in captured.out
    assert captured.err.strip() == ("nnbench sweep: 1 trial(s) failed and are not stored as finished (the same "
                                    "command retries them); first, adam B=32 trial 1: RuntimeError: CUDA out "
                                    "of memory, say")
    monkeypatch.setattr(nnbench.trial, "run", real)
    assert main(SWEEP + one + ["--store", store, "--json"]) == 0  # the re-run retries it
    assert all(s["failures"] == {} and s["trials_done"] == 2 for s in json.loads(capsys.readouterr().out))


def test_ctrl_c_is_a_clean_exit(tmp_path, capsys, monkeypatch):
    import nnbench.study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nnbench.study, "run_sweep", interrupted)
    assert main(SWEEP + ["--store", str(tmp_path / "s.sqlite")]) == 130
    assert "interrupted; finished trials are in" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    assert main(SWEEP + ["--store", str(tmp_path / "s.sqlite"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_bad_ensemble_size_names_the_flag(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(SWEEP + ["--store", str(tmp_path / "s.sqlite"), "--ensemble", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--ensemble" in err and "positive integer or 'auto'" in err and "Traceback" not in err


def test_unknown_workload_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--workload", "imagenet"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "Quick start" in capsys.readouterr().out


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "nnbench", "sweep", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--quick" in out and "--device" in out and "--store" in out


def test_reading_results_needs_no_torch():
    # status / export read a store on any machine: the store, study and CLI modules import no torch
    code = "import sys, nnbench.cli, nnbench.study, nnbench.store; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_protocol_command(tmp_path, capsys):
    store = str(tmp_path / "p.sqlite")
    argv = ["protocol", "--workload", "teacher_fc", "--quick", "--optimizers", "sgd", "--batch-sizes", "256",
            "--first-round", "2", "--focus-round", "1", "--seeds", "2", "--max-steps", "40", "--target", "0.3",
            "--device", "cpu", "--quiet", "--store", store]
    assert main(argv + ["--json"]) == 0
    (out,) = json.loads(capsys.readouterr().out)
    assert (out["optimizer"], out["batch_size"]) == ("sgd", 256)
    assert out["rounds"]["search"]["counts"]["COMPLETE"] + out["rounds"]["search"]["counts"]["INCOMPLETE"] <= 2
    assert main(argv) == 0  # resumed: nothing re-run, the table printed
    assert "geometric grid" in capsys.readouterr().out
    assert main(argv[:-2] + ["--store", store, "--seeds", "1"]) == 2
    assert "--seeds" in capsys.readouterr().err
    # without --quiet, off a terminal: a line per finished study on stderr, no progress bar
    assert main([a for a in argv if a != "--quiet"][:-2] + ["--store", str(tmp_path / "q.sqlite")]) == 0
    err = capsys.readouterr().err
    assert "%|" not in err and "teacher_fc sgd B=256:" in err
