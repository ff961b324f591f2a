"""Reads of live runs, history of a 1,000,000-event live run, and compaction (issue 11, read side).

Fixtures (issue 11), written with the format module's encoders as ``Run.log`` writes them, in a
temporary folder:

* 200 uncompacted runs x 500 steps (train_loss, lr, grad_norm, tokens_per_sec every step,
  val_loss every 10th), then the same runs compacted;
* one live run of 1,000,000 events (4 metrics every step + val_loss every 100th), started with a config;
* 100 compacted runs x 1,000 steps for ``runs()``, ``best()`` and a scan filtered to one run id.

Every figure is the median of ``--repeat`` runs, and each steplog figure is beside a plain
baseline timed in the same process (an orjson loop, ``pl.scan_ndjson``, ``pl.read_ndjson``).
``main`` returns rows ``(figure, value, target, verdict)`` for ``benchmarks/run.py``'s table.

    python benchmarks/bench_reads.py [--tiny] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import polars as pl

import steplog
from steplog import format as fmt
from steplog import readcache
from steplog.store import new_run_id

SIZES = {
    "full": {"runs": 200, "steps": 500, "big": 1_000_000, "table_runs": 100, "table_steps": 1_000},
    "tiny": {"runs": 10, "steps": 50, "big": 20_000, "table_runs": 5, "table_steps": 50},
}
METRICS = ("train_loss", "lr", "grad_norm", "tokens_per_sec")


def write_run(root: Path, name: str, steps: int, seed: int, val_every: int, finished: bool = True) -> str:
    """One run of ``steps`` metric events: 4 metrics every step, val_loss every ``val_every``."""
    rng = np.random.default_rng(seed)
    run_id = new_run_id(dt.datetime.now(dt.timezone.utc))
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    t0 = 1_764_000_000.0 + seed
    base = 2.0 / np.sqrt(np.arange(steps) + 1.0)
    columns = [
        (base + rng.normal(0, 0.01, steps)).tolist(),
        [3e-4] * steps,
        rng.uniform(0.5, 2, steps).tolist(),
        rng.uniform(9e4, 1e5, steps).tolist(),
    ]
    val = (base * 1.05).tolist()
    lines = [
        fmt.encode_control_event(
            fmt.START,
            v=fmt.FORMAT_VERSION,
            run_id=run_id,
            name=name,
            time=t0,
            time_ns=int(t0 * 1e9),
            durability="process",
            meta={"host": "bench"},
            config={"lr": 3e-4, "layers": 4 + seed % 3, "seed": seed},
        )
    ]
    encode = fmt.encode_metric_event
    for step in range(steps):
        metrics = {key: column[step] for key, column in zip(METRICS, columns)}
        if step % val_every == val_every - 1:
            metrics["val_loss"] = val[step]
        lines.append(encode(step, t0 + step * 0.01, step * 0.01, metrics))
    if finished:
        lines.append(
            fmt.encode_control_event(fmt.FINISH, status="finished", time=t0 + steps * 0.01, w=steps * 0.01, segment=0)
        )
    (run_dir / fmt.EVENTS_FILE).write_bytes(b"".join(lines))
    return run_id


def timed(function, repeat: int, cold: bool = False, before=None) -> float:
    """Median time of ``function`` after one warm-up call (imports, caches of the process: what a
    second query in a session sees). ``cold`` empties steplog's parse cache (``steplog.readcache``)
    before each call: what the first query of a process pays once its imports are done. ``before``
    runs untimed before each call."""
    function()
    times = []
    for _ in range(repeat):
        if cold:
            readcache.clear()
        if before is not None:
            before()
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def append_steps(files: list[Path], steps: int, count: int = 10) -> None:
    """Append ``count`` metric events to each live file (steps from ``steps[file]`` on), as runs do between two
    queries of a dashboard."""
    for path in files:
        lines = b"".join(
            fmt.encode_metric_event(step, 1_764_000_000.0 + step, step * 0.01, {"train_loss": 1.0, "val_loss": 1.0})
            for step in range(steps, steps + count)
        )
        with open(path, "ab") as f:
            f.write(lines)


def orjson_min(files: list[Path], metric: str) -> float:
    """The plain loop: every line of every file through orjson, the minimum of one metric."""
    best = float("inf")
    for path in files:
        for line in path.read_bytes().splitlines():
            value = orjson.loads(line).get("m", {}).get(metric)
            if value is not None and value < best:
                best = value
    return best


def ndjson_min(files: list[Path], metric: str) -> float:
    """One ``pl.scan_ndjson`` over the raw files (control lines have no ``m``: null)."""
    schema = {"s": pl.Int64, "m": pl.Struct({m: pl.Float64 for m in (*METRICS, "val_loss")})}
    return pl.scan_ndjson(files, schema=schema).select(pl.col("m").struct.field(metric).min()).collect().item()


def many_runs(work: Path, size: dict, repeat: int, rows: list) -> None:
    root = work / "many"
    ids = [write_run(root, f"run-{i}", size["steps"], i + 1, 10) for i in range(size["runs"])]
    files = [root / i / fmt.EVENTS_FILE for i in ids]
    n = size["runs"]
    expected = orjson_min(files, "val_loss")

    def scan_min() -> float:
        value = steplog.scan(root).select(pl.col("val_loss").min()).collect().item()
        assert value == expected, (value, expected)
        return value

    def history_loop() -> float:
        return min(steplog.history(run_id, root=root)["val_loss"].min() for run_id in ids)

    plain = timed(lambda: orjson_min(files, "val_loss"), repeat)
    ndjson = timed(lambda: ndjson_min(files, "val_loss"), repeat)
    live_scan = timed(scan_min, repeat)
    live_loop = timed(history_loop, repeat)
    live_scan_cold = timed(scan_min, repeat, cold=True)
    live_loop_cold = timed(history_loop, repeat, cold=True)
    appended = [size["steps"]]

    def append() -> None:
        append_steps(files, appended[0])
        appended[0] += 10

    scan_all = lambda: steplog.scan(root).select(pl.col("val_loss").min()).collect()
    live_scan_grown = timed(scan_all, repeat, before=append)
    live_loop_grown = timed(history_loop, repeat, before=append)
    for path in files:  # back to the fixture's lines, for compaction
        with open(path, "r+b") as f:
            f.truncate(len(b"".join(path.read_bytes().splitlines(keepends=True)[: size["steps"] + 2])))
    assert len(steplog.compact(root, quiet=True)) == n
    compacted_scan = timed(scan_min, repeat)
    compacted_loop = timed(history_loop, repeat)
    compacted_scan_cold = timed(scan_min, repeat, cold=True)
    compacted_loop_cold = timed(history_loop, repeat, cold=True)
    rows += [
        (
            f"{n} live runs x {size['steps']} steps: plain orjson loop / one pl.scan_ndjson, min of val_loss",
            f"{plain:.3f} s / {ndjson:.3f} s",
            "(baselines)",
            "",
        ),
        (
            f"{n} live runs: one steplog.scan query, min of val_loss",
            f"{live_scan:.3f} s ({live_scan / ndjson:.2f}x pl.scan_ndjson)",
            "<= 0.15 s and <= 1.0x",
            verdict(live_scan <= 0.15 and live_scan <= ndjson),
        ),
        (f"{n} live runs: loop of history() per run", f"{live_loop:.3f} s", "<= 0.3 s", verdict(live_loop <= 0.3)),
        (
            f"{n} live runs, each grown by 10 steps before the query: one scan / loop of history()",
            f"{live_scan_grown:.3f} s / {live_loop_grown:.3f} s",
            "(a dashboard polling runs that log)",
            "",
        ),
        (
            f"{n} live runs, first query of a process (parse cache empty): one scan / loop of history()",
            f"{live_scan_cold:.3f} s ({live_scan_cold / ndjson:.2f}x pl.scan_ndjson) / {live_loop_cold:.3f} s",
            "the same targets: <= 0.15 s and <= 1.0x / <= 0.3 s",
            verdict(live_scan_cold <= 0.15 and live_scan_cold <= ndjson and live_loop_cold <= 0.3),
        ),
        (
            f"{n} runs compacted: one steplog.scan query",
            f"{compacted_scan:.3f} s",
            "<= 0.05 s",
            verdict(compacted_scan <= 0.05),
        ),
        (
            f"{n} runs compacted: loop of history() per run",
            f"{compacted_loop:.3f} s",
            "<= 0.3 s",
            verdict(compacted_loop <= 0.3),
        ),
        (
            f"{n} runs compacted, first query of a process (cache empty): one scan / loop of history()",
            f"{compacted_scan_cold:.3f} s / {compacted_loop_cold:.3f} s",
            "the same targets: <= 0.05 s / <= 0.3 s",
            verdict(compacted_scan_cold <= 0.05 and compacted_loop_cold <= 0.3),
        ),
    ]


def big_run(work: Path, size: dict, repeat: int, rows: list) -> None:
    root = work / "big"
    run_id = write_run(root, "big", size["big"], 0, 100, finished=False)
    events = root / run_id / fmt.EVENTS_FILE
    read = timed(lambda: pl.read_ndjson(events, infer_schema_length=None), repeat)
    history = timed(lambda: steplog.history(run_id, root=root), repeat, cold=True)  # the file parsed every time
    again = timed(lambda: steplog.history(run_id, root=root), repeat)
    peak, frame_mib = memory_child(root, run_id)
    rows += [
        (
            f"history() of a live run of {size['big']:,} events",
            f"{history:.3f} s ({history / read:.2f}x pl.read_ndjson: {read:.3f} s)",
            "<= 1.0x",
            verdict(history <= read),
        ),
        ("history() of that run again, nothing appended (parse cache)", f"{again:.3f} s", "", ""),
        (
            "history() of that run: peak memory added / result frame",
            f"{peak:.0f} MiB / {frame_mib:.0f} MiB = {peak / frame_mib:.1f}x",
            "<= 5x",
            verdict(peak <= 5 * frame_mib),
        ),
    ]
    pristine = work / "big-events.jsonl"
    shutil.copyfile(events, pristine)
    plain_parquet = work / "plain.parquet"
    compact_times, plain_times = [], []
    for _ in range(repeat):
        shutil.copyfile(pristine, events)
        for name in (fmt.PARQUET_FILE, fmt.SIDECAR_FILE, fmt.ARCHIVED_EVENTS_FILE):
            (root / run_id / name).unlink(missing_ok=True)
        os.sync()
        readcache.clear()  # compaction as `steplog compact` runs it: in a process that has read nothing
        start = time.perf_counter()
        pl.read_ndjson(pristine, infer_schema_length=None).write_parquet(plain_parquet)
        plain_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert steplog.compact(root, runs=[run_id], quiet=True) == [run_id]
        compact_times.append(time.perf_counter() - start)
    compact_s, plain_s = statistics.median(compact_times), statistics.median(plain_times)
    rows.append(
        (
            "compaction of that run (events/s) / pl.read_ndjson(f).write_parquet(p)",
            f"{compact_s:.3f} s ({size['big'] / compact_s:,.0f} events/s) / {plain_s:.3f} s = "
            f"{compact_s / plain_s:.2f}x",
            "< 1.0x",
            verdict(compact_s < plain_s),
        )
    )


def memory_child(root: Path, run_id: str) -> tuple[float, float]:
    """Peak RSS added by ``history()`` in a fresh process (polars, pyarrow imported first), and
    the result frame's size, in MiB. The peak is /proc's VmHWM, reset first through clear_refs
    (``ru_maxrss`` would carry the parent's peak over the exec)."""
    code = (
        "import sys, polars, pyarrow, pyarrow.json, pyarrow.compute, steplog\n"
        "from steplog import reader, query\n"
        "def status(key):\n"
        "    return int(open('/proc/self/status').read().split(key + ':')[1].split()[0])\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = status('VmRSS')\n"
        "frame = steplog.history(sys.argv[1], root=sys.argv[2])\n"
        "print((status('VmHWM') - before) / 1024, frame.estimated_size() / 2**20)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, run_id, str(root)], capture_output=True, text=True, check=True)
    peak, frame = out.stdout.split()
    return float(peak), float(frame)


def table_runs(work: Path, size: dict, repeat: int, rows: list) -> None:
    root = work / "table"
    ids = [write_run(root, f"run-{i}", size["table_steps"], i + 1, 10) for i in range(size["table_runs"])]
    steplog.compact(root, quiet=True)
    n, one = size["table_runs"], ids[len(ids) // 2]
    runs_s = timed(lambda: steplog.runs(root), repeat)
    best_s = timed(lambda: steplog.best("val_loss", root=root), repeat)
    scan_one = timed(
        lambda: steplog.scan(root).filter(pl.col("run_id") == one).select("step", "val_loss").collect(), repeat
    )
    rows += [
        (f"runs() over {n} compacted runs", f"{runs_s * 1e3:.1f} ms", "", ""),
        (f"best('val_loss') over {n} compacted runs", f"{best_s * 1e3:.1f} ms", "", ""),
        (f"scan(root).filter(run_id == one) over {n} compacted runs", f"{scan_one * 1e3:.1f} ms", "", ""),
    ]


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def main(argv: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=("many", "big", "table"))
    args = parser.parse_args(argv)
    size = SIZES["tiny" if args.tiny else "full"]
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="steplog-reads-") as work:
        for name, part in (("many", many_runs), ("table", table_runs), ("big", big_run)):
            if args.only in (None, name):
                part(Path(work), size, args.repeat, rows)
    rows.append(("1-minute load average at the end", f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", "", ""))
    return rows


if __name__ == "__main__":
    for row in main(sys.argv[1:]):
        print("| " + " | ".join(row) + " |")
