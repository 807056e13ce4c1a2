"""nqm._pipe: the three command lines (nqm, nnbench, figures) end quietly, status 0, when the reader
of their output is gone (``... | head``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

COMMANDS = {
    "nqm": ["-m", "nqm", "--quiet", "--bins", "10", "sweep", "--powers", "0", "--json"],
    "nnbench": ["-m", "nnbench", "workloads", "--json"],
    "figures": ["-m", "figures", "--list"],
}


@pytest.mark.parametrize("name", ["nnbench", "figures"])    # nqm: test_piped_into_head
def test_reader_gone_before_the_output(name):
    # The reader closes the pipe before the command writes (as `head` does once it has its lines):
    # every write then fails, whatever the size of the output.
    proc = subprocess.Popen([sys.executable, *COMMANDS[name]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=ENV)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell and head")
def test_piped_into_head():
    cmd = " ".join([sys.executable, *COMMANDS["nqm"]]) + ' | head -2; echo "status ${PIPESTATUS[0]}"'
    run = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=ROOT, env=ENV,
                         timeout=120)
    assert run.stdout.splitlines() == ["{", '  "optimizer": "sgd",', "status 0"]
    assert run.stderr == ""
