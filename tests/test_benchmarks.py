"""Smoke tests: every benchmark runs at a tiny size (the figures themselves are not checked: tests
never assert timings; benchmarks/RESULTS.md holds the measured ones)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(filename: str):
    """Import a benchmark script from benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(filename.removesuffix(".py"), BENCHMARKS / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_the_suite_runs_at_a_tiny_size_and_saves_nothing():
    results = BENCHMARKS / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    table = run_script(str(BENCHMARKS / "run.py"), "--tiny")
    for fixture in ("8 metrics", "8 named metrics, step="):
        for mode in ("mmap", "process", "buffered", "fsync"):
            assert f"{fixture}: `{mode}` / bare write, mean (median)" in table
    mmap_row = next(line for line in table.splitlines() if line.startswith("| 8 metrics: `mmap` / bare write"))
    assert mmap_row.split("|")[3].strip() == "<= 0.7x" and mmap_row.split("|")[4].strip() in ("pass", "FAIL")
    for row in (
        "RSS growth over 20,000 steps, `mmap`",
        "log() stage (log_breakdown.py): encode, mmap",
        "`import steplog` adds",
        "`mmap`: init / finish, later runs",
        "reference: steplog (process)",
    ):
        assert row in table
    assert "queries (bench_queries.py)" in table
    for row in (
        "live runs: one steplog.scan query",
        "runs compacted: loop of history() per run",
        "history() of a live run of 20,000 events",
        "compaction of that run",
    ):
        assert row in table
    assert (results.read_bytes() if results.exists() else None) == before


def test_the_gpu_sync_benchmark_runs_at_a_tiny_size():
    pytest.importorskip("torch")
    table = run_script(str(BENCHMARKS / "gpu_sync.py"), "--tiny")
    for mode in ("none", "item", "steplog"):
        assert f"| {mode} |" in table


def test_bench_queries_runs_at_tiny_size(tmp_path, capsys):
    results = load_benchmark("bench_queries.py").main(["--tiny", "--repeat", "1", "--root", str(tmp_path)])
    assert results["compact_events_per_s"] > 0 and results["runs_s"] > 0 and results["best_s"] > 0
    out = capsys.readouterr().out
    assert "| compact one run of 10,000 events |" in out and "best('val_loss') over 10 compacted runs" in out


def test_bench_reads_runs_at_tiny_size():
    rows = load_benchmark("bench_reads.py").main(["--tiny", "--repeat", "1"])
    targets = {figure: (target, verdict) for figure, _, target, verdict in rows}
    target, verdict = targets["10 live runs: loop of history() per run"]
    assert target == "<= 0.3 s" and verdict in ("pass", "FAIL")
    assert any(figure.startswith("history() of that run: peak memory") for figure in targets)


def test_bench_cli_runs_at_tiny_size(tmp_path, capsys):
    results = load_benchmark("bench_cli.py").main(["--tiny", "--repeat", "1", "--root", str(tmp_path)])
    assert set(results) == {"ls_s", "ls_json_s", "best_s", "compare_s", "show_s"} and all(
        v > 0 for v in results.values()
    )
    assert "| steplog ls over 10 compacted runs |" in capsys.readouterr().out


def test_bench_tracker_runs_at_tiny_size(capsys):
    results = load_benchmark("bench_tracker.py").main(["--tiny"])
    assert results["bare_us"] > 0 and results["tracked_us"] > 0
    assert "log_metrics + increment_gradient_step" in capsys.readouterr().out


def test_bench_ranks_runs_at_tiny_size(capsys):
    results = load_benchmark("bench_ranks.py").main(["--tiny"])
    assert results["cpu"]["ratio"] > 0 and results["history"]["compacted_s"] > 0
    out = capsys.readouterr().out
    assert "4 ranks / 1 process, mean CPU per call" in out and "history(rank='all'), 8 ranks" in out
