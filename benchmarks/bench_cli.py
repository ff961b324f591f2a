"""Benchmark of the command line on a root with many compacted runs (issue 6): ``steplog ls``,
``ls --json``, ``compare``, ``best`` and ``show``, each through ``steplog.cli.main`` (output discarded),
median of --repeat runs. Compacted runs are read from their sidecars (run.json) alone: the Parquet
files are never opened by these commands (tests/test_cli.py checks that with a damaged Parquet file).

Fixtures: R finished runs of S steps (train_loss, lr every step, val_loss every 10th), written with
the format module's encoders (``bench_queries.write_run``) and compacted with ``steplog.compact``.
Sizes: default R=2,000, S=1,000; --tiny R=10, S=100 (a smoke test).

    python benchmarks/bench_cli.py [--tiny] [--repeat 5] [--root DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

import steplog
from steplog.cli import main as cli

_spec = importlib.util.spec_from_file_location("bench_queries", Path(__file__).with_name("bench_queries.py"))
bench_queries = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_queries)


def run_cli(*argv: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli(list(argv))
    if code != 0:
        raise SystemExit(f"steplog {' '.join(argv)} exited {code}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="10 runs of 100 steps (a smoke test)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--root", help="work folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args(argv)
    runs_count, steps = (10, 100) if args.tiny else (2_000, 1_000)
    work = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="steplog-bench-cli-"))
    root = work / "many"
    try:
        started = time.perf_counter()
        for i in range(runs_count):
            bench_queries.write_run(root, f"run{i:05d}", steps, i, {"lr": 1e-4 * (1 + i % 7), "seed": i % 3})
        written = time.perf_counter() - started
        started = time.perf_counter()
        steplog.compact(root, quiet=True)
        compacted = time.perf_counter() - started
        one = steplog.runs(root)["run_id"][runs_count // 2]
        r = str(root)
        measures = {
            f"steplog ls over {runs_count:,} compacted runs": ("ls_s", ("ls", "--root", r)),
            f"steplog ls --json over {runs_count:,} compacted runs": ("ls_json_s", ("ls", "--json", "--root", r)),
            f"steplog best val_loss over {runs_count:,} compacted runs": ("best_s", ("best", "val_loss", "--root", r)),
            f"steplog compare --metrics val_loss over {runs_count:,} runs": (
                "compare_s",
                ("compare", "--metrics", "val_loss", "--json", "--root", r),
            ),
            "steplog show RUN (one compacted run, by id)": ("show_s", ("show", one, "--root", r)),
        }
        results: dict[str, float] = {}
        rows = []
        for label, (key, command) in measures.items():
            median, _ = bench_queries.timed(lambda command=command: run_cli(*command), args.repeat)
            results[key] = median
            rows.append(f"| {label} | {median:.3f} s |")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.2f}; "
            f"Python {platform.python_version()}, polars {pl.__version__}, steplog {steplog.__version__}"
        )
        print(
            f"Fixture: {runs_count:,} runs x {steps:,} steps written in {written:.1f} s, compacted in {compacted:.1f} s"
        )
        print(f"Median of {args.repeat}:\n")
        print("| measure | figure |\n|---|---|")
        print("\n".join(rows))
        return results
    finally:
        if not args.root:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
