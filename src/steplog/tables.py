"""Rendering small Polars frames as text for people: an aligned plain-text table or a Markdown table.

Used by the seed API (``ExperimentAnalyzer.get_comparison_table``, ``print_summary``), the
experiment report and the command line. Numbers are right-aligned and shown with few digits
(``format_value``); null is shown as ``-``.

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
from typing import Any

import polars as pl

MISSING = "-"


def format_value(value: Any) -> str:
    """A short human form of one table cell.

    Floats: 4 decimals between 1e-3 and 1e4 in size, no decimals from 1e4 up, 3 significant digits
    below 1e-3; NaN/inf as ``nan``/``inf``. Datetimes to the second. None as ``-``.

    Example:
        >>> [format_value(v) for v in (2.345678, 0.0003, 123456.7, float("nan"), None, 3, "x")]
        ['2.3457', '0.0003', '123457', 'nan', '-', '3', 'x']
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if value != value else ("inf" if value > 0 else "-inf")
        size = abs(value)
        if size >= 1e4:
            return f"{value:.0f}"
        if size >= 1e-3 or size == 0:
            return f"{value:.4f}"
        return f"{value:.3g}"
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _cells(frame: pl.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    header = list(frame.columns)
    columns = [[format_value(v) for v in frame.get_column(name).to_list()] for name in header]
    numeric = [frame.schema[name].is_numeric() for name in header]
    rows = [list(row) for row in zip(*columns)] if columns else []
    return header, rows, numeric


def text_table(frame: pl.DataFrame) -> str:
    """``frame`` as an aligned plain-text table: a header line, a rule, one line per row.

    Example:
        >>> import polars as pl
        >>> print(text_table(pl.DataFrame({"run": ["x"], "steps": [120]})))
        run  steps
        ---  -----
        x      120
    """
    header, rows, numeric = _cells(frame)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


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
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rule = "| " + " | ".join("--:" if num else ":--" for num in numeric) + " |"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
