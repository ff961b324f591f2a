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
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .. import format as fmt
from .. import runstatus, store
from ..downsample import POINTS_PER_PIXEL, downsample, window
from ..levels import read_level
from ..query import run_info
from .live import OFFSET, LiveRun

#: The x axes a chart can use.
X_AXES = ("step", "wallclock", "time")


class Data:
    """The runs under ``root`` as the dashboard sees them, with per-run caches (thread-safe)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._live: dict[Path, LiveRun] = {}
        self._rows: dict[Path, tuple[Any, dict[str, Any]]] = {}
        self._columns = ColumnCache()
        self._levels: dict[Any, Any] = {}
        self._marks: dict[tuple[Path, str], tuple[int, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._table_lock = threading.Lock()

    def resolve(self, ref: str) -> Path:
        """The directory of run ``ref`` (id, id prefix or name), always inside the root. Raises
        ValueError for anything path-like and RunNotFoundError for no such run."""
        if not ref or ref.startswith(".") or "/" in ref or "\\" in ref or "\0" in ref or os.path.isabs(ref):
            raise ValueError(f"run must be a run id, id prefix or name, not a path: got {ref!r}")
        run_dir = self.root / ref  # the page always asks by id: no listing of the root then
        if not store.is_run_dir(run_dir):
            run_dir = store.resolve_run(ref, self.root)
        if run_dir.resolve().parent != self.root.resolve():
            raise store.RunNotFoundError(f"no run {ref!r} in {self.root}")
        return run_dir

    def live(self, run_dir: Path) -> LiveRun | None:
        """The incremental reader of a run that has an events file (None once compacted), updated."""
        path = store.events_path(run_dir)
        if not path.exists() or (path != run_dir / fmt.EVENTS_FILE and (run_dir / fmt.SIDECAR_FILE).exists()):
            self._live.pop(run_dir, None)  # compacted since: its Parquet file is read instead
            return None
        with self._lock:
            live = self._live.get(run_dir)
            if live is None or live.path != path:
                live = self._live[run_dir] = LiveRun(path)
        live.update()
        return live

    # --- the runs table ---------------------------------------------------------------------

    def runs_table(self) -> list[dict[str, Any]]:
        """One dict per run, newest first (see docs/dashboard.md, ``GET /api/runs``). One table is
        built at a time: a request during the server's first read waits for it, then reuses its rows."""
        with self._table_lock:
            return self._runs_table()

    def _runs_table(self) -> list[dict[str, Any]]:
        table = []
        for run_dir in reversed(store.run_dirs(self.root)):
            try:
                row = self._row(run_dir)
            except (OSError, ValueError, store.RunNotFoundError, pl.exceptions.PolarsError):
                continue  # half-created or being compacted right now: shown on the next poll
            if row is not None:
                table.append(row)
        return table

    def _row(self, run_dir: Path) -> dict[str, Any] | None:
        key = _signature(run_dir)
        cached = self._rows.get(run_dir)
        if cached is not None and cached[0] == key:  # unchanged since the last poll: two stat calls
            row = cached[1]
            if row["status"] == fmt.RUNNING:
                row["status"] = runstatus.current_status(run_dir)
            return row
        live = self.live(run_dir)
        found = _live_row(run_dir, live) if live is not None else _compacted_row(run_dir, self.root)
        if found is not None:
            self._rows[run_dir] = (key, found)
        return found

    # --- series -----------------------------------------------------------------------------

    def series(
        self,
        run_dir: Path,
        metrics: list[str],
        x: str,
        lo: float | None,
        hi: float | None,
        width: int,
        cursor: int | None,
    ) -> dict[str, Any]:
        """Points of ``metrics`` of one run against ``x`` in ``[lo, hi]`` for ``width`` pixels; with a
        ``cursor`` (the ``cursor`` of an earlier answer), only the points added since."""
        live = self.live(run_dir)
        if live is None:
            series = self._compacted_series(run_dir, metrics, x, lo, hi, width)
            marks, cursor_out, reset = self._compacted_marks(run_dir, x), None, cursor is not None
        else:
            frame, cursor_out, reset = _live_frame(live, metrics, x, cursor)
            rows = live.rows
            marks = _marks(rows.select("segment", _x_expr(x, compacted=False).alias("x"))) if rows.width else []
            if cursor is not None and not reset:
                lo = hi = None  # new points: all of them, whatever the zoom
            series = {m: _series_points(*_arrays(frame, m), lo, hi, width) for m in metrics}
        return {
            "x": x,
            "cursor": cursor_out,
            "reset": reset,
            "series": series,
            "marks": marks,
            "status": runstatus.current_status(run_dir),
        }

    def _compacted_series(
        self, run_dir: Path, metrics: list[str], x: str, lo: float | None, hi: float | None, width: int
    ) -> dict[str, Any]:
        """A compacted run's series: from the in-memory column cache when it holds them (a zoom then
        reads nothing), else from Parquet: the whole run (then cached) or, zoomed, only the range."""
        version = _mtime(run_dir / fmt.PARQUET_FILE)
        arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for m in metrics:
            cached = self._columns.get((run_dir, m, x, version))
            if cached is not None:
                arrays[m] = cached
        done = {}
        if x == "step":  # the run's precomputed levels, when the range needs bucketing anyway
            for m in metrics:
                if m not in arrays and (found := self._from_level(run_dir, m, version, lo, hi, width)) is not None:
                    done[m] = found
        missing = [m for m in metrics if m not in arrays and m not in done]
        if missing:
            zoomed = (lo is not None or hi is not None) and x == "step"
            frame = _compacted_frame(run_dir, missing, x, lo if zoomed else None, hi if zoomed else None)
            for m in missing:
                xs, ys = arrays[m] = _arrays(frame, m)
                if not zoomed:
                    self._columns.put((run_dir, m, x, version), xs, ys)
        return {m: done[m] if m in done else _series_points(arrays[m][0], arrays[m][1], lo, hi, width) for m in metrics}

    def _from_level(
        self, run_dir: Path, metric: str, version: int, lo: float | None, hi: float | None, width: int
    ) -> dict[str, Any] | None:
        """The series from the levels file when it holds enough points in the range to bucket."""
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

    def _compacted_marks(self, run_dir: Path, x: str) -> list[dict[str, Any]]:
        version = _mtime(run_dir / fmt.PARQUET_FILE)
        cached = self._marks.get((run_dir, x))
        if cached is None or cached[0] != version:
            segments = store.raw_sidecar(run_dir).get("segments")
            resumed = not isinstance(segments, list) or len(segments) > 1  # else nothing to mark: no scan
            marks = (
                _marks(_scan_current(run_dir).select("segment", _x_expr(x, compacted=True).alias("x")))
                if resumed
                else []
            )
            cached = self._marks[(run_dir, x)] = (version, marks)
        return cached[1]

    def run_page(self, run_dir: Path) -> dict[str, Any]:
        """Everything ``steplog.query.run_info`` knows about a run, JSON-ready."""
        info = run_info(run_dir, root=self.root)
        for key in ("start_time", "end_time"):
            info[key] = _epoch(info[key])
        for segment in info["segments"]:
            segment["start_time"], segment["end_time"] = _epoch(segment["start_time"]), _epoch(segment["end_time"])
        info.pop("dir", None)
        return info


