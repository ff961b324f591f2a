"""durability="mmap": events copied into a reserved mapping of the events file survive SIGKILL at
any moment (chunk boundaries and extensions included), a full disk falls back to write(2) without
a SIGBUS, a finished file is plain JSON Lines equal to "process" mode's, and readers, resume and
compaction handle the zero tail a crash leaves."""

from __future__ import annotations

import errno
import os
import random
import signal
import struct
import subprocess
import time
import warnings
from pathlib import Path

import orjson
import pytest

import steplog
from steplog import eventfile, opening
from steplog import format as fmt
from steplog.reader import parse_events


def events_file(run_or_dir) -> Path:
    return getattr(run_or_dir, "dir", run_or_dir) / fmt.EVENTS_FILE


def comparable(path: Path) -> list[dict]:
    """The events of a file without what differs between two runs (times, ids, metadata, mode)."""
    out = []
    for line in path.read_bytes().splitlines():
        event = orjson.loads(line)
        for key in ("t", "w", "time", "start_time", "run_id", "name", "meta", "durability"):
            event.pop(key, None)
        out.append(event)
    return out


def log_the_same(root: Path, durability: str) -> Path:
    run = steplog.init(name=durability, config={"lr": 0.1}, root=root, durability=durability)
    for step in range(3000):  # crosses several chunks
        run.log({"loss": 1.0 / (step + 1), "nan": float("nan"), "big": 2**70, "flag": True})
    run.update_config({"late": 1})
    run.log({"val": -float("inf")}, step=10_000)
    run.finish(notes="done")
    return events_file(run)


def test_a_finished_mapped_file_is_the_process_mode_file(root):
    mapped, plain = log_the_same(root, "mmap"), log_the_same(root, "process")
    data = mapped.read_bytes()
    assert b"\0" not in data and data.endswith(b"\n")
    assert comparable(mapped) == comparable(plain)
    assert orjson.loads(data.splitlines()[0])["durability"] == "mmap"


def test_a_live_mapped_file_ends_in_zeros_that_readers_take_as_not_yet_written(root):
    run = steplog.init(name="live", root=root)  # "mmap" is the default
    assert run.durability == "mmap"
    for step in range(10):
        run.log({"loss": float(step)})
    data = events_file(run).read_bytes()
    assert data.rstrip(b"\0").count(b"\n") == 11 and data.endswith(b"\0")  # start + 10 events, then the reserve
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events = parse_events(data, events_file(run))
        assert events.skipped_lines == [] and events.rows.height == 10
        assert steplog.history("live", root=root).height == 10
        followed = list(steplog.follow("live", root=root, timeout=0.05, poll_interval=0.01))
    assert [e["step"] for e in followed] == list(range(10))
    run.finish()


def test_zero_bytes_inside_the_file_are_damage_reported_and_skipped(tmp_path):
    good = b'{"e":"start","v":1}\n{"s":0,"t":1.0,"w":0.0,"m":{"a":1.0}}\n'
    data = good + b'{"s":1,"t":1.0,"w":0.0,\0\0\0\n' + b'{"s":2,"t":1.0,"w":0.0,"m":{"a":3.0}}\n' + bytes(4096)
    with pytest.warns(UserWarning, match=r"skipped 1 damaged line.*line 3"):
        events = parse_events(data, tmp_path / "events.jsonl")
    assert events.rows["step"].to_list() == [0, 2]


CHILD_CHUNK = 8192  # small chunks in the children below: a kill often lands at or near a chunk boundary


def _child_logs_until_killed(path: str, counter: str, kill_in_extension: bool) -> None:
    """Forked child: log, recording in ``counter`` (a shared mapping) each step log() returned from."""
    eventfile.FIRST_CHUNK, eventfile.MAX_CHUNK = CHILD_CHUNK, CHILD_CHUNK
    if kill_in_extension:
        real = os.posix_fallocate
        calls = []

        def reserve_then_die(fd, offset, length):
            calls.append(1)
            if len(calls) == 3:  # the third chunk: reserved, not yet mapped
                real(fd, offset, length)
                os.kill(os.getpid(), signal.SIGKILL)
            return real(fd, offset, length)

        os.posix_fallocate = reserve_then_die
    import mmap

    with open(counter, "r+b") as f:
        shared = mmap.mmap(f.fileno(), 8)
    run = steplog.init(name="victim", root=path)
    step = 0
    while True:
        run.log({"loss": 1.0 / (step + 1), "nan": float("nan"), "s2": float(step * step)})
        struct.pack_into("q", shared, 0, step)
        step += 1


