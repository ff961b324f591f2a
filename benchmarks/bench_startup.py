"""What starting costs a training script: ``import steplog`` against ``import orjson`` (wall time
and peak RSS of a fresh interpreter), and ``init`` + ``finish`` of a run, the process's first and
the ones after it, in each durability mode (each in a fresh process).

    python benchmarks/bench_startup.py [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

IMPORT_CHILD = """
import os, time
t0 = time.perf_counter()
import {module}
took = time.perf_counter() - t0
with open("/proc/self/statm") as f:  # resident now (ru_maxrss would inherit the parent's peak)
    print(took, int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024)
"""

INIT_CHILD = """
import json, sys, time
import steplog
root, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
clock = time.perf_counter
inits, finishes = [], []
for i in range(count):
    a = clock(); run = steplog.init(name="s", root=root, durability=mode); b = clock()
    run.log({"loss": 1.0})
    c = clock(); run.finish(); d = clock()
    inits.append(b - a); finishes.append(d - c)
print(json.dumps({"inits": inits, "finishes": finishes}))
"""


def _child(code: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def import_figures(repeats: int) -> dict[str, float]:
    """Median import time (s) and peak RSS (MiB) of ``import orjson`` and ``import steplog``."""
    figures = {}
    for module in ("orjson", "steplog"):
        runs = [_child(IMPORT_CHILD.format(module=module)).split() for _ in range(repeats)]
        figures[f"import {module} s"] = statistics.median(float(t) for t, _ in runs)
        figures[f"import {module} MiB"] = statistics.median(int(r) for _, r in runs) / 1024
    figures["import added s"] = figures["import steplog s"] - figures["import orjson s"]
    figures["import added MiB"] = figures["import steplog MiB"] - figures["import orjson MiB"]
    return figures


def init_figures(count: int) -> dict[str, float]:
    """Per mode: the first init and finish of a process, and the median of the later ones (ms)."""
    figures = {}
    for mode in ("mmap", "process"):
        with tempfile.TemporaryDirectory(prefix="steplog-startup-") as root:
            times = json.loads(_child(INIT_CHILD, root, mode, str(count)))
        figures[f"{mode} first init ms"] = times["inits"][0] * 1e3
        figures[f"{mode} first finish ms"] = times["finishes"][0] * 1e3
        figures[f"{mode} later init ms"] = statistics.median(times["inits"][1:]) * 1e3
        figures[f"{mode} later finish ms"] = statistics.median(times["finishes"][1:]) * 1e3
    return figures


def fsync_ms(count: int = 20) -> float:
    """The median cost of one fsync of a small file here: the floor of a durable start or finish."""
    import time

    with tempfile.NamedTemporaryFile() as f:
        costs = []
        for _ in range(count):
            f.write(b"x" * 100)
            f.flush()
            a = time.perf_counter()
            os.fsync(f.fileno())
            costs.append(time.perf_counter() - a)
    return statistics.median(costs) * 1e3


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    figures = import_figures(1 if args.tiny else 5)
    figures.update(init_figures(3 if args.tiny else 50))
    figures["one fsync ms"] = fsync_ms()
    for key, value in figures.items():
        print(f"| {key} | {value:.3f} |")
    return figures


if __name__ == "__main__":
    main()
