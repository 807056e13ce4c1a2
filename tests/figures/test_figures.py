"""Every figure script runs in --quick mode and writes a non-empty PNG (a full run adds a PDF);
the runner's command line (--only, --list, --json, --jobs, unknown names) behaves."""

import importlib
import json
import subprocess
import sys

import pytest

from figures import FIGURES
from figures.__main__ import main as run_all


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_quick_writes_a_png(name, tmp_path):
    module = importlib.import_module(f"figures.fig_{name}")
    files = module.main(["--quick", "--out", str(tmp_path), "--quiet"])
    assert [f.name for f in files] == [f"{name}.png"]           # --quick: no PDF
    png = tmp_path / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_runner_only_json_and_docs(tmp_path, capsys):
    docs = tmp_path / "docs"
    assert run_all(["--quick", "--out", str(tmp_path), "--only", "momentum_rate", "--json",
                    "--docs", str(docs)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in report["figures"]] == ["momentum_rate"]
    assert report["quick"] is True and report["total_seconds"] > 0
    small = docs / "momentum_rate.png"
    assert small.stat().st_size > 5_000
    assert small.stat().st_size < 150_000          # small enough for a README gallery


def test_runner_list_and_unknown_name(capsys):
    assert run_all(["--list"]) == 0
    assert set(FIGURES) <= set(capsys.readouterr().out.split())
    with pytest.raises(SystemExit, match="unknown figure name"):
        run_all(["--only", "fig99"])


def test_every_figure_module_exists_and_every_script_is_registered():
    from pathlib import Path

    import figures

    scripts = {p.stem[4:] for p in Path(figures.__file__).parent.glob("fig_*.py")}
    assert scripts == set(FIGURES)


def test_save_writes_png_and_pdf(tmp_path):
    from figures import _style as S

    with S.context():
        fig, axes = S.subplots()
        axes[0, 0].plot([1, 2, 4], [3, 1, 2])
        files = S.save(fig, tmp_path, "x")
    assert [f.name for f in files] == ["x.png", "x.pdf"]
    assert (tmp_path / "x.pdf").read_bytes()[:5] == b"%PDF-"


def test_runner_builds_figures_in_parallel_processes(tmp_path):
    """As users run it (``python -m``: the workers cannot import ``__main__``)."""
    names = ["momentum_rate", "momentum_vs_sgd"]
    out = subprocess.run([sys.executable, "-m", "figures", "--quick", "--out", str(tmp_path),
                          "--only", *names, "--jobs", "2", "--json"],
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    assert report["jobs"] == 2 and [f["name"] for f in report["figures"]] == names
    assert all((tmp_path / f"{n}.png").stat().st_size > 5_000 for n in names)
    with pytest.raises(SystemExit):
        run_all(["--jobs", "0"])
