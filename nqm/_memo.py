"""Per-problem memo of results that depend only on an (immutable) NQM and plain arguments, so that
a job asking the same question twice (the S_min ladder re-tuning cells a sweep tuned, E_min of SGD
as the start of tuned momentum's) computes it once. Entries live as long as the problem object."""

from __future__ import annotations

import threading
import weakref

_MEMOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COMPUTING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # problem -> {key: Lock}
_LOCK = threading.Lock()


def memo(problem) -> dict:
    """The memo dict of ``problem`` (keys: tuples naming the computation and its arguments)."""
    with _LOCK:
        return _MEMOS.setdefault(problem, {})


def once(problem, key, compute):
    """``memo(problem)[key]``, computed by ``compute()`` when first asked for; a thread asking for
    it while another computes it waits for that result instead of computing it again."""
    done = memo(problem)
    if key not in done:
        with _LOCK:
            lock = _COMPUTING.setdefault(problem, {}).setdefault(key, threading.Lock())
        with lock:
            if key not in done:
                done[key] = compute()
    return done[key]
