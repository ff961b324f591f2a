"""The ``steplog`` command line: ``steplog <command> [options]``.

Commands are rows of ``COMMANDS``: a name, a one-line help, an example, a function adding the
command's arguments to its parser, and a function running it (``args -> exit code``). Adding a
command is writing those two functions and one row. Every command is a thin shell over the library
(``query``, ``compact``, ``reader.follow``, ``plot``, ``report``, ``demo``); docs/cli.md shows each.

Exit codes: 0 success, 1 an error (one line on stderr, no traceback), 2 a usage error.
``--json`` output (ls, show, compare, best) writes datetimes as ISO 8601 strings (UTC) and the
non-finite floats, which JSON lacks, as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (the codes
of the event format and the sidecar); null means "no value" (a metric never logged).

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    steplog ...
    0
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from . import __version__

DEFAULT_ROOT = "experiment_logs"
#: Width of the tables when stdout is not a terminal (a terminal's own width is used otherwise).
DEFAULT_WIDTH = 80
#: Shown ids are unique prefixes of at least this many characters: ``YYYYMMDD-HHMM``, the start (UTC).
SHORT_ID_LENGTH = 13
#: ``ls`` shows this many main metrics.
MAIN_METRICS = 2
STATUSES = ("running", "finished", "failed", "crashed")


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
    parser.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR",
                        help=f"the experiment root holding the runs (default: ./{DEFAULT_ROOT})")


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print JSON for scripts (datetimes as ISO strings, NaN/inf as \"nan\"/\"inf\"/\"-inf\")")


def _add_width(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=_positive_int, metavar="N",
                        help=f"fit tables into N columns (default: the terminal's width, else {DEFAULT_WIDTH})")


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
        raise argparse.ArgumentTypeError(f"{text!r} names no metric; give names separated by commas, e.g. train_loss,val_loss")
    return names


def _width(args: argparse.Namespace) -> int:
    if getattr(args, "width", None):
        return args.width
    if sys.stdout.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH


def _root(args: argparse.Namespace) -> Path:
    """The experiment root named by ``--root``; a CommandError when it is not a folder."""
    root = Path(args.root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise CommandError(f"experiment root {str(root)!r} {what}; pass --root DIR (the folder your runs were logged to)")
    return root


def _short_ids(root: Path) -> dict[str, str]:
    from .store import run_dirs, unique_prefixes

    return unique_prefixes([d.name for d in run_dirs(root)], SHORT_ID_LENGTH)


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as ``"nan"``/``"inf"``/``"-inf"`` and paths as text."""
    from .format import nonfinite_code

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
    from .atomic import write_atomically

    write_atomically(path, text.encode("utf-8"))  # an OSError says "cannot write <path>: <reason>"


