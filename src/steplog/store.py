"""Where runs live: run ids, run directories, each rank's events file, resolving a run reference,
listing runs and their order. Writer locks are ``steplog.locks``; a run's status ``steplog.runstatus``.

Layout: ``<root>/<run id>/events.jsonl`` (plus ``writer.lock`` while a writer holds the run). Once
compacted: ``metrics.parquet`` + ``run.json``, with the events moved to ``archive/events.jsonl``.
A run id is ``YYYYMMDD-HHMMSS-mmm-xxxxxx`` (UTC start time to the millisecond, then 6 random hex
digits): unique and safe as a directory name. Runs are ordered by their start event's time at full
resolution (``start_order``), not by id, so runs started within one millisecond keep their order.
The run's *name* is only ever stored inside the files, so no name can make steplog write outside
``root``.

Example:
    >>> rid = new_run_id()
    >>> is_run_id(rid)
    True
"""

from __future__ import annotations

import datetime as _dt
import difflib
import math
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from . import format as fmt
from . import locks

_LAST = 2**63 - 1  # the start_order of a run with no readable start
_RUN_ID = re.compile(r"^\d{8}-\d{6}-\d{3}-[0-9a-f]{6}$")


class RunNotFoundError(LookupError):
    """No run matches a reference (id, id prefix or name)."""


class AmbiguousRunError(LookupError):
    """An id prefix matches several runs."""


class StoreError(OSError):
    """steplog could not read or write its files (a full disk, a read-only root, a damaged file).

    Raised for every storage failure steplog reports; the message names the run, the path and what
    to do. A subclass of OSError, so ``except OSError`` still catches it; ``errno`` is the cause's.

    Example:
        >>> import errno
        >>> err = storage_error(OSError(errno.ENOSPC, "No space left on device"), "could not start a run in",
        ...                     Path("/logs"), "free space, then start it again")
        >>> isinstance(err, OSError), err.errno == errno.ENOSPC
        (True, True)
        >>> str(err)
        'could not start a run in /logs: No space left on device; free space, then start it again'
    """

    def __str__(self) -> str:
        return self.strerror if isinstance(self.strerror, str) else super().__str__()


