"""Writer locks: one writer per run and rank, held with flock(2) for as long as the writer runs.

``writer.lock`` (``writer.rank<k>.lock`` for rank k) in the run directory. The kernel drops the
lock when the process dies (SIGKILL, OOM, segfault), so a dead writer's lock is free at once and a
reused pid can never pass for a live writer; taking a free lock over needs no check-then-delete,
so two processes can never both hold it. The file's JSON (pid, host, time) only says who holds it,
for messages (``LockInfo``). A lock file written on another host is respected even when no local
process holds it (its filesystem may not share locks). A forked child (a DataLoader worker) drops
its copies of the parent's locks.

Example:
    >>> import tempfile, time
    >>> d = Path(tempfile.mkdtemp())
    >>> acquire_lock(d, time.time()); writer_is_alive(d)
    True
    >>> release_lock(d); writer_is_alive(d)
    False
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from . import format as fmt


class RunLockedError(RuntimeError):
    """Another live process holds the writer lock of a run."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a run's writer lock, as its file says."""

    pid: int
    host: str
    time: float


#: Lock files held by this process: real path of the run directory -> the open descriptor.
_held: dict[str, int] = {}


def _lock_key(run_dir: Path, rank: int = 0) -> str:
    return os.path.join(os.path.realpath(run_dir), fmt.rank_lock_file(rank))


def read_lock(run_dir: Path, rank: int = 0) -> LockInfo | None:
    """What a run's lock file says of its holder; None when there is no readable lock file.
    Whether that holder is alive is ``writer_is_alive``'s to say.

    Example:
        >>> read_lock(Path("/no/such/run")) is None
        True
    """
    try:
        data = orjson.loads((run_dir / fmt.rank_lock_file(rank)).read_bytes())
        return LockInfo(pid=int(data["pid"]), host=str(data["host"]), time=float(data["time"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing, being written, or damaged


def acquire_lock(run_dir: Path, now: float, rank: int = 0) -> None:
    """Take the writer lock of a run's ``rank`` (a lock whose writer died is free); raises
    RunLockedError, naming the holder, while a live process holds it. Each rank has its own lock.

    Example:
        >>> import tempfile, time
        >>> d = Path(tempfile.mkdtemp()); acquire_lock(d, time.time()); release_lock(d)
    """
    path = run_dir / fmt.rank_lock_file(rank)
    key = _lock_key(run_dir, rank)
    what = f"run {run_dir.name}" + (f" (rank {rank})" if rank else "")
    if key in _held:
        raise RunLockedError(f"{what} is already open for writing in this process; finish() it first")
    for attempt in range(50):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if attempt < 10:  # a reader checking liveness holds it for microseconds: try again
                time.sleep(0.01)
                continue
            holder = read_lock(run_dir, rank)
            who = f"pid {holder.pid} on host {holder.host}" if holder else "another process"
            raise RunLockedError(f"{what} is being written by {who}; one writer per run and rank") from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # released and removed while we waited for it: take the new file
            os.close(fd)
            continue
        _claim(fd, run_dir, rank, what, now)
        _held[key] = fd
        return
    raise RunLockedError(f"could not take the writer lock {path}: other processes keep taking it")


def _claim(fd: int, run_dir: Path, rank: int, what: str, now: float) -> None:
    """Write who holds the lock just taken on ``fd``, unless its file says a process on another host
    holds it (its filesystem may not share locks); either failure closes ``fd``."""
    path = run_dir / fmt.rank_lock_file(rank)
    holder = read_lock(run_dir, rank)
    if holder is not None and holder.host != socket.gethostname():
        os.close(fd)
        raise RunLockedError(
            f"{what} is locked by pid {holder.pid} on host {holder.host}; one writer per run. "
            f"If that process is gone, delete {path}"
        )
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, orjson.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": now}), 0)
    except OSError:  # a full disk: leave no lock file behind
        _drop_lock_file(path, fd)
        raise


def _drop_lock_file(path: Path, fd: int) -> None:
    """Remove a lock file, then close its descriptor (which drops the lock)."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def release_lock(run_dir: Path, rank: int = 0) -> None:
    """Drop the writer lock this process holds on a run (nothing happens if it holds none).

    Example:
        >>> release_lock(Path("/no/such/run"))
    """
    fd = _held.pop(_lock_key(run_dir, rank), None)
    if fd is not None:  # removed while still held: a waiter sees the file changed
        _drop_lock_file(run_dir / fmt.rank_lock_file(rank), fd)


def writer_is_alive(run_dir: Path, rank: int = 0) -> bool:
    """Whether a live writer holds the lock of the run's ``rank`` (this process included).

    Example:
        >>> writer_is_alive(Path("/no/such/run"))
        False
    """
    if _lock_key(run_dir, rank) in _held:
        return True
    path = run_dir / fmt.rank_lock_file(rank)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock taken just to look
    holder = read_lock(run_dir, rank)
    return holder is not None and holder.host != socket.gethostname()


def _forget_locks_in_child() -> None:
    """A forked child (a DataLoader worker) must not keep its parent's runs locked: it closes its
    copies of the lock descriptors; the parent's lock stays, and dies with the parent."""
    for fd in _held.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


def rename_locked_dir(src: Path, dst: Path) -> None:
    """Rename a run directory whose (rank 0) writer lock this process may hold: the lock moves along.

    Example:
        >>> import tempfile, time
        >>> base = Path(tempfile.mkdtemp()); (base / "a").mkdir(); acquire_lock(base / "a", time.time())
        >>> rename_locked_dir(base / "a", base / "b"); writer_is_alive(base / "b")
        True
        >>> release_lock(base / "b")
    """
    key = _lock_key(src)
    os.rename(src, dst)
    fd = _held.pop(key, None)
    if fd is not None:
        _held[_lock_key(dst)] = fd


os.register_at_fork(after_in_child=_forget_locks_in_child)
