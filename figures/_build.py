"""Build one figure by name (in this process or in a worker of ``python -m figures --jobs N``;
a module of its own so that worker processes can import it: ``__main__`` is not importable)."""

from __future__ import annotations

import importlib
import time


def build(name: str, argv: list) -> tuple:
    """Run ``figures.fig_<name>.main(argv)``; returns (name, seconds, paths written)."""
    module = importlib.import_module(f"figures.fig_{name}")
    t0 = time.perf_counter()
    files = module.main(argv)
    return name, time.perf_counter() - t0, [str(f) for f in files]
