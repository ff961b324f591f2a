"""Writing a run: ``init`` opens one, ``Run.log`` appends one event per call, ``Run.finish`` closes it.

The hot path (``Run.log``) validates, encodes once with orjson and hands the line to the run's sink:
no locks, no logging module, no per-call filesystem metadata calls, and nothing kept per step, so
memory does not grow with the number of steps.

Durability modes (docs/format.md has the exact guarantees):

* ``"mmap"`` (default): each event is copied into a shared memory mapping of the events file
  (``eventfile``) before ``log`` returns: it is in the OS's page cache and survives SIGKILL, an OOM
  kill or a segfault of the training process (not a power loss), without a system call per event.
  On a network file system, or when the disk cannot reserve the next chunk, the run uses
  ``"process"``'s ``write(2)`` instead, with a warning.
* ``"process"``: each event is handed to the OS with one ``write(2)`` before ``log`` returns; same
  guarantee as ``"mmap"``.
* ``"fsync"``: as ``"process"``, plus ``fsync`` at most every ``fsync_interval`` seconds (checked
  when logging) and at finish. A power loss can cost the events of the last interval.
* ``"buffered"`` (deprecated: slower than ``"mmap"`` and less safe): events are kept in memory and
  written every ``buffer_size`` events or ``buffer_interval`` seconds, at ``flush()``, finish and
  interpreter exit. A SIGKILL loses the events not yet written.

Scalar tensors on an accelerator (a GPU loss) are not copied to the host when logged, which would
wait for the device: their events wait in memory (``deferred``), in call order with the events
logged after them, and the values of many steps are copied in one transfer every
``tensor_flush_steps`` steps or ``tensor_flush_seconds`` seconds, at ``flush()``, finish, and before
the logging thread reads the run. A SIGKILL loses the events still waiting (docs/performance.md).

Example:
    >>> import tempfile, steplog
    >>> with steplog.init(name="demo", config={"lr": 3e-4}, root=tempfile.mkdtemp()) as run:
    ...     run.log({"train_loss": 2.31, "lr": 3e-4})
    ...     run.log({"train_loss": 2.12})
    >>> run.step
    1
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from . import format as fmt
from . import store
from .deferred import PendingEvents
from .eventfile import MappedEvents, ReserveFailed, network_filesystem, write_all
from .openruns import install_excepthook, open_runs
from .resuming import reopen_compacted, tail_state
from .runmeta import metadata
from .values import (MAX_STEP, DeviceValues, check_mapping, check_metric_names, check_step, split_metric_values,
                     to_jsonable)

DURABILITY_MODES = ("mmap", "process", "fsync", "buffered")
DEFAULT_DURABILITY = "mmap"

_time = time.time
_perf = time.perf_counter
_write = os.write
_dumps = orjson.dumps
_OPT_LINE = orjson.OPT_APPEND_NEWLINE
_STEP, _TIME, _WALLCLOCK, _METRICS, _SEGMENT = fmt.STEP, fmt.TIME, fmt.WALLCLOCK, fmt.METRICS, fmt.SEGMENT
_open_runs = open_runs  # the registry (openruns); the old name, for tests that simulate a dead writer
#: Network file systems already warned about (once per file system name and process).
_warned_network: set[str] = set()


def init(
    name: str | None = None,
    config: Any = None,
    root: str | os.PathLike = "experiment_logs",
    *,
    durability: str = DEFAULT_DURABILITY,
    fsync_interval: float = 1.0,
    buffer_size: int = 1000,
    buffer_interval: float = 5.0,
    resume: str | os.PathLike | None = None,
    start_step: int | None = None,
    tensor_flush_steps: int = 100,
    tensor_flush_seconds: float = 10.0,
) -> Run:
    """Start a new run (or, with ``resume=``, reopen an existing one) and return its ``Run``.

    ``name`` is stored as given (any string); the run's directory is named by its id, so a name
    never decides where files go. ``config`` is anything describing the run (dict, dataclass,
    argparse namespace...): it is captured as JSON, and what cannot be is stored as its repr with a
    warning. ``durability`` is ``"mmap"`` (default), ``"process"``, ``"fsync"`` or ``"buffered"``
    (deprecated); docs/format.md says what each survives.

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
    _check_options(durability, fsync_interval, buffer_size, buffer_interval, tensor_flush_steps, tensor_flush_seconds)
    if start_step is not None and resume is None:
        raise ValueError("start_step= is for resuming a run; pass resume=RUN (or resume='auto') as well")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string or None, got {type(name).__name__}")
    options = dict(durability=durability, fsync_interval=fsync_interval, buffer_size=buffer_size,
                   buffer_interval=buffer_interval, tensor_flush_steps=tensor_flush_steps,
                   tensor_flush_seconds=tensor_flush_seconds)
    install_excepthook()
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


