"""steplog's benchmark suite: prints one Markdown table and appends it, with the machine, the date
and the versions, to benchmarks/RESULTS.md (docs/performance.md explains the figures).

* ``log()`` per call, for a step of 8 float metrics, in each durability mode: median, p99 and
  mean, measured call by call in the same process as a bare baseline, in alternating blocks so
  that the machine's noise hits both alike. The baseline is the least a SIGKILL-safe logger can
  do: ``os.write(fd, orjson.dumps({"s": step, "t": time.time(), "w": perf_counter() - t0, "m": d},
  option=OPT_APPEND_NEWLINE))`` (an equivalent event, one syscall), inlined in the timing loop.
  Figures are net of the timer's own cost; ratios are to the baseline.
* Where a ``log()`` call's time goes, in "mmap" and "process" modes (``log_breakdown.py``: each
  statement of ``log()``'s one pass timed on its own, medians, and the mean of the call and the sink).
* RSS growth of a process logging 1,000,000 steps (measured in a subprocess, /proc/self/statm).
* For reference, other Python trackers installed in the environment (tensorboardX, wandb in
  offline mode): mean time per step of 8 scalars, in a subprocess each; never dependencies.
* The compaction / run-table / best / live-read figures of ``benchmarks/bench_queries.py`` (issue
  3), when that module is present.
* Reads of live runs, history of a 1,000,000-event live run and its compaction, each beside a
  plain baseline (``benchmarks/bench_reads.py``, issue 11's read side; ``--skip-reads`` leaves them out).
* The GPU-sync figures of ``benchmarks/gpu_sync.py`` when an accelerator is present.

    python benchmarks/run.py            # full size, appends to benchmarks/RESULTS.md
    python benchmarks/run.py --tiny     # every benchmark at a tiny size, in seconds; saves nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import orjson

import steplog

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
KEYS = [f"metric_{i}" for i in range(8)]
#: Issue 11's fixture: 8 named metrics, the step passed explicitly (beside the 8 anonymous ones, step implicit).
NAMED_KEYS = [
    "train_loss",
    "lr",
    "tokens_per_sec",
    "grad_norm",
    "iter_time_ms",
    "val_loss",
    "perplexity",
    "weight_norm",
]
FIXTURES = {"8 metrics": (KEYS, False), "8 named metrics, step=": (NAMED_KEYS, True)}
MODES = ("mmap", "process", "buffered", "fsync")
SIZES = {
    "full": {
        "calls": {"8 metrics": 100_000, "8 named metrics, step=": 50_000},
        "block": 2_000,
        "repeats": 3,
        "rss_steps": 1_000_000,
        "reference_steps": 20_000,
    },
    "tiny": {
        "calls": {"8 metrics": 2_000, "8 named metrics, step=": 1_000},
        "block": 500,
        "repeats": 1,
        "rss_steps": 20_000,
        "reference_steps": 200,
    },
}
#: Mean per call including every flush (and the final finish), as a multiple of the bare write.
TARGETS = {"mmap": 0.7, "process": 1.3, "buffered": 0.8}
P99_TARGET = 10.0  # p99 <= this multiple of the mode's own mean (mmap, buffered)
RSS_TARGET_MB = 10.0


def metric_dicts(count: int, seed: int = 0, keys: list[str] = KEYS) -> list[dict[str, float]]:
    """``count`` distinct steps of 8 float metrics."""
    rng = random.Random(seed)
    pool = [rng.random() for _ in range(count + 8)]
    return [dict(zip(keys, pool[i : i + 8])) for i in range(count)]


def timer_overhead(samples: int = 20_000) -> int:
    """The median cost of a perf_counter_ns() pair, subtracted from every per-call figure."""
    clock = time.perf_counter_ns
    costs = []
    for _ in range(samples):
        t0 = clock()
        t1 = clock()
        costs.append(t1 - t0)
    return int(statistics.median(costs))


def measure_log(
    mode: str, calls: int, block: int, root: Path, keys: list[str], explicit_step: bool
) -> tuple[list[int], list[int], int]:
    """Per-call times (ns) of the baseline and of ``Run.log`` in ``mode``, in alternating blocks
    (ABBA order, so that drift hits both alike), and the time of ``finish`` (ns)."""
    clock, now, perf, dumps, write = time.perf_counter_ns, time.time, time.perf_counter, orjson.dumps, os.write
    option = orjson.OPT_APPEND_NEWLINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "buffered" is measured to show why it is deprecated
        run = steplog.init(name=f"bench-{mode}", root=root, durability=mode)
    fd = os.open(root / f"baseline-{mode}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t0 = perf()
    base: list[int] = []
    mine: list[int] = []
    steps = metric_dicts(block, keys=keys)
    log = run.log
    step = 0
    for number in range(calls // block):
        for which in (0, 1) if number % 2 == 0 else (1, 0):
            if which == 0:
                for i, d in enumerate(steps):
                    d = dict(d)
                    a = clock()
                    write(fd, dumps({"s": i, "t": now(), "w": perf() - t0, "m": d}, option=option))
                    b = clock()
                    base.append(b - a)
            elif explicit_step:
                for d in steps:
                    d = dict(d)
                    a = clock()
                    log(d, step)
                    b = clock()
                    mine.append(b - a)
                    step += 1
            else:
                for d in steps:
                    d = dict(d)
                    a = clock()
                    log(d)
                    b = clock()
                    mine.append(b - a)
    a = clock()
    run.finish()
    finish = clock() - a
    os.close(fd)
    return base, mine, finish


def summary(times: list[int], overhead: int, extra: int = 0) -> dict[str, float]:
    """Median, p99, max and mean (the mean with ``extra`` ns, e.g. the final finish, spread over the calls)."""
    ordered = sorted(t - overhead for t in times)
    return {
        "median": statistics.median(ordered),
        "p99": ordered[int(len(ordered) * 0.99)],
        "max": ordered[-1],
        "mean": (sum(ordered) + extra) / len(ordered),
    }


def log_figures(size: dict, root: Path) -> dict[str, dict]:
    """Per fixture and mode: baseline and log() summaries (ns), mean ratios pooled and per repeat."""
    overhead = timer_overhead()
    figures: dict = {"timer_overhead_ns": overhead}
    for fixture, (keys, explicit) in FIXTURES.items():
        for mode in MODES:
            base_all: list[int] = []
            mine_all: list[int] = []
            finishes = 0
            per_repeat = []
            for repeat in range(size["repeats"]):
                gc.collect()
                where = root / f"{len(figures)}-{mode}-{repeat}"
                base, mine, finish = measure_log(mode, size["calls"][fixture], size["block"], where, keys, explicit)
                base_all += base
                mine_all += mine
                finishes += finish
                per_repeat.append(summary(mine, overhead, finish)["mean"] / summary(base, overhead)["mean"])
            b, m = summary(base_all, overhead), summary(mine_all, overhead, finishes)
            figures[(fixture, mode)] = {
                "baseline": b,
                "log": m,
                "ratio_median": m["median"] / b["median"],
                "ratio_mean": m["mean"] / b["mean"],
                "repeat_ratios": per_repeat,
            }
    return figures


def rss_child(steps: int, mode: str, root: str) -> None:
    """Subprocess: log ``steps`` steps, print the RSS before and after as JSON."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    run = steplog.init(name=f"rss-{mode}", root=root, durability=mode)
    values = [random.random() for _ in range(1_000)]
    for step in range(10_000):  # warm up: caches, key set, allocator arenas
        run.log(dict(zip(KEYS, values[step % 990 : step % 990 + 8])))
    gc.collect()
    before = rss()
    for step in range(steps):
        run.log(dict(zip(KEYS, values[step % 990 : step % 990 + 8])))
    gc.collect()
    after = rss()
    run.finish()
    print(json.dumps({"before": before, "after": after}))


