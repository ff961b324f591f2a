"""A query's root, a local folder or an object-store URL, turned into its runs: the one place the
query layer learns where a run's bytes are.

A local root's runs are directories (``pathlib.Path``, ``steplog.store``). An object-store root
(``s3://bucket/prefix``, or an opened ``steplog.storage.Storage`` carrying ``storage_options``)
has ``RemoteRunDir``s instead, which stand where a ``Path`` does: ``name`` is the run id, ``str()``
its URL, ``/ file`` a file's URL, and ``model.load_run`` reads one through ``load()``: a compacted
run from its sidecar (one GET), a live run (``steplog sync``) from its part objects as one event
stream, the torn tail forgiven. Parquet is never downloaded here: ``scan_parquet`` hands the URLs
to Polars' own cloud scanning, which fetches only the footers, columns and row groups a query needs.

Which runs an object-store root holds, their names and start times come from the root catalog
(``steplog.catalog.read``: one GET and a listing of names and sizes, sidecars read only for the
runs the catalog misses or has stale) plus the live runs' part objects.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> steplog.init(name="a", root=root).finish()
    >>> resolve_run("a", root).name == store.run_dirs(root)[0].name
    True
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from . import format as fmt
from . import store
from .model import Loaded, RemoteRun
from .reader import parse_events
from .sidecar import check_sidecar
from .storage import PARTS_DIR, LocalStorage, Storage, is_url, open_root, read_parts

#: What a query accepts as ``root``: a folder, an ``s3://`` URL, or an opened ``Storage``.
Root = str | os.PathLike | Storage
_THREADS = 16


class RemoteRunDir:
    """One run folder of an object-store root, standing where a local run has its ``Path``.

    Example:
        >>> s = open_root("s3://bucket/logs", {"aws_skip_signature": True, "aws_region": "us-east-1"})
        >>> d = RemoteRunDir(s, "20260101-000000-000-abcdef", compacted=True)
        >>> d.name, str(d), d / "run.json"
        ('20260101-000000-000-abcdef', 's3://bucket/logs/20260101-000000-000-abcdef', \
's3://bucket/logs/20260101-000000-000-abcdef/run.json')
    """

    def __init__(self, storage: Storage, run_id: str, *, compacted: bool) -> None:
        self.storage, self.name, self.compacted = storage, run_id, compacted
        self._loaded: Loaded | None = None

    def __str__(self) -> str:
        return self.storage.uri(self.name)

    def __repr__(self) -> str:
        return f"RemoteRunDir({str(self)!r})"

    def __truediv__(self, file: str) -> str:
        return self.storage.uri(f"{self.name}/{file}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteRunDir) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def load(self) -> Loaded:
        """(None, sidecar) of a compacted run, (events, None) of a live one, (None, None) when
        nothing readable is there; read once, then kept."""
        if self._loaded is None:
            self._loaded = self._read()
        return self._loaded

    def _read(self) -> Loaded:
        if self.compacted:
            try:
                raw = orjson.loads(self.storage.read(f"{self.name}/{fmt.SIDECAR_FILE}"))
            except (FileNotFoundError, ValueError):
                raw = None  # removed or rewritten since the listing: its parts may still be there
            sidecar = check_sidecar(raw) if isinstance(raw, dict) else None
            if sidecar is not None:
                return None, sidecar
        data = read_parts(self.storage, self.name)
        if not data:
            return None, None
        return parse_events(data, self / fmt.EVENTS_FILE), None  # type: ignore[arg-type]  # a URL, for messages


RunDir = Path | RemoteRunDir


def remote_storage(root: Root, storage_options: dict[str, Any] | None = None) -> Storage | None:
    """The ``Storage`` of an object-store root; None for a local folder (read with ``steplog.store``).

    Example:
        >>> remote_storage("experiment_logs") is None
        True
    """
    if isinstance(root, Storage):
        return None if isinstance(root, LocalStorage) else root
    return open_root(root, storage_options) if is_url(root) else None


def local_root(root: Root) -> str | os.PathLike:
    """The folder of a local root (an opened ``LocalStorage`` gives its folder).

    Example:
        >>> str(local_root(LocalStorage("/tmp/logs")))
        '/tmp/logs'
    """
    return root.folder if isinstance(root, LocalStorage) else root  # type: ignore[return-value]


@dataclass
class RemoteIndex:
    """The runs of an object-store root: ``table`` (one catalog-shaped row per run, compacted and
    live, oldest first: ``steplog.catalog`` columns) and ``dirs`` (``RemoteRunDir`` by run id)."""

    table: pl.DataFrame
    dirs: dict[str, RemoteRunDir]


def remote_index(storage: Storage) -> RemoteIndex:
    """Every run of an object-store root: compacted runs from the catalog (sidecars where it is
    stale), live runs from their part objects (read in parallel, kept in their ``RemoteRunDir``).

    Example:
        >>> remote_index(LocalStorage("/no/such/root")).table.height
        0
    """
    from . import catalog

    found = catalog.read(storage)
    dirs = {run_id: RemoteRunDir(storage, run_id, compacted=True) for run_id in found.table["run_id"]}
    live = [RemoteRunDir(storage, run_id, compacted=False) for run_id in found.live]
    prefetch(live)
    rows = [row for row in (catalog.live_row(d) for d in live) if row is not None]
    dirs.update((d.name, d) for d in live)
    table = pl.concat([found.table, catalog.rows_frame(rows)], how="diagonal_relaxed") if rows else found.table
    return RemoteIndex(table.sort("start_time", "run_id", nulls_last=True), dirs)


def prefetch(run_dirs: Sequence[RunDir]) -> None:
    """Load the remote runs of ``run_dirs`` in parallel (a GET each is latency, not bandwidth).

    Example:
        >>> prefetch([Path("/no/such/run")])
    """
    remote = [d for d in run_dirs if isinstance(d, RemoteRunDir)]
    if len(remote) > 1:
        with ThreadPoolExecutor(min(_THREADS, len(remote))) as pool:
            list(pool.map(RemoteRunDir.load, remote))


def resolve_runs(
    refs: Iterable[str | os.PathLike] | str | os.PathLike | None,
    root: Root,
    storage_options: dict[str, Any] | None = None,
) -> list[RunDir]:
    """``store.resolve_runs`` for any root: the run folders ``refs`` name (ids, id prefixes,
    names), each once, in the order named; every run, oldest first, when ``refs`` is None.

    Example:
        >>> resolve_runs(None, "/no/such/root")
        []
    """
    storage = remote_storage(root, storage_options)
    if storage is None:
        return list(store.resolve_runs(refs, local_root(root)))
    index = remote_index(storage)
    if refs is None:
        return [index.dirs[run_id] for run_id in index.table["run_id"]]
    if isinstance(refs, (str, os.PathLike, RemoteRunDir)):
        refs = [refs]
    return list(dict.fromkeys(_pick(ref, index, storage) for ref in refs))


def resolve_run(
    ref: str | os.PathLike | RemoteRunDir | RemoteRun, root: Root, storage_options: dict[str, Any] | None = None
) -> RunDir:
    """``store.resolve_run`` for any root: the run ``ref`` names (a run id, a unique id prefix, or a
    name: the latest run of that name). RunNotFoundError or AmbiguousRunError say what is there.

    Example:
        >>> resolve_run("x", "/no/such/root")
        Traceback (most recent call last):
        ...
        steplog.store.RunNotFoundError: no run 'x' in /no/such/root (the folder does not exist)
    """
    if isinstance(ref, RemoteRunDir):
        return ref
    if not isinstance(ref, (str, os.PathLike)):
        raise TypeError(f"a run is named by its id, an id prefix, its name or its folder, not {type(ref).__name__}")
    storage = remote_storage(root, storage_options)
    if storage is None:
        return store.resolve_run(ref, local_root(root))
    if isinstance(ref, str) and store.is_run_id(ref):  # a whole id: one listing of its folder is enough
        files = storage.run_files([ref]).get(ref, {})
        if fmt.SIDECAR_FILE in files or PARTS_DIR in files:
            return RemoteRunDir(storage, ref, compacted=fmt.SIDECAR_FILE in files and fmt.PARQUET_FILE in files)
    return _pick(ref, remote_index(storage), storage)


def _pick(ref: Any, index: RemoteIndex, storage: Storage) -> RemoteRunDir:
    """The run of ``index`` that ``ref`` names, by the rules of ``store.resolve_run``."""
    if isinstance(ref, RemoteRunDir):
        return ref
    if not isinstance(ref, str) or not ref:
        raise store.RunNotFoundError(
            f"a run reference must be a non-empty string (run id, id prefix or name), got {ref!r}"
        )
    ids, names = index.table["run_id"].to_list(), index.table["name"].to_list()
    if ref in index.dirs:
        return index.dirs[ref]
    by_prefix = [run_id for run_id in ids if run_id.startswith(ref)]
    if len(by_prefix) == 1:
        return index.dirs[by_prefix[0]]
    by_name = [run_id for run_id, name in zip(ids, names) if name == ref]
    if by_name:
        return index.dirs[by_name[-1]]  # oldest first: the latest run of that name
    if by_prefix:
        shown = ", ".join(by_prefix[:5]) + (" ..." if len(by_prefix) > 5 else "")
        raise store.AmbiguousRunError(
            f"run prefix {ref!r} matches {len(by_prefix)} runs in {storage.url}: {shown}; give more of the id"
        )
    close = difflib.get_close_matches(ref, sorted({n for n in names if n} | set(ids)), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f" ({len(ids)} runs there)"
    raise store.RunNotFoundError(f"no run {ref!r} in {storage.url}{hint}")


def runs_frame(
    root: Root, runs: Iterable[str] | str | None = None, storage_options: dict[str, Any] | None = None
) -> pl.DataFrame:
    """The catalog-shaped table (``steplog.catalog`` columns) of a root's runs, or of the runs
    ``runs`` names, oldest first (in the order named): what ``runs()``, ``compare()`` and ``best()``
    read on an object-store root, where it costs one GET and a listing for the compacted runs.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> for name in ("a", "b"):
        ...     steplog.init(name=name, root=root).finish()
        >>> runs_frame(root)["name"].to_list(), runs_frame(root, ["b"])["name"].to_list()
        (['a', 'b'], ['b'])
    """
    storage = remote_storage(root, storage_options)
    if storage is None:
        from . import catalog

        table = catalog.runs_table(local_root(root))
        if runs is None:  # oldest first by the start times the table holds: no run opened to order them
            return table.sort("start_time", "run_id", nulls_last=True)
        chosen = [d.name for d in store.resolve_runs(runs, local_root(root))]
    else:
        index = remote_index(storage)
        if runs is None:
            return index.table
        table = index.table
        refs = [runs] if isinstance(runs, str) else runs
        chosen = list(dict.fromkeys(_pick(ref, index, storage).name for ref in refs))
    order = pl.DataFrame({"run_id": chosen}, schema={"run_id": pl.String})
    return order.join(table, on="run_id", how="inner", maintain_order="left")


def run_ids(root: Root, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The ids of every run under ``root`` (for short id prefixes); on an object store from one
    listing of its run folders (a folder a push left without its sidecar too: its id only makes
    others' prefixes longer), in id order, without reading any run.

    Example:
        >>> run_ids("/no/such/root")
        []
    """
    storage = remote_storage(root, storage_options)
    if storage is None:
        return [d.name for d in store.run_dirs(local_root(root))]
    return sorted(name for name in storage.run_prefixes() if store.may_name_run(name))  # folders only: a page per 1,000


def run_name(run_dir: RunDir) -> str | None:
    """The name of the run in ``run_dir`` (``store.run_name`` for a local one).

    Example:
        >>> run_name(Path("/no/such/run")) is None
        True
    """
    if isinstance(run_dir, Path):
        return store.run_name(run_dir)
    events, sidecar = run_dir.load()
    head = sidecar if sidecar is not None else ((events.start if events is not None else None) or {})
    return head.get("name")


def scan_parquet(run_dirs: Sequence[RunDir]) -> pl.LazyFrame:
    """One lazy Parquet scan over the ``metrics.parquet`` of ``run_dirs`` (all local or all in one
    object store): Polars reads only the columns and row groups a query needs, remote ones included.

    Example:
        >>> scan_parquet([Path("/no/such/run")]).collect()
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...
    """
    first = run_dirs[0]
    if isinstance(first, Path):
        return pl.scan_parquet([d / fmt.PARQUET_FILE for d in run_dirs], hive_partitioning=False)  # type: ignore
    return pl.scan_parquet(
        [d / fmt.PARQUET_FILE for d in run_dirs],  # type: ignore[arg-type]  # object keys, as strings
        hive_partitioning=False,
        storage_options=first.storage.polars_options(),
    )