def _local_minute(value: _dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%m-%d %H:%M")


def _local_second(value: _dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


# --- ls ---------------------------------------------------------------------------------------


def _ls_arguments(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--status", choices=STATUSES, help="only runs with this status")
    parser.add_argument("--name", metavar="GLOB", help="only runs whose name matches GLOB (shell pattern: lr_*, *base*)")
    parser.add_argument("--metrics", type=_metric_list, metavar="M1,M2",
                        help="the metrics to show (default: the two most runs logged, losses first)")
    _add_json(parser)
    _add_width(parser)


def _ls(args: argparse.Namespace) -> int:
    import polars as pl

    from .query import check_metrics
    from .runtable import runs
    from .tables import SOFT_TRUNCATED_WIDTH, format_duration, text_table

    root = _root(args)
    table = runs(root, metrics="all", figures=("best", "last"), mode="auto").reverse()  # newest first
    if args.status:
        table = table.filter(pl.col("status") == args.status)
    if args.name:
        table = table.filter(pl.Series([fnmatch.fnmatchcase(n or "", args.name) for n in table["name"]]))
    logged = [c[: -len(".last")] for c in table.columns if c.endswith(".last") and not c.startswith("config.")]
    if args.metrics:
        check_metrics(args.metrics, logged, root)
    if args.json:
        _print_json(table.to_dicts())
        return 0
    if table.height == 0:
        print(f"(no runs in {root}{' matching the filters' if args.status or args.name else ''})")
        return 0
    chosen = args.metrics or main_metrics(table, logged)
    short = _short_ids(root)
    shown = table.select(
        "name",
        pl.col("run_id").replace_strict(short, default=pl.col("run_id")).alias("id"),
        "status",
        pl.col("num_steps").alias("steps"),
        pl.col("duration_s").alias("time"),
        pl.col("start_time").alias("started"),
        *[pl.col(f"{m}.{figure}") for m in chosen for figure in ("best", "last")],
    )
    print(text_table(shown, width=_width(args), significant=4, split_headers=True,
                     formats={"time": format_duration, "started": _local_minute}, right=["time"],
                     truncatable=["name"], droppable=["started", *(f"{m}.last" for m in reversed(chosen)), "time"],
                     min_truncated=SOFT_TRUNCATED_WIDTH))
    return 0


def main_metrics(table: Any, logged: Sequence[str], count: int = MAIN_METRICS) -> list[str]:
    """The metrics ``ls`` shows: of the metrics logged (``<m>.last`` columns of ``table``), those
    whose name contains "loss" first, then the ones most runs logged, then in order of appearance.

    Example:
        >>> import polars as pl
        >>> t = pl.DataFrame({"lr.last": [1.0, 1.0], "train_loss.last": [2.0, 1.0], "val_loss.last": [None, 1.0]})
        >>> main_metrics(t, ["lr", "train_loss", "val_loss"])
        ['train_loss', 'val_loss']
    """
    import polars as pl

    runs_logging = table.select(pl.col(f"{m}.last").is_not_null().sum() for m in logged).row(0) if logged else ()
    order = sorted(range(len(logged)), key=lambda i: ("loss" not in logged[i].lower(), -runs_logging[i], i))
    return [logged[i] for i in order[:count]]


# --- show -------------------------------------------------------------------------------------


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run id, a unique id prefix, or a name (its latest run)")
    _add_root(parser)
    _add_json(parser)
    _add_width(parser)


def _show(args: argparse.Namespace) -> int:
    import polars as pl

    from .model import SUMMARY_FIELDS, SUMMARY_TYPES
    from .query import run_info
    from .runtable import flatten_config
    from .tables import format_duration, format_value, text_table, truncate

    info = run_info(args.run, root=_root(args))
    if args.json:
        _print_json(info)
        return 0
    width = _width(args)

    def section(title: str, pairs: dict[str, Any]) -> list[str]:
        if not pairs:
            return [f"{title}: none"]
        pad = max(len(k) for k in pairs)
        return [f"{title}:", *(truncate(f"  {k:<{pad}}  {format_value(v, 6)}", width) for k, v in pairs.items())]

    steps = f"{info['num_steps']}" + (f" ({info['first_step']} to {info['last_step']})" if info["num_steps"] else "")
    lines = section("run", {
        "name": info["name"], "id": info["run_id"], "status": info["status"],
        "started": _local_second(info["start_time"]), "duration": format_duration(info["duration_s"]),
        "steps": steps, "segments": len(info["segments"]), "error": info["error"], "notes": info["notes"],
        "stored": "compacted (metrics.parquet + run.json)" if info["compacted"] else "events.jsonl (not compacted)",
        "dir": info["dir"],
    })
    meta = dict(info["meta"])
    if isinstance(meta.get("argv"), list):
        meta["argv"] = " ".join(map(str, meta["argv"]))
    first = [k for k in ("git_commit", "git_dirty", "host", "argv") if k in meta]
    lines += ["", *section("metadata", {k: meta[k] for k in [*first, *(k for k in meta if k not in first)]})]
    lines += ["", *section("config", flatten_config(info["config"], prefix=""))]
    segments = pl.DataFrame(info["segments"]).select(
        "segment", "first_step", "last_step", "rows", pl.col("superseded_rows").alias("superseded"),
        pl.col("start_time").alias("started"), (pl.col("end_time") - pl.col("start_time")).dt.total_microseconds()
        .truediv(1e6).alias("time"), "status") if info["segments"] else None
    if segments is not None:
        lines += ["", "segments:", text_table(segments, width=width, formats={"time": format_duration,
                                                                             "started": _local_minute}, right=["time"])]
    summary = info["summary"]
    if summary:
        figures = pl.DataFrame([{"metric": m, **{f: s.get(f) for f in SUMMARY_FIELDS}} for m, s in summary.items()],
                               schema={"metric": pl.String, **SUMMARY_TYPES})
        figures = figures.rename({"nan_count": "nans", "step_of_min": "min_at", "step_of_max": "max_at"})
        figures = figures.select("metric", "count", "nans", "last", "min", "min_at", "max", "max_at", "first", "mean", "std")
        lines += ["", "metrics:", text_table(figures, width=width, significant=4)]
    else:
        lines += ["", "metrics: none logged"]
    print("\n".join(lines))
    return 0


# --- compare ----------------------------------------------------------------------------------


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to compare (default: every run under --root)")
    _add_root(parser)
    parser.add_argument("--metrics", type=_metric_list, metavar="M1,M2", help="the metrics to show (default: all)")
    _add_json(parser)
    _add_width(parser)


def _compare(args: argparse.Namespace) -> int:

    from .runtable import compare
    from .tables import SOFT_TRUNCATED_WIDTH, formatted, text_table

    root = _root(args)
    table = compare(args.runs or None, metrics=args.metrics, root=root, mode="auto")  # unknown metrics raise
    if args.json:
        _print_json(table.to_dicts())
        return 0
    if table.height == 0:
        print(f"(no runs in {root})")
        return 0
    short = _short_ids(root)
    names = table["name"].to_list()
    labels = [name if names.count(name) == 1 else f"{name} {short.get(run_id, run_id)}"
              for name, run_id in zip(names, table["run_id"])]
    cells = formatted(table.drop("name", "run_id"), significant=4)
    side_by_side = cells.transpose(include_header=True, header_name="", column_names=labels)
    differing = sum(c.startswith("config.") for c in table.columns)
    print(text_table(side_by_side, width=_width(args), truncatable=labels, right=labels, min_truncated=SOFT_TRUNCATED_WIDTH))
    if differing == 0 and table.height > 1:
        print("(the config is the same in every run compared)")
    return 0


# --- best -------------------------------------------------------------------------------------


def _best_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metric", metavar="METRIC", help="the metric to rank runs by, e.g. val_loss")
    _add_root(parser)
    parser.add_argument("--max", action="store_true", help="higher is better (default: lower is better)")
    _add_json(parser)


def _best(args: argparse.Namespace) -> int:
    from .query import best
    from .tables import format_value

    mode = "max" if args.max else "min"
    winner = best(args.metric, mode, root=_root(args))
    if args.json:
        _print_json({"metric": args.metric, "mode": mode, **winner})
        return 0
    print(f"best {args.metric} ({mode}): {format_value(winner['value'], 4)} at step {winner['step']}, "
          f"run {winner['name']} ({winner['run_id']})")
    return 0


# --- compact ----------------------------------------------------------------------------------


def _compact_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to compact (default: every run under --root)")
    _add_root(parser)
    parser.add_argument("--dry-run", action="store_true", help="list what would be compacted and what skipped, and why")
    parser.description = (f"{parser.description}\n\nexit code 1 when a run could not be compacted (files not "
                          f"writable, no start event); running runs are skipped, which is not an error")


def _compact(args: argparse.Namespace) -> int:
    from .compact import compact_each, is_failure, plan_compaction
    from .store import run_name

    root = _root(args)
    if not args.dry_run:
        outcomes = compact_each(root, args.runs or None)  # progress and a summary line on stderr
        failed = [run_dir.name for run_dir, outcome, detail in outcomes if is_failure(outcome, detail)]
        if failed:
            raise CommandError(f"{len(failed)} run(s) could not be compacted: {', '.join(failed)} (the reasons are above)")
        return 0
    plan = plan_compaction(root, args.runs or None)
    short = _short_ids(root)
    labels = {"compact": "would compact", "current": "up to date", "skipped": "would skip"}
    for run_dir, action, why in plan:
        print(f"{labels[action]:<13}  {short.get(run_dir.name, run_dir.name)}  {run_name(run_dir) or '?'}: {why}")
    counts = {action: sum(p[1] == action for p in plan) for action in labels}
    print(f"dry run: {counts['compact']} to compact, {counts['current']} already compacted, "
          f"{counts['skipped']} to skip; nothing was changed")
    return 0


# --- export -----------------------------------------------------------------------------------


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run id, a unique id prefix, or a name (its latest run)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="FILE",
                        help="where to write the history: FILE.csv, FILE.parquet or FILE.pq")
    _add_root(parser)
    parser.add_argument("--all-segments", action="store_true",
                        help="also the rows a resume superseded, with segment and superseded columns")


def _export(args: argparse.Namespace) -> int:
    from .query import export
    from .store import resolve_run, run_name

    root = _root(args)
    run_dir = resolve_run(args.run, root)
    path = export(run_dir, args.output, root=root, all_segments=args.all_segments)
    print(f"wrote the history of {run_name(run_dir)} ({run_dir.name}) to {path}")
    return 0


# --- tail -------------------------------------------------------------------------------------


def _tail_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run id, a unique id prefix, or a name (its latest run)")
    _add_root(parser)
    parser.add_argument("-n", "--lines", type=int, default=10, metavar="N", help="how many of the last steps to print (default: 10)")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="keep printing steps as the run logs them, until it finishes (Ctrl-C stops)")
    parser.add_argument("--poll", type=float, default=0.5, metavar="SECONDS", help=argparse.SUPPRESS)


def _tail(args: argparse.Namespace) -> int:
    import polars as pl

    from . import format as fmt
    from .query import history
    from .reader import follow
    from .store import current_status, resolve_run

    run_dir = resolve_run(args.run, _root(args))
    live = args.follow and current_status(run_dir) == fmt.RUNNING
    try:
        events = follow(run_dir, poll_interval=args.poll, from_start=False) if live else None
        rows = history(run_dir, all_segments=True)
        segment = rows["segment"].max() if rows.height else 0
        current = rows.filter(~pl.col("superseded")).drop("segment", "superseded")
        last_step = current["step"].max() if current.height else None
        for row in current.tail(max(args.lines, 0)).iter_rows(named=True):
            print(_step_line(row), flush=True)
        if args.follow and not live:
            print(f"(run {run_dir.name} is {current_status(run_dir)}: nothing to follow)", file=sys.stderr)
        for event in events or ():
            if event["segment"] == segment and last_step is not None and event["step"] <= last_step:
                continue  # printed above from the history
            print(_step_line(event), flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def _step_line(row: dict[str, Any]) -> str:
    """``step 12  3.4s  loss=0.5  lr=0.001`` (metrics not logged at this step left out)."""
    from .tables import format_duration, format_value

    metrics = "  ".join(f"{k}={format_value(v, 4)}" for k, v in row.items()
                        if k not in ("step", "wallclock", "time", "segment") and v is not None)
    return f"step {row['step']}  {format_duration(row.get('wallclock'))}  {metrics}".rstrip()


# --- plot -------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    from .plot import MIN_SIZE

    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write WIDTHxHEIGHT in pixels, e.g. 1200x800") from None
    if width < MIN_SIZE or height < MIN_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is too small for a plot; use at least {MIN_SIZE}x{MIN_SIZE} pixels")
    return width, height


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="runs to plot (ids, id prefixes or names)")
    _add_root(parser)
    parser.add_argument("--metric", action="append", metavar="M",
                        help="a metric to plot, one panel each; repeat for more (default: train_loss)")
    parser.add_argument("--x", choices=("step", "wallclock", "time"), default="step",
                        help="the x axis: step, wallclock (seconds of training) or time (default: step)")
    parser.add_argument("--smooth", type=_positive_int, metavar="N", help="draw a rolling mean over N points")
    parser.add_argument("--logy", action="store_true", help="a logarithmic y axis")
    parser.add_argument("--size", type=_size, default=(1200, 800), metavar="WxH", help="the PNG size in pixels (default: 1200x800)")
    parser.add_argument("--title", help="a title over the panels")
    parser.add_argument("-o", "--output", type=Path, default=Path("curves.png"), metavar="FILE.png",
                        help="where to save the PNG (default: curves.png)")


def _plot(args: argparse.Namespace) -> int:
    from .plot import plot_curves

    metrics = args.metric or ["train_loss"]
    path = plot_curves(args.runs, metrics, root=_root(args), x=args.x, smooth=args.smooth, logy=args.logy,
                       output=args.output, size=args.size, title=args.title)
    print(f"wrote {path} ({args.size[0]}x{args.size[1]}: {', '.join(metrics)} of {len(args.runs)} run(s) by {args.x})")
    return 0


# --- demo -------------------------------------------------------------------------------------


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of about half a minute")


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.root, quick=args.quick)
    return 0


