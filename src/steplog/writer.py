"""Writing a run: ``init`` opens one, ``Run.log`` appends one event per call, ``Run.finish`` closes it.

The hot path (``Run.log``) validates, encodes once with orjson and makes one ``os.write`` of a whole
line to a file opened with O_APPEND: no locks, no logging module, no per-call filesystem metadata
calls, and nothing kept per step, so memory does not grow with the number of steps.

Durability modes (docs/format.md has the exact guarantees):

* ``"process"`` (default): each event is handed to the OS before ``log`` returns; it survives
  SIGKILL, an OOM kill or a segfault of the training process (not a power loss).
* ``"fsync"``: as ``"process"``, plus ``fsync`` at most every ``fsync_interval`` seconds (checked
  when logging) and at finish. A power loss can cost the events of the last interval.
* ``"buffered"``: events are kept in memory and written every ``buffer_size`` events or
  ``buffer_interval`` seconds, at ``flush()``, finish and interpreter exit. The fastest; a SIGKILL
  loses the events not yet written.

Scalar tensors on an accelerator (a GPU loss) are not copied to the host when logged, which would
wait for the device: their events wait in memory, in call order with the events logged after them,
and the values of many steps are copied in one transfer every ``tensor_flush_steps`` steps or
``tensor_flush_seconds`` seconds, at ``flush()``, finish, and before the logging thread reads the run.
A SIGKILL loses the events still waiting (docs/performance.md).

Example:
    >>> import tempfile, steplog
    >>> with steplog.init(name="demo", config={"lr": 3e-4}, root=tempfile.mkdtemp()) as run:
    ...     run.log({"train_loss": 2.31, "lr": 3e-4})
    ...     run.log({"train_loss": 2.12})
    >>> run.step
    1
"""

from __future__ import annotations

import atexit
import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from . import format as fmt
from . import store
from .values import DeviceValues, materialise, split_metric_values, to_jsonable

DURABILITY_MODES = ("process", "fsync", "buffered")

_time = time.time
_perf = time.perf_counter
_write = os.write
_encode = fmt.encode_metric_event
_dumps = orjson.dumps
_OPT_LINE = orjson.OPT_APPEND_NEWLINE
_STEP, _TIME, _WALLCLOCK, _METRICS, _SEGMENT = fmt.STEP, fmt.TIME, fmt.WALLCLOCK, fmt.METRICS, fmt.SEGMENT

# Where Run.log sends a line: write it now ("process"), keep it in the buffer ("buffered"), or
# Run._hold ("fsync", and any mode while events wait for device values).
_WRITE, _BUFFER, _HOLD = 0, 1, 2

#: Runs opened by this process and not finished yet. Strong references on purpose: a run the
#: program dropped without finish() is still flushed and closed at interpreter exit.
_open_runs: set[Run] = set()
#: Exceptions that reached sys.excepthook (uncaught: the program is ending because of them).
_uncaught: list[BaseException] = []
#: Largest step: steps are stored as signed 64-bit integers.
MAX_STEP = 2**63 - 1