def storage_error(exc: BaseException, what: str, path: Path | str, todo: str) -> StoreError:
    """A ``StoreError`` for ``exc``: "``what`` ``path``: the cause; ``todo``" (errno kept).

    Example:
        >>> str(storage_error(PermissionError(13, "Permission denied"), "cannot write", "/ro", "pick a writable root"))
        'cannot write /ro: Permission denied; pick a writable root'
    """
    cause = " ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())
    return StoreError(getattr(exc, "errno", None), f"{what} {path}: {cause}; {todo}")


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A fresh run id for a run starting at ``now`` (UTC).

    Example:
        >>> new_run_id(_dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=_dt.timezone.utc))[:19]
        '20260102-030405-678'
    """
    if now is None:  # ids of one process strictly increase, also within a millisecond
        now = max(_dt.datetime.now(_dt.timezone.utc), _last_id_time[0] + _dt.timedelta(milliseconds=1))
        _last_id_time[0] = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{secrets.token_hex(3)}"


_last_id_time = [_dt.datetime.min.replace(tzinfo=_dt.timezone.utc)]


def is_run_id(text: str) -> bool:
    """Whether ``text`` has the shape of a run id.

    Example:
        >>> is_run_id("../etc")
        False
    """
    return bool(_RUN_ID.match(text))


def run_dirs(root: str | os.PathLike, *, started: bool = True) -> list[Path]:
    """The run directories under ``root``, oldest first: by ``start_order`` (the start event's time
    at full resolution, then the id), whatever the shape of the ids; [] when root does not exist.
    A directory whose run has no complete start event (being created, or left by a failed start) is
    not a run yet and is left out, unless ``started=False`` (compaction, to report it).

    Example:
        >>> run_dirs("/no/such/root")
        []
    """
    try:
        entries = os.scandir(os.fspath(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        found = [(Path(e.path), e.inode()) for e in entries if _may_be_run(e)]
    ordered = sorted((_cached_start_order(path, inode), path) for path, inode in found)
    if not started:
        return [path for _, path in ordered]
    for order, path in ordered:
        if order[0] == _LAST and (path / fmt.PARQUET_FILE).exists():
            warn_unreadable_compacted(path)
    return [path for order, path in ordered if order[0] != _LAST]


def warn_unreadable_compacted(run_dir: Path) -> None:
    """Say that a compacted run whose sidecar is unreadable and whose events are gone is left out.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always"); warn_unreadable_compacted(Path("/logs/r"))
        >>> "run r is left out" in str(caught[0].message)
        True
    """
    import warnings

    warnings.warn(
        f"steplog: run {run_dir.name} is left out: its {fmt.SIDECAR_FILE} is missing or unreadable and it "
        f"has no events ({fmt.ARCHIVED_EVENTS_FILE}) to read instead; restore {run_dir / fmt.SIDECAR_FILE} "
        f"from a copy",
        stacklevel=3,
    )


def may_name_run(name: str) -> bool:
    """Whether ``name`` may be a run directory's name: a generated run id, or a shared one (a job's,
    or one given with ``run_id=`` / ``STEPLOG_RUN_ID``: ``steplog.ranks``); such a folder is a run
    only if it holds run files (``is_run_dir``).

    Example:
        >>> may_name_run("job-1234-gpt-3f741a"), may_name_run("_catalog"), may_name_run("..")
        (True, False, False)
    """
    return is_run_id(name) or is_shared_id(name)


#: A run id the ranks of a job share (a job's, or one given): a safe directory name, at most 128 characters.
_SHARED_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_shared_id(name: str) -> bool:
    """Whether ``name`` is a safe shared run id (``steplog.ranks``): letters, digits, ``.``, ``_``, ``-``.

    Example:
        >>> is_shared_id("job-1234.a_b"), is_shared_id("../x"), is_shared_id(".hidden"), is_shared_id("a" * 129)
        (True, False, False, False)
    """
    return _SHARED_ID.match(name) is not None


def _may_be_run(entry: os.DirEntry) -> bool:
    """A directory named by a generated run id, or by a shared id (``steplog.ranks``: a job's, or
    one given with ``run_id=``) that holds a run."""
    if is_run_id(entry.name):
        return entry.is_dir()
    return is_shared_id(entry.name) and entry.is_dir() and is_run_dir(Path(entry.path))


#: start_order of the run directories seen, by (path, inode): a run's start event never changes.
_start_orders: dict[tuple[str, int], tuple[int, str]] = {}


def _cached_start_order(run_dir: Path, inode: int) -> tuple[int, str]:
    key = (str(run_dir), inode)
    order = _start_orders.get(key)
    if order is None:
        order = start_order(run_dir)
        if order[0] != _LAST:  # a run still being created may have no start event yet: look again next time
            _start_orders[key] = order
    return order


def start_order(run_dir: Path) -> tuple[int, str]:
    """The key runs are ordered by: (start time in integer nanoseconds, run id). The start time is
    the start event's ``time_ns`` where the writer wrote one, else its ``time`` (Unix seconds, a
    float, microsecond resolution), from the first line of the events (live or archived), else from
    a compacted run's sidecar; the run id breaks ties. A run with no readable start sorts last.

    Example:
        >>> start_order(Path("/logs/20260102-030405-678-aaaaaa"))
        (9223372036854775807, '20260102-030405-678-aaaaaa')
    """
    head: dict[str, Any] = fmt.read_start_event(events_path(run_dir)) or {}  # one short line, live or archived
    exact, seconds = head.get("time_ns"), head.get("time")
    if not head:  # no readable events file: a compacted run's sidecar says when it started
        sidecar = raw_sidecar(run_dir)
        exact, seconds = sidecar.get("start_time_ns"), sidecar.get("start_time")
    if isinstance(exact, int) and not isinstance(exact, bool):
        return exact, run_dir.name
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds):
        return round(seconds * 1e9), run_dir.name
    return _LAST, run_dir.name


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
        before = common(run_id, ordered[i - 1]) if i else 0
        after = common(run_id, ordered[i + 1]) if i + 1 < len(ordered) else 0
        shared = max(before, after)
        short[run_id] = run_id[: min(max(shared + 1, min_length), len(run_id))]
    return short


#: Prefix of the directory a run is created in before it is renamed to its id (never a run id).
STAGING_PREFIX = ".creating-"


def create_staging_dir(root: str | os.PathLike) -> tuple[str, Path]:
    """A new run id and the hidden directory to build its run in (``publish_run_dir`` gives it
    its name once its start event is complete, so no reader sees a half-created run).

    Example:
        >>> import tempfile
        >>> rid, path = create_staging_dir(tempfile.mkdtemp())
        >>> path.name == STAGING_PREFIX + rid
        True
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id()
        path = root / (STAGING_PREFIX + run_id)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        if not (root / run_id).exists():
            return run_id, path
        path.rmdir()


def publish_run_dir(staging: Path, run_id: str) -> Path:
    """Rename a staging directory to its run id (the writer lock taken in it moves along).

    Example:
        >>> import tempfile
        >>> rid, staging = create_staging_dir(tempfile.mkdtemp())
        >>> publish_run_dir(staging, rid).name == rid
        True
    """
    final = staging.parent / run_id
    locks.rename_locked_dir(staging, final)
    return final


def events_path(run_dir: Path) -> Path:
    """The events file of a run: ``events.jsonl`` while it is live, its archived copy once
    compacted (``events.jsonl`` if neither exists).

    Example:
        >>> events_path(Path("/no/such/run")).name
        'events.jsonl'
    """
    live = run_dir / fmt.EVENTS_FILE
    archived = run_dir / fmt.ARCHIVED_EVENTS_FILE
    return archived if not live.exists() and archived.exists() else live


