"""The command line: every command through `main([...])` or `python -m steplog`, on runs made by the
tests (finished, crashed by SIGKILL, compacted, with NaN, with long names): output, exit codes,
one-line errors, 80-column tables, JSON, plots, tail -f on a live writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import steplog
from conftest import python_subprocess
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
    assert "val_loss" in out.splitlines()[0] and "best" in out.splitlines()[1] and "train_loss" not in out


def test_the_template_has_the_markers() -> None:
    template = Path(__file__).resolve().parents[1] / "docs" / "EXPERIMENT_LOG.md"
    text = template.read_text()
    assert text.count(BEGIN_MARKER) == 1 and text.count(END_MARKER) == 1


def test_python_dash_m_steplog() -> None:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "steplog", "--version"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.startswith("steplog ")


# --- a root with every kind of run ------------------------------------------------------------

LONG_NAME = "a_very_long_run_name_for_the_sweep_lr_0.001_batch_64_warmup_500"

CRASHER = """
import os, signal, sys, steplog
run = steplog.init(name="crashed", config={"lr": 0.1, "layers": 2}, root=sys.argv[1])
for step in range(30):
    run.log({"train_loss": 3.0 - step * 0.01})
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """baseline (compacted), sweep runs, a long name, NaN values, a crashed run (SIGKILL)."""
    root = tmp_path_factory.mktemp("cli") / "logs"
    for name, lr in (("baseline", 1e-3), ("sweep_lr_0.003", 3e-3), (LONG_NAME, 1e-2)):
        with steplog.init(name=name, config={"lr": lr, "layers": 2}, root=root) as run:
            for step in range(40):
                run.log({"train_loss": 2.0 / (1 + lr * 100 * step), "lr": lr})
                if step % 10 == 9:
                    run.log({"val_loss": 2.1 / (1 + lr * 100 * step)}, step=step)
    steplog.compact(root, runs=["baseline"], quiet=True)
    with steplog.init(name="diverged", config={"lr": 1.0, "layers": 2}, root=root) as run:
        run.log({"train_loss": 2.0, "val_loss": 2.5})
        run.log({"train_loss": float("inf")})
        run.log({"train_loss": float("nan"), "val_loss": float("nan")})
    proc = python_subprocess(CRASHER, str(root))
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    assert err.startswith("steplog: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _fits(text: str, width: int = 80) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    names = {c.name for c in COMMANDS}
    assert names == {"ls", "show", "compare", "best", "compact", "export", "tail", "plot", "demo", "report", "sql", "push",
                     "sync", "catalog", "ui", "import"}
    for name in names:
        code, out, _ = _run(capsys, name, "--help")
        assert code == 0 and "example:" in out and f"steplog {name}" in out.split("example:")[1]


def test_ls_newest_first_fits_80_columns(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "ls", "--root", str(runs_root))
    assert code == 0 and err == ""
    _fits(out)
    lines = out.splitlines()
    assert "train_loss" in lines[0] and "val_loss" in lines[0] and lines[1].split()[:4] == ["name", "id", "status", "steps"]
    body = [line.split()[0] for line in lines[3:3 + 5]]
    assert body[0] == "crashed" and body[1] == "diverged" and body[-1] == "baseline"  # newest first
    assert "\u2026" in out and LONG_NAME not in out  # the long name is cut with an ellipsis ...
    assert "warmup_500" in out and "a_very_lo" in out  # ... in the middle: both ends stay
    crashed = next(line for line in lines if line.startswith("crashed"))
    assert crashed.split()[2] == "crashed" and crashed.split()[3] == "30"
    diverged = next(line for line in lines if line.startswith("diverged"))
    assert diverged.split()[-2:] == ["2", "2.5"]  # best train_loss and val_loss: NaN/inf never win
    baseline = next(line for line in lines if line.startswith("baseline"))
    assert baseline.split()[-2:] == ["0.4082", "0.4286"]  # 4 significant digits, from the sidecar
    ids = [line.split()[1] for line in lines[3:3 + 5]]
    assert all(steplog.store.resolve_run(i, runs_root).name.startswith(i) for i in ids) and all(len(i) < 26 for i in ids)

    code, wide, _ = _run(capsys, "ls", "--root", str(runs_root), "--width", "200")
    assert code == 0 and "started" in wide and "left out" not in wide and LONG_NAME in wide
    assert next(line for line in wide.splitlines() if line.startswith("diverged")).split()[-4:] == ["2", "nan", "2.5", "nan"]


def test_ls_filters_metrics_and_json(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ls", "--root", str(runs_root), "--status", "crashed")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[3:] if line[0] != "("] == ["crashed"]
    code, out, _ = _run(capsys, "ls", "--root", str(runs_root), "--name", "*lr_0.00*")
    assert code == 0 and "sweep_lr_0.003" in out and "baseline" not in out and "crashed" not in out.replace("(", "")
    code, out, _ = _run(capsys, "ls", "--root", str(runs_root), "--name", "nothing*")
    assert code == 0 and "no runs" in out
    code, out, _ = _run(capsys, "ls", "--root", str(runs_root), "--metrics", "lr")
    assert code == 0 and "lr" in out.splitlines()[0] and "val_loss" not in out
    code, _, err = _run(capsys, "ls", "--root", str(runs_root), "--metrics", "val_los")
    assert code == 1 and "did you mean 'val_loss'" in _one_error_line(err)
    assert _run(capsys, "ls", "--root", str(runs_root), "--status", "sleeping")[0] == 2

    code, out, _ = _run(capsys, "ls", "--root", str(runs_root), "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows][:2] == ["crashed", "diverged"] and len(rows) == 5
    diverged = next(r for r in rows if r["name"] == "diverged")
    assert diverged["train_loss.last"] == "nan" and diverged["val_loss.best"] == 2.5 and diverged["config.lr"] == 1.0
    assert isinstance(diverged["start_time"], str) and diverged["start_time"].endswith("+00:00")
    assert next(r for r in rows if r["name"] == "crashed")["val_loss.best"] is None  # never logged: null


def test_ls_reads_sidecars_not_parquet(runs_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(runs_root, root)
    baseline = steplog.store.resolve_run("baseline", root)
    (baseline / "metrics.parquet").write_bytes(b"not parquet at all")  # ls must not open it
    code, out, err = _run(capsys, "ls", "--root", str(root))
    assert code == 0 and "0.4082" in next(line for line in out.splitlines() if line.startswith("baseline")), err


def test_show_text_and_json(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "show", "baseline", "--root", str(runs_root))
    assert code == 0
    _fits(out)
    for expected in ("status    finished", "stored    compacted", "git_commit" if "git_commit" in out else "host",
                     "argv", "lr", "segments:", "metrics:", "train_loss", "val_loss"):
        assert expected in out
    code, out, _ = _run(capsys, "show", "crashed", "--root", str(runs_root))
    assert code == 0 and "status    crashed" in out and "30 (0 to 29)" in out
    code, out, _ = _run(capsys, "show", "diverged", "--root", str(runs_root), "--json")
    info = json.loads(out)
    assert code == 0 and info["status"] == "finished" and info["config"] == {"lr": 1.0, "layers": 2}
    assert info["summary"]["train_loss"]["max"] == "inf" and info["summary"]["train_loss"]["last"] == "nan"
    assert info["summary"]["val_loss"]["nan_count"] == 1 and info["segments"][0]["rows"] == 3
    assert "host" in info["meta"] and isinstance(info["meta"]["argv"], list)


def test_unknown_and_ambiguous_runs(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["show", "basline"], ["tail", "basline"], ["export", "basline", "-o", "x.csv"],
                    ["plot", "basline"], ["compare", "basline"]):
        code, _, err = _run(capsys, *command, "--root", str(runs_root))
        assert code == 1 and "did you mean 'baseline'" in _one_error_line(err), command
    code, _, err = _run(capsys, "show", "20", "--root", str(runs_root))
    assert code == 1 and "matches 5 runs" in _one_error_line(err)


def test_missing_root_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nowhere")
    for command in (["ls"], ["show", "x"], ["compare"], ["best", "loss"], ["compact"], ["export", "x", "-o", "x.csv"],
                    ["tail", "x"], ["plot", "x"], ["report"]):
        code, _, err = _run(capsys, *command, "--root", missing)
        assert code == 1 and "does not exist; pass --root DIR" in _one_error_line(err), command


def test_compare(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "compare", "--root", str(runs_root))
    assert code == 0
    _fits(out)
    assert "config.lr" in out and "config.layers" not in out  # only the keys that differ
    assert "train_loss.best" in out and "val_loss.last" in out
    code, out, _ = _run(capsys, "compare", "baseline", "sweep_lr_0.003", "--metrics", "val_loss", "--root", str(runs_root))
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["baseline", "sweep_lr_0.003"] and "train_loss" not in out
    assert lines[2].split() == ["config.lr", "0.001", "0.003"]
    code, narrow, _ = _run(capsys, "compare", "--root", str(runs_root), "--width", "50")
    blocks = narrow.split("\n\n")
    assert code == 0 and len(blocks) >= 3 and all(b.splitlines()[2].startswith("config.lr") for b in blocks)
    _fits(narrow, 50)
    code, _, err = _run(capsys, "compare", "--metrics", "val_los", "--root", str(runs_root))
    assert code == 1 and "did you mean 'val_loss'" in _one_error_line(err)
    code, out, _ = _run(capsys, "compare", "diverged", "baseline", "--root", str(runs_root), "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == ["diverged", "baseline"] and rows[0]["train_loss.last"] == "nan"


def test_best(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "best", "val_loss", "--root", str(runs_root))
    assert code == 0 and "run diverged" not in out and f"run {LONG_NAME}" in out and out.count("\n") == 1
    code, out, _ = _run(capsys, "best", "val_loss", "--max", "--root", str(runs_root), "--json")
    winner = json.loads(out)
    assert code == 0 and winner["name"] == "diverged" and winner["value"] == 2.5 and winner["mode"] == "max"
    code, _, err = _run(capsys, "best", "trian_loss", "--root", str(runs_root))
    assert code == 1 and "did you mean 'train_loss'" in _one_error_line(err)


def test_compact_dry_run_then_compact(runs_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(runs_root, root)
    live = steplog.init(name="live", root=root)  # a running run: its writer (this process) is alive
    live.log({"loss": 1.0})
    live.flush()
    try:
        code, out, _ = _run(capsys, "compact", "--dry-run", "--root", str(root))
        lines = out.splitlines()
        assert code == 0 and len(lines) == 7
        assert sum(line.startswith("would compact") for line in lines) == 4
        assert any(line.startswith("up to date") and "baseline" in line for line in lines)
        skip = next(line for line in lines if line.startswith("would skip"))
        assert "live" in skip and f"running (written by pid {os.getpid()}" in skip
        assert "crashed" in next(line for line in lines if "crashed:" in line).split(": ", 1)[1]
        assert lines[-1] == "dry run: 4 to compact, 1 already compacted, 1 to skip; nothing was changed"
        assert not (steplog.store.resolve_run("crashed", root) / "metrics.parquet").exists()

        code, out, err = _run(capsys, "compact", "--root", str(root))
        assert code == 0 and "4 compacted, 1 already compacted, 1 skipped" in err
        code, out, _ = _run(capsys, "compact", "--dry-run", "--root", str(root))
        assert "dry run: 0 to compact, 5 already compacted, 1 to skip" in out
    finally:
        live.finish()


def test_export(runs_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("h.csv", "h.parquet"):
        code, out, _ = _run(capsys, "export", "diverged", "-o", str(tmp_path / name), "--root", str(runs_root))
        assert code == 0 and str(tmp_path / name) in out
    from_csv = pl.read_csv(tmp_path / "h.csv")
    assert from_csv.columns == ["step", "wallclock", "time", "train_loss", "val_loss"] and from_csv.height == 3
    assert pl.read_parquet(tmp_path / "h.parquet")["train_loss"].is_nan().to_list() == [False, False, True]
    code, _, err = _run(capsys, "export", "baseline", "-o", str(tmp_path / "no" / "dir" / "h.csv"), "--root", str(runs_root))
    assert code == 1 and "cannot write" in _one_error_line(err) and "h.csv" in err
    code, _, err = _run(capsys, "export", "baseline", "-o", str(tmp_path / "h.txt"), "--root", str(runs_root))
    assert code == 1 and "use .csv, .parquet" in _one_error_line(err)
    assert _run(capsys, "export", "baseline", "--root", str(runs_root))[0] == 2  # -o is required


def test_tail_last_rows(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "tail", "baseline", "-n", "3", "--root", str(runs_root))
    lines = out.splitlines()
    assert code == 0 and [line.split()[1] for line in lines] == ["37", "38", "39"]
    assert "val_loss=" in lines[-1] and "val_loss=" not in lines[0] and "train_loss=" in lines[0]
    code, out, err = _run(capsys, "tail", "diverged", "-f", "--root", str(runs_root))  # over: nothing to follow
    assert code == 0 and "train_loss=nan" in out and "nothing to follow" in err


WRITER = """
import sys, time, steplog
run = steplog.init(name="live", root=sys.argv[1])
run.log({"loss": 1.0}); run.flush()
print(run.id, flush=True)
sys.stdin.readline()  # the test starts tail -f first
for step in range(1, 25):
    run.log({"loss": 1.0 / (step + 1)})
    time.sleep(0.02)
run.finish()
"""


def test_tail_follow_sees_a_live_writer_and_ends_with_it(root: Path) -> None:
    writer = python_subprocess(WRITER, str(root), stdin=subprocess.PIPE)
    run_id = writer.stdout.readline().strip()
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tail = subprocess.Popen([sys.executable, "-m", "steplog", "tail", run_id[:19], "-f", "--poll", "0.02", "--root", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = tail.stdout.readline()
    assert first.startswith("step 0 ") and "loss=1" in first  # printed from the history while the run is live
    writer.stdin.write("go\n")
    writer.stdin.flush()
    out, err = tail.communicate(timeout=60)  # ends by itself when the run finishes
    writer.wait(timeout=60)
    steps = [int(line.split()[1]) for line in out.splitlines()]
    assert tail.returncode == 0 and "Traceback" not in err
    assert steps == list(range(1, 25))  # every step once, in order
    assert out.splitlines()[-1].endswith("loss=0.04")


def test_tail_follow_ctrl_c_exits_quietly(root: Path) -> None:
    writer = python_subprocess(WRITER, str(root), stdin=subprocess.PIPE)
    run_id = writer.stdout.readline().strip()
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tail = subprocess.Popen([sys.executable, "-m", "steplog", "tail", "live", "-f", "--root", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert tail.stdout.readline().startswith("step 0 ")
    tail.send_signal(signal.SIGINT)
    out, err = tail.communicate(timeout=30)
    writer.stdin.write("go\n")
    writer.stdin.close()
    writer.wait(timeout=60)
    assert tail.returncode == 0 and err == "" and run_id


def test_plot_png_of_the_requested_size(runs_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = pytest.importorskip("matplotlib.image")
    out_png = tmp_path / "curves.png"
    code, out, _ = _run(capsys, "plot", "baseline", "sweep_lr_0.003", "--metric", "train_loss", "--metric", "val_loss",
                        "--smooth", "3", "--logy", "--size", "640x480", "-o", str(out_png), "--root", str(runs_root))
    assert code == 0 and str(out_png) in out
    pixels = image.imread(out_png)
    assert pixels.shape[:2] == (480, 640) and pixels[..., :3].var() > 0.01
    code, _, err = _run(capsys, "plot", "baseline", "--metric", "val_los", "-o", str(tmp_path / "x.png"), "--root", str(runs_root))
    assert code == 1 and "did you mean 'val_loss'" in _one_error_line(err)
    code, _, err = _run(capsys, "plot", "baseline", "-o", str(tmp_path / "no" / "x.png"), "--root", str(runs_root))
    assert code == 1 and "cannot write the plot" in _one_error_line(err)
    assert _run(capsys, "plot", "baseline", "--size", "big", "--root", str(runs_root))[0] == 2
    assert _run(capsys, "plot", "baseline", "--x", "epoch", "--root", str(runs_root))[0] == 2


def test_plot_without_matplotlib_says_how_to_install(runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    code, _, err = _run(capsys, "plot", "baseline", "-o", str(tmp_path / "x.png"), "--root", str(runs_root))
    assert code == 1 and "pip install 'steplog[plot]'" in _one_error_line(err)


def test_report_to_a_file(runs_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "report", "--markdown", "-o", str(tmp_path / "runs.md"), "--root", str(runs_root))
    assert code == 0 and "runs.md" in out
    text = (tmp_path / "runs.md").read_text()
    assert text.startswith("| name |") and "| crashed |" in text
    code, _, err = _run(capsys, "report", "-o", str(tmp_path / "no" / "r.txt"), "--root", str(runs_root))
    assert code == 1 and "cannot write" in _one_error_line(err)
    assert _run(capsys, "report", "-o", "a.md", "--fill", "b.md", "--root", str(runs_root))[0] == 2


def test_subprocess_errors_have_no_traceback(runs_root: Path) -> None:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "steplog", "show", "nope", "--root", str(runs_root)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 1 and done.stdout == "" and _one_error_line(done.stderr)
    done = subprocess.run([sys.executable, "-m", "steplog", "ls", "--root", str(runs_root)], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "baseline" in done.stdout


def test_ls_and_compare_with_a_config_key_named_last_or_best(tmp_path):
    from steplog.cli import main

    root = tmp_path / "logs"
    with steplog.init(name="cfg", config={"sched": {"last": 3, "best": 1}}, root=root) as run:
        run.log({"acc": 0.5})
    assert main(["ls", "--root", str(root)]) == 0
    assert main(["compare", "--root", str(root), "--metrics", "acc"]) == 0
    assert main(["compare", "--root", str(root), "--metrics", "ac"]) == 1


@pytest.mark.parametrize("command", [["ls"], ["show", "diverged"], ["show", "baseline"], ["compare"], ["report"]])
def test_every_table_fits_80_columns(runs_root: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = _run(capsys, *command, "--root", str(runs_root))
    assert code == 0 and out
    _fits(out)


def test_report_text_fits_its_width(runs_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "report", "--root", str(runs_root))
    assert code == 0 and "left out to fit 80 columns" in out and "\u2026" in out  # the long name is cut
    code, wide, _ = _run(capsys, "report", "--root", str(runs_root), "--width", "400")
    assert code == 0 and "left out" not in wide and LONG_NAME in wide and "config" in wide.splitlines()[0]
    _fits(wide, 400)
    code, narrow, _ = _run(capsys, "report", "--root", str(runs_root), "--width", "40")
    assert code == 0
    _fits(narrow, 40)


def test_ls_left_out_note_wraps_to_the_width(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "logs"
    long_metrics = [f"validation_loss_on_the_held_out_split_number_{i}" for i in range(2)]
    for name in ("sweep_learning_rate_0.0003_warmup_2000_a", "sweep_learning_rate_0.0003_warmup_2000_b"):
        with steplog.init(name=name, root=root) as run:
            run.log({m: 1.0 for m in long_metrics})
    code, out, _ = _run(capsys, "ls", "--root", str(root))
    assert code == 0 and "left out to fit 80 columns" in out
    _fits(out)
    note = out[out.index("(left out"):]
    assert all(m + ".last" in " ".join(note.split()) for m in long_metrics)
    names = {line.split()[0] for line in out.splitlines() if line.startswith("swee")}
    assert names == {"sweep_lea\u2026mup_2000_a", "sweep_lea\u2026mup_2000_b"}  # 20 characters kept: the end tells them apart


def test_compact_exit_code_says_whether_a_run_could_not_be_compacted(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "logs"
    with steplog.init(name="fine", root=root) as run:
        run.log({"loss": 1.0})
    live = steplog.init(name="live", root=root)
    live.log({"loss": 1.0})
    try:
        code, _, err = _run(capsys, "compact", "--root", str(root))
        assert code == 0 and "skipped: running" in err  # a live run is skipped, not an error
        damaged = root / "20260101-000000-000-abcdef"
        damaged.mkdir()
        (damaged / "events.jsonl").write_bytes(b'{"s":0,"t":1.0,"w":0.0,"m":{"a":1.0}}\n')
        with pytest.warns(UserWarning, match="damaged line"):
            code, _, err = _run(capsys, "compact", "--root", str(root))
        assert code == 1 and "no readable start event" in err
        assert _one_error_line(err.splitlines(keepends=True)[-1]) and "could not be compacted: 20260101-000000-000-abcdef" in err
    finally:
        live.finish()
    code, out, _ = _run(capsys, "compact", "--help")
    assert "exit code 1" in " ".join(out.split())


def test_plot_size_below_the_minimum_is_a_usage_error(runs_root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "plot", "baseline", "--size", "10x10", "-o", str(tmp_path / "x.png"), "--root", str(runs_root))
    assert code == 2 and "at least 100x100" in err and not (tmp_path / "x.png").exists()


def test_files_written_are_atomic_and_errors_name_the_target(runs_root: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = _run(capsys, "report", "--fill", "/nonexistent/log.md", "--root", str(runs_root))
    assert code == 1 and "cannot write /nonexistent/log.md: No such file or directory" in _one_error_line(err)
    assert ".tmp" not in err
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    for command in (["report", "--fill", str(tmp_path / "log.md")], ["report", "-o", str(tmp_path / "r.txt")],
                    ["export", "baseline", "-o", str(tmp_path / "h.csv")]):
        synced.clear()
        code, _, err = _run(capsys, *command, "--root", str(runs_root))
        assert code == 0 and synced, command  # the file (and its folder) reach the disk before the rename
    (tmp_path / "dir.csv").mkdir()  # the rename fails: the temporary file goes
    code, _, err = _run(capsys, "export", "baseline", "-o", str(tmp_path / "dir.csv"), "--root", str(runs_root))
    assert code == 1 and f"cannot write {tmp_path / 'dir.csv'}" in _one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.csv", "h.csv", "log.md", "r.txt"]


def test_an_unknown_metric_is_named_with_the_root_everywhere(runs_root: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    for command in (["ls", "--metrics", "val_los"], ["compare", "--metrics", "val_los"],
                    ["plot", "baseline", "--metric", "val_los", "-o", str(tmp_path / "x.png")]):
        code, _, err = _run(capsys, *command, "--root", str(runs_root))
        assert code == 1 and f"no run in {runs_root} logged metric 'val_los'; did you mean 'val_loss'" in \
            _one_error_line(err), command
