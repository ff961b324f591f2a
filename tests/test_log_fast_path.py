"""Run.log's one-pass path (a dict of floats under names already seen, with a finite sum) and its
checked path write the same bytes, and every case the one pass does not take (new or bad names,
NaN and infinities, numpy values, float subclasses, big integers, other mappings) still goes
through the checks: same errors, same warnings, same bytes."""

from __future__ import annotations

import collections
import math
import tempfile
import types
import warnings

import orjson
import pytest

import steplog
from steplog import format as fmt
from steplog import runlog


def metric_lines(run) -> list[bytes]:
    data = (run.dir / fmt.rank_events_file(run.rank)).read_bytes().rstrip(b"\0")  # a live mapped file: zero tail
    return [line for line in data.splitlines() if not line.startswith(fmt.CONTROL_PREFIX)]


@pytest.fixture
def checked_calls(monkeypatch):
    """Counts the calls that took the checked path (the real method runs)."""
    calls = []
    real = runlog.Run._log_checked

    def counting(self, metrics, step, total):
        calls.append(step)
        return real(self, metrics, step, total)

    monkeypatch.setattr(runlog.Run, "_log_checked", counting)
    return calls


STEPS = [
    {"loss": 0.25, "lr": 3e-4, "tokens": 1024, "flag": True},  # ints and bools beside floats
    {"loss": -0.0, "lr": 1e-300, "tokens": 0, "flag": False},
    {"loss": 123456.789, "lr": 5e-324, "tokens": 2**52, "flag": True},
    {"lr": 0.5, "loss": 0.125, "flag": False, "tokens": 7},  # the same names in another order
]


@pytest.mark.parametrize("durability", ["mmap", "process"])
@pytest.mark.parametrize("resumed", [False, True])
def test_the_one_pass_and_the_checked_path_write_the_same_bytes(durability, resumed, checked_calls):
    runs = []
    for checked in (False, True):
        root = tempfile.mkdtemp()
        run = steplog.init(name="x", root=root, durability=durability)
        if resumed:
            run.finish()
            run = steplog.init(resume="x", root=root, durability=durability)
        run.log(dict(STEPS[0]), step=0)  # new names: always checked
        for step, metrics in enumerate(STEPS, start=1):
            # a MappingProxyType is not a dict: it always takes the checked path
            run.log(types.MappingProxyType(metrics) if checked else dict(metrics), step=step)
        runs.append((run, metric_lines(run)))
        run.finish()
    (fast, fast_lines), (slow, slow_lines) = runs
    assert checked_calls == [0, 0, 1, 2, 3, 4]  # the fast run took the one pass for steps 1-4
    segment = 1 if resumed else 0
    for step, (a, b) in enumerate(zip(fast_lines, slow_lines)):
        event = orjson.loads(a)
        metrics = STEPS[max(step - 1, 0)]
        assert a + b"\n" == fmt.encode_metric_event(step, event["t"], event["w"], metrics, segment)
        assert a.split(b'"m":')[1] == b.split(b'"m":')[1]  # the metrics' bytes, and the segment's
    assert (
        steplog.history(fast.run_id, root=fast.dir.parent)
        .drop("time", "wallclock")
        .equals(steplog.history(slow.run_id, root=slow.dir.parent).drop("time", "wallclock"))
    )


class Real(float):
    """A float subclass: passes the one-pass sum, but orjson does not encode it."""


@pytest.mark.parametrize("durability", ["mmap", "process"])
def test_every_case_the_one_pass_leaves_takes_the_checked_path(durability, checked_calls):
    np = pytest.importorskip("numpy")
    run = steplog.init(name="ugly", root=tempfile.mkdtemp(), durability=durability)
    run.log({"a": 1.0, "b": 2.0})  # names seen: later calls may take the one pass
    run.log({"a": 1.5, "b": 2.5})
    with pytest.raises(ValueError, match="'step'"):
        run.log({"a": 1.0, "step": 2.0})
    with pytest.raises(ValueError, match="non-empty"):
        run.log({"a": 1.0, "": 2.0})
    with pytest.raises(TypeError, match="'b'"):
        run.log({"a": 1.0, "b": None})
    with pytest.raises(TypeError, match="'a'"):
        run.log({"a": "0.5", "b": 1.0})
    with pytest.raises(TypeError, match="got list"):
        run.log([("a", 1.0)])
    run.log({"a": math.nan, "b": -math.inf})
    run.log({"a": np.float32(0.5), "b": np.float64(0.25)})
    run.log({"a": Real(0.75), "b": 1.0})
    run.log(collections.OrderedDict(a=1.0, b=2.0))
    run.log({"a": 2**70, "b": -(2.0**70)})  # the sum cancels to 0.0: an int beyond 64 bits, converted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"a": 2**60, "b": 0.5})
    assert len(caught) == 1 and "'a'" in str(caught[0].message)  # (its filename: test_reliability)
    run.log({"a": True, "b": False})  # only bools: their sum is an int
    run.log({"a": 1.0, "b": 2.0, "c": 3.0})  # a new name
    run.log({"a": 1.0, "b": 2.0, "c": 3.0})
    lines = metric_lines(run)
    run.finish()
    assert checked_calls == [0, 2, 2, 2, 2, 2, 2, 3, 4, 5, 6, 7, 8, 9]  # all but steps 1 and 10
    events = [orjson.loads(line) for line in lines]
    assert [e["s"] for e in events] == list(range(11))  # nothing written for the refused calls
    assert events[2]["nf"] == {"a": "nan", "b": "-inf"}
    assert [events[i]["m"] for i in (3, 4, 5, 7, 9)] == [
        {"a": 0.5, "b": 0.25},
        {"a": 0.75, "b": 1.0},
        {"a": 1.0, "b": 2.0},
        {"a": float(2**60), "b": 0.5},
        {"a": 1.0, "b": 2.0, "c": 3.0},
    ]
    assert events[6]["m"] == {"a": float(2**70), "b": -(2.0**70)} and events[8]["m"] == {"a": True, "b": False}
    plain = fmt.encode_metric_event(4, events[4]["t"], events[4]["w"], {"a": 0.75, "b": 1.0})
    assert lines[4] + b"\n" == plain  # a float subclass is written as the float it is


def test_the_one_pass_waits_behind_a_finished_run_and_a_failed_write(checked_calls):
    run = steplog.init(root=tempfile.mkdtemp(), durability="process")
    run.log({"loss": 1.0})
    run.log({"loss": 0.5})
    run.finish()
    with pytest.raises(RuntimeError, match="is finished"):
        run.log({"loss": 0.25})  # known names, a float: the one pass, whose sink refuses
    assert checked_calls == [0]
