"""Rendering small Polars frames as text for people: an aligned plain-text table or a Markdown table.

Used by the seed API (``ExperimentAnalyzer.get_comparison_table``, ``print_summary``), the
experiment report and the command line. Numbers are right-aligned and shown with few digits
(``format_value``); null is shown as ``-``. ``text_table`` can fit a table into a terminal width:
it truncates the columns it may shorten (with an ellipsis), then leaves out the columns it may drop
(saying which), then stacks the remaining columns in blocks that each fit.

Example:
    >>> import polars as pl
    >>> print(text_table(pl.DataFrame({"name": ["a", "bb"], "val_loss": [1.23456, None]})))
    name  val_loss
    ----  --------
    a       1.2346
    bb           -
"""

from __future__ import annotations

import datetime as _dt
import math
import textwrap
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import polars as pl

MISSING = "-"
ELLIPSIS = "\u2026"
#: ``text_table`` cuts the columns it may shorten to this width before it leaves columns out ...
SOFT_TRUNCATED_WIDTH = 20
#: ... and never below this one.
MIN_TRUNCATED_WIDTH = 10
_GAP = "  "


def format_value(value: Any, significant: int | None = None) -> str:
    """A short human form of one table cell.

    Floats: 4 decimals between 1e-3 and 1e4 in size, no decimals from 1e4 up, 3 significant digits
    below 1e-3; or, with ``significant=n``, n significant digits (``f"{value:.{n}g}"``), whole
    numbers in full. NaN/inf as
    ``nan``/``inf``. Datetimes to the second. None as ``-``.

    Example:
        >>> [format_value(v) for v in (2.345678, 0.0003, 123456.7, float("nan"), None, 3, "x")]
        ['2.3457', '0.0003', '123457', 'nan', '-', '3', 'x']
        >>> [format_value(v, significant=4) for v in (2.345678, 0.00012345, 123456.7, 1500.0, 19998.0)]
        ['2.346', '0.0001234', '1.235e+05', '1500', '19998']
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if value != value else ("inf" if value > 0 else "-inf")
        if significant is not None:
            if value.is_integer() and abs(value) < 1e15:  # counts (gradient steps, tokens) read as whole numbers
                return str(int(value))
            return f"{value:.{significant}g}"
        size = abs(value)
        if size >= 1e4:
            return f"{value:.0f}"
        if size >= 1e-3 or size == 0:
            return f"{value:.4f}"
        return f"{value:.3g}"
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def format_duration(seconds: float | None) -> str:
    """A duration for people: ``0.3s``, ``42s``, ``3m05s``, ``1h02m``, ``2d03h``; None as ``-``.

    Example:
        >>> [format_duration(s) for s in (0.26, 42.4, 185, 3725, 183600, None)]
        ['0.3s', '42s', '3m05s', '1h02m', '2d03h', '-']
    """
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def escape_control(text: str) -> str:
    """``text`` with its control characters (newlines, tabs, escape sequences, line separators)
    written as Python escapes, so that one cell stays one line of a table and cannot move the cursor.

    Example:
        >>> print(escape_control("run\\nname\\t\\x1b[31m"))
        run\\nname\\t\\x1b[31m
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def display_width(text: str) -> int:
    """The columns ``text`` takes on a terminal: 2 for a wide character (CJK, most emoji), 0 for a
    combining mark or a zero-width one, else 1 (``unicodedata.east_asian_width``).

    Example:
        >>> display_width("abc"), display_width("名前"), display_width("e\\u0301"), display_width("🙂")
        (3, 4, 1, 2)
    """
    if text.isascii():
        return len(text)
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _cut_to(text: str, width: int, from_end: bool = False) -> str:
    """The longest start (or end) of ``text`` at most ``width`` columns wide."""
    chars = reversed(text) if from_end else iter(text)
    kept, used = [], 0
    for ch in chars:
        used += _char_width(ch)
        if used > width:
            break
        kept.append(ch)
    return "".join(reversed(kept)) if from_end else "".join(kept)


def pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` columns (``display_width``), on the left when ``right``.

    Example:
        >>> pad("名", 4) + "|", pad("a", 3, right=True)
        ('名  |', '  a')
    """
    fill = " " * max(width - display_width(text), 0)
    return fill + text if right else text + fill


def truncate(text: str, width: int, *, middle: bool = False) -> str:
    """``text`` cut to ``width`` columns (``display_width``) with an ellipsis where something was cut:
    at the end, or in the middle (``middle=True``, keeping both ends: run names of a sweep differ at
    the end).

    Example:
        >>> truncate("a_very_long_run_name", 10), truncate("short", 10)
        ('a_very_lo\u2026', 'short')
        >>> truncate("sweep_lr_0.0003", 10, middle=True)
        'swee\u2026.0003'
    """
    if display_width(text) <= width:
        return text
    if width < 2:
        return _cut_to(text, width)
    if not middle:
        return _cut_to(text, width - 1) + ELLIPSIS
    head = (width - 1) // 2
    return _cut_to(text, head) + ELLIPSIS + _cut_to(text, width - 1 - head, from_end=True)


def formatted(
    frame: pl.DataFrame, significant: int | None = None, formats: dict[str, Callable[[Any], str]] | None = None
) -> pl.DataFrame:
    """``frame`` with every cell written as text (``format_value``, or ``formats[column]``).

    Example:
        >>> import polars as pl
        >>> formatted(pl.DataFrame({"loss": [0.123456, None]}), significant=3).rows()
        [('0.123',), ('-',)]
    """
    formats = formats or {}
    columns = []
    for name in frame.columns:
        write = formats.get(name) or (lambda v: format_value(v, significant))
        columns.append(pl.Series(name, [write(v) for v in frame.get_column(name).to_list()], dtype=pl.String))
    return (
        pl.DataFrame(columns, schema={name: pl.String for name in frame.columns}, orient="col")
        if columns
        else pl.DataFrame()
    )


def _cells(
    frame: pl.DataFrame,
    significant: int | None = None,
    formats: dict[str, Callable[[Any], str]] | None = None,
    right: Sequence[str] = (),
) -> tuple[list[str], list[list[str]], list[bool]]:
    header = list(frame.columns)
    text = formatted(frame, significant, formats)
    numeric = [frame.schema[name].is_numeric() or name in right for name in header]
    rows = [[escape_control(cell) for cell in row] for row in text.iter_rows()]
    return header, rows, numeric


def text_table(
    frame: pl.DataFrame,
    *,
    width: int | None = None,
    significant: int | None = None,
    formats: dict[str, Callable[[Any], str]] | None = None,
    right: Sequence[str] = (),
    truncatable: Sequence[str] = (),
    droppable: Sequence[str] = (),
    split_headers: bool = False,
    min_truncated: int = MIN_TRUNCATED_WIDTH,
) -> str:
    """``frame`` as an aligned plain-text table: a header line, a rule, one line per row.

    ``significant`` and ``formats`` (column -> function of a value) choose how cells are written;
    numbers, and the ``right`` columns, are right-aligned. ``split_headers=True`` writes a header
    ``a.b`` on two lines (``a`` over ``b``), so a column is as wide as its values need. With
    ``width``, lines are kept within ``width`` characters: the ``truncatable`` columns are cut in the
    middle (to ``SOFT_TRUNCATED_WIDTH``), then the ``droppable`` columns are left out in that order
    (a note at the end, wrapped to ``width``, says which), then the truncatable columns are cut
    further (to ``min_truncated``; to ``MIN_TRUNCATED_WIDTH`` when the first column and one other
    still do not fit), then the columns after the first are stacked in blocks, each repeating the
    first column. Truncated cells (and headers) lose their middle, marked by an ellipsis.

    Example:
        >>> import polars as pl
        >>> print(text_table(pl.DataFrame({"run": ["x"], "steps": [120]})))
        run  steps
        ---  -----
        x      120
        >>> frame = pl.DataFrame({"name": ["a_rather_long_run_name"], "loss.best": [0.5], "loss.last": [0.75]})
        >>> print(text_table(frame, width=24, significant=4, truncatable=["name"], split_headers=True))
                      loss  loss
        name          best  last
        ------------  ----  ----
        a_rat\u2026n_name   0.5  0.75
        >>> print(text_table(frame, width=21, truncatable=["name"], droppable=["loss.last"]))
        name        loss.best
        ----------  ---------
        a_ra\u2026_name     0.5000
        (left out to fit 21
        columns: loss.last)
    """
    header, rows, numeric = _cells(frame, significant, formats, right)
    widths = [
        max([_header_width(h, split_headers), *(display_width(r[i]) for r in rows)]) for i, h in enumerate(header)
    ]
    shown = list(range(len(header)))
    if width is None:
        return _render([_header_lines(h, split_headers) for h in header], rows, numeric, widths, shown)

    titles = [_header_lines(h, split_headers) for h in header]

    def cut(limit: int, columns: list[int]) -> None:
        for i, name in enumerate(header):
            if name in truncatable and i in columns and _total(widths, columns) > width:
                target = max(widths[i] - (_total(widths, columns) - width), limit)
                if target < widths[i]:
                    widths[i] = target
                    titles[i] = [truncate(part, target, middle=True) for part in titles[i]]
                    for row in rows:
                        row[i] = truncate(row[i], target, middle=True)

    cut(SOFT_TRUNCATED_WIDTH, shown)
    dropped = []
    for name in droppable:
        if _total(widths, shown) <= width:
            break
        if name in header and header.index(name) in shown:
            shown.remove(header.index(name))
            dropped.append(name)
    cut(min_truncated, shown)
    note = (
        textwrap.wrap(f"(left out to fit {width} columns: {', '.join(dropped)})", width, break_on_hyphens=False)
        if dropped
        else []
    )
    keep = min(1, len(shown))  # the first column, repeated in every block
    if shown[keep:]:  # the widest block, one column beside the kept ones, must fit too
        cut(MIN_TRUNCATED_WIDTH, max((shown[:keep] + [i] for i in shown[keep:]), key=lambda c: _total(widths, c)))
    blocks: list[list[int]] = []
    for index in shown[keep:]:
        if blocks and _total(widths, shown[:keep] + blocks[-1] + [index]) <= width:
            blocks[-1].append(index)
        else:
            blocks.append([index])
    parts = [_render(titles, rows, numeric, widths, shown[:keep] + block) for block in blocks or [[]]]
    return "\n\n".join(parts) + "".join("\n" + line for line in note)


def _header_width(name: str, split: bool) -> int:
    return max(display_width(part) for part in _header_lines(name, split))


def _header_lines(name: str, split: bool) -> list[str]:
    name = escape_control(name)
    return name.rsplit(".", 1) if split and "." in name.strip(".") else ["", name]


def _total(widths: list[int], columns: Iterable[int]) -> int:
    chosen = [widths[i] for i in columns]
    return sum(chosen) + len(_GAP) * max(len(chosen) - 1, 0)


def _render(
    titles: list[list[str]], rows: list[list[str]], numeric: list[bool], widths: list[int], columns: list[int]
) -> str:
    def line(cells: list[str]) -> str:
        aligned = (pad(cells[i], widths[i], right=numeric[i]) for i in columns)
        return _GAP.join(aligned).rstrip()

    head = [line([t[0] for t in titles])] if any(titles[i][0] for i in columns) else []
    return "\n".join([*head, line([t[1] for t in titles]), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def markdown_table(frame: pl.DataFrame) -> str:
    """``frame`` as a GitHub-flavoured Markdown table (numbers right-aligned; ``|`` escaped).

    Example:
        >>> import polars as pl
        >>> print(markdown_table(pl.DataFrame({"run": ["a|b"], "loss": [0.5]})))
        | run | loss |
        | :-- | --: |
        | a\\|b | 0.5000 |
    """
    header, rows, numeric = _cells(frame)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(escape_control(c).replace("|", "\\|") for c in cells) + " |"

    rule = "| " + " | ".join("--:" if num else ":--" for num in numeric) + " |"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
