"""Every importer on the small files the real libraries made (tests/data/importers, make_fixtures.py):
runs without tensorboard, mlflow, wandb or trackio installed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from importer_checks import assert_values, decode, origin

import steplog
from steplog import importers
from steplog.importers import command

DATA = Path(__file__).parent / "data" / "importers"
EXPECTED = json.loads((DATA / "expected.json").read_text())
# Folder names differ from the packages': pytest puts this folder on sys.path to import make_fixtures.py
SOURCES = {"tensorboard": DATA / "tb_logs", "mlflow": DATA / "mlflow.db", "wandb": DATA / "wandb_offline",
           "trackio": DATA / "trackio_store"}


def written(kind: str) -> dict[int, dict[str, float]]:
    rows = {int(step): {k: decode(v) for k, v in metrics.items()} for step, metrics in EXPECTED[kind]["rows"].items()}
    if kind == "tensorboard":  # TensorBoard keeps float32
        import numpy as np

        rows = {s: {k: float(np.float32(v)) for k, v in m.items()} for s, m in rows.items()}
    return rows


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_fixture_imports_exactly_what_was_written(kind, root):
    [run_id] = getattr(importers, kind)(SOURCES[kind], root=root, quiet=True)
    assert_values(run_id, root, written(kind))
    record = steplog.runs(root).row(0, named=True)
    assert record["name"] == "run-a"
    assert record["status"] == "finished"
    for key, value in EXPECTED[kind]["config"].items():
        if isinstance(value, dict):
            for inner, v in value.items():
                assert record[f"config.{key}.{inner}"] == v
        else:
            assert record[f"config.{key}"] == value
    found = origin(run_id, root)
    assert found["source"] == kind and Path(found["path"]).is_relative_to(DATA.resolve()) and found["id"]
    history = steplog.history(run_id, root=root)
    start = record["start_time"].timestamp()
    assert history["wallclock"].to_list() == pytest.approx([t.timestamp() - start for t in history["time"]], abs=1e-5)
    assert run_id.startswith(record["start_time"].strftime("%Y%m%d-%H%M%S"))  # the id carries the source's start


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_importing_twice_makes_no_second_run(kind, root):
    first = getattr(importers, kind)(SOURCES[kind], root=root, quiet=True)
    again = getattr(importers, kind)(SOURCES[kind], root=root, quiet=True)
    assert first == again and len(steplog.runs(root)) == 1


def test_tensorboard_meta_says_float32(root):
    [run_id] = importers.tensorboard(SOURCES["tensorboard"], root=root, quiet=True)
    assert steplog.query.run_info(run_id, root=root)["meta"]["value_precision"] == "float32"


def test_imported_runs_compact_and_read_the_same(root):
    ids = [getattr(importers, kind)(path, root=root, quiet=True)[0] for kind, path in SOURCES.items()]
    before = {i: steplog.history(i, root=root) for i in ids}
    steplog.compact(root)
    for run_id in ids:
        assert steplog.history(run_id, root=root).equals(before[run_id])
    assert steplog.compare(root=root).height == 4


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_command_prints_the_ids(kind, root, capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args([kind, str(SOURCES[kind]), "--root", str(root), "--name", "old", "--quiet"])
    assert command.run(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed == steplog.runs(root)["run_id"].to_list() and steplog.runs(root)["name"].to_list() == ["old"]


def _message(number: int, payload: bytes) -> bytes:
    from steplog.importers.from_tensorboard import _encode_varint, _key

    return _key(number, 2) + _encode_varint(len(payload)) + payload


def test_tensorboard_tensor_scalars_of_the_scalars_plugin(tmp_path, root):
    """tf.summary.scalar writes 0-d tensors (float in tensor_content, double in double_val) under the scalars plugin."""
    import struct

    from steplog.importers.from_tensorboard import _encode_varint, _event, _key, _record

    def value(tag: str, dtype: int, tensor_field: bytes) -> bytes:
        metadata = _message(1, _message(1, b"scalars"))
        tensor = _key(1, 0) + _encode_varint(dtype) + tensor_field
        return _message(1, _message(1, tag.encode()) + _message(9, metadata) + _message(8, tensor))

    events = [_event(1_700_000_000.0 + s, s, value("f32", 1, _message(4, struct.pack("<f", s / 3)))
                     + value("f64", 2, _message(6, struct.pack("<d", s / 3)))) for s in range(3)]
    (tmp_path / "events.out.tfevents.1.tf").write_bytes(b"".join(_record(e) for e in events))
    [run_id] = importers.tensorboard(tmp_path, root=root, quiet=True)
    history = steplog.history(run_id, root=root)
    assert history["f64"].to_list() == [s / 3 for s in range(3)]
    assert history["f32"].to_list() == [struct.unpack("<f", struct.pack("<f", s / 3))[0] for s in range(3)]


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_files_are_what_the_writer_writes(kind, root):
    """Metric lines byte for byte as format.encode_metric_event makes them; control events with the writer's keys."""
    import orjson

    from steplog import format as fmt

    [run_id] = getattr(importers, kind)(SOURCES[kind], root=root, quiet=True)
    lines = (root / run_id / "events.jsonl").read_bytes().splitlines(keepends=True)
    written = steplog.init(name="reference", root=root)
    written.log({"x": 1.0})
    written.finish()
    reference = (written.dir / "events.jsonl").read_bytes().splitlines(keepends=True)
    for mine, theirs in ((lines[0], reference[0]), (lines[-1], reference[-1])):
        assert set(orjson.loads(mine)) == set(orjson.loads(theirs))
    for line in lines[1:-1]:
        event = orjson.loads(line)
        metrics = {k: fmt.decode_nonfinite(event["nf"][k]) if v is None else v for k, v in event["m"].items()}
        assert fmt.encode_metric_event(event["s"], event["t"], event["w"], metrics) == line
