"""The status of a run and of its ranks: ``running`` while a writer holds the lock, ``finished`` or
``failed`` as the last ``finish`` event says, else ``crashed``; a run of several ranks combines
its ranks' statuses (``combine_statuses``), leaving out ranks of an earlier attempt.

Example:
    >>> import tempfile, steplog
    >>> run = steplog.init(root=tempfile.mkdtemp())
    >>> current_status(run.dir)
    'running'
    >>> run.finish(); current_status(run.dir)
    'finished'
"""

from __future__ import annotations

from pathlib import Path

import orjson

from . import format as fmt
from .locks import writer_is_alive
from .store import events_path, rank_files, raw_sidecar


def current_status(run_dir: Path) -> str:
    """The status of a run without reading all its events: the last event is a ``finish`` event
    exactly when the current segment has finished.

    Example:
        >>> current_status(Path("/no/such/run"))
        'crashed'
    """
    if not (run_dir / fmt.EVENTS_FILE).exists():  # compacted: the sidecar says, else the archived events do
        compacted = raw_sidecar(run_dir).get("status")
        if compacted in (fmt.FINISHED, fmt.FAILED, fmt.CRASHED):
            return compacted
    return run_status(run_dir, _finish_status(fmt.read_last_event(events_path(run_dir))))


def run_status(run_dir: Path, finish_status: str | None) -> str:
    """The status of a run given the status of rank 0's last ``finish`` event (None when its
    current segment has none): ``finished``/``failed`` as recorded, else ``running`` while its
    writer is alive, else ``crashed``; in a run of several ranks, combined with the others'
    (``rank_statuses``, ``combine_statuses``).

    Example:
        >>> run_status(Path("/no/such/run"), None)
        'crashed'
    """
    own = _rank_status(run_dir, 0, events_path(run_dir), finish_status)[0]
    others = [rank for rank in rank_files(run_dir) if rank]
    if not others:
        return own
    return combine_statuses(rank_statuses(run_dir, known={0: own}))


def rank_statuses(run_dir: Path, known: dict[int, str] | None = None) -> dict[int, str]:
    """``{rank: status}`` for every rank of the current attempt of a run: ``finished``/``failed``
    as its last event says, else ``running`` while its writer lives, else ``crashed``. Ranks left
    over from an earlier attempt (a restart with fewer ranks: their last segment's ``restart``
    count is below the newest) are left out. ``known`` gives statuses already found.

    Example:
        >>> rank_statuses(Path("/no/such/run"))
        {0: 'crashed'}
    """
    states = {}
    for rank, path in rank_files(run_dir).items():
        status = (known or {}).get(rank)
        last = fmt.read_last_event(path) or {}
        if status is None:
            status, again = _rank_status(run_dir, rank, path, _finish_status(last))
            last = last if again is None else again
        restart = last.get("restart") if last.get(fmt.KIND) == fmt.FINISH else None
        if restart is None and status == fmt.CRASHED:
            restart = _last_restart(path)
        states[rank] = (status, restart if isinstance(restart, int) else 0)
    newest = max((restart for status, restart in states.values() if status != fmt.RUNNING), default=0)
    return {
        rank: status
        for rank, (status, restart) in states.items()
        if status == fmt.RUNNING or restart >= newest or rank == 0
    }


def _finish_status(last: dict | None) -> str | None:
    """The ``status`` of ``last`` when it is a ``finish`` event (None otherwise, or for no event)."""
    return last.get("status") if last is not None and last.get(fmt.KIND) == fmt.FINISH else None


def _rank_status(run_dir: Path, rank: int, path: Path, finish_status: str | None) -> tuple[str, dict | None]:
    """The status of ``rank`` (events file ``path``) given the status of the last ``finish`` event a
    caller read (None: none was last): ``finished``/``failed`` as recorded, else ``running`` while its
    writer is alive, else the last event read again (the writer may have finished since the caller
    read it): ``finished``/``failed`` as it says, else ``crashed``. With the event read again, if any."""
    if finish_status in (fmt.FINISHED, fmt.FAILED):
        return finish_status, None
    if writer_is_alive(run_dir, rank):
        return fmt.RUNNING, None
    last = fmt.read_last_event(path) or {}
    status = _finish_status(last)
    return (status if status in (fmt.FINISHED, fmt.FAILED) else fmt.CRASHED), last


def _last_restart(path: Path) -> int:
    """The ``restart`` count of the last start or resume event of an events file (0 if none says)."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    for begin, end in reversed(fmt.control_line_spans(data)):
        try:
            event = orjson.loads(data[begin:end])
        except ValueError:
            continue
        if event.get(fmt.KIND) in (fmt.START, fmt.RESUME):
            restart = event.get("restart")
            return restart if isinstance(restart, int) else 0
    return 0


def combine_statuses(statuses: dict[int, str]) -> str:
    """One run's status from its ranks': ``running`` while any rank runs, else ``failed`` if any
    failed, else ``crashed`` if any died without finishing, else ``finished``.

    Example:
        >>> combine_statuses({0: "finished", 1: "crashed", 2: "finished"})
        'crashed'
    """
    for status in (fmt.RUNNING, fmt.FAILED, fmt.CRASHED):
        if status in statuses.values():
            return status
    return fmt.FINISHED


def live_ranks(run_dir: Path) -> list[int]:
    """The ranks of a run whose writer is alive now.

    Example:
        >>> live_ranks(Path("/no/such/run"))
        []
    """
    return [rank for rank in rank_files(run_dir) if writer_is_alive(run_dir, rank)]