def init(
    name: str | None = None,
    config: Any = None,
    root: str | os.PathLike = "experiment_logs",
    *,
    durability: str = "process",
    fsync_interval: float = 1.0,
    buffer_size: int = 1000,
    buffer_interval: float = 5.0,
    resume: str | os.PathLike | None = None,
    start_step: int | None = None,
    tensor_flush_steps: int = 100,
    tensor_flush_seconds: float = 10.0,
    system_metrics: bool | None = None,
    system_interval: float = 10.0,
) -> Run:
    """Start a new run (or, with ``resume=``, reopen an existing one) and return its ``Run``.

    ``name`` is stored as given (any string); the run's directory is named by its id, so a name
    never decides where files go. ``config`` is anything describing the run (dict, dataclass,
    argparse namespace...): it is captured as JSON, and what cannot be is stored as its repr with a
    warning. ``durability`` is ``"process"`` (default), ``"fsync"`` or ``"buffered"``.

    ``resume`` names an existing run (id, unique id prefix, or name meaning its latest run) to
    append to: a new *segment* starts, and ``start_step`` is the step training restarts from (the
    checkpoint's step; None: the first step logged). Steps of earlier segments at or after it are
    superseded in history. A ``finished`` or ``failed`` run can be resumed too; a ``running`` one
    cannot (RunLockedError). ``resume="auto"`` with ``name=``: if the latest run of that name
    crashed, resume it, else start a new run (for jobs a scheduler restarts with the same command
    line; an older crashed run behind a newer one is left alone). The config of a resumed run is
    the one it started with.

    ``tensor_flush_steps`` and ``tensor_flush_seconds``: how long logged accelerator tensors (a GPU
    loss) may wait on the device before their values are copied to the host in one batched
    transfer (the copy waits for the device, so it is done rarely): every that many steps or
    seconds, whichever comes first, and at ``flush()``, finish and reads from the logging thread.

    ``system_metrics=True`` (None: the environment variable ``STEPLOG_SYSTEM_METRICS=1``) records CPU,
    memory and GPU figures every ``system_interval`` seconds in a thread of its own, until finish
    (``steplog.system_metrics``; read them with ``steplog.system(run)``).

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> run = init(name="baseline", config={"lr": 3e-4, "layers": 4}, root=root)
        >>> run.log({"train_loss": 2.31}, step=0)
        >>> run.finish()
        >>> again = init(resume="baseline", root=root, start_step=0)
        >>> again.log({"train_loss": 2.30})
        >>> again.finish()
    """
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability={durability!r} is not a mode; choose one of {', '.join(DURABILITY_MODES)}")
    if durability == "fsync" and not fsync_interval >= 0:
        raise ValueError(f"fsync_interval={fsync_interval!r} must be a number of seconds >= 0")
    if durability == "buffered" and (not isinstance(buffer_size, int) or buffer_size < 1 or not buffer_interval > 0):
        raise ValueError(f"buffer_size={buffer_size!r} must be an int >= 1 and buffer_interval={buffer_interval!r} > 0 seconds")
    if not isinstance(tensor_flush_steps, int) or tensor_flush_steps < 1 or not tensor_flush_seconds > 0:
        raise ValueError(f"tensor_flush_steps={tensor_flush_steps!r} must be an int >= 1 and "
                         f"tensor_flush_seconds={tensor_flush_seconds!r} > 0 seconds")
    if isinstance(system_interval, bool) or not isinstance(system_interval, (int, float)) or not system_interval > 0:
        raise ValueError(f"system_interval={system_interval!r} must be a number of seconds > 0 (default 10)")
    if start_step is not None and resume is None:
        raise ValueError("start_step= is for resuming a run; pass resume=RUN (or resume='auto') as well")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string or None, got {type(name).__name__}")
    options = dict(durability=durability, fsync_interval=fsync_interval, buffer_size=buffer_size, buffer_interval=buffer_interval,
                   tensor_flush_steps=tensor_flush_steps, tensor_flush_seconds=tensor_flush_seconds)
    _install_excepthook()
    run = _open(name, config, root, resume, start_step, options)
    run._sampler = _system_sampler(run, system_metrics, system_interval)
    return run


def _open(name: str | None, config: Any, root: str | os.PathLike, resume: str | os.PathLike | None,
          start_step: int | None, options: dict[str, Any]) -> Run:
    if resume == "auto":
        if name is None:
            raise ValueError("resume='auto' resumes the latest run of a name if it crashed: pass name= as well")
        named = store.runs_named(name, root)
        if not named or store.current_status(named[-1]) != fmt.CRASHED:
            return _start(name, config, Path(root), options)
        resume = named[-1]
    if resume is not None:
        return _resume(resume, Path(root), start_step, name, config, options)
    return _start(name, config, Path(root), options)


def _system_sampler(run: Run, option: bool | None, interval: float) -> Any:
    """A started system metrics sampler for ``run`` when they are asked for (else None)."""
    from . import system_metrics

    if not system_metrics.enabled(option):
        return None
    return system_metrics.SystemSampler(run.dir, interval=interval).start()


