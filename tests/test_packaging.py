"""Standing promises of the package layout."""

import subprocess
import sys


def test_import_nqm_does_not_import_torch():
    # nqm must stay usable without torch: a fresh interpreter imports it and checks sys.modules.
    code = "import sys, nqm; assert 'torch' not in sys.modules, 'nqm imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
