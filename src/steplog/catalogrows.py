"""The rows of the root catalog (``steplog.catalog``) and its file's bytes: one row per compacted
run, built from its sidecar (``sidecar_row``), typed as ``runs()`` types them (``rows_frame``), with
``STAMP``, the stamp of the sidecar the row was built from. On an object store the file also
records its generation (``GENERATION_KEY``, Parquet key-value metadata: ``steplog.journal``).

Example:
    >>> frame = rows_frame([{"run_id": "r", "name": "a", STAMP: "5:x"}])
    >>> read_catalog(catalog_bytes(frame, 3))[1], read_catalog(catalog_bytes(frame, None))[1]
    (3, None)
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import polars as pl

from . import format as fmt
from .storage import Storage
from .summaries import SUMMARY_FIELDS, SUMMARY_TYPES, decode_summary

#: Where the catalog lives, relative to the root.
CATALOG_FILE = "_catalog/runs.parquet"
STAMP = "_sidecar_stamp"
BASE = {
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

#: The Parquet key-value metadata key of the catalog's generation (object stores: ``steplog.journal``).
GENERATION_KEY = "steplog.generation"


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

    keys: dict[str, None] = dict.fromkeys(BASE)
    for row in rows:
        keys.update(dict.fromkeys(row))
    columns = []
    for key in keys:
        values = [row.get(key) for row in rows]
        if key in BASE:
            columns.append(pl.Series(key, values, dtype=BASE[key]))  # type: ignore[arg-type]
        elif key.startswith("summary."):
            columns.append(pl.Series(key, values, dtype=SUMMARY_TYPES[key.rsplit(".", 1)[1]]))
        elif key == STAMP:
            columns.append(pl.Series(key, values, dtype=pl.String))
        else:
            columns.append(config_column(key, values))
    return pl.DataFrame(columns)


def sidecar_rows(storage: Storage, stamps: dict[str, str]) -> list[dict[str, Any]]:
    """Catalog rows of the runs ``stamps`` names ({run id: sidecar stamp}), read in parallel; a
    sidecar that is missing or unreadable gives no row.

    Example:
        >>> from steplog.storage import open_root
        >>> import tempfile
        >>> sidecar_rows(open_root(tempfile.mkdtemp()), {"20260101-000000-000-abcdef": "1:x"})
        []
    """

    def one(item: tuple[str, str]) -> dict[str, Any] | None:
        try:
            data = storage.read(f"{item[0]}/{fmt.SIDECAR_FILE}")
        except OSError:
            return None  # removed since the listing: its run stays out
        return row_from_bytes(data, item[1])  # None when damaged or being rewritten

    items = sorted(stamps.items())
    if len(items) < 16:
        found = [one(item) for item in items]
    else:
        with ThreadPoolExecutor(16) as pool:
            found = list(pool.map(one, items))
    return [row for row in found if row is not None]


def compacted(files: dict[str, dict[str, str]]) -> dict[str, str]:
    """{run id: sidecar stamp} of the compacted runs of a ``run_files`` listing.

    Example:
        >>> compacted({"r": {"run.json": "5:a", "metrics.parquet": "9:b"}, "s": {"events.jsonl": "1:c"}})
        {'r': '5:a'}
    """
    return {
        run_id: names[fmt.SIDECAR_FILE]
        for run_id, names in files.items()
        if fmt.SIDECAR_FILE in names and fmt.PARQUET_FILE in names and fmt.EVENTS_FILE not in names
    }


def row_from_bytes(data: bytes, stamp: str) -> dict[str, Any] | None:
    """The catalog row of a sidecar's bytes (None when they are not a readable sidecar).

    Example:
        >>> row_from_bytes(b'{"run_id": "r", "name": "a", "summary": {}}', "2:x")["name"]
        'a'
        >>> row_from_bytes(b"not json", "2:x") is None
        True
    """
    try:
        sidecar = orjson.loads(data)
        sidecar["summary"] = decode_summary(sidecar["summary"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return {**sidecar_row(sidecar), STAMP: stamp}


def read_catalog(data: bytes) -> tuple[pl.DataFrame | None, int | None]:
    """(rows, generation) of a catalog file's bytes; (None, None) when they are no catalog
    (ValueError or a Polars error when they are damaged); the generation is None when the file
    records none (written on a local root, or by a version without the journal).

    Example:
        >>> read_catalog(catalog_bytes(rows_frame([]), 1))[0].height
        0
    """
    frame = pl.read_parquet(io.BytesIO(data))
    if not {"run_id", STAMP} <= set(frame.columns):
        return None, None
    text = pl.read_parquet_metadata(io.BytesIO(data)).get(GENERATION_KEY)
    return frame, int(text) if text is not None and text.isdigit() else None


def catalog_bytes(frame: pl.DataFrame, generation: int | None) -> bytes:
    """The catalog file for ``frame`` (sorted by run id, zstd), recording ``generation`` if given.

    Example:
        >>> catalog_bytes(rows_frame([]), None)[:4]
        b'PAR1'
    """
    if STAMP not in frame.columns:  # no rows: the column still says what the file is
        frame = frame.with_columns(pl.lit(None, pl.String).alias(STAMP))
    buffer = io.BytesIO()
    metadata = None if generation is None else {GENERATION_KEY: str(generation)}
    frame.sort("run_id").write_parquet(buffer, compression="zstd", statistics=True, metadata=metadata)
    return buffer.getvalue()


def _utc(seconds: Any) -> Any:
    import datetime as _dt

    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