def rss_figures(steps: int, root: Path) -> dict[str, tuple[float, float, float]]:
    """Per mode: (growth, RSS before, RSS after), in MB."""
    growth = {}
    for mode in ("mmap", "process"):
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(steps), mode, str(root / f"rss-{mode}")],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        numbers = json.loads(out.stdout.strip().splitlines()[-1])
        before, after = numbers["before"] / 2**20, numbers["after"] / 2**20
        growth[mode] = (after - before, before, after)
    return growth


def reference_child(name: str, steps: int, root: str) -> None:
    """Subprocess: mean seconds per step of 8 scalars with another tracker, and of the baseline."""
    dicts = metric_dicts(steps)
    clock = time.perf_counter
    if name == "tensorboardX":
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(logdir=root)

        def log(step: int, d: dict[str, float]) -> None:
            for key, value in d.items():
                writer.add_scalar(key, value, step)

        close = writer.close
    elif name == "wandb (offline)":
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=root, WANDB_DISABLE_GIT="true")
        import wandb

        wb_run = wandb.init(project="steplog-bench", dir=root, settings=wandb.Settings(x_disable_stats=True))

        def log(step: int, d: dict[str, float]) -> None:
            wb_run.log(d, step=step)

        close = wb_run.finish
    elif name == "steplog (process)":
        run = steplog.init(root=root)

        def log(step: int, d: dict[str, float]) -> None:
            run.log(d, step=step)

        close = run.finish
    else:
        raise SystemExit(f"unknown reference tracker {name!r}")
    for step in range(min(100, steps)):  # warm up
        log(step, dicts[step])
    start = clock()
    for step, d in enumerate(dicts):
        log(step + 100, d)
    per_step = (clock() - start) / steps
    close()
    print(json.dumps({"per_step_s": per_step}))


