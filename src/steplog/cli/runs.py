"""The commands that look at runs: ``ls``, ``show``, ``compare`` and ``best``."""

from __future__ import annotations

import argparse
import fnmatch
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .common import (
    MAIN_METRICS,
    STATUSES,
    _add_json,
    _add_root,
    _add_width,
    _local_minute,
    _local_second,
    _metric_list,
    _print_json,
    _root,
    _short_ids,
    _width,
)

# --- ls ---------------------------------------------------------------------------------------


def _ls_arguments(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--status", choices=STATUSES, help="only runs with this status")
    parser.add_argument(
        "--name", metavar="GLOB", help="only runs whose name matches GLOB (shell pattern: lr_*, *base*)"
    )
    parser.add_argument(
        "--metrics",
        type=_metric_list,
        metavar="M1,M2",
        help="the metrics to show (default: the two most runs logged, losses first)",
    )
    _add_json(parser)
    _add_width(parser)


def _ls(args: argparse.Namespace) -> int:
    import polars as pl

    from ..query import check_metrics
    from ..runtable import runs
    from ..tables import SOFT_TRUNCATED_WIDTH, format_duration, text_table

    root = _root(args, url=True)
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
    print(
        text_table(
            shown,
            width=_width(args),
            significant=4,
            split_headers=True,
            formats={"time": format_duration, "started": _local_minute},
            right=["time"],
            truncatable=["name"],
            droppable=["started", *(f"{m}.last" for m in reversed(chosen)), "time"],
            min_truncated=SOFT_TRUNCATED_WIDTH,
        )
    )
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
    from ..query import run_info
    from ..runtable import flatten_config

    info = run_info(args.run, root=_root(args, url=True))
    if args.json:
        _print_json(info)
        return 0
    width = _width(args)
    meta = dict(info["meta"])
    if isinstance(meta.get("argv"), list):
        meta["argv"] = " ".join(map(str, meta["argv"]))
    first = [k for k in ("git_commit", "git_dirty", "host", "argv") if k in meta]
    lines = _section("run", _run_facts(info), width)
    lines += ["", *_section("metadata", {k: meta[k] for k in [*first, *(k for k in meta if k not in first)]}, width)]
    lines += ["", *_section("config", flatten_config(info["config"], prefix=""), width)]
    if info["segments"]:
        lines += ["", "segments:", _segments_table(info["segments"], width)]
    if info.get("ranks"):
        lines += ["", f"ranks (world size {info['world_size']}):", _ranks_table(info["ranks"], width)]
    summary = info["summary"]
    lines += ["", "metrics:", _metrics_table(summary, width)] if summary else ["", "metrics: none logged"]
    lines += _system_lines(Path(info["dir"]))
    print("\n".join(lines))
    return 0


def _system_lines(run_dir: Path) -> list[str]:
    """The summary of the run's system metrics (``init(system_metrics=True)``), if it recorded any."""
    from ..system_read import read_system, summary_lines

    lines = summary_lines(read_system(run_dir))
    return ["", *lines] if lines else []


def _section(title: str, pairs: dict[str, Any], width: int) -> list[str]:
    """``title:`` then one aligned ``key  value`` line per pair, each cut to ``width``."""
    from ..tables import format_value, truncate

    if not pairs:
        return [f"{title}: none"]
    pad = max(len(k) for k in pairs)
    return [f"{title}:", *(truncate(f"  {k:<{pad}}  {format_value(v, 6)}", width) for k, v in pairs.items())]


def _run_facts(info: dict[str, Any]) -> dict[str, Any]:
    from ..tables import format_duration

    steps = f"{info['num_steps']}" + (f" ({info['first_step']} to {info['last_step']})" if info["num_steps"] else "")
    return {
        "name": info["name"],
        "id": info["run_id"],
        "status": info["status"] + _crashed_ranks(info.get("crashed_ranks") or []),
        "started": _local_second(info["start_time"]),
        "duration": format_duration(info["duration_s"]),
        "steps": steps,
        "segments": len(info["segments"]),
        "error": info["error"],
        "notes": info["notes"],
        "stored": "compacted (metrics.parquet + run.json)" if info["compacted"] else "events.jsonl (not compacted)",
        "dir": info["dir"],
    }


def _segments_table(segments: list[dict[str, Any]], width: int) -> str:
    import polars as pl

    from ..tables import format_duration, text_table

    frame = pl.DataFrame(segments).select(
        "segment",
        "first_step",
        "last_step",
        "rows",
        pl.col("superseded_rows").alias("superseded"),
        pl.col("start_time").alias("started"),
        (pl.col("end_time") - pl.col("start_time")).dt.total_microseconds().truediv(1e6).alias("time"),
        "status",
    )
    return text_table(frame, width=width, formats={"time": format_duration, "started": _local_minute}, right=["time"])


def _crashed_ranks(crashed: list[int]) -> str:
    if not crashed:
        return ""
    return f" (rank{'s' if len(crashed) > 1 else ''} {', '.join(map(str, crashed))} died without finishing)"


def _ranks_table(ranks: list[dict[str, Any]], width: int) -> str:
    """One line per rank: where it ran, its status and how far it got."""
    import polars as pl

    from ..tables import text_table

    columns = ["rank", "status", "host", "local_rank", "pid", "device", "restart", "steps", "last_step"]
    frame = pl.DataFrame([{k: f.get(k) for k in columns} for f in ranks], strict=False)
    return text_table(frame, width=width)


def _metrics_table(summary: dict[str, dict[str, Any]], width: int) -> str:
    import polars as pl

    from ..summaries import SUMMARY_FIELDS, SUMMARY_TYPES
    from ..tables import text_table

    figures = pl.DataFrame(
        [{"metric": m, **{f: s.get(f) for f in SUMMARY_FIELDS}} for m, s in summary.items()],
        schema={"metric": pl.String, **SUMMARY_TYPES},
    )
    figures = figures.rename({"nan_count": "nans", "step_of_min": "min_at", "step_of_max": "max_at"})
    order = ("metric", "count", "nans", "last", "min", "min_at", "max", "max_at", "first", "mean", "std")
    figures = figures.select(order)
    return text_table(figures, width=width, significant=4)


# --- compare ----------------------------------------------------------------------------------


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN", help="runs to compare (default: every run under --root)")
    _add_root(parser)
    parser.add_argument(
        "--metrics",
        type=_metric_list,
        metavar="M1,M2",
        help="the metrics to show (default: those named like a loss, an accuracy or a perplexity, else all)",
    )
    parser.add_argument(
        "--all", action="store_true", dest="show_all", help="show every metric, and rows that are the same in every run"
    )
    _add_json(parser)
    _add_width(parser)


#: Words of a metric name that make it worth comparing by default (``steplog compare`` on the command line).
_COMPARED_WORDS = (
    "loss",
    "nll",
    "acc",
    "accuracy",
    "ppl",
    "perplexity",
    "error",
    "err",
    "f1",
    "bleu",
    "rouge",
    "auc",
    "score",
    "reward",
    "return",
    "bpb",
    "bpc",
)


def comparison_columns(table: Any, names: list[str] | None = None) -> list[str]:
    """The columns of a ``steplog.compare`` table worth showing side by side on the command line:
    the metrics named like a loss, an accuracy or a perplexity (all metrics when none is), and only
    the columns that differ between the runs; a config value equal to the run's name is left out.

    Example:
        >>> import polars as pl
        >>> table = pl.DataFrame({"name": ["a", "b"], "config.lr": [0.1, 0.2], "config.experiment_name": ["a", "b"],
        ...                       "config.seed": [1, 1], "val_loss.best": [0.5, 0.4], "lr.best": [0.1, 0.2],
        ...                       "gradient_step.best": [0.0, 0.0]})
        >>> comparison_columns(table)
        ['config.lr', 'val_loss.best']
    """
    metrics = [c for c in table.columns if "." in c and not c.startswith("config.")]
    liked = [c for c in metrics if _looks_compared(c.rsplit(".", 1)[0])]
    keep = [c for c in table.columns if c.startswith("config.")] + (liked or metrics)
    if table.height < 2:
        return keep
    run_names = [str(n) for n in table["name"].to_list()] if "name" in table.columns else []
    return [
        c
        for c in keep
        if table[c].n_unique() > 1
        and not (c.startswith("config.") and [str(v) for v in table[c].to_list()] == run_names)
    ]


def _looks_compared(metric: str) -> bool:
    words = [w for w in re.split(r"[^a-z0-9]+", metric.lower()) if w]
    return any(w in _COMPARED_WORDS or w.startswith(("top", "acc")) and "acc" in w for w in words)


def _compare(args: argparse.Namespace) -> int:

    from ..runtable import compare
    from ..tables import SOFT_TRUNCATED_WIDTH, formatted, text_table

    root = _root(args, url=True)
    table = compare(args.runs or None, metrics=args.metrics, root=root, mode="auto")  # unknown metrics raise
    if args.json:
        _print_json(table.to_dicts())
        return 0
    if table.height == 0:
        print(f"(no runs in {root})")
        return 0
    if not args.show_all and args.metrics is None:
        table = table.select("name", "run_id", *comparison_columns(table))
    short = _short_ids(root)
    names = table["name"].to_list()
    labels = [
        name if names.count(name) == 1 else f"{name} {short.get(run_id, run_id)}"
        for name, run_id in zip(names, table["run_id"])
    ]
    cells = formatted(table.drop("name", "run_id"), significant=4)
    side_by_side = cells.transpose(include_header=True, header_name="", column_names=labels)
    differing = sum(c.startswith("config.") for c in table.columns)
    print(
        text_table(
            side_by_side, width=_width(args), truncatable=labels, right=labels, min_truncated=SOFT_TRUNCATED_WIDTH
        )
    )
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
    from ..query import best
    from ..tables import format_value

    mode = "max" if args.max else "min"
    winner = best(args.metric, mode, root=_root(args, url=True))
    if args.json:
        _print_json({"metric": args.metric, "mode": mode, **winner})
        return 0
    print(
        f"best {args.metric} ({mode}): {format_value(winner['value'], 4)} at step {winner['step']}, "
        f"run {winner['name']} ({winner['run_id']})"
    )
    return 0
