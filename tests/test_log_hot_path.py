"""Run.log's hot path: the inlined encoding matches format.encode_metric_event byte for byte,
non-finite values round-trip (also when a finite sum overflows), validation is unchanged, and a
failed write costs only the events it dropped."""

from __future__ import annotations

import errno
import math
import tempfile

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import steplog
from steplog import format as fmt
from steplog import runlog, runoutput


def metric_lines(run) -> list[bytes]:
    data = (run.dir / fmt.EVENTS_FILE).read_bytes().rstrip(b"\0")  # a live mapped file ends in zeros not yet written
    return [line + b"\n" for line in data.splitlines() if not line.startswith(fmt.CONTROL_PREFIX)]


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e308, -1e308, 0.0, -0.0])
metric_dicts = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k not in fmt.RESERVED_NAMES), floats, min_size=0, max_size=10
)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 2**40), metric_dicts), min_size=1, max_size=5),
    resumed=st.booleans(),
    durability=st.sampled_from(["mmap", "process"]),
)
def test_log_writes_exactly_what_the_format_encodes(steps, resumed, durability):
    root = tempfile.mkdtemp()
    run = steplog.init(name="x", root=root, durability=durability)
    if resumed:
        run.finish()
        run = steplog.init(resume="x", root=root, durability=durability)
    for step, metrics in steps:
        run.log(dict(metrics), step=step)
    lines = metric_lines(run)
    run.finish()
    assert len(lines) == len(steps)
    segment = 1 if resumed else 0
    for line, (step, metrics) in zip(lines, steps):
        event = orjson.loads(line)
        assert line == fmt.encode_metric_event(step, event["t"], event["w"], metrics, segment)


def test_non_finite_values_round_trip_and_an_overflowing_sum_adds_no_codes():
    root = tempfile.mkdtemp()
    with steplog.init(name="nf", root=root) as run:
        run.log({"a": 1e308, "b": 1e308})
        run.log({"a": float("nan"), "b": float("-inf")})
        run.log({"a": float("inf"), "b": float("-inf")})  # inf - inf: the sum is NaN
    first = orjson.loads(metric_lines(run)[0])
    assert "nf" not in first
    history = steplog.history("nf", root=root)
    assert history["a"].to_list()[0] == 1e308
    assert math.isnan(history["a"][1]) and history["b"][1] == -math.inf
    assert history["a"][2] == math.inf and history["b"][2] == -math.inf


@pytest.mark.parametrize("durability", ["process", "buffered", "fsync"])
def test_bad_values_and_keys_raise_naming_the_key_and_write_nothing(durability):
    run = steplog.init(root=tempfile.mkdtemp(), durability=durability)
    with pytest.raises(TypeError, match="'loss'"):
        run.log({"ok": 1.0, "loss": "2.3"})
    with pytest.raises(TypeError, match="'flag'"):
        run.log({"flag": None})
    with pytest.raises(ValueError, match="'step'"):
        run.log({"step": 1.0})
    with pytest.raises(ValueError, match="non-empty"):
        run.log({"": 1.0})
    run.log({"ok": 2.0, "n": 3, "b": True})
    run.finish()
    assert [orjson.loads(line)["m"] for line in metric_lines(run)] == [{"ok": 2.0, "n": 3.0, "b": 1.0}]


@pytest.mark.parametrize("durability", ["process", "buffered"])
def test_a_finished_run_refuses_to_log(durability):
    run = steplog.init(root=tempfile.mkdtemp(), durability=durability)
    run.finish()
    with pytest.raises(RuntimeError, match="is finished"):
        run.log({"loss": 1.0})


def test_a_failed_write_loses_only_its_event(monkeypatch):
    root = tempfile.mkdtemp()
    run = steplog.init(name="full-disk", root=root, durability="process")
    run.log({"loss": 1.0})
    real_write = runoutput._write
    calls = {"n": 0}

    def failing_write(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:  # half a line reaches the disk, then the disk is full
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(runoutput, "_write", failing_write)  # the checked path's and the fsync mode's
    monkeypatch.setattr(runlog, "_write", failing_write)  # log()'s own write in "process" mode
    with pytest.warns(UserWarning, match="could not append"):
        run.log({"loss": 2.0})
    run.log({"loss": 3.0})
    run.log({"loss": 4.0})
    run.finish()
    with pytest.warns(UserWarning, match="skipped 1 damaged line"):  # the half line, ended by the next write
        history = steplog.history("full-disk", root=root)
    assert history.select("step", "loss").rows() == [(0, 1.0), (2, 3.0), (3, 4.0)]
    with pytest.warns(UserWarning, match="skipped 1 damaged line"):
        assert steplog.runs(root=root)["status"].to_list() == ["finished"]


def test_a_read_in_the_same_process_sees_buffered_events():
    root = tempfile.mkdtemp()
    run = steplog.init(name="buf", root=root, durability="buffered", buffer_size=10_000, buffer_interval=3600)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)})
    assert steplog.history("buf", root=root).height == 5
    assert steplog.runs(root=root)["num_steps"].to_list() == [5]
    run.finish()


def test_a_read_from_another_thread_leaves_the_logging_thread_s_run_alone():
    import threading

    root = tempfile.mkdtemp()
    run = steplog.init(name="threads", root=root, durability="buffered", buffer_size=10_000, buffer_interval=3600)
    run.log({"loss": 1.0})
    heights = []
    reader = threading.Thread(target=lambda: heights.append(steplog.history("threads", root=root).height))
    reader.start()
    reader.join()
    assert heights == [0]  # the buffer is the logging thread's: another thread sees what is written
    assert steplog.history("threads", root=root).height == 1
    run.finish()
