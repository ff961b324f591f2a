"""Where the time of a ``Run.log`` call goes (8 float metrics, "mmap" and "process" modes): each
stage of ``log()``'s one pass (a dict of floats under names already seen) is timed call by call in
interleaved blocks, next to the whole ``log()``. The one pass is inlined in ``log()``, so each stage
here is its statement, copied (tests/test_log_fast_path.py checks that the one pass writes the
format's bytes); the encode is the wallclock, the event dict, ``time.time()`` and ``orjson.dumps``;
the sink is ``run._put`` (in "mmap" mode ``MappedEvents.append``, the same two copies that ``log()``
makes itself, plus a call). The rest ("call and bookkeeping") is the whole call minus the stages:
Python's call overhead, the step argument and the step counters. Medians, plus the mean of the
whole call and of the sink: in "mmap" mode the sink's mean includes the first-write page fault of
each 4 KiB page and the chunk switches.

    python benchmarks/log_breakdown.py [--tiny]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import orjson

import steplog
from steplog import runlog

KEYS = [f"metric_{i}" for i in range(8)]
MODES = ("mmap", "process")


def stages(run, step: int, now: float):
    """(name, callable of one dict) for each stage of ``run.log``'s one pass, in order."""
    known, exact, option = run._known_keys, runlog._EXACT, run._option
    perf, clock, dumps = time.perf_counter, time.time, orjson.dumps
    line = dumps({"s": step, "t": clock(), "w": now, "m": {k: 0.5 for k in KEYS}}, option=option)
    return [
        ("metric-name check", lambda d: known.issuperset(d)),
        ("value check (sum gate)", lambda d: type(total := sum(d.values())) is float and -exact <= total <= exact),
        ("encode", lambda d: dumps({"s": step, "t": clock(), "w": perf() - 1.0, "m": d}, option=option)),
        ("sink", lambda d: run._put(line, step, now)),
    ]


def measure(mode: str, rounds: int) -> dict[str, float]:
    """Median ns of each stage and of the whole call, and the mean of the call and the sink, in ``mode``."""
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
    for name in ("whole log()", "sink"):  # the mean: what page faults and chunk switches add
        medians[f"{name}, mean"] = statistics.fmean(times[name]) - overhead
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
