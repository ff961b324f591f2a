"""Parsing the bytes of an events file into ``RunEvents``, forgiving what crashes leave behind
(``steplog.reader`` reads files, through ``steplog.readcache``, and resolves histories).

* A torn last line (no newline yet: the writer is mid-append, or died mid-write) is ignored.
* A corrupt line elsewhere is skipped with a warning naming the file and the line number; every
  other event is kept. Parsing never raises on damaged data (unless ``strict=True``).

The fast path hands all metric lines to Arrow's JSON reader at once; only when that fails (a
damaged file) are lines checked one by one to find the bad ones.

Example:
    >>> data = b'{"e":"start"}\\n{"s":0,"t":1.0,"w":0.0,"m":{"loss":1.0}}\\n'
    >>> parse_events(data, Path("x")).rows.select("step", "loss").to_dicts()
    [{'step': 0, 'loss': 1.0}]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl

from . import format as fmt

if TYPE_CHECKING:  # pyarrow is imported by the functions that parse: a query that reads only sidecars
    import pyarrow as pa  # (runs(), best() over compacted runs) never loads it (0.3-0.5 s; issue 11)


class CorruptEventsError(ValueError):
    """Raised by ``read_events(..., strict=True)`` for a damaged line."""


@dataclass
class RunEvents:
    """What an events file holds.

    ``rows`` has one row per metric event in file order: ``step`` (Int64), ``time`` (Float64 Unix
    seconds), ``wallclock`` (Float64), ``segment`` (Int64), then one Float64 column per metric in
    order of first appearance (null where a step did not log it, NaN/inf as logged).
    """

    path: Path
    start: dict[str, Any] | None
    controls: list[dict[str, Any]]
    rows: pl.DataFrame
    skipped_lines: list[int] = field(default_factory=list)
    torn_tail_bytes: int = 0
    bytes_read: int = 0
    #: what queries derived from these events (``reader.resolve_history``...), kept while the
    #: events are served again unchanged by ``steplog.readcache``; never part of a comparison
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def metric_names(self) -> list[str]:
        """The metric columns of ``rows``, in order of first appearance."""
        return [c for c in self.rows.columns if c not in _BASE_COLUMNS]

    @property
    def config(self) -> dict[str, Any]:
        """The run's config: the start event's, with every later ``config`` event
        (``Run.update_config``) merged over it in file order."""
        start_config = (self.start or {}).get("config")
        config = start_config if isinstance(start_config, dict) else {}
        for event in self.controls:
            if event.get(fmt.KIND) == fmt.CONFIG and isinstance(event.get("config"), dict):
                config = fmt.merge_config(config, event["config"])
        return config

    @property
    def resumes(self) -> list[dict[str, Any]]:
        """The ``resume`` events, in order."""
        return [c for c in self.controls if c.get(fmt.KIND) == fmt.RESUME]

    @property
    def last_finish(self) -> dict[str, Any] | None:
        """The ``finish`` event of the current (last) segment, or None if it has not finished."""
        segments = 1 + len(self.resumes)
        for event in reversed(self.controls):
            if event.get(fmt.KIND) == fmt.FINISH:
                return event if event.get("segment", 0) == segments - 1 else None
        return None


_BASE_COLUMNS = ("step", "time", "wallclock", "segment")
_BASE_SCHEMA = {"step": pl.Int64, "time": pl.Float64, "wallclock": pl.Float64, "segment": pl.Int64}


def metric_col(name: str, columns: list[str]) -> pl.Expr:
    """An expression for the column ``name`` of a frame with ``columns``, safe for any metric name.

    ``pl.col`` reads ``"*"`` as every column and ``"^...$"`` as a regular expression; metric names
    are free text, so such names are addressed by position instead.

    Example:
        >>> frame = pl.DataFrame({"step": [0], "*": [1.0]})
        >>> frame.select(metric_col("*", frame.columns)).columns
        ['*']
    """
    if name == "*" or (name.startswith("^") and name.endswith("$")):
        return pl.nth(columns.index(name))
    return pl.col(name)


def parse_events(data: bytes, path: Path, *, strict: bool = False) -> RunEvents:
    """Parse the bytes of an events file (see ``read_events``); ``path`` is used in messages.

    Example:
        >>> data = b'{"e":"start"}\\n{"s":0,"t":1.0,"w":0.0,"m":{"a":2.0}}\\n{"s":1,"t"'
        >>> parse_events(data, Path("x")).rows["a"].to_list()  # the torn tail is ignored
        [2.0]
    """
    split = _Split.of(data, path, strict)
    table = _parse_fast(split.metric_bytes)
    if table is None:
        table = _parse_checked(data[: split.complete], split.spans, path, strict, split.skipped)
    return split.events(path, _to_rows(table), strict)


@dataclass
class _Split:
    """An events file's bytes split into control events and the bytes of its metric lines."""

    complete: int
    torn: int
    skipped: list[int]
    controls: list[dict[str, Any]]
    metric_bytes: bytes | memoryview
    spans: list[tuple[int, int]]

    @classmethod
    def of(cls, data: bytes, path: Path, strict: bool) -> _Split:
        complete = data.rfind(b"\n") + 1
        torn = len(data[complete:].rstrip(b"\0"))  # a zero tail (a live "mmap" file's reserve) is not yet written
        skipped: list[int] = []
        controls, metric_bytes, spans = _split_controls(data, complete, path, strict, skipped)
        return cls(complete, torn, skipped, controls, metric_bytes, spans)

    def events(self, path: Path, rows: pl.DataFrame, strict: bool) -> RunEvents:
        """The ``RunEvents`` of these controls and the metric ``rows``, after the checks."""
        controls, skipped = self.controls, self.skipped
        start = controls[0] if controls and controls[0].get(fmt.KIND) == fmt.START else None
        if start is None and self.complete and 1 not in skipped:
            _bad_line(path, 1, "the first line is not a start event", strict, skipped)
        _warn_about(path, start, skipped, strict)
        return RunEvents(
            path=path,
            start=start,
            controls=controls,
            rows=rows,
            skipped_lines=skipped,
            torn_tail_bytes=self.torn,
            bytes_read=self.complete,
        )