def _start(name: str | None, config: Any, root: Path, options: dict[str, Any]) -> Run:
    now = _time()
    run_id, run_dir = store.create_run_dir(root)
    store.acquire_lock(run_dir, now)
    started = _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
    start = fmt.encode_control_event(
        fmt.START,
        v=fmt.FORMAT_VERSION,
        run_id=run_id,
        name=name if name is not None else run_id,
        time=now,
        start_time=started.isoformat(),
        durability=options["durability"],
        config=to_jsonable(config if config is not None else {}, what="config"),
        meta=to_jsonable(_metadata(), what="metadata"),
    )
    fd = os.open(run_dir / fmt.EVENTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _write_all(fd, start)
    for directory in (run_dir, root):  # the new entries survive a power loss once a later fsync does
        store.fsync_directory(directory)
    return Run(run_id, name if name is not None else run_id, run_dir, fd, segment=0, last_step=None,
               next_step=0, wallclock_offset=0.0, **options)


def _resume(ref: str | os.PathLike, root: Path, start_step: int | None, name: str | None, config: Any,
            options: dict[str, Any]) -> Run:
    if start_step is not None:
        start_step = _check_step(start_step)
    run_dir = store.resolve_run(ref, root)
    events = run_dir / fmt.EVENTS_FILE
    store.acquire_lock(run_dir, _time())
    try:
        _reopen_compacted(run_dir)
        state = _tail_state(events)
        if name is not None and name != state["name"]:
            warnings.warn(f"steplog: resuming run {run_dir.name} named {state['name']!r}; name={name!r} is ignored", stacklevel=3)
        if config is not None and to_jsonable(config, what="config") != state["config"]:
            warnings.warn(f"steplog: resuming run {run_dir.name}: the config passed differs from the one it started "
                          f"with; the run keeps its original config", stacklevel=3)
        segment = state["segments"]
        now = _time()
        fd = os.open(events, os.O_WRONLY | os.O_APPEND)
        _write_all(fd, fmt.encode_control_event(
            fmt.RESUME, segment=segment, start_step=start_step, time=now, w=state["wallclock"],
            durability=options["durability"], meta=to_jsonable(_metadata(), what="metadata"),
        ))
    except BaseException:
        store.release_lock(run_dir)
        raise
    last = state["last_step"]
    next_step = start_step if start_step is not None else state["next_step"]
    return Run(state["run_id"], state["name"], run_dir, fd, segment=segment, last_step=last,
               next_step=next_step, wallclock_offset=state["wallclock"], **options)


def _reopen_compacted(run_dir: Path) -> None:
    """Make a compacted run live again (under its lock): its archived events move back, and the
    derived Parquet file and sidecar, now out of date, are removed; the next compaction folds it anew."""
    events = run_dir / fmt.EVENTS_FILE
    archived = run_dir / fmt.ARCHIVED_EVENTS_FILE
    if not events.exists() and archived.exists():
        os.replace(archived, events)
    if not events.exists():
        raise FileNotFoundError(f"run {run_dir.name} has no {fmt.EVENTS_FILE} (nor {fmt.ARCHIVED_EVENTS_FILE}) "
                                f"to append to; it cannot be resumed")
    for derived in (fmt.SIDECAR_FILE, fmt.PARQUET_FILE):
        try:
            (run_dir / derived).unlink()
        except FileNotFoundError:
            pass


def _tail_state(events: Path) -> dict[str, Any]:
    """What resuming needs from an events file: name, segment count, last step, the step logging
    continues from, and the wallclock. A torn last line (the previous writer died mid-write) is
    cut off so appends start clean."""
    with open(events, "r+b") as f:
        data = f.read()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            f.truncate(complete)
            data = data[:complete]
    start = fmt.read_start_event(events)
    if start is None:
        raise ValueError(f"{events} has no readable start event; it cannot be resumed")
    version = start.get("v")
    if isinstance(version, int) and version > fmt.FORMAT_VERSION:
        raise ValueError(f"{events} was written in event format v{version}, newer than this steplog's "
                         f"v{fmt.FORMAT_VERSION}; upgrade steplog to resume it")
    segments = 1 + fmt.count_resumes(data)
    last_step, next_step, wallclock = None, None, None
    end = len(data)
    while end > 0:  # walk back over complete lines to the last metric event and the last wallclock
        begin = data.rfind(b"\n", 0, end - 1) + 1
        try:
            event = orjson.loads(data[begin:end])
        except ValueError:
            end = begin
            continue
        if isinstance(event, dict):
            if wallclock is None and isinstance(event.get(fmt.WALLCLOCK), (int, float)):
                wallclock = float(event[fmt.WALLCLOCK])
            if fmt.KIND not in event and isinstance(event.get(fmt.STEP), int):
                last_step = event[fmt.STEP]
                break
            if event.get(fmt.KIND) == fmt.RESUME and next_step is None and isinstance(event.get("start_step"), int):
                next_step = event["start_step"]  # a later segment restarted here and logged nothing after
        end = begin
    if next_step is None:
        next_step = 0 if last_step is None else last_step + 1
    return {"run_id": start.get("run_id", events.parent.name), "name": start.get("name", events.parent.name),
            "config": start.get("config"), "segments": segments, "last_step": last_step, "next_step": next_step,
            "wallclock": wallclock or 0.0}


class Run:
    """An open run: ``log`` metrics, then ``finish``. Made by ``steplog.init``.

    Attributes: ``id`` (the run id), ``name``, ``dir`` (pathlib.Path of the run directory),
    ``step`` (the last step logged, None before the first ``log``). Not thread-safe: log from the
    training loop's thread.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(name="x", root=tempfile.mkdtemp())
        >>> run.log({"loss": 1.0}); run.log({"loss": 0.5}, step=10)
        >>> run.step, run.dir.name == run.id
        (10, True)
        >>> run.finish()
    """

    def __init__(self, run_id: str, name: str, run_dir: Path, fd: int, *, segment: int, last_step: int | None,
                 next_step: int, wallclock_offset: float, durability: str, fsync_interval: float,
                 buffer_size: int, buffer_interval: float, tensor_flush_steps: int = 100,
                 tensor_flush_seconds: float = 10.0) -> None:
        self.id = run_id
        self.name = name
        self.dir = run_dir
        self.durability = durability
        self._fd = fd
        self._pid = os.getpid()
        self._segment = segment
        self._step = last_step
        self._next_step = next_step
        self._perf0 = _perf() - wallclock_offset  # wallclock = perf_counter() - _perf0
        self._known_keys: set[str] = set()
        self._closed = False
        self._write_failed = False
        self._fsync_interval = fsync_interval if durability == "fsync" else None
        # Deadlines below are on the run's wallclock (monotonic), so a clock step cannot stall them.
        self._next_fsync = wallclock_offset + fsync_interval
        self._buffer: list[bytes] | None = [] if durability == "buffered" else None
        self._buffer_size = buffer_size
        self._buffer_interval = buffer_interval
        self._next_flush = wallclock_offset + buffer_interval
        # Events waiting for accelerator values (None when none wait): ready lines (bytes) and
        # (step, time, wallclock, metrics, DeviceValues) tuples, in call order.
        self._pending: list[bytes | tuple[int, float, float, dict[str, Any], DeviceValues]] | None = None
        self._pending_until_step = 0
        self._pending_until_time = 0.0
        self._tensor_flush_steps = tensor_flush_steps
        self._tensor_flush_seconds = tensor_flush_seconds
        self._real_dir = os.path.realpath(run_dir)
        self._thread = threading.get_ident()  # the thread that logs; reads flush only from it
        self._mode_sink = {"process": _WRITE, "buffered": _BUFFER}.get(durability, _HOLD)
        self._sink = self._mode_sink
        self._sampler: Any = None  # the system metrics sampler (init starts it), stopped before the finish event
        _open_runs.add(self)

    @property
    def step(self) -> int | None:
        """The last step logged (None before the first ``log``)."""
        return self._step

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
            TypeError: metric 'train_loss': cannot log a value of type NoneType (None); pass int, float, bool, a numpy scalar or 0-d array, or a tensor with .item()
        """
        if step is None:
            step = self._next_step
        elif type(step) is not int or not 0 <= step <= MAX_STEP:
            step = _check_step(step)
        if type(metrics) is not dict:
            metrics = _check_mapping(metrics)
        if not self._known_keys.issuperset(metrics):
            self._admit_keys(metrics)
        # One C-level pass checks the values: their sum is a float only when they are floats (ints
        # and bools may be among them: orjson writes them as JSON numbers and true/false, which
        # readers return as floats). Anything else (numpy scalars, tensors, strings, None, only
        # ints...) takes the careful path. The sum also finds NaN and infinities below.
        try:
            total = sum(metrics.values())
        except (TypeError, OverflowError):
            total = None
        if type(total) is not float:
            metrics, total = self._checked_values(step, metrics)
            if metrics is None:
                return  # device values: the event waits for them
        now = _perf() - self._perf0  # the wallclock: deadlines are checked against it
        # format.encode_metric_event, inlined to save a call (tests check that both give the same bytes)
        event = {_STEP: step, _TIME: _time(), _WALLCLOCK: now, _METRICS: metrics}
        if self._segment:
            event[_SEGMENT] = self._segment
        if total - total != 0.0:  # a NaN or an infinity (or a finite overflow, which adds nothing)
            fmt.add_nonfinite(event, metrics)
        try:
            line = _dumps(event, option=_OPT_LINE)
        except TypeError:  # an int beyond 64 bits: convert (or refuse, naming the key) and encode again
            metrics = event[_METRICS] = split_metric_values(metrics)[0]
            line = _dumps(event, option=_OPT_LINE)
        sink = self._sink
        if sink == _WRITE:
            try:
                written = _write(self._fd, line)
            except OSError as exc:
                self._on_write_error(exc)
            else:
                if written != len(line):
                    self._finish_write(line, written)
        elif sink == _BUFFER:
            self._buffer.append(line)
            if len(self._buffer) >= self._buffer_size or now >= self._next_flush:
                self._flush_buffer(now)
        else:
            self._hold(line, step, now)
        self._step = step
        self._next_step = step + 1

    def flush(self) -> None:
        """Write buffered events now (and fsync in ``"fsync"`` mode). Cheap in ``"process"`` mode.

        Example:
            >>> import tempfile, steplog
            >>> run = steplog.init(root=tempfile.mkdtemp(), durability="buffered")
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
            >>> steplog.runs(root).select("config.lr", "config.model.d", "config.model.layers", "config.batch_size").row(0)
            (0.1, 64, 2, 32)
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"update_config takes a mapping of config keys to values, got {type(config).__name__}; "
                            f"pass e.g. {{'batch_size': 32}}")
        if self._closed:
            self._raise_closed()
        converted = to_jsonable(dict(config), what="config")
        self.flush()  # the event lands after every metric event logged before it
        self._write_data(fmt.encode_control_event(fmt.CONFIG, config=converted, time=_time(), segment=self._segment))

    def finish(self, *, notes: str | None = None) -> None:
        """Mark the run finished, write what is buffered, fsync, and release the writer lock.
        Calling it again does nothing.

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

    # --- off the hot path ---------------------------------------------------------------------

    def _checked_values(self, step: int, metrics: dict[str, Any]) -> tuple[dict[str, float] | None, float]:
        """The careful path for values the sum gate of ``log`` did not pass: convert them (or raise
        TypeError naming the key); device tensors defer the event (returns None)."""
        converted, on_device = split_metric_values(metrics)
        if on_device is not None:
            self._defer(step, converted, on_device)
            return None, 0.0
        return converted, sum(converted.values(), 0.0)

    def _admit_keys(self, metrics: dict[str, Any]) -> None:
        for key in metrics:
            if key in self._known_keys:
                continue
            if not isinstance(key, str) or not key:
                raise ValueError(f"metric names must be non-empty strings, got {key!r}")
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"metric name {key!r} is not valid unicode (a lone surrogate); "
                                 f"decode it properly or rename the metric") from None
            if key in fmt.RESERVED_NAMES:
                raise ValueError(
                    f"metric name {key!r} is reserved by steplog (reserved: {', '.join(sorted(fmt.RESERVED_NAMES))}); "
                    f"pass the step with log(..., step=N) and rename the metric, e.g. 'train/{key}'"
                )
        self._known_keys.update(metrics)

    def _hold(self, line: bytes, step: int, now: float) -> None:
        """Where ``log`` sends a line outside the two fast paths (see ``_set_sink``)."""
        if self._closed:
            self._raise_closed()
        if self._pending is not None:  # keep call order behind the events waiting for device values
            self._pending.append(line)
            self._check_pending(step, now)
        else:  # "fsync" mode, or "process" mode after a failed write
            self._emit([line], now)

    def _set_sink(self) -> None:
        """Send ``log``'s lines down a fast path unless the run is closed, events wait for device
        values or, in "process" mode, a write failed (``_write_data`` ends the torn line once
        writing works again)."""
        held = self._closed or self._pending is not None or (self._write_failed and self._mode_sink == _WRITE)
        self._sink = _HOLD if held else self._mode_sink

    def _raise_closed(self) -> None:
        raise RuntimeError(f"run {self.id} ({self.name!r}) is finished; start or resume a run to log more")

    def _defer(self, step: int, metrics: dict[str, Any], on_device: DeviceValues) -> None:
        if self._closed:
            self._raise_closed()
        now = _perf() - self._perf0
        if self._pending is None:
            self._pending = []
            self._set_sink()
            self._pending_until_step = step + self._tensor_flush_steps
            self._pending_until_time = now + self._tensor_flush_seconds
        self._pending.append((step, _time(), now, metrics, on_device))
        self._step = step
        self._next_step = step + 1
        self._check_pending(step, now)

    def _check_pending(self, step: int, now: float) -> None:
        if (step >= self._pending_until_step or now >= self._pending_until_time
                or len(self._pending) >= 16 * self._tensor_flush_steps):  # bounds memory whatever the steps do
            self._materialise_pending(now)

    def _materialise_pending(self, now: float) -> None:
        """Copy the waiting device values to the host in one transfer, write the waiting events in order."""
        pending = self._pending  # stays in place until its lines are built: an interrupt loses nothing
        batches = [entry[4] for entry in pending if type(entry) is tuple]
        try:
            values = iter(materialise(batches))
        except Exception as exc:  # e.g. the device failed: the training loop will hear of it itself
            warnings.warn(f"steplog: could not copy {len(batches)} logged device value(s) of run {self.id} to the host "
                          f"({type(exc).__name__}: {exc}); their events are lost", stacklevel=3)
            values = None
        lines = []
        for entry in pending:
            if type(entry) is bytes:
                lines.append(entry)
            elif values is not None:
                step, time_, wallclock, metrics, _ = entry
                metrics.update(next(values))
                lines.append(_encode(step, time_, wallclock, metrics, self._segment))
        self._pending = None
        self._set_sink()
        self._emit(lines, now)

    def _emit(self, lines: list[bytes], now: float) -> None:
        """Send complete lines on by the run's durability mode (off the hot path, which inlines this)."""
        if self._buffer is None:
            self._write_data(b"".join(lines))
            if self._fsync_interval is not None and now >= self._next_fsync:
                self._fsync(now)
        else:
            self._buffer.extend(lines)
            if len(self._buffer) >= self._buffer_size or now >= self._next_flush:
                self._flush_buffer(now)

    def _flush_buffer(self, now: float) -> None:
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._next_flush = now + self._buffer_interval
        self._write_data(data)

    def _write_data(self, data: bytes) -> None:
        if self._write_failed:
            data = b"\n" + data  # end the line a failed write may have left half-written
        try:
            written = _write(self._fd, data)
        except OSError as exc:
            self._on_write_error(exc)
            return
        if self._write_failed:
            self._write_failed = False
            self._set_sink()
        if written != len(data):
            self._finish_write(data, written)

    def _finish_write(self, data: bytes, written: int) -> None:
        """Complete a short write."""
        try:
            _write_all(self._fd, data[written:])
        except OSError as exc:
            self._on_write_error(exc)

    def _on_write_error(self, exc: OSError) -> None:
        if not self._write_failed:
            warnings.warn(
                f"steplog: could not append to {self.dir / fmt.EVENTS_FILE} ({exc}); events are dropped "
                f"until writing works again (disk full?). Training goes on.", stacklevel=4
            )
        self._write_failed = True
        self._set_sink()

    def _fsync(self, now: float) -> None:
        self._next_fsync = now + self._fsync_interval
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._on_write_error(exc)

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
        fields: dict[str, Any] = {"status": status, "time": _time(), "w": _perf() - self._perf0, "segment": self._segment}
        if error is not None:
            fields["error"] = ({"type": type(error).__name__, "message": str(error)}
                              if isinstance(error, BaseException) else {"type": "Error", "message": str(error)})
        if notes:
            fields["notes"] = str(notes)
        try:
            _write_all(self._fd, (b"\n" if self._write_failed else b"") + fmt.encode_control_event(fmt.FINISH, **fields))
            os.fsync(self._fd)
        except OSError as exc:
            self._on_write_error(exc)
        self._closed = True
        self._set_sink()
        os.close(self._fd)
        store.release_lock(self.dir)
        _open_runs.discard(self)


