"""What a run records about where it ran: host, pid, Python, argv, working directory, git state.

The git commit and dirty flag cost two ``git`` subprocesses (about 5-10 ms); they are taken once per
process and working directory and reused by every later run of that process (a sweep starting
thousands of short runs pays them once). A repository changed while the process runs is seen by
the next process, not by the next run.

Example:
    >>> meta = metadata()
    >>> sorted(k for k in meta if not k.startswith("git_"))
    ['argv', 'cwd', 'host', 'pid', 'platform', 'python', 'steplog_version']
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from typing import Any

#: (pid, working directory) -> git state; a forked child's pid differs, so it takes its own.
_git_cache: dict[tuple[int, str], dict[str, Any]] = {}
#: What does not change while a process runs: host, Python, platform.
_static: dict[str, Any] = {}


def metadata() -> dict[str, Any]:
    """The metadata of a run started now (see the module docstring).

    Example:
        >>> metadata()["pid"] == os.getpid()
        True
    """
    from . import __version__

    if not _static:
        _static.update(host=socket.gethostname(), python=platform.python_version(), platform=platform.platform())
    cwd = os.getcwd()
    meta: dict[str, Any] = {
        "host": _static["host"],
        "pid": os.getpid(),
        "python": _static["python"],
        "platform": _static["platform"],
        "argv": list(sys.argv),
        "cwd": cwd,
        "steplog_version": __version__,
    }
    meta.update(git_state(cwd))
    return meta


def git_state(cwd: str, timeout: float = 2.0) -> dict[str, Any]:
    """The git commit and dirty flag of ``cwd``, once per process and directory; {} outside git
    or when git is missing or slow.

    Example:
        >>> import tempfile
        >>> git_state(tempfile.mkdtemp()) in ({}, )  # a fresh temporary folder is in no repository
        True
    """
    key = (os.getpid(), cwd)
    if key not in _git_cache:
        _git_cache[key] = _ask_git(cwd, timeout)
    return dict(_git_cache[key])


def _ask_git(cwd: str, timeout: float) -> dict[str, Any]:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, timeout=timeout, text=True, cwd=cwd)
        if head.returncode != 0:
            return {}
        state: dict[str, Any] = {"git_commit": head.stdout.strip(), "git_dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            timeout=timeout,
            text=True,
            cwd=cwd,
        )
        if status.returncode == 0:
            state["git_dirty"] = bool(status.stdout.strip())
        return state
    except (OSError, subprocess.SubprocessError):
        return {}
