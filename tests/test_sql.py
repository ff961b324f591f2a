"""steplog.sql and the `steplog sql` command handler over a local root and a bucket."""

from __future__ import annotations

import argparse
import json

import polars as pl
import pytest

import steplog
from steplog.sql import run as sql_command
from steplog.sql import sql


def _runs(root):
    for size, lrs in ((64, (1e-3, 1e-2)), (128, (1e-3, 3e-3))):
        for lr in lrs:
            with steplog.init(name=f"d{size}-lr{lr}", config={"model": {"size": size}, "lr": lr}, root=root) as run:
                for step in range(4):
                    run.log({"val_loss": 1.0 / size + lr * (4 - step), "train_loss": 2.0})


def test_sql_over_runs_and_metrics_live_and_compacted_agree(root):
    _runs(root)
    query = ('SELECT r."config.model.size" AS size, r."config.lr" AS lr, min(m.val_loss) AS best '
             'FROM metrics m JOIN runs r ON m.run_id = r.run_id GROUP BY size, lr ORDER BY size, best')
    live = sql(query, root=root)
    steplog.compact(root, quiet=True)
    assert sql(query, root=root).equals(live)
    assert live.group_by("size", maintain_order=True).first().rows() == [(64, 1e-3, pytest.approx(1 / 64 + 1e-3)),
                                                                         (128, 1e-3, pytest.approx(1 / 128 + 1e-3))]


def test_sql_errors_name_the_tables(root):
    _runs(root)
    with pytest.raises(ValueError, match="SQL error: .*tables: runs, metrics"):
        sql("SELECT no_such_column FROM runs", root=root)


def test_cli_handler_prints_json_csv_and_a_table(root, capsys):
    _runs(root)
    args = argparse.Namespace(query="SELECT name, num_steps FROM runs ORDER BY name", root=root, format="json")
    assert sql_command(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"name": "d128-lr0.001", "num_steps": 4} and len(rows) == 4
    args.format = "csv"
    sql_command(args)
    assert capsys.readouterr().out.splitlines()[:2] == ["name,num_steps", "d128-lr0.001,4"]
    args.format = "table"
    sql_command(args)
    assert "d64-lr0.01" in capsys.readouterr().out
    args.query = "SELEC nothing"
    with pytest.raises(ValueError, match="SQL error"):  # the command line prints it as one line, exit 1
        sql_command(args)


def test_metrics_table_has_the_union_of_metric_columns(root):
    with steplog.init(name="a", root=root) as run:
        run.log({"loss": 1.0})
    with steplog.init(name="b", root=root) as run:
        run.log({"acc": 0.5})
    steplog.compact(root, quiet=True)
    frame = sql("SELECT name, loss, acc FROM metrics ORDER BY name", root=root)
    assert frame.rows() == [("a", 1.0, None), ("b", None, 0.5)]
    assert frame.schema == pl.Schema({"name": pl.String, "loss": pl.Float64, "acc": pl.Float64})
