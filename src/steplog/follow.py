"""Following a live run: yield its metric events as the writer appends them.

Reads the events file by byte offset and stops at the last newline, so a torn line in progress
(or the zero tail of a live ``"mmap"`` file) is never read as data. Needs neither Polars nor
PyArrow.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> run = steplog.init(name="f", root=root); run.log({"loss": 1.0}); run.finish()
    >>> [e["loss"] for e in follow("f", root=root)]
    [1.0]
"""

from __future__ import annotations

import datetime as _dt
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from . import format as fmt
from . import locks, store
from .openruns import flush_open_runs


def follow(
    run: str | os.PathLike,
    root: str | os.PathLike = "experiment_logs",
    *,
    poll_interval: float = 0.5,
    from_start: bool = True,
    timeout: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield a run's metric events as its writer appends them; stop when the run finishes.

    Each item is one ``log`` call: ``{"step", "wallclock", "time" (UTC datetime), "segment",
    <metric>: value, ...}`` with only the metrics of that call (NaN/inf as logged). With
    ``from_start=False`` only events appended from now on are yielded. The generator ends when the
    current segment's ``finish`` event arrives, when the writer is gone (a crash) and nothing is
    left to read, or after ``timeout`` seconds. A torn line in progress is waited for, never
    yielded half; a damaged line is skipped with a warning. The run is resolved, and the starting
    point taken, when ``follow`` is called (not at the first ``next``).

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> run = steplog.init(name="live", root=root)
        >>> run.log({"loss": 1.0}); run.log({"loss": 0.5}); run.finish()
        >>> [(e["step"], e["loss"]) for e in follow("live", root=root)]
        [(0, 1.0), (1, 0.5)]
    """
    run_dir = store.resolve_run(run, root)
    path = store.events_path(run_dir)
    offset, line_number, segment = 0, 0, 0
    if not from_start:
        with open(path, "rb") as f:
            data = f.read()
        offset = data.rfind(b"\n") + 1
        line_number = data.count(b"\n")
        segment = fmt.count_resumes(data[:offset])
    deadline = None if timeout is None else time.monotonic() + timeout
    return _follow(run_dir, path, offset, line_number, segment, poll_interval, deadline)


def _follow(
    run_dir: Path, path: Path, offset: int, line_number: int, segment: int, poll_interval: float, deadline: float | None
) -> Iterator[dict[str, Any]]:
    cursor = _Cursor(run_dir, path, offset, line_number, segment)
    while True:
        flush_open_runs(run_dir)
        chunk = cursor.read_complete_lines()
        yield from cursor.rows(chunk)
        if cursor.finished:
            return
        if not chunk and not locks.writer_is_alive(run_dir):
            return  # the writer is gone without finishing (crashed), and everything is read
        if deadline is not None and time.monotonic() >= deadline:
            return
        time.sleep(poll_interval)


class _Cursor:
    """Where ``follow`` is in an events file: byte offset, line number, segment, finished or not."""

    def __init__(self, run_dir: Path, path: Path, offset: int, line_number: int, segment: int) -> None:
        self.run_dir, self.path, self.offset, self.line_number, self.segment = (
            run_dir,
            path,
            offset,
            line_number,
            segment,
        )
        self.finished = False

    def read_complete_lines(self) -> bytes:
        """The complete lines appended since the last read (up to the last newline)."""
        try:
            chunk = fmt.read_settled(self.path, self.offset)
        except FileNotFoundError:  # compacted meanwhile: the same bytes are in the archive
            self.path = store.events_path(self.run_dir)
            chunk = fmt.read_settled(self.path, self.offset)
        complete = chunk.rfind(b"\n") + 1
        self.offset += complete
        return chunk[:complete]

    def rows(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        """The metric rows of ``chunk``; control events move the segment and the finished flag."""
        self.finished = False
        for line in chunk.split(b"\n")[:-1]:
            self.line_number += 1
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and isinstance(event.get(fmt.KIND), str):
                self._control(event)
                continue
            problem = fmt.metric_event_problem(event) if event is not None else "not valid JSON"
            if problem is not None:
                warnings.warn(
                    f"steplog: skipped damaged line {self.line_number} of {self.path} ({problem})", stacklevel=4
                )
                continue
            yield _event_row(event)

    def _control(self, event: dict[str, Any]) -> None:
        if event[fmt.KIND] == fmt.RESUME:
            self.segment, self.finished = int(event.get("segment", self.segment + 1)), False
        elif event[fmt.KIND] == fmt.FINISH and event.get("segment", 0) == self.segment:
            self.finished = True


def _event_row(event: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "step": event[fmt.STEP],
        "wallclock": float(event[fmt.WALLCLOCK]),
        "time": _dt.datetime.fromtimestamp(event[fmt.TIME], _dt.timezone.utc),
        "segment": event.get(fmt.SEGMENT, 0),
    }
    nonfinite = event.get(fmt.NONFINITE, {})
    for key, value in event[fmt.METRICS].items():
        row[key] = (
            fmt.decode_nonfinite(nonfinite[key])
            if value is None and key in nonfinite
            else (None if value is None else float(value))
        )
    return row
