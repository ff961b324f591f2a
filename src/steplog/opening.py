"""Opening a run's events file for a ``Run``: a new run (built in a hidden staging directory and
published under its id once its start event is complete), this rank's file in a run directory all
ranks share, or a new segment of an existing run (resuming); the start and resume events; the
durability a run's file system allows. ``steplog.writer.init`` chooses which.

Example:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> options = dict(durability="process", fsync_interval=1.0, buffer_size=1000, buffer_interval=5.0,
    ...                tensor_flush_steps=100, tensor_flush_seconds=10.0)
    >>> run = start_run("a", {"lr": 0.1}, root, dict(options)); run.log({"loss": 1.0}); run.finish()
    >>> again = resume_run("a", root, None, None, None, dict(options)); again.segment, again.step
    (1, 0)
    >>> again.finish()
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from . import format as fmt
from . import locks, ranks, store
from .eventfile import network_filesystem, write_all
from .resuming import reopen_compacted, tail_state
from .runlog import Run
from .runmeta import metadata
from .values import check_step, to_jsonable

_time = time.time
#: Network file systems already warned about (once per file system name and process).
_warned_network: set[str] = set()


def effective_durability(durability: str, run_dir: Path) -> str:
    """``"mmap"``, unless the run lives on a network file system (mappings are not coherent there):
    then ``"process"``, said once per file system and process.

    Example:
        >>> import tempfile
        >>> effective_durability("fsync", Path(tempfile.mkdtemp()))
        'fsync'
    """
    if durability != "mmap":
        return durability
    network = network_filesystem(run_dir)
    if network is None:
        return durability
    if network not in _warned_network:
        _warned_network.add(network)
        warnings.warn(
            f"steplog: {run_dir.parent} is on {network}, where memory mappings are not coherent "
            f"across hosts; runs there use durability='process' (one write(2) per event)",
            stacklevel=4,
        )
    return "process"


def start_run(
    name: str | None,
    config: Any,
    root: Path,
    options: dict[str, Any],
    place: ranks.Place | None = None,
    run_dir: Path | None = None,
    start_step: int | None = None,
) -> Run:
    """A new run (``run_dir`` None: built in a hidden staging directory and renamed to its id once its
    start event is complete, so readers never see a half-created run; a failure removes what was
    made), or this rank's first file in a run directory all ranks share. ``options``: ``init``'s
    durability options, checked (its ``durability`` becomes the effective one).

    Example:
        >>> import tempfile
        >>> options = dict(durability="mmap", fsync_interval=1.0, buffer_size=1000, buffer_interval=5.0,
        ...                tensor_flush_steps=100, tensor_flush_seconds=10.0)
        >>> run = start_run("b", None, Path(tempfile.mkdtemp()), options); run.name, run.step
        ('b', None)
        >>> run.finish()
    """
    next_step = 0 if start_step is None else check_step(start_step)  # before anything is made
    now = _time()
    place = place or ranks.Place()
    if run_dir is None:
        run_dir, start, fd = _start_staged(root, name, config, now, options, place)
    else:
        start, fd = _write_start(run_dir, run_dir.name, name, config, now, options, place)
    run_id = run_dir.name
    for directory in (run_dir, root):  # the new entries survive a power loss once a later fsync does
        store.fsync_directory(directory)
    return Run(
        run_id,
        name if name is not None else run_id,
        run_dir,
        fd,
        segment=0,
        last_step=None,
        next_step=next_step,
        wallclock_offset=0.0,
        written=len(start),
        rank=place.rank,
        restart=place.restart,
        **options,
    )


def _rank_fields(place: ranks.Place) -> dict[str, Any]:
    """What a start or resume event says of the rank writing it (nothing for a single process)."""
    fields: dict[str, Any] = {}
    if place.launcher is not None or place.world_size > 1:
        fields.update(
            rank=place.rank,
            local_rank=place.local_rank,
            world_size=place.world_size,
            launcher=place.launcher,
            device=ranks.device_of(place.local_rank),
        )
    if place.restart:
        fields["restart"] = place.restart
    return fields


_INIT_TODO = "free space or pick a writable root=, then start the run again"


def _start_staged(
    root: Path, name: str | None, config: Any, now: float, options: dict[str, Any], place: ranks.Place
) -> tuple[Path, bytes, int]:
    """A new run's directory, made under a hidden name and published once its start event is written:
    (run dir, start event, events file descriptor)."""
    try:
        run_id, staging = store.create_staging_dir(root)
    except OSError as exc:
        raise store.storage_error(exc, "could not create a run directory in", root, _INIT_TODO) from exc
    fd = -1
    try:
        start, fd = _write_start(staging, run_id, name, config, now, options, place)
        return store.publish_run_dir(staging, run_id), start, fd
    except BaseException as exc:
        _discard_staging(staging, fd)
        if isinstance(exc, OSError) and not isinstance(exc, store.StoreError):
            raise store.storage_error(exc, "could not start a run in", root, _INIT_TODO) from exc
        raise


def _write_start(
    directory: Path, run_id: str, name: str | None, config: Any, now: float, options: dict[str, Any], place: ranks.Place
) -> tuple[bytes, int]:
    """Take this rank's writer lock in ``directory``, settle the durability (``options``) and write the
    start event to the rank's new events file: (start event, its descriptor). A failure removes that
    file (it holds no start event) and drops the lock before it is raised, so that a retry starts the
    rank afresh instead of finding a file it cannot resume, or a lock of its own process."""
    locks.acquire_lock(directory, now, place.rank)
    path = directory / fmt.rank_events_file(place.rank)
    fd = -1
    try:
        options["durability"] = effective_durability(options["durability"], directory)
        start = _start_event(run_id, name, config, now, options["durability"], place)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        write_all(fd, start)
        return start, fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
            path.unlink(missing_ok=True)
        locks.release_lock(directory, place.rank)
        raise


def _start_event(run_id: str, name: str | None, config: Any, now: float, durability: str, place: ranks.Place) -> bytes:
    """The start event of this process's events file (config and git from rank 0 only)."""
    return fmt.encode_control_event(
        fmt.START,
        v=fmt.FORMAT_VERSION,
        run_id=run_id,
        name=name if name is not None else run_id,
        time=now,
        start_time=_dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(),
        durability=durability,
        config=to_jsonable(config if config is not None and place.rank == 0 else {}, what="config"),
        meta=to_jsonable(metadata(git=place.rank == 0), what="metadata"),
        **_rank_fields(place),
    )


