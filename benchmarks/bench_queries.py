"""Benchmarks for compaction and queries (issue 3). Prints a table and, with --write, appends it to
benchmarks/RESULTS.md is left to a person: copy the printed Markdown there.

Measured, each with the real public function, median of --repeat runs:

* ``steplog.compact`` of one run of N events (events per second);
* ``steplog.runs()`` over R compacted runs;
* ``steplog.best("val_loss")`` over R compacted runs of S steps each;
* ``steplog.history`` of an uncompacted run of N events (the crash case);
* (for information) ``steplog.scan(root).filter(run_id == one).collect()`` and a scan aggregating
  val_loss over all R runs.

Fixtures are written quickly (the events files are made with the format module's encoders, not
through ``Run.log``), then compacted once with ``steplog.compact``.

Sizes: default N=1,000,000, R=1,000, S=10,000 (the targets of issue 3); --small N=100,000, R=100,
S=1,000; --tiny N=10,000, R=10, S=100 (a smoke test in seconds).

    python benchmarks/bench_queries.py [--tiny | --small] [--repeat 5] [--root DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow

import steplog
from steplog import format as fmt
from steplog.store import new_run_id

SIZES = {"full": (1_000_000, 1_000, 10_000), "small": (100_000, 100, 1_000), "tiny": (10_000, 10, 100)}
TARGETS = {"compact_events_per_s": 1_000_000, "runs_s": 0.5, "best_s": 2.0, "history_s": 2.0}


def write_run(root: Path, name: str, steps: int, seed: int, config: dict) -> str:
    """One finished run of ``steps`` metric events (train_loss and lr every step, val_loss every
    10th), written with the format module's encoders, as ``Run.log`` would write it."""
    rng = np.random.default_rng(seed)
    run_id = new_run_id(dt.datetime.now(dt.timezone.utc))
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    t0 = 1_764_000_000.0 + seed
    train = (2.0 / np.sqrt(np.arange(steps) + 1.0) + rng.normal(0, 0.01, steps)).tolist()
    val = (2.1 / np.sqrt(np.arange(steps) + 1.0) + rng.normal(0, 0.01, steps)).tolist()
    lines = [
        fmt.encode_control_event(
            fmt.START,
            v=fmt.FORMAT_VERSION,
            run_id=run_id,
            name=name,
            time=t0,
            start_time=dt.datetime.fromtimestamp(t0, dt.timezone.utc).isoformat(),
            durability="process",
            config=config,
            meta={"host": "bench"},
        )
    ]
    encode = fmt.encode_metric_event
    for step in range(steps):
        metrics = {"train_loss": train[step], "lr": 3e-4}
        if step % 10 == 9:
            metrics["val_loss"] = val[step]
        lines.append(encode(step, t0 + step * 0.01, step * 0.01, metrics))
    lines.append(
        fmt.encode_control_event(fmt.FINISH, status="finished", time=t0 + steps * 0.01, w=steps * 0.01, segment=0)
    )
    (run_dir / fmt.EVENTS_FILE).write_bytes(b"".join(lines))
    return run_id


