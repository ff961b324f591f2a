"""Where a root's bytes live: a local folder or an object-store URL (``s3://bucket/prefix``).

``open_root(root)`` gives a ``Storage`` with the few operations everything past one machine needs:
``list`` (names and sizes under a prefix), ``read`` (whole object or a byte range), ``put``
(atomic: a reader sees the old object or the new one, never half of one), ``delete``, and
``polars_options`` (the ``storage_options`` for Polars' own cloud scanning of Parquet).

Local folders need nothing more than the standard library. URLs use obstore (``pip install
'steplog[cloud]'``), chosen over fsspec/s3fs because it is one small compiled package (no
aiobotocore/fsspec stack), and because it is the same Rust ``object_store`` crate Polars scans
with, so credentials, endpoints and ``storage_options`` keys mean the same to both.
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

import datetime as _dt
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import format as fmt
from . import store

#: The schemes a root URL may have (``file://`` is a local folder).
SCHEMES = ("s3", "s3a", "file")
_CLIENT_KEYS = {"allow_http", "allow_invalid_certificates", "connect_timeout", "timeout", "proxy_url", "user_agent"}
_RENAME = {"endpoint_url": "endpoint", "default_region": "region"}
#: Network defaults, so that an unreachable endpoint fails in seconds, not minutes (storage_options win).
_TIMEOUTS = {"connect_timeout": "3s", "timeout": "30s"}
_RUN_FILES = frozenset((fmt.EVENTS_FILE, fmt.SIDECAR_FILE, fmt.PARQUET_FILE))
_LOCAL_STAMPED = (fmt.SIDECAR_FILE, fmt.EVENTS_FILE)
_RETRY = {"max_retries": 2, "retry_timeout": _dt.timedelta(seconds=5)}


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
                    run_ids = sorted(e.name for e in entries if store.is_run_id(e.name) and e.is_dir())
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
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
        store.fsync_directory(target.parent)
        return _local_stamp(os.stat(target))

    def delete(self, path: str) -> None:
        try:
            (self.folder / path).unlink()
        except FileNotFoundError:
            pass


class ObjectStorage(Storage):
    """A root in an S3-compatible object store, through obstore. A PUT is atomic in S3.

    Example:
        >>> ObjectStorage.split("s3://bucket/some/prefix/")
        ('bucket', 'some/prefix')
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        try:
            import obstore.exceptions
            from obstore.store import S3Store
        except ImportError:
            raise ImportError(
                f"the root {url!r} is an object-store URL, which needs obstore: pip install 'steplog[cloud]'"
            ) from None
        self.url = url.rstrip("/")
        self.bucket, self.prefix = self.split(url)
        self.options = dict(storage_options or {})
        self._failures = (OSError, obstore.exceptions.BaseError)
        config, client = self._configs()
        self.endpoint = config.get("endpoint") or "AWS"
        self._check_credentials(config)
        self._store = S3Store(
            self.bucket,
            prefix=self.prefix or None,
            config=config,  # type: ignore[arg-type]  # plain dicts of obstore's TypedDict keys
            client_options=client,  # type: ignore[arg-type]
            retry_config=dict(_RETRY),  # type: ignore[arg-type]
        )

    @staticmethod
    def split(url: str) -> tuple[str, str]:
        """(bucket, key prefix) of an ``s3://bucket/prefix`` URL."""
        rest = url.split("://", 1)[1].strip("/")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"the URL {url!r} names no bucket: write s3://BUCKET/prefix")
        return bucket, prefix.strip("/")

    def _check_credentials(self, config: dict[str, Any]) -> None:
        """Fail at once, naming what to set, when no credentials can be found and the instance
        metadata service is disabled (``AWS_EC2_METADATA_DISABLED``): else obstore looks there."""
        sources = (
            "AWS_ACCESS_KEY_ID",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        )
        if (
            config.get("access_key_id")
            or str(config.get("skip_signature", "")).lower() == "true"
            or any(os.environ.get(name) for name in sources)
        ):
            return
        if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
            raise StorageError(
                f"cannot open {self.url} (endpoint {self.endpoint}): no AWS credentials: set "
                f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass storage_options="
                f"{{'aws_access_key_id': ..., 'aws_secret_access_key': ...}}"
            )

    def _configs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(obstore S3 config, client options) from the environment, then ``storage_options``."""
        config: dict[str, Any] = {}
        client: dict[str, Any] = dict(_TIMEOUTS)
        for env in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
            if os.environ.get(env):
                config["endpoint"] = os.environ[env]
                break
        for key, value in self.options.items():
            name = key.lower().removeprefix("aws_")
            name = _RENAME.get(name, name)
            value = str(value).lower() if isinstance(value, bool) else value
            (client if name in _CLIENT_KEYS else config)[name] = value
        if str(config.get("endpoint", "")).startswith("http://"):
            client.setdefault("allow_http", True)
        return config, client

    def polars_options(self) -> dict[str, str]:
        options = {
            key if key.startswith("aws_") or key in _CLIENT_KEYS else f"aws_{key}": str(value)
            for key, value in self.options.items()
        }
        config, client = self._configs()
        if "endpoint" in config:
            options.setdefault("aws_endpoint_url", config["endpoint"])
        if client.get("allow_http"):
            options.setdefault("aws_allow_http", "true")
        return options

    def _error(self, exc: Exception, action: str, path: str = "") -> Exception:
        if isinstance(exc, FileNotFoundError) and "NoSuchBucket" not in str(exc):
            return FileNotFoundError(2, f"{self.uri(path)} does not exist")
        text = str(exc)
        where = f"{self.uri(path)} (endpoint {self.endpoint})"
        if "NoSuchBucket" in text:
            why = f"the bucket {self.bucket!r} does not exist; create it first"
        elif "169.254.169.254" in text or "credential" in text.lower() or "InvalidAccessKeyId" in text:
            why = (
                "no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or pass storage_options={'aws_access_key_id': ..., 'aws_secret_access_key': ...}"
            )
        elif "error sending request" in text or "connect" in text.lower() or "timed out" in text.lower():
            why = "the endpoint cannot be reached; check AWS_ENDPOINT_URL / storage_options['aws_endpoint_url']"
        else:
            why = text.split("\n")[0][:300]
        return StorageError(f"cannot {action} {where}: {why}")

    def list(self, prefix: str = "") -> dict[str, int]:
        import obstore

        try:
            return {m["path"]: m["size"] for batch in obstore.list(self._store, prefix or None) for m in batch}
        except self._failures as exc:
            raise self._error(exc, "list", prefix) from None

    def run_files(
        self, run_ids: Sequence[str] | None = None, *, splits: Sequence[str] | None = None
    ) -> dict[str, dict[str, str]]:
        """As ``Storage.run_files``; ``splits`` (sorted run ids, e.g. from the catalog) list the
        key ranges between them in parallel: a listing is pages of 1,000 names, one after another."""
        wanted = None if run_ids is None else set(run_ids)
        ranges: list[tuple[str | None, str | None, str | None]]
        if run_ids is not None and len(run_ids) <= 20:
            ranges = [(f"{r}/", None, None) for r in run_ids]
        else:
            bounds = [None, *sorted(set(splits or [])), None]
            ranges = [(None, low, high) for low, high in itertools.pairwise(bounds)]
        found: dict[str, dict[str, str]] = {}
        with ThreadPoolExecutor(min(len(ranges), 8) or 1) as pool:
            for part in pool.map(lambda r: self._list_range(*r), ranges):
                for run_id, files in part.items():
                    if wanted is None or run_id in wanted:
                        found.setdefault(run_id, {}).update(files)
        return found

    def _list_range(self, prefix: str | None, low: str | None, high: str | None) -> dict[str, dict[str, str]]:
        """The run files whose names sort after ``low`` and before ``high`` (None: no bound)."""
        import obstore

        found: dict[str, dict[str, str]] = {}
        try:
            for batch in obstore.list(self._store, prefix, offset=low, chunk_size=1000):
                for meta in batch:
                    run_id, _, name = meta["path"].partition("/")
                    if high is not None and run_id >= high:
                        return found
                    if name.startswith(f"{PARTS_DIR}/"):
                        name = PARTS_DIR  # a live run synced as parts: listed as such, not stamped
                    if store.is_run_id(run_id) and "/" not in name:
                        stamp = meta.get("e_tag") or meta["last_modified"]
                        found.setdefault(run_id, {})[name] = f"{meta['size']}:{stamp}"
        except self._failures as exc:
            raise self._error(exc, "list", prefix or "") from None
        return found

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        import obstore

        try:
            if start is None and end is None:
                return bytes(obstore.get(self._store, path).bytes())
            if end is None:
                end = obstore.head(self._store, path)["size"]
            return bytes(obstore.get_range(self._store, path, start=start or 0, end=end)) if end > (start or 0) else b""
        except self._failures as exc:
            raise self._error(exc, "read", path) from None

    def put(self, path: str, data: bytes | Path) -> str:
        import obstore

        size = data.stat().st_size if isinstance(data, Path) else len(data)
        try:
            return f"{size}:{obstore.put(self._store, path, data)['e_tag']}"
        except self._failures as exc:
            raise self._error(exc, "write", path) from None

    def delete(self, path: str) -> None:
        import obstore

        try:
            obstore.delete(self._store, path)
        except FileNotFoundError:
            pass
        except self._failures as exc:
            raise self._error(exc, "delete", path) from None