def _discard_staging(staging: Path, fd: int) -> None:
    """Remove what a failed start made: its events file descriptor, its lock, its staging directory."""
    if fd >= 0:
        os.close(fd)
    locks.release_lock(staging)
    shutil.rmtree(staging, ignore_errors=True)


def resume_run(
    ref: str | os.PathLike,
    root: Path,
    start_step: int | None,
    name: str | None,
    config: Any,
    options: dict[str, Any],
    place: ranks.Place | None = None,
) -> Run:
    """A new segment of the run ``ref`` names (under ``root``; with ``place``, ``ref`` is the run
    directory and this rank's file is reopened): its lock taken, a compacted run made live again,
    a torn tail cut, a resume event written; logging continues from ``start_step`` (None: after
    the last step logged). A ``name`` or ``config`` that differs from the run's is warned about.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> options = dict(durability="process", fsync_interval=1.0, buffer_size=1000, buffer_interval=5.0,
        ...                tensor_flush_steps=100, tensor_flush_seconds=10.0)
        >>> first = start_run("c", None, root, dict(options)); first.log({"loss": 1.0}, step=4); first.finish()
        >>> again = resume_run("c", root, 2, None, None, dict(options)); again.log({"loss": 0.5}); again.step
        2
        >>> again.finish()
    """
    if start_step is not None:
        start_step = check_step(start_step)
    run_dir = Path(ref) if place is not None else store.resolve_run(ref, root)  # _join: this rank's own file
    place = place or ranks.Place()
    events = run_dir / fmt.rank_events_file(place.rank)
    locks.acquire_lock(run_dir, _time(), place.rank)
    try:
        reopen_compacted(run_dir, place.rank)
        state = tail_state(events)
        if place.rank == 0:
            _warn_resume_differs(run_dir, state, name, config)
        options["durability"] = effective_durability(options["durability"], run_dir)
        fd = os.open(events, os.O_RDWR | os.O_APPEND)
        write_all(fd, _resume_event(state, start_step, options["durability"], place))
    except BaseException:
        locks.release_lock(run_dir, place.rank)
        raise
    next_step = start_step if start_step is not None else state["next_step"]
    return Run(
        state["run_id"],
        state["name"],
        run_dir,
        fd,
        segment=state["segments"],
        last_step=state["last_step"],
        next_step=next_step,
        wallclock_offset=state["wallclock"],
        written=os.fstat(fd).st_size,
        rank=place.rank,
        restart=place.restart,
        **options,
    )


def _resume_event(state: dict[str, Any], start_step: int | None, durability: str, place: ranks.Place) -> bytes:
    """The resume event opening a new segment of this process's events file (git from rank 0 only)."""
    return fmt.encode_control_event(
        fmt.RESUME,
        segment=state["segments"],
        start_step=start_step,
        time=_time(),
        w=state["wallclock"],
        durability=durability,
        meta=to_jsonable(metadata(git=place.rank == 0), what="metadata"),
        **_rank_fields(place),
    )


def _warn_resume_differs(run_dir: Path, state: dict[str, Any], name: str | None, config: Any) -> None:
    if name is not None and name != state["name"]:
        warnings.warn(
            f"steplog: resuming run {run_dir.name} named {state['name']!r}; name={name!r} is ignored", stacklevel=5
        )
    if config is not None and to_jsonable(config, what="config") != state["config"]:
        warnings.warn(
            f"steplog: resuming run {run_dir.name}: the config passed differs from the one it started "
            f"with; the run keeps its original config",
            stacklevel=5,
        )
