"""Where a run's encoded lines go: the sinks of the durability modes (the memory mapping of
``"mmap"``, one ``write(2)`` per event in ``"process"``, the buffer of ``"buffered"``, and ``_hold``
for "fsync" mode, events waiting for device values, a closed run or a failed write), the fallback
from the mapping to ``write(2)``, write errors (a full disk) and fsync deadlines.

``RunOutput`` is the half of ``runlog.Run`` that moves bytes; ``Run`` (``log``, ``finish``...)
encodes the events and calls ``self._put(line, step, now)``, the sink ``_set_sink`` chose.

Example:
    >>> import tempfile, steplog
    >>> run = steplog.init(root=tempfile.mkdtemp(), durability="process")
    >>> run._put == run._put_write, isinstance(run, RunOutput)
    (True, True)
    >>> run.finish(); run._put == run._hold
    True
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from . import format as fmt
from .deferred import PendingEvents
from .eventfile import MappedEvents, ReserveFailed, write_all
from .values import DeviceValues

_time = time.time
_perf = time.perf_counter
_write = os.write
_OPT_LINE = orjson.OPT_APPEND_NEWLINE


class RunOutput:
    """The byte-moving half of ``runlog.Run`` (a base class: ``Run.__init__`` sets these attributes)."""

    id: str
    name: str
    dir: Path
    rank: int
    durability: str
    _fd: int
    _segment: int
    _step: int | None
    _next_step: int
    _perf0: float
    _closed: bool
    _write_failed: bool
    _fsync_interval: float | None
    _next_fsync: float
    _buffer: list[bytes] | None
    _buffer_size: int
    _buffer_interval: float
    _next_flush: float
    _pending: PendingEvents | None
    _tensor_flush_steps: int
    _tensor_flush_seconds: float
    _mapped: MappedEvents | None
    _sink_mapping: MappedEvents | None
    _sink_fd: int
    _option: int
    _put: Callable[[bytes, int, float], None]

    def _set_sink(self) -> None:
        """``self._put``: the mapping ("mmap"), one write ("process"), the buffer ("buffered"), or
        ``_hold`` when the run is closed, events wait for device values, the mode is "fsync", or a
        write failed (``_write_data`` ends the torn line once writing works again). And
        ``self._sink_mapping``: the ``MappedEvents`` that ``log`` copies into itself when the sink
        is the mapping, else None; ``self._sink_fd``: the descriptor ``log`` writes to itself when the
        sink is one write ("process"), else -1."""
        held = self._closed or self._pending is not None or self._write_failed or self._fsync_interval is not None
        self._sink_mapping = None if held else self._mapped
        put: Callable[[bytes, int, float], None] = self._hold
        if not held:
            put = (
                self._mapped.append
                if self._mapped is not None
                else self._put_buffer
                if self._buffer is not None
                else self._put_write
            )
        self._put = put
        self._sink_fd = self._fd if put == self._put_write else -1

    def _put_write(self, line: bytes, step: int, now: float) -> None:
        try:
            written = _write(self._fd, line)
        except OSError as exc:
            self._on_write_error(exc)
            return
        if written != len(line):
            self._finish_write(line, written)

    def _put_buffer(self, line: bytes, step: int, now: float) -> None:
        buffer = self._buffer
        buffer.append(line)
        if len(buffer) >= self._buffer_size or now >= self._next_flush:
            self._flush_buffer(now)

    def _hold(self, line: bytes, step: int, now: float) -> None:
        """Where ``log`` sends a line outside the fast paths (see ``_set_sink``)."""
        if self._closed:
            self._raise_closed()
        if self._option != _OPT_LINE:
            line += b"\n"
        if self._pending is not None:  # keep call order behind the events waiting for device values
            self._pending.add_line(line)
            self._check_pending(step, now)
        else:  # "fsync" mode, or after a failed write
            self._emit([line], now)

    def _raise_closed(self) -> None:
        raise RuntimeError(f"run {self.id} ({self.name!r}) is finished; start or resume a run to log more")

    def _defer(self, step: int, metrics: dict[str, Any], on_device: DeviceValues) -> None:
        if self._closed:
            self._raise_closed()
        now = _perf() - self._perf0
        if self._pending is None:
            self._pending = PendingEvents(
                step=step, now=now, flush_steps=self._tensor_flush_steps, flush_seconds=self._tensor_flush_seconds
            )
            self._set_sink()
        self._pending.add(step, _time(), now, metrics, on_device)
        self._step = step
        self._next_step = step + 1
        self._check_pending(step, now)

    def _check_pending(self, step: int, now: float) -> None:
        if self._pending.due(step, now):
            self._materialise_pending(now)

    def _materialise_pending(self, now: float) -> None:
        """Copy the waiting device values to the host in one transfer, write the waiting events in order."""
        lines = self._pending.lines(segment=self._segment, run=self.id)  # stays until built: an interrupt loses nothing
        self._pending = None
        self._set_sink()
        self._emit(lines, now)

    def _emit(self, lines: list[bytes], now: float) -> None:
        """Send complete lines on by the run's durability mode (off the hot path)."""
        if self._buffer is None:
            self._write_data(b"".join(lines))
            if self._fsync_interval is not None and now >= self._next_fsync:
                self._fsync(now)
        else:
            self._buffer.extend(lines)
            if len(self._buffer) >= self._buffer_size or now >= self._next_flush:
                self._flush_buffer(now)

    def _flush_buffer(self, now: float) -> None:
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._next_flush = now + self._buffer_interval
        self._write_data(data)

    def _write_data(self, data: bytes) -> None:
        """Append complete lines: into the mapping, or with write(2)."""
        if self._mapped is not None:
            self._mapped.append_lines(data)
            if self._write_failed and self._mapped is not None:  # mapped again after a failed finish
                self._write_failed = False
                self._set_sink()
            return
        if self._write_failed:
            data = b"\n" + data  # end the line a failed write may have left half-written
        try:
            written = _write(self._fd, data)
        except OSError as exc:
            self._on_write_error(exc)
            return
        if self._write_failed:
            self._write_failed = False
            self._set_sink()
        if written != len(data):
            self._finish_write(data, written)

    def _finish_write(self, data: bytes, written: int) -> None:
        """Complete a short write."""
        try:
            write_all(self._fd, data[written:])
        except OSError as exc:
            self._on_write_error(exc)

    def _on_write_error(self, exc: OSError) -> None:
        if not self._write_failed:
            warnings.warn(
                f"steplog: could not append to {self.dir / fmt.rank_events_file(self.rank)} ({exc}); events are "
                f"dropped "
                f"until writing works again (disk full?). Training goes on.",
                stacklevel=4,
            )
        self._write_failed = True
        self._set_sink()

    def _map(self, written: int) -> MappedEvents | None:
        """The mapping of "mmap" mode, or None (and "process" mode, with a warning) if the first
        chunk cannot be reserved."""
        try:
            return MappedEvents.open(self._fd, written, self._mapping_failed)
        except ReserveFailed as exc:
            self._warn_unmapped(exc)
            return None

    def _mapping_failed(self, line: bytes, exc: BaseException) -> None:
        """The next chunk could not be reserved (disk full?): the file is already cut to the bytes
        written; go on with write(2) from this line on."""
        self._mapped = None
        self._warn_unmapped(exc)
        self._option = _OPT_LINE
        self._set_sink()
        self._write_data(line + b"\n")

    def _warn_unmapped(self, exc: BaseException) -> None:
        self.durability = "process"
        where = self.dir / fmt.rank_events_file(self.rank)
        warnings.warn(
            f"steplog: could not reserve space to map {where} ({exc}); run {self.id} "
            f"goes on with one write(2) per event (durability 'process')",
            stacklevel=5,
        )

    def _fsync(self, now: float) -> None:
        self._next_fsync = now + self._fsync_interval
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._on_write_error(exc)
