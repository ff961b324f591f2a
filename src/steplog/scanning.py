"""``scan``: every run's history as one Polars LazyFrame, built from stable Polars APIs only.

Each run is one *part* (``ScanPart``): a compacted run is a ``pl.scan_parquet`` of its
``metrics.parquet`` (which holds ``run_id`` and ``name`` columns, so a filter on either is decided
by the row groups' statistics and the other runs' data pages are never read), a live run is its
history resolved from its events. The parts are aligned to one schema (the union of the metric
columns, null where a run did not log one) and concatenated in run order.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> for name in ("a", "b"):
    ...     with steplog.init(name=name, root=root) as run:
    ...         run.log({"loss": 1.0})
    >>> [part.name for part in scan_parts(roots.resolve_runs(None, root))]
    ['a', 'b']
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from . import format as fmt
from . import readcache, roots, store
from .model import current_rows, load_run
from .rankread import RANK_DTYPE, rank_events, ranks_history
from .reader import RunEvents, lazy_history, metric_col, read_events, read_many, resolve_history
from .sidecar import sidecar_metrics

_TIME = pl.Datetime("us", "UTC")
_RANK_0 = pl.lit(0, RANK_DTYPE).alias("rank")  # built once: a typed lit costs about 10 us
_BASE: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "name": pl.String(),
    "rank": RANK_DTYPE,
    "step": pl.Int64(),
    "wallclock": pl.Float64(),
    "time": _TIME,
}


@dataclass(frozen=True)
class ScanPart:
    """One run's share of a scan: its identity, its metric names in logged order, whether it is
    compacted, and ``frame``, its rows (``_BASE`` columns, then its own metrics) as a LazyFrame."""

    run_id: str
    name: str
    run_dir: roots.RunDir
    metrics: tuple[str, ...]
    compacted: bool
    #: None for a part that ``shares_scan``: its group's one Parquet scan reads it (``_frame_of``)
    frame: pl.LazyFrame | None
    #: compacted, of layout 2 (a name column) and with steps in order: it can share one Parquet scan
    #: with its neighbours of the same metrics (a damaged file then fails that scan as a whole)
    shares_scan: bool = False

    def aligned(self, schema: pl.Schema) -> pl.LazyFrame:
        """``frame`` with exactly ``schema``'s columns, in its order (metrics it lacks are null)."""
        present = [*_BASE, *self.metrics]
        assert self.frame is not None, "a part that shares a scan is read by _frame_of"
        return self.frame.select(
            [metric_col(c, present) if c in present else pl.lit(None, schema[c]).alias(c) for c in schema]
        )


def scan(root: roots.Root = "experiment_logs", runs: Iterable[str] | None = None) -> pl.LazyFrame:
    """Every run's history rows as one ``polars.LazyFrame``: columns ``run_id``, ``name``, ``rank``,
    ``step``, ``wallclock``, ``time``, then the union of the metric columns (null where a run
    did not log one). ``runs`` limits it to some runs (ids, id prefixes or names). ``rank`` is the
    process that logged the row: 0 for a single process, every rank of a multi-process run
    (``pl.col("rank") == 0`` keeps what ``history`` shows).

    Lazy where the data is large: a compacted run is a Parquet scan, so only the columns a query
    uses are read, and a filter on ``run_id`` or ``name`` skips the other runs' data pages (their
    footers are read). A run that is not compacted has its events parsed and its history resolved
    once, when ``scan`` is called.

    A compacted run whose ``metrics.parquet`` is missing, empty, not a file, cut short or of
    another size than its sidecar records is read from its archived events instead (or left
    out, where there are none), with a warning naming the file. Damage inside the file's data
    pages is found only when they are read: ``polars`` then raises; ``damaged_file_error`` names
    the file (``steplog.sql`` and the CLI do that for you), and ``steplog compact --rebuild RUN``
    rebuilds it.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> for name, lr in (("a", 0.1), ("b", 0.2)):
        ...     with steplog.init(name=name, config={"lr": lr}, root=root) as run:
        ...         run.log({"loss": 1.0}); run.log({"loss": lr})
        >>> steplog.scan(root).group_by("name").agg(pl.col("loss").min()).sort("name").collect().rows()
        [('a', 0.1), ('b', 0.2)]
    """
    parts = scan_parts(roots.resolve_runs(runs, root))
    metrics: dict[str, None] = {}
    for part in parts:
        metrics.update(dict.fromkeys(part.metrics))
    schema = pl.Schema({**_BASE, **dict.fromkeys(metrics, pl.Float64())})
    if not parts:
        return pl.LazyFrame(schema=schema)
    return pl.concat([_frame_of(group, schema) for group in _groups(parts)], how="vertical")


