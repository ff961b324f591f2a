"""The TensorBoard importer on logs written by tensorboardX and torch's SummaryWriter."""

from __future__ import annotations

import random

import numpy as np
import pytest
from importer_checks import assert_values, no_leftovers, origin

import steplog
from steplog import importers
from steplog.importers import SourceError

tensorboardX = pytest.importorskip("tensorboardX")  # in the `test` extra: CI installs it


def write_tensorboardx(folder, steps=50, tags=("loss", "acc", "lr/group0")):
    rng = random.Random(0)
    written, times = {}, {}
    writer = tensorboardX.SummaryWriter(logdir=str(folder))
    for step in range(0, 3 * steps, 3):
        for tag in tags:
            value = rng.uniform(-1e3, 1e3)
            wall = 1_750_000_000.0 + step + rng.random()
            writer.add_scalar(tag, value, step, walltime=wall)
            written.setdefault(step, {})[tag] = float(np.float32(value))
            times.setdefault(step, []).append(wall)
    writer.close()
    return written, times


def test_scalars_steps_and_wall_times(tmp_path, root):
    written, times = write_tensorboardx(tmp_path / "tb")
    [run_id] = importers.tensorboard(tmp_path / "tb", root=root, quiet=True)
    assert_values(run_id, root, written)
    everything = steplog.reader.read_events(root / run_id / "events.jsonl").rows
    for step, walls in times.items():  # every scalar's own wall time is kept
        assert sorted(everything.filter(everything["step"] == step)["time"].to_list()) == sorted(walls)
    assert origin(run_id, root)["source"] == "tensorboard"


def test_torch_summary_writer_and_hparams(tmp_path, root):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "logs" / "exp1"))
    for step in range(4):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.add_hparams({"lr": 0.01, "optimizer": "adam", "amp": True}, {"hparam/best": 0.25}, run_name="hp")
    writer.close()
    ids = importers.tensorboard(tmp_path / "logs", root=root, name="old", quiet=True)
    assert len(ids) == 2  # one run per folder of event files: exp1 and exp1/hp (add_hparams writes there)
    runs = steplog.runs(root).sort("name")
    assert runs["name"].to_list() == ["old/exp1", "old/exp1/hp"]
    hp = runs.row(1, named=True)
    assert (hp["config.lr"], hp["config.optimizer"], hp["config.amp"]) == (0.01, "adam", True)
    assert steplog.history(runs["run_id"][1], root=root)["hparam/best"].to_list() == [0.25]
    assert steplog.history(runs["run_id"][0], root=root)["train/loss"].to_list() == [
        float(np.float32(1.0 / (s + 1))) for s in range(4)]


def test_torn_tail_is_counted_and_the_rest_imported(tmp_path, root):
    written, _ = write_tensorboardx(tmp_path / "tb", steps=10, tags=("loss",))
    [file] = (tmp_path / "tb").glob("*tfevents*")
    file.write_bytes(file.read_bytes()[:-5])  # the last record is torn, as when a writer dies mid-write
    [run_id] = importers.tensorboard(file, root=root, quiet=True)
    del written[max(written)]
    assert_values(run_id, root, written)
    assert steplog.query.run_info(run_id, root=root)["meta"]["torn_records"] == 1


def test_corrupt_file_names_the_file_and_leaves_no_run(tmp_path, root):
    write_tensorboardx(tmp_path / "tb" / "good", steps=3)
    bad = tmp_path / "tb" / "zbad" / "events.out.tfevents.0.host"
    bad.parent.mkdir(parents=True)
    bad.write_bytes((40).to_bytes(8, "little") + b"\0" * 4 + b"\xff" * 40 + b"\0" * 4)
    with pytest.raises(SourceError, match="zbad/events.out.tfevents.0.host"):
        importers.tensorboard(tmp_path / "tb", root=root, quiet=True)
    assert steplog.runs(root)["name"].to_list() == ["good"]  # runs before the bad one are complete
    no_leftovers(root)
    again = importers.tensorboard(tmp_path / "tb" / "good", root=root, quiet=True)
    assert len(again) == 1 and len(steplog.runs(root)) == 1  # still idempotent for the good one


def test_missing_source_is_a_clear_error(tmp_path, root):
    with pytest.raises(SourceError, match="does not exist"):
        importers.tensorboard(tmp_path / "nope", root=root, quiet=True)
