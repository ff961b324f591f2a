"""The object-store side of ``steplog.storage``: ``ObjectStorage``, a root in S3 or an S3-compatible
store (MinIO, R2, Ceph) through obstore (``pip install 'steplog[cloud]'``). ``storage.open_root``
gives one for an ``s3://`` URL; see ``steplog.storage`` for credentials and options.

Example:
    >>> ObjectStorage.split("s3://bucket/team/logs")
    ('bucket', 'team/logs')
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import store
from .storage import PARTS_DIR, Storage, StorageError

_CLIENT_KEYS = {"allow_http", "allow_invalid_certificates", "connect_timeout", "timeout", "proxy_url", "user_agent"}
_RENAME = {"endpoint_url": "endpoint", "default_region": "region"}
#: Network defaults, so that an unreachable endpoint fails in seconds, not minutes (storage_options win).
_TIMEOUTS = {"connect_timeout": "3s", "timeout": "30s"}
_RETRY = {"max_retries": 2, "retry_timeout": _dt.timedelta(seconds=5)}


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
                    if store.may_name_run(run_id) and "/" not in name:
                        found.setdefault(run_id, {})[name] = _stamp(meta["size"], meta)
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

    def head(self, path: str) -> str | None:
        import obstore

        try:
            meta = obstore.head(self._store, path)
        except FileNotFoundError:
            return None
        except self._failures as exc:
            raise self._error(exc, "read", path) from None
        return _stamp(meta["size"], meta)

    def read_stamped(self, path: str) -> tuple[bytes, str]:
        import obstore

        try:
            result = obstore.get(self._store, path)
            data = bytes(result.bytes())
        except FileNotFoundError:
            raise FileNotFoundError(2, f"{self.uri(path)} does not exist") from None
        except self._failures as exc:
            raise self._error(exc, "read", path) from None
        return data, _stamp(len(data), result.meta)

    def put_if(self, path: str, data: bytes, stamp: str | None) -> str | None:
        import obstore
        import obstore.exceptions

        size = len(data)
        mode: Any = "create" if stamp is None else {"e_tag": stamp.split(":", 1)[1]}
        try:
            return f"{size}:{obstore.put(self._store, path, data, mode=mode)['e_tag']}"
        except (obstore.exceptions.PreconditionError, obstore.exceptions.AlreadyExistsError):
            return None
        except FileNotFoundError:  # an If-Match on an object deleted since
            return None
        except self._failures as exc:
            raise self._error(exc, "write", path) from None

    def run_prefixes(self) -> set[str]:
        import obstore

        try:
            return {name.rstrip("/") for name in obstore.list_with_delimiter(self._store)["common_prefixes"]}
        except self._failures as exc:
            raise self._error(exc, "list", "") from None


def _stamp(size: int, meta: Any) -> str:
    """An object's stamp, ``"<size>:<ETag, or last-modified time when the store gives none>"``."""
    return f"{size}:{meta.get('e_tag') or meta['last_modified']}"
