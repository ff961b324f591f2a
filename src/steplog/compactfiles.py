"""The files compaction writes, and how: ``metrics.parquet`` checked before it is renamed into
place, the sidecar (``run.json``), the events moved to ``archive/``, and a full disk reported by
name (``steplog.compact`` decides what to compact and in which order).

Example:
    >>> import tempfile
    >>> run_dir = Path(tempfile.mkdtemp())
    >>> _parquet_matches(run_dir, {"parquet": {"bytes": 10}})
    False
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow.parquet as pq

from . import format as fmt
from . import store
from .atomic import write_atomically
from .model import RunRecord
from .rankread import world_size
from .reader import RunEvents
from .sidecar import SIDECAR_VERSION
from .summaries import encode_summary

#: Rows per Parquet row group: large enough for fast scans, small enough to skip by statistics.
ROW_GROUP_SIZE = 131_072


def _clear_the_way(run_dir: Path) -> None:
    """An empty directory where a compacted file goes (left by a mishap) is removed, so the file can be written."""
    for name in (fmt.PARQUET_FILE, fmt.SIDECAR_FILE):
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()
            except OSError:
                pass  # not empty: the write fails and says so


def _raise_if_full(run_dir: Path, path: Path, exc: BaseException) -> None:
    """A full disk while writing a run's compacted files raises a ``StoreError`` naming the run, the path
    and what to do. Other errors are left to the caller (an OSError reports the run as skipped)."""
    if getattr(exc, "errno", None) != errno.ENOSPC and "No space left on device" not in str(exc):
        return
    raise store.storage_error(
        exc,
        f"could not compact run {run_dir.name} ({store.run_name(run_dir)!r}): writing",
        path,
        "free space, then run `steplog compact` again (the runs compacted before it "
        "are kept; its events are untouched)",
    ) from exc


def _expected_rows(events: RunEvents, history_all: pl.DataFrame) -> int:
    """One row per distinct (segment, step) of the events. Equal counts prove it without hashing:
    history rows are distinct pairs, and there are never more pairs than events."""
    if history_all.height == events.rows.height:
        return history_all.height
    return events.rows.select("segment", "step").n_unique()


def _write_parquet(path: Path, table: pl.DataFrame, expected_rows: int) -> Path:
    """Write ``metrics.parquet`` atomically, checked (rows and columns) before it is renamed into place."""

    def verify(tmp: Path) -> None:
        written = pq.read_metadata(tmp)
        if written.num_rows != expected_rows or written.schema.names != table.columns:
            raise _NotVerified(
                f"the Parquet file written holds {written.num_rows} rows, expected {expected_rows}; events untouched"
            )

    return write_atomically(
        path,
        lambda f: table.write_parquet(f, compression="zstd", statistics=True, row_group_size=ROW_GROUP_SIZE),
        check=verify,
    )


def _sidecar_bytes(record: RunRecord, files: dict[str, Any], ranks: list[dict[str, Any]], table: pl.DataFrame) -> bytes:
    """The sidecar (``run.json``) of a run being compacted: its record, metric names, summary, ranks and files."""
    current = table.filter(~pl.col("superseded")).select("rank", "step")
    sidecar = {
        "sidecar_version": SIDECAR_VERSION,
        **record.sidecar_facts(),
        "metrics": {name: "Float64" for name in record.metrics},
        "world_size": world_size(ranks),
        "ranks": ranks,
        # rows grouped by rank in order, and each rank's steps in order: readers need no sort
        "steps_sorted": bool(
            current.select(
                (pl.col("rank").diff().fill_null(0) >= 0).all()
                & (pl.col("step").diff().fill_null(0).over("rank") >= 0).all()
            ).item()
        ),
        "summary": encode_summary(record.summary),
        **files,
        "compacted_at": time.time(),
    }
    return orjson.dumps(sidecar, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def _parquet_matches(run_dir: Path, sidecar: dict[str, Any] | None) -> bool:
    try:
        return (run_dir / fmt.PARQUET_FILE).stat().st_size == (sidecar or {}).get("parquet", {}).get("bytes")
    except (OSError, AttributeError):
        return False


def _archive_events(run_dir: Path) -> None:
    """Move every rank's live events file to ``archive/`` (rank 0's last: until then, readers read the events)."""
    archive = run_dir / fmt.ARCHIVE_DIR
    archive.mkdir(exist_ok=True)
    for _rank, path in sorted(store.rank_files(run_dir).items(), reverse=True):
        if path.parent == run_dir and path.exists():
            os.replace(path, archive / path.name)
    store.fsync_directory(archive)
    store.fsync_directory(run_dir)


class _NotVerified(Exception):
    """The Parquet file written does not hold what the events do."""
