"""Compaction: a run that is over becomes ``metrics.parquet`` + ``run.json``, atomically and idempotently.

``compact(root)`` folds every run that is ``finished``, ``failed`` or ``crashed`` (never a
``running`` one) into two derived files in its run directory, then moves the events file to
``archive/events.jsonl`` so the run stays rebuildable from its events:

* ``metrics.parquet``: ``resolve_history(events, all_segments=True)`` with ``run_id`` and ``name``
  columns in front (so a filter on either skips other runs' row groups by their statistics): one
  row per (segment, step), rows superseded by a resume kept and marked ``superseded``.
  zstd, column statistics, row groups of ``ROW_GROUP_SIZE`` rows.
* ``run.json`` (the *sidecar*): what a run table needs without opening the Parquet file: id, name,
  status, config, metadata, times, steps, segments, the metric names and a summary per metric
  (``summarize``), and the size and SHA-256 of the events file that was compacted.

The order makes a kill harmless at any moment: Parquet to a temporary name, verified (row count
against the events) and renamed, then the sidecar the same way (``write_atomically``), then the
events file moved. Until that last rename the events file is where readers look, and a rerun
finishes the job. A run is
compacted again only when its events file differs from what its sidecar records.
docs/format.md describes both files.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="a", root=root) as run:
    ...     run.log({"loss": 2.0}); run.log({"loss": 1.0})
    >>> compact(root, quiet=True) == [run.id]
    True
    >>> sorted(p.name for p in run.dir.iterdir())
    ['archive', 'metrics.parquet', 'run.json']
    >>> compact(root, quiet=True)  # nothing left to do
    []
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from . import locks, runstatus, store
from .atomic import remove_file, remove_stale_temps, write_atomically
from .blockparse import BIG_FILE_BYTES, parse_by_blocks
from .compactfiles import (
    ROW_GROUP_SIZE,
    _archive_events,
    _clear_the_way,
    _expected_rows,
    _NotVerified,
    _parquet_matches,
    _raise_if_full,
    _sidecar_bytes,
    _write_parquet,
)
from .model import record_from_events
from .progress import Progress
from .rankread import final_statuses, rank_events, rank_facts, ranks_history
from .reader import RunEvents, parse_events, resolve_history
from .sidecar import SIDECAR_VERSION, read_sidecar  # noqa: F401  (SIDECAR_VERSION: read here by tests)

_OLD_TMP = ".tmp"  # the fixed temporary suffix of layout 1, removed when found
_RUNNING = "running"  # how the detail of a run skipped for being written starts


# --- compaction -------------------------------------------------------------------------------


def compact(
    root: str | os.PathLike = "experiment_logs",
    runs: Iterable[str] | None = None,
    *,
    quiet: bool = False,
    rebuild: bool = False,
) -> list[str]:
    """Compact every run under ``root`` that is over (or only ``runs``: ids, id prefixes or names)
    and return the ids of the runs compacted, oldest first.

    Running runs are never touched; they and the runs that cannot be compacted (no readable start
    event, a write error) are reported on stderr with the reason, one line each. Runs already
    compacted are skipped; a run whose events changed since (resumed) is compacted again.
    Progress goes to stderr (``steplog.progress``): a tqdm bar on a terminal when tqdm is installed,
    else one line per run; ``quiet=True`` silences it. ``rebuild=True`` rebuilds the compacted
    files of runs already compacted from their archived events (a damaged ``metrics.parquet``).
    A full disk raises ``steplog.StoreError`` naming the run and the file; the runs compacted
    before it stay compacted, and no partial file is left.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", root=root).finish()
        >>> len(compact(root, quiet=True))
        1
    """
    return [
        run_dir.name
        for run_dir, outcome, _ in compact_each(root, runs, quiet=quiet, rebuild=rebuild)
        if outcome == "compacted"
    ]


def compact_each(
    root: str | os.PathLike = "experiment_logs",
    runs: Iterable[str] | None = None,
    *,
    quiet: bool = False,
    rebuild: bool = False,
) -> list[tuple[Path, str, str]]:
    """``compact``, returning what happened to each run, oldest first: ``(run dir, outcome,
    detail)`` as ``compact_run`` returns them. ``is_failure`` tells the skipped runs that are an
    error (unwritable files, no start event) from those skipped because they are running.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", root=root).finish()
        >>> [(outcome, detail) for _, outcome, detail in compact_each(root, quiet=True)]
        [('compacted', '0 steps, finished')]
    """
    dirs = store.resolve_runs(runs, root, started=False)
    progress = Progress(
        "steplog compact", len(dirs), quiet=quiet, quiet_outcomes=("current",), loud_outcomes=("skipped",)
    )
    outcomes = []
    for run_dir in dirs:
        outcome, detail = compact_run(run_dir, rebuild=rebuild)
        outcomes.append((run_dir, outcome, detail))
        progress.update(f"{run_dir.name} ({store.run_name(run_dir)})", outcome, detail)
    progress.close(order=("compacted", "current", "skipped"), names={"current": "already compacted"})
    _update_catalog(root, [run_dir for run_dir, outcome, _ in outcomes if outcome == "compacted"])
    return outcomes


def _update_catalog(root: str | os.PathLike, compacted: list[Path]) -> None:
    """Bring the root's catalog (``steplog.catalog``) up to date with the runs just compacted. The
    catalog is derived data that readers check against the sidecars, so a failure warns and goes on."""
    if not compacted:
        return
    from . import catalog  # catalog reads sidecars as compaction writes them: it comes after compact

    try:
        catalog.update(root, list(map(os.fspath, compacted)))
    except OSError as exc:
        warnings.warn(
            f"steplog: could not update the catalog of {root} ({exc}); queries read the sidecars "
            f"instead; `steplog catalog --rebuild` makes it again",
            stacklevel=3,
        )


def is_failure(outcome: str, detail: str) -> bool:
    """Whether a ``compact_run`` outcome means the run could not be compacted: skipped for any
    reason but being written (a running run is skipped by design).

    Example:
        >>> is_failure("skipped", "running (pid 12 on host vm)"), is_failure("skipped", "no readable start event")
        (False, True)
    """
    return outcome == "skipped" and not detail.startswith(_RUNNING)


def compact_run(run_dir: Path, *, rebuild: bool = False) -> tuple[str, str]:
    """Compact one run directory. Returns (outcome, detail): ``("compacted", what)``,
    ``("current", ...)`` when it already is, or ``("skipped", why)``.

    Example:
        >>> compact_run(Path("/no/such/run"))
        ('skipped', 'no events file (events.jsonl) and no sidecar to go on')
    """
    action, detail, source, sidecar = _decide(run_dir, rebuild)
    if action == "current":
        if (run_dir / fmt.LOCK_FILE).exists():  # left by a compaction killed after its last rename
            try:
                locks.acquire_lock(run_dir, time.time())  # takes over only a stale lock
                locks.release_lock(run_dir)
            except locks.RunLockedError:
                pass
        return action, detail
    if source is None:
        return action, detail
    try:
        held = _lock_ranks(run_dir)  # keeps writers (resume) of every rank out while we work
    except locks.RunLockedError as exc:
        return "skipped", f"{_RUNNING} ({exc})"
    except OSError as exc:
        _raise_if_full(run_dir, run_dir / fmt.LOCK_FILE, exc)
        raise
    try:
        outcome = _compact_locked(run_dir, source, sidecar)
        if outcome[0] == "compacted":  # a skipped run's files, levels among them, are as they were
            _write_levels(run_dir)
        return outcome
    except store.StoreError:
        raise
    except OSError as exc:
        return "skipped", f"could not write its compacted files ({exc}); its events are untouched"
    finally:
        for name in (fmt.PARQUET_FILE, fmt.SIDECAR_FILE):
            remove_file(run_dir / (name + _OLD_TMP))
        remove_stale_temps(run_dir, every=True)  # we hold the lock: any temporary file left is a killed writer's
        for rank in held:
            locks.release_lock(run_dir, rank)


def _lock_ranks(run_dir: Path) -> list[int]:
    """Take the writer lock of every rank of the run (rank 0 first); all or none."""
    held: list[int] = []
    try:
        for rank in store.rank_files(run_dir):
            locks.acquire_lock(run_dir, time.time(), rank)
            held.append(rank)
    except locks.RunLockedError:
        for rank in held:
            locks.release_lock(run_dir, rank)
        raise
    return held


def _write_levels(run_dir: Path) -> None:
    """Write the dashboard's precomputed levels (``steplog.levels``) of a long run just compacted."""
    from .levels import LEVELS_MIN_ROWS, write_levels

    sidecar = read_sidecar(run_dir)
    if sidecar is None or (sidecar.get("num_rows") or 0) < LEVELS_MIN_ROWS:
        return
    try:
        write_levels(run_dir)
    except OSError as exc:  # derived data for the dashboard: it reads the Parquet file without them
        warnings.warn(
            f"steplog: could not write {run_dir / fmt.LEVELS_FILE} ({exc}); the dashboard reads "
            f"{fmt.PARQUET_FILE} instead",
            stacklevel=4,
        )