# --- report -----------------------------------------------------------------------------------


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (default: aligned text)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the report to FILE instead of printing it")
    where.add_argument("--fill", metavar="FILE", type=Path,
                       help="write the Markdown table into FILE between its steplog markers (e.g. docs/EXPERIMENT_LOG.md)")
    parser.add_argument("--metrics", type=_metric_list, metavar="M1,M2",
                        help="metrics to show, comma-separated (default: train_loss,val_loss)")
    parser.add_argument("--width", type=_positive_int, metavar="N",
                        help=f"fit the text table into N columns (default: the terminal's width, else {DEFAULT_WIDTH}, "
                             f"when printed; not fitted when written with -o)")


def _report(args: argparse.Namespace) -> int:
    from .report import fill_experiment_log, runs_markdown, runs_report_frame

    root = _root(args)
    if args.fill is not None:
        count = fill_experiment_log(args.fill, root, args.metrics)
        print(f"wrote a table of {count} run(s) from {root} into {args.fill}")
        return 0
    if args.markdown:
        text = runs_markdown(root, args.metrics)
    else:
        frame = runs_report_frame(root, args.metrics)
        text = _report_text(frame, root, None if args.output is not None and not args.width else _width(args)) \
            if frame.height else f"(no runs in {root})"
    if args.output is None:
        print(text)
    else:
        _write_text(args.output, text + "\n")
        print(f"wrote the report of {root} to {args.output}")
    return 0


