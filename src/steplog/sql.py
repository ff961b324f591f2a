"""SQL over a root with Polars' own SQL engine: ``steplog.sql(query, root=...)``.

Two tables:

* ``runs``: one row per run (``catalog.runs_table``): ``run_id``, ``name``, ``status``,
  ``start_time``, ``end_time``, ``duration_s``, ``num_steps``, ``last_step``, ``segments``,
  ``error``, ``notes``, ``config.<key>`` and ``summary.<metric>.<figure>`` columns. Names with
  dots are quoted in SQL: ``"config.lr"``.
* ``metrics``: every run's history rows (``run_id``, ``name``, ``step``, ``wallclock``, ``time``,
  one column per metric), lazily scanned: only the columns and rows a query needs are read.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> for lr in (0.1, 0.01):
    ...     with steplog.init(name=f"lr{lr}", config={"lr": lr}, root=root) as run:
    ...         run.log({"val_loss": 1.0 + lr}); run.log({"val_loss": 0.5 + lr})
    >>> sql('SELECT name, min(val_loss) AS best FROM metrics GROUP BY name ORDER BY best', root=root).rows()
    [('lr0.01', 0.51), ('lr0.1', 0.6)]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import polars as pl

from . import catalog
from .storage import open_root

_HISTORY_ONLY = ("segment", "superseded")


def tables(root: str | os.PathLike = "experiment_logs", *,
           storage_options: dict[str, Any] | None = None) -> dict[str, pl.LazyFrame]:
    """``{"runs": ..., "metrics": ...}`` of a root as lazy frames (what ``sql`` queries).

    Example:
        >>> import tempfile
        >>> sorted(tables(tempfile.mkdtemp()))
        ['metrics', 'runs']
    """
    runs = catalog.runs_table(root, storage_options=storage_options)
    storage = open_root(root, storage_options)
    if storage.polars_options() is None:
        from .scanning import scan

        metrics = scan(root)
    else:
        metrics = _remote_metrics(storage, runs)
    return {"runs": runs.lazy(), "metrics": metrics}


def _remote_metrics(storage: Any, runs: pl.DataFrame) -> pl.LazyFrame:
    """The current history rows of every compacted run of an object-store root: one Polars scan
    of ``<root>/*/metrics.parquet`` (projections and predicates pushed down), with the union of
    the metric columns the catalog knows of, and each run's name."""
    ids = runs["run_id"].to_list()
    if not ids:
        return pl.LazyFrame(schema={"run_id": pl.String, "name": pl.String, "step": pl.Int64})
    options = storage.polars_options()
    first = pl.scan_parquet(storage.uri(f"{ids[0]}/metrics.parquet"), storage_options=options).collect_schema()
    schema = dict(first)
    for column in runs.columns:
        if column.startswith("summary."):
            schema.setdefault(column[len("summary."):column.rfind(".")], pl.Float64())
    frame = pl.scan_parquet(storage.uri("*/metrics.parquet"), storage_options=options, schema=schema,
                            missing_columns="insert")
    names = runs.lazy().select("run_id", "name")
    frame = frame.filter(~pl.col("superseded")).drop(*_HISTORY_ONLY)
    if "name" not in schema:
        frame = frame.join(names, on="run_id", how="left").select("run_id", "name", pl.all().exclude("run_id", "name"))
    return frame


def sql(query: str, root: str | os.PathLike = "experiment_logs", *,
        storage_options: dict[str, Any] | None = None) -> pl.DataFrame:
    """Run a SQL query over the tables ``runs`` and ``metrics`` of a root (Polars' SQL dialect).

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", config={"lr": 0.1}, root=root).finish()
        >>> sql('SELECT name, "config.lr" FROM runs', root=root).rows()
        [('a', 0.1)]
        >>> sql("SELECT nope FROM runs", root=root)
        Traceback (most recent call last):
        ...
        ValueError: SQL error: ...
    """
    context = pl.SQLContext(tables(root, storage_options=storage_options))
    try:
        return context.execute(query, eager=True)
    except (pl.exceptions.SQLInterfaceError, pl.exceptions.SQLSyntaxError, pl.exceptions.ColumnNotFoundError,
            pl.exceptions.InvalidOperationError, pl.exceptions.SchemaError) as exc:
        first = str(exc).split("\n")[0]
        raise ValueError(f"SQL error: {first} (tables: runs, metrics; quote dotted names: \"config.lr\")") from None


# --- the CLI command (registered by steplog.cli) -----------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``steplog sql``.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["SELECT 1", "--json"]).format
        'json'
    """
    parser.add_argument("query", help="SQL over the tables runs and metrics, e.g. "
                                      "\"SELECT name, min(val_loss) AS best FROM metrics GROUP BY name ORDER BY best\"")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", dest="format", action="store_const", const="json", help="JSON rows (one array)")
    out.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV with a header")
    parser.set_defaults(format="table")


def run(args: argparse.Namespace) -> int:
    """Run ``steplog sql``: prints the result (a fitted table, ``--json`` or ``--csv``). A SQL error
    raises ValueError with the engine's message, which the command line prints as one line (exit 1).

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp(); steplog.init(name="a", root=root).finish()
        >>> run(argparse.Namespace(query="SELECT name, status FROM runs", format="csv", root=root))
        name,status
        a,finished
        0
    """
    frame = sql(args.query, args.root)
    if args.format == "json":
        print(frame.write_json())
    elif args.format == "csv":
        print(frame.write_csv(), end="")
    else:
        import shutil

        from .tables import text_table

        print(text_table(frame, width=shutil.get_terminal_size().columns,
                         truncatable=[c for c, t in frame.schema.items() if t == pl.String]))
    return 0
