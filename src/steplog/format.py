"""The event format: the only module that knows how a run is laid out on disk.

A run directory holds an append-only JSON Lines file, ``events.jsonl``. Each line is one event:

* a **metric event** (one ``Run.log`` call)::

      {"s": 12, "t": 1764178323.51, "w": 4.02, "m": {"train_loss": 2.31, "lr": 0.0003}}

  ``s`` step, ``t`` absolute time (Unix seconds, UTC), ``w`` wall-clock seconds since the run
  started (training time: see ``resume``), ``m`` the metrics, every value a JSON number or
  ``null``. ``g`` (the segment, see ``resume``) is present only when it is not 0. ``nf`` is present
  only when a value is not finite: JSON has no NaN or infinity, so such a value is written as
  ``null`` in ``m`` and its code (``"nan"``, ``"inf"``, ``"-inf"``) under the same key in ``nf``.

* a **control event**, which always starts with the bytes ``{"e":`` (the event kind), so that a
  reader can pick the few control lines out of millions of metric lines without parsing them:
  ``start`` (first line: run id, name, config, metadata), ``resume`` (a new segment), ``config``
  (keys added to the run's config while it runs, merged over the start event's config in file
  order) and ``finish``.

Writer and reader both import from here; docs/format.md describes the same thing for people.

Example:
    >>> encode_metric_event(3, 1.0, 0.5, {"loss": float("nan")})
    b'{"s":3,"t":1.0,"w":0.5,"m":{"loss":null},"nf":{"loss":"nan"}}\\n'
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import orjson

#: Version of the event format, written into every ``start`` event. Readers accept versions <= it.
FORMAT_VERSION = 1

# File names inside a run directory.
EVENTS_FILE = "events.jsonl"
LOCK_FILE = "writer.lock"
PARQUET_FILE = "metrics.parquet"
SIDECAR_FILE = "run.json"
#: Precomputed per-bucket extremes of a long compacted run (``steplog.levels``), for the dashboard.
LEVELS_FILE = "metrics.levels.parquet"
#: Where compaction moves the events file (``<run dir>/archive/events.jsonl``): kept so the run stays rebuildable.
ARCHIVE_DIR = "archive"
#: Where compaction keeps a run's events file, relative to the run directory.
ARCHIVED_EVENTS_FILE = f"{ARCHIVE_DIR}/{EVENTS_FILE}"
#: The events file of rank k > 0 of a multi-process run; rank 0 (and a single process) writes EVENTS_FILE.
RANK_EVENTS_PATTERN = re.compile(r"^events\.rank([1-9][0-9]*)\.jsonl$")


def rank_events_file(rank: int) -> str:
    """The events file of ``rank`` in a run directory: ``events.jsonl`` for rank 0 (a single
    process is rank 0 of a world of 1), ``events.rank<k>.jsonl`` for the others.

    Example:
        >>> rank_events_file(0), rank_events_file(3)
        ('events.jsonl', 'events.rank3.jsonl')
    """
    return EVENTS_FILE if rank == 0 else f"events.rank{rank}.jsonl"


def rank_lock_file(rank: int) -> str:
    """The writer lock of ``rank``'s events file: ``writer.lock`` for rank 0, ``writer.rank<k>.lock`` else.

    Example:
        >>> rank_lock_file(0), rank_lock_file(2)
        ('writer.lock', 'writer.rank2.lock')
    """
    return LOCK_FILE if rank == 0 else f"writer.rank{rank}.lock"


# Keys of a metric event.
STEP = "s"
TIME = "t"
WALLCLOCK = "w"
METRICS = "m"
SEGMENT = "g"
NONFINITE = "nf"

# Control events: the key that holds the kind, and the kinds.
KIND = "e"
CONTROL_PREFIX = b'{"e":'
START = "start"
RESUME = "resume"
FINISH = "finish"
CONFIG = "config"

# Run statuses.
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CRASHED = "crashed"
STATUSES = (RUNNING, FINISHED, FAILED, CRASHED)

#: Metric names that would collide with the columns steplog adds to every history table.
RESERVED_NAMES = frozenset({"step", "wallclock", "time", "segment", "superseded", "run_id", "name", "rank"})

#: The codes under ``nf`` and the floats they stand for.
NONFINITE_CODES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: Every key a metric event may have.
METRIC_EVENT_KEYS = frozenset({STEP, TIME, WALLCLOCK, METRICS, SEGMENT, NONFINITE})

_OPT_LINE = orjson.OPT_APPEND_NEWLINE


def nonfinite_code(value: float) -> str:
    """The code under which a non-finite float is stored in ``nf``.

    Example:
        >>> nonfinite_code(float("-inf"))
        '-inf'
    """
    if value != value:
        return "nan"
    return "inf" if value > 0 else "-inf"


def decode_nonfinite(code: str) -> float:
    """The float a ``nf`` code stands for; raises ValueError for an unknown code.

    Example:
        >>> decode_nonfinite("inf")
        inf
    """
    try:
        return NONFINITE_CODES[code]
    except KeyError:
        raise ValueError(f"unknown non-finite code {code!r}; expected one of {sorted(NONFINITE_CODES)}") from None


def encode_metric_event(step: int, time: float, wallclock: float, metrics: dict[str, float], segment: int = 0) -> bytes:
    """One metric event as a complete line (with its newline). ``metrics`` values must be floats.

    This is the writer's hot path: one dict, one ``orjson.dumps``. Non-finite values are found
    with one C-level ``sum`` over the values (a NaN or an infinity anywhere makes the sum
    non-finite; a finite overflow only costs the exact check), not by scanning the encoded line.

    Example:
        >>> encode_metric_event(0, 1.0, 0.0, {"loss": 2.5}, segment=1)
        b'{"s":0,"t":1.0,"w":0.0,"m":{"loss":2.5},"g":1}\\n'
        >>> encode_metric_event(1, 1.0, 0.0, {"a": 1e308, "b": 1e308})  # the sum overflows: no "nf"
        b'{"s":1,"t":1.0,"w":0.0,"m":{"a":1e+308,"b":1e+308}}\\n'
    """
    event: dict[str, Any] = {STEP: step, TIME: time, WALLCLOCK: wallclock, METRICS: metrics}
    if segment:
        event[SEGMENT] = segment
    total = sum(metrics.values())
    if total - total != 0.0:  # NaN or +-inf in the sum: orjson would write null, record what it was
        add_nonfinite(event, metrics)
    return orjson.dumps(event, option=_OPT_LINE)


def add_nonfinite(event: dict[str, Any], metrics: dict[str, float]) -> None:
    """Add to a metric event the ``nf`` codes of its non-finite values, if it has any.

    Example:
        >>> event = {}
        >>> add_nonfinite(event, {"a": 1.0, "b": float("nan")})
        >>> event
        {'nf': {'b': 'nan'}}
    """
    nonfinite = {k: nonfinite_code(v) for k, v in metrics.items() if not math.isfinite(v)}
    if nonfinite:
        event[NONFINITE] = nonfinite


def encode_control_event(kind: str, **fields: Any) -> bytes:
    """A control event (``start``, ``resume``, ``finish``) as a complete line.

    Example:
        >>> encode_control_event("finish", status="finished", time=2.0)
        b'{"e":"finish","status":"finished","time":2.0}\\n'
    """
    return orjson.dumps({KIND: kind, **fields}, option=_OPT_LINE)


def decode_control_event(line: bytes) -> dict[str, Any]:
    """Parse one control line; raises ValueError when it is not a valid control event.

    Example:
        >>> decode_control_event(b'{"e":"finish","status":"failed"}')["status"]
        'failed'
    """
    event = orjson.loads(line)
    if not isinstance(event, dict) or not isinstance(event.get(KIND), str):
        raise ValueError("not a control event (expected a JSON object with a string 'e')")
    return event


def merge_config(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, as readers apply ``config`` events: nested dicts are merged
    key by key, every other value replaces the one before. Neither argument is changed.

    Example:
        >>> merge_config({"lr": 0.1, "model": {"d": 512, "layers": 4}}, {"model": {"layers": 8}, "bs": 32})
        {'lr': 0.1, 'model': {'d': 512, 'layers': 8}, 'bs': 32}
    """
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        merged[key] = merge_config(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def control_line_spans(data: bytes) -> list[tuple[int, int]]:
    """The (start, end) byte spans of the control lines in ``data`` (a run of complete lines),
    found without parsing the metric lines around them. ``end`` includes the newline.

    Example:
        >>> control_line_spans(b'{"e":"start"}\\n{"s":0,"t":0,"w":0,"m":{}}\\n')
        [(0, 14)]
    """
    spans = []
    pos = 0 if data.startswith(CONTROL_PREFIX) else data.find(b"\n" + CONTROL_PREFIX)
    while pos != -1:
        start = pos if pos == 0 and data.startswith(CONTROL_PREFIX) else pos + 1
        end = data.find(b"\n", start)
        end = len(data) if end == -1 else end + 1
        spans.append((start, end))
        pos = data.find(b"\n" + CONTROL_PREFIX, end - 1)
    return spans


def count_resumes(data: bytes) -> int:
    """How many ``resume`` events a run of complete lines holds (the run's segments, minus one).

    Example:
        >>> count_resumes(b'{"e":"start"}\\n{"e":"resume","segment":1}\\n')
        1
    """
    prefix = CONTROL_PREFIX + b'"' + RESUME.encode() + b'"'
    return sum(1 for begin, _ in control_line_spans(data) if data.startswith(prefix, begin))


def cut_unwritten_tail(events_path: Path) -> bytes:
    """Cut what follows the last newline of an events file (a torn line, or the zero bytes a
    ``"mmap"`` writer reserved and did not fill before it died) and return the complete lines.
    Only for a file no writer holds (resume, compaction: under the writer lock).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "events.jsonl"
        >>> _ = path.write_bytes(b'{"e":"start"}\\n{"s":0,"t' + bytes(100))
        >>> cut_unwritten_tail(path), path.stat().st_size
        (b'{"e":"start"}\\n', 14)
    """
    with open(events_path, "r+b") as f:
        data = f.read()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            f.truncate(complete)
            data = data[:complete]
    return data


def read_settled(events_path: Path, offset: int = 0, attempts: int = 8) -> bytes:
    """The bytes of an events file from ``offset`` on, read so that no line a writer is copying at
    that moment comes back half-read.

    A ``"mmap"`` writer fills a reserved zero region in place, so a read racing with it can take a
    line's newline but, from a moment earlier, zero bytes where the rest of the line was being
    copied. Each byte is written once, from zero to its value, so a zero byte before a newline
    means exactly that (or damage): the bytes from that line on are read again, until they settle.
    What still holds zero bytes after ``attempts`` reads is damage, and readers report it.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "events.jsonl"
        >>> _ = path.write_bytes(b'{"e":"start"}\\n' + bytes(10))
        >>> read_settled(path, 14)
        b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'
    """
    with open(events_path, "rb") as f:
        return read_settled_from(f, offset, attempts)


def read_settled_from(f: Any, offset: int = 0, attempts: int = 8) -> bytes:
    """``read_settled`` of a file already open for binary reading (``f``): its bytes from
    ``offset`` on, lines a ``"mmap"`` writer is copying read again until they settle.

    Example:
        >>> import io
        >>> read_settled_from(io.BytesIO(b'{"e":"start"}\\n{"s":0' + bytes(4)), 14)
        b'{"s":0\\x00\\x00\\x00\\x00'
    """
    f.seek(offset)
    data = f.read()
    for _ in range(attempts):
        zero = data.find(b"\0")
        if zero == -1 or zero > data.rfind(b"\n"):
            return data  # no zero byte, or zeros only after the last newline: not yet written
        begin = data.rfind(b"\n", 0, zero) + 1
        f.seek(offset + begin)
        data = data[:begin] + f.read()
    return data


def cut_zero_tail(events_path: Path) -> None:
    """If an events file ends in zero bytes (an ``"mmap"`` writer died before cutting its reserve),
    cut them and any torn line before them (``cut_unwritten_tail``); leave other files alone.
    Only for a file no writer holds.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "events.jsonl"
        >>> _ = path.write_bytes(b'{"e":"start"}\\n' + bytes(100)); cut_zero_tail(path); path.read_bytes()
        b'{"e":"start"}\\n'
    """
    with open(events_path, "rb") as f:
        if f.seek(0, 2) == 0:
            return
        f.seek(-1, 2)
        if f.read(1) != b"\0":
            return
    cut_unwritten_tail(events_path)


def read_last_event(events_path: Path, chunk: int = 65536) -> dict[str, Any] | None:
    """The last complete event of an events file, reading only its tail; None if there is none.

    A zero tail (a live or crashed ``"mmap"`` writer's reserve) is skipped without reading it all.

    Example:
        >>> read_last_event(Path("no/such/events.jsonl")) is None
        True
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "events.jsonl"
        >>> _ = path.write_bytes(b'{"e":"start"}\\n{"s":0,"t":1.0,"w":0.0,"m":{}}\\n' + bytes(300_000))
        >>> read_last_event(path, chunk=4096)["s"]
        0
    """
    try:
        with open(events_path, "rb") as f:
            size = _end_of_data(f)
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                data = f.read(size - start)
                end = data.rfind(b"\n")  # the newline ending the last complete line
                begin = data.rfind(b"\n", 0, max(end, 0)) + 1
                if start == 0 or begin > 0:
                    break
                chunk *= 4  # the last line is longer than what was read: read further back
    except OSError:
        return None
    if end == -1:
        return None
    try:
        event = orjson.loads(data[begin:end])
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _end_of_data(f: Any) -> int:
    """The length of a file without its zero tail (the reserve of an ``"mmap"`` writer): the tail
    is the only run of zero bytes a file holds (JSON has none), so a binary search over single
    bytes finds where it starts; the file's length when it has no zero tail."""
    size = f.seek(0, 2)
    f.seek(max(0, size - 1))
    if size == 0 or f.read(1) != b"\0":
        return size
    low, high = 0, size - 1  # byte ``high`` is zero: the tail starts at or before it
    while low < high:
        middle = (low + high) // 2
        f.seek(middle)
        if f.read(1) == b"\0":
            high = middle
        else:
            low = middle + 1
    return low


def read_start_event(events_path: Path) -> dict[str, Any] | None:
    """The ``start`` event of an events file, reading only its first line; None if it is missing or torn.

    Example:
        >>> read_start_event(Path("no/such/events.jsonl")) is None
        True
    """
    try:
        with open(events_path, "rb") as f:
            first = f.readline()
    except OSError:
        return None
    if not first.endswith(b"\n"):
        return None
    try:
        event = decode_control_event(first)
    except ValueError:
        return None
    return event if event[KIND] == START else None


def metric_event_problem(event: Any) -> str | None:
    """Why a parsed line is not a valid metric event (None when it is one).

    Example:
        >>> metric_event_problem({"s": 0, "t": 1.0, "w": 0.0, "m": {"a": 1.0}}) is None, metric_event_problem([])
        (True, 'not a JSON object')
    """
    if not isinstance(event, dict):
        return "not a JSON object"
    step = event.get(STEP)
    if type(step) is not int or step < 0:
        return "no valid step"
    for key in (TIME, WALLCLOCK):
        if type(event.get(key)) not in (int, float):
            return f"no valid {key!r}"
    metrics = event.get(METRICS)
    if not isinstance(metrics, dict) or any(
        v is not None and type(v) not in (int, float, bool) for v in metrics.values()
    ):
        return "metrics are not an object of numbers"
    if type(event.get(SEGMENT, 0)) is not int:
        return "segment is not an int"
    nonfinite = event.get(NONFINITE, {})
    if not isinstance(nonfinite, dict) or any(v not in NONFINITE_CODES for v in nonfinite.values()):
        return "bad non-finite codes"
    if set(event) - METRIC_EVENT_KEYS:
        return "unknown fields"
    return None