REFERENCES = ("steplog (process)", "tensorboardX", "wandb (offline)")


def reference_figures(steps: int, root: Path) -> dict[str, float | str]:
    figures: dict[str, float | str] = {}
    for name in REFERENCES:
        try:
            out = subprocess.run(
                [sys.executable, __file__, "--reference-child", name, str(steps), str(root / f"ref-{len(figures)}")],
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            figures[name] = "not measured: took over 10 minutes"
            continue
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["failed"])[-1]
            figures[name] = f"not measured: {last[:100]}"
            continue
        figures[name] = json.loads(out.stdout.strip().splitlines()[-1])["per_step_s"]
    return figures


def breakdown_figures(tiny: bool) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    import log_breakdown

    return log_breakdown.main(["--tiny"] if tiny else [])


def query_figures(tiny: bool) -> dict[str, float] | str:
    """The figures of benchmarks/bench_queries.py (issue 3), or why there are none."""
    sys.path.insert(0, str(HERE))
    try:
        import bench_queries
    except ModuleNotFoundError:
        return "not measured: benchmarks/bench_queries.py is not in this tree"
    return bench_queries.main(["--tiny"] if tiny else [])


def read_rows(tiny: bool) -> list[tuple[str, str, str, str]]:
    """The rows of benchmarks/bench_reads.py (issue 11: reads of live runs, history, compaction)."""
    sys.path.insert(0, str(HERE))
    import bench_reads

    return bench_reads.main(["--tiny", "--repeat", "1"] if tiny else ["--repeat", "5"])


def gpu_figures(tiny: bool) -> dict | str:
    try:
        import torch
    except ModuleNotFoundError:
        return "not measured: torch is not installed"
    if not torch.cuda.is_available():
        return "not measured: no accelerator on this machine"
    sys.path.insert(0, str(HERE))
    import gpu_sync

    return gpu_sync.main(["--tiny"] if tiny else [])


def versions() -> str:
    import numpy
    import polars
    import pyarrow

    parts = [
        f"python {platform.python_version()}",
        f"steplog {steplog.__version__}",
        f"orjson {orjson.__version__}",
        f"polars {polars.__version__}",
        f"pyarrow {pyarrow.__version__}",
        f"numpy {numpy.__version__}",
    ]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
    except ModuleNotFoundError:
        pass
    return ", ".join(parts)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"


def verdict(value: float, limit: float) -> str:
    return "pass" if value <= limit else "FAIL"


