"""The seed API: ``ExperimentConfig``, ``ExperimentTracker`` and ``ExperimentAnalyzer``, on steplog runs.

A thin layer: ``ExperimentTracker`` writes through ``steplog.init``/``Run.log`` (one run per
experiment, named ``config.experiment_name``, with ``config.to_dict()`` as the run config), and
``ExperimentAnalyzer`` reads through ``steplog.runs``/``history``/``summary``/``compare``/``best``.
There is no second file format: what the tracker writes is an ordinary steplog run.

How the seed's fields map onto a run:

* ``iteration`` is the steplog step; several calls at one iteration (``log_metrics`` then
  ``log_eval``) merge into one row.
* ``gradient_step`` (the tracker's optimizer-step counter, see ``increment_gradient_step``) is
  logged as a metric named ``gradient_step`` with the first call at each iteration: a row holds the
  count as it was when its iteration was first logged (``log_eval`` after
  ``increment_gradient_step`` at the same iteration does not change it).
* ``wallclock_time`` is the event's wall-clock seconds since ``start()`` (history's ``wallclock``).
* ``train_loss``, ``val_loss``, ``learning_rate``, ``tokens_per_sec``, ``iter_time_ms`` and every
  extra keyword are metrics under their own names; a value of None means "not measured" and is
  left out.

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> config = ExperimentConfig(experiment_name="baseline", learning_rate=3e-4, max_iters=3)
    >>> with ExperimentTracker(config, log_dir=root) as tracker:
    ...     for it in range(3):
    ...         tracker.log_metrics(it, train_loss=2.0 - it / 2, learning_rate=3e-4)
    ...         tracker.increment_gradient_step()
    ...     tracker.log_eval(2, val_loss=1.4)
    >>> log = ExperimentAnalyzer(root).get_experiment("baseline")
    >>> log.metrics.select("iteration", "gradient_step", "train_loss", "val_loss").rows()
    [(0, 0, 2.0, None), (1, 1, 1.5, None), (2, 2, 1.0, 1.4)]
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import types
import warnings
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from . import query, store
from .compact import compact_each
from .tables import format_value, text_table
from .writer import Run, init

#: Names the tracker writes itself; extra metrics may not use them.
GRADIENT_STEP = "gradient_step"
SEED_COLUMNS = ("iteration", GRADIENT_STEP, "wallclock_time")
_DEFAULT_COMPARED = ("train_loss", "val_loss")
_INIT_OPTIONS = ("durability", "fsync_interval", "buffer_size", "buffer_interval", "resume", "start_step")


# --- configuration ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The hyperparameters of one run, immutable. Defaults describe a CS336 assignment-1
    Transformer LM on TinyStories; ``extra`` holds anything else (a mapping, read-only).

    Stored as the run's config by ``ExperimentTracker`` (``to_dict()``: every field, with
    ``extra`` as a nested dict, so that ``steplog.runs()`` shows it as ``config.extra.<key>``).

    Example:
        >>> config = ExperimentConfig(experiment_name="lr_3e-3", learning_rate=3e-3, extra={"tokenizer": "bpe"})
        >>> config.learning_rate, config.extra["tokenizer"]
        (0.003, 'bpe')
        >>> config.learning_rate = 1.0
        Traceback (most recent call last):
        ...
        dataclasses.FrozenInstanceError: cannot assign to field 'learning_rate'
        >>> ExperimentConfig.from_dict(config.to_dict()) == config
        True
    """

    experiment_name: str
    # model
    vocab_size: int = 10_000
    context_length: int = 256
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 16
    d_ff: int = 1344
    rope_theta: float = 10_000.0
    # optimisation
    batch_size: int = 32
    max_iters: int = 40_000
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    warmup_iters: int = 1_000
    cosine_cycle_iters: int = 40_000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    # evaluation and logging
    eval_interval: int = 500
    eval_iters: int = 100
    log_interval: int = 10
    # environment and data
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    train_data: str | None = None
    val_data: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.experiment_name, str) or not self.experiment_name.strip():
            raise ValueError(f"experiment_name must be a non-empty string, got {self.experiment_name!r}")
        if not isinstance(self.extra, Mapping):
            raise TypeError(f"extra must be a mapping (e.g. a dict), got {type(self.extra).__name__}")
        object.__setattr__(self, "extra", types.MappingProxyType(dict(self.extra)))

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (``extra`` as a nested dict), ready to store as JSON.

        Example:
            >>> ExperimentConfig("run", extra={"notes": "x"}).to_dict()["extra"]
            {'notes': 'x'}
        """
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """A config from a dict such as ``to_dict()`` made. Keys that are not fields go into
        ``extra`` (so the config of any steplog run can be read as an ExperimentConfig).

        Example:
            >>> ExperimentConfig.from_dict({"experiment_name": "x", "d_model": 64, "dropout": 0.1}).extra
            mappingproxy({'dropout': 0.1})
        """
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in names and k != "extra"}
        given = data.get("extra")
        extra = dict(given) if isinstance(given, Mapping) else ({} if given is None else {"extra": given})
        extra.update({k: v for k, v in data.items() if k not in names})
        if "experiment_name" not in fields:
            raise ValueError(f"cannot make an ExperimentConfig without 'experiment_name'; got keys {sorted(data)}")
        return cls(**fields, extra=extra)


@dataclasses.dataclass
class MetricsSnapshot:
    """One point in time of a run: one row of ``ExperimentLog.metrics``.

    ``extra_metrics`` holds every metric other than the named ones (only those the row has).

    Example:
        >>> MetricsSnapshot(iteration=10, gradient_step=5, wallclock_time=1.5, train_loss=2.1).train_loss
        2.1
    """

    iteration: int
    gradient_step: int | None
    wallclock_time: float
    train_loss: float | None = None
    val_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_sec: float | None = None
    iter_time_ms: float | None = None
    extra_metrics: dict[str, float] = dataclasses.field(default_factory=dict)


_SNAPSHOT_METRICS = ("train_loss", "val_loss", "learning_rate", "tokens_per_sec", "iter_time_ms")


# --- writing --------------------------------------------------------------------------------


class ExperimentTracker:
    """Log one experiment while it trains: ``start()``, ``log_metrics``/``log_eval`` per
    iteration, ``increment_gradient_step`` per optimizer step, ``finish()``, ``save()``.

    ``options`` go to ``steplog.init``: ``durability`` (``"process"``, ``"fsync"``,
    ``"buffered"``), ``fsync_interval``, ``buffer_size``, ``buffer_interval``, and ``resume`` /
    ``start_step`` to continue a run after a restart. Also a context manager: ``with`` starts the
    run and finishes it (or marks it failed when the block raises).

    Attributes: ``config``, ``log_dir``, ``gradient_step`` (the counter; set it from a checkpoint
    when resuming), ``run`` (the ``steplog.Run``, None before ``start()``).

    Example:
        >>> import tempfile
        >>> tracker = ExperimentTracker(ExperimentConfig("tiny"), log_dir=tempfile.mkdtemp())
        >>> tracker.start()
        >>> tracker.log_metrics(0, train_loss=3.2, learning_rate=1e-3, tokens_per_sec=5e4, iter_time_ms=12.5)
        >>> tracker.increment_gradient_step()
        >>> tracker.log_eval(0, val_loss=3.3)
        >>> tracker.finish(notes="smoke test")
        >>> tracker.save().name
        'run.json'
    """

    def __init__(self, config: ExperimentConfig, log_dir: str | os.PathLike = "experiment_logs", **options: Any) -> None:
        if not isinstance(config, ExperimentConfig):
            raise TypeError(f"config must be an ExperimentConfig, got {type(config).__name__}; "
                            f"e.g. ExperimentConfig(experiment_name='baseline', learning_rate=3e-4)")
        unknown = sorted(set(options) - set(_INIT_OPTIONS))
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)} for ExperimentTracker; "
                            f"options are passed to steplog.init: {', '.join(_INIT_OPTIONS)}")
        self.config = config
        self.log_dir = Path(log_dir)
        self.options = options
        self.gradient_step = 0
        self.run: Run | None = None
        self._finished = False
        self._last_iteration: int | None = None  # logged by this tracker (not by a segment before a resume)

    def __repr__(self) -> str:
        state = "not started" if self.run is None else ("finished" if self._finished else f"run {self.run.id}")
        return f"<ExperimentTracker {self.config.experiment_name!r} {state}>"

    @property
    def run_id(self) -> str | None:
        """The steplog run id (None before ``start()``)."""
        return None if self.run is None else self.run.id

    @property
    def run_dir(self) -> Path | None:
        """The run's directory (None before ``start()``)."""
        return None if self.run is None else self.run.dir

    def start(self) -> None:
        """Start the run (wall-clock time counts from here). Calling it again does nothing.

        Example:
            >>> import tempfile
            >>> tracker = ExperimentTracker(ExperimentConfig("x"), log_dir=tempfile.mkdtemp())
            >>> tracker.start(); tracker.run.name
            'x'
            >>> tracker.finish()
        """
        if self.run is None:
            self._last_iteration = None
            self.run = init(name=self.config.experiment_name, config=self.config.to_dict(), root=self.log_dir, **self.options)

    def _open_run(self) -> Run:
        if self.run is None:
            raise RuntimeError(f"experiment {self.config.experiment_name!r} is not started; call tracker.start() first "
                               f"(or use `with ExperimentTracker(config) as tracker:`)")
        return self.run

    def log_metrics(self, iteration: int, train_loss: Any = None, learning_rate: Any = None, tokens_per_sec: Any = None,
                    iter_time_ms: Any = None, **extra_metrics: Any) -> None:
        """Record one training snapshot at ``iteration`` (with the current gradient step and the
        wall-clock time). Values: numbers, numpy scalars, tensors with ``.item()``; None is skipped.

        Example:
            >>> import tempfile
            >>> tracker = ExperimentTracker(ExperimentConfig("x"), log_dir=tempfile.mkdtemp())
            >>> tracker.start()
            >>> tracker.log_metrics(0, train_loss=2.5, grad_norm=0.8)
            >>> tracker.log_metrics(1, train_loss="low")
            Traceback (most recent call last):
            ...
            TypeError: metric 'train_loss': cannot log a value of type str ('low'); pass int, float, bool, a numpy scalar or 0-d array, or a tensor with .item()
            >>> tracker.finish()
        """
        self._log(iteration, extra_metrics, train_loss=train_loss, learning_rate=learning_rate,
                  tokens_per_sec=tokens_per_sec, iter_time_ms=iter_time_ms)

    def log_eval(self, iteration: int, train_loss: Any = None, val_loss: Any = None, **extra_metrics: Any) -> None:
        """Record evaluation results at ``iteration``; they join the training snapshot of the
        same iteration in one row (a value given again replaces the earlier one).

        Example:
            >>> import tempfile
            >>> tracker = ExperimentTracker(ExperimentConfig("x"), log_dir=tempfile.mkdtemp())
            >>> tracker.start(); tracker.log_eval(0, train_loss=2.4, val_loss=2.6, val_accuracy=0.31); tracker.finish()
        """
        self._log(iteration, extra_metrics, train_loss=train_loss, val_loss=val_loss)

    def _log(self, iteration: int, extra_metrics: dict[str, Any], **named: Any) -> None:
        run = self._open_run()
        # The first call at an iteration records the count: the tracker's own last iteration, not
        # run.step, which after a resume is the crashed segment's last step.
        metrics = {} if iteration == self._last_iteration else {GRADIENT_STEP: self.gradient_step}
        for key, value in named.items():
            if value is not None:
                metrics[key] = value
        if extra_metrics:
            metrics.update(_extra(extra_metrics))
        run.log(metrics, step=iteration)
        self._last_iteration = iteration

    def increment_gradient_step(self, n: int = 1) -> None:
        """Count ``n`` optimizer steps (apart from iterations, e.g. with gradient accumulation).
        Every later snapshot records the count (``tracker.gradient_step``) as ``gradient_step``.

        Example:
            >>> tracker = ExperimentTracker(ExperimentConfig("x"))
            >>> tracker.increment_gradient_step(); tracker.increment_gradient_step(4)
            >>> tracker.gradient_step
            5
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"increment_gradient_step(n={n!r}): n must be an int >= 0")
        self.gradient_step += n

    def finish(self, train_loss: Any = None, val_loss: Any = None, notes: str = "") -> None:
        """End the run. Final ``train_loss``/``val_loss``, if given, are logged at the last
        iteration logged (replacing that iteration's values); ``notes`` are stored with the run
        (``runs()``'s ``notes`` column). Calling it again does nothing.

        Example:
            >>> import tempfile
            >>> tracker = ExperimentTracker(ExperimentConfig("x"), log_dir=tempfile.mkdtemp())
            >>> tracker.start(); tracker.log_metrics(0, train_loss=2.0)
            >>> tracker.finish(val_loss=2.1, notes="baseline")
        """
        run = self._open_run()
        if self._finished:
            return
        if train_loss is not None or val_loss is not None:
            self.log_eval(0 if run.step is None else run.step, train_loss=train_loss, val_loss=val_loss)
        run.finish(notes=notes or None)
        self._finished = True

    def save(self) -> Path:
        """Compact the finished run (``metrics.parquet`` + the sidecar) and return the sidecar's
        path. Before ``finish()`` it only writes what is buffered and returns the events file's path
        (a running run is never compacted). When the run cannot be compacted now (another process
        holds it, its files are not writable) it warns, saying why, and returns the events file's
        path: the run is complete there, every query reads it, and a later ``save()`` or
        ``steplog compact`` compacts it. Training code is never stopped by it.

        Example:
            >>> import tempfile
            >>> tracker = ExperimentTracker(ExperimentConfig("x"), log_dir=tempfile.mkdtemp())
            >>> tracker.start(); tracker.log_metrics(0, train_loss=1.0)
            >>> tracker.save().name
            'events.jsonl'
            >>> tracker.finish(); tracker.save().name
            'run.json'
        """
        run = self._open_run()
        if not self._finished:
            run.flush()
            return run.dir / fmt.EVENTS_FILE
        ((_, outcome, detail),) = compact_each(self.log_dir, runs=[run.dir], quiet=True)
        if outcome == "skipped":
            warnings.warn(f"steplog: run {run.id} ({run.name!r}) was not compacted: {detail}. Its events are complete "
                          f"in {run.dir / fmt.EVENTS_FILE}; call save() again or run `steplog compact` later",
                          stacklevel=2)
            return run.dir / fmt.EVENTS_FILE
        return run.dir / fmt.SIDECAR_FILE

    def print_summary(self) -> None:
        """Print the run's summary (config, times, best losses, statistics of every metric).

        Example:
            >>> import tempfile
            >>> tracker = ExperimentTracker(ExperimentConfig("x"), log_dir=tempfile.mkdtemp())
            >>> tracker.start(); tracker.log_metrics(0, train_loss=1.0); tracker.finish()
            >>> tracker.print_summary()  # doctest: +ELLIPSIS
            Experiment x (run ...)
            ...
        """
        print(format_summary(load_experiment(self._open_run().dir, self.log_dir)))

    def __enter__(self) -> ExperimentTracker:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.run is None or self._finished:
            return
        if exc is None:
            self.finish()
        else:
            self.run.fail(exc)
            self._finished = True


def _extra(extra_metrics: dict[str, Any]) -> dict[str, Any]:
    taken = [k for k in extra_metrics if k in SEED_COLUMNS]
    if taken:
        raise ValueError(f"metric name(s) {', '.join(map(repr, taken))} are written by the tracker itself; "
                         f"use increment_gradient_step() for gradient steps, or rename the metric")
    return {k: v for k, v in extra_metrics.items() if v is not None}


# --- reading --------------------------------------------------------------------------------


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

    def __init__(self, record: Mapping[str, Any], run_dir: Path, root: Path) -> None:
        self.run_id: str = record["run_id"]
        self.name: str = record["name"]
        self.run_dir = run_dir
        self.root = root
        config = record.get("config") or {}
        try:
            self.config = ExperimentConfig.from_dict({"experiment_name": self.name, **config})
        except (TypeError, ValueError) as exc:  # a config not written by the tracker: keep it all in extra
            warnings.warn(f"steplog: run {self.run_id}: config is not an ExperimentConfig ({exc}); "
                          f"it is kept under config.extra", stacklevel=2)
            self.config = ExperimentConfig(experiment_name=self.name, extra=config)
        self.start_time: _dt.datetime | None = record.get("start_time")
        self.end_time: _dt.datetime | None = record.get("end_time")
        self.duration_seconds: float | None = record.get("duration_s")
        self.status: str = record["status"]
        self.notes: str = record.get("notes") or ""
        self.num_iterations: int = record.get("num_steps") or 0

    def __repr__(self) -> str:
        return f"<ExperimentLog {self.name!r} run {self.run_id} {self.status}, {self.num_iterations} iterations>"

    @cached_property
    def metrics(self) -> pl.DataFrame:
        """The run's history with the seed's column names: one row per iteration."""
        return seed_frame(query.history(self.run_dir, self.root))

    @cached_property
    def summary(self) -> dict[str, Any]:
        """``best_train_loss``, ``best_val_loss``, ``final_train_loss``, ``final_val_loss``,
        ``duration_seconds``, ``num_iterations``, ``gradient_steps`` (the largest count a snapshot
        recorded; None if none did) and, under ``metrics``, the
        statistics of every metric from ``steplog.summary`` (count, nan_count, min, max, mean,
        std, first, last, step_of_min, step_of_max)."""
        per_metric = query.summary(self.run_dir, self.root)

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
            snapshots.append(MetricsSnapshot(**{k: row.get(k) for k in (*SEED_COLUMNS, *_SNAPSHOT_METRICS)},
                                             extra_metrics=extra))
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
        >>> seed_frame(steplog.history("plain", root)).columns
        ['iteration', 'gradient_step', 'wallclock_time', 'loss']
    """
    frame = history.drop("time", strict=False).rename({"step": "iteration", "wallclock": "wallclock_time"})
    gradient = (pl.col(GRADIENT_STEP).cast(pl.Int64) if GRADIENT_STEP in frame.columns
                else pl.lit(None, dtype=pl.Int64).alias(GRADIENT_STEP))
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
    record = query.run_record(run_dir)
    if record is None:
        raise store.RunNotFoundError(f"run directory {run_dir} holds no readable run")
    return ExperimentLog(record, run_dir, Path(root))


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
        loaded: dict[str, tuple[tuple[Any, ...], ExperimentLog]] = {}
        for run_dir in store.run_dirs(self.log_dir):
            loaded[run_dir.name] = self._load(run_dir)
        self._cache = {k: v for k, v in loaded.items() if v is not None}
        return [log for _, log in self._cache.values()]

    def _load(self, run_dir: Path) -> tuple[tuple[Any, ...], ExperimentLog] | None:
        key = _files_key(run_dir)
        cached = self._cache.get(run_dir.name)
        if cached is not None and cached[0] == key and (cached[1].status != fmt.RUNNING or store.writer_is_alive(run_dir)):
            return cached
        record = query.run_record(run_dir)
        return None if record is None else (key, ExperimentLog(record, run_dir, self.log_dir))

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

    def comparison_frame(self, metrics: Iterable[str] | None = None, runs: Iterable[str] | None = None, *,
                         with_notes: bool = False) -> pl.DataFrame:
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
        table = query.runs(self.log_dir, runs=runs, metrics="all" if metrics is None else list(metrics),
                           figures=("best", "last"), mode="auto")
        if metrics is None:
            logged = [c[: -len(".best")] for c in table.columns if c.endswith(".best") and not c.startswith("config.")]
            metrics = [m for m in _DEFAULT_COMPARED if m in logged] or logged
        details = [pl.col("start_time").alias("started"), "notes"] if with_notes else []
        config = [c for c in query.differing_config(table) if c != "config.experiment_name"]  # that is the name
        return table.select("name", "run_id", "status", pl.col("num_steps").alias("iterations"), "duration_s",
                            *details, *config, *[f"{m}.{figure}" for m in metrics for figure in ("best", "last")])

    def get_comparison_table(self, metrics: Iterable[str] | None = None, runs: Iterable[str] | None = None) -> str:
        """An aligned text table of ``comparison_frame``: one row per run.

        Example:
            >>> print(ExperimentAnalyzer("/no/such/root").get_comparison_table())
            (no experiments in /no/such/root)
        """
        frame = self.comparison_frame(metrics, runs)
        if frame.height == 0:
            return f"(no experiments in {self.log_dir})"
        return text_table(frame)

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
        return query.export(self.get_experiment(name).run_dir, path, self.log_dir)

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
    key = [run_dir.name]
    for name in (fmt.EVENTS_FILE, fmt.SIDECAR_FILE, fmt.PARQUET_FILE, fmt.LOCK_FILE):
        try:
            st = os.stat(run_dir / name)
        except OSError:
            key.append(None)
        else:
            key.append((st.st_size, st.st_mtime_ns))
    return tuple(key)
