"""Where runs live: run ids, run directories, the writer lock, resolving a run reference, status.

Layout: ``<root>/<run id>/events.jsonl`` (plus ``writer.lock`` while a writer holds the run). Once
compacted: ``metrics.parquet`` + ``run.json``, with the events moved to ``archive/events.jsonl``.
A run id is ``YYYYMMDD-HHMMSS-mmm-xxxxxx`` (UTC start time to the millisecond, then 6 random hex
digits): unique, safe as a directory name, and sorting by id sorts by start time. The run's *name*
is only ever stored inside the files, so no name can make steplog write outside ``root``.

Example:
    >>> rid = new_run_id()
    >>> is_run_id(rid)
    True
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import re
import secrets
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from . import format as fmt

_RUN_ID = re.compile(r"^\d{8}-\d{6}-\d{3}-[0-9a-f]{6}$")


class RunNotFoundError(LookupError):
    """No run matches a reference (id, id prefix or name)."""


class AmbiguousRunError(LookupError):
    """An id prefix matches several runs."""


class RunLockedError(RuntimeError):
    """Another live process holds the writer lock of a run."""


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A fresh run id for a run starting at ``now`` (UTC).

    Example:
        >>> new_run_id(_dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=_dt.timezone.utc))[:19]
        '20260102-030405-678'
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{secrets.token_hex(3)}"


def is_run_id(text: str) -> bool:
    """Whether ``text`` has the shape of a run id.

    Example:
        >>> is_run_id("../etc")
        False
    """
    return bool(_RUN_ID.match(text))


def run_dirs(root: str | os.PathLike) -> list[Path]:
    """The run directories under ``root``, oldest first (by id); [] when root does not exist.

    Example:
        >>> run_dirs("/no/such/root")
        []
    """
    try:
        entries = os.scandir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        dirs = [Path(e.path) for e in entries if is_run_id(e.name) and e.is_dir()]
    return sorted(dirs, key=lambda p: p.name)


def unique_prefixes(run_ids: list[str], min_length: int = 1) -> dict[str, str]:
    """``{id: its shortest prefix that no other id in run_ids starts with}``, at least
    ``min_length`` characters (the whole id when it is a prefix of another): short references
    that ``resolve_run`` accepts when ``run_ids`` holds every run id of the root. Ids begin with
    their UTC start time, so ``min_length=13`` keeps the start to the minute (``YYYYMMDD-HHMM``).

    Example:
        >>> ids = ["20260102-030405-678-aaaaaa", "20260102-030405-999-bbbbbb", "20260103-000000-000-cccccc"]
        >>> list(unique_prefixes(ids).values())
        ['20260102-030405-6', '20260102-030405-9', '20260103']
        >>> unique_prefixes(ids, min_length=13)["20260103-000000-000-cccccc"]
        '20260103-0000'
    """
    ordered = sorted(set(run_ids))

    def common(a: str, b: str) -> int:
        return len(os.path.commonprefix([a, b]))

    short = {}
    for i, run_id in enumerate(ordered):
        shared = max(common(run_id, ordered[i - 1]) if i else 0, common(run_id, ordered[i + 1]) if i + 1 < len(ordered) else 0)
        short[run_id] = run_id[: min(max(shared + 1, min_length), len(run_id))]
    return short


def create_run_dir(root: str | os.PathLike) -> tuple[str, Path]:
    """Create a new, empty run directory under ``root`` (made if missing); returns (run id, path).

    Example:
        >>> import tempfile
        >>> rid, path = create_run_dir(tempfile.mkdtemp())
        >>> path.name == rid
        True
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id()
        path = root / run_id
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return run_id, path


def run_name(run_dir: Path) -> str | None:
    """The name a run was started with, from its sidecar or the first line of its events.

    Example:
        >>> run_name(Path("/no/such/run")) is None
        True
    """
    name = raw_sidecar(run_dir).get("name")
    if isinstance(name, str):
        return name
    start = fmt.read_start_event(run_dir / fmt.EVENTS_FILE) or fmt.read_start_event(run_dir / fmt.ARCHIVED_EVENTS_FILE)
    return None if start is None else start.get("name")


