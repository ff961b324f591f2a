"""The ``steplog ui`` command: ``add_arguments(parser)`` declares its options, ``run(args)`` serves
until interrupted.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="steplog ui")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["--port", "0"])
    >>> args.host, args.port, args.open
    ('127.0.0.1', 0, False)
"""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser

#: Help for ``steplog ui``.
HELP = "serve a live dashboard of the runs (charts of every point, runs table) at http://127.0.0.1:8765"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``steplog ui`` on ``parser``."""
    parser.add_argument(
        "--root",
        default="experiment_logs",
        help="folder holding the runs, or an object-store URL such as s3://bucket/prefix (default: experiment_logs)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--open", action="store_true", help="open the dashboard in a web browser")


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Serve until Ctrl-C (or until ``stop`` is set); return the exit status. A missing root or a
    port in use is reported on stderr with status 2."""
    from .server import serve

    try:
        server = serve(args.root, host=args.host, port=args.port)
    except (OSError, ValueError, ImportError) as exc:
        print(f"steplog ui: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}", file=sys.stderr)
        return 2
    print(f"steplog ui: serving {args.root} at {server.url} (Ctrl-C to stop)", flush=True)
    if args.open:
        webbrowser.open(server.url)
    try:
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
