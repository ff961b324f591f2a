"""The commands that act on runs or files: ``compact``, ``export``, ``tail``, ``plot``, ``demo`` and
``report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import (
    DEFAULT_WIDTH,
    CommandError,
    _add_root,
    _add_width,
    _local_minute,
    _metric_list,
    _positive_int,
    _root,
    _short_ids,
    _width,
    _write_text,
)

# --- compact ----------------------------------------------------------------------------------


def _compact_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to compact (default: every run under --root)")
    _add_root(parser)
    parser.add_argument("--dry-run", action="store_true", help="list what would be compacted and what skipped, and why")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild the compacted files of compacted runs from their archived events (a damaged metrics.parquet)",
    )
    parser.description = (
        f"{parser.description}\n\nexit code 1 when a run could not be compacted (files not "
        f"writable, no start event); running runs are skipped, which is not an error"
    )


def _compact(args: argparse.Namespace) -> int:
    from ..compact import compact_each, is_failure, plan_compaction
    from ..store import run_name

    root = _root(args)
    if not args.dry_run:
        outcomes = compact_each(root, args.runs or None, rebuild=args.rebuild)  # progress and a summary line on stderr
        failed = [run_dir.name for run_dir, outcome, detail in outcomes if is_failure(outcome, detail)]
        if failed:
            raise CommandError(
                f"{len(failed)} run(s) could not be compacted: {', '.join(failed)} (the reasons are above)"
            )
        return 0
    plan = plan_compaction(root, args.runs or None)
    short = _short_ids(root)
    labels = {"compact": "would compact", "current": "up to date", "skipped": "would skip"}
    for run_dir, action, why in plan:
        print(f"{labels[action]:<13}  {short.get(run_dir.name, run_dir.name)}  {run_name(run_dir) or '?'}: {why}")
    counts = {action: sum(p[1] == action for p in plan) for action in labels}
    print(
        f"dry run: {counts['compact']} to compact, {counts['current']} already compacted, "
        f"{counts['skipped']} to skip; nothing was changed"
    )
    return 0


# --- export -----------------------------------------------------------------------------------


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run id, a unique id prefix, or a name (its latest run)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        metavar="FILE",
        help="where to write the history: FILE.csv, FILE.parquet or FILE.pq",
    )
    _add_root(parser)
    parser.add_argument(
        "--all-segments",
        action="store_true",
        help="also the rows a resume superseded, with segment and superseded columns",
    )


def _export(args: argparse.Namespace) -> int:
    from ..query import export
    from ..roots import resolve_run, run_name

    root = _root(args, url=True)
    run_dir = resolve_run(args.run, root)
    path = export(run_dir, args.output, root=root, all_segments=args.all_segments)
    print(f"wrote the history of {run_name(run_dir)} ({run_dir.name}) to {path}")
    return 0


# --- tail -------------------------------------------------------------------------------------


def _tail_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run id, a unique id prefix, or a name (its latest run)")
    _add_root(parser)
    parser.add_argument(
        "-n", "--lines", type=int, default=10, metavar="N", help="how many of the last steps to print (default: 10)"
    )
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing steps as the run logs them, until it finishes (Ctrl-C stops)",
    )
    parser.add_argument("--poll", type=float, default=0.5, metavar="SECONDS", help=argparse.SUPPRESS)
    _add_width(parser)


def _tail(args: argparse.Namespace) -> int:
    import polars as pl

    from .. import format as fmt
    from ..query import history
    from ..reader import follow
    from ..runstatus import current_status
    from ..store import resolve_run

    run_dir = resolve_run(args.run, _root(args))
    live = args.follow and current_status(run_dir) == fmt.RUNNING
    try:
        events = follow(run_dir, poll_interval=args.poll, from_start=False) if live else None
        rows = history(run_dir, all_segments=True)
        segment = rows["segment"].max() if rows.height else 0
        current = rows.filter(~pl.col("superseded")).drop("segment", "superseded")
        last_step = current["step"].max() if current.height else None
        for row in current.tail(max(args.lines, 0)).iter_rows(named=True):
            print(_step_line(row, _width(args)), flush=True)
        if args.follow and not live:
            print(f"(run {run_dir.name} is {current_status(run_dir)}: nothing to follow)", file=sys.stderr)
        for event in events or ():
            if event["segment"] == segment and last_step is not None and event["step"] <= last_step:
                continue  # printed above from the history
            print(_step_line(event, _width(args)), flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def _step_line(row: dict[str, Any], width: int = 10**6) -> str:
    """``step 12  3.4s  loss=0.5  lr=0.001`` (metrics not logged at this step left out), wrapped
    to ``width`` columns: continuation lines are indented, and an item wider than a line is cut.

    Example:
        >>> print(_step_line({"step": 3, "wallclock": 1.5, "train_loss": 0.25, "val_loss": 0.5, "lr": None}, 24))
        step 3  1.5s
            train_loss=0.25
            val_loss=0.5
    """
    from ..tables import display_width, escape_control, format_duration, format_value, truncate

    items = [
        f"{escape_control(k)}={format_value(v, 4)}"
        for k, v in row.items()
        if k not in ("step", "wallclock", "time", "segment") and v is not None
    ]
    lines = [f"step {row['step']}  {format_duration(row.get('wallclock'))}"]
    for item in items:
        if display_width(lines[-1]) + 2 + display_width(item) <= width:
            lines[-1] += "  " + item
        else:
            lines.append("    " + truncate(item, max(width - 4, 8)))
    return "\n".join(line.rstrip() for line in lines)


# --- plot -------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    from ..plot import MIN_SIZE

    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size; write WIDTHxHEIGHT in pixels, e.g. 1200x800"
        ) from None
    if width < MIN_SIZE or height < MIN_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is too small for a plot; use at least {MIN_SIZE}x{MIN_SIZE} pixels")
    return width, height


def _plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="runs to plot (ids, id prefixes or names)")
    _add_root(parser)
    parser.add_argument(
        "--metric",
        action="append",
        metavar="M",
        help="a metric to plot, one panel each; repeat for more (default: train_loss)",
    )
    parser.add_argument(
        "--x",
        choices=("step", "wallclock", "time"),
        default="step",
        help="the x axis: step, wallclock (seconds of training) or time (default: step)",
    )
    parser.add_argument("--smooth", type=_positive_int, metavar="N", help="draw a rolling mean over N points")
    parser.add_argument("--logy", action="store_true", help="a logarithmic y axis")
    parser.add_argument(
        "--size", type=_size, default=(1200, 800), metavar="WxH", help="the PNG size in pixels (default: 1200x800)"
    )
    parser.add_argument("--title", help="a title over the panels")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("curves.png"),
        metavar="FILE.png",
        help="where to save the PNG (default: curves.png)",
    )


def _plot(args: argparse.Namespace) -> int:
    from ..plot import plot_curves

    metrics = args.metric or ["train_loss"]
    path = plot_curves(
        args.runs,
        metrics,
        root=_root(args, url=True),
        x=args.x,
        smooth=args.smooth,
        logy=args.logy,
        output=args.output,
        size=args.size,
        title=args.title,
    )
    print(f"wrote {path} ({args.size[0]}x{args.size[1]}: {', '.join(metrics)} of {len(args.runs)} run(s) by {args.x})")
    return 0


# --- demo -------------------------------------------------------------------------------------


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of about half a minute")


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.root, quick=args.quick)
    return 0


# --- report -----------------------------------------------------------------------------------


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table (default: aligned text)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write the report to FILE instead of printing it"
    )
    where.add_argument(
        "--fill",
        metavar="FILE",
        type=Path,
        help="write the Markdown table into FILE between its steplog markers (e.g. docs/EXPERIMENT_LOG.md)",
    )
    parser.add_argument(
        "--metrics",
        type=_metric_list,
        metavar="M1,M2",
        help="metrics to show, comma-separated (default: train_loss,val_loss)",
    )
    parser.add_argument(
        "--width",
        type=_positive_int,
        metavar="N",
        help=f"fit the text table into N columns (default: the terminal's width, else {DEFAULT_WIDTH}, "
        f"when printed; not fitted when written with -o)",
    )


def _report(args: argparse.Namespace) -> int:
    from ..report import fill_experiment_log, runs_markdown, runs_report_frame

    root = _root(args)
    if args.fill is not None:
        count = fill_experiment_log(args.fill, root, args.metrics)
        print(f"wrote a table of {count} run(s) from {root} into {args.fill}")
        return 0
    if args.markdown:
        text = runs_markdown(root, args.metrics)
    else:
        frame = runs_report_frame(root, args.metrics)
        text = (
            _report_text(frame, root, None if args.output is not None and not args.width else _width(args))
            if frame.height
            else f"(no runs in {root})"
        )
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

    from ..tables import SOFT_TRUNCATED_WIDTH, format_duration, text_table

    shown = frame.with_columns(pl.col("run_id").replace_strict(_short_ids(root), default=pl.col("run_id"))).rename(
        {"run_id": "id", "duration_s": "time"}
    )
    config = [c for c in shown.columns if c.startswith("config.")]
    return text_table(
        shown,
        width=width,
        significant=4,
        split_headers=True,
        formats={"time": format_duration, "started": _local_minute},
        right=["time"],
        truncatable=["name", "notes"],
        droppable=[*reversed(config), "notes", "started"],
        min_truncated=SOFT_TRUNCATED_WIDTH,
    )