def flush_open_runs(path: str | os.PathLike) -> None:
    """Flush every run this thread has open in directory ``path`` or below it, so that a read
    through the training loop's own thread sees all it logged (device values still waiting,
    buffered events). The reader calls it before reading an events file; with no open run it
    costs nothing. Runs opened by another thread are left alone: ``Run`` is not thread-safe, so a
    read from another thread sees what has been written.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(root=tempfile.mkdtemp(), durability="buffered")
        >>> run.log({"loss": 1.0})
        >>> flush_open_runs(run.dir)
        >>> (run.dir / "events.jsonl").read_bytes().count(b"\\n")  # the start event and the metric event
        2
        >>> run.finish()
    """
    if not _open_runs:
        return
    where = os.path.realpath(path)
    inside = where.rstrip(os.sep) + os.sep
    me = threading.get_ident()
    for run in list(_open_runs):
        if run._thread == me and (run._real_dir == where or run._real_dir.startswith(inside)):
            run.flush()


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(f"step must be a non-negative int, got {type(step).__name__} ({step!r:.40})")
    value = step.__index__()
    if not 0 <= value <= MAX_STEP:
        raise ValueError(f"step must be an int from 0 to 2**63-1, got {value}")
    return value


def _check_mapping(metrics: Any) -> dict[str, Any]:
    if isinstance(metrics, Mapping):
        return dict(metrics)
    raise TypeError(f"log() takes a dict of metric name -> number, got {type(metrics).__name__}; e.g. run.log({{'loss': 0.5}})")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _metadata() -> dict[str, Any]:
    from . import __version__

    meta: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "steplog_version": __version__,
    }
    meta.update(_git_state())
    return meta


