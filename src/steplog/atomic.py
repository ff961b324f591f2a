"""Atomic file writes: a file that readers may see is never written in place.

``write_atomically(path, content)`` writes to a temporary file in the same folder, fsyncs it,
renames it over ``path`` and fsyncs the folder. Each write has its own temporary name,
``.<file name>.<pid>-<8 hex digits>.steplog-tmp`` (``TEMP_PATTERN``), so processes writing the same
path never share one; the last rename wins and every reader sees one complete file.

A writer killed between open and rename leaves its temporary file behind. ``remove_stale_temps``
(run by compaction on every run directory and by ``write_atomically`` in its target folder)
removes the leftovers: those of processes that are no longer alive on this host, and any older
than ``STALE_AFTER_S`` (a writer on another host sharing the folder).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomically(folder / "a.csv", b"x,y\\n").read_bytes()
    b'x,y\\n'
    >>> sorted(p.name for p in folder.iterdir())  # no temporary file is left
    ['a.csv']
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from . import store

#: Suffix of every temporary file steplog writes: ``.<name>.<pid>-<hex>.steplog-tmp``.
TEMP_SUFFIX = ".steplog-tmp"
#: The glob that finds steplog's temporary files in a folder.
TEMP_PATTERN = "." + "*" + TEMP_SUFFIX
#: A temporary file older than this is a leftover even when its pid looks alive (reused, other host).
STALE_AFTER_S = 3600.0
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")


def temp_path(path: Path) -> Path:
    """A fresh temporary name for writing ``path``, in the same folder, unique to this write.

    Example:
        >>> name = temp_path(Path("/data/a.csv")).name
        >>> name.startswith(".a.csv.") and name.endswith(".steplog-tmp")
        True
    """
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def write_atomically(
    path: str | os.PathLike, content: bytes | Callable[[BinaryIO], None], *, check: Callable[[Path], None] | None = None
) -> Path:
    """Write ``path`` so that it is never seen half-written: ``content`` (bytes, or a function
    writing to the open binary file) goes to a temporary file of its own in the same folder
    (``temp_path``), is fsynced, checked by ``check(temporary path)`` if given (it raises to stop),
    renamed over ``path``, and the folder fsynced. On any error the temporary file is removed; an
    OSError names ``path`` (``cannot write <path>: <reason>``), not the temporary file; a full disk
    is a ``steplog.StoreError``. Leftovers
    of killed writers in the folder are removed first (``remove_stale_temps``). Returns ``path``.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> write_atomically(target, b"hello").read_text()
        'hello'
        >>> write_atomically("/no/such/dir/notes.txt", b"x")
        Traceback (most recent call last):
        ...
        FileNotFoundError: [Errno 2] cannot write /no/such/dir/notes.txt: No such file or directory
    """
    path = Path(path)
    remove_stale_temps(path.parent)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            if isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        reason = exc.strerror or str(exc).split(" (os error")[0]  # Polars: "<reason> (os error N): <path>"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(exc):
            raise store.StoreError(
                exc.errno or errno.ENOSPC, f"cannot write {path}: {reason}; free space, then try again"
            ) from None
        raise type(exc)(exc.errno, f"cannot write {path}: {reason}") from None
    except Exception as exc:
        if "No space left on device" not in str(exc):  # a library's own error for a full disk (Polars)
            raise
        raise store.StoreError(
            errno.ENOSPC, f"cannot write {path}: No space left on device; free space, then try again"
        ) from exc
    finally:
        remove_file(tmp)
    store.fsync_directory(path.parent)
    return path


def remove_stale_temps(folder: Path, now: float | None = None, *, every: bool = False) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (``TEMP_PATTERN``): those
    whose pid is not a live process on this host, and those older than ``STALE_AFTER_S``. A live
    writer's file is left alone, unless ``every`` (the caller holds the folder's writer lock, so
    no one else writes there). Returns the paths removed.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / ".a.csv.999999999-0badcafe.steplog-tmp").write_bytes(b"half")
        >>> [p.name for p in remove_stale_temps(folder)]
        ['.a.csv.999999999-0badcafe.steplog-tmp']
    """
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = list(Path(folder).glob(TEMP_PATTERN))
    except OSError:
        return []
    for tmp in candidates:
        match = _TEMP_NAME.match(tmp.name)
        if match is None:
            continue
        try:
            age = now - tmp.stat().st_mtime
        except OSError:
            continue  # renamed or removed by its writer meanwhile
        if every or age > STALE_AFTER_S or not _pid_alive(int(match["pid"])):
            remove_file(tmp)
            removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid < 2**22  # alive under another user; absurd pids are not processes
    return True


def remove_file(path: Path) -> None:
    """Remove a file; nothing happens when it is gone already (or its folder is).

    Example:
        >>> remove_file(Path("/no/such/file"))
    """
    try:
        path.unlink()
    except OSError:
        pass
