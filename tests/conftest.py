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


def simulate_writer_death(run) -> None:
    """Make an open Run look like its process died (as after SIGKILL), without killing the tests:
    its files are closed, its kernel lock is dropped (the lock file stays), exit will not finish it."""
    import steplog

    os.close(run._fd)
    os.close(steplog.store._held.pop(os.path.realpath(run.dir)))
    steplog.writer._open_runs.discard(run)


_CRASHING_WRITER = """
import os, sys, steplog
run = steplog.init(name=sys.argv[2], root=sys.argv[1])
run.log({"loss": 1.0})
print(run.id, flush=True)
os.kill(os.getpid(), 9)
"""


def make_crashed_run(root, name: str) -> str:
    """A run named ``name`` whose writer logged one step (loss 1.0) and was SIGKILLed; its id."""
    proc = python_subprocess(_CRASHING_WRITER, str(root), name)
    run_id = proc.stdout.readline().strip()
    proc.wait()
    assert run_id, proc.stderr.read()
    return run_id