def log_rows(logs: dict) -> list[str]:
    lines = []
    for fixture in FIXTURES:
        for mode in MODES:
            f = logs[(fixture, mode)]
            b, m = f["baseline"], f["log"]
            spread = ", ".join(f"{r:.2f}" for r in f["repeat_ratios"])
            lines.append(
                f"| {fixture}: log() `{mode}` mean (incl. flushes, finish) / p50 / p99 / max | "
                f"{m['mean']:.0f} / {m['median']:.0f} / {m['p99']:.0f} / {m['max']:.0f} ns (bare write "
                f"{b['mean']:.0f} / {b['median']:.0f} / {b['p99']:.0f} / {b['max']:.0f} ns) | | |"
            )
            target = TARGETS.get(mode)
            lines.append(
                f"| {fixture}: `{mode}` / bare write, mean (median) | **{f['ratio_mean']:.2f}x** "
                f"({f['ratio_median']:.2f}x); per repeat {spread} | {f'<= {target:.1f}x' if target else ''} | "
                f"{verdict(f['ratio_mean'], target) if target else ''} |"
            )
            if mode in ("mmap", "buffered"):
                p99 = m["p99"] / m["mean"]
                lines.append(
                    f"| {fixture}: `{mode}` p99 / its own mean | {p99:.1f}x | <= {P99_TARGET:.0f}x | "
                    f"{verdict(p99, P99_TARGET)} |"
                )
        lines += replacement_rows(fixture, logs)
    return lines


def replacement_rows(fixture: str, logs: dict) -> list[str]:
    """``"buffered"``'s targets (issue 11), which ``"mmap"`` must meet to replace it: <= 0.8x the bare
    write and <= 0.8x ``"process"``, means incl. flushes and finish."""
    mmap = logs[(fixture, "mmap")]
    over_process = mmap["log"]["mean"] / logs[(fixture, "process")]["log"]["mean"]
    buffered = logs[(fixture, "buffered")]["log"]["mean"] / logs[(fixture, "process")]["log"]["mean"]
    return [
        f"| {fixture}: `mmap` / bare write, mean, against `buffered`'s target (mmap replaces it) | "
        f"{mmap['ratio_mean']:.2f}x | <= 0.8x | {verdict(mmap['ratio_mean'], 0.8)} |",
        f"| {fixture}: `mmap` / `process`, mean | {over_process:.2f}x | <= 0.8x | {verdict(over_process, 0.8)} |",
        f"| {fixture}: `buffered` / `process`, mean | {buffered:.2f}x | <= 0.8x | {verdict(buffered, 0.8)} |",
    ]


def startup_rows(startup: dict) -> list[str]:
    if not startup:
        return ["| import and init cost (bench_startup.py) | skipped | | |"]
    s = startup
    lines = [
        f"| `import steplog` adds (over `import orjson`: {s['import orjson s']:.3f} s, "
        f"{s['import orjson MiB']:.1f} MiB) | "
        f"{s['import added s']:.3f} s, {s['import added MiB']:.1f} MiB | <= 0.1 s, <= 10 MiB | "
        f"{verdict(s['import added s'], 0.1) if s['import added MiB'] <= 10 else 'FAIL'} |"
    ]
    for mode in ("mmap", "process"):
        first = max(s[f"{mode} first init ms"], s[f"{mode} first finish ms"])
        later = max(s[f"{mode} later init ms"], s[f"{mode} later finish ms"])
        lines.append(
            f"| `{mode}`: init / finish, first run of a process | {s[f'{mode} first init ms']:.1f} / "
            f"{s[f'{mode} first finish ms']:.1f} ms | <= 15 ms each | {verdict(first, 15)} |"
        )
        lines.append(
            f"| `{mode}`: init / finish, later runs (median) | {s[f'{mode} later init ms']:.1f} / "
            f"{s[f'{mode} later finish ms']:.1f} ms (one fsync here: {s['one fsync ms']:.1f} ms) | "
            f"<= 2 ms each | {verdict(later, 2)} |"
        )
    return lines


