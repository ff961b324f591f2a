"""The query benchmark runs end to end at its smallest size (figures are not checked here: they go
to benchmarks/RESULTS.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_queries.py"


def test_bench_queries_runs_at_tiny_size(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_queries", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--tiny", "--repeat", "1", "--root", str(tmp_path)])
    assert results["compact_events_per_s"] > 0 and results["runs_s"] > 0 and results["best_s"] > 0
    out = capsys.readouterr().out
    assert "| compact one run of 10,000 events |" in out and "best('val_loss') over 10 compacted runs" in out
