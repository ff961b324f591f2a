"""Run.update_config: config that arrives after init is merged by every reader."""

import pytest

import steplog
from steplog.query import run_info


def test_update_config_is_merged_live_and_after_compaction(tmp_path):
    run = steplog.init(name="late", config={"lr": 0.1, "model": {"d": 64}}, root=tmp_path)
    run.log({"loss": 1.0})
    run.update_config({"batch_size": 32, "model": {"layers": 2}})
    run.update_config({"lr": 0.2})
    run.log({"loss": 0.5})
    expected = {"lr": 0.2, "model": {"d": 64, "layers": 2}, "batch_size": 32}
    assert run_info("late", root=tmp_path)["config"] == expected  # live, while running
    run.finish()
    assert steplog.history("late", root=tmp_path)["loss"].to_list() == [1.0, 0.5]
    table = steplog.runs(tmp_path)
    assert table.select("config.lr", "config.model.layers", "config.batch_size").row(0) == (0.2, 2, 32)
    steplog.compact(tmp_path)
    assert run_info("late", root=tmp_path)["config"] == expected  # from the sidecar
    assert steplog.runs(tmp_path).select("config.batch_size").item() == 32


def test_update_config_in_buffered_mode_keeps_event_order(tmp_path):
    run = steplog.init(name="b", root=tmp_path, durability="buffered")
    run.log({"loss": 1.0})
    run.update_config({"seed": 3})
    run.finish()
    lines = (run.dir / "events.jsonl").read_text().splitlines()
    assert [line[:12] for line in lines] == ['{"e":"start"', '{"s":0,"t":1', '{"e":"config', '{"e":"finish']
    assert run_info("b", root=tmp_path)["config"] == {"seed": 3}


def test_update_config_rejects_bad_input_and_finished_runs(tmp_path):
    run = steplog.init(name="x", root=tmp_path)
    with pytest.raises(TypeError, match="mapping"):
        run.update_config(["lr", 0.1])
    run.finish()
    with pytest.raises(RuntimeError, match="finished"):
        run.update_config({"lr": 0.1})
