"""What every command of the command line shares: the ``Command`` row, common options (``--root``,
``--json``, ``--width``), the width of tables, JSON output and short run ids.

Example:
    >>> _positive_int("3")
    3
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .. import format as fmt

DEFAULT_ROOT = "experiment_logs"
#: Width of the tables when stdout is not a terminal (a terminal's own width is used otherwise).
DEFAULT_WIDTH = 80
#: Shown ids are unique prefixes of at least this many characters: ``YYYYMMDD-HHMM``, the start (UTC).
SHORT_ID_LENGTH = 13
#: ``ls`` shows this many main metrics.
MAIN_METRICS = 2
STATUSES = fmt.STATUSES


class CommandError(Exception):
    """A problem the user can fix, reported as one line (exit code 1)."""


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` executes it and returns the exit code."""

    name: str
    help: str
    example: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        default=DEFAULT_ROOT,
        metavar="DIR",
        help=f"the experiment root holding the runs (default: ./{DEFAULT_ROOT})",
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help='print JSON for scripts (datetimes as ISO strings, NaN/inf as "nan"/"inf"/"-inf")',
    )


def _add_width(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--width",
        type=_positive_int,
        metavar="N",
        help=f"fit tables into N columns (default: the terminal's width, else {DEFAULT_WIDTH})",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _metric_list(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"{text!r} names no metric; give names separated by commas, e.g. train_loss,val_loss"
        )
    return names


def _width(args: argparse.Namespace) -> int:
    if getattr(args, "width", None):
        return args.width
    if sys.stdout.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH


def _root(args: argparse.Namespace, *, url: bool = False) -> Any:
    """The experiment root named by ``--root``: a folder (a CommandError when it is not one), or for
    a command that reads buckets (``url``) an object-store URL as given (``s3://bucket/prefix``;
    credentials and endpoint from the environment)."""
    from ..storage import is_url

    if is_url(args.root):
        if url:
            return args.root
        raise CommandError(f"--root {args.root} is an object-store URL; this command works on a local folder "
                           f"(ls, show, compare, best, plot, export and sql read buckets)")
    root = Path(args.root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise CommandError(
            f"experiment root {str(root)!r} {what}; pass --root DIR (the folder your runs were logged to)"
        )
    return root


def _short_ids(root: Any) -> dict[str, str]:
    from ..roots import run_ids
    from ..store import unique_prefixes

    return unique_prefixes(run_ids(root), SHORT_ID_LENGTH)


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as ``"nan"``/``"inf"``/``"-inf"`` and paths as text."""
    from ..format import nonfinite_code

    if isinstance(value, float):
        return value if math.isfinite(value) else nonfinite_code(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(_jsonable(value), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode())


def _write_text(path: Path, text: str) -> None:
    from ..atomic import write_atomically

    write_atomically(path, text.encode("utf-8"))  # an OSError says "cannot write <path>: <reason>"


def _local_minute(value: _dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%m-%d %H:%M")


def _local_second(value: _dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
