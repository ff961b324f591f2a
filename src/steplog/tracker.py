"""The seed API's writing side: ``ExperimentConfig``, ``MetricsSnapshot`` and ``ExperimentTracker``.

A thin layer: ``ExperimentTracker`` writes through ``steplog.init``/``Run.log`` (one run per
experiment, named ``config.experiment_name``, with ``config.to_dict()`` as the run config), and
``ExperimentAnalyzer`` (``steplog.analyzer``) reads through ``steplog.runs``/``history``/``compare``/``best``.
This module never imports Polars at import time: a training process that only logs never loads it.
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
    >>> from steplog.analyzer import ExperimentAnalyzer
    >>> log = ExperimentAnalyzer(root).get_experiment("baseline")
    >>> log.metrics.select("iteration", "gradient_step", "train_loss", "val_loss").rows()
    [(0, 0, 2.0, None), (1, 1, 1.5, None), (2, 2, 1.0, 1.4)]
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import types
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import format as fmt
from .silentrun import SilentRun
from .writer import Run, init

#: Names the tracker writes itself; extra metrics may not use them.
GRADIENT_STEP = "gradient_step"
SEED_COLUMNS = ("iteration", GRADIENT_STEP, "wallclock_time")
_DEFAULT_COMPARED = ("train_loss", "val_loss")
#: The options ExperimentTracker passes to ``steplog.init``: its keyword-only parameters, read from its
#: signature so that the two never drift apart.
_INIT_OPTIONS = tuple(
    name
    for name, parameter in inspect.signature(init).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)


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

    def __init__(
        self, config: ExperimentConfig, log_dir: str | os.PathLike = "experiment_logs", **options: Any
    ) -> None:
        if not isinstance(config, ExperimentConfig):
            raise TypeError(
                f"config must be an ExperimentConfig, got {type(config).__name__}; "
                f"e.g. ExperimentConfig(experiment_name='baseline', learning_rate=3e-4)"
            )
        unknown = sorted(set(options) - set(_INIT_OPTIONS))
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(unknown)} for ExperimentTracker; "
                f"options are passed to steplog.init: {', '.join(_INIT_OPTIONS)}"
            )
        self.config = config
        self.log_dir = Path(log_dir)
        self.options = options
        self.gradient_step = 0
        self.run: Run | SilentRun | None = None
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
            self.run = init(
                name=self.config.experiment_name, config=self.config.to_dict(), root=self.log_dir, **self.options
            )

    def _open_run(self) -> Run | SilentRun:
        if self.run is None:
            raise RuntimeError(
                f"experiment {self.config.experiment_name!r} is not started; call tracker.start() first "
                f"(or use `with ExperimentTracker(config) as tracker:`)"
            )
        return self.run

    def log_metrics(
        self,
        iteration: int,
        train_loss: Any = None,
        learning_rate: Any = None,
        tokens_per_sec: Any = None,
        iter_time_ms: Any = None,
        **extra_metrics: Any,
    ) -> None:
        """Record one training snapshot at ``iteration`` (with the current gradient step and the
        wall-clock time). Values: numbers, numpy scalars, tensors with ``.item()``; None is skipped.

        Example:
            >>> import tempfile
            >>> tracker = ExperimentTracker(ExperimentConfig("x"), log_dir=tempfile.mkdtemp())
            >>> tracker.start()
            >>> tracker.log_metrics(0, train_loss=2.5, grad_norm=0.8)
            >>> tracker.log_metrics(1, train_loss="low")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            TypeError: metric 'train_loss': cannot log a value of type str ('low'); pass int, float, bool, ...
            >>> tracker.finish()
        """
        self._log(
            iteration,
            extra_metrics,
            train_loss=train_loss,
            learning_rate=learning_rate,
            tokens_per_sec=tokens_per_sec,
            iter_time_ms=iter_time_ms,
        )

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
        from .compact import compact_each  # Polars is loaded only when the run is saved

        ((_, outcome, detail),) = compact_each(self.log_dir, runs=[str(run.dir)], quiet=True)
        if outcome == "skipped":
            warnings.warn(
                f"steplog: run {run.id} ({run.name!r}) was not compacted: {detail}. Its events are complete "
                f"in {run.dir / fmt.EVENTS_FILE}; call save() again or run `steplog compact` later",
                stacklevel=2,
            )
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
        from .experimentlog import format_summary, load_experiment

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
        raise ValueError(
            f"metric name(s) {', '.join(map(repr, taken))} are written by the tracker itself; "
            f"use increment_gradient_step() for gradient steps, or rename the metric"
        )
    return {k: v for k, v in extra_metrics.items() if v is not None}


_READING = ("ExperimentLog", "ExperimentAnalyzer", "load_experiment", "format_summary", "seed_frame")


def __getattr__(name: str) -> Any:
    """The reading side, importable from here as before the split (``from steplog.tracker import
    ExperimentAnalyzer``), loaded from ``steplog.analyzer`` and ``steplog.experimentlog`` (and so
    Polars) only when asked for."""
    if name in _READING:
        from . import analyzer, experimentlog

        return getattr(analyzer if name == "ExperimentAnalyzer" else experimentlog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
