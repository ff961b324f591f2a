"""One run of the seed API loaded back: ``ExperimentLog`` (config, times, status, and on first use
the metrics frame, summary and snapshots), ``load_experiment``, ``seed_frame`` (a history with the
seed's column names) and ``format_summary`` (the text ``print_summary`` prints).

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> with ExperimentTracker(ExperimentConfig("one"), log_dir=root) as tracker:
    ...     tracker.log_metrics(0, train_loss=2.0)
    >>> load_experiment("one", root).summary["final_train_loss"]
    2.0
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from . import query, store
from .model import RunRecord, load_record
from .tables import format_value, text_table
from .tracker import (
    _SNAPSHOT_METRICS,
    GRADIENT_STEP,
    SEED_COLUMNS,
    ExperimentConfig,
    ExperimentTracker,  # noqa: F401 (the examples below use it)
    MetricsSnapshot,
)


class ExperimentLog:
    """One run loaded back. Attributes: ``run_id``, ``name``, ``run_dir``, ``config`` (an
    ExperimentConfig; for runs not written by the tracker, their config keys are in ``extra``),
    ``start_time``/``end_time`` (UTC datetimes), ``duration_seconds``, ``status``, ``notes``,
    ``num_iterations``; and, read when first used: ``metrics`` (a Polars frame: ``iteration``,
    ``gradient_step``, ``wallclock_time``, then one column per metric), ``summary`` (a dict) and
    ``snapshots`` (a list of MetricsSnapshot).

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> with ExperimentTracker(ExperimentConfig("x"), log_dir=root) as t:
        ...     t.log_metrics(0, train_loss=2.0); t.log_metrics(1, train_loss=1.0)
        >>> log = load_experiment("x", root)
        >>> log.status, log.num_iterations, log.snapshots[1].train_loss
        ('finished', 2, 1.0)
    """

    def __init__(self, record: RunRecord, root: Path) -> None:
        self.run_id: str = record.run_id
        self.name: str = record.name
        self.run_dir = record.run_dir
        self.root = root
        config = record.config
        try:
            self.config = ExperimentConfig.from_dict({"experiment_name": self.name, **config})
        except (TypeError, ValueError) as exc:  # a config not written by the tracker: keep it all in extra
            warnings.warn(
                f"steplog: run {self.run_id}: config is not an ExperimentConfig ({exc}); it is kept under config.extra",
                stacklevel=2,
            )
            self.config = ExperimentConfig(experiment_name=self.name, extra=config)
        self.start_time: _dt.datetime | None = query.utc(record.start_time)
        self.end_time: _dt.datetime | None = query.utc(record.end_time)
        self.duration_seconds: float | None = record.duration_s
        self.status: str = record.status
        self.notes: str = (record.finish.notes if record.finish else None) or ""
        self.num_iterations: int = record.num_steps

    def __repr__(self) -> str:
        return f"<ExperimentLog {self.name!r} run {self.run_id} {self.status}, {self.num_iterations} iterations>"

    @cached_property
    def metrics(self) -> pl.DataFrame:
        """The run's history with the seed's column names: one row per iteration."""
        return seed_frame(query.history(self.run_dir, root=self.root))

    @cached_property
    def summary(self) -> dict[str, Any]:
        """``best_train_loss``, ``best_val_loss``, ``final_train_loss``, ``final_val_loss``,
        ``duration_seconds``, ``num_iterations``, ``gradient_steps`` (the largest count a snapshot
        recorded; None if none did) and, under ``metrics``, the
        statistics of every metric from ``steplog.summary`` (count, nan_count, min, max, mean,
        std, first, last, step_of_min, step_of_max)."""
        per_metric = query.summary(self.run_dir, root=self.root)

        def stat(metric: str, key: str) -> Any:
            return (per_metric.get(metric) or {}).get(key)

        gradient_steps = stat(GRADIENT_STEP, "max")
        return {
            "best_train_loss": stat("train_loss", "min"),
            "best_val_loss": stat("val_loss", "min"),
            "final_train_loss": stat("train_loss", "last"),
            "final_val_loss": stat("val_loss", "last"),
            "duration_seconds": self.duration_seconds,
            "num_iterations": self.num_iterations,
            "gradient_steps": None if gradient_steps is None else int(gradient_steps),
            "metrics": per_metric,
        }

    @cached_property
    def snapshots(self) -> list[MetricsSnapshot]:
        """The rows of ``metrics`` as MetricsSnapshot objects (built on first use)."""
        extra_names = [c for c in self.metrics.columns if c not in SEED_COLUMNS and c not in _SNAPSHOT_METRICS]
        snapshots = []
        for row in self.metrics.iter_rows(named=True):
            extra = {k: row[k] for k in extra_names if row[k] is not None}
            fields: dict[str, Any] = {k: row.get(k) for k in (*SEED_COLUMNS, *_SNAPSHOT_METRICS)}
            snapshots.append(MetricsSnapshot(**fields, extra_metrics=extra))
        return snapshots


def seed_frame(history: pl.DataFrame) -> pl.DataFrame:
    """A ``steplog.history`` frame with the seed API's columns: ``iteration`` (the step),
    ``gradient_step`` (Int64, null where not logged), ``wallclock_time`` (seconds since start),
    then the metrics; the absolute ``time`` column is dropped.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> with steplog.init(name="plain", root=root) as run:
        ...     run.log({"loss": 1.0})
        >>> seed_frame(steplog.history("plain", root=root)).columns
        ['iteration', 'gradient_step', 'wallclock_time', 'loss']
    """
    frame = history.drop("time", strict=False).rename({"step": "iteration", "wallclock": "wallclock_time"})
    gradient = (
        pl.col(GRADIENT_STEP).cast(pl.Int64)
        if GRADIENT_STEP in frame.columns
        else pl.lit(None, dtype=pl.Int64).alias(GRADIENT_STEP)
    )
    rest = [c for c in frame.columns if c not in SEED_COLUMNS]
    return frame.select("iteration", gradient, "wallclock_time", *rest)


def load_experiment(run: str | os.PathLike, root: str | os.PathLike = "experiment_logs") -> ExperimentLog:
    """Load one run as an ExperimentLog: ``run`` is a name (its latest run), a run id, a unique
    id prefix or a run directory.

    Example:
        >>> load_experiment("missing", "/no/such/root")
        Traceback (most recent call last):
        ...
        steplog.store.RunNotFoundError: no run 'missing' in /no/such/root (the folder does not exist)
    """
    run_dir = store.resolve_run(run, root)
    record = load_record(run_dir)
    if record is None:
        raise store.RunNotFoundError(f"run directory {run_dir} holds no readable run")
    return ExperimentLog(record, Path(root))


def format_summary(log: ExperimentLog) -> str:
    """The text ``print_summary`` prints for one run.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> with ExperimentTracker(ExperimentConfig("x", learning_rate=0.01), log_dir=root) as t:
        ...     t.log_metrics(0, train_loss=2.0); t.log_eval(0, val_loss=2.5)
        >>> print(format_summary(load_experiment("x", root)))  # doctest: +ELLIPSIS
        Experiment x (run ...)
          status      finished
          started     ...
          duration    ... s
          iterations  1 (gradient steps: 0)
          best loss   train 2.0000, val 2.5000
          config      learning_rate=0.0100 (others at their defaults)
        <BLANKLINE>
        metric         count  nan_count     min     max    mean  std    last  step_of_min
        -------------  -----  ---------  ------  ------  ------  ---  ------  -----------
        gradient_step      1          0  0.0000  0.0000  0.0000  -    0.0000            0
        train_loss         1          0  2.0000  2.0000  2.0000  -    2.0000            0
        val_loss           1          0  2.5000  2.5000  2.5000  -    2.5000            0
    """
    summary = log.summary
    config = log.config.to_dict()
    defaults = ExperimentConfig(log.config.experiment_name).to_dict()
    changed = {k: v for k, v in config.items() if k not in ("experiment_name", "extra") and v != defaults[k]}
    changed.update({f"extra.{k}": v for k, v in config["extra"].items()})
    config_text = ", ".join(f"{k}={format_value(v)}" for k, v in changed.items()) or "all defaults"
    if changed:
        config_text += " (others at their defaults)"
    lines = [
        f"Experiment {log.name} (run {log.run_id})",
        f"  status      {log.status}" + (f"  notes: {log.notes}" if log.notes else ""),
        f"  started     {format_value(log.start_time)} UTC",
        f"  duration    {format_value(log.duration_seconds)} s",
        f"  iterations  {log.num_iterations} (gradient steps: {format_value(summary['gradient_steps'])})",
        f"  best loss   train {format_value(summary['best_train_loss'])}, val {format_value(summary['best_val_loss'])}",
        f"  config      {config_text}",
        "",
    ]
    stats = summary["metrics"]
    if stats:
        columns = ("count", "nan_count", "min", "max", "mean", "std", "last", "step_of_min")
        frame = pl.DataFrame([{"metric": m, **{c: s.get(c) for c in columns}} for m, s in stats.items()])
        lines.append(text_table(frame))
    else:
        lines.append("(no metrics logged)")
    return "\n".join(lines)
