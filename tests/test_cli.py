"""The command line: dispatch, exit codes, one-line errors, and `steplog report`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steplog.cli import COMMANDS, main
from steplog.report import BEGIN_MARKER, END_MARKER, fill_experiment_log
from steplog.tracker import ExperimentConfig, ExperimentTracker

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _runs(root: Path) -> None:
    for lr, loss in ((1e-3, 2.0), (3e-3, 1.5)):
        with ExperimentTracker(ExperimentConfig(f"lr_{lr:g}", learning_rate=lr), log_dir=root) as tracker:
            tracker.log_metrics(0, train_loss=loss + 0.5)
            tracker.log_eval(0, val_loss=loss)
            tracker.finish(notes=f"lr {lr:g}")


def test_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main([]) == 2
    assert "name a command" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert main(["demo", "--no-such-flag"]) == 2
    assert {c.name for c in COMMANDS} >= {"demo", "report"}


def test_errors_are_one_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "log.md"
    doc.write_text(f"# log\n{BEGIN_MARKER}\nno end marker\n")
    assert main(["report", "--root", str(tmp_path), "--fill", str(doc)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("steplog: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "only one of the report markers" in err


def test_report_markdown_and_fill(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "logs"
    _runs(root)
    assert main(["report", "--root", str(root), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| name | run_id | status |") and "config.learning_rate" in lines[0]
    assert lines[1].startswith("| :-- |") and len(lines) == 4
    assert "| lr_0.001 |" in lines[2] and "lr 0.001" in lines[2]

    doc = tmp_path / "EXPERIMENT_LOG.md"
    doc.write_text(f"# Log\n\n## Runs\n\n{BEGIN_MARKER}\nold table\n{END_MARKER}\n\n## Findings\nkeep me\n")
    assert main(["report", "--root", str(root), "--fill", str(doc)]) == 0
    assert "2 run(s)" in capsys.readouterr().out
    text = doc.read_text()
    assert "old table" not in text and "keep me" in text and text.count("| lr_0.003 |") == 1
    assert fill_experiment_log(doc, root) == 2
    assert doc.read_text() == text  # idempotent

    assert main(["report", "--root", str(root), "--metrics", "val_loss"]) == 0
    out = capsys.readouterr().out
    assert "val_loss.best" in out and "train_loss" not in out


def test_the_template_has_the_markers() -> None:
    template = Path(__file__).resolve().parents[1] / "docs" / "EXPERIMENT_LOG.md"
    text = template.read_text()
    assert text.count(BEGIN_MARKER) == 1 and text.count(END_MARKER) == 1


def test_python_dash_m_steplog() -> None:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "steplog", "--version"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.startswith("steplog ")
