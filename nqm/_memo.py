"""Per-problem memo of results that depend only on an (immutable) NQM and plain arguments, so that
a job asking the same question twice (the S_min ladder re-tuning cells a sweep tuned, E_min of SGD
as the start of tuned momentum's) computes it once. Entries live as long as the problem object."""

from __future__ import annotations

import weakref

_MEMOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def memo(problem) -> dict:
    """The memo dict of ``problem`` (keys: tuples naming the computation and its arguments)."""
    try:
        return _MEMOS[problem]
    except KeyError:
        return _MEMOS.setdefault(problem, {})
