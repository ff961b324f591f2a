"""Compaction: a run that is over becomes ``metrics.parquet`` + ``run.json``, atomically and idempotently.

``compact(root)`` folds every run that is ``finished``, ``failed`` or ``crashed`` (never a
``running`` one) into two derived files in its run directory, then moves the events file to
``archive/events.jsonl`` so the run stays rebuildable from its events:

* ``metrics.parquet``: ``resolve_history(events, all_segments=True)`` with a ``run_id`` column in
  front: one row per (segment, step), rows superseded by a resume kept and marked ``superseded``.
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
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import orjson
import polars as pl
import pyarrow.parquet as pq

from . import format as fmt
from . import store
from .reader import RunEvents, metric_col, parse_events, resolve_history

#: Version of the sidecar layout, written into every ``run.json``; readers accept versions <= it.
SIDECAR_VERSION = 1
#: Rows per Parquet row group: large enough for fast scans, small enough to skip by statistics.
ROW_GROUP_SIZE = 131_072
#: The per-metric figures of ``summarize``, in order.
SUMMARY_FIELDS = ("count", "nan_count", "min", "max", "mean", "std", "first", "last", "step_of_min", "step_of_max")

#: The Polars type of each figure of ``SUMMARY_FIELDS``: counts and steps are Int64, values Float64.
SUMMARY_TYPES = {field: pl.Int64 if field in ("count", "nan_count", "step_of_min", "step_of_max") else pl.Float64
                 for field in SUMMARY_FIELDS}
_NOT_METRICS = frozenset({"run_id", "name", "segment", "superseded", "step", "wallclock", "time"})
_TMP = ".tmp"
_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)
_RUNNING = "running"  # how the detail of a run skipped for being written starts


# --- what a run holds, for sidecars and live runs alike -------------------------------------------


def summarize(history: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per-metric figures of a history frame (``steplog.history``): for each metric ``count``
    (steps that logged it, NaN included), ``nan_count``, ``min``/``max``/``mean``/``std`` (over the
    values that are not NaN; +-inf count; ``std`` with ddof=1), ``first``/``last`` (logged values,
    NaN included), ``step_of_min``/``step_of_max`` (the earliest step reaching the min/max).
    A figure with no value to take it from is None. NaN never is the min or max.

    Example:
        >>> h = pl.DataFrame({"step": [0, 1, 2], "loss": [3.0, float("nan"), 1.0]})
        >>> s = summarize(h)["loss"]
        >>> s["count"], s["nan_count"], s["min"], s["step_of_min"], s["last"]
        (3, 1, 1.0, 2, 1.0)
    """
    metrics = [c for c in history.columns if c not in _NOT_METRICS]
    if not metrics:
        return {}
    step = pl.col("step")
    figures = []
    for name in metrics:
        value = metric_col(name, history.columns)
        number = value.fill_nan(None)  # NaN never wins min/max, and stays out of mean/std
        logged = value.drop_nulls()
        figures.append(pl.struct(
            value.count().cast(pl.Int64).alias("count"),
            value.is_nan().sum().cast(pl.Int64).alias("nan_count"),
            number.min().alias("min"),
            number.max().alias("max"),
            number.mean().alias("mean"),
            number.std().alias("std"),
            logged.first().alias("first"),
            logged.last().alias("last"),
            step.filter(number == number.min()).first().alias("step_of_min"),
            step.filter(number == number.max()).first().alias("step_of_max"),
        ).alias(name))
    return history.select(figures).row(0, named=True)