def _check_options(durability: str, fsync_interval: float, buffer_size: int, buffer_interval: float,
                   tensor_flush_steps: int, tensor_flush_seconds: float) -> None:
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability={durability!r} is not a mode; choose one of {', '.join(DURABILITY_MODES)}")
    if durability == "fsync" and not fsync_interval >= 0:
        raise ValueError(f"fsync_interval={fsync_interval!r} must be a number of seconds >= 0")
    if durability == "buffered":
        if not isinstance(buffer_size, int) or buffer_size < 1 or not buffer_interval > 0:
            raise ValueError(f"buffer_size={buffer_size!r} must be an int >= 1 and "
                             f"buffer_interval={buffer_interval!r} > 0 seconds")
        warnings.warn('steplog: durability="buffered" is deprecated: "mmap" (the default) is faster and loses '
                      'nothing on a SIGKILL (benchmarks/RESULTS.md); pass durability="mmap" or leave it out',
                      DeprecationWarning, stacklevel=4)
    if not isinstance(tensor_flush_steps, int) or tensor_flush_steps < 1 or not tensor_flush_seconds > 0:
        raise ValueError(f"tensor_flush_steps={tensor_flush_steps!r} must be an int >= 1 and "
                         f"tensor_flush_seconds={tensor_flush_seconds!r} > 0 seconds")


def _effective_durability(durability: str, run_dir: Path) -> str:
    """``"mmap"``, unless the run lives on a network file system (mappings are not coherent there):
    then ``"process"``, said once per file system and process."""
    if durability != "mmap":
        return durability
    network = network_filesystem(run_dir)
    if network is None:
        return durability
    if network not in _warned_network:
        _warned_network.add(network)
        warnings.warn(f"steplog: {run_dir.parent} is on {network}, where memory mappings are not coherent "
                      f"across hosts; runs there use durability='process' (one write(2) per event)", stacklevel=4)
    return "process"


