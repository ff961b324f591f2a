"""A per-process cache of the parsed rows of events files, so that a query of a live run parses
only what was appended since the last query of this process (issue 11).

An entry is keyed by the file's path and holds its device and inode, the ``RunEvents`` parsed
from its complete lines, and the last bytes before their end. The next read opens the file and
uses the entry only when the device and inode are the same, the file is at least that long and
those bytes are still there; it then reads from that end on (up to the last newline: a torn line
or the zero tail of a live ``"mmap"`` file is not yet data) and parses only that. Anything else
(a file replaced, as compaction does, or cut shorter than what was parsed, or rewritten) parses
the whole file again. Steplog's writers only append, and cut only what follows the last newline
(``resume``), so the parsed prefix of a file they write never changes under an entry.

A damaged file is parsed whole on every read that finds new bytes, and its warnings are given on
every read, cached or not. Entries are dropped least recently used first when the rows held pass
``STEPLOG_READ_CACHE_MB`` (default 256 MiB). Reads from many threads at once are safe: entries
are never changed, only replaced. ``read_events(..., strict=True)`` does not use the cache.

Example:
    >>> import tempfile, steplog
    >>> run = steplog.init(root=tempfile.mkdtemp())
    >>> run.log({"loss": 1.0}); run.flush()
    >>> read(run.dir / "events.jsonl").rows["loss"].to_list()
    [1.0]
    >>> run.log({"loss": 0.5}); run.finish()
    >>> read(run.dir / "events.jsonl").rows["loss"].to_list()  # the second line alone was parsed
    [1.0, 0.5]
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from .blockparse import BIG_FILE_BYTES, CHECK_BYTES, parse_by_blocks
from .eventparse import RunEvents, _parse_fast, _Split, _to_rows, _warn_about, parse_events
from .jointparse import _parse_together


@dataclass(frozen=True)
class _Entry:
    dev: int
    ino: int
    events: RunEvents  # as parsed (its bytes_read is where the next read starts)
    check: bytes  # the CHECK_BYTES bytes before events.bytes_read
    nbytes: int


class _Cache:
    """The entries, least recently used first, with their total size; thread-safe."""

    def __init__(self) -> None:
        self.entries: OrderedDict[Path, _Entry] = OrderedDict()
        self.total = 0
        self.lock = threading.Lock()

    def get(self, path: Path) -> _Entry | None:
        with self.lock:
            entry = self.entries.get(path)
            if entry is not None:
                self.entries.move_to_end(path)
            return entry

    def put(self, path: Path, entry: _Entry | None) -> None:
        limit = _limit()
        with self.lock:
            old = self.entries.pop(path, None)
            self.total -= old.nbytes if old else 0
            if entry is None or entry.nbytes > limit:
                return
            self.entries[path] = entry
            self.total += entry.nbytes
            while self.total > limit and self.entries:
                _, dropped = self.entries.popitem(last=False)
                self.total -= dropped.nbytes


_CACHE = _Cache()


def _limit() -> int:
    try:
        return int(float(os.environ.get("STEPLOG_READ_CACHE_MB", "256")) * 2**20)
    except ValueError:
        return 256 * 2**20


def clear() -> None:
    """Drop every entry (the next read of each file parses it whole).

    Example:
        >>> clear(); cached_bytes()
        0
    """
    with _CACHE.lock:
        _CACHE.entries.clear()
        _DERIVED.clear()
        _CACHE.total = 0


def cached_bytes() -> int:
    """The size of the rows the cache holds now, in bytes.

    Example:
        >>> clear(); cached_bytes()
        0
    """
    return _CACHE.total


@dataclass
class _Delta:
    """What a read found: the new bytes of a file after its cached ``base`` (all of it when
    ``base`` is None), and ``before``, the bytes just before them that were checked."""

    path: Path
    dev: int
    ino: int
    base: RunEvents | None
    before: bytes
    data: bytes
    #: a large file parsed by blocks as it was read (``blockparse``), and its last bytes
    parsed: RunEvents | None = None
    check: bytes = b""

    def remember(self, events: RunEvents) -> RunEvents:
        """Cache ``events``, what this read made of the file, and return them."""
        check = self.check or (self.before + self.data[: events.bytes_read - _base_end(self)])[-CHECK_BYTES:]
        if events.bytes_read == 0:
            _CACHE.put(self.path, None)
            return events
        size = int(events.rows.estimated_size()) + 200 * len(events.controls) + 1024
        _CACHE.put(self.path, _Entry(self.dev, self.ino, events, check, size))
        return events


def _base_end(delta: _Delta) -> int:
    return delta.base.bytes_read if delta.base is not None else 0


def _read_delta(path: Path) -> _Delta:
    """Open ``path`` and read what its cache entry does not hold (all of it without a usable entry)."""
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        entry = _CACHE.get(path)
        if entry is not None and (entry.dev, entry.ino) == (info.st_dev, info.st_ino):
            end = entry.events.bytes_read
            if info.st_size >= end:
                back = len(entry.check)
                data = fmt.read_settled_from(f, end - back)
                if data[:back] == entry.check:
                    return _Delta(path, info.st_dev, info.st_ino, entry.events, entry.check, data[back:])
        if info.st_size >= BIG_FILE_BYTES:  # parsed as it is read: never all of its text at once
            found = parse_by_blocks(f, path)
            if found is not None:
                return _Delta(path, info.st_dev, info.st_ino, None, b"", b"", *found)
        return _Delta(path, info.st_dev, info.st_ino, None, b"", fmt.read_settled_from(f, 0))


def read(path: Path) -> RunEvents:
    """``reader.read_events(path)`` (not strict) through the cache.

    Example:
        >>> read(Path("/no/such/events.jsonl"))
        Traceback (most recent call last):
        ...
        FileNotFoundError: [Errno 2] No such file or directory: '/no/such/events.jsonl'
    """
    return read_many([path], missing_ok=False)[0]  # type: ignore[return-value]


def read_many(paths: list[Path], *, missing_ok: bool = True) -> list[RunEvents | None]:
    """``read`` of several files (None for one that does not exist, with ``missing_ok``), the new
    metric lines of them all handed to one parse (``jointparse``).

    Example:
        >>> read_many([Path("/no/such/events.jsonl")])
        [None]
    """
    deltas: list[_Delta | None] = []
    for path in paths:
        try:
            deltas.append(_read_delta(path))
        except FileNotFoundError:
            _CACHE.put(path, None)  # moved (compaction) or deleted: its entry goes
            if not missing_ok:
                raise
            deltas.append(None)
    splits = [None if d is None else _Split.of(d.data, d.path, False) for d in deltas]
    joint = [
        i
        for i, (d, s) in enumerate(zip(deltas, splits))
        # a damaged file is parsed whole again when it grows (its line numbers), else its entry serves
        if d is not None
        and s is not None
        and d.parsed is None
        and not s.skipped
        and not (d.base and d.base.skipped_lines and s.complete)
    ]
    with_lines = [i for i in joint if len(splits[i].metric_bytes)]  # type: ignore[union-attr]
    together = _parse_together([splits[i].metric_bytes for i in with_lines]) if len(with_lines) > 1 else None  # type: ignore[union-attr]
    rows: dict[int, pl.DataFrame] = dict(zip(with_lines, together or []))
    out: list[RunEvents | None] = []
    for i, (delta, split) in enumerate(zip(deltas, splits)):
        if delta is None or split is None:
            out.append(None)
            continue
        if delta.parsed is not None:
            out.append(delta.remember(delta.parsed))
            continue
        events = _combine(delta, split, rows.get(i)) if i in joint else None
        out.append(delta.remember(events if events is not None else _whole(delta)))
    return out


def _whole(delta: _Delta) -> RunEvents:
    """The events of the whole file, parsed from its start (re-read where only new bytes were read)."""
    if delta.base is not None:
        with open(delta.path, "rb") as f:
            delta.data, delta.base, delta.before = fmt.read_settled_from(f, 0), None, b""
    return parse_events(delta.data, delta.path)


def _combine(delta: _Delta, split: _Split, rows: pl.DataFrame | None) -> RunEvents | None:
    """The events of ``delta``'s file: its base's with the new lines' (``rows`` when they were
    parsed with other files'); None where the new lines do not parse alone (damage: whole file)."""
    if rows is None and len(split.metric_bytes):
        table = _parse_fast(split.metric_bytes)
        if table is None:
            return None
        rows = _to_rows(table)
    if delta.base is None:
        return split.events(delta.path, rows if rows is not None else _to_rows(_parse_fast(b"")), False)
    base = delta.base
    _warn_about(delta.path, base.start, list(base.skipped_lines), False)
    if not split.complete:  # nothing new: the same events (and what was derived from them)
        return base if split.torn == base.torn_tail_bytes else dataclasses.replace(base, torn_tail_bytes=split.torn)
    merged = base.rows
    if rows is not None and rows.height:
        # contiguous, as a parse of the whole file gives them: sums over chunks round otherwise
        merged = pl.concat([base.rows, rows], how="diagonal_relaxed", rechunk=True)
    return RunEvents(
        path=delta.path,
        start=base.start,
        controls=[*base.controls, *split.controls],
        rows=merged,
        skipped_lines=list(base.skipped_lines),
        torn_tail_bytes=split.torn,
        bytes_read=base.bytes_read + split.complete,
    )