def run_facts(run_dir: Path, events: RunEvents, history_all: pl.DataFrame | None = None) -> dict[str, Any]:
    """What a run's events say about it (everything of its sidecar but status, summary and file
    details), as JSON-ready values: ``run_id``, ``name``, ``config``, ``meta``, ``start_time``,
    ``end_time`` (Unix seconds; the last event while the run has no finish), ``duration_s``,
    ``num_steps``, ``first_step``, ``last_step``, ``num_rows`` (incl. superseded),
    ``superseded_rows``, ``finish`` (the current segment's finish event or None) and ``segments``
    (one dict per segment: start step, step range, rows, rows superseded, time span, finish).
    ``history_all`` is ``resolve_history(events, all_segments=True)`` when the caller has it.

    Example:
        >>> import tempfile, steplog
        >>> from steplog.reader import read_events
        >>> run = steplog.init(name="x", root=tempfile.mkdtemp())
        >>> run.log({"loss": 1.0}); run.log({"loss": 0.5}); run.finish()
        >>> facts = run_facts(run.dir, read_events(run.dir / "events.jsonl"))
        >>> facts["name"], facts["num_steps"], facts["last_step"], facts["finish"]["status"]
        ('x', 2, 1, 'finished')
    """
    if history_all is None:
        history_all = resolve_history(events, all_segments=True)
    start = events.start or {}
    finish = events.last_finish
    start_time = _number(start.get("time"))
    times = [t for t in (start_time, *(_number(c.get("time")) for c in events.controls)) if t is not None]
    if events.rows.height:
        times.append(events.rows["time"].max())
    end_time = finish.get("time") if finish else (max(times) if times else None)
    current = history_all.filter(~pl.col("superseded"))
    steps = current.select(pl.len().alias("n"), pl.col("step").min().alias("first"), pl.col("step").max().alias("last")).row(0)
    return {
        "run_id": start.get("run_id", run_dir.name),
        "name": start.get("name", run_dir.name),
        "format_version": start.get("v"),
        "config": events.config,
        "meta": start.get("meta") if isinstance(start.get("meta"), dict) else {},
        "start_time": start_time,
        "end_time": end_time,
        "duration_s": (end_time - start_time) if start_time is not None and _number(end_time) is not None else None,
        "num_steps": steps[0],
        "first_step": steps[1],
        "last_step": steps[2],
        "num_rows": history_all.height,
        "superseded_rows": history_all.height - steps[0],
        "finish": _finish_fields(finish),
        "segments": _segments(events, history_all, start),
    }


def current_rows(history_all: _Frame, steps_sorted: bool | None = None) -> _Frame:
    """The rows of an all-segments history (``resolve_history(events, all_segments=True)``, or
    ``metrics.parquet``, of one run or several) as ``steplog.history`` shows them: without the rows
    a resume superseded, sorted by step (within ``run_id`` when there is one). ``steps_sorted``
    says they are in step order already (a sidecar's ``steps_sorted``: no sort needed); None finds
    out (a DataFrame only). A resumed segment that logs steps below its start step needs the sort.

    Example:
        >>> h = pl.DataFrame({"segment": [0, 0, 1], "step": [0, 1, 1], "superseded": [False, True, False],
        ...                   "loss": [3.0, 2.0, 1.0]})
        >>> current_rows(h).rows()
        [(0, 3.0), (1, 1.0)]
    """
    current = history_all.filter(~pl.col("superseded")).drop("segment", "superseded")
    if steps_sorted is None:
        steps_sorted = bool(current["step"].is_sorted())
    if steps_sorted:
        return current
    keys = ["run_id", "step"] if "run_id" in current.collect_schema().names() else ["step"]
    return current.sort(keys, maintain_order=True)


def _segments(events: RunEvents, history_all: pl.DataFrame, start: dict[str, Any]) -> list[dict[str, Any]]:
    count = 1 + len(events.resumes)
    by_rows = {row["segment"]: row for row in history_all.group_by("segment").agg(
        pl.len().alias("rows"), pl.col("superseded").sum().cast(pl.Int64).alias("superseded_rows"),
        pl.col("step").min().alias("first_step"), pl.col("step").max().alias("last_step")).iter_rows(named=True)}
    by_time = {row["segment"]: row for row in events.rows.group_by("segment").agg(
        pl.col("time").min().alias("first_time"), pl.col("time").max().alias("last_time")).iter_rows(named=True)}
    finishes = {}
    for event in events.controls:
        if event.get(fmt.KIND) == fmt.FINISH:
            finishes[event.get("segment", 0)] = event
    opened = [start, *events.resumes]
    segments = []
    for index in range(max(count, 1 + max(by_rows, default=0))):
        control = opened[index] if index < len(opened) else {}
        rows = by_rows.get(index, {})
        finish = finishes.get(index)
        begin = _number(control.get("time"))
        end = _number(finish.get("time")) if finish else by_time.get(index, {}).get("last_time", begin)
        segments.append({
            "segment": index,
            "start_step": control.get("start_step") if index else None,
            "first_step": rows.get("first_step"),
            "last_step": rows.get("last_step"),
            "rows": rows.get("rows", 0),
            "superseded_rows": rows.get("superseded_rows", 0),
            "start_time": begin,
            "end_time": end,
            "durability": control.get("durability"),
            "meta": control.get("meta") if index and isinstance(control.get("meta"), dict) else None,
            "finish": _finish_fields(finish),
        })
    return segments


def _finish_fields(finish: dict[str, Any] | None) -> dict[str, Any] | None:
    if finish is None:
        return None
    return {"status": finish.get("status"), "time": _number(finish.get("time")), "error": finish.get("error"),
            "notes": finish.get("notes")}


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- the sidecar ------------------------------------------------------------------------------