def _decide(run_dir: Path, rebuild: bool = False) -> tuple[str, str, Path | None, dict[str, Any] | None]:
    """(action, why, events file to compact from, sidecar): ``"current"`` or ``"skipped"`` with no
    events file, or ``"compact"`` with the file (whether a writer holds the run is not checked)."""
    events_path = run_dir / fmt.EVENTS_FILE
    archived = run_dir / fmt.ARCHIVED_EVENTS_FILE
    sidecar = read_sidecar(run_dir)
    if not events_path.exists() and _live_other_ranks(run_dir):  # a rank resumed after compaction
        events_path = archived
        sidecar = None
    if events_path.exists():
        why = "its events changed since it was compacted (resumed)" if sidecar is not None else "not compacted yet"
        return "compact", why, events_path, sidecar
    if rebuild and archived.exists():
        return "compact", f"rebuilt from {fmt.ARCHIVED_EVENTS_FILE} (--rebuild)", archived, sidecar
    if sidecar is not None and _parquet_matches(run_dir, sidecar):
        return "current", "already compacted", None, sidecar
    if not archived.exists():
        return "skipped", f"no events file ({fmt.EVENTS_FILE}) and no sidecar to go on", None, sidecar
    # derived files missing or damaged: rebuild them from the archived events
    return (
        "compact",
        f"its compacted files are missing or damaged; rebuilt from {fmt.ARCHIVED_EVENTS_FILE}",
        archived,
        sidecar,
    )


