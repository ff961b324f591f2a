"""``Run``: an open run. ``log`` validates, encodes once and hands the line to the run's sink (the
mapping, one ``write(2)``, the buffer, or ``_hold``: runoutput.py, the base class that moves the
bytes); the common case (known names, float values) in one pass, everything else on a checked path
that writes the same bytes. ``finish`` closes the run. Made by ``steplog.init`` (writer.py), which
opens or resumes the run's files.

Example:
    >>> import tempfile, steplog
    >>> run = steplog.init(name="x", root=tempfile.mkdtemp())
    >>> run.log({"loss": 1.0}); run.finish(); run.step
    0
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from . import format as fmt
from . import locks
from .openruns import open_runs
from .runoutput import RunOutput
from .values import (
    EXACT_INTEGER_LIMIT,
    MAX_STEP,
    check_mapping,
    check_metric_names,
    check_step,
    inexact_integers,
    split_metric_values,
    to_jsonable,
)

_time = time.time
_perf = time.perf_counter
_dumps = orjson.dumps
_write = os.write
_OPT_LINE = orjson.OPT_APPEND_NEWLINE
_STEP, _TIME, _WALLCLOCK, _METRICS, _SEGMENT = fmt.STEP, fmt.TIME, fmt.WALLCLOCK, fmt.METRICS, fmt.SEGMENT
_EXACT = float(EXACT_INTEGER_LIMIT)


class Run(RunOutput):
    """An open run: ``log`` metrics, then ``finish``. Made by ``steplog.init``.

    Attributes: ``run_id`` (the run id, the ``run_id`` column of every table; ``id`` is the same),
    ``name``, ``dir`` (pathlib.Path of the run directory), ``step`` (the last step logged, None
    before the first ``log``), ``segment`` (0, then 1, 2... for each resume), ``durability`` (the
    mode in use), ``rank`` (this process's rank in a multi-process job, 0 alone). Not thread-safe:
    log from the training loop's thread.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(name="x", root=tempfile.mkdtemp())
        >>> run.log({"loss": 1.0}); run.log({"loss": 0.5}, step=10)
        >>> run.step, run.dir.name == run.run_id == run.id, run.segment
        (10, True, 0)
        >>> run.finish()
    """

    logging = True  # False on a SilentRun (a rank that log_ranks= leaves out)

    def __init__(
        self,
        run_id: str,
        name: str,
        run_dir: Path,
        fd: int,
        *,
        segment: int,
        last_step: int | None,
        next_step: int,
        wallclock_offset: float,
        durability: str,
        fsync_interval: float,
        buffer_size: int,
        buffer_interval: float,
        tensor_flush_steps: int = 100,
        tensor_flush_seconds: float = 10.0,
        written: int = 0,
        rank: int = 0,
        restart: int = 0,
    ) -> None:
        self.id, self.name, self.dir, self.durability = run_id, name, run_dir, durability
        self.rank, self._restart = rank, restart  # this process's rank in its job, the launcher's restart count
        self._fd = fd
        self._pid = os.getpid()
        self._segment = segment
        self._step = last_step
        self._next_step = next_step
        self._perf0 = _perf() - wallclock_offset  # wallclock = perf_counter() - _perf0
        self._known_keys: set[str] = set()
        self._inexact_warned: set[str] = set()  # metrics warned about for an integer beyond 2**53
        self._closed = False
        self._write_failed = False
        self._fsync_interval = fsync_interval if durability == "fsync" else None
        # Deadlines below are on the run's wallclock (monotonic), so a clock step cannot stall them.
        self._next_fsync = wallclock_offset + fsync_interval
        self._buffer: list[bytes] | None = [] if durability == "buffered" else None
        self._buffer_size, self._buffer_interval = buffer_size, buffer_interval
        self._next_flush = wallclock_offset + buffer_interval
        self._pending = None  # events waiting for accelerator values
        self._tensor_flush_steps, self._tensor_flush_seconds = tensor_flush_steps, tensor_flush_seconds
        self._real_dir = os.path.realpath(run_dir)
        self._thread = threading.get_ident()  # the thread that logs; reads flush only from it
        self._mapped = self._map(written) if durability == "mmap" else None
        self._option = 0 if self._mapped is not None else _OPT_LINE  # mapped lines get their newline apart
        self._set_sink()
        self._sampler: Any = None  # the system metrics sampler (init starts it), stopped before the finish event
        open_runs.add(self)

    @property
    def step(self) -> int | None:
        """The last step logged (None before the first ``log``)."""
        return self._step

    @property
    def run_id(self) -> str:
        """The run id (as in the ``run_id`` column of ``steplog.runs()``); the same as ``id``."""
        return self.id

    @property
    def segment(self) -> int:
        """Which segment of the run this is: 0 for a new run, n after its n-th resume."""
        return self._segment

    def __repr__(self) -> str:
        state = "finished" if self._closed else "open"
        return f"<steplog.Run {self.id} name={self.name!r} step={self._step} {state}>"

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append one event: ``metrics`` at ``step`` (default: the previous step + 1, from 0).

        Values: int, float, bool, numpy scalars and 0-d arrays, objects with ``.item()``; NaN and
        infinities are kept. A bad value raises TypeError and a reserved or empty key ValueError,
        naming the key; nothing of that call is written and the run goes on. Several calls for
        the same step make one row in history (the later value wins per key). A scalar tensor
        on an accelerator is not waited for: its event is written when its value is copied to the
        host with those of other steps (see ``steplog.init``'s ``tensor_flush_steps``).

        Example:
            >>> import tempfile, steplog
            >>> run = steplog.init(root=tempfile.mkdtemp())
            >>> run.log({"train_loss": 2.3, "lr": 3e-4})
            >>> run.log({"val_loss": 2.4}, step=0)
            >>> run.log({"train_loss": None})
            Traceback (most recent call last):
            ...
            TypeError: metric 'train_loss': cannot log a value of type NoneType (None); pass int, float, bool, ...
        """
        if step is None:
            step = self._next_step
        elif type(step) is not int or not 0 <= step <= MAX_STEP:
            step = check_step(step)
        # The common case in one pass: a dict of floats (ints, bools among them) under names already
        # checked. The sum is a float only when every value is one of those, and within +-2**53 only when
        # finite (a larger one may hide an integer beyond 2**53). All else takes the checked path: same bytes.
        try:
            total = sum(metrics.values()) if type(metrics) is dict else None
        except (TypeError, OverflowError):
            total = None
        if type(total) is not float or not -_EXACT <= total <= _EXACT or not self._known_keys.issuperset(metrics):
            return self._log_checked(metrics, step, total)
        now = _perf() - self._perf0  # the wallclock: deadlines are checked against it
        event = {"s": step, "t": _time(), "w": now, "m": metrics}  # format's STEP, TIME, WALLCLOCK, METRICS
        if self._segment:
            event["g"] = self._segment  # format.SEGMENT
        try:
            line = _dumps(event, option=self._option)
        except TypeError:  # an int beyond 64 bits, a float subclass: converted on the checked path
            return self._log_checked(metrics, step, total)
        mapped = self._sink_mapping
        if mapped is not None:  # MappedEvents.append without its call: the line, then its newline
            buf = mapped.buf  # (who sees a newline sees its whole line)
            try:
                buf.write(line)
                buf.write_byte(10)
            except ValueError:  # the chunk is full
                mapped.continue_line(line)
        elif self._sink_fd < 0:
            self._put(line, step, now)
        else:  # "process": _put_write without its call
            try:
                written = _write(self._sink_fd, line)
            except OSError as exc:
                self._on_write_error(exc)
            else:
                if written != len(line):
                    self._finish_write(line, written)
        self._step = step
        self._next_step = step + 1

    def _log_checked(self, metrics: Any, step: int, total: Any) -> None:
        """``log`` for what its one-pass check does not pass: a mapping other than a dict, new metric
        names (checked, raising ValueError), values to convert (or TypeError naming the key), device
        tensors (deferred), NaN and infinities (recorded under format.NONFINITE), big integers (warned).
        ``total``: the sum of a dict's values as ``log`` computed it (None: the sum raised); summed
        here only for the dict ``check_mapping`` makes of another mapping."""
        converted = type(metrics) is not dict
        if converted:
            metrics = check_mapping(metrics)
        if not self._known_keys.issuperset(metrics):
            self._admit_keys(metrics)
        if converted:
            try:
                total = sum(metrics.values())
            except (TypeError, OverflowError):
                total = None
        if type(total) is not float:
            metrics, total = self._checked_values(step, metrics)
            if metrics is None:
                return  # device values: the event waits for them
        elif not -_EXACT <= total <= _EXACT:  # a large sum (or NaN): maybe an integer beyond 2**53
            self._warn_inexact(metrics, 4)
        now = _perf() - self._perf0
        self._put(self._encode(step, now, metrics, total), step, now)
        self._step = step
        self._next_step = step + 1

    def _encode(self, step: int, now: float, metrics: dict[str, Any], total: float) -> bytes:
        """format.encode_metric_event, with the sum's NaN/inf test (tests check both give the same bytes)."""
        event = {_STEP: step, _TIME: _time(), _WALLCLOCK: now, _METRICS: metrics}
        if self._segment:
            event[_SEGMENT] = self._segment
        if total - total != 0.0:  # a NaN or an infinity (or a finite overflow, which adds nothing)
            fmt.add_nonfinite(event, metrics)
        try:
            return _dumps(event, option=self._option)
        except TypeError:  # an int beyond 64 bits: convert (or refuse, naming the key) and encode again
            event[_METRICS] = split_metric_values(metrics)[0]
            return _dumps(event, option=self._option)

    def flush(self) -> None:
        """Write buffered events now (and fsync in ``"fsync"`` mode). Cheap in ``"process"`` mode.

        Example:
            >>> import tempfile, steplog
            >>> run = steplog.init(root=tempfile.mkdtemp())
            >>> run.log({"loss": 1.0}); run.flush()
        """
        if self._closed:
            return
        now = _perf() - self._perf0
        if self._pending is not None:
            self._materialise_pending(now)
        if self._buffer:
            self._flush_buffer(now)
        if self._fsync_interval is not None:
            self._fsync(now)

    def update_config(self, config: Mapping[str, Any]) -> None:
        """Add to the config of this running run: for settings known only after ``init`` (a framework
        that reports its hyperparameters late). Written at once as a ``config`` event; every reader
        (``runs()``, ``compare()``, ``run_info()``, the sidecar) merges it over the config so far:
        nested dicts key by key, other values replaced. Values are converted like ``init``'s config.

        Example:
            >>> import tempfile, steplog
            >>> root = tempfile.mkdtemp()
            >>> run = steplog.init(name="x", config={"lr": 0.1, "model": {"d": 64}}, root=root)
            >>> run.update_config({"batch_size": 32, "model": {"layers": 2}})
            >>> run.finish()
            >>> steplog.runs(root).select("config.model.d", "config.model.layers", "config.batch_size").row(0)
            (64, 2, 32)
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"update_config takes a mapping of config keys to values, got {type(config).__name__}; "
                f"pass e.g. {{'batch_size': 32}}"
            )
        if self._closed:
            self._raise_closed()
        converted = to_jsonable(dict(config), what="config")
        self.flush()  # the event lands after every metric event logged before it
        self._write_data(fmt.encode_control_event(fmt.CONFIG, config=converted, time=_time(), segment=self._segment))

    def finish(self, *, notes: str | None = None) -> None:
        """Mark the run finished, write what is buffered, fsync, and release the writer lock.
        Calling it again does nothing. When the ``finish`` event cannot be written (a full disk),
        it warns and the run stays open (file and lock held): call ``finish()`` again once there
        is space; the interpreter-exit hook makes a last attempt.

        Example:
            >>> import tempfile, steplog
            >>> run = steplog.init(root=tempfile.mkdtemp())
            >>> run.finish(notes="baseline, lr 3e-4")
        """
        self._close(fmt.FINISHED, None, notes)

    def fail(self, error: BaseException | str) -> None:
        """Mark the run failed, recording the error's type and message, and close it.

        Example:
            >>> import tempfile, steplog
            >>> run = steplog.init(root=tempfile.mkdtemp())
            >>> run.fail(RuntimeError("loss diverged"))
        """
        self._close(fmt.FAILED, error, None)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.finish()
        else:
            self.fail(exc)

    def _checked_values(self, step: int, metrics: dict[str, Any]) -> tuple[dict[str, float] | None, float]:
        """The careful path for values the sum gate of ``log`` did not pass: convert them (or raise
        TypeError naming the key); device tensors defer the event (returns None)."""
        self._warn_inexact(metrics, 5)
        converted, on_device = split_metric_values(metrics)
        if on_device is not None:
            self._defer(step, converted, on_device)
            return None, 0.0
        return converted, sum(converted.values(), 0.0)

    def _warn_inexact(self, metrics: dict[str, Any], stacklevel: int) -> None:
        """Warn once per metric when an integer beyond 2**53 arrives: it is read back as a rounded Float64."""
        for key in inexact_integers(metrics):
            try:
                rounded = float(metrics[key])
            except OverflowError:
                continue  # beyond any float: converting it raises TypeError, naming the key
            if key not in self._inexact_warned:
                self._inexact_warned.add(key)
                warnings.warn(
                    f"steplog: metric {key!r} of run {self.id}: {metrics[key]!r} is an integer beyond 2**53; "
                    f"metrics are read back as Float64, which rounds it (to {rounded:.17g}). Log it in "
                    f"larger units (e.g. millions of tokens) to keep it exact",
                    stacklevel=stacklevel,
                )

    def _admit_keys(self, metrics: dict[str, Any]) -> None:
        check_metric_names([key for key in metrics if key not in self._known_keys], fmt.RESERVED_NAMES)
        self._known_keys.update(metrics)

    def _close(self, status: str, error: BaseException | str | None, notes: str | None) -> None:
        if self._closed or os.getpid() != self._pid:
            return
        if self._sampler is not None:
            self._sampler.stop()
        try:
            self.flush()
        finally:  # even if flushing was interrupted (Ctrl-C during a device copy): end the run cleanly
            self._write_finish(status, error, notes)

    def _write_finish(self, status: str, error: BaseException | str | None, notes: str | None) -> None:
        fields: dict[str, Any] = {
            "status": status,
            "time": _time(),
            "w": _perf() - self._perf0,
            "segment": self._segment,
        }
        if self._restart:
            fields["restart"] = self._restart
        if error is not None:
            fields["error"] = (
                {"type": type(error).__name__, "message": str(error)}
                if isinstance(error, BaseException)
                else {"type": "Error", "message": str(error)}
            )
        if notes:
            fields["notes"] = str(notes)
        try:
            self._write_data(fmt.encode_control_event(fmt.FINISH, **fields))
            if not self._write_failed:
                if self._mapped is not None:
                    self._mapped.close()  # cuts the zero tail, fsyncs
                else:
                    os.fsync(self._fd)
        except OSError as exc:
            self._on_write_error(exc)
        if self._write_failed:
            self._warn_not_finished(status)
            return
        self._closed = True
        self._set_sink()
        os.close(self._fd)
        locks.release_lock(self.dir, self.rank)
        open_runs.discard(self)

    def _warn_not_finished(self, status: str) -> None:
        """The finish event could not be written: the run stays open, so that a later finish records it."""
        warnings.warn(
            f"steplog: run {self.id} ({self.name!r}) is NOT {status}: its finish event could not be "
            f"written to {self.dir / fmt.EVENTS_FILE} (disk full?). The run stays open: free space, "
            f"then call finish() again (at exit steplog tries once more); until then it reads as "
            f"running, and as crashed once this process ends",
            stacklevel=4,
        )
