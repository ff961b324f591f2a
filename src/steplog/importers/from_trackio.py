"""Import trackio projects: its SQLite databases (``<project>.db``, in ``~/.cache/huggingface/trackio``
or ``TRACKIO_DIR``), read with the standard library's ``sqlite3``.

Each run of a project becomes a steplog run named after it: the ``metrics`` rows (step, ISO
timestamp, a JSON object of values; trackio writes NaN and infinities as the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``) with every number logged (text and media left out), the
``configs`` row as config (trackio's own ``_Username``, ``_Created``, ``_Group`` go to meta with the
project name and run id). System metrics are not imported. trackio records no end status: runs import
as finished.

Example:
    >>> import tempfile
    >>> trackio(tempfile.mkdtemp(), root=tempfile.mkdtemp(), quiet=True)
    Traceback (most recent call last):
    ...
    steplog.importers._runs.SourceError: no trackio database (*.db) in ...
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from ._runs import Source, SourceError, source_files, write_runs

_SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def trackio(
    path: str | os.PathLike,
    root: str | os.PathLike = "experiment_logs",
    name: str | None = None,
    *,
    quiet: bool = False,
) -> list[str]:
    """Import every run of a trackio database (``<project>.db``) or of every database in a folder;
    returns the run ids."""
    path = Path(path)
    files = source_files(
        path,
        sorted(path.glob("*.db")) if path.is_dir() else [],
        f"no trackio database (*.db) in {path}; pass a <project>.db or the folder holding them",
        f"{path} does not exist; pass a trackio <project>.db or the folder holding them",
    )
    runs = [(file, run) for file in files for run in _runs_of(file)]
    sources = (_read_run(file, run) for file, run in runs)
    return write_runs(root, sources, name=name, count=len(runs), quiet=quiet)


def _connect(path: Path) -> tuple[sqlite3.Connection, str]:
    """The database, read-only, and the column naming a run (``run_id``, else ``run_name`` in older trackio)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        columns = {row[1] for row in db.execute("PRAGMA table_info(metrics)")}
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{path} is not an SQLite database ({exc}); pass a trackio <project>.db") from exc
    if not {"run_name", "step", "timestamp", "metrics"} <= columns:
        db.close()
        raise SourceError(f"{path} is not a trackio database: no metrics table with run_name, step, timestamp, metrics")
    return db, "run_id" if "run_id" in columns else "run_name"


def _runs_of(path: Path) -> list[tuple[str, str]]:
    """(run key, run name) of each run in the database, in the order they first logged."""
    db, key = _connect(path)
    try:
        return db.execute(f"SELECT {key}, run_name FROM metrics GROUP BY {key} ORDER BY MIN(id)").fetchall()
    finally:
        db.close()


def _time(text: str) -> float:
    stamp = _dt.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_dt.timezone.utc)
    return stamp.timestamp()


def _number(value: Any) -> float | None:
    if isinstance(value, str):
        return _SPECIAL.get(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _read_run(path: Path, run: tuple[str, str]) -> Source:
    run_key, run_name = run
    db, key = _connect(path)
    try:
        query = f"SELECT step, timestamp, metrics FROM metrics WHERE {key} = ? ORDER BY id"
        rows = db.execute(query, (run_key,)).fetchall()
        config = _config(db, key, run_key)
        project = path.stem
        trackio_meta = {k: config.pop(k) for k in [k for k in config if k.startswith("_")]}
        source = Source(
            "trackio",
            path,
            f"{project}/{run_key}",
            name=run_name,
            config=config,
            meta={"trackio": {"project": project, "run_id": run_key, **trackio_meta}},
        )
        for step, stamp, values in rows:
            numbers = {k: v for k, v in ((k, _number(v)) for k, v in json.loads(values).items()) if v is not None}
            if numbers:
                source.add(step, _time(stamp), numbers)
    except (sqlite3.DatabaseError, ValueError, TypeError, AttributeError) as exc:
        raise SourceError(f"{path}: cannot read trackio run {run_name!r} ({exc})") from exc
    finally:
        db.close()
    created = trackio_meta.get("_Created")
    times = [when for _, when in source.events]
    source.start_time = min([*times, *([_time(created)] if isinstance(created, str) else [])], default=None)
    return source


def _config(db: sqlite3.Connection, key: str, run_key: str) -> dict[str, Any]:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "configs" not in tables:
        return {}
    row = db.execute(f"SELECT config FROM configs WHERE {key} = ?", (run_key,)).fetchone()
    config = json.loads(row[0]) if row else {}
    return config if isinstance(config, dict) else {}
