"""Reading an events file into Polars, forgiving what crashes leave behind.

* A torn last line (no newline yet: the writer is mid-append, or died mid-write) is ignored.
* A corrupt line elsewhere is skipped with a warning naming the file and the line number; every
  other event is kept. Reading never raises on damaged data (unless ``strict=True``).
* Reading while a writer appends gives a consistent prefix: whole lines only.

The fast path hands all metric lines to Arrow's multi-threaded JSON reader at once; only when that
fails (a damaged file) are lines checked one by one to find the bad ones.

Example:
    >>> import tempfile, steplog
    >>> run = steplog.init(root=tempfile.mkdtemp())
    >>> run.log({"loss": 1.0}); run.log({"loss": float("nan")}); run.finish()
    >>> events = read_events(run.dir / "events.jsonl")
    >>> events.rows.select("step", "loss").to_dicts()
    [{'step': 0, 'loss': 1.0}, {'step': 1, 'loss': nan}]
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from . import readcache
from .eventparse import _BASE_COLUMNS, CorruptEventsError, RunEvents, metric_col, parse_events  # noqa: F401
from .follow import follow  # noqa: F401  (its home was this module)
from .openruns import flush_open_runs


def read_events(path: str | Path, *, strict: bool = False) -> RunEvents:
    """Read an events file; see the module docstring for what is forgiven.

    ``strict=True`` raises CorruptEventsError at the first damaged line instead of skipping it.
    A run that this thread has open is flushed first, so that what it logged is read back.

    Example:
        >>> read_events("/no/such/events.jsonl")
        Traceback (most recent call last):
        ...
        FileNotFoundError: [Errno 2] No such file or directory: '/no/such/events.jsonl'
    """
    path = Path(path)
    flush_open_runs(path.parent)
    if strict:
        return parse_events(fmt.read_settled(path), path, strict=True)
    return readcache.read(path)


def read_many(paths: list[Path]) -> list[RunEvents | None]:
    """``read_events`` of several files (None for a file that does not exist), with one Arrow parse
    of all their metric lines instead of one per file: for many small live runs (``steplog.scan``)
    the parser's start-up, not the lines, was most of the cost (issue 11). Each run's ``rows`` is
    what ``read_events`` gives; only lines not parsed by an earlier read are parsed
    (``steplog.readcache``). A file with a
    damaged line, or files whose lines do not parse together, are read one by one as
    ``read_events`` reads them.

    Example:
        >>> import tempfile, steplog
        >>> root = Path(tempfile.mkdtemp())
        >>> for metric in ("loss", "acc"):
        ...     with steplog.init(name=metric, root=root) as run:
        ...         run.log({metric: 1.0})
        >>> events = read_many(sorted(root.glob("*/events.jsonl")) + [root / "missing.jsonl"])
        >>> [(e.start["name"], e.metric_names) for e in events[:2]], events[2]
        ([('loss', ['loss']), ('acc', ['acc'])], None)
    """
    paths = [Path(path) for path in paths]
    for path in dict.fromkeys(path.parent for path in paths):
        flush_open_runs(path)
    return readcache.read_many(paths)


def resolve_history(events: RunEvents, *, all_segments: bool = False) -> pl.DataFrame:
    """One row per step: the history of a run, from its raw event rows.

    For every step the values of the latest segment that logged it are kept: steps at or after a
    resume's start step, logged by an earlier segment, are superseded. Several events of one step
    in a segment are merged (the later value wins per key; ``wallclock``/``time`` of the first).
    With ``all_segments=True``, superseded rows are kept too: one row per (segment, step) with a
    ``segment`` column and a boolean ``superseded`` column.

    Columns: ``step`` (Int64), ``wallclock`` (Float64), ``time`` (Datetime UTC), then the metrics.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(root=tempfile.mkdtemp())
        >>> run.log({"loss": 1.0}, step=0); run.log({"acc": 0.5}, step=0); run.finish()
        >>> resolve_history(read_events(run.dir / "events.jsonl")).select("step", "loss", "acc").to_dicts()
        [{'step': 0, 'loss': 1.0, 'acc': 0.5}]
    """
    key = ("history", all_segments)
    if key not in events.memo:  # the events of a file not changed since the last query: its history too
        events.memo[key] = _resolve(events, all_segments)
    return events.memo[key].clone()  # a clone costs no copy, and a caller changing it changes only it


def _resolve(events: RunEvents, all_segments: bool) -> pl.DataFrame:
    rows = events.rows
    metrics = events.metric_names
    if not all_segments and _plain(events):
        return _plain_history(rows, metrics)  # the common case: nothing to supersede, merge or sort
    superseded = _superseded(rows, events.resumes)
    keys = ["segment", "step"] if all_segments else ["step"]
    if not all_segments and events.resumes:
        rows = rows.filter(~superseded)
    rows = rows.with_columns(superseded.alias("superseded")) if all_segments else rows
    if (not all_segments and not events.resumes) or not _strictly_increasing(rows, all_segments):
        aggregations = [pl.col("time").first(), pl.col("wallclock").first()]
        if all_segments:
            aggregations.append(pl.col("superseded").first())
        aggregations += [metric_col(m, rows.columns).drop_nulls().last() for m in metrics]
        rows = rows.group_by(keys, maintain_order=True).agg(aggregations).sort(keys)
    return rows.select(_history_columns(tuple(metrics), tuple(rows.columns), all_segments))


def _plain(events: RunEvents) -> bool:
    """Whether a run's history is its rows as they are: never resumed, steps strictly increasing
    (checked once per events read)."""
    if "plain" not in events.memo:
        events.memo["plain"] = not events.resumes and _strictly_increasing(events.rows, False)
    return events.memo["plain"]


def _plain_history(rows: pl.DataFrame, metrics: list[str]) -> pl.DataFrame:
    """``_history_columns``' select for rows that need nothing merged or superseded, made of Series
    operations: no query to plan (0.07 against 0.25 ms for a run of 500 steps, issue 11)."""
    time = (rows["time"] * 1_000_000).round().cast(pl.Int64).cast(pl.Datetime("us", "UTC")).alias("time")
    return pl.DataFrame([rows["step"], rows["wallclock"], time, *[rows[m].cast(pl.Float64) for m in metrics]])


def lazy_history(events: RunEvents) -> pl.LazyFrame:
    """``resolve_history(events)`` as a LazyFrame. Where nothing is superseded or merged (no
    resume, steps strictly increasing: the common case) no query runs now: the conversion is
    part of the caller's query, so a scan over many runs converts them all in its one query.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(root=tempfile.mkdtemp())
        >>> run.log({"loss": 1.0}); run.finish()
        >>> lazy_history(read_events(run.dir / "events.jsonl")).collect().select("step", "loss").rows()
        [(0, 1.0)]
    """
    if "lazy" not in events.memo:
        if not _plain(events):
            events.memo["lazy"] = resolve_history(events).lazy()
        else:
            rows = events.rows
            events.memo["lazy"] = rows.lazy().select(
                _history_columns(tuple(events.metric_names), tuple(rows.columns), False)
            )
    return events.memo["lazy"]


@functools.lru_cache(maxsize=256)
def _history_columns(metrics: tuple[str, ...], columns: tuple[str, ...], all_segments: bool) -> list[pl.Expr]:
    """The columns of a history, from rows of ``columns``: step, wallclock, time (UTC), metrics.
    Cached: the runs of a sweep share their columns, and building the expressions costs 0.4 ms."""
    base = [
        pl.col("step"),
        pl.col("wallclock"),
        pl.from_epoch((pl.col("time") * 1_000_000).round().cast(pl.Int64), time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("time"),
    ]
    if all_segments:
        base = [pl.col("segment"), *base, pl.col("superseded")]
    return [*base, *[metric_col(m, list(columns)).cast(pl.Float64) for m in metrics]]


def _superseded(rows: pl.DataFrame, resumes: list[dict[str, Any]]) -> pl.Expr:
    """True for the rows a later segment supersedes: at or after a later resume's start step, or
    of a step a later segment logged too."""
    if not resumes:
        return pl.lit(False)
    first_step = dict(rows.group_by("segment").agg(pl.col("step").first()).iter_rows())
    starts = {}
    for index, event in enumerate(resumes, start=1):
        segment = event.get("segment", index)
        start = event.get("start_step")
        starts[segment] = start if isinstance(start, int) else first_step.get(segment)
    cutoff: dict[int, int | None] = {}
    running: int | None = None
    for segment in range(max([*starts, *first_step]), -1, -1):
        cutoff[segment] = running
        start = starts.get(segment)
        if start is not None:
            running = start if running is None else min(running, start)
    limits = pl.col("segment").replace_strict(cutoff, default=None, return_dtype=pl.Int64)
    latest = pl.col("segment") == pl.col("segment").max().over("step")
    return (pl.col("step") >= limits).fill_null(False) | ~latest


def _strictly_increasing(rows: pl.DataFrame, all_segments: bool) -> bool:
    """Whether the rows' keys ((segment, step), or step) strictly increase: nothing to merge or sort.
    numpy, not a Polars query (10x) nor Arrow compute (2.5x): this runs once per run read (issue 11)."""
    import numpy as np

    if rows.height < 2:
        return True
    step_up = np.diff(rows["step"].to_numpy()) > 0
    if all_segments:
        segment_diff = np.diff(rows["segment"].to_numpy())
        step_up = (segment_diff > 0) | ((segment_diff == 0) & step_up)
    return bool(step_up.all())