def encode_summary(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A ``summarize`` result made JSON-safe: NaN and +-inf become the format's codes ``"nan"``,
    ``"inf"``, ``"-inf"`` (JSON has no such numbers). ``decode_summary`` undoes it.

    Example:
        >>> encode_summary({"loss": {"min": float("-inf"), "count": 2}})
        {'loss': {'min': '-inf', 'count': 2}}
    """
    return {name: {k: (fmt.nonfinite_code(v) if isinstance(v, float) and not math.isfinite(v) else v)
                   for k, v in figures.items()} for name, figures in summary.items()}


def decode_summary(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The inverse of ``encode_summary``.

    Example:
        >>> decode_summary({"loss": {"max": "inf", "count": 2}})
        {'loss': {'max': inf, 'count': 2}}
    """
    return {name: {k: (fmt.decode_nonfinite(v) if isinstance(v, str) and SUMMARY_TYPES.get(k) == pl.Float64 else v)
                   for k, v in figures.items()} for name, figures in summary.items()}


def read_sidecar(run_dir: Path) -> dict[str, Any] | None:
    """The sidecar (``run.json``) of a run directory, or None when it is missing, damaged or of a
    newer layout than this steplog reads. The summary comes back decoded (NaN/inf as floats).

    Example:
        >>> read_sidecar(Path("/no/such/run")) is None
        True
    """
    sidecar = store.raw_sidecar(run_dir)
    if not isinstance(sidecar.get("sidecar_version"), int) \
            or sidecar["sidecar_version"] > SIDECAR_VERSION or not isinstance(sidecar.get("summary"), dict):
        return None
    try:
        sidecar["summary"] = decode_summary(sidecar["summary"])
    except (ValueError, AttributeError):
        return None
    return sidecar


# --- compaction -------------------------------------------------------------------------------


def compact(root: str | os.PathLike = "experiment_logs", runs: Iterable[str] | None = None, *,
            quiet: bool = False) -> list[str]:
    """Compact every run under ``root`` that is over (or only ``runs``: ids, id prefixes or names)
    and return the ids of the runs compacted, oldest first.

    Running runs are never touched; they and the runs that cannot be compacted (no readable start
    event, a write error) are reported on stderr with the reason, one line each. Runs already
    compacted are skipped; a run whose events changed since (resumed) is compacted again.
    Progress goes to stderr: a bar on a terminal, else one line per run; ``quiet=True`` silences it.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", root=root).finish()
        >>> len(compact(root, quiet=True))
        1
    """
    return [run_dir.name for run_dir, outcome, _ in compact_each(root, runs, quiet=quiet) if outcome == "compacted"]


def compact_each(root: str | os.PathLike = "experiment_logs", runs: Iterable[str] | None = None, *,
                 quiet: bool = False) -> list[tuple[Path, str, str]]:
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
    dirs = store.resolve_runs(runs, root)
    progress = _Progress(len(dirs), quiet)
    outcomes = []
    for run_dir in dirs:
        outcome, detail = compact_run(run_dir)
        outcomes.append((run_dir, outcome, detail))
        progress.update(run_dir, outcome, detail)
    progress.close()
    return outcomes


def is_failure(outcome: str, detail: str) -> bool:
    """Whether a ``compact_run`` outcome means the run could not be compacted: skipped for any
    reason but being written (a running run is skipped by design).

    Example:
        >>> is_failure("skipped", "running (pid 12 on host vm)"), is_failure("skipped", "no readable start event")
        (False, True)
    """
    return outcome == "skipped" and not detail.startswith(_RUNNING)


def compact_run(run_dir: Path) -> tuple[str, str]:
    """Compact one run directory. Returns (outcome, detail): ``("compacted", what)``,
    ``("current", ...)`` when it already is, or ``("skipped", why)``.

    Example:
        >>> compact_run(Path("/no/such/run"))
        ('skipped', 'no events file (events.jsonl) and no sidecar to go on')
    """
    action, detail, source, sidecar = _decide(run_dir)
    if action == "current":
        if (run_dir / fmt.LOCK_FILE).exists():  # left by a compaction killed after its last rename
            try:
                store.acquire_lock(run_dir, time.time())  # takes over only a stale lock
                store.release_lock(run_dir)
            except store.RunLockedError:
                pass
        return action, detail
    if source is None:
        return action, detail
    try:
        store.acquire_lock(run_dir, time.time())  # keeps writers (resume) out while we work
    except store.RunLockedError as exc:
        return "skipped", f"{_RUNNING} ({exc})"
    try:
        return _compact_locked(run_dir, source, sidecar)
    except OSError as exc:
        return "skipped", f"could not write its compacted files ({exc}); its events are untouched"
    finally:
        for name in (fmt.PARQUET_FILE, fmt.SIDECAR_FILE):
            _remove(run_dir / (name + _TMP))
        store.release_lock(run_dir)


def _decide(run_dir: Path) -> tuple[str, str, Path | None, dict[str, Any] | None]:
    """(action, why, events file to compact from, sidecar): ``"current"`` or ``"skipped"`` with no
    events file, or ``"compact"`` with the file (whether a writer holds the run is not checked)."""
    events_path = run_dir / fmt.EVENTS_FILE
    archived = run_dir / fmt.ARCHIVED_EVENTS_FILE
    sidecar = read_sidecar(run_dir)
    if events_path.exists():
        why = "its events changed since it was compacted (resumed)" if sidecar is not None else "not compacted yet"
        return "compact", why, events_path, sidecar
    if sidecar is not None and _parquet_matches(run_dir, sidecar):
        return "current", "already compacted", None, sidecar
    if not archived.exists():
        return "skipped", f"no events file ({fmt.EVENTS_FILE}) and no sidecar to go on", None, sidecar
    # derived files missing or damaged: rebuild them from the archived events
    return "compact", f"its compacted files are missing or damaged; rebuilt from {fmt.ARCHIVED_EVENTS_FILE}", \
        archived, sidecar


def plan_compaction(root: str | os.PathLike = "experiment_logs", runs: Iterable[str] | None = None
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
    for run_dir in store.resolve_runs(runs, root):
        action, why, source, _ = _decide(run_dir)
        if source is not None:
            if store.writer_is_alive(run_dir):
                lock = store.read_lock(run_dir)
                who = f"pid {lock.pid} on host {lock.host}" if lock else "another process"
                action, why = "skipped", f"{_RUNNING} (written by {who})"
            else:
                status = store.current_status(run_dir) if source.parent == run_dir else "archived events"
                why = f"{status}, {_size(source.stat().st_size)} of events; {why}"
        plan.append((run_dir, action, why))
    return plan


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if count < 1024:
            return f"{count:,} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def _compact_locked(run_dir: Path, source: Path, sidecar: dict[str, Any] | None) -> tuple[str, str]:
    fmt.cut_zero_tail(source)  # what a crashed "mmap" writer reserved and never filled
    data = source.read_bytes()
    checksum = hashlib.sha256(data).hexdigest()
    recorded = (sidecar or {}).get("events") or {}
    if (source.name == fmt.EVENTS_FILE and source.parent == run_dir and recorded.get("bytes") == len(data)
            and recorded.get("sha256") == checksum and _parquet_matches(run_dir, sidecar)):
        _archive_events(run_dir)  # an earlier compaction stopped just before the move
        return "compacted", "finished an interrupted compaction"
    events = parse_events(data, source)
    if events.start is None:
        return "skipped", f"{source} has no readable start event; left as it is"
    finish = events.last_finish
    # We hold the writer lock, so no writer is alive: a run without a finish event crashed.
    status = finish.get("status") if finish and finish.get("status") in (fmt.FINISHED, fmt.FAILED) else fmt.CRASHED
    history_all = resolve_history(events, all_segments=True)
    # One row per distinct (segment, step) of the events. Equal counts prove it without hashing:
    # history rows are distinct pairs, and there are never more pairs than events.
    expected_rows = (history_all.height if history_all.height == events.rows.height
                     else events.rows.select("segment", "step").n_unique())
    if history_all.height != expected_rows:
        return "skipped", f"history has {history_all.height} rows but the events hold {expected_rows} (segment, step) pairs"
    facts = run_facts(run_dir, events, history_all)
    table = history_all.select(pl.lit(facts["run_id"], pl.String).alias("run_id"), pl.all())
    steps_sorted = bool(history_all.filter(~pl.col("superseded"))["step"].is_sorted())
    current = current_rows(history_all, steps_sorted)

    def verify(tmp: Path) -> None:
        written = pq.read_metadata(tmp)
        if written.num_rows != expected_rows or written.schema.names != table.columns:
            raise _NotVerified(f"the Parquet file written holds {written.num_rows} rows, expected {expected_rows}; "
                               f"events untouched")

    try:
        parquet = write_atomically(run_dir / fmt.PARQUET_FILE, lambda f: table.write_parquet(
            f, compression="zstd", statistics=True, row_group_size=ROW_GROUP_SIZE), check=verify)
    except _NotVerified as exc:
        return "skipped", str(exc)
    sidecar = {
        "sidecar_version": SIDECAR_VERSION,
        "status": status,
        **facts,
        "metrics": {name: "Float64" for name in events.metric_names},
        "steps_sorted": steps_sorted,
        "summary": encode_summary(summarize(current)),
        "parquet": {"file": fmt.PARQUET_FILE, "rows": table.height, "bytes": parquet.stat().st_size,
                    "columns": table.columns, "compression": "zstd", "row_group_size": ROW_GROUP_SIZE},
        "events": {"file": fmt.ARCHIVED_EVENTS_FILE, "bytes": len(data), "sha256": checksum,
                   "metric_events": events.rows.height, "skipped_lines": events.skipped_lines,
                   "torn_tail_bytes": events.torn_tail_bytes},
        "compacted_at": time.time(),
    }
    write_atomically(run_dir / fmt.SIDECAR_FILE, orjson.dumps(sidecar, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    if source.parent == run_dir:
        _archive_events(run_dir)
    return "compacted", f"{facts['num_steps']:,} steps, {status}"


def _parquet_matches(run_dir: Path, sidecar: dict[str, Any] | None) -> bool:
    try:
        return (run_dir / fmt.PARQUET_FILE).stat().st_size == (sidecar or {}).get("parquet", {}).get("bytes")
    except (OSError, AttributeError):
        return False


def _archive_events(run_dir: Path) -> None:
    archive = run_dir / fmt.ARCHIVE_DIR
    archive.mkdir(exist_ok=True)
    os.replace(run_dir / fmt.EVENTS_FILE, archive / fmt.EVENTS_FILE)
    store.fsync_directory(archive)
    store.fsync_directory(run_dir)


def write_atomically(path: str | os.PathLike, content: bytes | Callable[[BinaryIO], None], *,
                     check: Callable[[Path], None] | None = None) -> Path:
    """Write ``path`` so that it is never seen half-written: ``content`` (bytes, or a function
    writing to the open binary file) goes to ``<path>.tmp`` in the same folder, is fsynced, checked
    by ``check(temporary path)`` if given (it raises to stop), renamed over ``path``, and the folder
    fsynced. On any error the temporary file is removed; an OSError names ``path`` (``cannot write
    <path>: <reason>``), not the temporary file. Returns ``path``.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> write_atomically(target, b"hello").read_text()
        'hello'
        >>> write_atomically("/no/such/dir/notes.txt", b"x")
        Traceback (most recent call last):
        ...
        FileNotFoundError: [Errno 2] cannot write /no/such/dir/notes.txt: No such file or directory
    """
    path = Path(path)
    tmp = path.with_name(path.name + _TMP)
    try:
        with open(tmp, "wb") as f:
            if isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        reason = exc.strerror or str(exc).split(" (os error")[0]  # Polars: "<reason> (os error N): <path>"
        raise type(exc)(exc.errno, f"cannot write {path}: {reason}") from None
    finally:
        _remove(tmp)
    store.fsync_directory(path.parent)
    return path


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # gone already, or its folder is
        pass


class _NotVerified(Exception):
    """The Parquet file written does not hold what the events do."""


class _Progress:
    """Compaction progress on stderr: a bar on a terminal, else one line per run; silent if quiet."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.done = total, quiet, 0
        self.counts = {"compacted": 0, "current": 0, "skipped": 0}
        self.tty = not quiet and sys.stderr.isatty()
        self.stream = sys.stderr

    def update(self, run_dir: Path, outcome: str, detail: str) -> None:
        self.done += 1
        self.counts[outcome] += 1
        if self.quiet:
            return
        line = f"steplog compact [{self.done}/{self.total}] {run_dir.name} ({store.run_name(run_dir)}): {outcome}: {detail}"
        if not self.tty:
            if outcome != "current":
                print(line, file=self.stream, flush=True)
            return
        if outcome == "skipped":
            print("\r\033[K" + line, file=self.stream)
        width = 30
        filled = width * self.done // max(self.total, 1)
        self.stream.write(f"\r\033[Ksteplog compact [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                          f"({self.counts['compacted']} compacted, {self.counts['skipped']} skipped)")
        self.stream.flush()

    def close(self) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\n")
        print(f"steplog compact: {self.counts['compacted']} compacted, {self.counts['current']} already compacted, "
              f"{self.counts['skipped']} skipped", file=self.stream, flush=True)
