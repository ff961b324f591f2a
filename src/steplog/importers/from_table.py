"""Import CSV and JSON Lines files: one row per step, a step column, every other numeric column a metric.

A column named ``time``, ``timestamp``, ``wall_time`` or ``_timestamp`` (Unix seconds, or a
datetime) gives each row's time; without one every row takes the file's modification time. A
missing value (empty cell, null, absent key) means the metric was not logged at that step.
Columns that are not numbers (text) are left out and listed in the run's meta.

Example:
    >>> import tempfile, steplog, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "log.csv").write_text("step,loss,acc\\n0,2.5,\\n1,2.0,0.5\\n")
    >>> [run_id] = csv(folder / "log.csv", root=folder / "logs", quiet=True)
    >>> steplog.history(run_id, root=folder / "logs").select("step", "loss", "acc").rows()
    [(0, 2.5, None), (1, 2.0, 0.5)]
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ._runs import Source, SourceError, write_runs

TIME_COLUMNS = ("time", "timestamp", "wall_time", "_timestamp")


def csv(path: str | os.PathLike, root: str | os.PathLike = "experiment_logs", name: str | None = None, *,
        step_col: str = "step", quiet: bool = False) -> list[str]:
    """Import a CSV file (or every ``*.csv`` of a folder, one run each); returns the run ids.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.csv").write_text("iter,loss\\n5,1.0\\n")
        >>> len(csv(folder / "a.csv", root=folder / "logs", step_col="iter", quiet=True))
        1
    """
    return _import_tables(path, root, name, step_col, quiet, "csv")


def jsonl(path: str | os.PathLike, root: str | os.PathLike = "experiment_logs", name: str | None = None, *,
          step_col: str = "step", quiet: bool = False) -> list[str]:
    """Import a JSON Lines file (one object per line; or every ``*.jsonl`` of a folder); returns the run ids.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.jsonl").write_text('{"step": 0, "loss": 1.0}\\n{"step": 1, "loss": 0.5}\\n')
        >>> len(jsonl(folder / "a.jsonl", root=folder / "logs", quiet=True))
        1
    """
    return _import_tables(path, root, name, step_col, quiet, "jsonl")


def _import_tables(path: str | os.PathLike, root: str | os.PathLike, name: str | None, step_col: str, quiet: bool,
                   kind: str) -> list[str]:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob(f"*.{kind}"))
        if not files:
            raise SourceError(f"no *.{kind} file in {path}; pass a {kind} file or a folder holding some")
    elif path.is_file():
        files = [path]
    else:
        raise SourceError(f"{path} does not exist; pass a {kind} file or a folder of them")
    sources = (_read_table(f, kind, step_col) for f in files)
    return write_runs(root, sources, name=name, count=len(files), quiet=quiet)


def _frame(path: Path, kind: str):
    import polars as pl

    try:
        if kind == "csv":
            return pl.read_csv(path, infer_schema_length=None)
        return pl.read_ndjson(path, infer_schema_length=None)
    except Exception as exc:  # polars raises several types for unreadable input
        raise SourceError(f"{path} is not a readable {kind} file: {exc}") from exc


def _read_table(path: Path, kind: str, step_col: str) -> Source:
    import polars as pl

    frame = _frame(path, kind)
    if step_col not in frame.columns:
        raise SourceError(f"{path} has no step column {step_col!r} (columns: {', '.join(frame.columns)}); "
                          f"name it with --step-col / step_col=")
    steps = frame[step_col]
    if not steps.dtype.is_integer() or steps.null_count() or (steps.len() and steps.min() < 0):
        raise SourceError(f"{path}: step column {step_col!r} must hold integers >= 0 in every row (found {steps.dtype}"
                          f"{', with empty cells' if steps.null_count() else ''}); name the right one with --step-col")
    times, time_col = _times(frame, path)
    frame = frame.with_columns(_text_numbers(frame, (step_col, time_col)))
    numeric = [c for c in frame.columns if c not in (step_col, time_col) and frame[c].dtype.is_numeric()]
    skipped = [c for c in frame.columns if c not in (step_col, time_col) and c not in numeric]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    meta: dict[str, Any] = {"step_column": step_col, "time_column": time_col}
    if skipped:
        meta["skipped_columns"] = skipped
    source = Source(kind, path, digest, name=path.stem, start_time=min(times, default=None), meta=meta)
    for column in numeric:
        values = frame[column].cast(pl.Float64)
        keep = values.is_not_null()
        source.add_columns(column, steps.filter(keep).to_list(), pl.Series(times).filter(keep).to_list(),
                           values.filter(keep).to_list())
    if not numeric:
        raise SourceError(f"{path} has no numeric column besides {step_col!r}: nothing to import")
    return source


def _text_numbers(frame, skip: tuple[str, str | None]) -> list:
    """Text columns whose every value reads as a number ("nan", "inf" among them) cast to Float64."""
    import polars as pl

    cast = []
    for column in frame.columns:
        series = frame[column]
        if column not in skip and series.dtype == pl.String:
            numbers = series.cast(pl.Float64, strict=False)
            if numbers.null_count() == series.null_count():
                cast.append(numbers)
    return cast


def _times(frame, path: Path) -> tuple[list[float], str | None]:
    """Each row's Unix time, from the first time column there is, else the file's modification time."""
    import polars as pl

    for column in TIME_COLUMNS:
        if column in frame.columns:
            series = frame[column]
            if series.dtype.is_temporal():
                series = series.dt.epoch("us").cast(pl.Float64) / 1e6
            elif series.dtype == pl.String:
                try:
                    series = series.str.to_datetime(time_zone="UTC").dt.epoch("us").cast(pl.Float64) / 1e6
                except Exception as exc:  # polars raises several types for unparseable dates
                    raise SourceError(f"{path}: time column {column!r} holds text that is not a date: {exc}") from exc
            if series.dtype.is_numeric() and not series.null_count():
                return series.cast(pl.Float64).to_list(), column
    mtime = path.stat().st_mtime
    return [mtime] * frame.height, None
