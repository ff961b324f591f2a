"""Queries over runs, returning Polars objects: ``history`` of one run, the ``runs`` table.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="baseline", config={"lr": 3e-4}, root=root) as run:
    ...     for step in range(3):
    ...         run.log({"train_loss": 3.0 - step})
    >>> steplog.history("baseline", root=root)["train_loss"].to_list()
    [3.0, 2.0, 1.0]
    >>> steplog.runs(root=root).select("name", "status", "num_steps", "config.lr").to_dicts()
    [{'name': 'baseline', 'status': 'finished', 'num_steps': 3, 'config.lr': 0.0003}]
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from . import store
from .reader import read_events, resolve_history


def history(run: str | os.PathLike, root: str | os.PathLike = "experiment_logs", *, all_segments: bool = False) -> pl.DataFrame:
    """The history of one run: one row per step, sorted by step.

    ``run`` is a run id, a unique id prefix, or a name (the latest run of that name). Columns:
    ``step`` (Int64), ``wallclock`` (Float64 seconds since start), ``time`` (UTC datetime), then
    one Float64 column per metric; null where a step did not log a metric, NaN kept as NaN.
    ``all_segments=True`` also returns rows superseded by a resume (see ``steplog.init``), with
    ``segment`` and ``superseded`` columns.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> run = steplog.init(name="x", root=root)
        >>> run.log({"loss": 2.0}); run.log({"loss": 1.5, "val_loss": 1.7}); run.finish()
        >>> steplog.history("x", root=root).select("step", "loss", "val_loss").rows()
        [(0, 2.0, None), (1, 1.5, 1.7)]
    """
    run_dir = store.resolve_run(run, root)
    return resolve_history(read_events(run_dir / fmt.EVENTS_FILE), all_segments=all_segments)


def runs(root: str | os.PathLike = "experiment_logs") -> pl.DataFrame:
    """One row per run under ``root``, oldest first.

    Columns: ``run_id``, ``name``, ``status`` (running / finished / failed / crashed),
    ``start_time``, ``end_time`` (UTC datetimes; the last event for a run that has not finished),
    ``duration_s``, ``num_steps``, ``last_step``, ``segments``, ``error``, ``notes``, then the
    config flattened into ``config.<key>`` columns (nested keys joined with '.').

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", config={"model": {"d": 512}}, root=root).finish()
        >>> steplog.runs(root=root).select("name", "status", "config.model.d").rows()
        [('a', 'finished', 512)]
    """
    records = [run_record(d) for d in store.run_dirs(root)]
    return _records_frame([r for r in records if r is not None])


def run_record(run_dir: Path) -> dict[str, Any] | None:
    """The ``runs()`` row of one run directory (None when it holds no readable run).

    Example:
        >>> run_record(Path("/no/such/run")) is None
        True
    """
    events_path = run_dir / fmt.EVENTS_FILE
    try:
        events = read_events(events_path)
    except OSError:
        return None
    start = events.start or {}
    finish = events.last_finish
    status = store.run_status(run_dir, finish.get("status") if finish else None)
    steps = resolve_history(events)
    start_time = start.get("time")
    times = [t for t in (start_time, *(c.get("time") for c in events.controls)) if isinstance(t, (int, float))]
    if events.rows.height:
        times.append(events.rows["time"].max())
    end_time = finish.get("time") if finish else (max(times) if times else None)
    error = finish.get("error") if finish else None
    config = start.get("config") if isinstance(start.get("config"), dict) else {}
    return {
        "run_id": start.get("run_id", run_dir.name),
        "name": start.get("name", run_dir.name),
        "status": status,
        "start_time": _utc(start_time),
        "end_time": _utc(end_time),
        "duration_s": (end_time - start_time) if isinstance(start_time, (int, float)) and end_time is not None else None,
        "num_steps": steps.height,
        "last_step": steps["step"].max() if steps.height else None,
        "segments": 1 + len(events.resumes),
        "error": f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else None,
        "notes": finish.get("notes") if finish else None,
        "config": config,
    }


def flatten_config(config: dict[str, Any], prefix: str = "config.") -> dict[str, Any]:
    """Flatten nested dicts into ``{prefix + 'a.b': value}``; lists stay values.

    Example:
        >>> flatten_config({"model": {"d": 512, "heads": 8}, "lr": 0.1})
        {'config.model.d': 512, 'config.model.heads': 8, 'config.lr': 0.1}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_RUN_COLUMNS = {
    "run_id": pl.String, "name": pl.String, "status": pl.String,
    "start_time": pl.Datetime("us", "UTC"), "end_time": pl.Datetime("us", "UTC"), "duration_s": pl.Float64,
    "num_steps": pl.Int64, "last_step": pl.Int64, "segments": pl.Int64, "error": pl.String, "notes": pl.String,
}


def _records_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    base = pl.DataFrame([{k: r[k] for k in _RUN_COLUMNS} for r in records], schema=_RUN_COLUMNS)
    flat = [flatten_config(r["config"]) for r in records]
    keys: dict[str, None] = {}
    for row in flat:
        keys.update(dict.fromkeys(row))
    config_columns = [config_column(key, [row.get(key) for row in flat]) for key in keys]
    return base.with_columns(config_columns) if config_columns else base


def config_column(name: str, values: list[Any]) -> pl.Series:
    """One config column over several runs, typed by what the values share: Int64, Float64,
    Boolean or String; values of mixed kinds (or lists) become their JSON text.

    Example:
        >>> config_column("config.lr", [1, 0.5, None]).dtype
        Float64
    """
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds <= {int}:
        return pl.Series(name, values, dtype=pl.Int64)
    if kinds <= {int, float}:
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    if kinds <= {str}:
        return pl.Series(name, values, dtype=pl.String)
    import orjson

    return pl.Series(name, [None if v is None else (v if isinstance(v, str) else orjson.dumps(v).decode()) for v in values],
                     dtype=pl.String)


def _utc(seconds: float | None) -> _dt.datetime | None:
    if seconds is None:
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
