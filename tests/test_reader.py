"""The reader forgives what crashes leave: torn tails, corrupt lines, invalid UTF-8."""

from __future__ import annotations

import warnings

import pytest

import steplog


@pytest.fixture
def finished_run(root):
    run = steplog.init(name="r", root=root)
    for step in range(5):
        run.log({"loss": float(step), "nan": float("nan")})
    run.finish()
    return run


def append(run, data: bytes) -> None:
    with open(run.dir / "events.jsonl", "ab") as f:
        f.write(data)


def no_warnings(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


@pytest.mark.parametrize(
    "tail",
    [
        b'{"s":5,"t":1.0,"w":0.5,"m":{"loss":1',  # half a number
        b'{"s":5,"t":1.0,"w":0.5,"m":{"lo',  # half a key
        b'{"s":5,"t":1.0,"w":0.5,"m":{"loss":1.0}}',  # complete JSON, but no newline yet
        '{"s":5,"t":1.0,"w":0.5,"m":{"损'.encode()[:-1],  # a UTF-8 character cut in two
        b"\xff\xfe\x00",  # invalid UTF-8 at the tail
    ],
)
def test_torn_tail_is_ignored_silently(root, finished_run, tail):
    append(finished_run, tail)
    hist = no_warnings(lambda: steplog.history("r", root=root))
    assert hist["loss"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert hist["nan"].is_nan().all()


@pytest.mark.parametrize(
    "bad_line",
    [
        b'{"s":2,"t":1.0,"w"::}',  # not JSON
        b"\xff\xfe garbage \xc3",  # invalid UTF-8
        b'{"s":"two","t":1.0,"w":0.5,"m":{"loss":1.0}}',  # wrong type of step
        b'{"s":2,"t":1.0,"w":0.5,"m":{"loss":"high"}}',  # a string metric
        b"[1, 2, 3]",
    ],
)
def test_corrupt_middle_line_is_skipped_with_a_warning_naming_file_and_line(root, finished_run, bad_line):
    path = finished_run.dir / "events.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines.insert(3, bad_line)  # line 4 of the file, between metric events
    path.write_bytes(b"\n".join(lines))
    with pytest.warns(UserWarning, match=r"skipped 1 damaged line\(s\) of .*events.jsonl \(line 4\)"):
        hist = steplog.history("r", root=root)
    assert hist["loss"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.warns(UserWarning):
        assert steplog.runs(root=root)["status"].to_list() == ["finished"]


def test_blank_lines_hold_no_event_and_are_ignored(root, finished_run):
    path = finished_run.dir / "events.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines.insert(3, b"")
    lines.insert(5, b"oops")  # a damaged line too, to take the line-by-line path
    path.write_bytes(b"\n".join(lines))
    with pytest.warns(UserWarning, match=r"skipped 1 damaged line\(s\) of .* \(line 6\)"):
        hist = steplog.history("r", root=root)
    assert hist["loss"].to_list() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_strict_mode_raises(finished_run):
    append(finished_run, b"oops\n")
    with pytest.raises(steplog.CorruptEventsError, match="line 8"):
        steplog.read_events(finished_run.dir / "events.jsonl", strict=True)


def test_many_corrupt_lines(root, finished_run):
    path = finished_run.dir / "events.jsonl"
    lines = path.read_bytes().split(b"\n")
    damaged = [lines[0]] + [b"#" * 10 if i % 2 else line for i, line in enumerate(lines[1:-2])] + lines[-2:]
    path.write_bytes(b"\n".join(damaged))
    with pytest.warns(UserWarning, match=r"skipped 2 damaged line\(s\) of .* \(line 3, 5\)"):
        hist = steplog.history("r", root=root)
    assert hist["loss"].to_list() == [0.0, 2.0, 4.0]


def test_corrupt_control_line_is_skipped(root, finished_run):
    path = finished_run.dir / "events.jsonl"
    data = path.read_bytes()
    finish = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    path.write_bytes(data.replace(finish, finish[: len(finish) // 2] + b"\x00}"))
    with pytest.warns(UserWarning, match="line 7"):
        row = steplog.runs(root=root).row(0, named=True)
    assert row["status"] == "crashed"  # the finish event is unreadable: no live writer, so crashed
    assert row["num_steps"] == 5


def test_empty_and_missing_start(root):
    run = steplog.init(name="e", root=root)
    run.finish()
    assert steplog.history("e", root=root).columns == ["step", "wallclock", "time"]
    (run.dir / "events.jsonl").write_bytes(b"")
    row = steplog.runs(root=root).row(0, named=True)
    assert row["status"] == "crashed" and row["num_steps"] == 0 and row["name"] == run.id


def test_metric_first_seen_late_and_all_nan_metric(root):
    run = steplog.init(root=root, durability="buffered")
    for step in range(30000):
        metrics = {"a": float(step), "always_nan": float("nan")}
        if step == 29990:
            metrics["late"] = -1.0
        run.log(metrics)
    run.finish()
    hist = steplog.history(run.id, root=root)
    assert hist.height == 30000
    assert hist["late"].null_count() == 29999 and hist["late"][29990] == -1.0
    assert hist["always_nan"].is_nan().all()


@pytest.mark.parametrize("steps", [40, 400, 4000])  # under 8 KiB (orjson line by line), the array parse, more
def test_every_parse_route_returns_what_was_logged(root, steps):
    """A run's file is parsed by one of three routes by its size (eventparse); each gives back the
    values logged: floats, ints, bools, NaN and infinities, a metric that starts late, a resume."""
    import math

    def value(step: int, key: int) -> object:
        kind = (step + key) % 7
        return [0.5 * step, step, bool(step % 2), float("nan"), float("inf"), -1e300, 1 / (step + 1)][kind]

    run = steplog.init(name="routes", root=root)
    expected = {}
    for step in range(steps):
        metrics = {f"m{k}": value(step, k) for k in range(3)}
        if step >= steps // 2:
            metrics["late"] = step / 3
        run.log(metrics)
        expected[step] = metrics
    run.finish()
    run = steplog.init(name="routes", root=root, resume="routes", start_step=steps - 5)
    for step in range(steps - 5, steps + 5):
        run.log({"m0": -float(step)})
        expected[step] = {**{k: None for k in ("m1", "m2", "late")}, "m0": -float(step)}
    run.finish()
    history = steplog.history("routes", root=root)
    assert history["step"].to_list() == list(range(steps + 5))
    for column in ("m0", "m1", "m2", "late"):
        got = history[column].to_list()
        want = [expected[s].get(column) for s in range(steps + 5)]
        for step, (g, w) in enumerate(zip(got, want)):
            if w is None:
                assert g is None, (column, step, g)
            elif isinstance(w, float) and math.isnan(w):
                assert math.isnan(g), (column, step, g)
            else:
                assert g == float(w), (column, step, g, w)


def test_the_array_parse_equals_arrow_s_reader():
    """eventparse's orjson-array route gives the table Arrow's JSON reader gives (names, order, values)."""
    import io

    import orjson
    import pyarrow.json as pa_json

    from steplog import eventparse

    events = [
        {"s": s, "t": 1.0 + s, "w": 0.1 * s, "m": {"a": s * 0.5, **({"b": s} if s > 300 else {})}} for s in range(600)
    ]
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    assert len(data) > 8 << 10
    mine = eventparse._parse_as_array(data)
    arrow = pa_json.read_json(io.BytesIO(data))
    assert mine is not None
    assert eventparse._to_rows(mine).equals(eventparse._to_rows(arrow))
    assert eventparse._parse_as_array(data[:-10] + b"\n") is None  # a torn line: the caller's route
