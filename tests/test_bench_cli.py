"""The CLI benchmark runs end to end at its smallest size (figures go to benchmarks/RESULTS.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cli.py"


def test_bench_cli_runs_at_tiny_size(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_cli", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--tiny", "--repeat", "1", "--root", str(tmp_path)])
    assert set(results) == {"ls_s", "ls_json_s", "best_s", "compare_s", "show_s"} and all(v > 0 for v in results.values())
    assert "| steplog ls over 10 compacted runs |" in capsys.readouterr().out