def _groups(parts: list[ScanPart]) -> list[list[ScanPart]]:
    """Consecutive parts one Parquet scan reads together (``ScanPart.shares_scan``, same metrics);
    every other part is a group of its own."""
    groups: list[list[ScanPart]] = []
    for part in parts:
        last = groups[-1][-1] if groups else None
        if last is not None and part.shares_scan and last.shares_scan and part.metrics == last.metrics:
            groups[-1].append(part)
        else:
            groups.append([part])
    return groups


def _frame_of(group: list[ScanPart], schema: pl.Schema) -> pl.LazyFrame:
    """One group's rows with ``schema``: its part's frame, or one Parquet scan over its files."""
    if group[0].frame is not None:
        return group[0].aligned(schema)
    frame = roots.scan_parquet([part.run_dir for part in group])
    first = group[0]
    return dataclasses.replace(first, frame=current_rows(frame, True)).aligned(schema)


def scan_parts(run_dirs: Iterable[roots.RunDir]) -> list[ScanPart]:
    """The ``ScanPart`` of each run directory holding a readable run, in the order given. A
    compacted run whose Parquet file fails ``parquet_problem`` is read from its archived events
    instead, or left out where there are none, with a warning naming the file.

    Example:
        >>> from pathlib import Path
        >>> scan_parts([Path("/no/such/run")])
        []
    """
    run_dirs = list(run_dirs)
    roots.prefetch(run_dirs)  # an object store's sidecars, read in parallel
    local = [run_dir for run_dir in run_dirs if isinstance(run_dir, Path)]
    # the local live runs' events are read together first: one parse of all their lines (issue 11)
    live = {id(run_dir): events for run_dir, events in zip(local, read_many([d / fmt.EVENTS_FILE for d in local]))}
    parts = []
    for run_dir in run_dirs:
        events, sidecar = live.get(id(run_dir)), None
        if events is None and isinstance(run_dir, Path):  # no events file: compacted, or not a run
            sidecar = readcache.sidecar(run_dir)
        if events is None and sidecar is None:  # on an object store, or only archived events
            events, sidecar = load_run(run_dir)
        if sidecar is not None:
            problem = parquet_problem(run_dir, sidecar) if isinstance(run_dir, Path) else None
            if problem is None:
                run_id, name = sidecar.get("run_id", run_dir.name), sidecar.get("name", run_dir.name)
                parts.append(_compacted_part(run_id, name, run_dir, sidecar))
                continue
            assert isinstance(run_dir, Path)  # only a local file is checked
            events = _fall_back(run_dir, problem)
        if events is None:
            continue
        head = events.start or {}
        parts.append(_live_part(head.get("run_id", run_dir.name), head.get("name", run_dir.name), run_dir, events))
    return parts


def _live_part(run_id: str, name: str, run_dir: roots.RunDir, events: RunEvents) -> ScanPart:
    """A live run's part: rank 0's history (``events``), and every other rank's, with a rank column."""
    if not isinstance(run_dir, Path) or _one_process(run_dir):
        key = ("part", run_id, name)
        if key not in events.memo:  # the same events as the last scan read (steplog.readcache): the same frame
            events.memo[key] = lazy_history(events).select(
                _text(run_id).alias("run_id"), _text(name).alias("name"), _RANK_0, pl.all()
            )
        return ScanPart(run_id, name, run_dir, tuple(events.metric_names), False, events.memo[key])
    ranks = {0: events, **rank_events(run_dir, others_only=True)}
    rows = ranks_history({rank: resolve_history(ev) for rank, ev in ranks.items()})
    metrics = tuple(dict.fromkeys(m for ev in ranks.values() for m in ev.metric_names))
    frame = rows.lazy().select(
        pl.lit(run_id, pl.String).alias("run_id"), pl.lit(name, pl.String).alias("name"), pl.all()
    )
    return ScanPart(run_id, name, run_dir, metrics, False, frame)


def _text(value: object) -> pl.Expr:
    """``value`` as a String literal: a str's lit is one without a dtype (a typed lit costs 5x more)."""
    return pl.lit(value) if isinstance(value, str) else pl.lit(None, pl.String)


