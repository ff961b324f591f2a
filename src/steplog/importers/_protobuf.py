"""A reader of the protobuf wire format, just enough for TensorBoard event files and W&B run files.

Messages are walked field by field; callers pick the field numbers they know. No protobuf package needed.

Example:
    >>> list(fields(b"\\x08\\x96\\x01\\x12\\x02hi", 0, 7))  # field 1 = 150 (varint), field 2 = "hi" (bytes)
    [(1, 0, 150), (2, 2, (5, 7))]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it.

    Example:
        >>> varint(b"\\x96\\x01", 0)
        (150, 2)
    """
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value or (start, end) span) of each field of a protobuf message in
    ``data[pos:end]``: the value for a varint, the span of the bytes otherwise. Raises ValueError on
    a wire type it does not know or a field running past ``end``, IndexError past the data.

    Example:
        >>> list(fields(b"\\x0d\\x00\\x00\\x80\\x3f", 0, 5))  # field 1, a 32-bit float
        [(1, 5, (1, 5))]
    """
    while pos < end:
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 1:
            value, pos = (pos, pos + 8), pos + 8
        elif wire == 2:
            length, pos = varint(data, pos)
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            value, pos = (pos, pos + 4), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("a field runs past the end of its message")
        yield number, wire, value
