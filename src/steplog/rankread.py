"""Reading the ranks of a run: each rank's events, history and facts (host, status, steps).

A run written by several processes has one events file per rank (``events.jsonl`` for rank 0,
``events.rank<k>.jsonl`` for the others: ``store.rank_files``); a single process is rank 0 of a
world of 1. Merging happens here, at read time, in Polars: ``rank_history`` gives one rank's
history or every rank's with a ``rank`` column; ``rank_facts`` the per-rank rows of ``run_info``,
``runs()`` and the sidecar.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> for rank in (0, 1):
    ...     run = steplog.init(name="ddp", root=root, rank=rank, world_size=2, run_id="job-7")
    ...     run.log({"loss": 1.0 + rank}); run.finish()
    >>> rank_history(run.dir, "all").select("rank", "step", "loss").rows()
    [(0, 0, 1.0), (1, 0, 2.0)]
    >>> [(f["rank"], f["status"], f["steps"]) for f in rank_facts(run.dir)]
    [(0, 'finished', 1), (1, 'finished', 1)]
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from . import runstatus, store
from .openruns import flush_open_runs
from .reader import RunEvents, read_events, resolve_history

#: The dtype of the ``rank`` column (history, scan, metrics.parquet).
RANK_DTYPE = pl.Int32()


def check_rank(rank: Any) -> int | str:
    """``rank`` if it is a rank (an int >= 0) or ``"all"``, else an error naming it.

    Example:
        >>> check_rank("all"), check_rank(2)
        ('all', 2)
        >>> check_rank(-1)
        Traceback (most recent call last):
        ...
        ValueError: rank=-1 must be a rank (an int >= 0) or "all"
    """
    if rank == "all" or (isinstance(rank, int) and not isinstance(rank, bool) and rank >= 0):
        return rank
    raise ValueError(f'rank={rank!r} must be a rank (an int >= 0) or "all"')


def rank_events(run_dir: Path, *, others_only: bool = False) -> dict[int, RunEvents]:
    """``{rank: its events}`` for every rank file of a run (live or archived) that can be read,
    several files parsed at once in threads; ``others_only`` leaves rank 0's file unread (a
    caller that has read it: compaction read a 1,000,000-event file twice, issue 11).

    Example:
        >>> rank_events(Path("/no/such/run")), rank_events(Path("/no/such/run"), others_only=True)
        ({}, {})
    """
    files = store.rank_files(run_dir)
    if others_only:
        files.pop(0, None)
        if not files:
            return {}
    if len(files) == 1:
        return {rank: ev for rank, ev in zip(files, map(_read_or_none, files.values())) if ev is not None}
    flush_open_runs(run_dir)  # from this thread: the files' own reads run in a pool, where it would do nothing
    with ThreadPoolExecutor(min(len(files), os.cpu_count() or 1)) as pool:  # Arrow parses without the GIL
        read = list(pool.map(_read_or_none, files.values()))
    return {rank: ev for rank, ev in zip(files, read) if ev is not None}


def _read_or_none(path: Path) -> RunEvents | None:
    try:
        return read_events(path)
    except FileNotFoundError:  # not written yet, or moved by a compaction while we looked
        return None


def with_rank(history: pl.DataFrame, rank: int) -> pl.DataFrame:
    """``history`` with a ``rank`` column in front.

    Example:
        >>> with_rank(pl.DataFrame({"step": [0]}), 3).rows()
        [(3, 0)]
    """
    return history.select(pl.lit(rank, RANK_DTYPE).alias("rank"), pl.all())


def ranks_history(histories: dict[int, pl.DataFrame]) -> pl.DataFrame:
    """Ranks' histories (``{rank: history}``) as one frame with a ``rank`` column in front, ranks in
    the dict's order, metrics a rank did not log null.

    Example:
        >>> ranks_history({0: pl.DataFrame({"a": [1.0]}), 1: pl.DataFrame({"b": [2.0]})}).rows()
        [(0, 1.0, None), (1, None, 2.0)]
    """
    return pl.concat([with_rank(history, rank) for rank, history in histories.items()], how="diagonal_relaxed")


def rank_history(run_dir: Path, rank: int | str, all_segments: bool = False) -> pl.DataFrame:
    """The history of one rank of a live (not compacted) run, or of every rank (``"all"``) with a
    ``rank`` column, ranks in order, metrics a rank did not log null. An unknown rank is an error
    that lists the ranks there are.

    Example:
        >>> rank_history(Path("/no/such/run"), 1)
        Traceback (most recent call last):
        ...
        steplog.store.RunNotFoundError: run run has no rank 1 (ranks: none); pass one of them or rank="all"
    """
    if rank != "all":
        path = store.rank_files(run_dir).get(int(rank))
        if path is None or not path.exists():
            raise no_such_rank(run_dir, rank, sorted(r for r, p in store.rank_files(run_dir).items() if p.exists()))
        return resolve_history(read_events(path), all_segments=all_segments)
    histories = {r: resolve_history(events, all_segments=all_segments) for r, events in rank_events(run_dir).items()}
    if not histories:
        raise no_such_rank(run_dir, "all", [])
    return ranks_history(histories)


def no_such_rank(run_dir: Path | Any, rank: int | str, ranks: list[int]) -> store.RunNotFoundError:
    """The error for a rank a run does not have."""
    shown = ", ".join(map(str, ranks)) or "none"
    return store.RunNotFoundError(
        f'run {run_dir.name} has no rank {rank} (ranks: {shown}); pass one of them or rank="all"'
    )


def _head(events: RunEvents) -> dict[str, Any]:
    """The rank's latest start or resume event ({} where there is none)."""
    starts = (e for e in reversed([events.start or {}, *events.controls]) if e.get(fmt.KIND) in (fmt.START, fmt.RESUME))
    return next(starts, {})


