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

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import format as fmt
from . import ranks, runstatus, store
from .opening import resume_run, start_run
from .openruns import install_excepthook
from .runlog import Run
from .silentrun import SilentRun

DURABILITY_MODES = ("mmap", "process", "fsync", "buffered")
DEFAULT_DURABILITY = "mmap"


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
    rank: int | None = None,
    world_size: int | None = None,
    run_id: str | None = None,
    log_ranks: str | Iterable[int] = "all",
) -> Run | SilentRun:
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
    line; an older crashed run behind a newer one is left alone); that new run starts at
    ``start_step`` (its first automatic step), so a checkpoint whose logs were lost keeps its step
    numbers. The config of a resumed run is the one it started with. ``name`` may not be empty.
    A storage failure (a full disk, a read-only root) raises ``steplog.StoreError`` naming the
    path, and leaves nothing behind.

    ``tensor_flush_steps`` and ``tensor_flush_seconds``: how long logged accelerator tensors (a GPU
    loss) may wait on the device before their values are copied to the host in one batched
    transfer (the copy waits for the device, so it is done rarely): every that many steps or
    seconds, whichever comes first, and at ``flush()``, finish and reads from the logging thread.

    ``system_metrics=True`` (None: the environment variable ``STEPLOG_SYSTEM_METRICS=1``) records CPU,
    memory and GPU figures every ``system_interval`` seconds in a thread of its own, until finish
    (``steplog.system_metrics``; read them with ``steplog.system(run)``).

    Several processes, one run (docs/distributed.md): in a job started by torchrun, SLURM or mpirun
    (or with ``rank=`` and ``world_size=``), every rank joins the run whose id all ranks derive from
    the job id and ``name`` (or ``run_id=`` / ``STEPLOG_RUN_ID``; ``steplog.ranks`` has the
    precedence) and appends to its own events file. Rank 0 records the config and git state; every
    rank its host, local rank, pid and device. ``log_ranks`` (default ``"all"``) lists the ranks that
    log: elsewhere ``init`` returns a ``SilentRun`` whose ``log`` does nothing. When the launcher's
    restart count (``TORCHELASTIC_RESTART_COUNT``, ``SLURM_RESTART_COUNT``) says the job restarted,
    or this rank's file already exists, the rank continues the run as a new segment from
    ``start_step`` (as ``resume=`` does), so one ``init(name=..., start_step=...)`` line serves
    every attempt.

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
    _check_name(name)
    if "://" in os.fspath(root):  # an object-store URL: refused, pointing to push and sync
        from .storage import refuse_url_root

        refuse_url_root(root)
    place = ranks.detect(rank=rank, world_size=world_size)
    shared = ranks.shared_run_id(place, name, run_id)
    if start_step is not None and resume is None and shared is None:
        raise ValueError("start_step= is for resuming a run; pass resume=RUN (or resume='auto') as well")
    if resume is not None and place.world_size > 1:
        raise ValueError(
            f"resume={resume!r} in a job of {place.world_size} ranks: each rank continues the run by "
            f"itself on a restart (the launcher's restart count says so); drop resume= and pass "
            f"start_step= (the checkpoint's step)"
        )
    if not _logs(place.rank, log_ranks):
        return _silent(name, root, shared, place, system_metrics, system_interval)
    options = dict(
        durability=durability,
        fsync_interval=fsync_interval,
        buffer_size=buffer_size,
        buffer_interval=buffer_interval,
        tensor_flush_steps=tensor_flush_steps,
        tensor_flush_seconds=tensor_flush_seconds,
    )
    install_excepthook()
    if shared is not None and resume is None:
        run = _join(name, config, Path(root), shared, place, start_step, options)
    else:
        run = _open(name, config, root, resume, start_step, options)
    run._sampler = _system_sampler(run, system_metrics, system_interval, place)
    return run


def _logs(rank: int, log_ranks: str | Iterable[int]) -> bool:
    """Whether ``rank`` logs under ``log_ranks`` (``"all"`` or some ranks)."""
    if log_ranks == "all":
        return True
    if isinstance(log_ranks, (str, bytes)) or not isinstance(log_ranks, Iterable):
        raise TypeError(f"log_ranks={log_ranks!r} must be 'all' or a list of ranks, e.g. [0]")
    chosen = list(log_ranks)
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in chosen):
        raise TypeError(f"log_ranks={chosen!r} must hold ints (ranks), e.g. [0]")
    return rank in chosen


