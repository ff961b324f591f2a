"""Writing runs through the public API: steps, values, keys, names, config, metadata, statuses."""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import pathlib
import tracemalloc

import numpy as np
import orjson
import polars as pl
import pytest
from conftest import python_subprocess

import steplog


def events_of(run) -> list[dict]:
    return [orjson.loads(line) for line in (run.dir / "events.jsonl").read_bytes().splitlines()]


def test_log_finish_and_history(root):
    run = steplog.init(name="baseline", config={"lr": 3e-4}, root=root)
    assert run.step is None
    run.log({"train_loss": 2.5, "lr": 3e-4})
    run.log({"train_loss": 2.0})
    run.log({"val_loss": 2.2}, step=1)  # same step: one row
    run.log({"train_loss": 1.0}, step=10)
    run.log({"train_loss": 0.9})  # None -> previous + 1
    assert run.step == 11
    run.finish()
    hist = steplog.history("baseline", root=root)
    assert hist.columns[:3] == ["step", "wallclock", "time"]
    assert hist.schema["step"] == pl.Int64
    assert hist.schema["wallclock"] == pl.Float64
    assert hist.schema["time"] == pl.Datetime("us", "UTC")
    assert hist.schema["train_loss"] == pl.Float64
    assert hist.select("step", "train_loss", "lr", "val_loss").rows() == [
        (0, 2.5, 3e-4, None),
        (1, 2.0, None, 2.2),
        (10, 1.0, None, None),
        (11, 0.9, None, None),
    ]
    assert hist["wallclock"].is_sorted() and hist["wallclock"][0] >= 0


def test_later_value_wins_per_key_within_a_step(root):
    run = steplog.init(root=root)
    run.log({"a": 1.0, "b": 1.0}, step=5)
    run.log({"a": 2.0}, step=5)
    run.log({"c": 3.0}, step=4)  # going back within a segment is allowed and sorted
    run.finish()
    hist = steplog.history(run.id, root=root)
    assert hist.select("step", "a", "b", "c").rows() == [(4, None, None, 3.0), (5, 2.0, 1.0, None)]


def test_every_event_records_step_wallclock_and_absolute_time(root):
    run = steplog.init(root=root)
    run.log({"x": 1.0})
    run.finish()
    start, metric, finish = events_of(run)
    assert start["e"] == "start" and finish["e"] == "finish"
    assert metric["s"] == 0 and metric["w"] >= 0 and abs(metric["t"] - start["time"]) < 60


@pytest.mark.parametrize(
    "value, expected",
    [
        (1, 1.0),
        (True, 1.0),
        (np.float32(0.5), 0.5),
        (np.int64(7), 7.0),
        (np.float16(2.0), 2.0),
        (np.array(3.5), 3.5),
        (np.bool_(False), 0.0),
        (float("nan"), math.nan),
        (float("inf"), math.inf),
        (-math.inf, -math.inf),
        (np.float64("nan"), math.nan),
        (np.array(-np.inf, dtype=np.float32), -math.inf),
    ],
)
def test_accepted_values_round_trip(root, value, expected):
    class Tensorish:  # anything with .item() returning a number, like a torch tensor
        def item(self):
            return value.item() if hasattr(value, "item") else value

    run = steplog.init(root=root)
    run.log({"v": value, "w": Tensorish()})
    run.finish()
    got = steplog.history(run.id, root=root).row(0, named=True)
    for key in ("v", "w"):
        if math.isnan(expected):
            assert math.isnan(got[key])
        else:
            assert got[key] == expected


@pytest.mark.parametrize("bad", ["2.3", [1.0], None, {"a": 1}, 1 + 2j, np.array([1.0, 2.0]), object()])
def test_bad_values_raise_type_error_naming_the_key_and_write_nothing(root, bad):
    run = steplog.init(root=root)
    run.log({"loss": 1.0})
    before = (run.dir / "events.jsonl").read_bytes()
    with pytest.raises(TypeError, match="'my_metric'"):
        run.log({"loss": 2.0, "my_metric": bad})
    assert (run.dir / "events.jsonl").read_bytes() == before
    assert run.step == 0
    run.log({"loss": 3.0})  # the run goes on
    run.finish()
    assert steplog.history(run.id, root=root)["loss"].to_list() == [1.0, 3.0]


@pytest.mark.parametrize("key", ["step", "time", "wallclock", "segment", "run_id", "name", "superseded"])
def test_reserved_keys_raise_and_never_overwrite_the_step(root, key):
    run = steplog.init(root=root)
    with pytest.raises(ValueError, match=f"'{key}' is reserved"):
        run.log({key: 99.0, "loss": 1.0})
    run.log({"loss": 1.0})
    run.finish()
    hist = steplog.history(run.id, root=root)
    assert hist["step"].to_list() == [0]
    assert key not in hist.columns[3:]