def plan_compaction(
    root: str | os.PathLike = "experiment_logs", runs: Iterable[str] | None = None
) -> list[tuple[Path, str, str]]:
    """What ``compact(root, runs)`` would do, without doing it: one ``(run dir, action, why)`` per
    run, oldest first, where action is ``"compact"`` (why: the run's status and events size, and
    why it needs it), ``"current"`` (already compacted) or ``"skipped"`` (why: running, or nothing
    to compact from). Reads only the last event of each events file.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", root=root).finish()
        >>> [(action, why.split(",")[0]) for _, action, why in plan_compaction(root)]
        [('compact', 'finished')]
    """
    plan = []
    for run_dir in store.resolve_runs(runs, root, started=False):
        action, why, source, _ = _decide(run_dir)
        if source is not None:
            alive = runstatus.live_ranks(run_dir)
            if alive:
                lock = locks.read_lock(run_dir, alive[0])
                who = f"pid {lock.pid} on host {lock.host}" if lock else "another process"
                action, why = "skipped", f"{_RUNNING} (written by {who})"
            else:
                status = runstatus.current_status(run_dir) if source.parent == run_dir else "archived events"
                why = f"{status}, {_size(source.stat().st_size)} of events; {why}"
        plan.append((run_dir, action, why))
    return plan