def timed(function, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_const", const="tiny", dest="size")
    size.add_argument("--small", action="store_const", const="small", dest="size")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--root", help="work folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--only-big", action="store_true", help="only the one-big-run measures (compact, history)")
    args = parser.parse_args(argv)
    events, runs_count, steps = SIZES[args.size or "full"]
    work = Path(args.root or tempfile.mkdtemp(prefix="steplog-bench-"))
    results: dict[str, float] = {}
    try:
        # 1. compaction of one big run, and history of it uncompacted
        big_root = work / "big"
        big_id = write_run(big_root, "big", events, 0, {"lr": 3e-4})
        big_events = big_root / big_id / fmt.EVENTS_FILE
        results["history_s"], _ = timed(lambda: steplog.history(big_id, root=big_root), args.repeat)
        pristine = work / "big-events.jsonl"
        shutil.copyfile(big_events, pristine)

        def compact_big() -> None:  # a fresh, uncompacted copy of the run (not timed)
            shutil.copyfile(pristine, big_events)
            (big_root / big_id / fmt.PARQUET_FILE).unlink(missing_ok=True)
            (big_root / big_id / fmt.SIDECAR_FILE).unlink(missing_ok=True)
            os.sync()  # else compaction's fsyncs would pay for writing this fresh copy to disk

        compact_times = []
        for _ in range(args.repeat):
            compact_big()
            start = time.perf_counter()
            done = steplog.compact(big_root, runs=[big_id], quiet=True)
            compact_times.append(time.perf_counter() - start)
            assert done == [big_id], done
        results["compact_s"] = statistics.median(compact_times)
        results["compact_events_per_s"] = events / results["compact_s"]

        results["load_average"] = os.getloadavg()[0]
        if not args.only_big:
            measure_many(work / "many", runs_count, steps, args.repeat, results)
    finally:
        if not args.root:
            shutil.rmtree(work, ignore_errors=True)
    report(results, args.size or "full", events, runs_count, steps, args.repeat)
    return results


def measure_many(many: Path, runs_count: int, steps: int, repeat: int, results: dict[str, float]) -> None:
    """runs(), best() and two scans over many compacted runs."""
    start = time.perf_counter()
    ids = [
        write_run(many, f"run-{i}", steps, i + 1, {"lr": 1e-4 * (1 + i % 7), "layers": 4 + i % 3, "seed": i})
        for i in range(runs_count)
    ]
    results["fixture_write_s"] = time.perf_counter() - start
    start = time.perf_counter()
    assert len(steplog.compact(many, quiet=True)) == runs_count
    results["fixture_compact_s"] = time.perf_counter() - start
    results["runs_s"], _ = timed(lambda: steplog.runs(many), repeat)
    results["best_s"], _ = timed(lambda: steplog.best("val_loss", root=many), repeat)
    one = ids[len(ids) // 2]
    results["scan_one_run_s"], _ = timed(
        lambda: steplog.scan(many).filter(pl.col("run_id") == one).select("step", "val_loss").collect(), repeat
    )
    results["scan_all_val_loss_s"], _ = timed(
        lambda: steplog.scan(many).group_by("run_id").agg(pl.col("val_loss").min()).collect(), repeat
    )


def report(results: dict[str, float], size: str, events: int, runs_count: int, steps: int, repeat: int) -> None:
    print(
        f"## steplog bench_queries ({size}): {dt.date.today()}, {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, polars {pl.__version__}, pyarrow {pyarrow.__version__}, "
        f"steplog {steplog.__version__}; median of {repeat}"
    )
    print()
    print(
        f"1-minute load average after the one-big-run measures: {results['load_average']:.2f} "
        f"on {os.cpu_count()} cores (other processes share the machine)."
    )
    print()
    print("| measure | figure | target |")
    print("|---|---|---|")
    ok = lambda good: "met" if good else "MISSED"
    print(
        f"| compact one run of {events:,} events | {results['compact_s']:.3f} s = "
        f"{results['compact_events_per_s']:,.0f} events/s | >= 1,000,000 events/s"
        f"{' (' + ok(results['compact_events_per_s'] >= 1e6) + ')' if size == 'full' else ''} |"
    )
    print(
        f"| history of an uncompacted run of {events:,} events | {results['history_s']:.3f} s | <= 2 s"
        f"{' (' + ok(results['history_s'] <= 2) + ')' if size == 'full' else ''} |"
    )
    if "runs_s" not in results:
        return
    print(
        f"| runs() over {runs_count:,} compacted runs | {results['runs_s']:.3f} s | <= 0.5 s"
        f"{' (' + ok(results['runs_s'] <= 0.5) + ')' if size == 'full' else ''} |"
    )
    print(
        f"| best('val_loss') over {runs_count:,} compacted runs x {steps:,} steps | {results['best_s']:.3f} s | <= 2 s"
        f"{' (' + ok(results['best_s'] <= 2) + ')' if size == 'full' else ''} |"
    )
    print(
        f"| scan(root).filter(run_id == one).collect() over {runs_count:,} runs "
        f"| {results['scan_one_run_s']:.3f} s | - |"
    )
    print(f"| scan(root) min val_loss per run, {runs_count:,} runs | {results['scan_all_val_loss_s']:.3f} s | - |")
    print(
        f"| (fixture) write {runs_count:,} event files / compact them | {results['fixture_write_s']:.1f} s / "
        f"{results['fixture_compact_s']:.1f} s | - |"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