def table(
    size_name: str,
    size: dict,
    logs: dict,
    breakdown: dict,
    rss: dict,
    references: dict,
    queries,
    gpu,
    startup: dict | None = None,
    reads: list | str = "skipped",
) -> str:
    lines = ["| figure | value | target | verdict |", "|---|---|---|---|", *log_rows(logs)]
    for part, cost in breakdown.items():
        lines.append(f"| log() stage (log_breakdown.py): {part} | {cost:.0f} ns | | |")
    for mode, (growth, before, after) in rss.items():
        lines.append(
            f"| RSS growth over {size['rss_steps']:,} steps, `{mode}` | {growth:.2f} MB ({before:.1f} -> "
            f"{after:.1f} MB) | < {RSS_TARGET_MB:.0f} MB | {verdict(growth, RSS_TARGET_MB)} |"
        )
    lines += startup_rows(startup or {})
    for name, value in references.items():
        shown = f"{value * 1e6:.1f} us/step" if isinstance(value, float) else value
        lines.append(f"| reference: {name}, 8 scalars per step (mean) | {shown} | | |")
    if isinstance(queries, dict):
        for key, value in queries.items():
            lines.append(f"| queries (bench_queries.py): {key} | {value:.4g} | | |")
    else:
        lines.append(f"| queries (bench_queries.py) | {queries} | | |")
    if isinstance(reads, list):
        lines += ["| " + " | ".join(row) + " |" for row in reads]
    else:
        lines.append(f"| reads (bench_reads.py) | {reads} | | |")
    if isinstance(gpu, dict):
        for key, value in gpu.items():
            lines.append(f"| gpu_sync.py: {key} | {value} | | |")
    else:
        lines.append(f"| gpu_sync.py (training loop on an accelerator) | {gpu} | | |")
    return "\n".join(lines)


def startup_figures(tiny: bool) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    import bench_startup

    return bench_startup.main(["--tiny"] if tiny else [])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiny", action="store_true", help="every benchmark at a tiny size (a smoke test); saves nothing"
    )
    parser.add_argument("--no-save", action="store_true", help="print the table only")
    parser.add_argument("--skip-references", action="store_true", help="do not measure other trackers")
    parser.add_argument("--skip-queries", action="store_true", help="do not run bench_queries.py")
    parser.add_argument("--skip-reads", action="store_true", help="do not run bench_reads.py")
    parser.add_argument("--only-reads", action="store_true", help="only bench_reads.py (issue 11's read side)")
    parser.add_argument("--rss-child", nargs=3, metavar=("STEPS", "MODE", "ROOT"), help=argparse.SUPPRESS)
    parser.add_argument("--reference-child", nargs=3, metavar=("NAME", "STEPS", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(int(args.rss_child[0]), args.rss_child[1], args.rss_child[2])
        return ""
    if args.reference_child:
        reference_child(args.reference_child[0], int(args.reference_child[1]), args.reference_child[2])
        return ""
    size_name = "tiny" if args.tiny else "full"
    size = SIZES[size_name]
    if args.only_reads:
        return reads_only(args)
    with tempfile.TemporaryDirectory(prefix="steplog-bench-") as work:
        root = Path(work)
        logs = log_figures(size, root)
        breakdown = breakdown_figures(args.tiny)
        rss = rss_figures(size["rss_steps"], root)
        startup = startup_figures(args.tiny)
        references = {} if args.skip_references else reference_figures(size["reference_steps"], root)
    queries = "skipped (--skip-queries)" if args.skip_queries else query_figures(args.tiny)
    reads = "skipped (--skip-reads)" if args.skip_reads else read_rows(args.tiny)
    gpu = gpu_figures(args.tiny)
    text = table(size_name, size, logs, breakdown, rss, references, queries, gpu, startup, reads)
    print(text)
    if not args.tiny and not args.no_save:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        header = (
            f"\n### {stamp}: benchmarks/run.py\n\nMachine: {machine()}. Versions: {versions()}.\n"
            f"{', '.join(f'{n:,} calls ({k})' for k, n in size['calls'].items())} per mode in blocks of "
            f"{size['block']:,}, x{size['repeats']} repeats; "
            f"timer overhead {logs['timer_overhead_ns']} ns subtracted.\n\n"
        )
        with open(RESULTS, "a") as f:
            f.write(header + text + "\n")
        print(f"\nappended to {RESULTS}")
    return text


def reads_only(args: argparse.Namespace) -> str:
    """``--only-reads``: bench_reads.py's rows alone, saved like the full table."""
    text = "\n".join(
        [
            "| figure | value | target | verdict |",
            "|---|---|---|---|",
            *("| " + " | ".join(row) + " |" for row in read_rows(args.tiny)),
        ]
    )
    print(text)
    if not args.tiny and not args.no_save:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(RESULTS, "a") as f:
            f.write(
                f"\n### {stamp}: benchmarks/run.py --only-reads\n\nMachine: {machine()}. Versions: {versions()}. "
                f"Median of 5 runs per figure, baselines timed in the same process.\n\n{text}\n"
            )
        print(f"\nappended to {RESULTS}")
    return text


if __name__ == "__main__":
    main()