def _size(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{count:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _compact_locked(run_dir: Path, source: Path, sidecar: dict[str, Any] | None) -> tuple[str, str]:
    fmt.cut_zero_tail(source)  # what a crashed "mmap" writer reserved and never filled
    events, size, checksum = _read_source(source)
    recorded = (sidecar or {}).get("events") or {}
    if (
        source.name == fmt.EVENTS_FILE
        and source.parent == run_dir
        and recorded.get("bytes") == size
        and recorded.get("sha256") == checksum
        and _parquet_matches(run_dir, sidecar)
    ):
        _archive_events(run_dir)  # an earlier compaction stopped just before the move
        return "compacted", "finished an interrupted compaction"
    if events.start is None:
        return "skipped", f"{source} has no readable start event; left as it is"
    history_all = resolve_history(events, all_segments=True)
    expected_rows = _expected_rows(events, history_all)
    if history_all.height != expected_rows:
        return "skipped", (
            f"history has {history_all.height} rows but the events hold {expected_rows} (segment, step) pairs"
        )
    for rank, path in store.rank_files(run_dir).items():
        if rank and path.parent == run_dir:
            fmt.cut_zero_tail(path)  # as rank 0's above
    others = rank_events(run_dir, others_only=True)  # rank 0's is `events`, parsed above
    every_rank = {0: events, **others}
    statuses = final_statuses(every_rank)
    record = record_from_events(run_dir, events, runstatus.combine_statuses(statuses), history_all)
    histories = {0: history_all, **{rank: resolve_history(ev, all_segments=True) for rank, ev in others.items()}}
    expected_rows += sum(h.height for rank, h in histories.items() if rank)
    table = ranks_history(histories).select(
        pl.lit(record.run_id, pl.String).alias("run_id"), pl.lit(record.name, pl.String).alias("name"), pl.all()
    )
    ranks = _rank_entries(run_dir, every_rank, statuses, histories)
    _clear_the_way(run_dir)
    try:
        parquet = _write_parquet(run_dir / fmt.PARQUET_FILE, table, expected_rows)
    except _NotVerified as exc:
        return "skipped", str(exc)
    except (OSError, pl.exceptions.ComputeError) as exc:
        _raise_if_full(run_dir, run_dir / fmt.PARQUET_FILE, exc)
        raise
    files = {
        "parquet": {
            "file": fmt.PARQUET_FILE,
            "rows": table.height,
            "bytes": parquet.stat().st_size,
            "columns": table.columns,
            "compression": "zstd",
            "row_group_size": ROW_GROUP_SIZE,
        },
        "events": {
            "file": fmt.ARCHIVED_EVENTS_FILE,
            "bytes": size,
            "sha256": checksum,
            "metric_events": events.rows.height,
            "skipped_lines": events.skipped_lines,
            "torn_tail_bytes": events.torn_tail_bytes,
        },
    }
    try:
        write_atomically(run_dir / fmt.SIDECAR_FILE, _sidecar_bytes(record, files, ranks, table))
        _archive_events(run_dir)
    except OSError as exc:
        _raise_if_full(run_dir, run_dir / fmt.SIDECAR_FILE, exc)
        raise
    return "compacted", f"{record.num_steps:,} steps, {record.status}" + (f", {len(ranks)} ranks" if others else "")


def _read_source(source: Path) -> tuple[RunEvents, int, str]:
    """The events of the file a run is compacted from, its size and its SHA-256, from one read: a
    large file parsed by blocks as it is hashed (``blockparse``; its text is never held whole)."""
    hasher = hashlib.sha256()
    with open(source, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        found = parse_by_blocks(f, source, hasher=hasher) if size >= BIG_FILE_BYTES else None
        if found is not None:
            return found[0], size, hasher.hexdigest()
        f.seek(0)
        data = f.read()
    return parse_events(data, source), len(data), hashlib.sha256(data).hexdigest()


def _live_other_ranks(run_dir: Path) -> bool:
    """Whether a rank other than 0 has a live (not archived) events file."""
    return any(rank and path.parent == run_dir for rank, path in store.rank_files(run_dir).items())


def _rank_entries(
    run_dir: Path, events: dict[int, RunEvents], statuses: dict[int, str], histories: dict[int, pl.DataFrame]
) -> list[dict[str, Any]]:
    """The sidecar's ``ranks``: each rank's facts (``rank_facts``) with its metric names."""
    facts = rank_facts(run_dir, events, statuses)
    for entry in facts:
        entry["metrics"] = list(events[entry["rank"]].metric_names)
    return facts
