"""``import nqm`` loads nothing heavy; the command line loads no scipy.optimize / scipy.stats /
matplotlib until a command needs them; the lazy package still exposes the public API."""

import subprocess
import sys

import nqm


def _loaded(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_nqm_loads_no_numba_scipy_or_matplotlib():
    loaded = _loaded("import nqm")
    assert not {"numba", "scipy", "matplotlib"} & loaded


def test_command_line_loads_no_scipy_optimize_stats_or_matplotlib():
    loaded = _loaded("import nqm.cli")
    assert "nqm._kernels" in loaded or any(m.startswith("nqm._kernels") for m in loaded)
    assert not {"scipy.optimize", "scipy.stats", "matplotlib"} & loaded


def test_public_names_resolve():
    for name in nqm.__all__:
        assert getattr(nqm, name) is not None
    assert callable(nqm.risk) and nqm.risk.__module__ == "nqm.risk"     # the function, not module
    assert set(nqm.__all__) <= set(dir(nqm))


def test_kernels_run_without_scipy_linalg_and_numba_blas_still_works():
    """numba's start-up checks for BLAS by importing all of scipy.linalg; no nqm kernel uses BLAS,
    so nqm skips that import (nqm._kernels.blas_check). numba's np.dot imports it when compiled."""
    code = ("import sys, numpy as np, nqm; from numba import njit; "
            "nqm.e_min(nqm.NQM.paper(100, bins=5)); print('scipy.linalg' in sys.modules); "
            "print(njit(lambda a: np.dot(a, a))(np.arange(3.0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "5.0"]