def _signature(run_dir: Path) -> tuple[int, int, int]:
    """What changes when a run changes: its events file's size and mtime, its sidecar's mtime."""
    found = []
    for name in (fmt.EVENTS_FILE, fmt.SIDECAR_FILE):
        try:
            st = os.stat(os.path.join(run_dir, name))
            found += [st.st_size, st.st_mtime_ns]
        except OSError:
            found += [-1, -1]
    return tuple(found)  # type: ignore[return-value]


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _epoch(value: Any) -> float | None:
    return None if value is None else value.timestamp()


def _live_row(run_dir: Path, live: LiveRun) -> dict[str, Any] | None:
    start = live.start or {}
    rows = live.rows
    finish = live.finish or {}
    metrics = live.metrics()
    summary = {}
    if rows.height:
        figures = rows.select(
            [
                pl.struct(
                    last=pl.col(m).drop_nulls().last(),
                    min=pl.col(m).fill_nan(None).min(),
                    max=pl.col(m).fill_nan(None).max(),
                ).alias(m)
                for m in metrics
            ]
        ).row(0)
        summary = dict(zip(metrics, figures))
    last = rows.row(-1, named=True) if rows.height else {}
    return {
        "id": start.get("run_id", run_dir.name),
        "name": start.get("name"),
        "status": runstatus.current_status(run_dir),
        "start": start.get("time"),
        "end": last.get("time"),
        "duration": last.get("wallclock"),
        "steps": rows["step"].n_unique() if rows.height else 0,
        "last_step": last.get("step"),
        "segments": 1 + len(live.resumes),
        "error": finish.get("error"),
        "notes": finish.get("notes"),
        "config": start.get("config") if isinstance(start.get("config"), dict) else {},
        "metrics": summary,
        "compacted": False,
    }


def _compacted_row(run_dir: Path, root: Path) -> dict[str, Any] | None:
    info = run_info(run_dir, root=root)
    summary = {m: {"last": s.get("last"), "min": s.get("min"), "max": s.get("max")} for m, s in info["summary"].items()}
    return {
        "id": info["run_id"],
        "name": info["name"],
        "status": info["status"],
        "start": _epoch(info["start_time"]),
        "end": _epoch(info["end_time"]),
        "duration": info["duration_s"],
        "steps": info["num_steps"],
        "last_step": info["last_step"],
        "segments": len(info["segments"]),
        "error": info["error"],
        "notes": info["notes"],
        "config": info["config"],
        "metrics": summary,
        "compacted": True,
    }


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


def _scan_current(run_dir: Path) -> pl.LazyFrame:
    frame = pl.scan_parquet(run_dir / fmt.PARQUET_FILE, hive_partitioning=False)
    frame = frame.filter(~pl.col("superseded"))
    return frame.filter(pl.col("rank") == 0) if "rank" in frame.collect_schema().names() else frame  # rank 0's


def _compacted_frame(run_dir: Path, metrics: list[str], x: str, lo: float | None, hi: float | None) -> pl.DataFrame:
    frame = _scan_current(run_dir)
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
