"""Where a root's bytes live: a local folder or an object-store URL (``s3://bucket/prefix``).

``open_root(root)`` gives a ``Storage`` with the few operations everything past one machine needs:
``list`` (names and sizes under a prefix), ``read`` (whole object or a byte range), ``put``
(atomic: a reader sees the old object or the new one, never half of one), ``delete``, and
``polars_options`` (the ``storage_options`` for Polars' own cloud scanning of Parquet).

Local folders need nothing more than the standard library. URLs use obstore (``pip install
'steplog[cloud]'``; ``ObjectStorage``, in ``steplog.objectstore``), chosen over fsspec/s3fs
because it is one small compiled package (no aiobotocore/fsspec stack), and because it is the
same Rust ``object_store`` crate Polars scans with, so credentials, endpoints and
``storage_options`` keys mean the same to both.
Credentials and endpoints come the usual way: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` (a plain ``http://`` endpoint, such
as MinIO or a local test server, is allowed automatically), or ``storage_options`` with the same
names in lower case (``aws_endpoint_url``, ``aws_access_key_id``...), which win over the environment.

Example:
    >>> import tempfile
    >>> s = open_root(tempfile.mkdtemp())
    >>> _ = s.put("run/a.txt", b"hello"); s.list("run"), s.read("run/a.txt", 1, 3)
    ({'run/a.txt': 5}, b'el')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import format as fmt
from . import store
from .atomic import write_atomically

#: The schemes a root URL may have (``file://`` is a local folder).
SCHEMES = ("s3", "s3a", "file")
_RUN_FILES = frozenset((fmt.EVENTS_FILE, fmt.SIDECAR_FILE, fmt.PARQUET_FILE))
_LOCAL_STAMPED = (fmt.SIDECAR_FILE, fmt.EVENTS_FILE)


#: Folder of a run's live part objects (``steplog sync``): ``<run id>/parts/<events file>/<start>-<end>``,
#: byte offsets of the part in the local events file, zero-padded so names sort in file order.
PARTS_DIR = "parts"


def part_name(run_id: str, events_file: str, start: int, end: int) -> str:
    """The object name of the bytes ``[start, end)`` of a run's events file.

    Example:
        >>> part_name("r", "events.jsonl", 0, 1234)
        'r/parts/events.jsonl/0000000000000000-0000000000001234'
    """
    return f"{run_id}/{PARTS_DIR}/{events_file}/{start:016d}-{end:016d}"


def parts_of(listing: dict[str, int], run_id: str) -> dict[str, list[tuple[int, int, str]]]:
    """``{events file: [(start, end, object name), ...] in order}`` of a run's part objects in a
    ``Storage.list`` listing; names that are not parts are ignored.

    Example:
        >>> parts_of({"r/parts/events.jsonl/0000000000000000-0000000000000010": 10, "r/run.json": 5}, "r")
        {'events.jsonl': [(0, 10, 'r/parts/events.jsonl/0000000000000000-0000000000000010')]}
    """
    found: dict[str, list[tuple[int, int, str]]] = {}
    prefix = f"{run_id}/{PARTS_DIR}/"
    for name in listing:
        if not name.startswith(prefix):
            continue
        events_file, _, span = name[len(prefix) :].rpartition("/")
        start, _, end = span.partition("-")
        if events_file and start.isdigit() and end.isdigit():
            found.setdefault(events_file, []).append((int(start), int(end), name))
    return {events_file: sorted(spans) for events_file, spans in found.items()}


def read_parts(storage: Storage, run_id: str, events_file: str = fmt.EVENTS_FILE) -> bytes:
    r"""A live run's events file as its part objects hold it: the parts read in order while they
    join end to start (a gap, left by a sync killed between two objects, ends the stream there).

    Example:
        >>> import tempfile
        >>> s = open_root(tempfile.mkdtemp())
        >>> _ = s.put(part_name("r", "events.jsonl", 0, 2), b"a\n")
        >>> _ = s.put(part_name("r", "events.jsonl", 2, 4), b"b\n")
        >>> read_parts(s, "r")
        b'a\nb\n'
    """
    chunks, offset = [], 0
    for start, end, name in parts_of(storage.list(f"{run_id}/{PARTS_DIR}/"), run_id).get(events_file, []):
        if start != offset:
            break
        chunks.append(storage.read(name))
        offset = end
    return b"".join(chunks)


def _local_stamp(st: os.stat_result) -> str:
    # the inode changes with every rename into place, so a rewrite within one mtime tick still shows
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


class StorageError(OSError):
    """An object store could not be reached or refused a request; the message names the URL."""


def is_url(root: str | os.PathLike) -> bool:
    """Whether ``root`` is an object-store URL rather than a local folder (``file://`` is local).

    Example:
        >>> is_url("s3://bucket/logs"), is_url("experiment_logs"), is_url("file:///tmp/logs")
        (True, False, False)
    """
    text = os.fspath(root)
    return "://" in text and not text.startswith("file://")


def refuse_url_root(root: str | os.PathLike) -> None:
    """Refuse to log to an object-store URL (object stores cannot append), pointing to push and sync.
    ``steplog.init`` calls it on its ``root``.

    Example:
        >>> refuse_url_root("experiment_logs")
        >>> refuse_url_root("s3://bucket/logs")
        Traceback (most recent call last):
        ...
        ValueError: cannot log to 's3://bucket/logs': object stores cannot append. Log to a local folder ...
    """
    if is_url(root):
        url = os.fspath(root)
        raise ValueError(
            f"cannot log to {url!r}: object stores cannot append. Log to a local folder "
            f'(root="experiment_logs") and copy runs with `steplog push --to {url}` (compacted runs) '
            f"or `steplog sync --to {url}` (running runs, live)"
        )


def open_root(root: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> Storage:
    """The ``Storage`` of a root: ``LocalStorage`` for a folder (or ``file://`` URL), else an
    ``ObjectStorage`` (needs ``steplog[cloud]``; an error names the extra when it is missing).

    Example:
        >>> open_root("ftp://host/x")
        Traceback (most recent call last):
        ...
        ValueError: unsupported root URL 'ftp://host/x': steplog reads folders and s3:// URLs ...
    """
    text = os.fspath(root)
    if not is_url(text):
        return LocalStorage(text.removeprefix("file://"))
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"unsupported root URL {text!r}: steplog reads folders and s3:// URLs "
            f"(s3-compatible stores via AWS_ENDPOINT_URL)"
        )
    return ObjectStorage(text, storage_options)


class Storage:
    """What every root offers; paths are relative to the root, with '/' separators."""

    url: str

    def list(self, prefix: str = "") -> dict[str, int]:
        """``{path: size}`` of every object under ``prefix`` (all of the root when empty)."""
        raise NotImplementedError

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """The bytes of ``path``, or of ``[start, end)``; FileNotFoundError when it is missing."""
        raise NotImplementedError

    def put(self, path: str, data: bytes | Path) -> str:
        """Write ``path`` atomically (bytes, or a local file's contents): readers see the previous
        object or this one, whole. Returns its stamp, as ``run_files`` would give it."""
        raise NotImplementedError

    def delete(self, path: str) -> None:
        """Remove ``path``; nothing happens when it is already gone."""
        raise NotImplementedError

    def run_prefixes(self) -> set[str]:
        """The names of the root's top-level folders (run ids, ``_catalog``...): on an object store
        one listing with the delimiter ``/``, a page per 1,000 folders, whatever they hold."""
        raise NotImplementedError

    def head(self, path: str) -> str | None:
        """The stamp of ``path`` (as ``put`` and ``run_files`` give it), None when it is missing."""
        raise NotImplementedError

    def read_stamped(self, path: str) -> tuple[bytes, str]:
        """``(bytes, stamp)`` of ``path`` from one read; FileNotFoundError when it is missing."""
        raise NotImplementedError

    def put_if(self, path: str, data: bytes, stamp: str | None) -> str | None:
        """Write ``path`` only if it still has ``stamp`` (None: only if it does not exist): a
        compare-and-swap (S3 conditional writes). Returns the new stamp, or None when the object
        changed meanwhile (read it again and retry). Object stores only."""
        raise NotImplementedError

    def run_files(
        self, run_ids: Sequence[str] | None = None, *, splits: Sequence[str] | None = None
    ) -> dict[str, dict[str, str]]:
        """``{run id: {file name: stamp}}`` for the files directly in each run folder of the root
        (or of the runs ``run_ids`` names); a stamp (``"<size>:<mtime or etag>"``) changes whenever
        the file is rewritten. ``splits`` may let an object store list in parallel ranges. A
        local root stamps only the sidecar and events file (two stats a run) and gives ``"?"``
        for a Parquet file, taken to be there beside its sidecar."""
        raise NotImplementedError

    def uri(self, path: str) -> str:
        """The full location of ``path``, as Polars, DuckDB or Spark would be given it."""
        return f"{self.url.rstrip('/')}/{path}"

    def polars_options(self) -> dict[str, str] | None:
        """``storage_options`` for ``pl.scan_parquet(self.uri(...))``; None for a local root."""
        return None


class LocalStorage(Storage):
    """A root on the local filesystem (or NFS/Lustre): plain files, renamed into place.

    Example:
        >>> import tempfile
        >>> s = LocalStorage(tempfile.mkdtemp())
        >>> _ = s.put("a/b.bin", b"x"); s.delete("a/b.bin"); s.delete("a/b.bin"); s.list()
        {}
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.url = str(self.folder)

    def list(self, prefix: str = "") -> dict[str, int]:
        base = self.folder / prefix if prefix else self.folder
        found: dict[str, int] = {}
        for dirpath, _, files in os.walk(base):
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    found[os.path.relpath(full, self.folder).replace(os.sep, "/")] = os.stat(full).st_size
                except FileNotFoundError:
                    continue
        return dict(sorted(found.items()))

    def run_files(
        self, run_ids: Sequence[str] | None = None, *, splits: Sequence[str] | None = None
    ) -> dict[str, dict[str, str]]:
        # os.scandir and plain strings: 10,000 runs in tens of milliseconds (pathlib costs 10x that)
        folder = os.fspath(self.folder)
        if run_ids is None:
            try:
                with os.scandir(folder) as entries:
                    run_ids = sorted(e.name for e in entries if store.may_name_run(e.name) and e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                return {}
        found: dict[str, dict[str, str]] = {}
        for run_id in run_ids:
            files = {}
            for name in _LOCAL_STAMPED:  # two stats a run; the Parquet file is taken to be there with its sidecar
                try:
                    st = os.stat(os.path.join(folder, run_id, name))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                files[name] = _local_stamp(st)
            if fmt.SIDECAR_FILE in files:
                files[fmt.PARQUET_FILE] = "?"
            elif not files and os.path.isdir(os.path.join(folder, run_id, PARTS_DIR)):
                files[PARTS_DIR] = "?"  # synced here as parts (steplog sync to a folder)
            if files or store.is_run_id(run_id):  # a folder of another shape is a run only with run files
                found[run_id] = files
        return found

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        with open(self.folder / path, "rb") as f:
            if start:
                f.seek(start)
            return f.read() if end is None else f.read(end - (start or 0))

    def put(self, path: str, data: bytes | Path) -> str:
        if isinstance(data, Path):
            data = data.read_bytes()
        target = self.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        return _local_stamp(os.stat(write_atomically(target, data)))

    def run_prefixes(self) -> set[str]:
        try:
            with os.scandir(self.folder) as entries:
                return {e.name for e in entries if e.is_dir()}
        except (FileNotFoundError, NotADirectoryError):
            return set()

    def head(self, path: str) -> str | None:
        try:
            return _local_stamp(os.stat(self.folder / path))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def delete(self, path: str) -> None:
        try:
            (self.folder / path).unlink()
        except FileNotFoundError:
            pass


from .objectstore import ObjectStorage  # noqa: E402  (it builds on Storage, above)
