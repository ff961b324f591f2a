"""``steplog ui``: a live local dashboard of the runs under a root, showing every point.

``serve(root, host="127.0.0.1", port=8765)`` serves it in a background thread and returns a server
with ``.url`` and ``.stop()``; ``port=0`` picks a free port. See docs/dashboard.md.

Example:
    >>> import tempfile, steplog.ui
    >>> server = steplog.ui.serve(tempfile.mkdtemp(), port=0)
    >>> server.url.startswith("http://127.0.0.1:")
    True
    >>> server.stop()
"""

from .server import Server, serve

__all__ = ["Server", "serve"]
