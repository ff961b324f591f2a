"""Compaction (steplog.compact): identity before/after, atomicity at every stage, idempotence,
running runs left alone, the Parquet file and the sidecar."""

from __future__ import annotations

import importlib
import io
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import steplog
from steplog import format as fmt

compact_module = importlib.import_module("steplog.compact")  # steplog.compact is the function

NAN, INF = float("nan"), float("inf")


def _snapshot(root: Path, run_id: str) -> dict:
    """Everything the query surface says about a run (and the root)."""
    return {
        "history": steplog.history(run_id, root=root),
        "all_segments": steplog.history(run_id, root=root, all_segments=True),
        "runs": steplog.runs(root),
        "summary": steplog.summary(run_id, root=root),
        "scan": steplog.scan(root).collect(),
    }


def _assert_same(before: dict, after: dict) -> None:
    for key in ("history", "all_segments", "runs", "scan"):
        assert_frame_equal(before[key], after[key], check_exact=True)
    # repr compares NaN by position (nan != nan would fail a plain ==)
    assert repr(before["summary"]) == repr(after["summary"])


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _make_run(root: Path, name: str = "r", steps: int = 20, **kwargs) -> steplog.Run:
    run = steplog.init(name=name, config={"lr": 0.1, "model": {"d": 64}}, root=root, **kwargs)
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), "acc": NAN if step == 3 else step / steps})
    run.finish(notes="done")
    return run


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- identity -------------------------------------------------------------------------------

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([NAN, INF, -INF, 0.0, -0.0]),
    st.integers(-10, 10),
)
log_call = st.tuples(
    st.one_of(st.none(), st.integers(0, 8)),
    st.dictionaries(st.sampled_from(["loss", "val_loss", "*", "^a.*$"]), values, min_size=0, max_size=3),
)
segment = st.tuples(
    st.lists(log_call, max_size=12), st.one_of(st.none(), st.integers(0, 8)), st.sampled_from(["finish", "fail"])
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segments=st.lists(segment, min_size=1, max_size=3),
    config=st.dictionaries(
        st.sampled_from(["lr", "layers", "opt"]),
        st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False), st.text(max_size=5), st.booleans()),
        max_size=3,
    ),
)
def test_compaction_changes_no_query_result(segments, config):
    root = Path(tempfile.mkdtemp())
    try:
        run = None
        for index, (calls, start_step, end) in enumerate(segments):
            run = (
                steplog.init(name="h", config=config, root=root)
                if index == 0
                else steplog.init(resume=run.id, root=root, start_step=start_step)
            )
            for step, metrics in calls:
                run.log(metrics, step=step)
            run.fail(ValueError("boom")) if end == "fail" else run.finish()
        other = steplog.init(name="other", root=root)  # a live run in the same root is left alone
        other.log({"x": 1.0})
        before = _snapshot(root, run.id)
        assert steplog.compact(root, quiet=True) == [run.id]
        assert steplog.query.run_info(run.id, root=root)["compacted"] and not (run.dir / fmt.EVENTS_FILE).exists()
        _assert_same(before, _snapshot(root, run.id))
        other.finish()
    finally:
        shutil.rmtree(root)


def test_parquet_file_layout(tmp_path):
    run = _make_run(tmp_path, steps=10)
    resumed = steplog.init(resume=run.id, root=tmp_path, start_step=5)
    resumed.log({"loss": 9.0})
    resumed.finish()
    steplog.compact(tmp_path, quiet=True)
    path = run.dir / fmt.PARQUET_FILE
    frame = pl.read_parquet(path)
    assert frame.columns == [
        "run_id",
        "name",
        "rank",
        "segment",
        "step",
        "wallclock",
        "time",
        "superseded",
        "loss",
        "acc",
    ]
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert frame["run_id"].unique().to_list() == [run.id] and frame["name"].unique().to_list() == ["r"]
    for key in ("run_id", "name"):  # statistics let a filter on either skip other runs' row groups
        stats = pq.read_metadata(path).row_group(0).column(frame.columns.index(key)).statistics
        assert stats.has_min_max and stats.min == stats.max == frame[key][0]
    assert frame.height == 11 and frame["superseded"].sum() == 5  # steps 5..9 of segment 0
    assert math.isnan(frame.filter(pl.col("step") == 3)["acc"][0])
    meta = pq.read_metadata(path)
    column = meta.row_group(0).column(frame.columns.index("loss"))
    assert column.compression == "ZSTD" and column.statistics is not None and column.statistics.has_min_max
    # Readable without steplog: a plain glob over runs (as DuckDB or Spark would do).
    assert pl.scan_parquet(str(tmp_path / "*" / fmt.PARQUET_FILE)).select(pl.len()).collect().item() == 11


