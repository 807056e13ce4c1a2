"""Keep numba's on-disk cache of a kernel package consistent across its files.

numba's cache (``cache=True``) keys a compiled kernel on its own source file only. A kernel that
calls a kernel of another file carries the callee's compiled code inside its own cache entry, so
after an edit of the callee the caller would keep running the old callee. ``drop_stale_cache``
closes that gap for a whole package: it hashes the sources of the package's modules (SHA-256 over
every ``*.py`` file of the package directory, in name order) and compares the digest with the stamp
file ``kernel-sources.sha256`` stored beside the cache files. When they differ (or there is no
stamp yet) it deletes the package's cache files (``<module>.*.nbi`` index and ``*.nbc`` data files
of the package's modules, nothing else in the directory) and writes the new stamp; every kernel is
then recompiled once, on its first call. With unchanged sources nothing is touched and numba loads
the cache as usual.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from numba.core.registry import CPUDispatcher

STAMP_NAME = "kernel-sources.sha256"
_CACHE_SUFFIXES = (".nbi", ".nbc")


def source_digest(package_dir: Path) -> str:
    """SHA-256 (hex) of the names and contents of every ``*.py`` file in ``package_dir``."""
    h = hashlib.sha256()
    for path in sorted(Path(package_dir).glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _cache_dirs(package: str, package_dir: Path) -> set[Path]:
    """The directories numba caches the package's kernels in (its locator picks them: normally
    ``__pycache__`` beside the sources, else ``NUMBA_CACHE_DIR`` or a per-user directory)."""
    dirs = set()
    for name, module in list(sys.modules.items()):
        if name.startswith(package + ".") and module is not None:
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher) and obj.stats.cache_path:
                    dirs.add(Path(obj.stats.cache_path))
                    break                  # one locator per source file: one kernel tells
    return dirs or {package_dir / "__pycache__"}


def drop_stale_cache(package: str) -> bool:
    """Delete the numba cache files of the (imported) package ``package`` if its sources changed
    since the stamp was written, and write the new stamp. Call it from the package's
    ``__init__`` after importing its kernel modules, before any kernel runs. Returns True when
    cache files were dropped or a stamp was (re)written. A directory that cannot be written is
    left alone (numba then caches nothing there either)."""
    package_dir = Path(sys.modules[package].__file__).parent
    digest = source_digest(package_dir)
    stems = {p.stem for p in package_dir.glob("*.py")}
    changed = False
    for cache_dir in sorted(_cache_dirs(package, package_dir)):
        stamp = cache_dir / STAMP_NAME
        try:
            if stamp.read_text() == digest:
                continue
        except OSError:
            pass                                   # no stamp yet: treat the cache as stale
        try:
            for path in cache_dir.iterdir():
                if path.suffix in _CACHE_SUFFIXES and path.name.split(".", 1)[0] in stems:
                    path.unlink(missing_ok=True)
            tmp = cache_dir / f"{STAMP_NAME}.{os.getpid()}.tmp"
            tmp.write_text(digest)
            os.replace(tmp, stamp)                 # atomic: a concurrent reader sees old or new
            changed = True
        except OSError:
            pass
    return changed
