"""Import MLflow runs: from an ``mlflow.db`` SQLite tracking store or a file store (``mlruns/``).

The database is read with the standard library's ``sqlite3`` and the file store as plain files, so
MLflow need not be installed. Each MLflow run becomes a steplog run named after it, in meta the
experiment (id and name), the MLflow run id and every tag (``meta["tags"]``); params become the
config (MLflow stores them as text, imported as text); every metric's full history comes with its
steps and timestamps (milliseconds in MLflow). MLflow stores NaN as 0 with a flag and infinities as
the largest float: both are imported as the NaN and infinities that were logged. Deleted runs and
experiments are left out. A run MLflow shows as RUNNING imports without a finish, so reads as crashed.

Example:
    >>> import sqlite3, tempfile, pathlib, steplog
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> db = sqlite3.connect(folder / "mlflow.db")
    >>> _ = db.executescript(_MINIMAL_SCHEMA)
    >>> _ = db.execute("INSERT INTO experiments VALUES (0, 'Default', 'active')")
    >>> _ = db.execute("INSERT INTO runs VALUES ('abc', 'lr-sweep', 'FINISHED', 1000, 5000, 'active', 0)")
    >>> _ = db.execute("INSERT INTO metrics VALUES ('loss', 0.25, 2000, 'abc', 7, 0)")
    >>> db.commit()
    >>> [run_id] = mlflow(folder / "mlflow.db", root=folder / "logs", quiet=True)
    >>> steplog.history(run_id, root=folder / "logs").select("step", "loss").rows()
    [(7, 0.25)]
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from .. import format as fmt
from ._runs import Source, SourceError, write_runs

_STATUS = {"FINISHED": fmt.FINISHED, "FAILED": fmt.FAILED, "KILLED": fmt.FAILED}
_MAX = sys.float_info.max


def mlflow(path: str | os.PathLike, root: str | os.PathLike = "experiment_logs", name: str | None = None, *,
           quiet: bool = False) -> list[str]:
    """Import every run of an MLflow tracking store (``mlflow.db`` or an ``mlruns`` folder); returns the run ids.

    Example:
        >>> import tempfile
        >>> mlflow("/no/such/mlflow.db", root=tempfile.mkdtemp(), quiet=True)
        Traceback (most recent call last):
        ...
        steplog.importers._runs.SourceError: /no/such/mlflow.db does not exist; pass an MLflow SQLite file ...
    """
    path = Path(path)
    if path.is_file():
        return _import_sqlite(path, root, name, quiet)
    if path.is_dir():
        return _import_file_store(path, root, name, quiet)
    raise SourceError(f"{path} does not exist; pass an MLflow SQLite file (mlflow.db) or an mlruns folder")


def _value(value: float, is_nan: Any) -> float:
    if is_nan:
        return math.nan
    if value == _MAX or value == -_MAX:
        return math.copysign(math.inf, value)
    return float(value)


# --- SQLite store ------------------------------------------------------------------------------

def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{path} is not an SQLite database ({exc}); pass an MLflow mlflow.db") from exc
    missing = {"experiments", "runs", "metrics", "params", "tags"} - tables
    if missing:
        raise SourceError(f"{path} is not an MLflow tracking database: no table {', '.join(sorted(missing))}")
    return db


def _import_sqlite(path: Path, root: str | os.PathLike, name: str | None, quiet: bool) -> list[str]:
    db = _connect(path)
    try:
        runs = db.execute(
            "SELECT r.run_uuid, r.name, r.status, r.start_time, r.end_time, r.experiment_id, e.name "
            "FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
            "WHERE r.lifecycle_stage != 'deleted' AND e.lifecycle_stage != 'deleted' "
            "ORDER BY r.start_time, r.run_uuid").fetchall()
        sources = (_sqlite_run(db, path, row) for row in runs)
        return write_runs(root, sources, name=name, count=len(runs), quiet=quiet)
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{path}: cannot read the MLflow database ({exc})") from exc
    finally:
        db.close()


def _sqlite_run(db: sqlite3.Connection, path: Path, row: tuple) -> Source:
    run_uuid, run_name, status, start, end, experiment_id, experiment = row
    params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_uuid,)).fetchall())
    tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_uuid,)).fetchall())
    source = _source(path, run_uuid, run_name or tags.get("mlflow.runName"), status, start, end, experiment_id,
                     experiment, params, tags)
    metrics = db.execute("SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ? "
                         "ORDER BY timestamp, step", (run_uuid,)).fetchall()
    events = source.events
    for key, value, timestamp, step, is_nan in metrics:  # Source.add inlined: a million rows per import
        if is_nan or value == _MAX or value == -_MAX or type(value) is not float:
            value = _value(value, is_nan)
        when = (step, timestamp / 1000.0)
        event = events.get(when)
        if event is None:
            events[when] = {key: value}
        else:
            event[key] = value
    return source


def _source(path: Path, run_uuid: str, run_name: str | None, status: str | None, start: Any, end: Any,
            experiment_id: Any, experiment: str | None, params: dict, tags: dict) -> Source:
    meta = {"mlflow": {"run_id": run_uuid, "experiment_id": str(experiment_id), "experiment": experiment,
                       "status": status}, "tags": tags}
    return Source("mlflow", path, run_uuid, name=run_name or run_uuid,
                  start_time=start / 1000.0 if start is not None else None,
                  end_time=end / 1000.0 if end is not None else None,
                  config=params, meta=meta, status=_STATUS.get(status or "", None))


# --- file store --------------------------------------------------------------------------------

def _yaml(path: Path) -> dict[str, str]:
    """The top-level ``key: value`` lines of an MLflow meta.yaml (all it needs here)."""
    found = {}
    try:
        text = path.read_text()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc}") from exc
    for line in text.splitlines():
        if line and not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            found[key.strip()] = value.strip().strip("'\"")
    return found


def _import_file_store(path: Path, root: str | os.PathLike, name: str | None, quiet: bool) -> list[str]:
    run_dirs = []
    for experiment_meta in sorted(path.glob("*/meta.yaml")):
        experiment = _yaml(experiment_meta)
        if experiment.get("lifecycle_stage") == "deleted":
            continue
        for run_meta in sorted(experiment_meta.parent.glob("*/meta.yaml")):
            run_dirs.append((run_meta.parent, experiment))
    if not run_dirs:
        raise SourceError(f"no MLflow run under {path} (expected <experiment id>/<run id>/meta.yaml)")
    sources = (_file_run(run_dir, experiment) for run_dir, experiment in run_dirs)
    return write_runs(root, sources, name=name, count=len(run_dirs), quiet=quiet)


def _read_keyed(folder: Path) -> dict[str, str]:
    """``{key: text}`` of a params or tags folder (keys may hold '/': files in subfolders)."""
    if not folder.is_dir():
        return {}
    return {f.relative_to(folder).as_posix(): f.read_text() for f in sorted(folder.rglob("*")) if f.is_file()}


def _file_run(run_dir: Path, experiment: dict[str, str]) -> Source:
    meta = _yaml(run_dir / "meta.yaml")
    tags = _read_keyed(run_dir / "tags")
    status = {"1": "RUNNING", "2": "SCHEDULED", "3": "FINISHED", "4": "FAILED", "5": "KILLED"}.get(
        meta.get("status", ""), meta.get("status"))
    start, end = (int(meta[k]) if meta.get(k, "").isdigit() else None for k in ("start_time", "end_time"))
    source = _source(run_dir, meta.get("run_id") or run_dir.name, meta.get("run_name") or tags.get("mlflow.runName"),
                     status, start, end, experiment.get("experiment_id"), experiment.get("name"),
                     _read_keyed(run_dir / "params"), tags)
    metrics = run_dir / "metrics"
    for file in sorted(metrics.rglob("*")) if metrics.is_dir() else []:
        if file.is_file():
            _file_metric(file, file.relative_to(metrics).as_posix(), source)
    return source


def _file_metric(file: Path, key: str, source: Source) -> None:
    for number, line in enumerate(file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            timestamp, value = int(parts[0]), float(parts[1])
            step = int(parts[2]) if len(parts) > 2 else 0
        except (ValueError, IndexError):
            raise SourceError(f"{file}, line {number}: {line!r} is not 'timestamp value step'") from None
        source.add(step, timestamp / 1000.0, {key: _value(value, math.isnan(value))})


# The columns the importer reads, for the example above (MLflow's own schema has more).
_MINIMAL_SCHEMA = """
CREATE TABLE experiments (experiment_id INTEGER, name TEXT, lifecycle_stage TEXT);
CREATE TABLE runs (run_uuid TEXT, name TEXT, status TEXT, start_time INTEGER, end_time INTEGER,
                   lifecycle_stage TEXT, experiment_id INTEGER);
CREATE TABLE metrics (key TEXT, value REAL, timestamp INTEGER, run_uuid TEXT, step INTEGER, is_nan BOOLEAN);
CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);
"""
