"""CSV and JSON Lines importers: one row per step, a step column; and the `steplog import` command."""

from __future__ import annotations

import argparse
import math
import os

import pytest
from importer_checks import assert_values, no_leftovers, origin

import steplog
from steplog import importers
from steplog.importers import SourceError, command


def test_csv_values_gaps_text_and_mtime(tmp_path, root):
    path = tmp_path / "train.csv"
    path.write_text("step,loss,acc,phase\n0,2.5,,warmup\n1,2.25,0.5,main\n3,nan,0.75,main\n3,,0.8,main\n")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    [run_id] = importers.csv(path, root=root, quiet=True)
    assert_values(run_id, root, {0: {"loss": 2.5}, 1: {"loss": 2.25, "acc": 0.5}, 3: {"loss": math.nan, "acc": 0.8}})
    info = steplog.query.run_info(run_id, root=root)
    assert info["meta"]["skipped_columns"] == ["phase"] and info["name"] == "train"
    assert info["start_time"].timestamp() == 1_700_000_000
    assert origin(run_id, root)["path"] == str(path)


def test_jsonl_with_time_column_and_custom_step(tmp_path, root):
    path = tmp_path / "log.jsonl"
    path.write_text('{"iter": 10, "time": 1700000000.5, "loss": 1.0}\n{"iter": 20, "time": 1700000003.0, "loss": 0.5, '
                    '"lr": 0.001}\n')
    [run_id] = importers.jsonl(path, root=root, name="old", step_col="iter", quiet=True)
    assert_values(run_id, root, {10: {"loss": 1.0}, 20: {"loss": 0.5, "lr": 0.001}})
    history = steplog.history("old", root=root)
    assert [t.timestamp() for t in history["time"]] == [1700000000.5, 1700000003.0]
    assert history["wallclock"].to_list() == [0.0, 2.5]


def test_folder_of_files_and_name_prefix(tmp_path, root):
    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_text(f"step,x\n0,{ord(name)}\n")
    ids = importers.csv(tmp_path, root=root, name="sweep", quiet=True)
    assert sorted(steplog.runs(root)["name"].to_list()) == ["sweep/a", "sweep/b"] and len(ids) == 2
    assert importers.csv(tmp_path, root=root, name="sweep", quiet=True) == ids  # idempotent
    (tmp_path / "a.csv").write_text("step,x\n0,1\n1,2\n")  # a changed file is a new source
    assert len(importers.csv(tmp_path / "a.csv", root=root, quiet=True)) == 1 and len(steplog.runs(root)) == 3


@pytest.mark.parametrize("content, message", [
    ("loss,acc\n1,2\n", "no step column 'step'"),
    ("step,loss\n0,1\n,2\n", "must hold integers"),
    ("step,loss\n-1,1\n", "must hold integers"),
    ("step,phase\n0,a\n", "no numeric column"),
])
def test_bad_tables_name_the_file(tmp_path, root, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(SourceError, match=message) as error:
        importers.csv(path, root=root, quiet=True)
    assert "bad.csv" in str(error.value)
    no_leftovers(root)
    assert steplog.runs(root).height == 0


def test_unreadable_jsonl(tmp_path, root):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"step": 0, "loss": 1}\n{"step": 1, "loss": \n')
    with pytest.raises(SourceError, match="bad.jsonl"):
        importers.jsonl(path, root=root, quiet=True)


def test_command(tmp_path, root, capsys):
    (tmp_path / "a.jsonl").write_text('{"i": 0, "loss": 1.0}\n')
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["jsonl", str(tmp_path / "a.jsonl"), "--root", str(root), "--step-col", "i"])
    assert command.run(args) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == steplog.runs(root)["run_id"].to_list()
    assert "imported" in captured.err  # the progress bar
    assert command.run(parser.parse_args(["csv", str(tmp_path / "none.csv"), "--root", str(root)])) == 1
    assert "none.csv does not exist" in capsys.readouterr().err
