"""The commands that are shells over other modules (sql, import, ui, push, catalog), run through the
real command line: wiring, output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import steplog
from steplog.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _two_runs(root: Path) -> None:
    for name, loss in (("a", 2.0), ("b", 1.0)):
        with steplog.init(name=name, config={"lr": loss / 10}, root=root) as run:
            for step in range(3):
                run.log({"val_loss": loss - step * 0.1})


def test_sql_prints_a_table_json_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _two_runs(tmp_path)
    query = "SELECT name, min(val_loss) AS best FROM metrics GROUP BY name ORDER BY best"
    assert main(["sql", query, "--root", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], round(r["best"], 6)) for r in rows] == [("b", 0.8), ("a", 1.8)]
    assert main(["sql", query, "--root", str(tmp_path), "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "name,best"
    assert main(["sql", "SELECT name FROM runs ORDER BY name", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split()[-2:] == ["a", "b"]
    assert main(["sql", "SELECT nope FROM metrics", "--root", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("steplog: error")


def test_import_csv_through_the_command_line_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "old.csv"
    source.write_text("step,loss\n0,2.5\n1,2.25\n5,2.0\n")
    root = tmp_path / "logs"
    assert main(["import", "csv", str(source), "--root", str(root), "--name", "old", "--quiet"]) == 0
    assert main(["import", "csv", str(source), "--root", str(root), "--name", "old", "--quiet"]) == 0
    history = steplog.history("old", root=root)
    assert history.select("step", "loss").rows() == [(0, 2.5), (1, 2.25), (5, 2.0)]
    assert steplog.runs(root).height == 1


def test_catalog_rebuild_and_push_to_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, remote = tmp_path / "logs", tmp_path / "remote"
    _two_runs(root)
    assert main(["push", "--to", str(remote), "--root", str(root), "--compact"]) == 0
    assert sorted(p.name for p in remote.iterdir() if not p.name.startswith("_")) == sorted(
        p.name for p in root.iterdir() if not p.name.startswith("_"))
    assert main(["catalog", "--rebuild", "--root", str(root)]) == 0
    assert "2 runs" in capsys.readouterr().out


def test_ui_serves_the_runs_until_stopped(tmp_path: Path) -> None:
    _two_runs(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "steplog", "ui", "--root", str(tmp_path), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**__import__("os").environ, "PYTHONPATH": SRC})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(f"{url}/api/runs", timeout=10) as response:
            names = sorted(run["name"] for run in json.loads(response.read())["runs"])
        assert names == ["a", "b"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_show_summarises_system_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with steplog.init(name="sys", root=tmp_path, system_metrics=True, system_interval=0.05) as run:
        for step in range(3):
            run.log({"loss": 1.0})
        __import__("time").sleep(0.2)
    assert main(["show", "sys", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "system metrics:" in out and "proc_rss_bytes" in out


def test_init_refuses_an_object_store_root() -> None:
    with pytest.raises(ValueError, match="object stores cannot append.*steplog push --to s3://b/runs"):
        steplog.init(name="x", root="s3://b/runs")