def raw_sidecar(run_dir: Path) -> dict[str, Any]:
    """The sidecar (``run.json``) of a compacted run as parsed JSON, unchecked; {} when it is
    missing or unreadable. ``steplog.compact.read_sidecar`` checks and decodes it.

    Example:
        >>> raw_sidecar(Path("/no/such/run"))
        {}
    """
    try:
        sidecar = orjson.loads((run_dir / fmt.SIDECAR_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return sidecar if isinstance(sidecar, dict) else {}


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a run: an events file (live or not yet compacted) or a sidecar
    (compacted: ``run.json`` + ``metrics.parquet``, the events moved to ``archive/``).

    Example:
        >>> is_run_dir(Path("/no/such/run"))
        False
    """
    return (path / fmt.EVENTS_FILE).exists() or (path / fmt.SIDECAR_FILE).exists()


def resolve_run(ref: str | os.PathLike, root: str | os.PathLike = "experiment_logs") -> Path:
    """The directory of the run that ``ref`` names: a run id, a unique id prefix, or a run name
    (the latest run with that name). A path to a run directory is accepted as well.

    Raises RunNotFoundError (listing close matches) or AmbiguousRunError (listing the candidates).

    Example:
        >>> resolve_run("baseline", root="/no/such/root")
        Traceback (most recent call last):
        ...
        steplog.store.RunNotFoundError: no run 'baseline' in /no/such/root (the folder does not exist)
    """
    if isinstance(ref, os.PathLike) or (isinstance(ref, str) and os.sep in ref and is_run_dir(Path(ref))):
        path = Path(ref)
        if is_run_dir(path):
            return path
        raise RunNotFoundError(f"{path} is not a run directory (no {fmt.EVENTS_FILE} or {fmt.SIDECAR_FILE} in it)")
    if not isinstance(ref, str) or not ref:
        raise RunNotFoundError(f"a run reference must be a non-empty string (run id, id prefix or name), got {ref!r}")
    root = Path(root)
    if not root.is_dir():
        raise RunNotFoundError(f"no run {ref!r} in {root} (the folder does not exist)")
    dirs = run_dirs(root)
    for d in dirs:
        if d.name == ref:
            return d
    by_prefix = [d for d in dirs if d.name.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    names = {d: run_name(d) for d in dirs}
    by_name = [d for d in dirs if names[d] == ref]
    if by_name:
        return by_name[-1]  # ids sort by start time: the latest run of that name
    if len(by_prefix) > 1:
        shown = ", ".join(d.name for d in by_prefix[:5]) + (" ..." if len(by_prefix) > 5 else "")
        raise AmbiguousRunError(f"run prefix {ref!r} matches {len(by_prefix)} runs in {root}: {shown}; give more of the id")
    candidates = sorted({n for n in names.values() if n} | {d.name for d in dirs})
    close = difflib.get_close_matches(ref, candidates, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f" ({len(dirs)} runs there)"
    raise RunNotFoundError(f"no run {ref!r} in {root}{hint}")


# --- the writer lock -------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a run's writer lock."""

    pid: int
    host: str
    pid_start: str | None  # the process start time from /proc, to tell a reused pid apart
    time: float

    def is_alive(self) -> bool:
        """Whether the holder may still be running. A lock from another host is assumed alive.

        Example:
            >>> LockInfo(pid=os.getpid(), host=socket.gethostname(), pid_start=None, time=0.0).is_alive()
            True
        """
        if self.host != socket.gethostname():
            return True
        return process_is_alive(self.pid, self.pid_start)


def _process_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may contain spaces, so split after ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def process_is_alive(pid: int, pid_start: str | None = None) -> bool:
    """Whether process ``pid`` exists on this host (and, if given, started at ``pid_start``).

    Example:
        >>> process_is_alive(os.getpid())
        True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    if pid_start is not None:
        current = _process_start_time(pid)
        if current is not None and current != pid_start:
            return False  # the pid was reused by another process
    return True


def read_lock(run_dir: Path) -> LockInfo | None:
    """The lock of a run, or None when nobody holds it (or the file is unreadable).

    Example:
        >>> read_lock(Path("/no/such/run")) is None
        True
    """
    try:
        data = orjson.loads((run_dir / fmt.LOCK_FILE).read_bytes())
        return LockInfo(pid=int(data["pid"]), host=str(data["host"]), pid_start=data.get("pid_start"), time=float(data["time"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # torn while being written, or damaged


def _is_fresh(path: Path, seconds: float = 1.0) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


def acquire_lock(run_dir: Path, now: float) -> None:
    """Take the writer lock of a run, replacing a stale one; raises RunLockedError if it is held.

    Example:
        >>> import tempfile, time
        >>> d = Path(tempfile.mkdtemp()); acquire_lock(d, time.time()); release_lock(d)
    """
    path = run_dir / fmt.LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": _process_start_time(os.getpid()), "time": now}
    for _ in range(100):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read_lock(run_dir)
            if holder is None and _is_fresh(path):
                time.sleep(0.02)  # another writer is between creating the lock and filling it in
                continue
            if holder is not None and holder.is_alive():
                if holder.pid == os.getpid() and holder.host == me["host"]:
                    raise RunLockedError(f"run {run_dir.name} is already open for writing in this process; finish() it first")
                raise RunLockedError(
                    f"run {run_dir.name} is being written by pid {holder.pid} on host {holder.host}; "
                    f"one writer per run. If that process is gone, delete {path}"
                )
            try:  # stale (the writer died) or unreadable: take it over
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(me))
        return
    raise RunLockedError(f"could not take the writer lock {path}: another process keeps taking it")


def release_lock(run_dir: Path) -> None:
    """Drop the writer lock of a run (no error if it is already gone).

    Example:
        >>> release_lock(Path("/no/such/run"))
    """
    try:
        (run_dir / fmt.LOCK_FILE).unlink()
    except FileNotFoundError:
        pass


def writer_is_alive(run_dir: Path) -> bool:
    """Whether a live process holds the run's writer lock.

    Example:
        >>> writer_is_alive(Path("/no/such/run"))
        False
    """
    lock = read_lock(run_dir)
    return lock is not None and lock.is_alive()


def current_status(run_dir: Path) -> str:
    """The status of a run without reading all its events: the last event is a ``finish`` event
    exactly when the current segment has finished.

    Example:
        >>> current_status(Path("/no/such/run"))
        'crashed'
    """
    events = run_dir / fmt.EVENTS_FILE
    if not events.exists():  # compacted: the sidecar says, else the archived events do
        compacted = raw_sidecar(run_dir).get("status")
        if compacted in (fmt.FINISHED, fmt.FAILED, fmt.CRASHED):
            return compacted
        events = run_dir / fmt.ARCHIVED_EVENTS_FILE
    last = fmt.read_last_event(events)
    finished = last.get("status") if last is not None and last.get(fmt.KIND) == fmt.FINISH else None
    return run_status(run_dir, finished)


def runs_named(name: str, root: str | os.PathLike) -> list[Path]:
    """The run directories under ``root`` whose run has this name, oldest first.

    Example:
        >>> runs_named("baseline", "/no/such/root")
        []
    """
    return [d for d in run_dirs(root) if run_name(d) == name]


def run_status(run_dir: Path, finish_status: str | None) -> str:
    """The status of a run given the status of its last ``finish`` event (None when the current
    segment has none): ``finished``/``failed`` as recorded, else ``running`` while its writer is
    alive, else ``crashed``.

    Example:
        >>> run_status(Path("/no/such/run"), None)
        'crashed'
    """
    if finish_status in (fmt.FINISHED, fmt.FAILED):
        return finish_status
    return fmt.RUNNING if writer_is_alive(run_dir) else fmt.CRASHED



def resolve_runs(refs: Iterable[str | os.PathLike] | str | os.PathLike | None,
                 root: str | os.PathLike = "experiment_logs") -> list[Path]:
    """The run directories ``refs`` name (``resolve_run`` each; one ref may be given alone), each
    once, in the order named; every run under ``root`` (``run_dirs``) when ``refs`` is None.

    Example:
        >>> resolve_runs(None, "/no/such/root")
        []
    """
    if refs is None:
        return run_dirs(root)
    if isinstance(refs, (str, os.PathLike)):
        refs = [refs]
    return list(dict.fromkeys(resolve_run(ref, root) for ref in refs))
