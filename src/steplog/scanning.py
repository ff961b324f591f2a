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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from . import format as fmt
from . import roots
from .model import current_rows, load_run
from .reader import lazy_history, metric_col, read_many

_TIME = pl.Datetime("us", "UTC")
_BASE: dict[str, pl.DataType] = {"run_id": pl.String(), "name": pl.String(), "step": pl.Int64(),
                                  "wallclock": pl.Float64(), "time": _TIME}


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
        return self.frame.select([metric_col(c, present) if c in present else pl.lit(None, schema[c]).alias(c)
                                  for c in schema])


def scan(root: roots.Root = "experiment_logs", runs: Iterable[str] | None = None) -> pl.LazyFrame:
    """Every run's history rows as one ``polars.LazyFrame``: columns ``run_id``, ``name``,
    ``step``, ``wallclock``, ``time``, then the union of the metric columns (null where a run
    did not log one). ``runs`` limits it to some runs (ids, id prefixes or names).

    Lazy where the data is large: a compacted run is a Parquet scan, so only the columns a query
    uses are read, and a filter on ``run_id`` or ``name`` skips the other runs' data pages (their
    footers are read). A run that is not compacted has its events parsed and its history resolved
    once, when ``scan`` is called.

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
    """The ``ScanPart`` of each run directory holding a readable run, in the order given.

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
        if events is None:  # compacted, on an object store, or not a run
            events, sidecar = load_run(run_dir)
        if events is None and sidecar is None:
            continue
        head = sidecar if sidecar is not None else ((events.start if events is not None else None) or {})
        run_id, name = head.get("run_id", run_dir.name), head.get("name", run_dir.name)
        if sidecar is not None:
            parts.append(_compacted_part(run_id, name, run_dir, sidecar))
        else:
            assert events is not None
            frame = lazy_history(events).select(
                pl.lit(run_id, pl.String).alias("run_id"), pl.lit(name, pl.String).alias("name"), pl.all())
            parts.append(ScanPart(run_id, name, run_dir, tuple(events.metric_names), False, frame))
    return parts


def _compacted_part(run_id: str, name: str, run_dir: roots.RunDir, sidecar: dict) -> ScanPart:
    """A compacted run's part: its Parquet file, scanned. Files of sidecar layout 1 have no
    ``name`` column: it is added as a constant (such a run is skipped by a name filter only
    after its rows are read)."""
    columns = (sidecar.get("parquet") or {}).get("columns") or []
    metrics = tuple(sidecar.get("metrics") or ())
    if "name" in columns and sidecar.get("steps_sorted"):  # no frame of its own: building one costs 0.25 ms
        return ScanPart(run_id, name, run_dir, metrics, True, None, shares_scan=True)
    frame = roots.scan_parquet([run_dir])
    frame = current_rows(frame, bool(sidecar.get("steps_sorted")))
    if "name" not in columns:
        frame = frame.with_columns(pl.lit(name, pl.String).alias("name"))
    return ScanPart(run_id, name, run_dir, metrics, True, frame)
