"""Benchmark of the dashboard (issue 16), against the targets of the issue:

* runs table of R compacted runs: server start, first byte of the page and of ``/api/runs`` (cold:
  first request; warm: later polls), and the page interactive in headless Chromium (navigation to
  the first charts drawn);
* one metric of an N-step compacted run at a 2,000-px panel: the full range and zoom re-queries
  (random 1 % windows), beside the plain baseline of reading the run's history with
  ``steplog.history`` in the same run;
* L live runs logging at F steps/s each, polled as the page polls (each running run's new points
  through its cursor every second, the runs table every 2 s): latency from ``log()`` to the point
  reaching the client, and the server's CPU (a separate process, measured with psutil);
* bytes per live update of one run, against re-fetching the whole series (what trackio does);
* a bucket as the root (moto's S3 server on 127.0.0.1, B pushed runs): ``/api/runs`` and one run's
  series, beside ``steplog.runs`` of the same bucket.

Sizes: default R=1,000, N=10,000,000, L=20, F=1,000, B=200; --tiny for a smoke test.

    python benchmarks/bench_ui.py [--tiny] [--steps N] [--runs R] [--live L] [--no-browser]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

import steplog
import steplog.ui
from steplog.ui.browser import CHROMIUM_ARGS, chromium_path

_spec = importlib.util.spec_from_file_location("bench_queries", Path(__file__).with_name("bench_queries.py"))
bench_queries = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_queries)


def fetch(url: str) -> tuple[float, float, bytes]:
    """(seconds to the first byte, seconds to the last, body) of GET url."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        first = time.perf_counter() - start
        body = response.read()
    return first, time.perf_counter() - start, body


