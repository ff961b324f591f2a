"""The examples run as documented, each in a fresh folder (they write into ./experiment_logs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import steplog

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _run(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_examples_1_to_3(tmp_path: Path) -> None:
    out = _run("basic_tracking.py", tmp_path).stdout
    assert "Experiment linreg_baseline" in out and "gradient steps: 149" in out
    _run("multiple_runs.py", tmp_path)
    runs = steplog.runs(tmp_path / "experiment_logs")
    assert runs.height == 6 and set(runs["status"]) == {"finished"}
    out = _run("load_and_compare.py", tmp_path).stdout
    assert "6 experiments" in out and "best by val_loss:" in out
    assert pl.read_csv(next((tmp_path / "experiment_logs").glob("*.csv"))).height == 300


def test_example_3_without_runs_says_what_to_do(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "load_and_compare.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1 and "run examples/basic_tracking.py" in done.stderr


def test_cs336_training_loop(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = _run(
        "cs336_training_loop.py", tmp_path, "--max-iters", "30", "--eval-interval", "10", "--eval-iters", "2"
    ).stdout
    assert "Experiment cs336_tiny" in out
    history = steplog.history("cs336_tiny", root=tmp_path / "experiment_logs")
    assert history.height == 30 and history["val_loss"].drop_nulls().len() == 4
    assert history["gradient_step"].max() == 14
