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
