"""Smoke tests: every benchmark runs at a tiny size (the figures themselves are not checked: tests
never assert timings; benchmarks/RESULTS.md holds the measured ones)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_script(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_the_suite_runs_at_a_tiny_size_and_saves_nothing():
    results = BENCHMARKS / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    table = run_script(str(BENCHMARKS / "run.py"), "--tiny")
    for mode in ("process", "buffered", "fsync"):
        assert f"log() `{mode}` / baseline" in table
    assert "RSS growth over 20,000 steps, `process`" in table
    assert "cost of the value type check" in table
    assert "reference: steplog (process)" in table
    assert "queries (bench_queries.py)" in table
    assert (results.read_bytes() if results.exists() else None) == before


def test_the_gpu_sync_benchmark_runs_at_a_tiny_size():
    pytest.importorskip("torch")
    table = run_script(str(BENCHMARKS / "gpu_sync.py"), "--tiny")
    for mode in ("none", "item", "steplog"):
        assert f"| {mode} |" in table
