"""What ExperimentTracker adds to a log call: log_metrics + increment_gradient_step vs. a bare Run.log
of the same five values. Prints microseconds per call (best of 5 rounds of 100,000 calls).

Run: python benchmarks/bench_tracker.py   (--tiny: a few hundred calls, for the smoke test)
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import steplog
from steplog import ExperimentConfig, ExperimentTracker


def bare(root: str, calls: int) -> float:
    run = steplog.init(name="bare", root=root)
    t0 = time.perf_counter()
    for i in range(calls):
        run.log(
            {"gradient_step": i, "train_loss": 1.0, "learning_rate": 1e-3, "tokens_per_sec": 1e5, "iter_time_ms": 5.0},
            step=i,
        )
    seconds = time.perf_counter() - t0
    run.finish()
    return seconds / calls * 1e6


def tracked(root: str, calls: int) -> float:
    tracker = ExperimentTracker(ExperimentConfig("tracked"), log_dir=root)
    tracker.start()
    t0 = time.perf_counter()
    for i in range(calls):
        tracker.log_metrics(i, train_loss=1.0, learning_rate=1e-3, tokens_per_sec=1e5, iter_time_ms=5.0)
        tracker.increment_gradient_step()
    seconds = time.perf_counter() - t0
    tracker.finish()
    return seconds / calls * 1e6


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure both paths (best of ``--rounds`` rounds) and print them; returns microseconds per call."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="300 calls, 1 round (a smoke test, not a measurement)")
    args = parser.parse_args(argv)
    calls, rounds = (300, 1) if args.tiny else (100_000, 5)
    root = tempfile.mkdtemp()
    bare_us = min(bare(root, calls) for _ in range(rounds))
    tracked_us = min(tracked(root, calls) for _ in range(rounds))
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"Run.log (5 metrics):                          {bare_us:.2f} us/call")
    print(
        f"log_metrics + increment_gradient_step:        {tracked_us:.2f} us/call "
        f"({tracked_us / bare_us:.2f}x, +{tracked_us - bare_us:.2f} us)"
    )
    return {"bare_us": bare_us, "tracked_us": tracked_us}


if __name__ == "__main__":
    main()
