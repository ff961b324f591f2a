"""What ranks cost (issue 14).

1. CPU time per ``log()`` call of 4 ranks logging at once into one run (each its own events file),
   against one process logging alone (the baseline, same run, same calls), target <= 1.3x. CPU
   time, not wall time: the ranks share the machine's cores. Each process measures its own CPU time
   (``time.process_time``) over all its calls and its ``finish`` (so every flush and the close are
   in the mean); p50/p99 are of blocks of 1,000 calls, per call.
2. ``log()`` on a rank that ``log_ranks=`` leaves out (a ``SilentRun``), per call, beside a call
   of an empty method (target < 0.2 us).
3. ``history(run, rank="all")`` of 8 ranks x 100,000 steps, live and compacted (target <= 1 s),
   best of 3.

    python benchmarks/bench_ranks.py           # full size
    python benchmarks/bench_ranks.py --tiny    # for the smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)

import steplog  # noqa: E402
from steplog.silentrun import SilentRun  # noqa: E402

CHILD = """
import json, sys, time
import steplog
root, rank, world, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
run = steplog.init(name="bench", root=root, rank=rank, world_size=world, run_id=sys.argv[5])
metrics = [{"loss": 1.0 / (i + 1), "lr": 3e-4, "grad_norm": 0.5 + i * 1e-6, "tokens_per_s": 1e5 + i}
           for i in range(1000)]
blocks = []
began = time.process_time()
for start in range(0, calls, 1000):
    t0 = time.process_time()
    for i in range(1000):
        run.log(metrics[i])
    blocks.append((time.process_time() - t0) / 1000)
run.finish()
total = time.process_time() - began
print(json.dumps({"mean": total / calls, "blocks": blocks}))
"""


def log_cpu(root: Path, ranks: int, calls: int, run_id: str) -> list[dict]:
    """Start ``ranks`` processes at once, each logging ``calls`` steps; their CPU figures."""
    env = dict(os.environ, PYTHONPATH=SRC)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(r), str(ranks), str(calls), run_id],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in range(ranks)
    ]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return outs


def cpu_figures(root: Path, calls: int, repeats: int) -> dict[str, float]:
    """Mean, p50 and p99 CPU time per call: 1 process alone vs each of 4 at once, alternating."""
    one: list[dict] = []
    four: list[dict] = []
    for i in range(repeats):
        one += log_cpu(root, 1, calls, f"one-{i}")
        four += log_cpu(root, 4, calls, f"four-{i}")

    def figures(outs: list[dict]) -> tuple[float, float, float]:
        blocks = sorted(b for o in outs for b in o["blocks"])
        return (
            statistics.fmean(o["mean"] for o in outs),
            blocks[len(blocks) // 2],
            blocks[min(len(blocks) - 1, int(len(blocks) * 0.99))],
        )

    (m1, p50_1, p99_1), (m4, p50_4, p99_4) = figures(one), figures(four)
    return {
        "one_mean_us": m1 * 1e6,
        "one_p50_us": p50_1 * 1e6,
        "one_p99_us": p99_1 * 1e6,
        "four_mean_us": m4 * 1e6,
        "four_p50_us": p50_4 * 1e6,
        "four_p99_us": p99_4 * 1e6,
        "ratio": m4 / m1,
    }


class _Empty:
    def log(self, metrics, step=None):
        pass


def silent_figures(number: int) -> dict[str, float]:
    """Per call: ``SilentRun.log`` and an empty method, best of 5."""
    silent, empty, metrics = SilentRun("r", "r", Path("."), 1), _Empty(), {"loss": 1.0}
    t_silent = min(timeit.repeat(lambda: silent.log(metrics), number=number, repeat=5)) / number
    t_empty = min(timeit.repeat(lambda: empty.log(metrics), number=number, repeat=5)) / number
    return {"silent_us": t_silent * 1e6, "empty_method_us": t_empty * 1e6}


def history_figures(root: Path, ranks: int, steps: int) -> dict[str, float]:
    """``history(rank="all")`` of ``ranks`` x ``steps``, live then compacted, best of 3 each."""
    for rank in range(ranks):
        run = steplog.init(name="big", root=root, rank=rank, world_size=ranks, run_id="big")
        for step in range(steps):
            run.log({"loss": 1.0 / (step + 1), "grad_norm": rank + step * 1e-6, "tokens_per_s": 1e5})
        run.finish()

    def best() -> tuple[float, float]:
        times = []
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            frame = steplog.history("big", root=root, rank="all")
            times.append((time.perf_counter() - t0, time.process_time() - c0))
            assert frame.height == ranks * steps
        return min(times)

    live, live_cpu = best()
    steplog.compact(root, quiet=True)
    compacted, compacted_cpu = best()
    return {
        "live_s": live,
        "live_cpu_s": live_cpu,
        "compacted_s": compacted,
        "compacted_cpu_s": compacted_cpu,
        "load": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes, for the smoke test")
    args = parser.parse_args(argv)
    calls, repeats, steps, number = (2000, 1, 1000, 10_000) if args.tiny else (200_000, 3, 100_000, 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "cpu": cpu_figures(Path(tmp) / "cpu", calls, repeats),
            "silent": silent_figures(number),
            "history": history_figures(Path(tmp) / "history", 8, steps),
        }
    cpu, silent, history = results["cpu"], results["silent"], results["history"]
    print(
        f"| measure | value | target |\n| --- | --- | --- |\n"
        f"| log() CPU per call, 1 process alone: mean (p50 / p99) | {cpu['one_mean_us']:.2f} us "
        f"({cpu['one_p50_us']:.2f} / {cpu['one_p99_us']:.2f}) | |\n"
        f"| log() CPU per call, each of 4 ranks at once: mean (p50 / p99) | {cpu['four_mean_us']:.2f} us "
        f"({cpu['four_p50_us']:.2f} / {cpu['four_p99_us']:.2f}) | |\n"
        f"| 4 ranks / 1 process, mean CPU per call | {cpu['ratio']:.2f}x | <= 1.3x |\n"
        f"| log() on a rank log_ranks leaves out (empty method: {silent['empty_method_us']:.3f} us) | "
        f"{silent['silent_us']:.3f} us | < 0.2 us |\n"
        f"| history(rank='all'), 8 ranks x {steps:,} steps, live: wall (CPU) | {history['live_s']:.3f} s "
        f"({history['live_cpu_s']:.3f} s) | <= 1 s |\n"
        f"| history(rank='all'), 8 ranks x {steps:,} steps, compacted: wall (CPU) | {history['compacted_s']:.3f} s "
        f"({history['compacted_cpu_s']:.3f} s) | <= 1 s |\n"
        f"| load average (1 min) during the history reads, {os.cpu_count()} cores | {history['load']:.1f} | |"
    )
    return results


if __name__ == "__main__":
    main()
