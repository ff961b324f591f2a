"""Where the time of a ``Run.log`` call goes ("process" mode, 8 float metrics): the real method is
timed next to copies of it with one part removed at a time (the value type check, the metric-name
check, the non-finite check), interleaved call by call in blocks; the difference of medians is
that part's cost. The copies are made from ``Run.log``'s source, so they follow the code; if a
part's lines are no longer there, the script says which.

    python benchmarks/log_breakdown.py [--tiny]
"""

from __future__ import annotations

import argparse
import inspect
import random
import statistics
import tempfile
import textwrap
import time

import steplog
from steplog import writer

PARTS = {  # the lines (by how they start) that make up each part
    # without the value check, the sum stays (the non-finite check needs it): what goes is the gate
    "value check": ["try:", "except (TypeError, OverflowError):", "total = None", "if type(total) is not float:",
                    "metrics, total = self._checked_values(step, metrics)", "if metrics is None:", "return"],
    "metric-name check": ["if not self._known_keys.issuperset(metrics):", "self._admit_keys(metrics)"],
    "non-finite check": ["if total - total", "fmt.add_nonfinite(event, metrics)"],
}
KEYS = [f"metric_{i}" for i in range(8)]


def without(prefixes: list[str]):
    """A copy of Run.log without the lines that start with ``prefixes`` (the first
    ``values = metrics.values()``, which the rest of the method needs, is kept)."""
    source = textwrap.dedent(inspect.getsource(writer.Run.log)).splitlines()
    kept, found = [], set()
    for line in source:
        prefix = next((p for p in prefixes if line.strip().startswith(p) and p not in found), None)
        if prefix is None:
            kept.append(line)
        else:
            found.add(prefix)  # only the first line with each prefix goes
    kept = _dedent_orphans(kept)
    missing = set(prefixes) - found
    if missing:
        raise SystemExit(f"Run.log no longer has lines starting with {sorted(missing)}; update PARTS in {__file__}")
    namespace: dict = {}
    exec("\n".join(kept), writer.__dict__, namespace)
    return namespace["log"]


def _dedent_orphans(lines: list[str]) -> list[str]:
    """Dedent lines left indented under a removed block opener (the gate's ``try:``)."""
    fixed, previous_indent, opener = [], 0, False
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if line.strip() and indent > previous_indent and not opener:
            line = line[indent - previous_indent:]
            indent = previous_indent
        if line.strip():
            previous_indent, opener = indent, line.split("#")[0].rstrip().endswith(":")
        fixed.append(line)
    return fixed


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    rounds = 3 if args.tiny else 60
    variants = {"full log()": writer.Run.log, **{f"without {part}": without(lines) for part, lines in PARTS.items()}}
    run = steplog.init(root=tempfile.mkdtemp(prefix="steplog-breakdown-"))
    rng = random.Random(0)
    pool = [rng.random() for _ in range(1_100)]
    steps = [dict(zip(KEYS, pool[i:i + 8])) for i in range(1_000)]
    clock = time.perf_counter_ns
    times: dict[str, list[int]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, log in variants.items():
            record = times[name]
            for d in steps:
                d = dict(d)
                a = clock()
                log(run, d)
                b = clock()
                record.append(b - a)
    run.finish()
    medians = {name: statistics.median(t) for name, t in times.items()}
    full = medians["full log()"]
    print("| part of log() | cost (ns, median difference) |\n|---|---|")
    for part in PARTS:
        print(f"| {part} | {full - medians[f'without {part}']:.0f} |")
    print(f"| (whole call, timer included) | {full:.0f} |")
    return {part: full - medians[f"without {part}"] for part in PARTS}


if __name__ == "__main__":
    main()
