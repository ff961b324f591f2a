"""What the system metrics sampler costs (issue 14): CPU time of its thread per sample, and as a
share of one core at the default interval of 10 s (target < 0.1 %).

Measured in one process, in alternating blocks, beside a plain baseline: a thread that wakes on the
same ``Event.wait`` schedule and appends one line ``{"t": time}`` with ``os.write`` (the least any
periodic recorder does). Each thread's CPU time is ``time.thread_time()`` taken inside it, over its
whole life (start, every wake-up, the last sample and closing), so the mean includes everything;
p50/p99 are of single samples. The process's CPU time (``resource.getrusage``) over the sampler's
blocks, while the main thread only waits, checks the figure from outside the thread. Samples are
taken every 10 ms to measure many of them: a sample costs the same whatever the interval, so the
share at 10 s is the mean cost per sample divided by 10 s. Without a GPU (or nvidia-ml-py) no NVML
figure is read, and the table says so.

    python benchmarks/bench_system.py           # 1,000 samples of each
    python benchmarks/bench_system.py --tiny    # 40 samples, for the smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from steplog.system_metrics import DEFAULT_INTERVAL, SystemSampler

INTERVAL = 0.01
TARGET_PERCENT = 0.1


class TimedSampler(SystemSampler):
    """The real sampler, with its thread's CPU time taken inside the thread: per sample and in all."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.per_sample: list[float] = []
        self.thread_cpu = 0.0

    def _loop(self) -> None:
        began = time.thread_time()
        super()._loop()
        self.thread_cpu = time.thread_time() - began

    def _sample(self, primed: bool) -> None:
        began = time.thread_time()
        super()._sample(primed)
        self.per_sample.append(time.thread_time() - began)


class BaselineThread:
    """A thread on the same schedule that appends one time stamp per wake-up."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path, self.interval = path, interval
        self.samples, self.thread_cpu = 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> BaselineThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        began = time.thread_time()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        while not self._stop.wait(self.interval):
            os.write(fd, orjson.dumps({"t": time.time()}, option=orjson.OPT_APPEND_NEWLINE))
            self.samples += 1
        os.close(fd)
        self.thread_cpu = time.thread_time() - began


def run_until(recorder, count: int) -> None:
    """Let ``recorder`` take ``count`` samples while this thread only waits."""
    recorder.start()
    time.sleep(count * INTERVAL)  # one long wait, so that the main thread adds next to nothing to getrusage
    while recorder.samples < count:
        time.sleep(INTERVAL)
    recorder.stop()


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(samples: int, blocks: int) -> dict[str, float | str]:
    per_block = max(2, samples // blocks)
    sampled: list[float] = []
    sampler_cpu = baseline_cpu = process_in_sampler = 0.0
    sampler_count = baseline_count = 0
    nvml = ""
    with tempfile.TemporaryDirectory() as tmp:
        for block in range(blocks):
            baseline = BaselineThread(Path(tmp) / "baseline.jsonl", INTERVAL)
            run_until(baseline, per_block)
            baseline_cpu, baseline_count = baseline_cpu + baseline.thread_cpu, baseline_count + baseline.samples
            sampler = TimedSampler(Path(tmp) / f"block{block}", interval=INTERVAL)
            sampler.path.parent.mkdir()
            before = process_cpu()
            run_until(sampler, per_block)
            process_in_sampler += process_cpu() - before
            sampler_cpu, sampler_count = sampler_cpu + sampler.thread_cpu, sampler_count + sampler.samples
            sampled.extend(sampler.per_sample[1:])  # the first sample of a block also opens NVML
            nvml = orjson.loads(sampler.path.read_bytes().split(b"\n", 1)[0])["nvml"]
    mean, baseline_mean = sampler_cpu / sampler_count, baseline_cpu / baseline_count
    quantiles = statistics.quantiles(sampled, n=100)
    return {
        "samples": sampler_count,
        "mean": mean,
        "p50": quantiles[49],
        "p99": quantiles[98],
        "baseline": baseline_mean,
        "process": process_in_sampler / sampler_count,
        "percent": mean / DEFAULT_INTERVAL * 100,
        "nvml": nvml,
    }


def table(figures: dict[str, float | str]) -> str:
    us = {key: figures[key] * 1e6 for key in ("mean", "p50", "p99", "baseline", "process")}  # type: ignore[operator]
    percent = float(figures["percent"])
    verdict = "met" if percent < TARGET_PERCENT else "NOT met"
    return "\n".join(
        [
            "| figure | value | target |",
            "|---|---|---|",
            f"| sampler thread CPU per sample: mean (all its work) / p50 / p99 | "
            f"{us['mean']:.0f} / {us['p50']:.0f} / {us['p99']:.0f} us | |",
            f"| baseline thread (wake up, append a time stamp) per wake-up: mean | {us['baseline']:.0f} us | |",
            f"| sampler / baseline, mean | {figures['mean'] / figures['baseline']:.1f}x | |",  # type: ignore[operator]
            f"| process CPU per sample while sampling (getrusage; main thread waiting) | {us['process']:.0f} us | |",
            f"| share of one core at the default {DEFAULT_INTERVAL:.0f} s interval | **{percent:.4f} %** ({verdict}) "
            f"| < {TARGET_PERCENT} % |",
            f"| GPU figures (NVML) | {figures['nvml']} | |",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, float | str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a few samples, for the smoke test")
    args = parser.parse_args(argv)
    samples, blocks = (40, 2) if args.tiny else (1000, 5)
    figures = measure(samples, blocks)
    print(
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores; python "
        f"{platform.python_version()}. {figures['samples']} samples every {INTERVAL * 1000:.0f} ms "
        f"in {blocks} blocks, alternating with the baseline.\n"
    )
    print(table(figures))
    return figures


if __name__ == "__main__":
    main()