def test_sidecar_contents(tmp_path):
    run = _make_run(tmp_path, steps=10)
    resumed = steplog.init(resume=run.id, root=tmp_path, start_step=8)
    resumed.log({"loss": 0.01})
    resumed.fail(RuntimeError("diverged"))
    events_bytes = (run.dir / fmt.EVENTS_FILE).read_bytes()
    steplog.compact(tmp_path, quiet=True)
    sidecar = orjson.loads((run.dir / fmt.SIDECAR_FILE).read_bytes())
    assert (
        sidecar["sidecar_version"] == compact_module.SIDECAR_VERSION and sidecar["format_version"] == fmt.FORMAT_VERSION
    )
    assert (sidecar["run_id"], sidecar["name"], sidecar["status"]) == (run.id, "r", "failed")
    assert sidecar["config"] == {"lr": 0.1, "model": {"d": 64}} and sidecar["meta"]["steplog_version"]
    assert (sidecar["num_steps"], sidecar["first_step"], sidecar["last_step"]) == (9, 0, 8)
    assert sidecar["duration_s"] == pytest.approx(sidecar["end_time"] - sidecar["start_time"])
    assert sidecar["metrics"] == {"loss": "Float64", "acc": "Float64"}
    assert sidecar["summary"]["loss"]["last"] == 0.01 and sidecar["summary"]["acc"]["first"] == 0.0
    assert sidecar["summary"]["acc"]["nan_count"] == 1
    assert sidecar["finish"]["error"] == {"type": "RuntimeError", "message": "diverged"}
    first, second = sidecar["segments"]
    assert (first["rows"], first["superseded_rows"], first["finish"]["notes"]) == (10, 2, "done")
    assert (second["start_step"], second["first_step"], second["last_step"], second["finish"]["status"]) == (
        8,
        8,
        8,
        "failed",
    )
    assert sidecar["events"]["bytes"] == len(events_bytes)
    assert sidecar["events"]["sha256"] == __import__("hashlib").sha256(events_bytes).hexdigest()
    assert (run.dir / fmt.ARCHIVE_DIR / fmt.EVENTS_FILE).read_bytes() == events_bytes  # moved, not deleted
    assert not (run.dir / fmt.EVENTS_FILE).exists() and not (run.dir / fmt.LOCK_FILE).exists()


def test_nonfinite_summary_figures_survive_the_sidecar(tmp_path):
    run = steplog.init(name="inf", root=tmp_path)
    for value in (NAN, -INF, 2.0, INF, NAN):
        run.log({"x": value, "only_nan": NAN})
    run.finish()
    before = steplog.summary("inf", root=tmp_path)
    steplog.compact(tmp_path, quiet=True)
    after = steplog.summary("inf", root=tmp_path)
    assert repr(before) == repr(after)
    assert (after["x"]["min"], after["x"]["max"], after["x"]["step_of_min"], after["x"]["step_of_max"]) == (
        -INF,
        INF,
        1,
        3,
    )
    assert math.isnan(after["x"]["first"]) and math.isnan(after["x"]["last"]) and math.isnan(after["x"]["mean"])
    assert after["only_nan"]["min"] is None and after["only_nan"]["nan_count"] == 5 and after["only_nan"]["count"] == 5


# --- atomicity: a kill at any stage leaves every run readable, and a rerun finishes ----------


