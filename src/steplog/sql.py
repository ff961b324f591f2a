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

from . import catalog, roots
from . import format as fmt
from .storage import LocalStorage, Storage, open_root

#: The columns of the metrics table before the metrics, as ``scan`` has them.
_BASE: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "name": pl.String(),
    "rank": pl.Int32(),
    "step": pl.Int64(),
    "wallclock": pl.Float64(),
    "time": pl.Datetime("us", "UTC"),
}


def tables(
    root: str | os.PathLike = "experiment_logs", *, storage_options: dict[str, Any] | None = None
) -> dict[str, pl.LazyFrame]:
    """``{"runs": ..., "metrics": ...}`` of a root as lazy frames (what ``sql`` queries). On an
    object store both cover the compacted runs and the live ones ``steplog sync`` keeps there.

    Example:
        >>> import tempfile
        >>> sorted(tables(tempfile.mkdtemp()))
        ['metrics', 'runs']
    """
    storage = open_root(root, storage_options)
    if isinstance(storage, LocalStorage):
        from .scanning import scan

        return {"runs": catalog.runs_table(root).lazy(), "metrics": scan(root)}
    index = roots.remote_index(storage)
    return {"runs": index.table.sort("run_id").lazy(), "metrics": _remote_metrics(storage, index)}


def _remote_metrics(storage: Storage, index: roots.RemoteIndex) -> pl.LazyFrame:
    """The current history rows of every run of an object-store root, as a local root's ``scan``
    gives them: one Polars scan of the compacted runs' ``metrics.parquet`` files (projections and
    predicates pushed down), then each live run's part objects read as one event stream (a torn
    last line forgiven), with the union of the metric columns."""
    from .scanning import scan_parts

    compacted = [d for d in index.dirs.values() if d.compacted]
    live = scan_parts([d for d in index.dirs.values() if not d.compacted])  # loaded by remote_index
    schema = dict(_BASE)
    for column in index.table.columns:
        if column.startswith("summary."):
            schema.setdefault(column[len("summary.") : column.rfind(".")], pl.Float64())
    for part in live:
        schema.update((m, pl.Float64()) for m in part.metrics if m not in schema)
    frames = [part.aligned(pl.Schema(schema)) for part in live]
    if compacted:
        frames.insert(0, _compacted_metrics(storage, compacted, index.table, schema))
    return pl.concat(frames, how="vertical") if frames else pl.LazyFrame(schema=schema)


def _compacted_metrics(
    storage: Storage, run_dirs: list[roots.RemoteRunDir], runs: pl.DataFrame, schema: dict[str, pl.DataType]
) -> pl.LazyFrame:
    """One Parquet scan of the compacted runs' files, with ``schema``'s columns (null where a
    run did not log a metric) and each run's name (a file of an old layout may have none)."""
    options = storage.polars_options()
    first = pl.scan_parquet(run_dirs[0] / fmt.PARQUET_FILE, storage_options=options).collect_schema()
    wide = {**dict(first), **{c: t for c, t in schema.items() if c not in first}}
    frame = pl.scan_parquet(
        [d / fmt.PARQUET_FILE for d in run_dirs], storage_options=options, schema=wide, missing_columns="insert"
    ).filter(~pl.col("superseded"))
    if "name" not in first:
        frame = frame.drop("name", strict=False).join(runs.lazy().select("run_id", "name"), on="run_id", how="left")
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


def sql(
    query: str, root: str | os.PathLike = "experiment_logs", *, storage_options: dict[str, Any] | None = None
) -> pl.DataFrame:
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
    except (
        pl.exceptions.SQLInterfaceError,
        pl.exceptions.SQLSyntaxError,
        pl.exceptions.ColumnNotFoundError,
        pl.exceptions.InvalidOperationError,
        pl.exceptions.SchemaError,
    ) as exc:
        first = str(exc).split("\n")[0]
        raise ValueError(f'SQL error: {first} (tables: runs, metrics; quote dotted names: "config.lr")') from None
    except (pl.exceptions.ComputeError, OSError) as exc:  # a damaged metrics.parquet: name it
        from .scanning import damaged_file_error
        from .store import run_dirs

        damaged = damaged_file_error(run_dirs(root), exc) if storage_options is None else None
        if damaged is None:
            raise
        raise damaged from exc


# --- the CLI command (registered by steplog.cli) -----------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``steplog sql``.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["SELECT 1", "--json"]).format
        'json'
    """
    parser.add_argument(
        "query",
        help="SQL over the tables runs and metrics, e.g. "
        '"SELECT name, min(val_loss) AS best FROM metrics GROUP BY name ORDER BY best"',
    )
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

        print(
            text_table(
                frame,
                width=shutil.get_terminal_size().columns,
                truncatable=[c for c, t in frame.schema.items() if t == pl.String],
            )
        )
    return 0
