"""What the dashboard shows, read through the query layer: the runs table, one run's page, and
metric series for an x range and a pixel width (downsampled, or only what is new since a cursor).

A run with an events file (running, or not yet compacted) is kept in memory as a ``LiveRun`` and
read incrementally; a compacted run is read from its Parquet file with the x range pushed down.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="a", root=root) as run:
    ...     for step in range(5):
    ...         run.log({"loss": 5.0 - step})
    >>> data = Data(root)
    >>> [(r["name"], r["status"], r["steps"]) for r in data.runs_table()]
    [('a', 'finished', 5)]
    >>> data.series(data.resolve("a"), ["loss"], "step", None, None, 100, None)["series"]["loss"]["y"].tolist()
    [5.0, 4.0, 3.0, 2.0, 1.0]
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .. import catalog, runstatus, store
from .. import format as fmt
from ..downsample import POINTS_PER_PIXEL, downsample, window
from ..levels import read_level
from ..query import run_info
from ..rankread import no_such_rank
from .live import OFFSET, FileSource, LiveRun
from .table import catalog_rows, live_row, newest_first, rank_statuses_json

#: The x axes a chart can use.
X_AXES = ("step", "wallclock", "time")
#: The longest a runs-table poll goes without reading the root catalog again (seconds), whatever
#: the cheap checks in between say.
FULL_READ_S = 10.0


class Data:
    """The runs under ``root`` as the dashboard sees them, with per-run caches (thread-safe)."""

    def __init__(self, root: Any) -> None:
        self.root = Path(root) if isinstance(root, (str, os.PathLike)) else root  # a Storage: RemoteData
        #: The root as the page shows it (a folder, or the URL of an object-store root).
        self.where = str(getattr(root, "url", None) or self.root)
        self._live: dict[tuple[Any, int], LiveRun] = {}
        self._rows: dict[Any, tuple[Any, dict[str, Any]]] = {}
        self._columns = ColumnCache()
        self._catalog: tuple[pl.DataFrame, list[dict[str, Any]]] | None = None
        self._known: tuple[Any, float, list[dict[str, Any]], list[str]] | None = None
        self._levels: dict[Any, Any] = {}
        self._marks: dict[tuple[Any, str, int], tuple[Any, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._table_lock = threading.Lock()

    def resolve(self, ref: str) -> Any:
        """The directory of run ``ref`` (id, id prefix or name), always inside the root. Raises
        ValueError for anything path-like and RunNotFoundError for no such run."""
        check_ref(ref)
        run_dir = self.root / ref  # the page always asks by id: no listing of the root then
        if not store.is_run_dir(run_dir):
            run_dir = store.resolve_run(ref, self.root)
        if run_dir.resolve().parent != self.root.resolve():
            raise store.RunNotFoundError(f"no run {ref!r} in {self.root}")
        return run_dir

    def live(self, run_dir: Any, rank: int = 0) -> LiveRun | None:
        """The incremental reader of a run's (rank's) events file, updated; None once compacted."""
        path = store.events_path(run_dir)
        if not path.exists() or (path != run_dir / fmt.EVENTS_FILE and (run_dir / fmt.SIDECAR_FILE).exists()):
            self._live.pop((run_dir, rank), None)  # compacted since: its Parquet file is read instead
            return None
        if rank:
            path = store.rank_files(run_dir).get(rank)  # type: ignore[assignment]
            if path is None or not path.exists():
                raise no_such_rank(run_dir, rank, sorted(store.rank_files(run_dir)))
        return self._updated(run_dir, rank, FileSource(path))

    def _updated(self, run_dir: Any, rank: int, source: Any) -> LiveRun:
        with self._lock:
            live = self._live.get((run_dir, rank))
            if live is None or live.path != source.path:
                live = self._live[(run_dir, rank)] = LiveRun(source)
        live.update()
        return live

    def status(self, run_dir: Any, live: LiveRun | None) -> str:
        """The run's status now (every rank's, combined). ``live`` is rank 0's reader when the
        caller has it; None lets a subclass that needs it read it (a local run's status needs none)."""
        return runstatus.current_status(run_dir)

    # --- the runs table ---------------------------------------------------------------------

    def runs_table(self) -> list[dict[str, Any]]:
        """One dict per run, newest first (see docs/dashboard.md, ``GET /api/runs``). One table is
        built at a time: a request during the server's first read waits for it, then reuses its rows.
        The compacted runs are read again (``catalog.read``) when the root's folder or its catalog
        file changed, when a live run left (compacted), and at least every ``FULL_READ_S`` seconds;
        a poll in between costs two stats and the live runs' own."""
        with self._table_lock:
            key = _root_key(self.root)
            known = self._known
            if known is None or known[0] != key or time.monotonic() - known[1] > FULL_READ_S:
                found = catalog.read(self.root)  # the catalog file; sidecars only where it is stale
                known = self._known = (key, time.monotonic(), self._catalog_rows(found.table), found.live)
            rows = list(known[2])
            for run_id in known[3]:
                try:
                    row = self._live_row(self.root / run_id)
                except (OSError, ValueError, store.RunNotFoundError, pl.exceptions.PolarsError):
                    row = None  # half-created, or being compacted right now
                if row is None:
                    self._known = None  # read the root again next time: it may have been compacted
                else:
                    rows.append(row)
            return newest_first(rows)

    def _catalog_rows(self, frame: pl.DataFrame) -> list[dict[str, Any]]:
        """The compacted runs' rows, converted again only when the catalog's table changed."""
        last = self._catalog
        if last is None or not last[0].equals(frame):
            last = self._catalog = (frame, catalog_rows(frame))
        return last[1]

    def _live_row(self, run_dir: Path) -> dict[str, Any] | None:
        key = _signature(run_dir)
        cached = self._rows.get(run_dir)
        if cached is not None and cached[0] == key:  # unchanged since the last poll: a few stat calls
            row = cached[1]
            if row["status"] == fmt.RUNNING:
                row["status"] = runstatus.current_status(run_dir)
                row["ranks"] = rank_statuses_json(runstatus.rank_statuses(run_dir)) if row["ranks"] else None
            return row
        live = self.live(run_dir)
        if live is None or live.start is None:
            return None
        ranks = rank_statuses_json(runstatus.rank_statuses(run_dir)) if len(store.rank_files(run_dir)) > 1 else None
        found = live_row(live, self.status(run_dir, live), ranks)
        self._rows[run_dir] = (key, found)
        return found

    # --- series -----------------------------------------------------------------------------

    def series(
        self,
        run_dir: Any,
        metrics: list[str],
        x: str,
        lo: float | None,
        hi: float | None,
        width: int,
        cursor: int | None,
        rank: int = 0,
    ) -> dict[str, Any]:
        """Points of ``metrics`` of one run (one rank of it) against ``x`` in ``[lo, hi]`` for
        ``width`` pixels; with a ``cursor`` (of an earlier answer), only the points added since."""
        live = self.live(run_dir, rank)
        if live is None:
            facts = self.sidecar(run_dir).get("ranks") if rank else None
            ranks = [int(r["rank"]) for r in facts or [] if isinstance(r, dict) and "rank" in r] or [0]
            if rank not in ranks:
                raise no_such_rank(run_dir, rank, ranks)
            series = self._compacted_series(run_dir, metrics, x, lo, hi, width, rank)
            marks, cursor_out, reset = self._compacted_marks(run_dir, x, rank), None, cursor is not None
        else:
            frame, cursor_out, reset = _live_frame(live, metrics, x, cursor)
            rows = live.rows
            marks = _marks(rows.select("segment", _x_expr(x, compacted=False).alias("x"))) if rows.width else []
            if cursor is not None and not reset:
                lo = hi = None  # new points: all of them, whatever the zoom
            series = {m: _series_points(*_arrays(frame, m), lo, hi, width) for m in metrics}
        status = self.status(run_dir, None if rank else live)  # rank 0's reader, when this is it
        return {
            "x": x,
            "rank": rank,
            "cursor": cursor_out,
            "reset": reset,
            "series": series,
            "marks": marks,
            "status": status,
        }

    def _compacted_series(
        self, run_dir: Any, metrics: list[str], x: str, lo: float | None, hi: float | None, width: int, rank: int
    ) -> dict[str, Any]:
        """A compacted run's series: from the in-memory column cache when it holds them (a zoom then
        reads nothing), else from Parquet: the whole run (then cached) or, zoomed, only the range."""
        version = self.version(run_dir)
        arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for m in metrics:
            cached = self._columns.get((run_dir, rank, m, x, version))
            if cached is not None:
                arrays[m] = cached
        done = {}
        if x == "step" and rank == 0:  # the run's precomputed levels (rank 0's), when the range needs bucketing
            for m in metrics:
                if m not in arrays and (found := self._from_level(run_dir, m, version, lo, hi, width)) is not None:
                    done[m] = found
        missing = [m for m in metrics if m not in arrays and m not in done]
        if missing:
            zoomed = (lo is not None or hi is not None) and x == "step"
            scan = self.scan(run_dir, rank)
            frame = _compacted_frame(scan, missing, x, lo if zoomed else None, hi if zoomed else None)
            for m in missing:
                xs, ys = arrays[m] = _arrays(frame, m)
                if not zoomed:
                    self._columns.put((run_dir, rank, m, x, version), xs, ys)
        return {m: done[m] if m in done else _series_points(arrays[m][0], arrays[m][1], lo, hi, width) for m in metrics}

    def _from_level(
        self, run_dir: Path, metric: str, version: Any, lo: float | None, hi: float | None, width: int
    ) -> dict[str, Any] | None:
        """The series from the levels file when it holds enough points in the range to bucket."""
        if not isinstance(run_dir, Path):
            return None  # levels are read from local runs only
        key = (run_dir, metric, "level", version)
        level = self._levels.get(key, False)
        if level is False:
            level = self._levels[key] = read_level(run_dir, metric)
        if level is None:
            return None
        xs, ys, index = level
        i0, i1 = window(xs, lo, hi)
        if i1 - i0 <= 2 * POINTS_PER_PIXEL * width:
            return None  # zoomed in so far that the raw points are wanted
        found = downsample(xs[i0:i1], ys[i0:i1], width)
        found["count"] = int(index[i1 - 1] - index[i0] + 1)
        return found

    def _compacted_marks(self, run_dir: Any, x: str, rank: int) -> list[dict[str, Any]]:
        version = self.version(run_dir)
        cached = self._marks.get((run_dir, x, rank))
        if cached is None or cached[0] != version:
            segments = self.sidecar(run_dir).get("segments")
            resumed = not isinstance(segments, list) or len(segments) > 1  # else nothing to mark: no scan
            scan = self.scan(run_dir, rank)
            marks = _marks(scan.select("segment", _x_expr(x, compacted=True).alias("x"))) if resumed else []
            cached = self._marks[(run_dir, x, rank)] = (version, marks)
        return cached[1]

    # --- where a compacted run's bytes are (RemoteData overrides these) ----------------------

    def version(self, run_dir: Any) -> Any:
        """What changes when a compacted run is rewritten (keys its cached columns)."""
        return _mtime(run_dir / fmt.PARQUET_FILE)

    def sidecar(self, run_dir: Any) -> dict[str, Any]:
        """The compacted run's sidecar, as stored."""
        return store.raw_sidecar(run_dir)

    def scan(self, run_dir: Any, rank: int) -> pl.LazyFrame:
        """The current (not superseded) rows of one rank of a compacted run, lazily."""
        return current_rows(pl.scan_parquet(run_dir / fmt.PARQUET_FILE, hive_partitioning=False), rank)

    def run_page(self, run_dir: Any) -> dict[str, Any]:
        """Everything ``steplog.query.run_info`` knows about a run, JSON-ready."""
        info = run_info(run_dir, root=self.root)
        for key in ("start_time", "end_time"):
            info[key] = _epoch(info[key])
        for segment in info["segments"]:
            segment["start_time"], segment["end_time"] = _epoch(segment["start_time"]), _epoch(segment["end_time"])
        info.pop("dir", None)
        return info


def check_ref(ref: str) -> None:
    """Refuse a run reference that looks like a path (every run is resolved inside the root).

    Example:
        >>> check_ref("../etc")
        Traceback (most recent call last):
        ...
        ValueError: run must be a run id, id prefix or name, not a path: got '../etc'
    """
    if not ref or ref.startswith(".") or "/" in ref or "\\" in ref or "\0" in ref or os.path.isabs(ref):
        raise ValueError(f"run must be a run id, id prefix or name, not a path: got {ref!r}")


def _root_key(root: Path) -> tuple[Any, ...]:
    """What changes when runs are added to or removed from a local root, or compacted: the root
    folder's modification time and the catalog file's stat (compaction and push rewrite it)."""
    found: list[Any] = []
    for path in (root, root / catalog.CATALOG_FILE):
        try:
            st = os.stat(path)
            found += [st.st_mtime_ns, st.st_size, st.st_ino]
        except OSError:
            found += [None]
    return tuple(found)


def _signature(run_dir: Path) -> tuple[Any, ...]:
    """What changes when a live run changes: each events file's size and mtime, the sidecar's."""
    found: list[Any] = []
    try:
        with os.scandir(run_dir) as entries:
            for entry in entries:
                if entry.name.startswith("events") or entry.name == fmt.SIDECAR_FILE:
                    st = entry.stat()
                    found += [entry.name, st.st_size, st.st_mtime_ns]
    except OSError:
        pass
    return tuple(found)


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _epoch(value: Any) -> float | None:
    return None if value is None else value.timestamp()


def _x_expr(x: str, compacted: bool) -> pl.Expr:
    if x == "step":
        return pl.col("step").cast(pl.Float64)
    if x == "time" and compacted:
        return pl.col("time").dt.epoch("us").cast(pl.Float64) / 1e6
    return pl.col(x).cast(pl.Float64)


def _live_frame(live: LiveRun, metrics: list[str], x: str, cursor: int | None) -> tuple[pl.DataFrame, int, bool]:
    rows, offset, reset_offset = live.snapshot()
    reset = cursor is not None and (cursor < reset_offset or cursor > offset)
    if cursor is not None and not reset and rows.width:
        rows = rows.filter(pl.col(OFFSET) > cursor)
    present = [m for m in metrics if m in rows.columns]
    if not rows.width:
        return pl.DataFrame({"x": []}, schema={"x": pl.Float64}), offset, reset
    return rows.select(_x_expr(x, compacted=False).alias("x"), *[pl.col(m) for m in present]), offset, reset


def current_rows(frame: pl.LazyFrame, rank: int) -> pl.LazyFrame:
    """The rows of ``rank`` in a compacted run's scan that no resume superseded (a file without a
    ``rank`` column holds rank 0's)."""
    frame = frame.filter(~pl.col("superseded"))
    if "rank" in frame.collect_schema().names():
        return frame.filter(pl.col("rank") == rank)
    return frame if rank == 0 else frame.filter(pl.lit(False))


def _compacted_frame(
    frame: pl.LazyFrame, metrics: list[str], x: str, lo: float | None, hi: float | None
) -> pl.DataFrame:
    present = [m for m in metrics if m in frame.collect_schema().names()]
    expr = _x_expr(x, compacted=True)
    if x == "step":  # pushed down to the Parquet row groups' statistics; the neighbours come along
        if lo is not None:
            frame = frame.filter(pl.col("step") >= int(np.floor(lo)) - 1)
        if hi is not None:
            frame = frame.filter(pl.col("step") <= int(np.ceil(hi)) + 1)
    points = frame.select(expr.alias("x"), *[pl.col(m) for m in present]).collect()
    return points if points["x"].is_sorted() else points.sort("x")


def _arrays(frame: pl.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The (x, value) points of ``metric`` in ``frame`` (rows where it was logged), sorted by x."""
    if metric not in frame.columns:
        return np.empty(0), np.empty(0)
    points = frame.select("x", metric)
    if points[metric].null_count():  # steps that did not log it (no copy when every step did)
        points = points.filter(pl.col(metric).is_not_null())
    xs, ys = points["x"].to_numpy(), points[metric].to_numpy()
    if len(xs) > 1 and not points["x"].is_sorted():
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
    return xs, ys


def _series_points(xs: np.ndarray, ys: np.ndarray, lo: float | None, hi: float | None, width: int) -> dict[str, Any]:
    i0, i1 = window(xs, lo, hi)
    return downsample(xs[i0:i1], ys[i0:i1], width)


class ColumnCache:
    """Whole (x, value) arrays of compacted runs' metrics, the least recently used dropped beyond
    ``budget`` bytes, so that zooming into a long run reads nothing more from disk.

    Example:
        >>> cache = ColumnCache(budget=100)
        >>> cache.put("a", np.zeros(4), np.zeros(4)); cache.put("b", np.zeros(4), np.zeros(4))
        >>> cache.get("a") is None, cache.get("b") is not None
        (True, True)
    """

    def __init__(self, budget: int = 512 * 2**20) -> None:
        self.budget = budget
        self._items: dict[Any, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """The arrays under ``key`` (now the most recently used), or None."""
        with self._lock:
            found = self._items.pop(key, None)
            if found is not None:
                self._items[key] = found
            return found

    def put(self, key: Any, xs: np.ndarray, ys: np.ndarray) -> None:
        """Keep ``(xs, ys)`` under ``key``, dropping the least recently used beyond the budget."""
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (xs, ys)
            while sum(a.nbytes + b.nbytes for a, b in self._items.values()) > self.budget:
                del self._items[next(iter(self._items))]


def _marks(frame: pl.DataFrame | pl.LazyFrame) -> list[dict[str, Any]]:
    """The x where each resumed segment begins (``segment`` > 0), for markers on the x axis."""
    starts = frame.lazy().filter(pl.col("segment") > 0).group_by("segment").agg(pl.col("x").min()).sort("segment")
    return [{"kind": "resume", "segment": s, "x": v} for s, v in starts.collect().iter_rows()]