def _restart(events: RunEvents) -> int:
    """The launcher's restart count of the rank's last segment (0 where none was recorded)."""
    restart = _head(events).get("restart")
    return restart if isinstance(restart, int) else 0


def _facts(rank: int, events: RunEvents, status: str) -> dict[str, Any]:
    """One rank's row: where it ran and how far it got (the latest start or resume event says where)."""
    head = _head(events)
    restart = head.get("restart")  # as _restart, from the same event
    meta: dict[str, Any] = head["meta"] if isinstance(head.get("meta"), dict) else {}
    steps = events.rows["step"] if events.rows.height else pl.Series([], dtype=pl.Int64)
    return {
        "rank": rank,
        "status": status,
        "host": meta.get("host"),
        "pid": meta.get("pid"),
        "local_rank": head.get("local_rank", 0),
        "device": head.get("device"),
        "world_size": head.get("world_size", 1),
        "restart": restart if isinstance(restart, int) else 0,
        "segments": 1 + len(events.resumes),
        "steps": int(steps.n_unique()),
        "last_step": None if steps.is_empty() else int(steps[-1]),
    }


def rank_facts(
    run_dir: Path, events: dict[int, RunEvents] | None = None, statuses: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """One dict per rank of the run, by rank: ``rank``, ``status``, ``host``, ``pid``,
    ``local_rank``, ``device``, ``world_size`` (as that rank was told), ``restart``, ``segments``,
    ``steps`` (distinct steps logged) and ``last_step`` (the last one logged). ``statuses`` None:
    as ``runstatus.rank_statuses`` says now; ranks left over from an earlier attempt with more ranks
    are left out.

    Example:
        >>> rank_facts(Path("/no/such/run"))
        []
    """
    events = rank_events(run_dir) if events is None else events
    statuses = runstatus.rank_statuses(run_dir) if statuses is None else statuses
    return [_facts(rank, ev, statuses[rank]) for rank, ev in sorted(events.items()) if rank in statuses]


def final_statuses(events: dict[int, RunEvents]) -> dict[int, str]:
    """The statuses of ranks no writer holds any more (compaction holds their locks): ``finished``
    or ``failed`` as each last segment's finish event says, else ``crashed``; ranks left over
    from an earlier attempt (their restart count below the newest) left out, rank 0 always kept.

    Example:
        >>> final_statuses({})
        {}
    """
    found = {}
    for rank, ev in events.items():
        finish = ev.last_finish
        status = finish.get("status") if finish else None
        found[rank] = (status if status in (fmt.FINISHED, fmt.FAILED) else fmt.CRASHED, _restart(ev))
    newest = max((restart for _, restart in found.values()), default=0)
    return {rank: status for rank, (status, restart) in found.items() if restart >= newest or rank == 0}


def world_size(facts: list[dict[str, Any]]) -> int:
    """The world size of a run's current attempt: rank 0's (else the largest any rank was told).

    Example:
        >>> world_size([{"rank": 0, "world_size": 4}]), world_size([])
        (4, 1)
    """
    sizes = [f.get("world_size") or 1 for f in facts if f["rank"] == 0] or [f.get("world_size") or 1 for f in facts]
    return max(sizes, default=1)
