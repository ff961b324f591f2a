"""Edge cases found in review: each test failed before its fix."""

from __future__ import annotations

import warnings

import pytest
from conftest import make_crashed_run, python_subprocess

import steplog


def test_a_run_dropped_without_finish_is_flushed_and_closed_at_exit(root):
    code = """
import sys, steplog
def train():
    run = steplog.init(name="dropped", root=sys.argv[1], durability="buffered")
    for step in range(10):
        run.log({"loss": float(step)})
train()   # the Run object is unreachable from here on
import gc; gc.collect()
"""
    proc = python_subprocess(code, str(root))
    proc.wait()
    row = steplog.runs(root=root).row(0, named=True)
    assert (row["status"], row["num_steps"]) == ("finished", 10)


def test_an_earlier_error_shown_in_a_session_does_not_fail_the_run_at_exit(root):
    code = """
import sys, steplog
run = steplog.init(name="repl", root=sys.argv[1])
run.log({"loss": 1.0})
try:
    1 / 0
except ZeroDivisionError as exc:
    sys.last_value = exc   # what an interactive prompt leaves behind after showing an error
    sys.last_exc = exc
run.log({"loss": 0.5})
"""
    proc = python_subprocess(code, str(root))
    proc.wait()
    assert steplog.runs(root=root)["status"].to_list() == ["finished"]


@pytest.mark.parametrize("step", [2**63, 2**64, -1])
def test_steps_beyond_64_bits_are_refused_at_log_time(root, step):
    run = steplog.init(root=root)
    with pytest.raises(ValueError, match="step must be an int from 0 to 2\\*\\*63-1"):
        run.log({"a": 1.0}, step=step)
    run.log({"a": 1.0}, step=2**63 - 1)
    run.finish()
    assert steplog.history(run.id, root=root)["step"].to_list() == [2**63 - 1]


def test_unencodable_names_and_huge_ints_are_refused_naming_the_key(root):
    run = steplog.init(root=root)
    with pytest.raises(ValueError, match="not valid unicode"):
        run.log({"bad\udc80": 1.0})
    with pytest.raises(TypeError, match="'count'.*too large"):
        run.log({"count": 10**400})
    run.log({"count": 10**300})
    run.finish()
    assert steplog.history(run.id, root=root)["count"].to_list() == [1e300]


def test_invalid_utf8_in_a_metric_name_is_a_damaged_line(root):
    run = steplog.init(name="r", root=root)
    run.log({"loss": 1.0})
    run.finish()
    path = run.dir / "events.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines.insert(2, b'{"s":1,"t":1.0,"w":0.1,"m":{"bad\xff":2.0}}')
    path.write_bytes(b"\n".join(lines))
    with pytest.warns(UserWarning, match=r"skipped 1 damaged line\(s\) .* \(line 3\)"):
        assert steplog.history("r", root=root)["loss"].to_list() == [1.0]


def test_a_torn_start_line_is_reported_once(root):
    run = steplog.init(name="r", root=root)
    run.finish()
    path = run.dir / "events.jsonl"
    path.write_bytes(b'{"e":"start","v":1,"na\n' + path.read_bytes().split(b"\n", 1)[1])
    with pytest.warns(UserWarning, match=r"skipped 1 damaged line\(s\) .* \(line 1\)"):
        events = steplog.read_events(path)
    assert events.skipped_lines == [1]


def test_a_nonfinite_code_without_its_metric_adds_no_column(root):
    run = steplog.init(name="r", root=root)
    run.finish()
    with open(run.dir / "events.jsonl", "ab") as f:
        f.write(b'{"s":0,"t":1.0,"w":0.1,"m":{"x":1.0},"nf":{"zz":"nan"}}\n')
    assert steplog.history("r", root=root).columns == ["step", "wallclock", "time", "x"]


def test_a_newer_format_version_warns_and_cannot_be_resumed(root):
    run = steplog.init(name="r", root=root)
    run.log({"a": 1.0})
    run.finish()
    path = run.dir / "events.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"v":1,', b'"v":99,', 1))
    with pytest.warns(UserWarning, match="format v99, newer"):
        assert steplog.history("r", root=root)["a"].to_list() == [1.0]
    with pytest.raises(ValueError, match="upgrade steplog to resume it"):
        steplog.init(resume="r", root=root)


def test_resume_after_a_segment_that_logged_nothing_continues_from_its_start(root):
    run = steplog.init(name="r", root=root)
    for step in range(10):
        run.log({"loss": float(step)})
    run.fail("preempted")
    steplog.init(resume="r", root=root, start_step=5).fail("preempted again before logging")
    again = steplog.init(resume="r", root=root)  # start_step=None: where the last restart began
    again.log({"loss": 50.0})
    again.finish()
    assert steplog.history("r", root=root).select("step", "loss").rows()[-2:] == [(4, 4.0), (5, 50.0)]


def test_resume_auto_leaves_an_old_crash_behind_a_newer_finished_run(root):
    make_crashed_run(root, "job")
    steplog.init(name="job", root=root).finish()  # the user started over and finished
    steplog.init(name="job", resume="auto", root=root).finish()  # a new run, not last week's crash
    table = steplog.runs(root=root)
    assert table["status"].to_list() == ["crashed", "finished", "finished"]
    assert table["segments"].to_list() == [1, 1, 1]


def test_an_interrupt_while_copying_device_values_loses_nothing(root, monkeypatch):
    torch = pytest.importorskip("torch")
    from steplog import deferred, values

    monkeypatch.setattr(values, "is_device_value", lambda value: isinstance(value, torch.Tensor))
    calls = {"n": 0}
    real = deferred.materialise

    def interrupted_once(batches):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(batches)

    monkeypatch.setattr(deferred, "materialise", interrupted_once)
    run = steplog.init(name="r", root=root, tensor_flush_steps=2)
    run.log({"loss": torch.tensor(1.0)})
    run.log({"loss": torch.tensor(2.0)})
    with pytest.raises(KeyboardInterrupt):
        run.log({"loss": torch.tensor(3.0)})  # the third step triggers the copy, which is interrupted
    run.finish()  # copies again, and this time it works
    assert steplog.history("r", root=root)["loss"].to_list() == [1.0, 2.0, 3.0]
    assert steplog.runs(root=root)["status"].to_list() == ["finished"]


def test_ints_and_bools_logged_beside_floats_read_back_as_floats(root):
    run = steplog.init(name="mixed", root=root)
    run.log({"loss": 1.5, "tokens": 1024, "is_best": True})
    run.log({"loss": 1.25, "tokens": 2**60 + 1, "is_best": False})
    run.log({"loss": 1.0, "tokens": 2**70, "flag": 0.5})  # beyond 64 bits: converted to a float
    run.log({"loss": 0.5, "flag": True})  # a metric both float and bool
    run.finish()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is taken for damage
        hist = steplog.history("mixed", root=root)
    assert hist["tokens"].to_list() == [1024.0, float(2**60 + 1), float(2**70), None]
    assert hist["is_best"].to_list() == [1.0, 0.0, None, None]
    assert hist["flag"].to_list() == [None, None, 0.5, 1.0]
    assert str(hist.schema["tokens"]) == "Float64" and str(hist.schema["is_best"]) == "Float64"
    steplog.compact(root=root, quiet=True)
    assert steplog.history("mixed", root=root).equals(hist)
