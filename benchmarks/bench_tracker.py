"""What ExperimentTracker adds to a log call: log_metrics + increment_gradient_step vs. a bare Run.log
of the same five values. Prints microseconds per call (best of 5 rounds of 100,000 calls).

Run: python benchmarks/bench_tracker.py
"""

from __future__ import annotations

import platform
import tempfile
import time

import steplog
from steplog import ExperimentConfig, ExperimentTracker

CALLS = 100_000


def bare(root: str) -> float:
    run = steplog.init(name="bare", root=root)
    t0 = time.perf_counter()
    for i in range(CALLS):
        run.log({"gradient_step": i, "train_loss": 1.0, "learning_rate": 1e-3, "tokens_per_sec": 1e5,
                 "iter_time_ms": 5.0}, step=i)
    seconds = time.perf_counter() - t0
    run.finish()
    return seconds / CALLS * 1e6


def tracked(root: str) -> float:
    tracker = ExperimentTracker(ExperimentConfig("tracked"), log_dir=root)
    tracker.start()
    t0 = time.perf_counter()
    for i in range(CALLS):
        tracker.log_metrics(i, train_loss=1.0, learning_rate=1e-3, tokens_per_sec=1e5, iter_time_ms=5.0)
        tracker.increment_gradient_step()
    seconds = time.perf_counter() - t0
    tracker.finish()
    return seconds / CALLS * 1e6


if __name__ == "__main__":
    root = tempfile.mkdtemp()
    bare_us = min(bare(root) for _ in range(5))
    tracked_us = min(tracked(root) for _ in range(5))
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"Run.log (5 metrics):                          {bare_us:.2f} us/call")
    print(f"log_metrics + increment_gradient_step:        {tracked_us:.2f} us/call "
          f"({tracked_us / bare_us:.2f}x, +{tracked_us - bare_us:.2f} us)")
