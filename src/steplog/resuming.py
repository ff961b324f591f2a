"""Reopening a run to append to it: what resuming needs to know from the events file.

A crashed writer may have left a torn last line or, in ``"mmap"`` durability, the zero bytes of
its last reserved chunk: both are cut off before anything else, so appends start on a clean line.

Example:
    >>> import tempfile, steplog
    >>> run = steplog.init(name="r", root=tempfile.mkdtemp()); run.log({"loss": 1.0}); run.finish()
    >>> state = tail_state(run.dir / "events.jsonl")
    >>> state["name"], state["segments"], state["last_step"], state["next_step"]
    ('r', 1, 0, 1)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from . import format as fmt


def reopen_compacted(run_dir: Path) -> None:
    """Make a compacted run live again (under its lock): its archived events move back, and the
    derived Parquet file and sidecar, now out of date, are removed; the next compaction folds it anew."""
    events = run_dir / fmt.EVENTS_FILE
    archived = run_dir / fmt.ARCHIVED_EVENTS_FILE
    if not events.exists() and archived.exists():
        os.replace(archived, events)
    if not events.exists():
        raise FileNotFoundError(
            f"run {run_dir.name} has no {fmt.EVENTS_FILE} (nor {fmt.ARCHIVED_EVENTS_FILE}) "
            f"to append to; it cannot be resumed"
        )
    for derived in (fmt.SIDECAR_FILE, fmt.PARQUET_FILE):
        try:
            (run_dir / derived).unlink()
        except FileNotFoundError:
            pass


def tail_state(events: Path) -> dict[str, Any]:
    """What resuming needs from an events file: name, segment count, last step, the step logging
    continues from, and the wallclock. A torn last line or a zero tail (the previous writer died)
    is cut off first, so appends start clean."""
    data = fmt.cut_unwritten_tail(events)
    start = fmt.read_start_event(events)
    if start is None:
        raise ValueError(f"{events} has no readable start event; it cannot be resumed")
    version = start.get("v")
    if isinstance(version, int) and version > fmt.FORMAT_VERSION:
        raise ValueError(
            f"{events} was written in event format v{version}, newer than this steplog's "
            f"v{fmt.FORMAT_VERSION}; upgrade steplog to resume it"
        )
    last_step, next_step, wallclock = _walk_back(data)
    if next_step is None:
        next_step = 0 if last_step is None else last_step + 1
    return {
        "run_id": start.get("run_id", events.parent.name),
        "name": start.get("name", events.parent.name),
        "config": start.get("config"),
        "segments": 1 + fmt.count_resumes(data),
        "last_step": last_step,
        "next_step": next_step,
        "wallclock": wallclock or 0.0,
    }


def _walk_back(data: bytes) -> tuple[int | None, int | None, float | None]:
    """Walk back over complete lines to the last metric event: its step, the start step of a later
    segment that logged nothing (if any), and the last wallclock seen."""
    last_step, next_step, wallclock = None, None, None
    end = len(data)
    while end > 0:
        begin = data.rfind(b"\n", 0, end - 1) + 1
        try:
            event = orjson.loads(data[begin:end])
        except ValueError:
            end = begin
            continue
        if isinstance(event, dict):
            if wallclock is None and isinstance(event.get(fmt.WALLCLOCK), (int, float)):
                wallclock = float(event[fmt.WALLCLOCK])
            if fmt.KIND not in event and isinstance(event.get(fmt.STEP), int):
                return event[fmt.STEP], next_step, wallclock
            if event.get(fmt.KIND) == fmt.RESUME and next_step is None and isinstance(event.get("start_step"), int):
                next_step = event["start_step"]  # a later segment restarted here and logged nothing after
        end = begin
    return last_step, next_step, wallclock