def stats(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return f"mean {statistics.fmean(ms):.1f} ms, p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms (n={len(ms)})"


def runs_table(work: Path, count: int, browser: bool) -> list[str]:
    root = work / "table"
    root.mkdir()
    for i in range(count):
        bench_queries.write_run(root, f"run{i:04d}", 100, i, {"lr": 10 ** -(i % 5), "depth": i % 3, "seed": i})
    steplog.compact(root, quiet=True)
    start = time.perf_counter()
    server = steplog.ui.serve(root, port=0)
    started = time.perf_counter() - start
    try:
        page = fetch(server.url)
        cold = fetch(server.url + "api/runs")
        warm = [fetch(server.url + "api/runs") for _ in range(5)]
        lines = [
            f"| server start, {count} runs | {started * 1000:.1f} ms |",
            f"| page first byte | {page[0] * 1000:.1f} ms |",
            (
                f"| `/api/runs` cold (first read of {count} runs) | first byte {cold[0] * 1000:.0f} ms, "
                f"whole {cold[1] * 1000:.0f} ms, {len(cold[2]) / 1e6:.2f} MB |"
            ),
            f"| `/api/runs` warm (a poll) | {stats([w[1] for w in warm])} |",
        ]
        if browser:
            in_page, driven = interactive(server.url, 10)
            lines.append(
                f"| page interactive in headless Chromium: navigation start to the charts drawn, as the "
                f"page measures it | {stats(in_page)} |"
            )
            lines.append(f"| the same seen from the test driver (adds playwright's round trips) | {stats(driven)} |")
    finally:
        server.stop()
    return lines


def interactive(url: str, repeat: int) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright

    times, in_page = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        for _ in range(repeat):
            page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_function("window.steplog && window.steplog.ready === true", polling=10)
            times.append(time.perf_counter() - start)
            in_page.append(page.evaluate("window.steplog.timing.data") / 1000)  # ms since navigation start
            page.close()
        browser.close()
    return in_page, times


def write_long_run(root: Path, steps: int) -> str:
    """A finished run of ``steps`` steps (train_loss every step, a spike in the middle), compacted."""
    import orjson

    from steplog import format as fmt
    from steplog.store import new_run_id

    run_id = new_run_id()
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    t0 = 1_764_000_000.0
    start = fmt.encode_control_event(
        fmt.START,
        v=fmt.FORMAT_VERSION,
        run_id=run_id,
        name="long",
        time=t0,
        start_time="2025-11-24T16:00:00+00:00",
        durability="process",
        config={},
        meta={"host": "bench"},
    )
    rng = np.random.default_rng(0)
    with open(run_dir / fmt.EVENTS_FILE, "wb") as f:
        f.write(start)
        for begin in range(0, steps, 1_000_000):
            step = np.arange(begin, min(steps, begin + 1_000_000))
            loss = 2.0 / np.sqrt(step + 1.0) + rng.normal(0, 0.01, len(step))
            loss[step == steps // 2] = 50.0
            events = [
                {"s": s, "t": t0 + s * 1e-3, "w": s * 1e-3, "m": {"train_loss": v}}
                for s, v in zip(step.tolist(), loss.tolist())
            ]
            f.write(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
        f.write(
            fmt.encode_control_event(fmt.FINISH, status="finished", time=t0 + steps * 1e-3, w=steps * 1e-3, segment=0)
        )
    steplog.compact(root, quiet=True)
    return run_id


def long_run(work: Path, steps: int, repeat: int) -> list[str]:
    root = work / "long"
    root.mkdir()
    made = time.perf_counter()
    run_id = write_long_run(root, steps)
    made = time.perf_counter() - made
    start = time.perf_counter()
    steplog.history(run_id, root=root).select("step", "train_loss")
    baseline = time.perf_counter() - start
    server = steplog.ui.serve(root, port=0)
    url = server.url + f"api/series?run={run_id}&metric=train_loss&width=2000"
    try:
        cold = fetch(url)[1]  # reads the column from Parquet
        full = [fetch(url)[1] for _ in range(repeat)]  # from the server's column cache
        body = json.loads(fetch(url)[2])["series"]["train_loss"]
        assert max(body["y"]) == 50.0, "the spike must survive downsampling"
        rng = np.random.default_rng(1)
        zooms = []
        for lo in rng.integers(0, int(steps * 0.99), size=repeat * 4):
            zooms.append(fetch(url + f"&from={lo}&to={lo + steps // 100}")[1])
    finally:
        server.stop()
    levels = with_levels(root / run_id, url.replace(server.url, ""), repeat)
    return [
        f"| {steps:,}-step compacted run: fixture written and compacted | {made:.1f} s |",
        f"| baseline: `steplog.history` of the run (step, train_loss) | {baseline * 1000:.0f} ms |",
        (
            f"| one metric, full range, 2,000 px ({len(body['x']):,} points sent), first request | "
            f"{cold * 1000:.0f} ms; {cold / baseline:.2f}x the baseline |"
        ),
        (
            f"| the same again (another panel, a reset zoom) | {stats(full)}; "
            f"{statistics.fmean(full) / baseline:.3f}x the baseline |"
        ),
        (
            f"| zoom re-query (1 % of the run, 2,000 px) | {stats(zooms)}; "
            f"{statistics.fmean(zooms) / baseline:.3f}x the baseline |"
        ),
        *levels,
    ]


def with_levels(run_dir: Path, path: str, repeat: int) -> list[str]:
    """The full-range request on a fresh server once the run has precomputed levels."""
    from steplog.levels import write_levels

    start = time.perf_counter()
    size = write_levels(run_dir).stat().st_size
    written = time.perf_counter() - start
    firsts = []
    for _ in range(repeat):
        server = steplog.ui.serve(run_dir.parent, port=0)  # nothing cached
        try:
            firsts.append(fetch(server.url + path)[1])
            body = json.loads(fetch(server.url + path)[2])["series"]["train_loss"]
            assert max(body["y"]) == 50.0, "the spike must survive the levels"
        finally:
            server.stop()
    return [
        (
            f"| precomputed levels (`steplog.levels.write_levels`, for compaction to call): writing them | "
            f"{written:.2f} s, {size / 1e6:.1f} MB |"
        ),
        f"| one metric, full range, 2,000 px, first request on a fresh server, with the levels | {stats(firsts)} |",
    ]


_WRITER = """
import sys, time, steplog
from steplog.ui.browser import CHROMIUM_ARGS, chromium_path
root, count, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
runs = [steplog.init(name=f"live{i}", root=root, buffer_interval=0.5) for i in range(count)]
print("ready", flush=True)
start = time.time(); step = 0
while time.time() - start < seconds:
    due = int((time.time() - start) * rate)
    while step < due:
        for run in runs:
            run.log({"loss": 1.0 / (step + 1), "acc": step % 7 / 7})
        step += 1
    time.sleep(0.005)
for run in runs:
    run.finish()
"""

_SERVER = (
    "import sys, steplog.ui, time; s = steplog.ui.serve(sys.argv[1], port=0); print(s.url, flush=True); time.sleep(1e6)"
)


def live_runs(work: Path, count: int, rate: int, seconds: float) -> list[str]:
    import psutil

    root = work / "live"
    root.mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(steplog.__file__).parents[1]))
    per_process = str(count // 4 or 1)  # 4 writer processes
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), per_process, str(rate), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(min(4, count))
    ]
    for w in writers:
        w.stdout.readline()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(root)], stdout=subprocess.PIPE, text=True, env=env)
    url = server.stdout.readline().strip()
    try:
        latencies, sizes, cpu = poll_like_the_page(url, seconds - 2, psutil.Process(server.pid))
        full = fetch(url + "api/series?run=live0&metric=loss&metric=acc&x=time&width=20000")[2]  # every point
    finally:
        for w in writers:
            w.wait()
        server.kill()
        server.wait()
    return [
        f"| {count} live runs x {rate:,} steps/s: latency from log() to the client (x=time) | {stats(latencies)} |",
        f"| server CPU while polled as the page does | {cpu:.1f} % of one core |",
        (
            f"| bytes per live update of one run (2 metrics, 1 s of new points) | "
            f"mean {statistics.fmean(sizes):,.0f} B "
            f"vs {len(full):,} B to re-fetch every point of the series after {seconds:.0f} s (trackio; grows with "
            f"the run): {len(full) / statistics.fmean(sizes):,.0f}x less |"
        ),
    ]


