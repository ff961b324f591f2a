"""The runs table: ``runs()`` (one row per run) and ``compare()`` (the runs side by side), both
built by one function, ``comparison_table``, from ``steplog.model`` records. The seed API's
``ExperimentAnalyzer.comparison_frame`` and ``steplog report`` call ``runs()`` and only choose columns.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> for lr in (0.1, 0.2):
    ...     with steplog.init(name=f"lr{lr}", config={"lr": lr}, root=root) as run:
    ...         run.log({"loss": lr})
    >>> runs(root, metrics="all").select("name", "config.lr", "loss.best").rows()
    [('lr0.1', 0.1, 0.1), ('lr0.2', 0.2, 0.2)]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import polars as pl

from . import roots
from .model import RunRecord, load_record
from .query import check_metrics, check_mode, loaded_runs, root_keyword_only, utc
from .summaries import SUMMARY_FIELDS, SUMMARY_TYPES, MetricSummary

#: The columns of ``runs()`` before the config columns, with their types.
RUN_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "name": pl.String(),
    "status": pl.String(),
    "start_time": pl.Datetime("us", "UTC"),
    "end_time": pl.Datetime("us", "UTC"),
    "duration_s": pl.Float64(),
    "num_steps": pl.Int64(),
    "last_step": pl.Int64(),
    "segments": pl.Int64(),
    "error": pl.String(),
    "notes": pl.String(),
    "world_size": pl.Int64(),
    "rank_status": pl.String(),
}


def runs(
    root: roots.Root = "experiment_logs",
    *,
    metrics: Iterable[str] | str | None = None,
    figures: Iterable[str] = ("best", "last"),
    mode: str | dict[str, str] = "min",
    runs: Iterable[str] | None = None,
) -> pl.DataFrame:
    """One row per run under ``root`` (or per run of ``runs``: ids, id prefixes or names), oldest
    first. Compacted runs are read from their sidecar only (their Parquet file is never opened).

    Columns: ``run_id``, ``name``, ``status`` (running / finished / failed / crashed),
    ``start_time``, ``end_time`` (UTC datetimes; the last event for a run that has not finished),
    ``duration_s``, ``num_steps``, ``last_step``, ``segments``, ``error``, ``notes``,
    ``world_size`` (1 for one process) and ``rank_status`` (a run of several processes: each
    rank's status, e.g. ``"finished: 0, 2-3; crashed: 1"``; else null), then the config flattened
    into ``config.<key>`` columns (nested keys joined with '.').

    ``metrics`` (a list, or ``"all"`` for every metric logged) adds ``<metric>.<figure>`` columns
    as ``compare`` does (``figures``, ``mode``), from the sidecar's summary for a compacted run.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", config={"model": {"d": 512}}, root=root).finish()
        >>> steplog.runs(root=root).select("name", "status", "config.model.d").rows()
        [('a', 'finished', 512)]
        >>> with steplog.init(name="b", root=root) as run:
        ...     run.log({"loss": 2.0}); run.log({"loss": 1.0}); run.log({"loss": 1.5})
        >>> steplog.runs(root=root, metrics="all").select("name", "loss.best", "loss.last").rows()
        [('a', None, None), ('b', 1.0, 1.5)]
        >>> steplog.runs(root=root, runs=["b"])["name"].to_list()
        ['b']
    """
    if metrics is None:
        return _table(root, runs)
    return _table(
        root, runs, metrics=None if metrics == "all" else metrics, figures=figures, mode=mode, with_figures=True
    )


@root_keyword_only(2, ("root",))
def compare(
    runs: Iterable[str] | None = None,
    metrics: Iterable[str] | None = None,
    *,
    root: roots.Root = "experiment_logs",
    figures: Iterable[str] = ("best", "last"),
    mode: str | dict[str, str] = "min",
) -> pl.DataFrame:
    """One row per run (all runs under ``root``, or ``runs``: ids, id prefixes or names): ``run_id``,
    ``name``, the ``config.<key>`` columns whose values differ between these runs (a key missing
    from some runs differs), then ``<metric>.<figure>`` for each metric (default: every metric
    logged) and figure. Figures: ``best`` (min or max by ``mode``, a string or a dict metric ->
    mode; default min; ``"auto"``: by the metric's name, see ``higher_is_better``), ``step_of_best``,
    and any of ``steplog.summaries.SUMMARY_FIELDS``.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> for lr in (0.1, 0.2):
        ...     with steplog.init(config={"lr": lr, "layers": 4}, root=root) as run:
        ...         run.log({"loss": 2.0}); run.log({"loss": lr * 10})
        >>> steplog.compare(root=root).drop("run_id", "name").rows()
        [(0.1, 1.0, 1.0), (0.2, 2.0, 2.0)]
        >>> steplog.compare(root=root).columns[2:]
        ['config.lr', 'loss.best', 'loss.last']
    """
    table = _table(root, runs, metrics=metrics, figures=figures, mode=mode, with_figures=True)
    figure_columns = [c for c in table.columns if c not in RUN_COLUMNS and not c.startswith("config.")]
    return table.select("run_id", "name", *differing_config(table), *figure_columns)


def _table(root: roots.Root, runs: Iterable[str] | str | None, **options: Any) -> pl.DataFrame:
    """``comparison_table`` of the runs of ``root``: from their records on a local root, from the
    catalog-shaped table (one request for the compacted runs) on an object-store root."""
    if roots.remote_storage(root) is None:
        return comparison_table(records_of(root, runs), root=root, **options)
    return catalog_comparison_table(roots.runs_frame(root, runs), root=root, **options)


def catalog_comparison_table(
    frame: pl.DataFrame,
    *,
    metrics: Iterable[str] | str | None = None,
    figures: Iterable[str] = ("best", "last"),
    mode: str | dict[str, str] = "min",
    root: roots.Root = "experiment_logs",
    with_figures: bool = False,
) -> pl.DataFrame:
    """``comparison_table`` of a catalog-shaped table (``steplog.catalog`` columns: the run
    columns, ``config.<key>``, ``summary.<metric>.<figure>``), built with Polars expressions.

    Example:
        >>> f = pl.DataFrame({"run_id": ["r"], "name": ["a"], "config.lr": [0.1], "summary.loss.count": [3],
        ...                   "summary.loss.min": [0.5]})
        >>> catalog_comparison_table(f, with_figures=True).select("name", "config.lr", "loss.best").rows()
        [('a', 0.1, 0.5)]
    """
    columns = [(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c) for c, t in RUN_COLUMNS.items()]
    present = {c for c in frame.columns if frame[c].null_count() < frame.height}  # rows of other runs left them
    table = frame.select(*columns, *(c for c in frame.columns if c.startswith("config.") and c in present))
    if not with_figures:
        return table
    figures = check_figures(figures)
    logged = [
        c[len("summary.") : -len(".count")]
        for c in frame.columns
        if c.startswith("summary.") and c.endswith(".count") and c in present
    ]
    added = []
    for metric, figure, field in _figure_fields(metrics, logged, figures, mode, root, check=frame.height > 0):
        source = f"summary.{metric}.{field}"
        value = pl.col(source) if source in frame.columns else pl.lit(None)
        added.append(value.cast(SUMMARY_TYPES[field]).alias(f"{metric}.{figure}"))
    return pl.concat([table, frame.select(added)], how="horizontal") if added else table


def records_of(root: roots.Root, runs: Iterable[str] | str | None = None) -> list[RunRecord]:
    """The record of each readable run under ``root`` (or of ``runs``), oldest first, one read each.

    Example:
        >>> records_of("/no/such/root")
        []
    """
    found = (load_record(run_dir, loaded) for run_dir, loaded in loaded_runs(root, runs))
    return [record for record in found if record is not None]


def comparison_table(
    records: list[RunRecord],
    *,
    metrics: Iterable[str] | str | None = None,
    figures: Iterable[str] = ("best", "last"),
    mode: str | dict[str, str] = "min",
    root: roots.Root = "experiment_logs",
    with_figures: bool = False,
) -> pl.DataFrame:
    """The one table of runs: ``RUN_COLUMNS``, the ``config.<key>`` columns, then (``with_figures``)
    ``<metric>.<figure>`` for each metric (``metrics``; None: every metric the runs logged, in order
    of first appearance) and figure: ``best``, ``step_of_best`` (by ``mode``: ``"min"``, ``"max"``,
    ``"auto"``, or a dict metric -> mode) or any of ``SUMMARY_FIELDS``. ``runs``, ``compare``,
    ``ExperimentAnalyzer.comparison_frame`` and ``steplog report`` choose their columns from it.
    A metric named that no run logged raises ValueError naming close names (``root`` in the message).

    Example:
        >>> comparison_table([]).columns[:3]
        ['run_id', 'name', 'status']
    """
    table = _records_frame(records)
    if not with_figures:
        return table
    figures = check_figures(figures)
    summaries = [record.summary for record in records]
    return table.with_columns(_figure_columns(summaries, metrics, figures, mode, root))


def check_figures(figures: Iterable[str]) -> list[str]:
    """``figures`` as a list, each checked: ``best``, ``step_of_best`` or one of ``SUMMARY_FIELDS``.

    Example:
        >>> check_figures(["best", "median"])
        Traceback (most recent call last):
        ...
        ValueError: unknown figure 'median'; choose from best, step_of_best, count, nan_count, min, max, mean, \
std, first, last, step_of_min, step_of_max
    """
    figures = list(figures)
    for figure in figures:
        if figure not in ("best", "step_of_best", *SUMMARY_FIELDS):
            raise ValueError(f"unknown figure {figure!r}; choose from best, step_of_best, {', '.join(SUMMARY_FIELDS)}")
    return figures


def _figure_columns(
    summaries: list[dict[str, MetricSummary]],
    metrics: Iterable[str] | str | None,
    figures: list[str],
    mode: str | dict[str, str],
    root: roots.Root,
) -> list[pl.Series]:
    names: dict[str, None] = {}
    for figures_of_run in summaries:
        names.update(dict.fromkeys(figures_of_run))
    columns = []
    for metric, figure, field in _figure_fields(metrics, list(names), figures, mode, root, check=bool(summaries)):
        values = [s[metric].figure(field) if metric in s else None for s in summaries]
        columns.append(pl.Series(f"{metric}.{figure}", values, dtype=SUMMARY_TYPES[field]))
    return columns


def _figure_fields(
    metrics: Iterable[str] | str | None,
    logged: list[str],
    figures: list[str],
    mode: str | dict[str, str],
    root: roots.Root,
    check: bool,
) -> list[tuple[str, str, str]]:
    """(metric, figure, summary field) of each figure column of a runs table, in order: ``metrics``
    (None: every ``logged`` one), each checked against ``logged`` when ``check``; ``best`` and
    ``step_of_best`` become the field of the metric's direction (``mode``)."""
    if metrics is None:
        metrics = logged
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        if check:
            check_metrics(metrics, logged, root)
    fields = []
    for metric in metrics:
        direction = check_mode(metric, mode.get(metric, "min") if isinstance(mode, dict) else mode)
        for figure in figures:
            fields.append(
                (metric, figure, {"best": direction, "step_of_best": f"step_of_{direction}"}.get(figure, figure))
            )
    return fields


def differing_config(table: pl.DataFrame) -> list[str]:
    """The ``config.<key>`` columns of a runs table whose values differ between its rows (a key
    missing from some runs differs): what ``compare`` shows.

    Example:
        >>> differing_config(pl.DataFrame({"name": ["a", "b"], "config.lr": [0.1, 0.2], "config.layers": [4, 4]}))
        ['config.lr']
    """
    return [c for c in table.columns if c.startswith("config.") and table[c].n_unique() > 1]


def run_row(record: RunRecord) -> dict[str, Any]:
    """The ``runs()`` row of a record (``RUN_COLUMNS``, with ``config`` not yet flattened).

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(name="x", root=tempfile.mkdtemp()); run.finish()
        >>> run_row(load_record(run.dir))["segments"]
        1
    """
    finish = record.finish
    return {
        "run_id": record.run_id,
        "name": record.name,
        "status": record.status,
        "start_time": utc(record.start_time),
        "end_time": utc(record.end_time),
        "duration_s": record.duration_s,
        "num_steps": record.num_steps,
        "last_step": record.last_step,
        "segments": len(record.segments),
        "error": finish.error_text if finish else None,
        "notes": finish.notes if finish else None,
        "config": record.config,
        "world_size": record.world_size,
        "rank_status": rank_status_text(record.ranks),
    }


def rank_status_text(ranks: tuple[dict[str, Any], ...]) -> str | None:
    """Each rank's status in a few words, e.g. ``"finished: 0, 2-3; crashed: 1"``; None for one process.

    Example:
        >>> rank_status_text(({"rank": 0, "status": "finished"}, {"rank": 1, "status": "crashed"},
        ...                   {"rank": 2, "status": "finished"}, {"rank": 3, "status": "finished"}))
        'finished: 0, 2-3; crashed: 1'
    """
    if not ranks:
        return None
    by_status: dict[str, list[int]] = {}
    for facts in ranks:
        by_status.setdefault(str(facts.get("status")), []).append(int(facts["rank"]))
    return "; ".join(f"{status}: {_spans(sorted(numbers))}" for status, numbers in by_status.items())


def _spans(numbers: list[int]) -> str:
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _records_frame(records: list[RunRecord]) -> pl.DataFrame:
    rows = [run_row(record) for record in records]
    base = pl.DataFrame([{k: r[k] for k in RUN_COLUMNS} for r in rows], schema=RUN_COLUMNS)
    flat = [flatten_config(r["config"]) for r in rows]
    keys: dict[str, None] = {}
    for row in flat:
        keys.update(dict.fromkeys(row))
    config_columns = [config_column(key, [row.get(key) for row in flat]) for key in keys]
    return base.with_columns(config_columns) if config_columns else base


# --- config columns ---------------------------------------------------------------------------


def flatten_config(config: dict[str, Any], prefix: str = "config.") -> dict[str, Any]:
    """Flatten nested dicts into ``{prefix + 'a.b': value}``; lists stay values.

    Example:
        >>> flatten_config({"model": {"d": 512, "heads": 8}, "lr": 0.1})
        {'config.model.d': 512, 'config.model.heads': 8, 'config.lr': 0.1}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_column(name: str, values: list[Any]) -> pl.Series:
    """One config column over several runs, typed by what the values share: Int64, Float64,
    Boolean or String; values of mixed kinds (or lists) become their JSON text.

    Example:
        >>> config_column("config.lr", [1, 0.5, None]).dtype
        Float64
    """
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds <= {int} and all(v is None or -(2**63) <= v < 2**63 for v in values):
        return pl.Series(name, values, dtype=pl.Int64)
    if kinds <= {int, float}:
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    if kinds <= {str}:
        return pl.Series(name, values, dtype=pl.String)
    texts = [None if v is None else (v if isinstance(v, str) else orjson.dumps(v).decode()) for v in values]
    return pl.Series(name, texts, dtype=pl.String)
