"""Standing promises of the package layout."""

import subprocess
import sys


def test_import_nqm_does_not_import_torch():
    # nqm must stay usable without torch: a fresh interpreter imports it and checks sys.modules.
    code = "import sys, nqm; assert 'torch' not in sys.modules, 'nqm imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nnbench_exports_resolve_lazily():
    # `import nnbench` stays torch-free; every name in __all__ resolves to a real object.
    code = (
        "import sys, nnbench; assert 'torch' not in sys.modules, 'import nnbench imported torch'\n"
        "missing = [n for n in nnbench.__all__ if getattr(nnbench, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert nnbench.run_trial.__module__ == 'nnbench.trial'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
