"""Importer speed (issue 17): a TensorBoard log of 1,000,000 scalars imported by steplog beside
TensorBoard's own ``EventAccumulator`` loading it (every scalar kept), and an MLflow SQLite store of
100 runs x 10,000 steps imported (target <= 5 s).

    python benchmarks/bench_importers.py            # full size (fixtures take about a minute to make)
    python benchmarks/bench_importers.py --tiny     # a smoke run at a tiny size

The TensorBoard file is written with the event encoders of ``steplog.importers.from_tensorboard``
and real masked CRC32C checksums (the ``crc32c`` package when installed, else TensorBoard's own
pure-Python one), 4 tags x 250,000 steps, one scalar per event as ``add_scalar`` writes them. The
MLflow store holds MLflow's columns that the importer reads (runs, experiments, metrics, params,
tags) filled with ``sqlite3``: one metric per step, 5 params and 2 tags per run. Each measure is
repeated (``--repeat``) into a fresh root and reported as mean, median and worst wall seconds, and
the mean CPU seconds of the process (the machine may be shared: CPU time is what the import costs).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from steplog.importers import from_mlflow, from_tensorboard, mlflow, tensorboard


def masked_crc():
    try:
        from crc32c import crc32c
    except ImportError:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
        return masked_crc32c

    def masked(data: bytes) -> int:
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    return masked


def write_event_file(path: Path, steps: int, tags: tuple[str, ...]) -> int:
    """An event file of ``steps * len(tags)`` scalars, with real CRCs; returns the number of scalars."""
    crc = masked_crc()
    enc = from_tensorboard
    rng = random.Random(0)
    with open(path, "wb") as f:
        version = enc._key(1, 1) + struct.pack("<d", 1.7e9) + enc._key(3, 2) + bytes([13]) + b"brain.Event:2"
        records = [version]
        for step in range(steps):
            for tag in tags:
                records.append(enc._event(1.7e9 + step * 0.01, step, enc._scalar_summary(tag, rng.random())))
            if len(records) > 50_000 or step == steps - 1:
                out = []
                for payload in records:
                    header = struct.pack("<Q", len(payload))
                    out += [header, struct.pack("<I", crc(header)), payload, struct.pack("<I", crc(payload))]
                f.write(b"".join(out))
                records = []
    return steps * len(tags)


def accumulator_load(folder: Path) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every scalar
    acc.Reload()
    return sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])


def write_mlflow_db(path: Path, runs: int, steps: int) -> int:
    rng = random.Random(1)
    db = sqlite3.connect(path)
    db.executescript(from_mlflow._MINIMAL_SCHEMA)
    db.execute("INSERT INTO experiments VALUES (0, 'Default', 'active')")
    for r in range(runs):
        uuid = f"{r:032x}"
        start = 1_700_000_000_000 + r * 10_000_000
        db.execute("INSERT INTO runs VALUES (?, ?, 'FINISHED', ?, ?, 'active', 0)",
                   (uuid, f"run-{r}", start, start + steps))
        db.executemany("INSERT INTO params VALUES (?, ?, ?)", [(f"p{i}", str(rng.random()), uuid) for i in range(5)])
        db.executemany("INSERT INTO tags VALUES (?, ?, ?)", [("mlflow.user", "me", uuid), ("team", "a", uuid)])
        db.executemany("INSERT INTO metrics VALUES ('loss', ?, ?, ?, ?, 0)",
                       [(rng.random(), start + s, uuid, s) for s in range(steps)])
    db.execute("CREATE INDEX metrics_run ON metrics (run_uuid)")  # MLflow's primary key starts with the run too
    db.commit()
    db.close()
    return runs * steps


def timed(fn, repeat: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds (this process) of each of ``repeat`` calls: on a shared machine the
    CPU time says what the import costs, the wall time what it took there."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def line(label: str, times: tuple[list[float], list[float]]) -> str:
    walls, cpus = times
    return (f"| {label} | {statistics.mean(walls):.3f} | {statistics.median(walls):.3f} | {max(walls):.3f} "
            f"| {statistics.mean(cpus):.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a smoke run at a tiny size")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    steps, runs, run_steps = (2_500, 5, 100) if args.tiny else (250_000, 100, 10_000)
    work = Path(tempfile.mkdtemp(prefix="bench-importers-"))
    try:
        folder = work / "tb"
        folder.mkdir()
        scalars = write_event_file(folder / "events.out.tfevents.1700000000.bench", steps, ("loss", "acc", "lr", "gn"))
        roots = iter(range(10**6))
        ours = timed(lambda: tensorboard(folder, root=work / f"r{next(roots)}", quiet=True), args.repeat)
        try:
            loaded = accumulator_load(folder)
        except ImportError:
            theirs = None
        else:
            assert loaded == scalars, (loaded, scalars)
            theirs = timed(lambda: accumulator_load(folder), args.repeat)
        rows = write_mlflow_db(work / "mlflow.db", runs, run_steps)
        ml = timed(lambda: mlflow(work / "mlflow.db", root=work / f"m{next(roots)}", quiet=True), args.repeat)
        print("| measure | mean s | median s | worst s | mean CPU s |\n|---|---|---|---|---|")
        print(line(f"steplog import, TensorBoard file of {scalars:,} scalars", ours))
        if theirs is not None:
            print(line("EventAccumulator load (all scalars kept), same file", theirs))
            ratio = statistics.mean(theirs[0]) / statistics.mean(ours[0])
            cpu_ratio = statistics.mean(theirs[1]) / statistics.mean(ours[1])
            print(f"| ratio EventAccumulator / steplog (means) | {ratio:.2f}x | | | {cpu_ratio:.2f}x |")
        print(line(f"steplog import, MLflow SQLite store of {runs} runs x {run_steps:,} steps ({rows:,} rows)", ml))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