def _compacted_copy(root: Path) -> tuple[Path, dict]:
    """A finished run, its query results, and the files a complete compaction gives."""
    run = _make_run(root)
    before = _snapshot(root, run.id)
    reference = root.parent / "reference"
    shutil.copytree(root, reference)
    steplog.compact(reference, quiet=True)
    return run.dir, {"before": before, "files": _files(reference / run.id)}


def _stale_lock(run_dir: Path) -> None:
    """What a compactor killed while holding the run's lock leaves."""
    (run_dir / fmt.LOCK_FILE).write_bytes(orjson.dumps({"pid": _dead_pid(), "host": os.uname().nodename, "time": 0.0}))


def _finish_and_check(root: Path, run_dir: Path, expected: dict) -> None:
    before = expected["before"]
    _assert_same(before, _snapshot(root, run_dir.name))  # readable as it is
    steplog.compact(root, quiet=True)
    _assert_same(before, _snapshot(root, run_dir.name))
    files = _files(run_dir)
    reference = expected["files"]
    assert sorted(files) == sorted(reference)
    assert files[f"{fmt.ARCHIVE_DIR}/{fmt.EVENTS_FILE}"] == reference[f"{fmt.ARCHIVE_DIR}/{fmt.EVENTS_FILE}"]
    assert pl.read_parquet(run_dir / fmt.PARQUET_FILE).equals(pl.read_parquet(io_bytes(reference[fmt.PARQUET_FILE])))
    assert steplog.compact(root, quiet=True) == []


def io_bytes(data: bytes):
    import io

    return io.BytesIO(data)


