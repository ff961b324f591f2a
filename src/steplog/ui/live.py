"""Reading a run's events file incrementally, for the dashboard's live updates.

``read_complete(path, offset)`` returns the whole lines appended since ``offset``: it stops at the
last newline, so a line the writer is still appending (or a tail of NUL bytes that a memory-mapped
writer has reserved but not yet written) is left for the next read. ``LiveRun`` keeps a run's rows
in memory and adds only the new lines on each ``update()``: a poll never re-parses the whole file.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> run = steplog.init(name="x", root=root)
    >>> run.log({"loss": 1.0}); run.flush()
    >>> live = LiveRun(FileSource(run.dir / "events.jsonl")); live.update() > 0
    True
    >>> run.log({"loss": 0.5}); run.flush(); cursor = live.offset
    >>> live.update() > cursor, live.rows["loss"].to_list()
    (True, [1.0, 0.5])
    >>> run.finish()
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from .. import format as fmt
from ..reader import parse_events

#: Column of ``LiveRun.rows``: the byte offset just past the read that brought the row.
OFFSET = "_offset"


def read_complete(path: Path, offset: int) -> tuple[bytes, int]:
    """The complete lines of ``path`` from byte ``offset`` and the offset just past them. A torn
    last line and trailing NUL bytes are not returned (the offset stays before them).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "e.jsonl"
        >>> _ = p.write_bytes(b'{"a":1}\\n{"b":2}\\n{"c"' + bytes(8))
        >>> read_complete(p, 0)
        (b'{"a":1}\\n{"b":2}\\n', 16)
        >>> read_complete(p, 8)
        (b'{"b":2}\\n', 16)
    """
    data = fmt.read_settled(path, offset)  # a line an "mmap" writer is still copying is read again
    end = data.rfind(b"\n") + 1
    return data[:end], offset + end


class FileSource:
    """A local events file as a ``LiveRun`` reads it: ``read(offset)`` gives ``(complete lines
    since offset, offset past them, replaced)``; ``replaced`` when the file shrank (rewritten).

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "e.jsonl"
        >>> _ = p.write_bytes(b'{"a":1}\\n{"b"')
        >>> FileSource(p).read(0), FileSource(p).read(100)
        ((b'{"a":1}\\n', 8, False), (b'', 100, True))
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, offset: int) -> tuple[bytes, int, bool]:
        size = os.stat(self.path).st_size
        if size <= offset:
            return b"", offset, size < offset
        data, end = read_complete(self.path, offset)
        return data, end, False


class LiveRun:
    """A run's events, read incrementally. ``rows`` holds the current (not superseded) metric rows
    in file order with an ``_offset`` column; ``resumes`` the ``(step, offset)`` of each resume;
    ``start``/``finish`` the control events; ``reset_offset`` the offset after the last resume (a
    cursor before it must re-fetch, since a resume removed rows). Thread-safe.

    Example:
        >>> LiveRun(FileSource(Path("/no/such/events.jsonl"))).update()
        Traceback (most recent call last):
        ...
        FileNotFoundError: [Errno 2] No such file or directory: '/no/such/events.jsonl'
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.path = source.path
        self.offset = 0
        self.reset_offset = 0
        self.rows = pl.DataFrame()
        self.resumes: list[tuple[int | None, int]] = []
        self.start: dict[str, Any] | None = None
        self.finish: dict[str, Any] | None = None
        self.skipped = 0
        self._chunks = 0
        self._lock = threading.Lock()

    def update(self) -> int:
        """Read what was appended since the last update; return the new offset."""
        with self._lock:
            data, end, replaced = self.source.read(self.offset)
            if replaced:  # the file was replaced: start again
                self.__init__(self.source)  # type: ignore[misc]
                data, end, _ = self.source.read(0)
            if data:
                self._add(data, end)
            return self.offset

    def _add(self, data: bytes, end: int) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            events = parse_events(data, self.path)
        self.skipped += len(caught)
        rows = events.rows.with_columns(pl.lit(end, pl.Int64).alias(OFFSET))
        self.rows = (
            rows if self.rows.width == 0 else pl.concat([self.rows, rows], how="diagonal_relaxed", rechunk=False)
        )
        self._chunks += 1
        for event in events.controls:
            self._control(event, end)
        if self._chunks > 64:
            self.rows, self._chunks = self.rows.rechunk(), 0
        self.offset = end

    def _control(self, event: dict[str, Any], end: int) -> None:
        kind = event.get(fmt.KIND)
        if kind == fmt.START:
            self.start = event
        elif kind == fmt.FINISH:
            self.finish = event
        elif kind == fmt.RESUME:
            self.finish = None
            segment = event.get("segment", len(self.resumes) + 1)
            start = event.get("start_step")
            self.resumes.append((start if isinstance(start, int) else None, end))
            if isinstance(start, int):  # the segment rewinds to start: earlier segments' later steps go
                self.rows = self.rows.filter((pl.col("segment") >= segment) | (pl.col("step") < start))
            self.reset_offset = end

    def snapshot(self) -> tuple[pl.DataFrame, int, int]:
        """``(rows, offset, reset_offset)`` as of one moment (an update may run in another thread)."""
        with self._lock:
            return self.rows, self.offset, self.reset_offset

    def metrics(self) -> list[str]:
        """The metric names seen so far, in order of first appearance."""
        return [c for c in self.rows.columns if c not in ("step", "time", "wallclock", "segment", OFFSET)]