def poll_like_the_page(url: str, seconds: float, server) -> tuple[list[float], list[int], float]:
    cursors: dict[str, int] = {}
    runs: list[dict] = []
    latencies: list[float] = []
    sizes: list[int] = []
    time.sleep(1.0)
    server.cpu_percent()
    start = time.time()
    tick = 0
    while time.time() - start < seconds:
        tick += 1
        if tick % 2 or not runs:  # the table every 2 s, as the page does
            runs = json.loads(fetch(url + "api/runs")[2])["runs"]
        for row in runs:
            query = f"api/series?run={row['id']}&metric=loss&metric=acc&x=time&width=800"
            if row["id"] in cursors:
                query += f"&cursor={cursors[row['id']]}"
            body = fetch(url + query)[2]
            answer = json.loads(body)
            now = time.time()
            if row["id"] in cursors:
                sizes.append(len(body))
                latencies += [now - x for x in answer["series"]["loss"]["x"]]
            cursors[row["id"]] = answer["cursor"]
        time.sleep(max(0.0, 1.0 - (time.time() - start) % 1.0))
    return latencies, sizes, server.cpu_percent()


def bucket_root(work: Path, count: int) -> list[str]:
    """The dashboard of a bucket (moto's S3 server on 127.0.0.1): ``/api/runs`` and one series
    request, beside ``steplog.runs`` of the same bucket (the query layer's own table) in this run."""
    import socket

    import boto3
    import moto.server as moto_server

    from steplog.push import push
    from steplog.storage import open_root

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    endpoint = f"http://127.0.0.1:{port}"
    keys = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "aws_region": "us-east-1"}
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    ).create_bucket(Bucket="bench-ui")
    root = work / "bucket"
    root.mkdir()
    ids = [bench_queries.write_run(root, f"run{i:04d}", 1_000, i, {"lr": 10 ** -(i % 5)}) for i in range(count)]
    steplog.compact(root, quiet=True)
    url, options = "s3://bench-ui/team", {"aws_endpoint_url": endpoint, **keys}
    push(url, root=root, storage_options=options, quiet=True)
    bucket = open_root(url, options)
    try:
        start = time.perf_counter()
        baseline = steplog.runs(bucket).height
        baseline_s = time.perf_counter() - start
        server = steplog.ui.serve(bucket, port=0)
        try:
            cold = fetch(server.url + "api/runs")
            warm = [fetch(server.url + "api/runs")[1] for _ in range(5)]
            query = f"api/series?run={ids[-1]}&metric=train_loss&metric=val_loss&width=600"
            first = fetch(server.url + query)[1]
            again = [fetch(server.url + query)[1] for _ in range(5)]
        finally:
            server.stop()
    finally:
        s3.stop()
    return [
        f"| bucket of {count} runs (local S3 server): `steplog.runs` of it, baseline | "
        f"{baseline_s * 1000:.0f} ms ({baseline} runs) |",
        f"| `/api/runs` of the bucket, first request | first byte {cold[0] * 1000:.0f} ms, "
        f"whole {cold[1] * 1000:.0f} ms |",
        f"| `/api/runs` of the bucket, a later poll | {stats(warm)} |",
        f"| one run's series from the bucket (2 metrics, 1,000 steps), first request | {first * 1000:.0f} ms |",
        f"| the same again (from the server's column cache) | {stats(again)} |",
    ]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--steps", type=int, help="steps of the long run (default 10,000,000)")
    parser.add_argument("--runs", type=int, help="runs of the table (default 1,000)")
    parser.add_argument("--live", type=int, help="live runs (default 20)")
    parser.add_argument("--no-browser", action="store_true", help="skip the headless Chromium measurement")
    parser.add_argument(
        "--parts", default="table,long,live,bucket", help="which parts to run: table, long, live, bucket (default: all)"
    )
    args = parser.parse_args(argv)
    steps = args.steps or (20_000 if args.tiny else 10_000_000)
    count = args.runs or (10 if args.tiny else 1_000)
    live = args.live or (4 if args.tiny else 20)
    work = Path(tempfile.mkdtemp(prefix="steplog-bench-ui-"))
    lines = ["| what | measured |", "|---|---|"]
    print("\n".join(lines), flush=True)
    try:
        parts = {
            "table": lambda: runs_table(work, count, browser=not args.no_browser),
            "long": lambda: long_run(work, steps, repeat=3 if args.tiny else 7),
            "live": lambda: live_runs(work, live, 100 if args.tiny else 1_000, 6 if args.tiny else 20),
            "bucket": lambda: bucket_root(work, 10 if args.tiny else 200),
        }
        for name in args.parts.split(","):
            found = parts[name]()
            print("\n".join(found), flush=True)
            lines += found
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return lines


if __name__ == "__main__":
    main()