@pytest.mark.parametrize(
    "stage", ["parquet_tmp_torn", "parquet_tmp_done", "both_tmp", "parquet_renamed", "both_renamed", "moved_lock_left"]
)
def test_a_kill_at_any_stage_reads_correctly_and_a_rerun_finishes(tmp_path, stage):
    root = tmp_path / "root"
    run_dir, expected = _compacted_copy(root)
    done = expected["files"]
    parquet, sidecar = done[fmt.PARQUET_FILE], done[fmt.SIDECAR_FILE]
    live_pid = os.getpid()  # a pid that is alive: compaction holds the lock, so it removes the file anyway
    if stage == "parquet_tmp_torn":
        _killed_temp(run_dir, fmt.PARQUET_FILE, live_pid).write_bytes(parquet[: len(parquet) // 2])
    elif stage == "parquet_tmp_done":
        _killed_temp(run_dir, fmt.PARQUET_FILE, _dead_pid()).write_bytes(parquet)
    elif stage == "both_tmp":
        _killed_temp(run_dir, fmt.PARQUET_FILE, _dead_pid()).write_bytes(parquet)
        _killed_temp(run_dir, fmt.SIDECAR_FILE, live_pid).write_bytes(sidecar[:40])
        (run_dir / (fmt.SIDECAR_FILE + ".tmp")).write_bytes(sidecar[:40])  # layout 1's fixed name
    elif stage == "parquet_renamed":
        (run_dir / fmt.PARQUET_FILE).write_bytes(parquet)
    elif stage == "both_renamed":  # everything but the move of the events file
        (run_dir / fmt.PARQUET_FILE).write_bytes(parquet)
        (run_dir / fmt.SIDECAR_FILE).write_bytes(sidecar)
    elif stage == "moved_lock_left":
        shutil.rmtree(run_dir)
        run_dir.mkdir()
        for name, data in done.items():
            (run_dir / name).parent.mkdir(exist_ok=True)
            (run_dir / name).write_bytes(data)
    _stale_lock(run_dir)
    _finish_and_check(root, run_dir, expected)
    assert not list(run_dir.glob("*.tmp")) and not (run_dir / fmt.LOCK_FILE).exists()
    assert not list(run_dir.glob(".*.steplog-tmp"))


def _killed_temp(run_dir, name, pid):
    """Where a writer with this pid, killed before its rename, left its temporary file."""
    return run_dir / f".{name}.{pid}-0123abcd.steplog-tmp"


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("call", [1, 2, 3, 4])
def test_an_interrupted_compaction_is_finished_by_a_rerun(tmp_path, monkeypatch, call):
    """Interrupt at the n-th rename (parquet, sidecar, events move) and at the directory fsync."""
    root = tmp_path / "root"
    run_dir, expected = _compacted_copy(root)
    real_replace, real_fsync_dir = os.replace, steplog.store.fsync_directory
    count = {"n": 0}

    def interrupting(step, real):
        def wrapper(*args, **kwargs):
            count["n"] += 1
            if count["n"] == call:
                raise KeyboardInterrupt("killed")
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(compact_module.os, "replace", interrupting("replace", real_replace))
    if call == 4:
        monkeypatch.setattr(compact_module.os, "replace", real_replace)
        count["n"] = 3
        monkeypatch.setattr(steplog.store, "fsync_directory", interrupting("fsync", real_fsync_dir))
    with pytest.raises(KeyboardInterrupt):
        steplog.compact(root, quiet=True)
    monkeypatch.undo()
    _finish_and_check(root, run_dir, expected)


def test_rebuilds_lost_derived_files_from_the_archive(tmp_path):
    run = _make_run(tmp_path)
    before = _snapshot(tmp_path, run.id)
    steplog.compact(tmp_path, quiet=True)
    (run.dir / fmt.PARQUET_FILE).unlink()
    assert steplog.compact(tmp_path, quiet=True) == [run.id]
    _assert_same(before, _snapshot(tmp_path, run.id))


# --- idempotence and recompaction -------------------------------------------------------------


def test_compacting_twice_changes_nothing(tmp_path):
    runs = [_make_run(tmp_path, name=f"r{i}") for i in range(3)]
    assert steplog.compact(tmp_path, quiet=True) == [r.id for r in runs]
    files = {r.id: _files(r.dir) for r in runs}
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert steplog.compact(tmp_path, quiet=True) == []
    assert {r.id: _files(r.dir) for r in runs} == files
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == stamps


def test_a_run_whose_events_changed_is_compacted_again(tmp_path):
    run = _make_run(tmp_path, steps=5)
    steplog.compact(tmp_path, quiet=True)
    # What resuming a compacted run will do: move the events back, then append.
    os.replace(run.dir / fmt.ARCHIVE_DIR / fmt.EVENTS_FILE, run.dir / fmt.EVENTS_FILE)
    resumed = steplog.init(resume=run.id, root=tmp_path)
    resumed.log({"loss": 0.001})
    resumed.finish()
    before = _snapshot(tmp_path, run.id)
    assert before["history"].height == 6
    assert steplog.compact(tmp_path, quiet=True) == [run.id]
    _assert_same(before, _snapshot(tmp_path, run.id))
    assert orjson.loads((run.dir / fmt.SIDECAR_FILE).read_bytes())["num_steps"] == 6


# --- statuses ---------------------------------------------------------------------------------


def test_running_runs_are_skipped_with_a_reason(tmp_path, capsys):
    done = _make_run(tmp_path, name="done")
    live = steplog.init(name="live", root=tmp_path)
    live.log({"loss": 1.0})
    files = _files(live.dir)
    assert steplog.compact(tmp_path) == [done.id]
    err = capsys.readouterr().err
    assert f"{live.id} (live): skipped: running" in err and f"{done.id} (done): compacted" in err
    assert _files(live.dir) == files
    assert steplog.runs(tmp_path).filter(pl.col("name") == "live")["status"].item() == "running"
    live.finish()
    assert steplog.compact(tmp_path, quiet=True) == [live.id]


def test_a_crashed_run_is_compacted_as_crashed(tmp_path):
    script = (
        "import os, signal, steplog\n"
        f"run = steplog.init(name='crash', root={str(tmp_path)!r})\n"
        "for i in range(50): run.log({'loss': 1.0 / (i + 1)})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -signal.SIGKILL
    before = _snapshot(tmp_path, "crash")
    assert before["runs"]["status"].item() == "crashed"
    assert len(steplog.compact(tmp_path, quiet=True)) == 1
    _assert_same(before, _snapshot(tmp_path, "crash"))


def test_a_run_without_a_start_event_is_skipped(tmp_path, capsys):
    run_dir = tmp_path / "20260101-000000-000-abcdef"
    run_dir.mkdir()
    (run_dir / fmt.EVENTS_FILE).write_bytes(b'{"s":0,"t":1.0,"w":0.0,"m":{"a":1.0}}\n')
    with pytest.warns(UserWarning, match="skipped 1 damaged line"):
        assert steplog.compact(tmp_path) == []
    assert "no readable start event" in capsys.readouterr().err
    assert (run_dir / fmt.EVENTS_FILE).exists()


def test_compact_selected_runs_only(tmp_path):
    a, b = _make_run(tmp_path, name="a"), _make_run(tmp_path, name="b")
    assert steplog.compact(tmp_path, runs=["b"], quiet=True) == [b.id]
    assert (a.dir / fmt.EVENTS_FILE).exists() and not (b.dir / fmt.EVENTS_FILE).exists()


def test_progress_is_one_line_per_run_off_a_terminal_and_silent_when_quiet(tmp_path, capsys):
    for i in range(3):
        _make_run(tmp_path, name=f"r{i}", steps=2)
    steplog.compact(tmp_path, quiet=True)
    assert capsys.readouterr().err == ""
    for i in range(2):
        _make_run(tmp_path, name=f"s{i}", steps=2)
    steplog.compact(tmp_path)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[1] for line in lines[:-1]] == ["compacted", "compacted"]
    assert lines[-1] == "steplog compact: 2 compacted, 3 already compacted, 0 skipped"


def test_store_sees_compacted_runs(tmp_path):
    from steplog import runstatus, store

    run = _make_run(tmp_path, name="kept")
    steplog.compact(tmp_path, quiet=True)
    assert runstatus.current_status(run.dir) == "finished"  # from the sidecar: the events are archived
    assert store.run_name(run.dir) == "kept" and store.runs_named("kept", tmp_path) == [run.dir]
    (run.dir / fmt.SIDECAR_FILE).write_bytes(b"{ damaged")
    assert store.run_name(run.dir) == "kept"  # falls back to the archived events
    assert runstatus.current_status(run.dir) == "finished"
    fresh = steplog.init(name="kept", resume="auto", root=tmp_path)  # nothing crashed: a new run
    assert fresh.id != run.id
    fresh.finish()


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_tqdm_bar_on_a_terminal(tmp_path, monkeypatch):
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    for i in range(2):
        _make_run(tmp_path, name=f"r{i}", steps=2)
    live = steplog.init(name="live", root=tmp_path)
    steplog.compact(tmp_path)
    out = screen.getvalue()
    assert "steplog compact: 100%" in out and "3/3" in out and "2 compacted, 1 skipped" in out  # tqdm's bar
    assert f"{live.id} (live): skipped: running" in out  # skipped runs keep their own line
    assert "compacted: 2 steps" not in out  # on a terminal, only the bar says what went well
    assert out.endswith("steplog compact: 2 compacted, 0 already compacted, 1 skipped\n")
    live.finish()


def test_progress_without_tqdm_is_one_line_per_run_even_on_a_terminal(tmp_path, monkeypatch):
    screen = _Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if it were not installed: import raises
    for i in range(2):
        _make_run(tmp_path, name=f"r{i}", steps=2)
    steplog.compact(tmp_path)
    lines = screen.getvalue().splitlines()
    assert [line.split(": ")[1] for line in lines[:-1]] == ["compacted", "compacted"]
    assert "\r" not in screen.getvalue() and lines[-1].startswith("steplog compact: 2 compacted")


def test_runs_to_compact_may_be_a_run_directory(tmp_path):
    a, b = _make_run(tmp_path, name="a"), _make_run(tmp_path, name="b")
    assert steplog.compact(tmp_path, runs=b.dir, quiet=True) == [b.id]  # one path, as resolve_run takes it
    assert [(d, action) for d, action, _ in compact_module.plan_compaction(tmp_path, a.dir)] == [(a.dir, "compact")]
