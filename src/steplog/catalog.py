"""The root catalog: one Parquet file, ``<root>/_catalog/runs.parquet``, one row per compacted run.

A row holds what ``steplog.runs()`` shows of a run (``run_id``, ``name``, ``status``, times,
steps, ``segments``, ``error``, ``notes``, the flattened ``config.<key>`` columns) and every
metric's summary as ``summary.<metric>.<figure>`` columns (the figures of
``compact.SUMMARY_FIELDS``), all taken from the run's sidecar, plus ``_sidecar_stamp``: the size
and modification stamp of the sidecar the row was built from.

The catalog is derived data and never trusted blindly: ``read`` lists the root (names and sizes
only), keeps the catalog rows whose sidecar stamp still matches, and reads the sidecar of every
compacted run the catalog misses or has stale; a missing or corrupt catalog file just means every
sidecar is read. Compaction and push call ``update``; ``rebuild`` (``steplog catalog --rebuild``)
writes it again from all sidecars. Two updates racing can only leave a row out or stale, which
``read`` notices, so no lock is needed.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="a", config={"lr": 0.1}, root=root) as run:
    ...     run.log({"loss": 1.0})
    >>> _ = steplog.compact(root, quiet=True); rebuild(root)
    1
    >>> read(root).table.select("name", "config.lr", "summary.loss.min").rows()
    [('a', 0.1, 1.0)]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl

from . import format as fmt
from .model import RunDir
from .storage import PARTS_DIR, LocalStorage, Storage, open_root
from .summaries import SUMMARY_FIELDS, SUMMARY_TYPES, decode_summary

#: Where the catalog lives, relative to the root.
CATALOG_FILE = "_catalog/runs.parquet"
_STAMP = "_sidecar_stamp"
_BASE = {
    "run_id": pl.String,
    "name": pl.String,
    "status": pl.String,
    "start_time": pl.Datetime("us", "UTC"),
    "end_time": pl.Datetime("us", "UTC"),
    "duration_s": pl.Float64,
    "num_steps": pl.Int64,
    "last_step": pl.Int64,
    "segments": pl.Int64,
    "error": pl.String,
    "notes": pl.String,
    "world_size": pl.Int64,
    "rank_status": pl.String,
}


@dataclass
class CatalogRead:
    """What ``read`` found: ``table`` (one row per compacted run, oldest first), ``live`` (ids of
    the runs that are not compacted, for the caller to read from their events, or on an object
    store from their part objects: ``storage.read_parts``), and how many rows
    came from the catalog file versus from sidecars."""

    table: pl.DataFrame
    live: list[str]
    from_catalog: int
    from_sidecars: int


def _root(root: str | os.PathLike | Storage, storage_options: dict[str, Any] | None) -> Storage:
    return root if isinstance(root, Storage) else open_root(root, storage_options)


def sidecar_row(sidecar: dict[str, Any]) -> dict[str, Any]:
    """A catalog row (flat dict) from a decoded sidecar (``sidecar.read_sidecar``).

    Example:
        >>> row = sidecar_row({"run_id": "r", "name": "a", "status": "finished", "start_time": 0.0,
        ...     "end_time": 1.0, "duration_s": 1.0, "num_steps": 2, "last_step": 1, "segments": [{}],
        ...     "config": {"m": {"d": 8}}, "summary": {"loss": {"min": 0.5}}})
        >>> row["config.m.d"], row["summary.loss.min"], row["segments"], str(row["end_time"])
        (8, 0.5, 1, '1970-01-01 00:00:01+00:00')
    """
    from .runtable import flatten_config, rank_status_text  # the run table's columns, as runs() makes them
    from .sidecar import sidecar_ranks

    finish = sidecar.get("finish") or {}
    error = finish.get("error")
    row = {
        "run_id": sidecar.get("run_id"),
        "name": sidecar.get("name"),
        "status": sidecar.get("status"),
        "start_time": _utc(sidecar.get("start_time")),
        "end_time": _utc(sidecar.get("end_time")),
        "duration_s": sidecar.get("duration_s"),
        "num_steps": sidecar.get("num_steps"),
        "last_step": sidecar.get("last_step"),
        "segments": len(sidecar.get("segments") or []),
        "error": f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else None,
        "notes": finish.get("notes"),
        "world_size": sidecar.get("world_size") or 1,
        "rank_status": rank_status_text(sidecar_ranks(sidecar)),
    }
    config = sidecar.get("config")
    row.update(flatten_config(config if isinstance(config, dict) else {}))
    for metric, figures in (sidecar.get("summary") or {}).items():
        values = figures if isinstance(figures, dict) else figures.to_dict()  # a MetricSummary when decoded
        for field in SUMMARY_FIELDS:
            row[f"summary.{metric}.{field}"] = values.get(field)
    return row


def rows_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Catalog rows as a frame: the run-table columns typed as ``runs()`` types them, config
    columns as ``query.config_column`` types them, summary figures Int64/Float64.

    Example:
        >>> rows_frame([{"run_id": "r", "config.lr": 1}, {"run_id": "s", "config.lr": 0.5}])["config.lr"].to_list()
        [1.0, 0.5]
    """
    from .runtable import config_column

    keys: dict[str, None] = dict.fromkeys(_BASE)
    for row in rows:
        keys.update(dict.fromkeys(row))
    columns = []
    for key in keys:
        values = [row.get(key) for row in rows]
        if key in _BASE:
            columns.append(pl.Series(key, values, dtype=_BASE[key]))  # type: ignore[arg-type]
        elif key.startswith("summary."):
            columns.append(pl.Series(key, values, dtype=SUMMARY_TYPES[key.rsplit(".", 1)[1]]))
        elif key == _STAMP:
            columns.append(pl.Series(key, values, dtype=pl.String))
        else:
            columns.append(config_column(key, values))
    return pl.DataFrame(columns)