def _silent(
    name: str | None,
    root: str | os.PathLike,
    shared: str | None,
    place: ranks.Place,
    system_metrics: bool | None,
    interval: float,
) -> SilentRun:
    """The run of a rank that does not log: no file of its own (its sampler, if asked for, writes)."""
    run_id = shared if shared is not None else store.new_run_id()
    run = SilentRun(run_id, name if name is not None else run_id, Path(root) / run_id, place.rank)
    if shared is not None and system_metrics:
        run.dir.mkdir(parents=True, exist_ok=True)
        run._sampler = _system_sampler(run, system_metrics, interval, place)
    return run


def _join(
    name: str | None,
    config: Any,
    root: Path,
    run_id: str,
    place: ranks.Place,
    start_step: int | None,
    options: dict[str, Any],
) -> Run:
    """This rank's part of the run ``run_id`` that all ranks share: a new events file, or a new
    segment of this rank's file when it already exists (a restart)."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    mine = run_dir / fmt.rank_events_file(place.rank)
    archived = run_dir / fmt.ARCHIVE_DIR / fmt.rank_events_file(place.rank)
    if mine.exists() or archived.exists():
        return resume_run(run_dir, root, start_step, name, config, options, place)
    return start_run(name, config, root, options, place, run_dir, start_step)


def _check_name(name: str | None) -> None:
    """Refuse a name no query could find: not a string, empty or only blanks."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string or None, got {type(name).__name__}")
    if name is not None and not name.strip():
        raise ValueError(
            f"name={name!r} is empty: no query could find the run by it; pass a name with "
            f"visible characters, or leave name out (the run id is used)"
        )


def _open(
    name: str | None,
    config: Any,
    root: str | os.PathLike,
    resume: str | os.PathLike | None,
    start_step: int | None,
    options: dict[str, Any],
) -> Run:
    if resume == "auto":
        if name is None:
            raise ValueError("resume='auto' resumes the latest run of a name if it crashed: pass name= as well")
        named = store.runs_named(name, root)
        if not named or runstatus.current_status(named[-1]) != fmt.CRASHED:  # a new run, from the checkpoint's step
            return start_run(name, config, Path(root), options, start_step=start_step)
        resume = named[-1]
    if resume is not None:
        return resume_run(resume, Path(root), start_step, name, config, options)
    return start_run(name, config, Path(root), options)


def _system_sampler(run: Run | SilentRun, option: bool | None, interval: float, place: ranks.Place) -> Any:
    """A started system metrics sampler for ``run`` when they are asked for (else None): host
    figures from local rank 0 only, and in a job of several ranks, the GPU of this rank only."""
    from . import system_metrics

    if not system_metrics.enabled(option):
        return None
    device = ranks.device_of(place.local_rank) if place.world_size > 1 else "cpu"
    gpus = [int(device.split(":")[1])] if device.startswith("cuda:") else None
    return system_metrics.SystemSampler(
        run.dir, rank=place.rank, local_rank=place.local_rank, interval=interval, gpus=gpus
    ).start()


def _check_options(
    durability: str,
    fsync_interval: float,
    buffer_size: int,
    buffer_interval: float,
    tensor_flush_steps: int,
    tensor_flush_seconds: float,
) -> None:
    if durability not in DURABILITY_MODES:
        raise ValueError(f"durability={durability!r} is not a mode; choose one of {', '.join(DURABILITY_MODES)}")
    if durability == "fsync" and not fsync_interval >= 0:
        raise ValueError(f"fsync_interval={fsync_interval!r} must be a number of seconds >= 0")
    if durability == "buffered":
        if not isinstance(buffer_size, int) or buffer_size < 1 or not buffer_interval > 0:
            raise ValueError(
                f"buffer_size={buffer_size!r} must be an int >= 1 and buffer_interval={buffer_interval!r} > 0 seconds"
            )
        warnings.warn(
            'steplog: durability="buffered" is deprecated: "mmap" (the default) is faster and loses '
            'nothing on a SIGKILL (benchmarks/RESULTS.md); pass durability="mmap" or leave it out',
            DeprecationWarning,
            stacklevel=4,
        )
    if not isinstance(tensor_flush_steps, int) or tensor_flush_steps < 1 or not tensor_flush_seconds > 0:
        raise ValueError(
            f"tensor_flush_steps={tensor_flush_steps!r} must be an int >= 1 and "
            f"tensor_flush_seconds={tensor_flush_seconds!r} > 0 seconds"
        )


__all__ = ["init", "Run", "DURABILITY_MODES", "DEFAULT_DURABILITY"]
