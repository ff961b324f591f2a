"""Shared fixtures: a fresh root per test and a helper to run writer scripts in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty experiment root (not created yet: steplog makes it)."""
    return tmp_path / "logs"


def python_subprocess(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start `python -c code args...` with steplog importable; stdout is a pipe of text lines."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)
