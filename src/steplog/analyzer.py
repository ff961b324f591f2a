"""The seed API's reading side: ``ExperimentLog`` (one run loaded back) and ``ExperimentAnalyzer``
(load, compare and export the experiments under a folder), on ``steplog.query``.

The writing side is ``steplog.tracker``; see its docstring for how the seed's fields map onto a run.

Example:
    >>> import tempfile
    >>> from steplog.tracker import ExperimentConfig, ExperimentTracker
    >>> root = tempfile.mkdtemp()
    >>> with ExperimentTracker(ExperimentConfig("baseline"), log_dir=root) as tracker:
    ...     tracker.log_metrics(0, train_loss=2.0); tracker.log_eval(0, val_loss=1.5)
    >>> ExperimentAnalyzer(root).get_best_experiment("val_loss")
    ('baseline', 1.5)
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
import warnings
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from . import locks, query, runtable, store
from .model import RunRecord, load_record
from .tables import format_value, text_table
from .tracker import (
    _DEFAULT_COMPARED,
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


class ExperimentAnalyzer:
    """Load, compare and export the experiments under ``log_dir``.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> for lr in (1e-3, 3e-3):
        ...     with ExperimentTracker(ExperimentConfig(f"lr_{lr:g}", learning_rate=lr), log_dir=root) as t:
        ...         t.log_metrics(0, train_loss=2.0); t.log_eval(0, val_loss=2.0 - 100 * lr)
        >>> analyzer = ExperimentAnalyzer(root)
        >>> len(analyzer.load_all())
        2
        >>> analyzer.get_best_experiment("val_loss")
        ('lr_0.003', 1.7)
    """

    def __init__(self, log_dir: str | os.PathLike = "experiment_logs") -> None:
        self.log_dir = Path(log_dir)
        self._cache: dict[str, tuple[tuple[Any, ...], ExperimentLog]] = {}

    @property
    def experiments(self) -> dict[str, ExperimentLog]:
        """The runs loaded so far, by run id, oldest first."""
        return {run_id: log for run_id, (_, log) in self._cache.items()}

    def load_all(self) -> list[ExperimentLog]:
        """Load every run under ``log_dir`` (oldest first). Cached: a later call rereads only
        runs whose files changed (or whose writer stopped), picks up new runs and drops deleted ones.

        Example:
            >>> ExperimentAnalyzer("/no/such/root").load_all()
            []
        """
        loaded = {run_dir.name: self._load(run_dir) for run_dir in store.run_dirs(self.log_dir)}
        self._cache = {k: v for k, v in loaded.items() if v is not None}
        return [log for _, log in self._cache.values()]

    def _load(self, run_dir: Path) -> tuple[tuple[Any, ...], ExperimentLog] | None:
        key = _files_key(run_dir)
        cached = self._cache.get(run_dir.name)
        if (
            cached is not None
            and cached[0] == key
            and (cached[1].status != fmt.RUNNING or locks.writer_is_alive(run_dir))
        ):
            return cached
        record = load_record(run_dir)
        return None if record is None else (key, ExperimentLog(record, self.log_dir))

    def get_experiment(self, name: str) -> ExperimentLog:
        """The run ``name`` refers to: a name (its latest run), a run id or a unique id prefix.

        Example:
            >>> ExperimentAnalyzer("/no/such/root").get_experiment("baseline")
            Traceback (most recent call last):
            ...
            steplog.store.RunNotFoundError: no run 'baseline' in /no/such/root (the folder does not exist)
        """
        return self._log_of(store.resolve_run(name, self.log_dir))

    def _log_of(self, run_dir: Path) -> ExperimentLog:
        entry = self._load(run_dir)
        if entry is None:
            raise store.RunNotFoundError(f"run directory {run_dir} holds no readable run")
        self._cache[run_dir.name] = entry
        return entry[1]

    def comparison_frame(
        self, metrics: Iterable[str] | None = None, runs: Iterable[str] | None = None, *, with_notes: bool = False
    ) -> pl.DataFrame:
        """The comparison as a Polars frame, one row per run (every run, also several of one
        name; ``runs`` limits it to some: names, ids or id prefixes): ``name``, ``run_id``,
        ``status``, ``iterations``, ``duration_s`` (``with_notes=True``: then ``started`` and
        ``notes``), the ``config.<key>`` columns whose values differ between the runs, then
        ``<metric>.best`` and ``<metric>.last`` for each of ``metrics`` (default: ``train_loss``
        and ``val_loss`` where logged, else every metric; a metric no run logged raises ValueError).
        Best is the minimum, or the maximum for names where higher is better (accuracy,
        tokens_per_sec: ``steplog.query.higher_is_better``). Each run is read once
        (``steplog.runs``).

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> for lr in (1e-3, 1e-2):
            ...     with ExperimentTracker(ExperimentConfig("sweep", learning_rate=lr), log_dir=root) as t:
            ...         t.log_metrics(0, train_loss=2.0); t.log_metrics(1, train_loss=1.0 + lr)
            >>> ExperimentAnalyzer(root).comparison_frame().drop("run_id", "duration_s").rows()
            [('sweep', 'finished', 2, 0.001, 1.001, 1.001), ('sweep', 'finished', 2, 0.01, 1.01, 1.01)]
        """
        table = runtable.runs(
            self.log_dir,
            runs=runs,
            metrics="all" if metrics is None else list(metrics),
            figures=("best", "last"),
            mode="auto",
        )
        if metrics is None:
            logged = [c[: -len(".best")] for c in table.columns if c.endswith(".best") and not c.startswith("config.")]
            metrics = [m for m in _DEFAULT_COMPARED if m in logged] or logged
        details: list[Any] = [pl.col("start_time").alias("started"), "notes"] if with_notes else []
        config = [c for c in runtable.differing_config(table) if c != "config.experiment_name"]  # that is the name
        return table.select(
            "name",
            "run_id",
            "status",
            pl.col("num_steps").alias("iterations"),
            "duration_s",
            *details,
            *config,
            *[f"{m}.{figure}" for m in metrics for figure in ("best", "last")],
        )

    def get_comparison_table(
        self, metrics: Iterable[str] | None = None, runs: Iterable[str] | None = None, width: int | None = None
    ) -> str:
        """An aligned text table of ``comparison_frame``: one row per run, fitted to ``width``
        columns (default: the terminal's width when printing to one, else no limit): long names are
        cut in the middle, and columns that do not fit go to a block below, the name repeated.

        Example:
            >>> print(ExperimentAnalyzer("/no/such/root").get_comparison_table())
            (no experiments in /no/such/root)
        """
        frame = self.comparison_frame(metrics, runs)
        if frame.height == 0:
            return f"(no experiments in {self.log_dir})"
        if width is None and sys.stdout.isatty():
            width = shutil.get_terminal_size((100, 24)).columns
        return text_table(frame, width=width, truncatable=["name", "run_id"])

    def get_best_experiment(self, metric: str = "val_loss", mode: str = "min") -> tuple[str, float]:
        """``(name, value)`` of the run with the best value of ``metric`` over its whole history
        (``mode`` ``"min"`` or ``"max"``); runs without the metric are ignored, NaN never wins.

        Example:
            >>> ExperimentAnalyzer("/no/such/root").get_best_experiment("val_loss")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: no run under /no/such/root has a value for metric 'val_loss' ...
        """
        best = query.best(metric, mode=mode, root=self.log_dir)
        return best["name"], best["value"]

    def print_summary(self, name: str) -> None:
        """Print the summary of one run (see ``get_experiment`` for ``name``).

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> with ExperimentTracker(ExperimentConfig("x"), log_dir=root) as t:
            ...     t.log_metrics(0, train_loss=1.0)
            >>> ExperimentAnalyzer(root).print_summary("x")  # doctest: +ELLIPSIS
            Experiment x (run ...)
            ...
        """
        print(format_summary(self.get_experiment(name)))

    def export_csv(self, name: str, path: str | os.PathLike) -> Path:
        """Write the run's history to a CSV file with ``steplog.export`` (columns ``step`` (the
        iteration), ``wallclock`` (seconds since start), ``time`` (UTC), then every metric,
        ``gradient_step`` among them); returns the path.

        Example:
            >>> import tempfile, polars as pl
            >>> root = tempfile.mkdtemp()
            >>> with ExperimentTracker(ExperimentConfig("x"), log_dir=root) as t:
            ...     t.log_metrics(0, train_loss=1.0)
            >>> path = ExperimentAnalyzer(root).export_csv("x", Path(root) / "x.csv")
            >>> pl.read_csv(path).columns
            ['step', 'wallclock', 'time', 'gradient_step', 'train_loss']
        """
        return query.export(self.get_experiment(name).run_dir, path, root=self.log_dir)

    def _curve(self, name: str, columns: tuple[str, ...]) -> pl.DataFrame:
        frame = self.get_experiment(name).metrics
        values = [pl.col(c) if c in frame.columns else pl.lit(None, dtype=pl.Float64).alias(c) for c in columns]
        return frame.select(*SEED_COLUMNS, *values).filter(pl.any_horizontal(pl.col(c).is_not_null() for c in columns))

    def get_loss_trajectory(self, name: str) -> pl.DataFrame:
        """``iteration``, ``gradient_step``, ``wallclock_time``, ``train_loss``, ``val_loss``:
        the rows where either loss was logged.

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> with ExperimentTracker(ExperimentConfig("x"), log_dir=root) as t:
            ...     t.log_metrics(0, train_loss=2.0); t.log_metrics(1, learning_rate=0.1); t.log_eval(2, val_loss=1.5)
            >>> ExperimentAnalyzer(root).get_loss_trajectory("x").select("iteration", "train_loss", "val_loss").rows()
            [(0, 2.0, None), (2, None, 1.5)]
        """
        return self._curve(name, ("train_loss", "val_loss"))

    def get_throughput_curve(self, name: str) -> pl.DataFrame:
        """``iteration``, ``gradient_step``, ``wallclock_time``, ``tokens_per_sec``,
        ``iter_time_ms``: the rows where either was logged.

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> with ExperimentTracker(ExperimentConfig("x"), log_dir=root) as t:
            ...     t.log_metrics(0, tokens_per_sec=1e5)
            >>> ExperimentAnalyzer(root).get_throughput_curve("x")["tokens_per_sec"].to_list()
            [100000.0]
        """
        return self._curve(name, ("tokens_per_sec", "iter_time_ms"))

    def get_lr_schedule(self, name: str) -> pl.DataFrame:
        """``iteration``, ``gradient_step``, ``wallclock_time``, ``learning_rate``: the rows where
        the learning rate was logged.

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> with ExperimentTracker(ExperimentConfig("x"), log_dir=root) as t:
            ...     t.log_metrics(0, learning_rate=1e-4); t.log_metrics(1, learning_rate=2e-4)
            >>> ExperimentAnalyzer(root).get_lr_schedule("x")["learning_rate"].to_list()
            [0.0001, 0.0002]
        """
        return self._curve(name, ("learning_rate",))


def _files_key(run_dir: Path) -> tuple[Any, ...]:
    """What identifies the state of a run's files: size and mtime of each file a reader uses."""
    key: list[Any] = [run_dir.name]
    for name in (fmt.EVENTS_FILE, fmt.SIDECAR_FILE, fmt.PARQUET_FILE, fmt.LOCK_FILE):
        try:
            st = os.stat(run_dir / name)
        except OSError:
            key.append(None)
        else:
            key.append((st.st_size, st.st_mtime_ns))
    return tuple(key)