def _one_process(run_dir: Path) -> bool:
    """Whether a run has no events file of a rank above 0 (``store.rank_files`` is rank 0's alone),
    from one listing of its folder (and of its archive, where it has one)."""
    try:
        names = os.listdir(run_dir)
        if fmt.ARCHIVE_DIR in names:
            names += os.listdir(run_dir / fmt.ARCHIVE_DIR)
    except OSError:
        return list(store.rank_files(run_dir)) == [0]
    return not any(fmt.RANK_EVENTS_PATTERN.match(name) for name in names)


def parquet_problem(run_dir: Path, sidecar: dict) -> str | None:
    """What is wrong with a compacted run's ``metrics.parquet``, seen cheaply (no data read):
    missing, not a file, empty, a size other than the sidecar's record, or no Parquet footer;
    None when it looks whole.

    Example:
        >>> parquet_problem(Path("/no/such/run"), {})
        'it is missing'
    """
    path = run_dir / fmt.PARQUET_FILE
    try:
        info = path.stat()
    except FileNotFoundError:
        return "it is missing"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    recorded = (sidecar.get("parquet") or {}).get("bytes")
    if not path.is_file():
        return "it is not a file"
    if info.st_size == 0:
        return "it is empty (0 bytes)"
    if isinstance(recorded, int) and info.st_size != recorded:
        return f"it holds {info.st_size:,} bytes where {fmt.SIDECAR_FILE} records {recorded:,}"
    files = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    return readcache.derived(("footer", path), files, lambda: _footer_problem(path, info.st_size))


def _footer_problem(path: Path, size: int) -> str | None:
    """None when ``path`` ends in a Parquet footer of a plausible length (8 bytes read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(size - 8, 0))
            tail = f.read(8)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if size < 12 or head != b"PAR1" or tail[4:] != b"PAR1" or int.from_bytes(tail[:4], "little") > size - 12:
        return "it has no readable Parquet footer"
    return None


def _fall_back(run_dir: Path, problem: str):  # -> RunEvents | None
    """The archived events of a run whose Parquet file is unusable (warned, naming the file), or None."""
    path = run_dir / fmt.PARQUET_FILE
    archived = run_dir / fmt.ARCHIVED_EVENTS_FILE
    try:
        events = read_events(archived)
    except (OSError, ValueError):
        warnings.warn(
            f"steplog: {path} is unusable ({problem}) and the run has no archived events to read "
            f"instead: run {run_dir.name} is left out of this scan",
            stacklevel=4,
        )
        return None
    warnings.warn(
        f"steplog: {path} is unusable ({problem}); run {run_dir.name} is read from {archived} instead; "
        f"{store.rebuild_hint(run_dir)}",
        stacklevel=4,
    )
    return events


def _compacted_part(run_id: str, name: str, run_dir: roots.RunDir, sidecar: dict) -> ScanPart:
    """A compacted run's part: its Parquet file, scanned. Files of sidecar layout 1 have no
    ``name`` column: it is added as a constant (such a run is skipped by a name filter only
    after its rows are read)."""
    columns = (sidecar.get("parquet") or {}).get("columns") or []
    metrics = sidecar_metrics(sidecar)
    if "name" in columns and "rank" in columns and sidecar.get("steps_sorted"):  # no frame of its own (0.25 ms)
        return ScanPart(run_id, name, run_dir, metrics, True, None, shares_scan=True)
    frame = roots.scan_parquet([run_dir])
    frame = current_rows(frame, bool(sidecar.get("steps_sorted")))
    if "name" not in columns:
        frame = frame.with_columns(pl.lit(name, pl.String).alias("name"))
    if "rank" not in columns:  # written before ranks: one process, rank 0
        frame = frame.with_columns(_RANK_0)
    return ScanPart(run_id, name, run_dir, metrics, True, frame)


def damaged_file_error(run_dirs: Iterable[Path], cause: BaseException) -> store.StoreError | None:
    """After collecting a scan failed with ``cause``: a ``StoreError`` naming the first compacted
    run whose ``metrics.parquet`` cannot be read through (each is read in full, on this error path
    only) and how to rebuild it; None when every file reads (the failure was elsewhere).

    Example:
        >>> damaged_file_error([Path("/no/such/run")], ValueError("x")) is None
        True
    """
    import pyarrow.parquet as pq

    for run_dir in run_dirs:
        path = run_dir / fmt.PARQUET_FILE
        if not (run_dir / fmt.SIDECAR_FILE).is_file() or not path.is_file():
            continue
        try:
            pq.read_table(path)
        except Exception as exc:  # whatever the decoder says, the file is damaged
            return store.storage_error(
                exc, f"run {run_dir.name}: a data page is damaged in", path, store.rebuild_hint(run_dir)
            )
    return None
