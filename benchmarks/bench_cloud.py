"""Benchmarks for object storage and the catalog (issue 15), against a local S3 server (moto's
ThreadedMotoServer on 127.0.0.1; its Python HTTP server is slower than S3 or MinIO, which is why
push is shown beside plain concurrent puts of the same files with the same library, obstore).

Measured:

* ``steplog.push`` of P compacted runs (runs/s, MB/s) beside plain concurrent ``obstore.put`` of the
  same files (8 threads, as push uses), and a second push (everything already there);
* ``catalog.read`` (what ``runs()`` gets from the catalog) over R compacted runs on a local root:
  with a current catalog, and with none (every sidecar read), beside today's ``steplog.runs(root)``;
* the same ``catalog.read`` from the bucket over the P pushed runs;
* the queries with the bucket as root (``steplog.roots``): ``steplog.runs(url)`` and ``steplog.best``
  over the R listed runs pushed there, beside the same queries on the local root; ``steplog.scan(url)``
  of two metrics over the P pushed runs, beside Polars' own scan of ``<url>/*/metrics.parquet``.

Fixtures: P runs made with the public API (init/log/finish + compact). The R runs of the listing
benchmark are copies of one compacted run with their own id and name (sidecar rewritten; the Parquet
file, never opened by a listing, is copied as it is): compacting 10,000 runs one by one would take
minutes and measure compaction, not listing.

Sizes: default P=1,000, R=10,000; --small P=100, R=1,000; --tiny P=10, R=50 (a smoke test).

    python benchmarks/bench_cloud.py [--tiny | --small] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

import steplog
from steplog import catalog, storage
from steplog.store import new_run_id

SIZES = {"full": (1_000, 10_000), "small": (100, 1_000), "tiny": (10, 50)}
CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "aws_region": "us-east-1"}


def make_runs(root: Path, count: int, steps: int = 200) -> list[str]:
    """``count`` compacted runs of ``steps`` steps (train_loss, val_loss, lr) via the public API."""
    for i in range(count):
        with steplog.init(
            name=f"run{i}", config={"lr": 10.0 ** -(2 + i % 3), "model": {"size": 64 << (i % 4)}}, root=root
        ) as run:
            for step in range(steps):
                run.log({"train_loss": 2.0 / (step + 1) + i * 1e-3, "val_loss": 2.1 / (step + 1), "lr": 1e-3})
    return steplog.compact(root, quiet=True)


def copy_runs(source: Path, root: Path, count: int) -> None:
    """``count`` copies of the compacted run in ``source`` under ``root``, each with its own id and name."""
    sidecar = orjson.loads((source / "run.json").read_bytes())
    parquet = (source / "metrics.parquet").read_bytes()
    for i in range(count):
        run_id = new_run_id()
        run_dir = root / run_id
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.parquet").write_bytes(parquet)
        sidecar.update(run_id=run_id, name=f"copy{i}", config={"lr": 10.0 ** -(2 + i % 3), "seed": i})
        (run_dir / "run.json").write_bytes(orjson.dumps(sidecar))


def timed(function, repeat: int) -> dict[str, float]:
    """mean, p50, p99 and min of ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    times.sort()
    return {
        "mean": statistics.fmean(times),
        "p50": statistics.median(times),
        "p99": times[min(len(times) - 1, round(0.99 * (len(times) - 1)))],
        "min": times[0],
    }


def start_server() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def create_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    ).create_bucket(Bucket=name)


def plain_puts(url: str, options: dict, files: list[tuple[str, Path]]) -> None:
    """The baseline: the same files put with obstore from 8 threads, nothing else."""
    import obstore

    remote = storage.open_root(url, options)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: obstore.put(remote._store, item[0], item[1]), files))


def bench_push(root: Path, endpoint: str, pushes: int) -> list[str]:
    options = {"aws_endpoint_url": endpoint, **CREDENTIALS}
    create_bucket(endpoint, "bench")
    files = [
        (f"{d.name}/{n}", d / n)
        for d in sorted(root.iterdir())
        if not d.name.startswith("_")
        for n in ("metrics.parquet", "run.json")
    ]
    size_mb = sum(p.stat().st_size for _, p in files) / 1e6
    start = time.perf_counter()
    plain_puts("s3://bench/plain", options, files)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    steplog.push("s3://bench/steplog", root=root, storage_options=options, quiet=True)
    pushed = time.perf_counter() - start
    start = time.perf_counter()
    steplog.push("s3://bench/steplog", root=root, storage_options=options, quiet=True)
    again = time.perf_counter() - start
    return [
        (
            f"| push {pushes:,} runs ({size_mb:.1f} MB) | {pushed:.2f} s | {pushes / pushed:,.0f} runs/s, "
            f"{size_mb / pushed:.1f} MB/s |"
        ),
        (
            f"| plain concurrent obstore puts, same files | {plain:.2f} s | {pushes / plain:,.0f} runs/s, "
            f"{size_mb / plain:.1f} MB/s; push / plain = {pushed / plain:.2f}x |"
        ),
        f"| push again (all there: listing + sidecar compare) | {again:.2f} s | {pushes / again:,.0f} runs/s |",
    ]


