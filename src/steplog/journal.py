"""The catalog of an object-store root without a full listing: generations, pending markers and
a compare-and-swap commit, so that ``runs(url)`` costs a few requests, not a page per 1,000 objects.

A full listing (names, sizes, ETags) is what made a stale catalog harmless, and it costs a page per
1,000 objects. On an object store the catalog (``_catalog/runs.parquet``) is instead kept with:

* a **generation**: every write is a conditional PUT (``If-Match`` the ETag read, ``If-None-Match``
  for the first), so writers never lose each other's rows, and records generation ``g + 1`` in the
  file and then as an empty object ``_catalog/generation/<g + 1>``; lower ones are then removed.
* **pending markers**: before a push writes any sidecar it puts ``_catalog/pending/<stamp>-<id>.json``
  naming the runs it will send, and removes it only after a catalog holding their new rows is
  written. Before writing, a committer HEADs the sidecars whose row it changes (a HEAD made after
  reading the catalog it replaces), so the last writer never writes a row older than the sidecar.

``fast_read`` lists ``_catalog/`` and reads the pending markers, then GETs the catalog, lists the root's folders
(the delimiter ``/``: a page per 1,000 runs, whatever they hold) and HEADs the sidecar of only the
runs a marker names or the catalog lacks. It gives up (the caller lists everything) when the
catalog is missing, damaged, records no generation, or is older than the highest generation
marker (a catalog written back from an old copy), or when markers name more catalogued runs than
``RECHECK_LIMIT`` (or 2% of the runs). Why the answer is never wrong: a sidecar
``steplog push`` wrote is either under a marker still there (checked), or its run's row is in
every catalog of that generation or later (the marker goes only after the commit and the
generation marker); runs added or removed by any means change the folder listing. Not seen
without ``steplog catalog --rebuild``: a sidecar rewritten in place by another tool.

Example:
    >>> import tempfile
    >>> from steplog.storage import open_root
    >>> fast_read(open_root(tempfile.mkdtemp())) is None  # a folder: list it, it is cheap
    True
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl

from . import format as fmt
from . import store
from .catalogrows import CATALOG_FILE, STAMP, catalog_bytes, compacted, read_catalog, rows_frame, sidecar_rows
from .storage import LocalStorage, Storage, StorageError

GENERATIONS = "_catalog/generation/"
PENDING = "_catalog/pending/"
#: Catalogued runs under pending markers beyond which ``fast_read`` lists everything instead (a HEAD
#: each would cost more requests than a listing's page per 1,000 objects): this, or 2% of the runs.
RECHECK_LIMIT = 100
_ATTEMPTS = 50
_THREADS = 16
#: A pending marker this old is taken to be a killed push's: the next catalog write removes it.
STALE_MARKER = _dt.timedelta(days=1)


@dataclass
class Journal:
    """What ``_catalog/`` holds besides the catalog: the highest generation (0: none) and every
    generation and pending marker."""

    generation: int
    generations: list[str]
    pending: list[str]


def journal(storage: Storage) -> Journal:
    """The markers under ``_catalog/`` (one listing).

    Example:
        >>> import tempfile
        >>> from steplog.storage import open_root
        >>> journal(open_root(tempfile.mkdtemp()))
        Journal(generation=0, generations=[], pending=[])
    """
    names = storage.list("_catalog/")
    generations = sorted(n for n in names if n.startswith(GENERATIONS) and n[len(GENERATIONS) :].isdigit())
    highest = int(generations[-1][len(GENERATIONS) :]) if generations else 0
    return Journal(highest, generations, sorted(n for n in names if n.startswith(PENDING)))


def begin(storage: Storage, run_ids: list[str]) -> str | None:
    """Put a pending marker naming ``run_ids`` before their sidecars are written; returns its name
    (None on a local root or with no runs: nothing to mark). ``end`` removes it after the commit.

    Example:
        >>> import tempfile
        >>> from steplog.storage import open_root
        >>> begin(open_root(tempfile.mkdtemp()), ["r"]) is None
        True
    """
    if not run_ids or isinstance(storage, LocalStorage):
        return None
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    name = f"{PENDING}{now}-{uuid.uuid4().hex[:12]}.json"
    storage.put(name, orjson.dumps({"runs": sorted(run_ids)}))
    return name


def end(storage: Storage, marker: str | None) -> None:
    """Remove a pending marker of ``begin``, once a catalog holding its runs' rows is written.

    Example:
        >>> end(LocalStorage("/no/such/root"), None)
    """
    if marker is not None:
        storage.delete(marker)


def _pending_runs(storage: Storage, markers: list[str]) -> set[str] | None:
    """The runs the pending markers name; None when one is unreadable (list everything then)."""

    def runs_of(name: str) -> list[str] | None:
        try:
            runs = orjson.loads(storage.read(name)).get("runs")
        except FileNotFoundError:
            return []  # its push committed meanwhile
        except (OSError, ValueError, AttributeError):
            return None
        return runs if isinstance(runs, list) and all(isinstance(r, str) for r in runs) else None

    found: set[str] = set()
    for runs in _parallel(runs_of, markers):
        if runs is None:
            return None
        found.update(runs)
    return found


def _parallel(function: Callable[[Any], Any], items: list) -> list:
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(_THREADS, len(items))) as pool:
        return list(pool.map(function, items))


def _heads(storage: Storage, run_ids: list[str]) -> dict[str, str | None]:
    """{run id: stamp of its sidecar, None where there is none}."""
    return dict(zip(run_ids, _parallel(lambda r: storage.head(f"{r}/{fmt.SIDECAR_FILE}"), run_ids)))


def fast_read(storage: Storage) -> tuple[pl.DataFrame, list[str], int] | None:
    """(the compacted runs' rows, with their sidecar stamps; the ids of the other run folders; how
    many rows came from the catalog) of an object-store root, from the catalog and its journal;
    None when a full listing is needed.

    Example:
        >>> fast_read(LocalStorage("/no/such/root")) is None
        True
    """
    if isinstance(storage, LocalStorage):
        return None
    marks = journal(storage)  # first, and the markers read before the catalog: one gone by then had
    pending = _pending_runs(storage, marks.pending)  # its rows committed before the catalog is read
    if pending is None:
        return None
    with ThreadPoolExecutor(1) as pool:
        folders = pool.submit(storage.run_prefixes)
        try:
            frame, generation = read_catalog(storage.read(CATALOG_FILE))
        except (FileNotFoundError, ValueError, pl.exceptions.PolarsError):
            return None
        prefixes = {name for name in folders.result() if store.may_name_run(name)}
    if frame is None or generation is None or generation < marks.generation:
        return None
    known = set(frame["run_id"].to_list())
    if len(pending & known) > max(RECHECK_LIMIT, len(prefixes) // 50):  # HEADs would cost more than a listing
        return None
    heads = _heads(storage, sorted((prefixes - known) | (pending & prefixes)))
    rows = dict(zip(frame["run_id"].to_list(), frame[STAMP].to_list()))
    stale = {run_id for run_id, stamp in heads.items() if run_id in known and stamp != rows[run_id]}
    fresh = sidecar_rows(storage, {r: s for r, s in heads.items() if s is not None and s != rows.get(r)})
    kept = frame.filter(pl.col("run_id").is_in(sorted(prefixes - stale)))
    others = sorted(r for r, stamp in heads.items() if stamp is None and r not in known)
    return pl.concat([kept, rows_frame(fresh)], how="diagonal_relaxed"), others, kept.height


def full_rows(storage: Storage, catalog: pl.DataFrame | None) -> tuple[pl.DataFrame, dict[str, dict[str, str]], int]:
    """(every compacted run's row with its sidecar stamp, the ``run_files`` listing, how many rows
    came from ``catalog``): rows of ``catalog`` whose stamp matches the listing, the sidecar read
    for the others.

    Example:
        >>> full_rows(LocalStorage("/no/such/root"), None)[0].height
        0
    """
    if isinstance(storage, LocalStorage) or catalog is None:
        files = storage.run_files()
    else:  # list the bucket in parallel ranges, split where the catalog's runs say
        ids = catalog["run_id"].sort().to_list()
        files = storage.run_files(splits=ids[len(ids) // 8 :: max(len(ids) // 8, 1)][:7] if len(ids) >= 2000 else [])
    stamps = compacted(files)
    parts, hits = [], 0
    if catalog is not None and STAMP in catalog.columns and stamps:
        current = pl.DataFrame({"run_id": list(stamps), STAMP: list(stamps.values())})
        hit = catalog.join(current, on=["run_id", STAMP], how="semi").unique("run_id", keep="last", maintain_order=True)
        for run_id in hit["run_id"].to_list():
            stamps.pop(run_id, None)
        parts.append(hit)
        hits = hit.height
    parts.append(rows_frame(sidecar_rows(storage, stamps)))
    return (pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]), files, hits


def commit(
    storage: Storage, rows: pl.DataFrame, *, drop: frozenset[str] = frozenset(), replace: bool = False
) -> pl.DataFrame:
    """Write the catalog of an object store with ``rows`` (catalog rows with their ``STAMP``) in
    place of theirs and the runs of ``drop`` left out (``replace``: ``rows`` alone), by
    compare-and-swap; returns the catalog written. A catalog that is missing, damaged or without a
    generation is first completed from a full listing.

    Example:
        >>> commit(LocalStorage("/no/such/root"), rows_frame([]))
        Traceback (most recent call last):
        ...
        ValueError: commit is for object stores; a local root's catalog is written by steplog.catalog
    """
    if isinstance(storage, LocalStorage):
        raise ValueError("commit is for object stores; a local root's catalog is written by steplog.catalog")
    for _ in range(_ATTEMPTS):
        base, base_stamp, generation = _base(storage)
        if base is None or generation is None and not replace:  # completed first: readers trust it
            known = rows if base is None else pl.concat([base, rows], how="diagonal_relaxed")
            base = rows_frame([]) if replace else full_rows(storage, known)[0]  # sidecars of rows not read
        merged = _merge(storage, base, rows, drop, replace)
        new = (generation or 0) + 1
        if storage.put_if(CATALOG_FILE, catalog_bytes(merged, new), base_stamp) is not None:
            remove_stale_markers(storage, _advance(storage, new).pending)
            return merged
    raise StorageError(f"cannot write {storage.uri(CATALOG_FILE)}: it kept changing ({_ATTEMPTS} tries); try again")


def _base(storage: Storage) -> tuple[pl.DataFrame | None, str | None, int | None]:
    """(rows, stamp, generation) of the catalog there now; rows None when missing or damaged."""
    try:
        data, stamp = storage.read_stamped(CATALOG_FILE)
    except FileNotFoundError:
        return None, None, None
    try:
        frame, generation = read_catalog(data)
    except (ValueError, pl.exceptions.PolarsError):
        return None, stamp, None
    return frame, stamp, generation


def _merge(
    storage: Storage, base: pl.DataFrame, rows: pl.DataFrame, drop: frozenset[str], replace: bool
) -> pl.DataFrame:
    """``base`` with ``rows`` in and ``drop`` out. Where that changes a row of ``base``, the
    sidecar is HEADed (after ``base`` was read): one other than the row's is read instead."""
    before = dict(zip(base["run_id"].to_list(), base[STAMP].to_list())) if STAMP in base.columns else {}
    given = dict(zip(rows["run_id"].to_list(), rows[STAMP].to_list())) if rows.height else {}
    given.update((run_id, None) for run_id in drop if run_id not in given)
    heads = _heads(storage, sorted(r for r, stamp in given.items() if r in before and stamp != before[r]))
    wrong = sorted(r for r, stamp in heads.items() if stamp != given[r])  # rewritten since: the sidecar wins
    fresh = rows_frame(sidecar_rows(storage, {r: heads[r] for r in wrong if heads[r] is not None}))  # type: ignore[misc]
    kept = base.clear() if replace else base.filter(~pl.col("run_id").is_in(sorted(given)))
    parts = [kept, rows.filter(~pl.col("run_id").is_in(wrong)), fresh]
    return pl.concat([p for p in parts if p.height] or [rows_frame([])], how="diagonal_relaxed")


def _advance(storage: Storage, generation: int) -> Journal:
    """Put the marker of ``generation``, then remove the lower ones; returns the journal it listed."""
    storage.put(f"{GENERATIONS}{generation:016d}", b"")
    marks = journal(storage)
    for name in marks.generations:
        if int(name[len(GENERATIONS) :]) < generation:
            storage.delete(name)
    return marks


def remove_stale_markers(storage: Storage, markers: list[str], now: _dt.datetime | None = None) -> list[str]:
    """Remove the pending ``markers`` older than ``STALE_MARKER``, taken to be pushes killed before
    their commit (every catalog write calls it, after the commit); returns their names.

    Example:
        >>> remove_stale_markers(LocalStorage("/no/such/root"), ["_catalog/pending/20200101T000000-ab.json"])
        ['_catalog/pending/20200101T000000-ab.json']
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    removed = []
    for name in markers:
        try:
            made = _dt.datetime.strptime(name[len(PENDING) :][:15], "%Y%m%dT%H%M%S").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            continue
        if now - made > STALE_MARKER:
            storage.delete(name)
            removed.append(name)
    return removed