def _start(name: str | None, config: Any, root: Path, options: dict[str, Any]) -> Run:
    now = _time()
    run_id, run_dir = store.create_run_dir(root)
    store.acquire_lock(run_dir, now)
    options["durability"] = _effective_durability(options["durability"], run_dir)
    start = fmt.encode_control_event(
        fmt.START, v=fmt.FORMAT_VERSION, run_id=run_id, name=name if name is not None else run_id, time=now,
        start_time=_dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(), durability=options["durability"],
        config=to_jsonable(config if config is not None else {}, what="config"),
        meta=to_jsonable(metadata(), what="metadata"),
    )
    fd = os.open(run_dir / fmt.EVENTS_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    write_all(fd, start)
    for directory in (run_dir, root):  # the new entries survive a power loss once a later fsync does
        store.fsync_directory(directory)
    return Run(run_id, name if name is not None else run_id, run_dir, fd, segment=0, last_step=None,
               next_step=0, wallclock_offset=0.0, written=len(start), **options)


def _resume(ref: str | os.PathLike, root: Path, start_step: int | None, name: str | None, config: Any,
            options: dict[str, Any]) -> Run:
    if start_step is not None:
        start_step = check_step(start_step)
    run_dir = store.resolve_run(ref, root)
    events = run_dir / fmt.EVENTS_FILE
    store.acquire_lock(run_dir, _time())
    try:
        reopen_compacted(run_dir)
        state = tail_state(events)
        _warn_resume_differs(run_dir, state, name, config)
        options["durability"] = _effective_durability(options["durability"], run_dir)
        fd = os.open(events, os.O_RDWR | os.O_APPEND)
        resume = fmt.encode_control_event(
            fmt.RESUME, segment=state["segments"], start_step=start_step, time=_time(), w=state["wallclock"],
            durability=options["durability"], meta=to_jsonable(metadata(), what="metadata"))
        write_all(fd, resume)
    except BaseException:
        store.release_lock(run_dir)
        raise
    next_step = start_step if start_step is not None else state["next_step"]
    return Run(state["run_id"], state["name"], run_dir, fd, segment=state["segments"], last_step=state["last_step"],
               next_step=next_step, wallclock_offset=state["wallclock"], written=os.fstat(fd).st_size, **options)


def _warn_resume_differs(run_dir: Path, state: dict[str, Any], name: str | None, config: Any) -> None:
    if name is not None and name != state["name"]:
        warnings.warn(f"steplog: resuming run {run_dir.name} named {state['name']!r}; name={name!r} is ignored",
                      stacklevel=5)
    if config is not None and to_jsonable(config, what="config") != state["config"]:
        warnings.warn(f"steplog: resuming run {run_dir.name}: the config passed differs from the one it started "
                      f"with; the run keeps its original config", stacklevel=5)


class Run:
    """An open run: ``log`` metrics, then ``finish``. Made by ``steplog.init``.

    Attributes: ``id`` (the run id), ``name``, ``dir`` (pathlib.Path of the run directory),
    ``step`` (the last step logged, None before the first ``log``), ``durability`` (the mode in
    use). Not thread-safe: log from the training loop's thread.

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
                 tensor_flush_seconds: float = 10.0, written: int = 0) -> None:
        self.id, self.name, self.dir, self.durability = run_id, name, run_dir, durability
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
        self._buffer_size, self._buffer_interval = buffer_size, buffer_interval
        self._next_flush = wallclock_offset + buffer_interval
        self._pending: PendingEvents | None = None  # events waiting for accelerator values
        self._tensor_flush_steps, self._tensor_flush_seconds = tensor_flush_steps, tensor_flush_seconds
        self._real_dir = os.path.realpath(run_dir)
        self._thread = threading.get_ident()  # the thread that logs; reads flush only from it
        self._mapped = self._map(written) if durability == "mmap" else None
        self._option = 0 if self._mapped is not None else _OPT_LINE  # mapped lines get their newline apart
        self._set_sink()
        open_runs.add(self)

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
            step = check_step(step)
        if type(metrics) is not dict:
            metrics = check_mapping(metrics)
        if not self._known_keys.issuperset(metrics):
            self._admit_keys(metrics)
        # One C-level pass checks the values: their sum is a float only when they are floats (ints
        # and bools may be among them: written as JSON numbers and true/false, read back as floats).
        # Anything else (numpy scalars, tensors, strings, None, only ints...) takes the careful path.
        try:
            total = sum(metrics.values())
        except (TypeError, OverflowError):
            total = None
        if type(total) is not float:
            metrics, total = self._checked_values(step, metrics)
            if metrics is None:
                return  # device values: the event waits for them
        now = _perf() - self._perf0  # the wallclock: deadlines are checked against it
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

    # --- the sinks: where ``log`` puts a line, chosen by _set_sink -------------------------------

    def _set_sink(self) -> None:
        """``self._put``: the mapping ("mmap"), one write ("process"), the buffer ("buffered"), or
        ``_hold`` when the run is closed, events wait for device values, the mode is "fsync", or a
        write failed (``_write_data`` ends the torn line once writing works again)."""
        held = self._closed or self._pending is not None or self._write_failed or self._fsync_interval is not None
        put: Callable[[bytes, int, float], None] = self._hold
        if not held:
            put = (self._mapped.append if self._mapped is not None
                   else self._put_buffer if self._buffer is not None else self._put_write)
        self._put = put

    def _put_write(self, line: bytes, step: int, now: float) -> None:
        try:
            written = _write(self._fd, line)
        except OSError as exc:
            self._on_write_error(exc)
            return
        if written != len(line):
            self._finish_write(line, written)

    def _put_buffer(self, line: bytes, step: int, now: float) -> None:
        buffer = self._buffer
        buffer.append(line)
        if len(buffer) >= self._buffer_size or now >= self._next_flush:
            self._flush_buffer(now)

    def _hold(self, line: bytes, step: int, now: float) -> None:
        """Where ``log`` sends a line outside the fast paths (see ``_set_sink``)."""
        if self._closed:
            self._raise_closed()
        if self._option != _OPT_LINE:
            line += b"\n"
        if self._pending is not None:  # keep call order behind the events waiting for device values
            self._pending.add_line(line)
            self._check_pending(step, now)
        else:  # "fsync" mode, or after a failed write
            self._emit([line], now)

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
        check_metric_names([key for key in metrics if key not in self._known_keys], fmt.RESERVED_NAMES)
        self._known_keys.update(metrics)

    def _raise_closed(self) -> None:
        raise RuntimeError(f"run {self.id} ({self.name!r}) is finished; start or resume a run to log more")

    def _defer(self, step: int, metrics: dict[str, Any], on_device: DeviceValues) -> None:
        if self._closed:
            self._raise_closed()
        now = _perf() - self._perf0
        if self._pending is None:
            self._pending = PendingEvents(step=step, now=now, flush_steps=self._tensor_flush_steps,
                                          flush_seconds=self._tensor_flush_seconds)
            self._set_sink()
        self._pending.add(step, _time(), now, metrics, on_device)
        self._step = step
        self._next_step = step + 1
        self._check_pending(step, now)

    def _check_pending(self, step: int, now: float) -> None:
        if self._pending.due(step, now):
            self._materialise_pending(now)

    def _materialise_pending(self, now: float) -> None:
        """Copy the waiting device values to the host in one transfer, write the waiting events in order."""
        lines = self._pending.lines(segment=self._segment, run=self.id)  # stays until built: an interrupt loses nothing
        self._pending = None
        self._set_sink()
        self._emit(lines, now)

    def _emit(self, lines: list[bytes], now: float) -> None:
        """Send complete lines on by the run's durability mode (off the hot path)."""
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
        """Append complete lines: into the mapping, or with write(2)."""
        if self._mapped is not None:
            self._mapped.append_lines(data)
            return
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
            write_all(self._fd, data[written:])
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

    def _map(self, written: int) -> MappedEvents | None:
        """The mapping of "mmap" mode, or None (and "process" mode, with a warning) if the first
        chunk cannot be reserved."""
        try:
            return MappedEvents.open(self._fd, written, self._mapping_failed)
        except ReserveFailed as exc:
            self._warn_unmapped(exc)
            return None

    def _mapping_failed(self, line: bytes, exc: BaseException) -> None:
        """The next chunk could not be reserved (disk full?): the file is already cut to the bytes
        written; go on with write(2) from this line on."""
        self._mapped = None
        self._warn_unmapped(exc)
        self._option = _OPT_LINE
        self._set_sink()
        self._write_data(line + b"\n")

    def _warn_unmapped(self, exc: BaseException) -> None:
        self.durability = "process"
        warnings.warn(f"steplog: could not reserve space to map {self.dir / fmt.EVENTS_FILE} ({exc}); run {self.id} "
                      f"goes on with one write(2) per event (durability 'process')", stacklevel=5)

    def _fsync(self, now: float) -> None:
        self._next_fsync = now + self._fsync_interval
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._on_write_error(exc)

    def _close(self, status: str, error: BaseException | str | None, notes: str | None) -> None:
        if self._closed or os.getpid() != self._pid:
            return
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
            self._write_data(fmt.encode_control_event(fmt.FINISH, **fields))
            if self._mapped is not None:
                self._mapped.close()  # cuts the zero tail, fsyncs
            else:
                os.fsync(self._fd)
        except OSError as exc:
            self._on_write_error(exc)
        self._closed = True
        self._set_sink()
        os.close(self._fd)
        store.release_lock(self.dir)
        open_runs.discard(self)
