"""The seed API (ExperimentConfig, ExperimentTracker, ExperimentAnalyzer) on steplog runs."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import python_subprocess
from hypothesis import given, settings
from hypothesis import strategies as st

import steplog
from steplog import format as fmt
from steplog.analyzer import ExperimentAnalyzer
from steplog.experimentlog import ExperimentLog, load_experiment
from steplog.tracker import ExperimentConfig, ExperimentTracker, MetricsSnapshot


def test_the_whole_seed_flow(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ExperimentConfig(
        experiment_name="baseline_tinystories",
        d_model=512,
        num_heads=8,
        max_iters=40,
        learning_rate=3e-3,
        extra={"tokenizer": "bpe-10k"},
    )
    tracker = ExperimentTracker(config, log_dir=root)
    tracker.start()
    accumulation = 2  # one optimizer step every 2 iterations: gradient steps != iterations
    for it in range(40):
        train_loss = 3.0 * math.exp(-it / 15) + 1.0
        tracker.log_metrics(
            iteration=it,
            train_loss=train_loss,
            learning_rate=3e-3 * (1 - it / 40),
            tokens_per_sec=1000.0 + it,
            iter_time_ms=12.5,
        )
        if it % accumulation == accumulation - 1:
            tracker.increment_gradient_step()
        if it % 10 == 9:
            tracker.log_eval(iteration=it, train_loss=train_loss - 0.01, val_loss=train_loss + 0.1)
    tracker.finish(train_loss=1.5, val_loss=1.6, notes="first try")
    sidecar = tracker.save()
    assert sidecar == tracker.run_dir / fmt.SIDECAR_FILE and sidecar.exists()
    assert (tracker.run_dir / fmt.PARQUET_FILE).exists()

    tracker.print_summary()
    printed = capsys.readouterr().out
    assert "Experiment baseline_tinystories" in printed and "finished" in printed and "first try" in printed
    assert "learning_rate=0.0030" in printed and "extra.tokenizer=bpe-10k" in printed

    analyzer = ExperimentAnalyzer(root)
    logs = analyzer.load_all()
    assert [log.name for log in logs] == ["baseline_tinystories"]
    log = analyzer.get_experiment("baseline_tinystories")
    assert log.config == config and log.status == "finished" and log.notes == "first try"
    assert log.num_iterations == 40 and log.duration_seconds > 0
    metrics = log.metrics
    assert metrics.columns[:3] == ["iteration", "gradient_step", "wallclock_time"]
    assert metrics["iteration"].to_list() == list(range(40))
    assert metrics["gradient_step"].to_list() == [it // accumulation for it in range(40)]
    assert metrics["wallclock_time"].is_sorted() and metrics["wallclock_time"][0] >= 0
    assert metrics.filter(pl.col("val_loss").is_not_null())["iteration"].to_list() == [9, 19, 29, 39]
    assert metrics["val_loss"][-1] == 1.6 and metrics["train_loss"][-1] == 1.5  # finish() values at the last iteration
    assert log.summary["best_val_loss"] == metrics["val_loss"].min()
    assert log.summary["best_train_loss"] == metrics["train_loss"].min()
    assert log.summary["final_val_loss"] == 1.6 and log.summary["gradient_steps"] == 19  # as of the last snapshot

    table = analyzer.get_comparison_table()
    header, rule, row = table.splitlines()
    assert header.split()[:5] == ["name", "run_id", "status", "iterations", "duration_s"]
    assert "val_loss.best" in header and row.startswith("baseline_tinystories")
    assert len(header) == len(rule)
    assert analyzer.get_best_experiment("val_loss") == ("baseline_tinystories", log.summary["best_val_loss"])

    csv = analyzer.export_csv("baseline_tinystories", tmp_path / "baseline.csv")
    exported = pl.read_csv(csv)
    assert exported["step"].to_list() == metrics["iteration"].to_list()
    assert exported["train_loss"].to_list() == metrics["train_loss"].to_list()
    assert exported["gradient_step"].to_list() == [float(g) for g in metrics["gradient_step"]]

    analyzer.print_summary("baseline_tinystories")
    assert "best loss   train" in capsys.readouterr().out


def test_config_is_frozen_and_round_trips() -> None:
    config = ExperimentConfig("x", extra={"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.learning_rate = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.extra["a"] = 2  # type: ignore[index]
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    assert ExperimentConfig.from_dict({"experiment_name": "y", "lr": 0.1}).extra == {"lr": 0.1}
    with pytest.raises(ValueError, match="experiment_name"):
        ExperimentConfig.from_dict({"lr": 0.1})
    with pytest.raises(ValueError, match="non-empty"):
        ExperimentConfig("  ")
    with pytest.raises(TypeError, match="mapping"):
        ExperimentConfig("x", extra=[1, 2])  # type: ignore[arg-type]


_plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=30, deadline=None)
@given(
    name=st.text(min_size=1, max_size=12).filter(str.strip),
    lr=st.floats(1e-8, 10),
    layers=st.integers(1, 96),
    extra=st.dictionaries(st.text(min_size=1, max_size=8), _plain, max_size=4),
)
def test_config_survives_the_run_config_round_trip(tmp_path_factory, name, lr, layers, extra) -> None:
    root = tmp_path_factory.mktemp("logs")
    config = ExperimentConfig(name, learning_rate=lr, num_layers=layers, extra=extra)
    with ExperimentTracker(config, log_dir=root):
        pass
    assert ExperimentAnalyzer(root).load_all()[0].config == config


def test_summary_statistics_match_numpy(root: Path) -> None:
    rng = np.random.default_rng(7)
    losses = rng.normal(2.0, 0.5, 200)
    losses[[13, 77]] = np.nan
    with ExperimentTracker(ExperimentConfig("stats"), log_dir=root) as tracker:
        for it, loss in enumerate(losses):
            tracker.log_metrics(it, train_loss=float(loss), grad_norm=float(it % 7))
    for compacted in (False, True):
        if compacted:
            tracker.save()
        log = load_experiment("stats", root)
        stats = log.summary["metrics"]["train_loss"]
        assert stats["count"] == 200 and stats["nan_count"] == 2
        assert stats["min"] == pytest.approx(np.nanmin(losses)) == log.summary["best_train_loss"]
        assert stats["max"] == pytest.approx(np.nanmax(losses))
        assert stats["mean"] == pytest.approx(np.nanmean(losses))
        assert stats["std"] == pytest.approx(np.nanstd(losses, ddof=1))
        assert stats["last"] == losses[-1] and stats["first"] == losses[0]
        assert stats["step_of_min"] == int(np.nanargmin(losses))
        grad = log.summary["metrics"]["grad_norm"]
        assert (grad["min"], grad["max"], grad["mean"]) == (0.0, 6.0, pytest.approx(np.mean(np.arange(200) % 7)))
        assert log.summary["best_val_loss"] is None


def test_a_reused_name_means_the_latest_run_and_the_table_shows_all(root: Path) -> None:
    for val in (2.0, 1.0, 1.5):
        with ExperimentTracker(ExperimentConfig("sweep", learning_rate=val), log_dir=root) as tracker:
            tracker.log_eval(0, val_loss=val)
    analyzer = ExperimentAnalyzer(root)
    assert len(analyzer.load_all()) == 3
    assert analyzer.get_experiment("sweep").config.learning_rate == 1.5
    frame = analyzer.comparison_frame()
    assert frame["name"].to_list() == ["sweep"] * 3
    assert frame["val_loss.best"].to_list() == [2.0, 1.0, 1.5]
    assert frame["config.learning_rate"].to_list() == [2.0, 1.0, 1.5]
    assert len(analyzer.get_comparison_table().splitlines()) == 2 + 3
    assert analyzer.get_best_experiment("val_loss") == ("sweep", 1.0)
    assert analyzer.get_best_experiment("val_loss", mode="max") == ("sweep", 2.0)
    only = analyzer.comparison_frame(runs=[frame["run_id"][0]])
    assert only["run_id"].to_list() == [frame["run_id"][0]]


def test_load_all_rereads_only_what_changed(root: Path) -> None:
    for name in ("a", "b"):
        with ExperimentTracker(ExperimentConfig(name), log_dir=root) as tracker:
            tracker.log_metrics(0, train_loss=1.0)
    analyzer = ExperimentAnalyzer(root)
    first = {log.name: log for log in analyzer.load_all()}
    second = {log.name: log for log in analyzer.load_all()}
    assert all(first[n] is second[n] for n in "ab")  # nothing changed: nothing reread

    resumed = ExperimentTracker(ExperimentConfig("a"), log_dir=root, resume="a")
    resumed.start()
    resumed.log_metrics(1, train_loss=0.5)
    resumed.finish()
    ExperimentAnalyzer(root).get_experiment("b")  # another analyzer's reads change nothing here
    with ExperimentTracker(ExperimentConfig("c"), log_dir=root) as tracker:
        tracker.log_metrics(0, train_loss=3.0)
    third = {log.name: log for log in analyzer.load_all()}
    assert third["b"] is first["b"]
    assert third["a"] is not first["a"] and third["a"].num_iterations == 2
    assert sorted(third) == ["a", "b", "c"]

    ExperimentAnalyzer(root).get_experiment("b")
    steplog.compact(root, runs=["b"], quiet=True)  # compaction rewrites the files: reloaded, same content
    fourth = {log.name: log for log in analyzer.load_all()}
    assert fourth["b"] is not first["b"] and fourth["b"].metrics.equals(first["b"].metrics)

    import shutil

    shutil.rmtree(third["c"].run_dir)
    assert sorted(log.name for log in analyzer.load_all()) == ["a", "b"]


def test_gradient_steps_are_counted_apart_from_iterations(root: Path) -> None:
    with ExperimentTracker(ExperimentConfig("accum"), log_dir=root) as tracker:
        for it in range(8):
            tracker.log_metrics(it, train_loss=1.0)
            if it % 4 == 3:
                tracker.increment_gradient_step()
                tracker.log_eval(it, val_loss=2.0)  # same iteration: the row keeps the count it started with
        tracker.increment_gradient_step(3)
        tracker.log_eval(8, val_loss=1.0)  # a new iteration: the current count
    frame = ExperimentAnalyzer(root).get_experiment("accum").metrics
    assert frame["gradient_step"].to_list() == [0, 0, 0, 0, 1, 1, 1, 1, 5]
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        tracker.increment_gradient_step(-1)
    with pytest.raises(ValueError):
        tracker.increment_gradient_step(True)


def test_bad_calls_fail_clearly_and_log_nothing(root: Path) -> None:
    tracker = ExperimentTracker(ExperimentConfig("bad"), log_dir=root)
    with pytest.raises(RuntimeError, match=r"call tracker.start\(\) first"):
        tracker.log_metrics(0, train_loss=1.0)
    with pytest.raises(TypeError, match="unknown option"):
        ExperimentTracker(ExperimentConfig("bad"), log_dir=root, durabilty="fsync")
    with pytest.raises(TypeError, match="ExperimentConfig"):
        ExperimentTracker({"experiment_name": "bad"})  # type: ignore[arg-type]
    tracker.start()
    with pytest.raises(TypeError, match="metric 'train_loss'"):
        tracker.log_metrics(0, train_loss="high")
    with pytest.raises(ValueError, match="written by the tracker"):
        tracker.log_metrics(0, gradient_step=3)
    with pytest.raises(ValueError, match="reserved"):
        tracker.log_metrics(0, wallclock=3.0)
    tracker.log_metrics(0, train_loss=None, learning_rate=0.1, accuracy=None)  # None: not measured
    tracker.log_metrics(1, train_loss=float("nan"))
    tracker.finish()
    tracker.finish()  # again: nothing
    frame = load_experiment("bad", root).metrics
    assert frame.columns == ["iteration", "gradient_step", "wallclock_time", "learning_rate", "train_loss"]
    assert frame["learning_rate"].to_list() == [0.1, None] and math.isnan(frame["train_loss"][1])
    with pytest.raises(RuntimeError, match="finished"):
        tracker.log_metrics(2, train_loss=1.0)


def test_an_exception_in_the_with_block_marks_the_run_failed(root: Path) -> None:
    with pytest.raises(FloatingPointError):
        with ExperimentTracker(ExperimentConfig("diverged"), log_dir=root) as tracker:
            tracker.log_metrics(0, train_loss=1.0)
            raise FloatingPointError("loss is inf")
    log = ExperimentAnalyzer(root).get_experiment("diverged")
    assert log.status == "failed"
    assert steplog.runs(root)["error"].to_list() == ["FloatingPointError: loss is inf"]


def test_save_before_finish_only_flushes(root: Path) -> None:
    tracker = ExperimentTracker(ExperimentConfig("live"), log_dir=root, durability="buffered")
    tracker.start()
    tracker.log_metrics(0, train_loss=1.0)
    assert tracker.save() == tracker.run_dir / fmt.EVENTS_FILE
    assert not (tracker.run_dir / fmt.SIDECAR_FILE).exists()
    live = ExperimentAnalyzer(root).get_experiment("live")
    assert live.status == "running" and live.metrics["train_loss"].to_list() == [1.0]
    tracker.finish()
    before = steplog.history("live", root=root)
    tracker.save()
    assert steplog.history("live", root=root).equals(before)
    assert ExperimentAnalyzer(root).get_experiment("live").metrics.equals(live.metrics)


def test_snapshots_and_curves(root: Path) -> None:
    with ExperimentTracker(ExperimentConfig("curves"), log_dir=root) as tracker:
        tracker.log_metrics(0, train_loss=2.0, learning_rate=0.1, tokens_per_sec=100.0, iter_time_ms=5.0, grad_norm=1.5)
        tracker.increment_gradient_step()
        tracker.log_metrics(1, learning_rate=0.2)
        tracker.log_eval(2, val_loss=1.5)
    analyzer = ExperimentAnalyzer(root)
    log = analyzer.get_experiment("curves")
    assert isinstance(log, ExperimentLog)
    first, second, third = log.snapshots
    assert isinstance(first, MetricsSnapshot)
    assert (first.iteration, first.gradient_step, first.train_loss, first.extra_metrics) == (
        0,
        0,
        2.0,
        {"grad_norm": 1.5},
    )
    assert (second.learning_rate, second.train_loss, second.extra_metrics) == (0.2, None, {})
    assert (third.val_loss, third.gradient_step) == (1.5, 1)
    assert third.wallclock_time >= second.wallclock_time >= first.wallclock_time >= 0

    losses = analyzer.get_loss_trajectory("curves")
    assert losses.columns == ["iteration", "gradient_step", "wallclock_time", "train_loss", "val_loss"]
    assert losses["iteration"].to_list() == [0, 2]
    assert analyzer.get_throughput_curve("curves").select("tokens_per_sec", "iter_time_ms").rows() == [(100.0, 5.0)]
    assert analyzer.get_lr_schedule("curves")["learning_rate"].to_list() == [0.1, 0.2]


def test_plain_steplog_runs_load_too(root: Path) -> None:
    with steplog.init(name="plain", config={"lr": 0.1, "model": {"d": 8}}, root=root) as run:
        run.log({"loss": 1.0})
        run.log({"loss": 0.5})
    analyzer = ExperimentAnalyzer(root)
    log = analyzer.get_experiment("plain")
    assert log.config.experiment_name == "plain" and log.config.extra == {"lr": 0.1, "model": {"d": 8}}
    assert log.metrics["gradient_step"].to_list() == [None, None]
    assert log.snapshots[1].extra_metrics == {"loss": 0.5}
    frame = analyzer.comparison_frame()  # no train/val loss anywhere: every metric is compared
    assert frame["loss.best"].to_list() == [0.5]

    with steplog.init(name="odd", config={"experiment_name": 7, "extra": [1, 2]}, root=root):
        pass
    with pytest.warns(UserWarning, match="kept under config.extra"):
        odd = analyzer.get_experiment("odd")
    assert odd.config.experiment_name == "odd" and odd.config.extra == {"experiment_name": 7, "extra": [1, 2]}
    assert ExperimentConfig.from_dict({"experiment_name": "x", "extra": [1, 2]}).extra == {"extra": [1, 2]}


def _trained_then_resumed(root: Path, name: str, iterations: int, start_step: int) -> tuple[ExperimentTracker, ...]:
    """A tracked run of ``iterations`` (train_loss = iterations - it, one gradient step each) and a
    tracker resuming it at ``start_step`` with the gradient step a checkpoint would restore."""
    with ExperimentTracker(ExperimentConfig(name), log_dir=root) as tracker:
        for it in range(iterations):
            tracker.log_metrics(it, train_loss=float(iterations - it))
            tracker.increment_gradient_step()
    again = ExperimentTracker(ExperimentConfig(name), log_dir=root, resume=name, start_step=start_step)
    again.gradient_step = start_step  # from the checkpoint
    return tracker, again


def test_resume_through_the_tracker(root: Path) -> None:
    tracker, again = _trained_then_resumed(root, "long", 10, start_step=6)
    with again:
        for it in range(6, 12):
            again.log_metrics(it, train_loss=0.1 * it)
            again.increment_gradient_step()
    assert again.run_id == tracker.run_id
    frame = ExperimentAnalyzer(root).get_experiment("long").metrics
    assert frame["iteration"].to_list() == list(range(12))
    assert frame["gradient_step"].to_list() == list(range(12))
    assert frame["train_loss"].to_list()[5:7] == [5.0, pytest.approx(0.6)]


def test_a_killed_training_process_reads_as_crashed(root: Path) -> None:
    proc = python_subprocess(
        """
        import sys, time
        from steplog.tracker import ExperimentConfig, ExperimentTracker
        tracker = ExperimentTracker(ExperimentConfig("killed"), log_dir=sys.argv[1])
        tracker.start()
        for it in range(50):
            tracker.log_metrics(it, train_loss=1.0 / (it + 1))
            tracker.increment_gradient_step()
        print("logged", flush=True)
        time.sleep(60)
        """,
        str(root),
    )
    try:
        assert proc.stdout.readline().strip() == "logged"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    analyzer = ExperimentAnalyzer(root)
    (log,) = analyzer.load_all()
    assert log.status == "crashed" and log.num_iterations == 50
    assert log.summary["best_train_loss"] == pytest.approx(1 / 50)
    assert steplog.compact(root, quiet=True) == [log.run_id]
    (again,) = analyzer.load_all()
    assert again.status == "crashed" and again.metrics.equals(log.metrics)


def test_resume_auto_starts_a_new_run_unless_one_crashed(root: Path) -> None:
    config = ExperimentConfig("scheduled")
    with ExperimentTracker(config, log_dir=root, resume="auto") as first:
        first.log_metrics(0, train_loss=1.0)
    with ExperimentTracker(config, log_dir=root, resume="auto") as second:  # the first finished: a new run
        second.log_metrics(0, train_loss=0.9)
    assert first.run_id != second.run_id
    assert len(ExperimentAnalyzer(root).load_all()) == 2


def test_resuming_at_the_last_step_keeps_the_gradient_step(root: Path) -> None:
    _, resumed = _trained_then_resumed(root, "again", 4, start_step=3)
    with resumed:
        resumed.log_metrics(3, train_loss=0.9)  # the last step of the crashed segment, logged again
        resumed.log_eval(3, val_loss=1.1)  # the same iteration: the row keeps its count
        resumed.increment_gradient_step()
        resumed.log_metrics(4, train_loss=0.8)
    frame = ExperimentAnalyzer(root).get_experiment("again").metrics
    assert frame["gradient_step"].to_list() == [0, 1, 2, 3, 4]
    assert frame["val_loss"].to_list()[3] == 1.1


def test_the_comparison_and_the_report_read_each_run_once(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from steplog.report import runs_report_frame

    for lr in (1e-3, 1e-2):
        with ExperimentTracker(ExperimentConfig(f"lr_{lr:g}", learning_rate=lr), log_dir=root) as tracker:
            tracker.log_metrics(0, train_loss=2.0)
            tracker.log_eval(0, val_loss=2.0 - lr)
            tracker.finish(notes=f"lr {lr:g}")
    read = []
    model = sys.modules["steplog.model"]
    real = model.read_events
    monkeypatch.setattr(
        model, "read_events", lambda path, *a, **k: read.append(path.parent.name) or real(path, *a, **k)
    )
    frame = ExperimentAnalyzer(root).comparison_frame()
    assert frame.columns == [
        "name",
        "run_id",
        "status",
        "iterations",
        "duration_s",
        "config.learning_rate",
        "train_loss.best",
        "train_loss.last",
        "val_loss.best",
        "val_loss.last",
    ]
    assert sorted(read) == sorted(frame["run_id"].to_list())
    read.clear()
    report = runs_report_frame(root)
    assert report["notes"].to_list() == ["lr 0.001", "lr 0.01"] and report.columns[5:7] == ["started", "notes"]
    assert sorted(read) == sorted(frame["run_id"].to_list())


def test_save_says_when_the_run_could_not_be_compacted(root: Path) -> None:
    tracker = ExperimentTracker(ExperimentConfig("held"), log_dir=root)
    tracker.start()
    tracker.log_metrics(0, train_loss=1.0)
    tracker.finish()
    steplog.locks.acquire_lock(tracker.run_dir, time.time())  # as another compaction would hold it
    try:
        with pytest.warns(UserWarning, match=f"run {tracker.run_id} .*was not compacted: running"):
            path = tracker.save()
        assert path == tracker.run_dir / "events.jsonl" and path.exists()
    finally:
        steplog.locks.release_lock(tracker.run_dir)
    assert tracker.save() == tracker.run_dir / "run.json" and (tracker.run_dir / "run.json").exists()


_TRAINING_ONLY = """
import sys, tempfile, types
# Load steplog's modules without steplog/__init__.py, to see what the tracker itself imports.
package = types.ModuleType("steplog")
package.__path__, package.__version__ = [sys.argv[1]], "0"
sys.modules["steplog"] = package
from steplog.tracker import ExperimentConfig, ExperimentTracker
tracker = ExperimentTracker(ExperimentConfig("x"), log_dir=tempfile.mkdtemp())
tracker.start()
tracker.log_metrics(0, train_loss=1.0, learning_rate=0.1)
tracker.increment_gradient_step()
tracker.log_eval(0, val_loss=1.0)
tracker.finish()
print(sorted({m.split(".")[0] for m in sys.modules} & {"polars", "pyarrow", "numpy"}))
"""


def test_the_tracker_training_path_never_imports_polars_pyarrow_or_numpy():
    import steplog.tracker

    proc = python_subprocess(_TRAINING_ONLY, str(Path(steplog.tracker.__file__).parent))
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, "[]\n"), err


def test_the_reading_side_is_still_importable_from_steplog_tracker():
    import steplog.analyzer
    import steplog.experimentlog
    import steplog.tracker

    assert steplog.tracker.ExperimentAnalyzer is steplog.analyzer.ExperimentAnalyzer
    assert steplog.tracker.load_experiment is steplog.experimentlog.load_experiment
    assert steplog.tracker.ExperimentLog is steplog.analyzer.ExperimentLog is steplog.ExperimentLog
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        steplog.tracker.nothing_here


def test_every_option_of_init_passes_through_the_tracker(root):
    tracker = ExperimentTracker(
        ExperimentConfig("opts"), log_dir=root, tensor_flush_steps=5, tensor_flush_seconds=1.0, durability="buffered"
    )
    tracker.start()
    tracker.log_metrics(0, train_loss=1.0)
    tracker.finish()
    assert steplog.history("opts", root=root)["train_loss"].to_list() == [1.0]
    with pytest.raises(TypeError, match="unknown option.*tensor_flush_steps"):
        ExperimentTracker(ExperimentConfig("opts"), log_dir=root, flush_every=3)
