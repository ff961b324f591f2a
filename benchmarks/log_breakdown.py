"""Where the time of a ``Run.log`` call goes (8 float metrics, "mmap" and "process" modes): each
stage of the hot path is timed by calling the very function or expression ``Run.log`` calls, call
by call in interleaved blocks, next to the whole ``log()``; nothing is copied or edited. The rest
("call and bookkeeping") is the whole call minus the stages: Python's call overhead, the step
arguments and the step counters.

    python benchmarks/log_breakdown.py [--tiny]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import steplog

KEYS = [f"metric_{i}" for i in range(8)]
MODES = ("mmap", "process")


def stages(run, step: int, now: float):
    """(name, callable of one dict) for each stage of ``run.log``, in order."""
    known = run._known_keys
    return [
        ("metric-name check", lambda d: known.issuperset(d)),
        ("value check (sum gate)", lambda d: type(sum(d.values())) is not float),
        ("encode", lambda d: run._encode(step, now, d, 4.0)),  # a finite sum: as for finite values
        ("sink", lambda d, line=run._encode(step, now, {k: 0.5 for k in KEYS}, 4.0): run._put(line, step, now)),  # noqa: B008
    ]


def measure(mode: str, rounds: int) -> dict[str, float]:
    """Median ns of each stage and of the whole call, in ``mode``."""
    run = steplog.init(root=tempfile.mkdtemp(prefix="steplog-breakdown-"), durability=mode)
    rng = random.Random(0)
    pool = [rng.random() for _ in range(1_100)]
    steps = [dict(zip(KEYS, pool[i : i + 8])) for i in range(1_000)]
    run.log(dict(steps[0]))
    parts = [("whole log()", run.log), *stages(run, 1, 0.5)]
    clock = time.perf_counter_ns
    times: dict[str, list[int]] = {name: [] for name, _ in parts}
    for _ in range(rounds):
        for name, fn in parts:
            record = times[name]
            for d in steps:
                d = dict(d)
                a = clock()
                fn(d)
                b = clock()
                record.append(b - a)
    run.finish()
    overhead = timer_overhead()
    medians = {name: max(statistics.median(t) - overhead, 0) for name, t in times.items()}
    medians["call and bookkeeping"] = medians["whole log()"] - sum(v for k, v in medians.items() if k != "whole log()")
    return medians


def timer_overhead(samples: int = 20_000) -> float:
    clock = time.perf_counter_ns
    costs = []
    for _ in range(samples):
        a = clock()
        costs.append(clock() - a)
    return statistics.median(costs)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    rounds = 2 if args.tiny else 30
    figures: dict[str, float] = {}
    print("| part of log() | " + " | ".join(f"`{m}` (ns, median)" for m in MODES) + " |\n|---|---|---|")
    by_mode = {mode: measure(mode, rounds) for mode in MODES}
    for part in by_mode[MODES[0]]:
        print(f"| {part} | " + " | ".join(f"{by_mode[m][part]:.0f}" for m in MODES) + " |")
        for mode in MODES:
            figures[f"{part}, {mode}"] = by_mode[mode][part]
    return figures


if __name__ == "__main__":
    main()
