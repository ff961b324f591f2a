"""How steplog drives a headless browser at its dashboard (the browser tests, the UI benchmark and the
screenshot script): Debian's Chromium, started with the flags this sandboxed, offline machine needs.

Example:
    >>> "--no-sandbox" in CHROMIUM_ARGS
    True
"""

from __future__ import annotations

import shutil

#: Flags for headless Chromium as root, with no network beyond loopback (no background connections).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The Chromium executable: the one on PATH, else Debian's ``/usr/bin/chromium``.

    Example:
        >>> chromium_path().endswith("chromium")
        True
    """
    return shutil.which("chromium") or "/usr/bin/chromium"