# --- what was derived from files that are replaced, never changed (sidecars, Parquet) ---------


def stamp(*paths: Path) -> tuple[int, ...] | None:
    """Device, inode, size and modification time of each of ``paths`` (None when one is
    missing): compaction writes its files to a temporary name and renames them into place, so a
    file with the same stamp holds the same bytes.

    Example:
        >>> stamp(Path("/no/such/run.json")) is None
        True
    """
    found: list[int] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            return None
        found += (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    return tuple(found)


_DERIVED: OrderedDict[tuple[Any, ...], tuple[tuple[int, ...], Any, int]] = OrderedDict()
_DERIVED_LOCK = _CACHE.lock  # one lock: both count towards _CACHE.total
_DERIVED_LIMIT = 4096  # entries; the rows they hold count towards STEPLOG_READ_CACHE_MB as well


def derived(key: tuple[Any, ...], files: tuple[int, ...] | None, make: Callable[[], Any], nbytes: int = 0) -> Any:
    """``make()``, or what it returned for ``key`` when the files it read still have the same
    ``stamp`` (``files``; None: not cached). ``nbytes`` is the size of what it returns, when large.

    Example:
        >>> derived(("double", 2), (1, 2, 3, 4), lambda: 2 * 2), derived(("double", 2), (1, 2, 3, 4), lambda: 0)
        (4, 4)
    """
    if files is None:
        return make()
    with _DERIVED_LOCK:
        hit = _DERIVED.get(key)
        if hit is not None and hit[0] == files:
            _DERIVED.move_to_end(key)
            return hit[1]
    value = make()
    size = nbytes if nbytes else (int(value.estimated_size()) if isinstance(value, pl.DataFrame) else 0)
    with _DERIVED_LOCK:
        old = _DERIVED.pop(key, None)
        _CACHE.total -= old[2] if old else 0
        _DERIVED[key] = (files, value, size)
        _CACHE.total += size
        while len(_DERIVED) > _DERIVED_LIMIT or (_CACHE.total > _limit() and len(_DERIVED) > 1):
            _, (_, _, dropped) = _DERIVED.popitem(last=False)
            _CACHE.total -= dropped
    return value


def sidecar(run_dir: Path) -> dict[str, Any] | None:
    """``sidecar.read_sidecar(run_dir)``, parsed once while the file is the same (a shallow copy).

    Example:
        >>> sidecar(Path("/no/such/run")) is None
        True
    """
    from .sidecar import read_sidecar

    path = run_dir / fmt.SIDECAR_FILE
    found = derived(("sidecar", path), stamp(path), lambda: read_sidecar(run_dir))
    return None if found is None else dict(found)
