"""Killing a running sweep, for the tests that it resumes: count its stored trials, SIGKILL it once one
is stored."""

import os
import signal
import sqlite3
import subprocess
import time


def stored_trials(path) -> int:
    """Trials in the store at ``path`` (0 while it or its schema does not exist yet)."""
    if not os.path.exists(path):
        return 0
    try:
        db = sqlite3.connect(path, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def sigkill_after_first_trial(cmd, store, timeout: float = 120.0) -> None:
    """Run ``cmd`` (a sweep writing ``store``) and SIGKILL it as soon as one trial is stored."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while stored_trials(store) < 1:
            assert proc.poll() is None, f"sweep exited early: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, f"no trial stored within {timeout:g} s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
