"""Parsing a large events file block by block, so that its whole text and the Arrow parser's
buffers for all of it are never held at once (issue 11: ``history()`` of a 1,000,000-event run
held the file's 154 MiB and 373 MiB of parse buffers, 9.1x its 61 MiB result).

Each block of whole lines is parsed alone (``eventparse``) and its rows kept; the blocks' rows are
then concatenated in file order, aligned by name, so a metric first logged late in the file is
null before it, as a parse of the whole file gives it. Anything only the whole-file path handles
(a damaged line, whose number it reports; a line a ``"mmap"`` writer is copying) makes
``parse_by_blocks`` return None, and the caller parses the file whole.

Example:
    >>> import io, tempfile
    >>> data = b'{"e":"start"}\\n' + b"".join(
    ...     b'{"s":%d,"t":0.0,"w":0.0,"m":{"a":1.0%s}}\\n' % (s, b',"b":2.0' if s == 3 else b"") for s in range(5))
    >>> events, _ = parse_by_blocks(io.BytesIO(data), Path("x"), block=64)
    >>> events.rows.select("step", "a", "b").rows()[2:4]
    [(2, 1.0, None), (3, 1.0, 2.0)]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from .eventparse import RunEvents, _empty_table, _parse_fast, _Split, _to_rows, _warn_about

#: Bytes read and parsed at a time.
BLOCK_BYTES = 16 << 20
#: Files at least this long are parsed by blocks (a smaller one is parsed whole: one parse is faster).
BIG_FILE_BYTES = 32 << 20
#: How many of the last bytes of its complete lines a parse returns (``steplog.readcache`` checks that
#: they are still there before it reuses the parse).
CHECK_BYTES = 256


def parse_by_blocks(f: Any, path: Path, block: int | None = None, hasher: Any = None) -> tuple[RunEvents, bytes] | None:
    """The events of the file open for binary reading as ``f`` (from its start), and the last
    ``CHECK_BYTES`` bytes of its complete lines; None where the whole-file parse must do it (see above).
    ``hasher`` (a ``hashlib`` object), when given, is updated with every byte read.

    Example:
        >>> import io
        >>> parse_by_blocks(io.BytesIO(b'{"e":"start"}\\n{"s":0,"t":0.0,"w":0.0,"m":{"a":"x"}}\\n'), Path("x")) is None
        True
    """
    block = block or BLOCK_BYTES
    f.seek(0)
    controls: list[dict[str, Any]] = []
    parts: list[pl.DataFrame] = []
    carry, complete, last = b"", 0, b""
    while chunk := f.read(block):
        if hasher is not None:
            hasher.update(chunk)
        data = carry + chunk if carry else chunk
        end = data.rfind(b"\n") + 1
        lines, carry = data[:end], data[end:]
        if not lines:
            continue
        if lines.find(b"\0") != -1:  # a zero byte before a newline: a line being copied, or damage
            return None
        split = _Split.of(lines, path, False)
        table = None if split.skipped else _parse_fast(split.metric_bytes)
        if table is None:
            return None
        controls += split.controls
        if table.num_rows:
            parts.append(_to_rows(table))
        complete += end
        last = (last + lines[-CHECK_BYTES:])[-CHECK_BYTES:]
    start = controls[0] if controls and controls[0].get(fmt.KIND) == fmt.START else None
    if start is None and complete:
        return None  # the whole-file path reports the first line
    _warn_about(path, start, [], False)
    rows = pl.concat(parts, how="diagonal_relaxed", rechunk=True) if parts else _to_rows(_empty_table())
    torn = len(carry.rstrip(b"\0"))
    return RunEvents(path, start, controls, rows, [], torn, complete), last
