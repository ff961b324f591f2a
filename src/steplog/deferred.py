"""Events waiting for accelerator values: kept in call order until one batched copy to the host.

A scalar tensor on a GPU is not copied when logged (the copy would wait for the device). Its event
waits here with every event logged after it (ready lines, kept behind it to keep call order), and
the values of many steps are copied in one transfer when ``due`` says so.

Example:
    >>> pending = PendingEvents(step=0, now=0.0, flush_steps=100, flush_seconds=10.0)
    >>> pending.add_line(b'{"s":0,"t":1.0,"w":0.0,"m":{"a":1.0}}\\n')
    >>> pending.due(step=1, now=1.0), pending.due(step=100, now=1.0)
    (False, True)
    >>> pending.lines(segment=0, run="r")
    [b'{"s":0,"t":1.0,"w":0.0,"m":{"a":1.0}}\\n']
"""

from __future__ import annotations

import warnings
from typing import Any

from . import format as fmt
from .values import DeviceValues, materialise


class PendingEvents:
    """Ready lines (bytes) and (step, time, wallclock, metrics, DeviceValues) tuples, in call order."""

    def __init__(self, *, step: int, now: float, flush_steps: int, flush_seconds: float) -> None:
        self.entries: list[bytes | tuple[int, float, float, dict[str, Any], DeviceValues]] = []
        self.until_step = step + flush_steps
        self.until_time = now + flush_seconds
        self.limit = 16 * flush_steps  # bounds memory whatever the steps do

    def add_line(self, line: bytes) -> None:
        """Keep a complete, encoded line behind the events already waiting."""
        self.entries.append(line)

    def add(self, step: int, time: float, wallclock: float, metrics: dict[str, Any], on_device: DeviceValues) -> None:
        """Keep an event whose ``on_device`` values are still on the device."""
        self.entries.append((step, time, wallclock, metrics, on_device))

    def due(self, step: int, now: float) -> bool:
        """Whether the values should be copied now: enough steps or seconds, or too many events."""
        return step >= self.until_step or now >= self.until_time or len(self.entries) >= self.limit

    def lines(self, *, segment: int, run: str) -> list[bytes]:
        """Copy the device values to the host in one transfer and return every event's line, in
        order. If the copy fails (the device failed), warn: the events with device values are lost."""
        batches = [entry[4] for entry in self.entries if type(entry) is tuple]
        try:
            values = iter(materialise(batches))
        except Exception as exc:  # e.g. the device failed: the training loop will hear of it itself
            warnings.warn(
                f"steplog: could not copy {len(batches)} logged device value(s) of run {run} to the host "
                f"({type(exc).__name__}: {exc}); their events are lost",
                stacklevel=4,
            )
            values = None
        lines = []
        for entry in self.entries:
            if type(entry) is bytes:
                lines.append(entry)
            elif values is not None:
                step, time_, wallclock, metrics, _ = entry
                metrics.update(next(values))
                lines.append(fmt.encode_metric_event(step, time_, wallclock, metrics, segment))
        return lines
