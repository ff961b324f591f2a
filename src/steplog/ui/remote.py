"""The dashboard of an object-store root (``steplog ui --root s3://bucket/prefix``), read-only,
through the query layer's roots: compacted runs from their Parquet files with Polars' cloud scanning
(the step range pushed down: a zoom reads only the row groups it needs), the runs table from the
root catalog, and live runs from the part objects ``steplog sync`` uploads, read incrementally: each
poll lists the run's parts and reads only the parts past the byte offset already read.

Example:
    >>> import tempfile, steplog
    >>> from steplog.storage import LocalStorage, part_name
    >>> storage = LocalStorage(tempfile.mkdtemp())
    >>> _ = storage.put(part_name("r", "events.jsonl", 0, 4), b"abc\\n")
    >>> source = PartsSource(storage, "r", "events.jsonl")
    >>> source.read(0), source.read(4)
    ((b'abc\\n', 4, False), (b'', 4, False))
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import polars as pl

from .. import catalog, roots, store
from .. import format as fmt
from ..rankread import no_such_rank
from ..storage import PARTS_DIR, Storage, parts_of
from .data import Data, check_ref, current_rows
from .live import LiveRun
from .table import live_row, newest_first

#: How long a resolved compacted run is reused before the bucket is asked again (seconds).
TTL = 5.0


class PartsSource:
    """A live run's events file as ``steplog sync`` uploads it (numbered part objects of whole
    lines), read from a byte offset on: ``read(offset)`` lists the parts and reads only those past
    ``offset``, in order while they join; ``replaced`` when the parts no longer continue at it."""

    def __init__(self, storage: Storage, run_id: str, events_file: str) -> None:
        self.storage, self.run_id, self.events_file = storage, run_id, events_file
        self.path = storage.uri(f"{run_id}/{events_file}")

    def read(self, offset: int) -> tuple[bytes, int, bool]:
        listing = self.storage.list(f"{self.run_id}/{PARTS_DIR}/{self.events_file}/")
        chunks, position = [], offset
        for start, end, name in parts_of(listing, self.run_id).get(self.events_file, []):
            if end <= offset:
                continue
            if start < position:  # sent again from the start (the local file was rewritten)
                return b"", offset, True
            if start > position:  # a gap: a sync killed between two objects; the rest comes later
                break
            chunks.append(self.storage.read(name))
            position = end
        return b"".join(chunks), position, False


class RemoteData(Data):
    """``Data`` of an object-store root: the same API, read through ``steplog.roots``."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage)
        self.storage = storage
        self._dirs: dict[str, tuple[float, roots.RemoteRunDir]] = {}
        self._versions: dict[Any, int] = {}

    def resolve(self, ref: str) -> Any:
        check_ref(ref)
        cached = self._dirs.get(ref)
        if cached is not None and time.monotonic() - cached[0] < TTL:
            return cached[1]
        run_dir = roots.resolve_run(ref, self.storage)
        if isinstance(run_dir, roots.RemoteRunDir) and run_dir.compacted:  # a live one is looked up every time
            self._dirs[ref] = (time.monotonic(), run_dir)
        return run_dir

    def live(self, run_dir: Any, rank: int = 0) -> LiveRun | None:
        if run_dir.compacted:
            self._live.pop((run_dir, rank), None)
            return None
        source = PartsSource(self.storage, run_dir.name, fmt.rank_events_file(rank))
        if rank and not parts_of(self.storage.list(f"{run_dir.name}/{PARTS_DIR}/{source.events_file}/"), run_dir.name):
            raise no_such_rank(run_dir, rank, [0])
        return self._updated(run_dir, rank, source)

    def status(self, run_dir: Any, live: LiveRun | None) -> str:
        if live is None and not run_dir.compacted:
            live = self.live(run_dir)  # rank 0's parts: the caller read another rank's
        if live is None:
            return str(self.sidecar(run_dir).get("status") or fmt.FINISHED)
        finish = (live.finish or {}).get("status")  # no writer lock to look at from here: running until it says
        return finish if finish in (fmt.FINISHED, fmt.FAILED) else fmt.RUNNING

    def version(self, run_dir: Any) -> Any:
        if run_dir not in self._versions:
            self._versions[run_dir] = hash(orjson.dumps(self.sidecar(run_dir), option=orjson.OPT_SORT_KEYS))
        return self._versions[run_dir]

    def sidecar(self, run_dir: Any) -> dict[str, Any]:
        return run_dir.load()[1] or {}

    def scan(self, run_dir: Any, rank: int) -> pl.LazyFrame:
        return current_rows(roots.scan_parquet([run_dir]), rank)

    def run_page(self, run_dir: Any) -> dict[str, Any]:
        if not run_dir.compacted:
            run_dir = roots.RemoteRunDir(self.storage, run_dir.name, compacted=False)  # its parts read now
        return super().run_page(run_dir)

    def runs_table(self) -> list[dict[str, Any]]:
        """The compacted runs from the catalog (one GET and a listing of the root), the live ones
        from their parts, read incrementally."""
        with self._table_lock:
            found = catalog.read(self.storage)
            rows = list(self._catalog_rows(found.table))
            for run_id in found.live:
                run_dir = roots.RemoteRunDir(self.storage, run_id, compacted=False)
                try:
                    live = self.live(run_dir)
                except (OSError, ValueError, store.RunNotFoundError):
                    continue
                if live is not None and live.start is not None:
                    rows.append(live_row(live, self.status(run_dir, live), None))
            return newest_first(rows)
