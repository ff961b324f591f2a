"""The per-process parse cache (steplog.readcache) and the block parser (steplog.blockparse):
every read through them gives what a parse of the whole file gives, whatever happened to the file."""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import steplog
from steplog import blockparse, readcache
from steplog import format as fmt
from steplog.eventparse import parse_events
from steplog.reader import read_events, read_many


def _whole(path: Path):
    """The events of ``path`` as a parse of all its bytes gives them (no cache)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_events(fmt.read_settled(path), path)


def _same(events, expected) -> None:
    assert_frame_equal(events.rows, expected.rows, check_exact=True)
    assert events.controls == expected.controls
    assert (events.start, events.skipped_lines, events.bytes_read, events.torn_tail_bytes) == (
        expected.start,
        expected.skipped_lines,
        expected.bytes_read,
        expected.torn_tail_bytes,
    )


def _line(step: int, metrics: str) -> bytes:
    return b'{"s":%d,"t":1.0,"w":0.5,"m":{%s}}\n' % (step, metrics.encode())


@pytest.fixture
def run_file(tmp_path):
    run = steplog.init(name="r", root=tmp_path, durability="process")
    for step in range(3):
        run.log({"loss": 3.0 - step})
    run.flush()
    yield run, run.dir / fmt.EVENTS_FILE
    run.finish()  # a second finish does nothing


@pytest.mark.parametrize("durability", ["process", "mmap"])
def test_appends_are_read_as_a_whole_parse_reads_the_file(tmp_path, durability):
    run = steplog.init(name="r", root=tmp_path, durability=durability)
    path = run.dir / fmt.EVENTS_FILE
    for step in range(6):
        run.log({"loss": 1.0 / (step + 1)} | ({"val": float("nan"), "acc": step} if step >= 3 else {}))
        _same(read_events(path), _whole(path))  # every read after the first parses only what is new
    run.update_config({"lr": 0.5})
    _same(read_events(path), _whole(path))
    run.finish()
    events = read_events(path)
    _same(events, _whole(path))
    assert events.metric_names == ["loss", "val", "acc"] and events.config == {"lr": 0.5}
    assert steplog.history("r", root=tmp_path)["acc"].to_list() == [None, None, None, 3.0, 4.0, 5.0]


def test_an_unchanged_file_is_not_parsed_again_and_its_history_is_the_same(run_file):
    run, path = run_file
    first = read_events(path)
    assert read_events(path) is first  # nothing new: the same events
    history = steplog.history("r", root=run.dir.parent)
    history.insert_column(0, pl.Series("mine", [1, 2, 3]))  # a caller changing its frame changes only it
    assert steplog.history("r", root=run.dir.parent).columns == ["step", "wallclock", "time", "loss"]


def test_a_torn_tail_then_its_completion(run_file):
    run, path = run_file
    read_events(path)
    with open(path, "ab") as f:
        f.write(b'{"s":3,"t":1.0,"w":0.5,"m":{"lo')
    torn = read_events(path)
    assert torn.torn_tail_bytes == 31 and torn.rows.height == 3
    with open(path, "ab") as f:
        f.write(b'ss":0.5}}\n')
    _same(read_events(path), _whole(path))
    assert read_events(path).rows["loss"].to_list() == [3.0, 2.0, 1.0, 0.5]


def test_a_file_cut_shorter_replaced_or_rewritten_is_parsed_again(run_file):
    run, path = run_file
    run.finish()
    read_events(path)
    lines = path.read_bytes().splitlines(keepends=True)
    with open(path, "r+b") as f:  # cut below what was parsed, then grown past it again
        f.truncate(len(b"".join(lines[:2])))
        f.seek(0, 2)
        f.write(_line(1, '"loss":9.0') + _line(2, '"loss":8.0') + _line(3, '"loss":7.0'))
    _same(read_events(path), _whole(path))
    assert read_events(path).rows["loss"].to_list() == [3.0, 9.0, 8.0, 7.0]
    other = path.with_name("other.jsonl")  # replaced by another file (a new inode), as compaction moves files
    other.write_bytes(lines[0] + _line(0, '"acc":1.0'))
    os.replace(other, path)
    _same(read_events(path), _whole(path))
    assert read_events(path).metric_names == ["acc"]
    path.write_bytes(lines[0] + _line(0, '"acc":1.0') + _line(1, '"acc":2.0'))  # rewritten in place, longer
    assert read_events(path).rows["acc"].to_list() == [1.0, 2.0]
    path.write_bytes(lines[0] + _line(0, '"acc":5.0') + _line(1, '"acc":6.0'))  # same length, other bytes at the end
    assert read_events(path).rows["acc"].to_list() == [5.0, 6.0]


def test_a_damaged_file_warns_on_every_read_and_numbers_its_lines_after_appends(run_file):
    run, path = run_file
    with open(path, "ab") as f:
        f.write(b'{"s": 7, "m": not json}\n')
    for _ in range(2):  # parsed, then served again: the same warning
        with pytest.warns(UserWarning, match=r"skipped 1 damaged line\(s\) of .* \(line 5\)"):
            assert read_events(path).skipped_lines == [5]
    run.log({"loss": 0.5})
    run.flush()
    with open(path, "ab") as f:
        f.write(b"garbage\n")
    with pytest.warns(UserWarning, match=r"skipped 2 damaged line\(s\) of .* \(line 5, 7\)"):
        events = read_events(path)
    assert events.rows["loss"].to_list() == [3.0, 2.0, 1.0, 0.5]


def test_a_compacted_run_reads_the_same_and_its_events_entry_goes(tmp_path, run_file):
    run, path = run_file
    run.finish()
    before = steplog.history("r", root=tmp_path)
    steplog.compact(tmp_path, quiet=True)
    assert_frame_equal(steplog.history("r", root=tmp_path), before)
    assert_frame_equal(steplog.history("r", root=tmp_path), before)  # from what was read once
    assert path not in readcache._CACHE.entries
    steplog.compact(tmp_path, quiet=True, rebuild=True)  # new files: read again
    assert_frame_equal(steplog.history("r", root=tmp_path), before)


def test_readers_in_many_threads_while_a_writer_appends(tmp_path):
    run = steplog.init(name="r", root=tmp_path)
    path = run.dir / fmt.EVENTS_FILE
    problems: list[str] = []

    def read_often() -> None:
        for _ in range(40):
            rows = read_events(path).rows
            steps = rows["step"].to_list()
            if steps != list(range(len(steps))):  # always a prefix of whole lines
                problems.append(f"steps {steps[:5]}...")

    threads = [threading.Thread(target=read_often) for _ in range(4)]
    for thread in threads:
        thread.start()
    for step in range(400):
        run.log({"loss": float(step)})
    for thread in threads:
        thread.join()
    run.finish()
    assert problems == []
    _same(read_events(path), _whole(path))


def test_the_cache_stays_under_its_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPLOG_READ_CACHE_MB", "0.05")  # about 52 KB: a few runs of 500 steps at most
    readcache.clear()
    for index in range(6):
        with steplog.init(name=f"r{index}", root=tmp_path) as run:
            for step in range(500):
                run.log({"loss": float(step), "acc": 1.0})
    for index in range(6):
        assert steplog.history(f"r{index}", root=tmp_path).height == 500
        assert readcache.cached_bytes() <= 0.05 * 2**20
    assert steplog.scan(tmp_path).collect().height == 3000


def test_a_file_read_with_others_has_the_columns_it_has_alone(tmp_path):
    start = fmt.encode_control_event(fmt.START, v=1, run_id="x", name="x", time=0.0)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(start + _line(0, '"b":1.0,"a":2.0'))
    second.write_bytes(start + _line(0, '"z":0.0') + _line(1, '"a":1.0,"b":2.0,"c":3.0'))
    readcache.clear()
    together = read_many([first, second])
    assert [events.metric_names for events in together] == [["b", "a"], ["z", "a", "b", "c"]]
    for path, events in zip((first, second), together):
        _same(events, _whole(path))


BLOCK_FILES = {
    "late metric, non-finite values and ints": b"".join(
        _line(s, f'"a":{s}' + (',"late":null},"nf":{"late":"nan"' if s == 9 else "")) for s in range(12)
    ),
    "config and resume events between blocks": b"".join(
        _line(s, '"a":1.5') + (b'{"e":"config","config":{"k":%d}}\n' % s if s % 4 == 3 else b"") for s in range(10)
    )
    + b'{"e":"resume","segment":1,"start_step":5}\n'
    + b"".join(_line(s, '"a":2.5').replace(b"}}", b'},"g":1}') for s in range(5, 9)),
    "a torn tail and a zero reserve": b"".join(_line(s, '"a":1.0') for s in range(6)) + b'{"s":6,"t"' + bytes(300),
}


@pytest.mark.parametrize("name", list(BLOCK_FILES))
@pytest.mark.parametrize("block", [40, 100, 1 << 20])
def test_a_file_parsed_by_blocks_is_the_file_parsed_whole(tmp_path, name, block):
    path = tmp_path / "events.jsonl"
    path.write_bytes(fmt.encode_control_event(fmt.START, v=1, run_id="x", name="x", time=0.0) + BLOCK_FILES[name])
    with open(path, "rb") as f:
        events, last = blockparse.parse_by_blocks(f, path, block=block)
    _same(events, _whole(path))
    assert path.read_bytes()[: events.bytes_read].endswith(last)


@pytest.mark.parametrize(
    "damage", [b"not json\n", b'{"s":1,"t":1.0,"w":0.5,"m":{"a":"high"}}\n', b'{"s":1,"t":1.0,"w":0.5,"m":{"a\x00\n']
)
def test_blocks_leave_damage_to_the_whole_file_parse(tmp_path, damage):
    data = fmt.encode_control_event(fmt.START, v=1, run_id="x", name="x", time=0.0) + _line(0, '"a":1.0') + damage
    assert blockparse.parse_by_blocks(io.BytesIO(data), tmp_path / "x", block=64) is None
    (tmp_path / "events.jsonl").write_bytes(data)
    with pytest.warns(UserWarning, match="line 3"):
        assert read_events(tmp_path / "events.jsonl").rows["a"].to_list() == [1.0]


def test_a_big_file_is_read_by_blocks_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(readcache, "BIG_FILE_BYTES", 1000)
    monkeypatch.setattr(blockparse, "BLOCK_BYTES", 512)
    run = steplog.init(name="big", root=tmp_path, durability="process")
    for step in range(200):
        run.log({"loss": float(step)} | ({"val": 1.0} if step == 150 else {}))
    run.flush()
    path = run.dir / fmt.EVENTS_FILE
    readcache.clear()
    _same(read_events(path), _whole(path))
    run.log({"loss": -1.0})
    run.finish()
    _same(read_events(path), _whole(path))


def test_compaction_of_a_big_file_parses_it_by_blocks_as_it_hashes_it(tmp_path, monkeypatch):
    import hashlib
    import importlib

    import orjson

    compact_module = importlib.import_module("steplog.compact")
    monkeypatch.setattr(compact_module, "BIG_FILE_BYTES", 1000)
    monkeypatch.setattr(blockparse, "BLOCK_BYTES", 700)
    with steplog.init(name="big", root=tmp_path, config={"lr": 0.1}) as run:
        for step in range(300):
            run.log({"loss": float(step)} | ({"val": float("nan")} if step % 50 == 49 else {}))
    path = run.dir / fmt.EVENTS_FILE
    digest, size = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size
    before = steplog.history("big", root=tmp_path)
    assert steplog.compact(tmp_path, quiet=True) == [run.id]
    sidecar = orjson.loads((run.dir / fmt.SIDECAR_FILE).read_bytes())
    assert (sidecar["events"]["sha256"], sidecar["events"]["bytes"]) == (digest, size)
    assert_frame_equal(steplog.history("big", root=tmp_path), before, check_exact=True)


SMALL_LINES = [
    b'{"s":0,"t":1,"w":0,"m":{"a":1,"b":true}}\n{"s":1,"t":1.5,"w":0.5,"m":{"b":false,"c":2.5}}\n',
    b'{"s":0,"t":1.0,"w":0.0,"m":{"a":null},"nf":{"a":"nan"}}\n{"s":1,"t":1.0,"w":0.0,"m":{"a":null,"b":1e300}'
    b',"nf":{"a":"-inf"}}\n',
    b'{"s":3,"t":1.0,"w":0.0,"m":{},"g":2}\n{"s":4,"t":1.0,"w":0.0,"m":{}}\n',
    b'{"s":0,"t":1.0,"w":0.0,"m":{"x":9007199254740993,"y":-0.0}}\n',
]


@pytest.mark.parametrize("lines", SMALL_LINES)
def test_a_few_lines_parsed_with_orjson_are_what_arrow_makes_of_them(lines):
    import pyarrow as pa
    import pyarrow.json as pa_json

    from steplog.eventparse import _parse_small, _to_rows, _well_formed

    arrow = pa_json.read_json(pa.BufferReader(lines))
    assert _well_formed(arrow)
    assert_frame_equal(_to_rows(_parse_small(lines)), _to_rows(arrow), check_exact=True)


def test_a_scan_of_runs_that_keep_logging_is_a_scan_of_their_files_read_afresh(tmp_path):
    runs = [steplog.init(name=f"r{i}", root=tmp_path, durability="process") for i in range(3)]
    for round_ in range(3):
        for i, run in enumerate(runs):
            for step in range(4):
                run.log({"loss": float(step + round_)} | ({f"m{i}": 1.0} if round_ == i else {}))
            run.flush()
        if round_ == 1:
            runs[2].finish()
            runs[2] = steplog.init(resume=runs[2].id, root=tmp_path, durability="process", start_step=5)
        scanned = steplog.scan(tmp_path).collect()  # the new lines of each run parsed together
        readcache.clear()
        assert_frame_equal(scanned, steplog.scan(tmp_path).collect(), check_exact=True)
    for run in runs:
        run.finish()
