"""One parse of the new metric lines of many events files, sliced back per file (``readcache``
hands it what a scan of many live runs reads: the parser's start-up, not the lines, was most of
the cost of one parse per file, issue 11). Each file's rows hold only the metrics it logged, in
the order a parse of that file alone gives them.

Example:
    >>> a = b'{"s":0,"t":0.0,"w":0.0,"m":{"b":1.0,"a":2.0}}\\n'
    >>> b = b'{"s":0,"t":0.0,"w":0.0,"m":{"z":0.0}}\\n{"s":1,"t":0.0,"w":0.0,"m":{"a":1.0,"b":2.0}}\\n'
    >>> [part.columns[4:] for part in _parse_together([a, b])]
    [['b', 'a'], ['z', 'a', 'b']]
"""

from __future__ import annotations

import orjson
import polars as pl

from . import format as fmt
from .eventparse import _BASE_COLUMNS, _parse_fast, _to_rows


def _parse_together(metric_bytes: list[bytes | memoryview]) -> list[pl.DataFrame] | None:
    """The rows of each file's metric lines (``_to_rows``), from one parse of them all, each with
    the metric columns it has values in; None where they do not parse together."""
    counts = [bytes(data).count(b"\n") for data in metric_bytes]
    table = _parse_fast(b"".join(metric_bytes)) if len(metric_bytes) > 1 else None
    if table is None or table.num_rows != sum(counts):
        return None  # damage, types that disagree, or blank lines: each file alone
    rows = _to_rows(table)
    metrics = [c for c in rows.columns if c not in _BASE_COLUMNS]
    parts, offset = [], 0
    for data, count in zip(metric_bytes, counts):
        part = rows.slice(offset, count)
        offset += count
        # a logged value is never null here (NaN and inf are restored): a null column is a metric not logged
        logged = [i for i, name in enumerate(metrics, start=len(_BASE_COLUMNS)) if part[:, i].null_count() < count]
        parts.append(part.select(pl.nth([*range(len(_BASE_COLUMNS)), *_own_order(part, logged, data)])))
    return parts


def _own_order(part: pl.DataFrame, logged: list[int], data: bytes | memoryview) -> list[int]:
    """The columns ``logged`` of one file's ``part`` of a joint parse, in the order the file alone
    gives them (first appearance in it, then the order of the keys of the line where several appear
    first), not the order of the joint parse: a file reads the same whichever files it is read with."""
    if len(logged) < 2:
        return logged
    names = part.columns
    index = {names[i]: i for i in logged}
    head = [index[key] for key in orjson.loads(_nth_line(data, 0))[fmt.METRICS] if key in index]
    rest = [i for i in logged if i not in set(head)]
    if len(rest) < 2:  # the common case: the first line logs most metrics, and at most one comes later
        return head + rest
    firsts = part.select(pl.nth(rest).is_not_null().arg_max()).row(0)
    order: dict[int, list[str]] = {}
    for first in set(firsts):
        if firsts.count(first) > 1:  # several metrics first logged on one line: that line's key order
            order[first] = list(orjson.loads(_nth_line(data, first))[fmt.METRICS])
    position = dict(zip(rest, firsts))

    def key(i: int) -> tuple[int, int]:
        first = position[i]
        return first, order[first].index(names[i]) if first in order else 0

    return head + sorted(rest, key=key)


def _nth_line(data: bytes | memoryview, n: int) -> bytes:
    """Line ``n`` (from 0) of ``data``."""
    for text in (bytes(data[: 1 << 16]), bytes(data)):  # the lines sought are near the start: no copy of it all
        begin = 0
        try:
            for _ in range(n):
                begin = text.index(b"\n", begin) + 1
            return text[begin : text.index(b"\n", begin)]
        except ValueError:
            continue  # beyond the first 64 KiB
    raise ValueError(f"no line {n} in {len(data)} bytes")
