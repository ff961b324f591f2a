"""Shared fixtures: a fresh root per test, a helper to run writer scripts in a subprocess, and a run
whose writer really died (SIGKILL): tests use steplog's public API only."""

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
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


_CRASHING_WRITER = """
import os, sys, steplog
run = steplog.init(name=sys.argv[2], root=sys.argv[1])
for loss in sys.argv[3:]:
    run.log({"loss": float(loss)})
print(run.id, flush=True)
os.kill(os.getpid(), 9)
"""


def make_crashed_run(root, name: str, losses: tuple[float, ...] = (1.0,)) -> str:
    """A run named ``name`` whose writer logged ``losses`` (one step each) and was SIGKILLed; its id."""
    proc = python_subprocess(_CRASHING_WRITER, str(root), name, *map(str, losses))
    run_id = proc.stdout.readline().strip()
    proc.wait()
    assert run_id, proc.stderr.read()
    return run_id
