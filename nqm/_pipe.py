"""Command lines that end quietly when the reader of their output goes away (``... | head``).

Shared by the command lines of ``nqm``, ``nnbench`` and ``figures``: a closed pipe is not an error
of the command, so it exits with status 0 and no traceback (the Python documentation's recipe,
"Note on SIGPIPE", in the signal module).
"""

from __future__ import annotations

import functools
import os
import sys


def quiet_on_broken_pipe(main):
    """Wrap a ``main(argv) -> int`` so that a closed stdout ends it with status 0 and no traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()          # a pending write fails here, not at interpreter exit
            return status
        except BrokenPipeError:
            # Point stdout at devnull: Python flushes it again at exit and would report the
            # broken pipe a second time.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (AttributeError, OSError, ValueError):   # stdout is not a real file
                pass
            return 0

    return wrapper