def bench_listing(
    root: Path, runs: int, repeat: int, url: str | None = None, options: dict | None = None, label: str = "local"
) -> list[str]:
    where = url or root
    catalog.rebuild(where, storage_options=options)
    with_catalog = timed(lambda: catalog.read(where, storage_options=options), repeat)
    rows = [_row(f"catalog.read, {runs:,} runs, {label}, catalog current", with_catalog)]
    if url is None:
        (root / catalog.CATALOG_FILE).unlink()
        without = timed(lambda: catalog.read(root), max(1, repeat // 2))
        rows.append(_row(f"catalog.read, {runs:,} runs, {label}, no catalog (every sidecar)", without))
        baseline = timed(lambda: steplog.runs(root), max(1, repeat // 2))
        rows.append(_row(f"steplog.runs() today, {runs:,} runs, {label} (baseline)", baseline))
        rows.append(f"| catalog current / steplog.runs() | {with_catalog['mean'] / baseline['mean']:.3f}x | mean |")
        catalog.rebuild(root)
    return rows


def bench_remote_scan(url: str, options: dict, runs: int, repeat: int) -> list[str]:
    """A two-column query over every pushed run's Parquet file, straight from the bucket, beside
    downloading every file whole with obstore (what a scan without pushdown would cost at least)."""
    import io

    import obstore
    import polars as pl

    remote = storage.open_root(url, options)
    scan = timed(
        lambda: (
            pl.scan_parquet(f"{url}/*/metrics.parquet", storage_options=options)
            .group_by("run_id")
            .agg(pl.col("val_loss").min())
            .collect()
        ),
        repeat,
    )
    names = [n for n in remote.list() if n.endswith("/metrics.parquet")]

    def whole() -> None:
        with ThreadPoolExecutor(8) as pool:
            frames = pool.map(
                lambda n: pl.read_parquet(io.BytesIO(bytes(obstore.get(remote._store, n).bytes()))), names
            )
            pl.concat([f.select("run_id", "val_loss") for f in frames]).group_by("run_id").agg(pl.col("val_loss").min())

    baseline = timed(whole, max(1, repeat // 2))
    return [
        _row(f"two-column scan of {runs:,} runs from the bucket (Polars, pushdown)", scan),
        _row(f"baseline: download the {runs:,} files whole (8 threads) and aggregate", baseline),
        f"| scan / whole download | {scan['mean'] / baseline['mean']:.2f}x | mean |",
    ]


def bench_remote_queries(
    listed: Path, pushed_url: str, options: dict, runs: int, pushes: int, repeat: int
) -> list[str]:
    """The public queries with a URL root: runs() and best() over the listed runs (pushed to the
    bucket first), scan() of two metrics over the pushed runs, each beside its baseline. runs()
    lists the bucket's run folders (delimiter "/") beside the catalog and its journal
    (``steplog.journal``), so it is shown beside one plain listing of every object (what it cost
    before the journal) and one folder listing (its floor); catalog.read with full=True is the
    listing path it falls back to."""
    import obstore
    import polars as pl

    url = "s3://bench/listed"
    steplog.push(url, root=listed, storage_options=options, quiet=True)
    remote = storage.open_root(url, options)
    local_runs = timed(lambda: steplog.runs(listed), max(1, repeat // 2))
    remote_runs = timed(lambda: steplog.runs(remote), repeat)
    listing = timed(lambda: [m for batch in obstore.list(remote._store, chunk_size=1000) for m in batch], repeat)
    folders = timed(lambda: obstore.list_with_delimiter(remote._store), repeat)
    fast = timed(lambda: catalog.read(remote), repeat)
    full = timed(lambda: catalog.read(remote, full=True), max(1, repeat // 2))
    remote_best = timed(lambda: steplog.best("val_loss", root=remote), repeat)
    local_best = timed(lambda: steplog.best("val_loss", root=listed), max(1, repeat // 2))
    there = storage.open_root(pushed_url, options)
    scan = timed(
        lambda: (
            steplog.scan(there).group_by("name").agg(pl.col("val_loss").min(), pl.col("train_loss").last()).collect()
        ),
        repeat,
    )
    plain = timed(
        lambda: (
            pl.scan_parquet(f"{pushed_url}/*/metrics.parquet", storage_options=options)
            .group_by("name")
            .agg(pl.col("val_loss").min(), pl.col("train_loss").last())
            .collect()
        ),
        repeat,
    )
    return [
        _row(f"steplog.runs(url), {runs:,} runs, local S3 server", remote_runs),
        _row(f"baseline: one plain obstore listing of that bucket ({2 * runs:,} objects)", listing),
        f"| steplog.runs(url) / plain listing | {remote_runs['mean'] / listing['mean']:.2f}x | mean |",
        _row(f"floor: one listing of the bucket's {runs:,} run folders (delimiter /)", folders),
        f"| steplog.runs(url) / folder listing | {remote_runs['mean'] / folders['mean']:.2f}x | mean |",
        _row(f"catalog.read(url), {runs:,} runs: journal (folder listing, catalog, marker checks)", fast),
        _row(f"catalog.read(url, full=True), {runs:,} runs: every object listed (the fallback)", full),
        _row(f"steplog.runs(root), {runs:,} runs, local folder (baseline)", local_runs),
        _row(f"steplog.best(val_loss, root=url), {runs:,} runs, local S3 server", remote_best),
        _row(f"steplog.best(val_loss, root=folder), {runs:,} runs, local folder", local_best),
        _row(f"steplog.scan(url), two metrics, {pushes:,} runs, local S3 server", scan),
        _row(f"baseline: pl.scan_parquet of the same {pushes:,} files, same query", plain),
        f"| steplog.scan(url) / plain Polars scan | {scan['mean'] / plain['mean']:.2f}x | mean |",
    ]


def profile_listing(runs: int, repeat: int) -> list[str]:
    """Where moto spends a listing: a bucket of ``runs`` run folders (two objects each, put straight
    into moto's in-process backend), then the request kinds runs(url) may use, timed from obstore;
    with yappi installed (``pip install yappi``), the server side of one full listing profiled:
    the backend's key collection and sort per page beside the response's per-key serialization."""
    import obstore
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    server, endpoint = start_server()
    try:
        create_bucket(endpoint, "profile")
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for i in range(runs):
            for name in ("metrics.parquet", "run.json"):
                backend.put_object("profile", f"{new_run_id()}-{i:06d}/{name}", b"{}")
        remote = storage.open_root("s3://profile", {"aws_endpoint_url": endpoint, **CREDENTIALS})
        key = next(iter(remote.list(remote.run_prefixes().pop() + "/")))
        rows = [
            _row(f"full listing, {2 * runs:,} objects (pages of 1,000)", timed(lambda: remote.list(), repeat)),
            _row(f"folder listing (delimiter /), {runs:,} folders", timed(remote.run_prefixes, repeat)),
            _row("prefix listing of _catalog/ (nothing there)", timed(lambda: remote.list("_catalog/"), repeat)),
            _row("one HEAD", timed(lambda: remote.head(key), 20 * repeat)),
            _row("one GET", timed(lambda: remote.read(key), 20 * repeat)),
        ]
        try:
            import yappi
        except ImportError:
            return [*rows, "| server-side profile | not run | pip install yappi |"]
        yappi.set_clock_type("wall")
        yappi.start()
        [m for batch in obstore.list(remote._store, chunk_size=1000) for m in batch]
        yappi.stop()
        stats = {f.name: f.ttot for f in yappi.get_func_stats()}
        yappi.clear_stats()
        total = stats.get("S3Response.list_objects_v2", 0.0) or 1e-9
        for name, what in (
            ("S3Backend.list_objects_v2", "collect and sort the whole bucket, per page"),
            ("S3Response.serialized", "serialize the page's keys (XML, LastModified parsed by dateutil)"),
        ):
            spent = stats.get(name, 0.0)
            rows.append(f"| server side, {what} | {spent / total:.0%} of the handler | {spent:.2f} s (profiled) |")
        return rows
    finally:
        server.stop()


def _row(label: str, t: dict[str, float]) -> str:
    return f"| {label} | {t['mean']:.3f} s | p50 {t['p50']:.3f} s, p99 {t['p99']:.3f} s |"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--small", action="store_true")
    size.add_argument("--tiny", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--profile-listing", type=int, metavar="RUNS", help="only time and profile moto's listings of RUNS run folders"
    )
    args = parser.parse_args(argv)
    if args.profile_listing:
        rows = profile_listing(args.profile_listing, args.repeat)
        table = "\n".join(["| measure | time | note |", "| --- | --- | --- |", *rows])
        print(table)
        return table
    pushes, runs = SIZES["tiny" if args.tiny else "small" if args.small else "full"]
    work = Path(tempfile.mkdtemp(prefix="steplog-bench-cloud-"))
    server, endpoint = start_server()
    try:
        pushed_root, listed_root = work / "pushed", work / "listed"
        ids = make_runs(pushed_root, pushes)
        copy_runs(pushed_root / ids[0], listed_root, runs)
        lines = ["| measure | time | rate / note |", "| --- | --- | --- |"]
        lines += bench_push(pushed_root, endpoint, pushes)
        lines += bench_listing(listed_root, runs, args.repeat)
        options = {"aws_endpoint_url": endpoint, **CREDENTIALS}
        lines += bench_listing(pushed_root, pushes, args.repeat, "s3://bench/steplog", options, "local S3 server")
        lines += bench_remote_scan("s3://bench/steplog", options, pushes, args.repeat)
        lines += bench_remote_queries(listed_root, "s3://bench/steplog", options, runs, pushes, args.repeat)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
