"""The dashboard's HTTP server: the standard library's ``ThreadingHTTPServer`` serving the static
page (from the package) and the JSON API, read-only, in a background thread.

Example:
    >>> import tempfile, urllib.request
    >>> server = serve(tempfile.mkdtemp(), port=0)
    >>> urllib.request.urlopen(server.url + "api/runs").status
    200
    >>> server.stop()
"""

from __future__ import annotations

import errno
import logging
import mimetypes
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from .. import catalog
from .api import handle
from .data import Data

log = logging.getLogger("steplog.ui")

#: Hosts that only this machine can reach.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/`` by URL path (``/`` is index.html): the only files ever served."""
    files = {}
    base = resources.files("steplog.ui") / "static"
    for entry in _walk(base, ""):
        name, resource = entry
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        files["/static/" + name] = (resource.read_bytes(), kind)
    files["/"] = files["/static/index.html"]
    return files


def _walk(folder: Any, prefix: str) -> list[tuple[str, Any]]:
    found = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found += _walk(entry, prefix + entry.name + "/")
        elif not entry.name.startswith("."):
            found.append((prefix + entry.name, entry))
    return found


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY the body waits for the browser's delayed
    # ACK of the headers (40 ms a request on Linux).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path.startswith("/api/"):
                status, payload = handle(self.server.data, url.path, url.query)
                self._send(status, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), "application/json")
            elif url.path in self.server.files:
                body, kind = self.server.files[url.path]
                self._send(200, body, kind, cache="no-cache")
            else:
                self._send(404, orjson.dumps({"error": f"no such page {url.path!r}"}), "application/json")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # logged, answered with JSON: never a traceback page
            log.exception("steplog ui: %s failed", self.path)
            self._send(500, orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"}), "application/json")

    def do_HEAD(self) -> None:
        self._refuse()

    def _refuse(self) -> None:
        self._send(
            405,
            orjson.dumps({"error": f"{self.command} is not allowed: the dashboard is read-only (GET)"}),
            "application/json",
            allow="GET",
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _send(self, status: int, body: bytes, kind: str, cache: str = "no-store", allow: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; "
            "style-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'",
        )
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], data: Data) -> None:
        self.data = data
        self.files = _static_files()
        self._open: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        request, address = super().get_request()
        self._open.add(request)
        return request, address

    def shutdown_request(self, request: Any) -> None:
        self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open (kept-alive) connection: a stopped server answers nothing more."""
        for request in list(self._open):
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Server:
    """A running dashboard: ``url`` to open, ``stop()`` to shut it down. See ``serve``."""

    def __init__(self, httpd: _Server, host: str) -> None:
        self._httpd = httpd
        port = httpd.server_address[1]
        self.host, self.port = host, port
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.1,), name="steplog-ui", daemon=True)
        self._thread.start()
        # Read the runs table once in the background, so that the first page is answered from memory;
        # serving starts at once whatever the root holds.
        threading.Thread(target=self._warm, name="steplog-ui-warm", daemon=True).start()

    def _warm(self) -> None:
        try:
            self._httpd.data.runs_table()
        except Exception:  # a page asking will report it
            log.debug("steplog ui: reading the runs table in the background failed", exc_info=True)

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    root: str | os.PathLike | Any = "experiment_logs",
    host: str = "127.0.0.1",
    port: int = 8765,
    storage_options: dict[str, Any] | None = None,
) -> Server:
    """Serve the dashboard of the runs under ``root`` in a background thread; return the server
    (``.url``, ``.stop()``). ``port=0`` picks a free port. Nothing is read until a page asks.
    ``root`` may be an object-store URL (``s3://bucket/prefix``; ``storage_options`` as for the
    queries) or an opened ``steplog.storage.open_root(...)``: its compacted runs and the live runs
    ``steplog sync`` uploads are served, read-only, through the same API.

    Example:
        >>> import tempfile
        >>> with serve(tempfile.mkdtemp(), port=0) as server:
        ...     server.url.startswith("http://127.0.0.1:")
        True
    """
    data = _data(root, storage_options)
    if host not in LOCAL_HOSTS:
        print(
            f"steplog ui: warning: serving on {host}: anyone who can reach port {port} can read every run under {root}",
            file=sys.stderr,
        )
    try:
        httpd = _Server((host, port), data)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                exc.errno,
                f"port {port} on {host} is in use: stop what uses it, or choose another "
                f"port (--port N, or --port 0 for a free one)",
            ) from None
        raise
    return Server(httpd, host)


def _data(root: Any, storage_options: dict[str, Any] | None) -> Data:
    """The dashboard's reader of ``root``: a local folder (which must exist), an object-store URL,
    or an opened ``steplog.storage.Storage`` (as the queries take it)."""
    from .. import roots

    storage = roots.remote_storage(root, storage_options)  # None for a folder, file:// or LocalStorage
    if storage is not None:
        from .remote import RemoteData

        # reachable, bucket there, credentials good: fail now (one small listing), not on every page
        storage.list(catalog.CATALOG_FILE.rsplit("/", 1)[0] + "/")
        return RemoteData(storage)
    folder = Path(str(roots.local_root(root)).removeprefix("file://"))
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder}: give the root that holds your runs (--root)")
    return Data(folder)