def _split_controls(
    data: bytes, complete: int, path: Path, strict: bool, skipped: list[int]
) -> tuple[list[dict[str, Any]], bytes | memoryview, list[tuple[int, int]]]:
    """The control events of the complete lines, the bytes of the metric lines between them, and
    the control lines' spans."""
    view = memoryview(data)[:complete]
    controls: list[dict[str, Any]] = []
    pieces = []
    previous_end = 0
    spans = fmt.control_line_spans(data[:complete] if complete < len(data) else data)
    for begin, end in spans:
        pieces.append(view[previous_end:begin])
        previous_end = end
        try:
            controls.append(fmt.decode_control_event(bytes(view[begin:end])))
        except ValueError as exc:
            _bad_line(path, _line_number(data, begin), f"unreadable control event ({exc})", strict, skipped)
    pieces.append(view[previous_end:])
    pieces = [piece for piece in pieces if len(piece)]
    if len(pieces) == 1:  # metric lines in one stretch (a run's start line before them): a view, not a copy
        return controls, pieces[0], spans  # (a copy of a 1,000,000-event file is 150 MiB more at the peak)
    return controls, b"".join(pieces), spans


def _warn_about(path: Path, start: dict[str, Any] | None, skipped: list[int], strict: bool) -> None:
    version = (start or {}).get("v")
    if isinstance(version, int) and version > fmt.FORMAT_VERSION:
        warnings.warn(
            f"steplog: {path} is in event format v{version}, newer than this steplog's "
            f"v{fmt.FORMAT_VERSION}; reading what it understands (upgrade steplog to read it all)",
            stacklevel=4,
        )
    if skipped and not strict:
        shown = ", ".join(str(n) for n in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        warnings.warn(
            f"steplog: skipped {len(skipped)} damaged line(s) of {path} (line {shown}); every other event was kept",
            stacklevel=4,
        )


def _bad_line(path: Path, line: int, why: str, strict: bool, skipped: list[int]) -> None:
    if strict:
        raise CorruptEventsError(f"{path}, line {line}: {why}")
    skipped.append(line)


def _line_number(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


#: Below this size Arrow's JSON reader is faster on one thread: starting its thread pool's tasks
#: cost more than they saved (2.8 ms against 1.3 ms for a 500-step run of 60 KB, issue 11).
_THREADED_PARSE_BYTES = 4 << 20


#: Up to this many bytes of metric lines (the lines a live run appended since the last read, or a
#: short run) are parsed line by line with orjson: Arrow's reader costs about 1 ms to start, 20 times
#: what a few lines cost (issue 11). Anything orjson's checks refuse goes to Arrow's reader, as before.
_SMALL_PARSE_BYTES = 8 << 10


def _parse_small(metric_bytes: bytes | memoryview) -> pa.Table | None:
    """The table ``_parse_fast`` gives, from orjson line by line; None at the first line that is not
    a valid metric event (or a blank line), for the caller to parse as before."""
    events = []
    for line in bytes(metric_bytes).split(b"\n")[:-1]:
        try:
            event = orjson.loads(line)
        except ValueError:
            return None
        if fmt.metric_event_problem(event) is not None:
            return None
        events.append(event)
    return _table_from_events(events)


def _parse_as_array(metric_bytes: bytes | memoryview) -> pa.Table | None:
    """The table ``_parse_fast`` gives, from one ``orjson.loads`` of the lines as a JSON array and
    ``pyarrow.array``'s inference: half the time of Arrow's JSON reader on one thread for the file of a
    run of a few thousand steps (0.66 against 1.3 ms for 500 steps, issue 11). None for anything
    orjson or the inference refuses (a torn or blank line, NaN, a string...), or ``_well_formed`` does
    not pass: the caller then parses it as before."""
    import pyarrow as pa

    text = bytes(metric_bytes)
    try:
        events = orjson.loads(b"[" + text[:-1].replace(b"\n", b",") + b"]")
        table = pa.Table.from_struct_array(pa.array(events))
    except (ValueError, TypeError, OverflowError, pa.ArrowException):
        return None
    return table if _well_formed(table) else None


def _parse_fast(metric_bytes: bytes | memoryview) -> pa.Table | None:
    """Arrow's JSON reader over all metric lines; None when the data is damaged or misshapen."""
    import pyarrow as pa
    import pyarrow.json as pa_json

    if not metric_bytes:
        return _empty_table()
    if len(metric_bytes) <= _SMALL_PARSE_BYTES:
        small = _parse_small(metric_bytes)
        if small is not None:
            return small
    elif len(metric_bytes) <= _THREADED_PARSE_BYTES:
        table = _parse_as_array(metric_bytes)
        if table is not None:
            return table
    try:
        threads = len(metric_bytes) > _THREADED_PARSE_BYTES
        table = pa_json.read_json(pa.BufferReader(metric_bytes), read_options=pa_json.ReadOptions(use_threads=threads))
        return table if _well_formed(table) else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None  # UnicodeDecodeError: Arrow lets invalid UTF-8 through in key names


def _well_formed(table: pa.Table) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = table.schema
    for name, kinds in (
        (fmt.STEP, ("int64",)),
        (fmt.TIME, ("double", "int64")),
        (fmt.WALLCLOCK, ("double", "int64")),
        (fmt.METRICS, ("struct",)),
    ):
        if name not in schema.names or not str(schema.field(name).type).startswith(kinds):
            return False
        if table.column(name).null_count:
            return False
    if not set(schema.names) <= fmt.METRIC_EVENT_KEYS:
        return False
    if (
        fmt.SEGMENT in schema.names
        and not pa.types.is_integer(schema.field(fmt.SEGMENT).type)
        and not pa.types.is_null(schema.field(fmt.SEGMENT).type)
    ):
        return False
    if pc.min(table.column(fmt.STEP)).as_py() < 0:
        return False
    for child in schema.field(fmt.METRICS).type:
        child.name.encode()  # decoding a name made of invalid UTF-8 raises: the line-by-line path skips it
        if not (
            pa.types.is_floating(child.type)
            or pa.types.is_integer(child.type)
            or pa.types.is_null(child.type)
            or pa.types.is_boolean(child.type)
        ):  # ints and bools are logged as JSON ints and true/false
            return False
    if fmt.NONFINITE in schema.names:
        nf_type = schema.field(fmt.NONFINITE).type
        if not pa.types.is_struct(nf_type) or any(
            not (pa.types.is_string(c.type) or pa.types.is_null(c.type)) for c in nf_type
        ):
            return False
    return True


def _empty_table() -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {
            fmt.STEP: pa.array([], pa.int64()),
            fmt.TIME: pa.array([], pa.float64()),
            fmt.WALLCLOCK: pa.array([], pa.float64()),
            fmt.METRICS: pa.array([], pa.struct([])),
        }
    )


def _parse_checked(data: bytes, spans: list[tuple[int, int]], path: Path, strict: bool, skipped: list[int]) -> pa.Table:
    """The slow path for damaged files: check every metric line, keep the good ones."""
    control_starts = {begin for begin, _ in spans}
    good: list[bytes] = []
    offset = 0
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        begin = offset
        offset += len(line) + 1
        if begin in control_starts or not line.strip():
            continue  # control lines are parsed apart; a blank line holds no event
        problem = _metric_line_problem(line)
        if problem is None:
            good.append(line)
        else:
            _bad_line(path, number, problem, strict, skipped)
    table = _parse_fast(b"\n".join(good) + b"\n" if good else b"")
    if table is None:  # lines valid alone but not together (e.g. a metric both number and string)
        table = _table_from_events([orjson.loads(line) for line in good])
    return table


def _metric_line_problem(line: bytes) -> str | None:
    try:
        event = orjson.loads(line)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    return fmt.metric_event_problem(event)


def _table_from_events(events: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    names: dict[str, None] = {}
    for event in events:
        names.update(dict.fromkeys(event[fmt.METRICS]))
    metrics = (
        pa.StructArray.from_arrays(
            [pa.array([_as_float(e[fmt.METRICS].get(n)) for e in events], pa.float64()) for n in names],
            names=list(names),
        )
        if names
        else pa.array([{}] * len(events), pa.struct([]))
    )
    nonfinite_names: dict[str, None] = {}
    for event in events:
        nonfinite_names.update(dict.fromkeys(event.get(fmt.NONFINITE, {})))
    columns = {
        fmt.STEP: pa.array([e[fmt.STEP] for e in events], pa.int64()),
        fmt.TIME: pa.array([float(e[fmt.TIME]) for e in events], pa.float64()),
        fmt.WALLCLOCK: pa.array([float(e[fmt.WALLCLOCK]) for e in events], pa.float64()),
        fmt.METRICS: metrics,
        fmt.SEGMENT: pa.array([e.get(fmt.SEGMENT, 0) for e in events], pa.int64()),
    }
    if nonfinite_names:
        columns[fmt.NONFINITE] = pa.StructArray.from_arrays(
            [pa.array([e.get(fmt.NONFINITE, {}).get(n) for e in events], pa.string()) for n in nonfinite_names],
            names=list(nonfinite_names),
        )
    return pa.table(columns)


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _to_rows(table: pa.Table) -> pl.DataFrame:
    """Arrow table of raw events -> ``RunEvents.rows`` (flat, typed, non-finite values restored)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    metrics = table.column(fmt.METRICS).combine_chunks()
    names = [metrics.type.field(i).name for i in range(metrics.type.num_fields)]
    columns: dict[str, Any] = {
        "step": pl.Series("step", table.column(fmt.STEP), dtype=pl.Int64),
        "time": pl.Series("time", table.column(fmt.TIME)).cast(pl.Float64),
        "wallclock": pl.Series("wallclock", table.column(fmt.WALLCLOCK)).cast(pl.Float64),
        "segment": (
            pl.Series("segment", table.column(fmt.SEGMENT)).cast(pl.Int64).fill_null(0)
            if fmt.SEGMENT in table.column_names  # else zeros, made by Arrow (pl.zeros costs a query)
            else pl.Series("segment", pc.multiply(table.column(fmt.STEP), 0))
        ),
    }
    for i, name in enumerate(names):
        columns[name] = pl.Series(name, metrics.field(i)).cast(pl.Float64)
    frame = pl.DataFrame(columns)
    if frame.n_chunks() > 1:  # one chunk, however the text was split to parse: sums over chunks round otherwise
        frame = frame.rechunk()
    if fmt.NONFINITE in table.column_names:
        codes = table.column(fmt.NONFINITE).combine_chunks()
        if pa.types.is_struct(codes.type):
            fixes = []
            for i in range(codes.type.num_fields):
                name = codes.type.field(i).name
                if name not in frame.columns:
                    continue  # a code for a metric the event does not have: nothing to restore
                code = pl.Series(codes.field(i)).cast(pl.String)
                value: Any = pl.when(pl.lit(False)).then(None)
                for text, number in fmt.NONFINITE_CODES.items():
                    value = value.when(code == text).then(number)
                fixes.append(value.otherwise(metric_col(name, frame.columns)).cast(pl.Float64).alias(name))
            frame = frame.with_columns(fixes)
    return frame