def _sidecar_rows(storage: Storage, stamps: dict[str, str]) -> list[dict[str, Any]]:
    """Catalog rows of the runs ``stamps`` names ({run id: sidecar stamp}), read in parallel."""

    def one(item: tuple[str, str]) -> dict[str, Any] | None:
        run_id, stamp = item
        try:
            sidecar = orjson.loads(storage.read(f"{run_id}/{fmt.SIDECAR_FILE}"))
            sidecar["summary"] = decode_summary(sidecar["summary"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # being rewritten, or damaged: its run stays out until it is readable
        return {**sidecar_row(sidecar), _STAMP: stamp}

    items = sorted(stamps.items())
    if len(items) < 16:
        found = [one(item) for item in items]
    else:
        with ThreadPoolExecutor(16) as pool:
            found = list(pool.map(one, items))
    return [row for row in found if row is not None]


def _compacted(files: dict[str, dict[str, str]]) -> dict[str, str]:
    """{run id: sidecar stamp} of the compacted runs of a ``run_files`` listing."""
    return {
        run_id: names[fmt.SIDECAR_FILE]
        for run_id, names in files.items()
        if fmt.SIDECAR_FILE in names and fmt.PARQUET_FILE in names and fmt.EVENTS_FILE not in names
    }


def _load_catalog(storage: Storage) -> pl.DataFrame | None:
    try:
        frame = pl.read_parquet(io.BytesIO(storage.read(CATALOG_FILE)))
    except FileNotFoundError:
        return None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:  # damaged: read every sidecar (slower, right)
        print(
            f"steplog: the catalog {storage.uri(CATALOG_FILE)} is unreadable ({exc}); reading sidecars; "
            f"`steplog catalog --rebuild` rewrites it",
            file=sys.stderr,
        )
        return None
    return frame if {"run_id", _STAMP} <= set(frame.columns) else None


def _write(storage: Storage, frame: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.sort("run_id").write_parquet(buffer, compression="zstd", statistics=True)
    storage.put(CATALOG_FILE, buffer.getvalue())


def rebuild(
    root: str | os.PathLike | Storage = "experiment_logs", *, storage_options: dict[str, Any] | None = None
) -> int:
    """Write the catalog again from the sidecars of every compacted run; returns the row count.

    Example:
        >>> import tempfile
        >>> rebuild(tempfile.mkdtemp())
        0
    """
    storage = _root(root, storage_options)
    rows = _sidecar_rows(storage, _compacted(storage.run_files()))
    _write(storage, rows_frame(rows))
    return len(rows)


def update(
    root: str | os.PathLike | Storage,
    run_ids: list[str] | list[os.PathLike],
    *,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Bring the catalog's rows for ``run_ids`` (ids, or run directories) up to date with their
    sidecars, leaving other rows as they are (a run no longer compacted loses its row). Called by
    compaction and push; cheap: it reads the catalog, those sidecars, and writes the catalog.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> run = steplog.init(name="a", root=root); run.finish()
        >>> _ = steplog.compact(root, quiet=True); update(root, [run.dir])
        >>> read(root).from_catalog
        1
    """
    storage = _root(root, storage_options)
    ids = {os.path.basename(os.fspath(r).rstrip("/")) for r in run_ids}
    files = storage.run_files(sorted(ids))
    stamps = {run_id: stamp for run_id, stamp in _compacted(files).items() if run_id in ids}
    _merge(storage, ids, _sidecar_rows(storage, stamps))


def add_sidecars(storage: Storage, sidecars: dict[str, tuple[bytes, str]]) -> None:
    """``update`` for a writer that has just put the sidecars itself (push): ``{run id: (sidecar
    bytes, stamp that put returned)}``; nothing is listed or read back.

    Example:
        >>> import tempfile
        >>> s = open_root(tempfile.mkdtemp()); add_sidecars(s, {})
        >>> read(s).table.height
        0
    """
    rows = []
    for data, stamp in sidecars.values():
        try:
            sidecar = orjson.loads(data)
            sidecar["summary"] = decode_summary(sidecar["summary"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # left out: read() reads its sidecar
        rows.append({**sidecar_row(sidecar), _STAMP: stamp})
    _merge(storage, set(sidecars), rows)


def _merge(storage: Storage, ids: set[str], rows: list[dict[str, Any]]) -> None:
    """Write the catalog with the rows of ``ids`` replaced by ``rows``."""
    old = _load_catalog(storage)
    kept = [] if old is None else [old.filter(~pl.col("run_id").is_in(sorted(ids)))]
    _write(storage, pl.concat([*kept, rows_frame(rows)], how="diagonal_relaxed"))


def read(
    root: str | os.PathLike | Storage = "experiment_logs", *, storage_options: dict[str, Any] | None = None
) -> CatalogRead:
    """The compacted runs of a root as one frame, from the catalog where it is current and from
    sidecars where it is not (missing, stale, corrupt); never a row the sidecar would not give.

    Example:
        >>> import tempfile
        >>> found = read(tempfile.mkdtemp())
        >>> found.table.height, found.live
        (0, [])
    """
    storage = _root(root, storage_options)
    catalog = _load_catalog(storage)
    if isinstance(storage, LocalStorage) or catalog is None:
        files = storage.run_files()
    else:  # list the bucket in parallel ranges, split where the catalog's runs say
        ids = catalog["run_id"].sort().to_list()
        files = storage.run_files(splits=ids[len(ids) // 8 :: max(len(ids) // 8, 1)][:7] if len(ids) >= 2000 else [])
    compacted = _compacted(files)
    live = sorted(
        run_id
        for run_id, names in files.items()
        if run_id not in compacted and (fmt.EVENTS_FILE in names or PARTS_DIR in names)
    )
    parts, from_catalog = [], 0
    missing = dict(compacted)
    if catalog is not None and compacted:
        current = pl.DataFrame({"run_id": list(compacted), _STAMP: list(compacted.values())})
        hit = catalog.join(current, on=["run_id", _STAMP], how="semi")
        for run_id in hit["run_id"].to_list():
            missing.pop(run_id, None)
        from_catalog = hit.height
        parts.append(hit)
    fresh = _sidecar_rows(storage, missing)
    parts.append(rows_frame(fresh))
    table = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    table = table.drop(_STAMP, strict=False).sort("run_id")
    return CatalogRead(table, live, from_catalog, len(fresh))


def live_row(run_dir: RunDir) -> dict[str, Any] | None:
    """The catalog-shaped row of a run that is not compacted, from its events (as ``runs()``
    reads it: status from its last finish event or its writer lock); None when nothing is readable.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(name="a", root=tempfile.mkdtemp()); run.log({"loss": 2.0})
        >>> row = live_row(run.dir); run.finish()
        >>> row["status"], row["summary.loss.last"]
        ('running', 2.0)
    """
    from .model import load_record

    try:
        record = load_record(run_dir)
    except OSError:
        return None
    if record is None or record.compacted:
        return None
    return sidecar_row({**record.sidecar_facts(), "summary": record.summary_dicts()})


def runs_table(
    root: str | os.PathLike = "experiment_logs", *, storage_options: dict[str, Any] | None = None
) -> pl.DataFrame:
    """Every run of a root, one row each, oldest first: compacted runs by ``read``, and on a local
    root the runs that are not compacted (running, resumed, not compacted yet) from their events;
    on an object-store root, from the part objects ``steplog sync`` uploads (``steplog.roots``).

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", root=root).finish()
        >>> runs_table(root).select("name", "status").rows()
        [('a', 'finished')]
    """
    storage = _root(root, storage_options)
    if not isinstance(storage, LocalStorage):  # live runs there are part objects: steplog.roots reads them
        from .roots import remote_index

        return remote_index(storage).table.sort("run_id")
    found = read(storage)
    if not found.live:
        return found.table
    rows = [row for row in (live_row(storage.folder / run_id) for run_id in found.live) if row is not None]
    return pl.concat([found.table, rows_frame(rows)], how="diagonal_relaxed").sort("run_id")


def _utc(seconds: Any) -> Any:
    import datetime as _dt

    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)


# --- the CLI command (registered by steplog.cli) -----------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``steplog catalog``.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["--rebuild"]).rebuild
        True
    """
    parser.add_argument(
        "--rebuild", action="store_true", help=f"write <root>/{CATALOG_FILE} again from every compacted run's sidecar"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``steplog catalog``: with ``--rebuild`` rewrite the catalog, else say how current it is.

    Example:
        >>> import tempfile
        >>> run(argparse.Namespace(rebuild=False, root=tempfile.mkdtemp()))
        catalog ...: 0 compacted runs, 0 from the catalog, 0 from sidecars (stale or missing), 0 not compacted
        0
    """
    storage = open_root(args.root)
    if args.rebuild:
        count = rebuild(storage)
        print(f"catalog {storage.uri(CATALOG_FILE)}: rebuilt, {count} run{'s' if count != 1 else ''}")
        return 0
    found = read(storage)
    print(
        f"catalog {storage.uri(CATALOG_FILE)}: {found.table.height} compacted runs, {found.from_catalog} from the "
        f"catalog, {found.from_sidecars} from sidecars (stale or missing), {len(found.live)} not compacted"
    )
    return 0
