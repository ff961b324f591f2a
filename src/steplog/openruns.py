"""The runs this process has open: flushed before a read from their own thread, closed at exit.

The writer registers each run it opens and forgets it when finished; the reader asks this module
to flush the runs under a directory before reading it. Neither imports the other.

Example:
    >>> import tempfile, steplog
    >>> run = steplog.init(root=tempfile.mkdtemp())
    >>> run in open_runs
    True
    >>> run.finish(); run in open_runs
    False
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

#: Runs opened by this process and not finished yet. Strong references on purpose: a run the
#: program dropped without finish() is still flushed and closed at interpreter exit.
open_runs: set[Any] = set()
#: Exceptions that reached sys.excepthook (uncaught: the program is ending because of them).
uncaught: list[BaseException] = []


def flush_open_runs(path: str | os.PathLike) -> None:
    """Flush every run this thread has open in directory ``path`` or below it, so that a read
    through the training loop's own thread sees all it logged (device values still waiting,
    buffered events). The reader calls it before reading an events file; with no open run it
    costs nothing. Runs opened by another thread are left alone: ``Run`` is not thread-safe, so a
    read from another thread sees what has been written.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(root=tempfile.mkdtemp())
        >>> run.log({"loss": 1.0})
        >>> flush_open_runs(run.dir)
        >>> (run.dir / "events.jsonl").read_bytes().count(b"\\n")  # the start event and the metric event
        2
        >>> run.finish()
    """
    if not open_runs:
        return
    where = os.path.realpath(path)
    inside = where.rstrip(os.sep) + os.sep
    me = threading.get_ident()
    for run in list(open_runs):
        if run._thread == me and (run._real_dir == where or run._real_dir.startswith(inside)):
            run.flush()


def install_excepthook() -> None:
    """Chain sys.excepthook once, to learn whether an uncaught exception is ending the program
    (``sys.last_value`` cannot tell: in a REPL it keeps any earlier error shown at the prompt).

    Example:
        >>> install_excepthook(); getattr(sys.excepthook, "_steplog", False)
        True
    """
    previous = sys.excepthook
    if getattr(previous, "_steplog", False):
        return

    def record_uncaught(exc_type, exc, tb):
        uncaught.append(exc)
        previous(exc_type, exc, tb)

    record_uncaught._steplog = True  # type: ignore[attr-defined]
    sys.excepthook = record_uncaught


@atexit.register
def _close_open_runs() -> None:
    """At interpreter exit, close runs the program left open: ``failed`` if an uncaught exception
    is ending the program, else ``finished``. A SIGKILL skips this: such runs read as crashed."""
    error = uncaught[-1] if uncaught else None
    for run in list(open_runs):
        try:
            if error is not None:
                run.fail(error)
            else:
                run.finish()
        except Exception:  # never mask the real exit
            pass
