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
import time
import warnings
from pathlib import Path
from typing import Any

from . import format as fmt
from . import store
from .eventfile import network_filesystem, write_all
from .openruns import install_excepthook, open_runs
from .resuming import reopen_compacted, tail_state
from .runlog import Run
from .runmeta import metadata
from .values import check_step, to_jsonable

DURABILITY_MODES = ("mmap", "process", "fsync", "buffered")
DEFAULT_DURABILITY = "mmap"

_time = time.time
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
    system_metrics: bool | None = None,
    system_interval: float = 10.0,
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
    _check_options(durability, fsync_interval, buffer_size, buffer_interval, tensor_flush_steps, tensor_flush_seconds)
    if isinstance(system_interval, bool) or not isinstance(system_interval, (int, float)) or not system_interval > 0:
        raise ValueError(f"system_interval={system_interval!r} must be a number of seconds > 0 (default 10)")
    if start_step is not None and resume is None:
        raise ValueError("start_step= is for resuming a run; pass resume=RUN (or resume='auto') as well")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string or None, got {type(name).__name__}")
    options = dict(durability=durability, fsync_interval=fsync_interval, buffer_size=buffer_size,
                   buffer_interval=buffer_interval, tensor_flush_steps=tensor_flush_steps,
                   tensor_flush_seconds=tensor_flush_seconds)
    if "://" in os.fspath(root):  # an object-store URL: refused, pointing to push and sync
        from .storage import refuse_url_root

        refuse_url_root(root)
    install_excepthook()
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


__all__ = ["init", "Run", "DURABILITY_MODES", "DEFAULT_DURABILITY"]