def _git_state(timeout: float = 2.0) -> dict[str, Any]:
    """The git commit and dirty flag of the working directory; {} outside git or when git is slow."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, timeout=timeout, text=True)
        if head.returncode != 0:
            return {}
        state: dict[str, Any] = {"git_commit": head.stdout.strip(), "git_dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, timeout=timeout, text=True)
        if status.returncode == 0:
            state["git_dirty"] = bool(status.stdout.strip())
        return state
    except (OSError, subprocess.SubprocessError):
        return {}


def _install_excepthook() -> None:
    """Chain sys.excepthook once, to learn whether an uncaught exception is ending the program
    (``sys.last_value`` cannot tell: in a REPL it keeps any earlier error shown at the prompt)."""
    previous = sys.excepthook
    if getattr(previous, "_steplog", False):
        return

    def record_uncaught(exc_type, exc, tb):
        _uncaught.append(exc)
        previous(exc_type, exc, tb)

    record_uncaught._steplog = True  # type: ignore[attr-defined]
    sys.excepthook = record_uncaught


@atexit.register
def _close_open_runs() -> None:
    """At interpreter exit, close runs the program left open: ``failed`` if an uncaught exception
    is ending the program, else ``finished``. A SIGKILL skips this: such runs read as crashed."""
    error = _uncaught[-1] if _uncaught else None
    for run in list(_open_runs):
        try:
            if error is not None:
                run.fail(error)
            else:
                run.finish()
        except Exception:  # never mask the real exit
            pass
