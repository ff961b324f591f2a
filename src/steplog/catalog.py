"""The root catalog: one Parquet file, ``<root>/_catalog/runs.parquet``, one row per compacted run.

A row holds what ``steplog.runs()`` shows of a run (``run_id``, ``name``, ``status``, times,
steps, ``segments``, ``error``, ``notes``, the flattened ``config.<key>`` columns) and every
metric's summary as ``summary.<metric>.<figure>`` columns (the figures of
``compact.SUMMARY_FIELDS``), all taken from the run's sidecar, plus ``_sidecar_stamp``: the size
and modification stamp of the sidecar the row was built from.

The catalog is derived data and never trusted blindly. On a local root ``read`` lists the root
(two stats a run), keeps the catalog rows whose sidecar stamp still matches, and reads the sidecar
of every compacted run the catalog misses or has stale; a missing or corrupt catalog file just
means every sidecar is read. Two updates racing can only leave a row out or stale, which ``read``
notices, so no lock is needed. On an object store, where a full listing costs a request per 1,000
objects, the catalog is written by compare-and-swap beside a journal (``steplog.journal``: its
generation, and markers of the pushes under way) that lets ``read`` check only the runs that may
have changed; it falls back to the full listing whenever the journal cannot vouch for the catalog.
Compaction and push call ``update``; ``rebuild`` (``steplog catalog --rebuild``) writes it again
from all sidecars.

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
import os
import sys
from dataclasses import dataclass
from typing import Any

import polars as pl

from . import format as fmt
from . import journal
from .catalogrows import CATALOG_FILE, STAMP, catalog_bytes, compacted, read_catalog, row_from_bytes, sidecar_rows
from .catalogrows import rows_frame as rows_frame  # re-exported: catalog rows as a frame
from .catalogrows import sidecar_row as sidecar_row  # re-exported: the catalog's row of a sidecar
from .model import RunDir
from .storage import PARTS_DIR, LocalStorage, Storage, open_root

__all__ = ["CATALOG_FILE", "CatalogRead", "add_sidecars", "live_row", "read", "rebuild", "rows_frame", "runs_table"]


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


def _load_catalog(storage: Storage) -> pl.DataFrame | None:
    """The catalog's rows (with stamps); None when it is missing or damaged (said on stderr)."""
    try:
        return read_catalog(storage.read(CATALOG_FILE))[0]
    except FileNotFoundError:
        return None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:  # damaged: read every sidecar (slower, right)
        print(
            f"steplog: the catalog {storage.uri(CATALOG_FILE)} is unreadable ({exc}); reading sidecars; "
            f"`steplog catalog --rebuild` rewrites it",
            file=sys.stderr,
        )
        return None


def rebuild(
    root: str | os.PathLike | Storage = "experiment_logs", *, storage_options: dict[str, Any] | None = None
) -> int:
    """Write the catalog again from the sidecars of every compacted run; returns the row count.
    On an object store (as every catalog write there) it also removes the pending markers of pushes
    killed over a day ago.

    Example:
        >>> import tempfile
        >>> rebuild(tempfile.mkdtemp())
        0
    """
    storage = _root(root, storage_options)
    if isinstance(storage, LocalStorage):
        frame = journal.full_rows(storage, None)[0]
        storage.put(CATALOG_FILE, catalog_bytes(frame, None))
        return frame.height
    return journal.commit(storage, journal.full_rows(storage, None)[0], replace=True).height


def update(
    root: str | os.PathLike | Storage,
    run_ids: list[str] | list[os.PathLike],
    *,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Bring the catalog's rows for ``run_ids`` (ids, or run directories) up to date with their
    sidecars, leaving other rows as they are (a run no longer compacted loses its row). Called by
    compaction; cheap: it reads the catalog, those sidecars, and writes the catalog.

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
    stamps = {run_id: stamp for run_id, stamp in compacted(files).items() if run_id in ids}
    rows = rows_frame(sidecar_rows(storage, stamps))
    _merge(storage, rows, frozenset(ids))


def add_sidecars(storage: Storage, sidecars: dict[str, tuple[bytes, str]]) -> None:
    """``update`` for a writer that has just put the sidecars itself (push): ``{run id: (sidecar
    bytes, stamp that put returned)}``; nothing is listed (on an object store the sidecars whose
    row changes are HEADed, so a newer one written meanwhile wins).

    Example:
        >>> import tempfile
        >>> s = open_root(tempfile.mkdtemp()); add_sidecars(s, {})
        >>> read(s).table.height
        0
    """
    rows = [row_from_bytes(data, stamp) for data, stamp in sidecars.values()]
    _merge(storage, rows_frame([row for row in rows if row is not None]), frozenset())  # unreadable: read() reads it


def _merge(storage: Storage, rows: pl.DataFrame, drop: frozenset[str]) -> None:
    """Write the catalog with ``rows`` in place of theirs and the other runs of ``drop`` left out."""
    if not isinstance(storage, LocalStorage):
        journal.commit(storage, rows, drop=drop)
        return
    old = _load_catalog(storage)
    gone = sorted(drop | set(rows["run_id"].to_list()))
    kept = [] if old is None else [old.filter(~pl.col("run_id").is_in(gone))]
    storage.put(CATALOG_FILE, catalog_bytes(pl.concat([*kept, rows], how="diagonal_relaxed"), None))


def read(
    root: str | os.PathLike | Storage = "experiment_logs",
    *,
    storage_options: dict[str, Any] | None = None,
    full: bool = False,
) -> CatalogRead:
    """The compacted runs of a root as one frame, from the catalog where it is current and from
    sidecars where it is not (missing, stale, corrupt); never a row the sidecar would not give.
    On an object store the catalog's journal names the runs to check (``steplog.journal``);
    ``full=True`` lists every object instead.

    Example:
        >>> import tempfile
        >>> found = read(tempfile.mkdtemp())
        >>> found.table.height, found.live
        (0, [])
    """
    storage = _root(root, storage_options)
    fast = None if full else journal.fast_read(storage)
    if fast is not None:
        table, live, hits = fast
        return CatalogRead(table.drop(STAMP, strict=False).sort("run_id"), live, hits, table.height - hits)
    catalog = _load_catalog(storage)
    table, files, hits = journal.full_rows(storage, catalog)
    done = compacted(files)
    live = sorted(
        run_id
        for run_id, there in files.items()
        if run_id not in done and (fmt.EVENTS_FILE in there or PARTS_DIR in there)
    )
    return CatalogRead(table.drop(STAMP, strict=False).sort("run_id"), live, hits, table.height - hits)


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
    """Run ``steplog catalog``: with ``--rebuild`` rewrite the catalog, else say how current it is
    (from a listing of every object, not the journal's shortcut).

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
    found = read(storage, full=True)  # every object listed: what a stale row would look like shows
    print(
        f"catalog {storage.uri(CATALOG_FILE)}: {found.table.height} compacted runs, {found.from_catalog} from the "
        f"catalog, {found.from_sidecars} from sidecars (stale or missing), {len(found.live)} not compacted"
    )
    return 0