@pytest.mark.parametrize("key", ["", 3, None, ("a",)])
def test_bad_keys_raise(root, key):
    run = steplog.init(root=root)
    with pytest.raises(ValueError, match="non-empty strings"):
        run.log({key: 1.0})
    run.finish()


def test_unicode_and_odd_keys_round_trip(root):
    keys = ["损失", "val/loss", "a.b", "with space", 'quote"d', "emoji🔥", "null", "*", "^a.*$", "x" * 300]
    run = steplog.init(root=root)
    run.log({k: float(i) for i, k in enumerate(keys)})
    run.finish()
    row = steplog.history(run.id, root=root).row(0, named=True)
    assert [row[k] for k in keys] == [float(i) for i in range(len(keys))]


@pytest.mark.parametrize("step, error", [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_bad_steps(root, step, error):
    run = steplog.init(root=root)
    with pytest.raises(error, match="step"):
        run.log({"a": 1.0}, step=step)
    run.log({"a": 1.0}, step=np.int64(4))
    assert run.step == 4
    run.finish()


def test_log_takes_a_mapping(root):
    run = steplog.init(root=root)
    with pytest.raises(TypeError, match="dict of metric name"):
        run.log([("a", 1.0)])
    run.finish()


@pytest.mark.parametrize("name", ["../../x", "a/b", "ünïcødé 名前", "n" * 500, "/abs/path", "..", "a\x00b"])
def test_names_are_stored_as_given_and_never_escape_root(root, tmp_path, name):
    run = steplog.init(name=name, root=root)
    run.log({"a": 1.0})
    run.finish()
    assert run.name == name
    assert run.dir.parent == root and run.dir.name == run.id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]  # nothing written beside root
    table = steplog.runs(root=root)
    assert table["name"].to_list() == [name]
    assert steplog.history(name, root=root).height == 1


def test_run_ids_are_unique_sortable_and_safe(root):
    ids = [steplog.init(root=root).id for _ in range(30)]
    assert len(set(ids)) == 30
    assert ids == sorted(ids)
    assert all(i.replace("-", "").isalnum() for i in ids)


def test_context_manager_marks_failed_and_reraises(root):
    with pytest.raises(ZeroDivisionError):
        with steplog.init(name="boom", root=root) as run:
            run.log({"a": 1.0})
            1 / 0
    row = steplog.runs(root=root).row(0, named=True)
    assert row["status"] == "failed"
    assert row["error"].startswith("ZeroDivisionError: division by zero")
    with steplog.init(name="ok", root=root):
        pass
    assert steplog.runs(root=root)["status"].to_list() == ["failed", "finished"]


def test_log_after_finish_is_an_error_and_finish_twice_is_fine(root):
    run = steplog.init(root=root)
    run.finish()
    run.finish()
    with pytest.raises(RuntimeError, match="finished"):
        run.log({"a": 1.0})


def test_init_rejects_bad_options(root):
    with pytest.raises(ValueError, match="durability"):
        steplog.init(root=root, durability="sometimes")
    with pytest.raises(ValueError, match="buffer_size"):
        steplog.init(root=root, durability="buffered", buffer_size=0)
    with pytest.raises(ValueError, match="start_step"):
        steplog.init(root=root, start_step=3)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Model:
    d_model: int = 512
    betas: tuple = (0.9, 0.95)


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


def test_config_capture(root):
    config = {
        "model": Model(),
        "path": pathlib.Path("/data/train.bin"),
        "color": Color.RED,
        "np_scalar": np.float32(0.5),
        "np_array": np.arange(3),
        "nested": {"deep": {"x": [1, (2, 3)]}, 5: "int key"},
        "nan": float("nan"),
        "opaque": Opaque(),
        "set": {3, 1, 2},
    }
    with pytest.warns(UserWarning, match="opaque"):
        run = steplog.init(name="cfg", config=config, root=root)
    run.finish()
    stored = events_of(run)[0]["config"]
    assert stored == {
        "model": {"d_model": 512, "betas": [0.9, 0.95]},
        "path": "/data/train.bin",
        "color": "red",
        "np_scalar": 0.5,
        "np_array": [0, 1, 2],
        "nested": {"deep": {"x": [1, [2, 3]]}, "5": "int key"},
        "nan": "NaN",
        "opaque": "<Opaque thing>",
        "set": [1, 2, 3],
    }
    table = steplog.runs(root=root)
    assert table["config.model.d_model"].to_list() == [512]
    assert table["config.nested.deep.x"].to_list() == ["[1,[2,3]]"]


def test_config_with_integers_beyond_64_bits_is_kept_as_text(root):
    run = steplog.init(config={"seed": 2**70, "ok": 2**63}, root=root)
    run.finish()
    assert events_of(run)[0]["config"] == {"seed": str(2**70), "ok": 2**63}


def test_config_capture_never_crashes(root):
    class Hostile:
        def __repr__(self):
            raise RuntimeError("no repr for you")

    cyclic: dict = {}
    cyclic["self"] = cyclic
    with pytest.warns(UserWarning):
        run = steplog.init(config={"h": Hostile(), "cyclic": cyclic}, root=root)
    run.log({"a": 1.0})
    run.finish()
    assert steplog.runs(root=root)["status"].to_list() == ["finished"]


def test_metadata(root, monkeypatch):
    run = steplog.init(root=root)
    run.finish()
    start = events_of(run)[0]
    meta = start["meta"]
    assert start["v"] == 1 and start["start_time"].endswith("+00:00")
    assert meta["pid"] == os.getpid() and meta["host"] and meta["python"] and isinstance(meta["argv"], list)
    assert meta["steplog_version"] == steplog.__version__


def test_metadata_records_git_commit_and_dirty_flag(root, tmp_path, monkeypatch):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "f.txt").write_text("1")
    subprocess.run(["git", "-C", str(repo), "add", "f.txt"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "x"], check=True)
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.chdir(repo)
    run = steplog.init(root=root)
    run.finish()
    assert events_of(run)[0]["meta"]["git_commit"] == commit
    assert events_of(run)[0]["meta"]["git_dirty"] is False
    (repo / "f.txt").write_text("2")
    run = steplog.init(root=root)  # taken once per process and directory: this process still says clean
    run.finish()
    assert events_of(run)[0]["meta"]["git_dirty"] is False
    proc = python_subprocess(
        "import steplog, sys; r = steplog.init(root=sys.argv[1]); r.finish(); print(r.id)", str(root), cwd=repo
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    fresh = steplog.store.resolve_run(out.strip(), root) / "events.jsonl"
    assert orjson.loads(fresh.read_bytes().splitlines()[0])["meta"]["git_dirty"] is True  # a new process sees the edit
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    run = steplog.init(root=root)
    run.finish()
    assert "git_commit" not in events_of(run)[0]["meta"]


@pytest.mark.parametrize("durability", ["process", "fsync", "buffered"])
def test_writer_memory_does_not_grow_with_steps(root, durability):
    run = steplog.init(root=root, durability=durability, buffer_size=100)
    metrics = {f"m{i}": 0.1 * i for i in range(8)}
    for _ in range(2000):  # warm up caches and the buffer
        run.log(metrics)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(20000):
        run.log(metrics)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    run.finish()
    assert growth < 64 * 1024, f"writer memory grew by {growth} bytes over 20,000 steps"


def test_buffered_mode_writes_at_size_interval_flush_and_finish(root):
    run = steplog.init(root=root, durability="buffered", buffer_size=3, buffer_interval=3600)
    path = run.dir / "events.jsonl"
    size0 = path.stat().st_size
    run.log({"a": 1.0})
    run.log({"a": 2.0})
    assert path.stat().st_size == size0  # still buffered
    run.log({"a": 3.0})
    assert path.stat().st_size > size0  # buffer_size reached
    run.log({"a": 4.0})
    size1 = path.stat().st_size
    run.flush()
    assert path.stat().st_size > size1
    run.log({"a": 5.0})
    run.finish()
    assert steplog.history(run.id, root=root)["a"].to_list() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_buffered_mode_flushes_after_the_interval(root):
    import time

    run = steplog.init(root=root, durability="buffered", buffer_size=10_000, buffer_interval=0.05)
    run.log({"a": 1.0})
    time.sleep(0.1)
    run.log({"a": 2.0})  # the interval has passed: both are written
    assert steplog.history(run.id, root=root).height == 2
    run.finish()


def test_buffered_mode_is_deprecated_and_still_works(root):
    with pytest.warns(DeprecationWarning, match='"buffered" is deprecated'):
        run = steplog.init(name="old", root=root, durability="buffered")
    run.log({"loss": 1.0})
    run.finish()
    assert steplog.history("old", root=root)["loss"].to_list() == [1.0]
    assert events_of(run)[0]["durability"] == "buffered"


def test_the_default_durability_is_mmap_and_recorded(root):
    run = steplog.init(root=root)
    run.finish()
    assert run.durability == "mmap" and events_of(run)[0]["durability"] == "mmap"
