"""nqm._kernels.cache: the stamp that keeps numba's on-disk cache consistent across kernel files.

The mechanism is tested on tiny temporary kernel packages (two modules, one kernel calling the
other; compiling them takes a fraction of a second), each run in a fresh interpreter, as a user
who edits a kernel and runs again would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nqm
from nqm import _kernels
from nqm._kernels.cache import STAMP_NAME, source_digest

REPO = Path(nqm.__file__).resolve().parent.parent

INNER = "from numba import njit\n\n\n@njit(cache=True)\ndef inner(x):\n    return x + 1.0\n"
OUTER = ("from numba import njit\n\nfrom {pkg}.inner import inner\n\n\n"
         "@njit(cache=True)\ndef outer(x):\n    return 2.0 * inner(x)\n")
INIT_GUARDED = ("from {pkg}.outer import outer  # noqa: F401\n"
                "from nqm._kernels.cache import drop_stale_cache\n\ndrop_stale_cache(__name__)\n")
INIT_PLAIN = "from {pkg}.outer import outer  # noqa: F401\n"

# prints outer(1.0) and numba's cache statistics of outer (the kernel called from Python)
PROBE = """
import json, sys
out = {}
for pkg in sys.argv[1:]:
    mod = __import__(pkg)
    value = mod.outer(1.0)
    st = mod.outer.stats
    out[pkg] = {"value": value, "hits": sum(st.cache_hits.values()),
                "misses": sum(st.cache_misses.values())}
print(json.dumps(out))
"""


def _make_package(root: Path, pkg: str, guarded: bool) -> Path:
    d = root / pkg
    d.mkdir()
    (d / "__init__.py").write_text((INIT_GUARDED if guarded else INIT_PLAIN).format(pkg=pkg))
    (d / "inner.py").write_text(INNER)
    (d / "outer.py").write_text(OUTER.format(pkg=pkg))
    return d


def _run(root: Path, *pkgs: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(REPO)]))
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", PROBE, *pkgs], capture_output=True, text=True,
                         env=env, check=True, cwd=root).stdout
    return json.loads(out)


def _edit_inner(pkg_dir: Path) -> None:
    path = pkg_dir / "inner.py"
    path.write_text(INNER.replace("x + 1.0", "x + 2.0"))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))   # a later edit, 10 s on


def _cache_files(pkg_dir: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (pkg_dir / "__pycache__").iterdir()
            if p.suffix in (".nbi", ".nbc")}


def test_editing_a_called_kernel_invalidates_its_callers_cache(tmp_path):
    guarded = _make_package(tmp_path, "kguarded", guarded=True)
    plain = _make_package(tmp_path, "kplain", guarded=False)
    first = _run(tmp_path, "kguarded", "kplain")
    assert first["kguarded"]["value"] == first["kplain"]["value"] == 4.0
    stamp = (guarded / "__pycache__" / STAMP_NAME).read_text()
    assert stamp == source_digest(guarded)
    foreign = guarded / "__pycache__" / "someone_else.f-1.py311.nbi"    # not the package's
    foreign.write_text("x")
    for d in (guarded, plain):
        _edit_inner(d)
    second = _run(tmp_path, "kguarded", "kplain")
    # with the stamp: the callers' cache is dropped, outer recompiled with the new inner
    assert second["kguarded"] == {"value": 6.0, "hits": 0, "misses": 1}
    assert (guarded / "__pycache__" / STAMP_NAME).read_text() == source_digest(guarded) != stamp
    assert foreign.exists()
    # without it, numba's own check (outer.py unchanged) serves the stale compiled caller
    assert second["kplain"] == {"value": 4.0, "hits": 1, "misses": 0}


def test_unchanged_sources_reuse_the_cache(tmp_path):
    pkg = _make_package(tmp_path, "kreuse", guarded=True)
    first = _run(tmp_path, "kreuse")
    assert first["kreuse"] == {"value": 4.0, "hits": 0, "misses": 1}
    files = _cache_files(pkg)
    stamp = pkg / "__pycache__" / STAMP_NAME
    stamp_mtime = stamp.stat().st_mtime_ns
    assert any(name.startswith("outer.outer-") for name in files)
    second = _run(tmp_path, "kreuse")
    assert second["kreuse"] == {"value": 4.0, "hits": 1, "misses": 0}    # loaded, not compiled
    assert _cache_files(pkg) == files and stamp.stat().st_mtime_ns == stamp_mtime


def test_nqm_kernels_carry_the_stamp_of_their_sources():
    """Importing nqm._kernels left a stamp equal to the digest of its current sources."""
    pkg_dir = Path(_kernels.__file__).parent
    cache_dir = Path(_kernels._steps_at.stats.cache_path)
    assert (cache_dir / STAMP_NAME).read_text() == source_digest(pkg_dir)