def _kill_one(root: Path, delay: float, kill_in_extension: bool = False) -> None:
    counter = root.parent / f"counter-{root.name}"
    counter.write_bytes(struct.pack("q", -1))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            _child_logs_until_killed(str(root), str(counter), kill_in_extension)
        finally:
            os._exit(1)
    deadline = time.monotonic() + 30
    while struct.unpack("q", counter.read_bytes())[0] < 0 and time.monotonic() < deadline:
        time.sleep(0.001)  # the random moment counts from the first event logged
    until = time.monotonic() + delay
    while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < until:
        time.sleep(0.001)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # it killed itself
    returned = struct.unpack("q", counter.read_bytes())[0]
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    data = events_file(run_dir).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # readers never see a damaged line
        events = parse_events(data, events_file(run_dir))
    steps = events.rows["step"].to_list()
    assert steps == list(range(len(steps)))  # no gap, no event twice
    assert len(steps) >= returned + 1  # every event log() returned from is in the file
    assert b"\0" not in data.rstrip(b"\0")  # zeros only as the tail


def test_a_hundred_sigkills_at_random_moments_lose_nothing_logged(tmp_path):
    rng = random.Random(18)
    for attempt in range(100):
        _kill_one(tmp_path / f"r{attempt}", rng.uniform(0.0, 0.03))


def test_a_sigkill_during_a_chunk_extension_loses_nothing_logged(tmp_path):
    for attempt in range(3):
        _kill_one(tmp_path / f"r{attempt}", 5.0, kill_in_extension=True)  # the child kills itself first


def test_a_crashed_mapped_run_resumes_and_compacts_clean(tmp_path):
    root = tmp_path / "logs"
    _kill_one(root, 0.05)
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    logged = steplog.history(run_dir.name, root=root).height
    assert steplog.runs(root=root)["status"].to_list() == ["crashed"]
    run = steplog.init(resume=run_dir.name, root=root)
    run.log({"loss": 0.0})
    run.finish()
    data = events_file(run_dir).read_bytes()
    assert b"\0" not in data
    assert steplog.history(run_dir.name, root=root)["step"].to_list() == list(range(logged + 1))
    _kill_one(tmp_path / "second", 0.05)
    (crashed,) = [p for p in (tmp_path / "second").iterdir() if p.is_dir()]
    live = steplog.history(crashed.name, root=tmp_path / "second")
    steplog.compact(tmp_path / "second")
    archived = crashed / fmt.ARCHIVED_EVENTS_FILE
    assert b"\0" not in archived.read_bytes()  # the zero tail was cut before compaction read the file
    assert steplog.history(crashed.name, root=tmp_path / "second").equals(live)


def _full_disk_run(root: Path) -> None:
    run = steplog.init(name="full", root=root)
    assert run.durability == "mmap"
    step = 0
    with pytest.warns(UserWarning, match="could not reserve space"):
        while run.durability == "mmap" and step < 1_000_000:
            run.log({"loss": float(step), "pad": 1.0})
            step += 1
    assert run.durability == "process"
    for _ in range(5):  # the write(2) path, with its own disk-full behaviour
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run.log({"loss": -1.0, "pad": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.finish()
    data = events_file(run).read_bytes()
    assert b"\0" not in data
    events = parse_events(data, events_file(run))
    assert events.rows["step"].to_list()[:step] == list(range(step))  # the data before is intact


def test_a_full_disk_falls_back_to_write_without_sigbus(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"this test mounts a small tmpfs and needs root (CI runs as root): {exc}")
    try:
        _full_disk_run(mount / "logs")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_file_system_without_fallocate_falls_back_at_init(root, monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    with pytest.warns(UserWarning, match="could not reserve space"):
        run = steplog.init(name="nofalloc", root=root)
    assert run.durability == "process"
    run.log({"loss": 1.0})
    assert b"\0" not in events_file(run).read_bytes()
    run.finish()
    assert steplog.history("nofalloc", root=root)["loss"].to_list() == [1.0]


def test_a_network_file_system_uses_write_and_says_so_once(root, monkeypatch):
    monkeypatch.setattr(opening, "network_filesystem", lambda path: "NFS")
    monkeypatch.setattr(opening, "_warned_network", set())
    with pytest.warns(UserWarning, match="on NFS"):
        first = steplog.init(root=root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = steplog.init(root=root)
    for run in (first, second):
        assert run.durability == "process"
        run.log({"loss": 1.0})
        assert b"\0" not in events_file(run).read_bytes()
        run.finish()
    assert orjson.loads(events_file(first).read_bytes().splitlines()[0])["durability"] == "process"


def test_the_local_file_system_is_not_taken_for_a_network_one(tmp_path):
    assert eventfile.network_filesystem(tmp_path) is None


def test_memory_stays_flat_while_the_file_grows(root):
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    run = steplog.init(root=root)
    metrics = {f"metric_{i}": 0.1 * i for i in range(8)}
    for _ in range(20_000):
        run.log(metrics)
    before = rss()
    for _ in range(200_000):  # about 40 MB of events: ten times the largest chunk
        run.log(metrics)
    grown = rss() - before
    run.finish()
    assert events_file(run).stat().st_size > 8 * eventfile.MAX_CHUNK
    assert grown < 2 * eventfile.MAX_CHUNK, f"RSS grew by {grown / 2**20:.1f} MiB"
