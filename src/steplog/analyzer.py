"""The seed API's reading side: ``ExperimentAnalyzer`` (load, compare and export the experiments
under a folder), on ``steplog.query``; one run loaded back is an ``ExperimentLog``
(``steplog.experimentlog``).

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

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from . import locks, query, runtable, store
from .experimentlog import ExperimentLog, format_summary
from .model import load_record
from .tables import text_table
from .tracker import (
    _DEFAULT_COMPARED,
    SEED_COLUMNS,
    ExperimentConfig,  # noqa: F401 (the examples below use it)
    ExperimentTracker,  # noqa: F401 (the examples below use it)
)


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