def _report_text(frame: Any, root: Path, width: int | None) -> str:
    """The report as aligned text (ids shortened as ``ls`` shows them), fitted into ``width``: names
    and notes are cut in the middle, then the config, start and notes columns are left out."""
    import polars as pl

    from .tables import SOFT_TRUNCATED_WIDTH, format_duration, text_table

    shown = frame.with_columns(pl.col("run_id").replace_strict(_short_ids(root), default=pl.col("run_id"))).rename(
        {"run_id": "id", "duration_s": "time"})
    config = [c for c in shown.columns if c.startswith("config.")]
    return text_table(shown, width=width, significant=4, split_headers=True,
                      formats={"time": format_duration, "started": _local_minute}, right=["time"],
                      truncatable=["name", "notes"], droppable=[*reversed(config), "notes", "started"],
                      min_truncated=SOFT_TRUNCATED_WIDTH)


COMMANDS: list[Command] = [
    Command("ls", "list the runs, newest first: status, steps, time and the main metrics",
            "steplog ls --status finished --name 'lr_*'", _ls_arguments, _ls),
    Command("show", "everything about one run: config, metadata, status, segments, every metric's summary",
            "steplog show demo_lr_0.03", _show_arguments, _show),
    Command("compare", "runs side by side: the config keys that differ and the metric summaries",
            "steplog compare demo_lr_0.003 demo_lr_0.03 --metrics train_loss,val_loss", _compare_arguments, _compare),
    Command("best", "the run with the best value of a metric over its whole history",
            "steplog best val_loss", _best_arguments, _best),
    Command("compact", "fold finished runs into Parquet + a JSON sidecar (progress on stderr)",
            "steplog compact --dry-run", _compact_arguments, _compact),
    Command("export", "write a run's history to CSV or Parquet",
            "steplog export demo_lr_0.03 -o demo.csv", _export_arguments, _export),
    Command("tail", "print a run's last steps; with -f, follow it while it runs",
            "steplog tail demo_lr_0.03 -n 5 -f", _tail_arguments, _tail),
    Command("plot", "curves of several runs in one PNG (needs matplotlib: pip install 'steplog[plot]')",
            "steplog plot demo_lr_0.003 demo_lr_0.03 --metric train_loss --metric val_loss --smooth 20 -o curves.png",
            _plot_arguments, _plot),
    Command("demo", "train a small language model with a learning-rate sweep, logged by steplog (start here)",
            "steplog demo --quick --root /tmp/steplog-demo", _demo_arguments, _demo),
    Command("report", "a table of the runs (text or Markdown), or fill it into docs/EXPERIMENT_LOG.md",
            "steplog report --markdown -o runs.md", _report_arguments, _report),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command in ``COMMANDS``.

    Example:
        >>> build_parser().parse_args(["demo", "--quick"]).quick
        True
    """
    parser = argparse.ArgumentParser(prog="steplog", description="A local, crash-safe experiment tracker.")
    parser.add_argument("--version", action="version", version=f"steplog {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help,
                                    epilog=f"example:\n  {command.example}\n",
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        command.configure(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 error, 2 usage).

    Errors are one line on stderr (``steplog: error: ...``); set ``STEPLOG_DEBUG=1`` for the traceback.

    Example:
        >>> main(["ls", "--root", "/no/such/root"])
        1
        >>> main(["no-such-command"])
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help/--version (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    if getattr(args, "handler", None) is None:
        parser.print_usage(sys.stderr)
        print("steplog: error: name a command; see steplog --help", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("steplog: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (steplog report | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("STEPLOG_DEBUG"):
            raise
        text = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.strerror and exc.filename \
            else (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
        message = " ".join(text.split()) or type(exc).__name__
        print(f"steplog: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