def run_name(run_dir: Path) -> str | None:
    """The name a run was started with, from its sidecar or the first line of its events.

    Example:
        >>> run_name(Path("/no/such/run")) is None
        True
    """
    name = raw_sidecar(run_dir).get("name")
    if isinstance(name, str):
        return name
    start = fmt.read_start_event(events_path(run_dir))
    return None if start is None else start.get("name")


def raw_sidecar(run_dir: Path) -> dict[str, Any]:
    """The sidecar (``run.json``) of a compacted run as parsed JSON, unchecked; {} when it is
    missing or unreadable. ``steplog.sidecar.read_sidecar`` checks and decodes it.

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
    """Whether ``path`` holds a run: an events file (live or not yet compacted), a sidecar
    (compacted: ``run.json`` + ``metrics.parquet``, the events moved to ``archive/``), or archived
    events alone (a compacted run whose sidecar was lost).

    Example:
        >>> is_run_dir(Path("/no/such/run"))
        False
    """
    return any((path / name).exists() for name in (fmt.EVENTS_FILE, fmt.SIDECAR_FILE, fmt.ARCHIVED_EVENTS_FILE))


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
    if is_run_id(ref) and (root / ref).is_dir():
        return root / ref  # an exact id: what the scan below would find first, without listing the root
    dirs = run_dirs(root)
    by_prefix = [d for d in dirs if d.name.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    names = {d: run_name(d) for d in dirs}
    by_name = [d for d in dirs if names[d] == ref]
    if by_name:
        return by_name[-1]  # run_dirs are in start order: the latest run of that name
    if len(by_prefix) > 1:
        shown = ", ".join(d.name for d in by_prefix[:5]) + (" ..." if len(by_prefix) > 5 else "")
        raise AmbiguousRunError(
            f"run prefix {ref!r} matches {len(by_prefix)} runs in {root}: {shown}; give more of the id"
        )
    candidates = sorted({n for n in names.values() if n} | {d.name for d in dirs})
    close = difflib.get_close_matches(ref, candidates, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f" ({len(dirs)} runs there)"
    raise RunNotFoundError(f"no run {ref!r} in {root}{hint}")


def runs_named(name: str, root: str | os.PathLike) -> list[Path]:
    """The run directories under ``root`` whose run has this name, oldest first.

    Example:
        >>> runs_named("baseline", "/no/such/root")
        []
    """
    return [d for d in run_dirs(root) if run_name(d) == name]


def rank_files(run_dir: Path) -> dict[int, Path]:
    """``{rank: its events file}`` of a run, live or archived, by rank (rank 0's is ``events_path``;
    a single-process run has rank 0 only).

    Example:
        >>> rank_files(Path("/no/such/run"))
        {0: PosixPath('/no/such/run/events.jsonl')}
    """
    found = {0: events_path(run_dir)}
    for where in (run_dir / fmt.ARCHIVE_DIR, run_dir):  # a live file wins over an archived one
        try:
            names = os.listdir(where)
        except OSError:
            continue
        for name in names:
            match = fmt.RANK_EVENTS_PATTERN.match(name)
            if match:
                found[int(match.group(1))] = where / name
    return dict(sorted(found.items()))


def resolve_runs(
    refs: Iterable[str | os.PathLike] | str | os.PathLike | None,
    root: str | os.PathLike = "experiment_logs",
    *,
    started: bool = True,
) -> list[Path]:
    """The run directories ``refs`` name (``resolve_run`` each; one ref may be given alone), each
    once, in the order named; every run under ``root`` (``run_dirs``) when ``refs`` is None.

    Example:
        >>> resolve_runs(None, "/no/such/root")
        []
    """
    if refs is None:
        return run_dirs(root, started=started)
    if isinstance(refs, (str, os.PathLike)):
        refs = [refs]
    return list(dict.fromkeys(resolve_run(ref, root) for ref in refs))


def fsync_directory(path: Path) -> None:
    """fsync a directory, so that the entries created or renamed in it survive a power loss
    (no error where the filesystem cannot do it: nothing more can be done there).

    Example:
        >>> import tempfile
        >>> fsync_directory(Path(tempfile.mkdtemp()))
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rebuild_hint(run_dir: Path) -> str:
    """What to do about a damaged ``metrics.parquet``: rebuild it from the archived events when
    the run has them, else restore it from a copy.

    Example:
        >>> rebuild_hint(Path("/logs/20260101-000000-000-abcdef"))
        'its events were not archived, so it cannot be rebuilt: restore the file from a copy, or delete the run'
    """
    if (run_dir / fmt.ARCHIVED_EVENTS_FILE).is_file():
        return f"rebuild it from the archived events: steplog compact --rebuild {run_dir.name}"
    return "its events were not archived, so it cannot be rebuilt: restore the file from a copy, or delete the run"
