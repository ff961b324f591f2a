"""Issue 13: one damaged file, a full disk, odd names, ghost runs, resume='auto' with start_step,
integers beyond 2**53, Run.run_id / Run.segment."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import warnings
from pathlib import Path

import orjson
import polars as pl
import pytest

import steplog
from steplog import format as fmt
from steplog.cli import main

# --- helpers ---------------------------------------------------------------------------------


def _make_runs(root: Path) -> dict[str, Path]:
    """Three compacted runs a, b, c; returns name -> run directory."""
    dirs = {}
    for i, name in enumerate("abc"):
        with steplog.init(name=name, config={"lr": 0.1 * (i + 1)}, root=root) as run:
            for step in range(30):
                run.log({"loss": 1.0 / (step + 1 + i), "acc": step / 30})
        dirs[name] = run.dir
    assert len(steplog.compact(root, quiet=True)) == 3
    return dirs


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero-byte":
        path.write_bytes(b"")
    elif how == "deleted":
        path.unlink()
    elif how == "directory":
        path.unlink()
        path.mkdir()
    elif how == "overwritten":
        data = bytearray(path.read_bytes())
        data[4:204] = bytes(range(200))  # the first data pages, after the magic bytes
        path.write_bytes(bytes(data))


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (CI runs as root), unmounted after the test."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"this test mounts a small tmpfs and needs root (CI runs as root): {exc}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path) -> Path:
    """Fill the file system up; returns the filler file (delete it to free the space)."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\1" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- 1. one damaged file ---------------------------------------------------------------------

CHEAP_DAMAGE = ["truncated", "zero-byte", "deleted", "directory"]


@pytest.mark.parametrize("how", CHEAP_DAMAGE)
def test_scan_reads_a_damaged_parquet_from_the_archived_events(tmp_path, how):
    dirs = _make_runs(tmp_path)
    before = steplog.scan(tmp_path).collect()
    _damage(dirs["b"] / fmt.PARQUET_FILE, how)
    with pytest.warns(UserWarning, match=f"{dirs['b'].name}/metrics.parquet is unusable.*compact --rebuild"):
        frame = steplog.scan(tmp_path)
    after = frame.collect()
    assert after.sort("run_id", "step").equals(before.sort("run_id", "step"))
    assert steplog.sql("SELECT name, count(*) AS n FROM metrics GROUP BY name ORDER BY name", root=tmp_path).rows() == [
        ("a", 30),
        ("b", 30),
        ("c", 30),
    ]


@pytest.mark.parametrize("how", CHEAP_DAMAGE)
def test_scan_leaves_out_a_damaged_run_without_archived_events(tmp_path, how):
    dirs = _make_runs(tmp_path)
    (dirs["b"] / fmt.ARCHIVED_EVENTS_FILE).unlink()
    _damage(dirs["b"] / fmt.PARQUET_FILE, how)
    with pytest.warns(UserWarning, match="no archived events.*left out"):
        frame = steplog.scan(tmp_path).collect()
    assert sorted(set(frame["name"])) == ["a", "c"]
    with pytest.raises(steplog.StoreError, match=f"{dirs['b'].name}/metrics.parquet.*cannot be rebuilt"):
        steplog.history("b", root=tmp_path)
    assert steplog.history("a", root=tmp_path).height == 30


def test_a_size_other_than_the_sidecars_is_caught_when_scan_is_built(tmp_path):
    dirs = _make_runs(tmp_path)
    with open(dirs["b"] / fmt.PARQUET_FILE, "ab") as f:
        f.write(b"junk")
    with pytest.warns(UserWarning, match="bytes where run.json records"):
        assert steplog.scan(tmp_path).collect().height == 90


def test_a_damaged_data_page_is_named_with_how_to_rebuild_it(tmp_path, capsys):
    dirs = _make_runs(tmp_path)
    _damage(dirs["b"] / fmt.PARQUET_FILE, "overwritten")
    with pytest.raises(steplog.StoreError, match=f"{dirs['b'].name}/metrics.parquet.*compact --rebuild"):
        steplog.sql("SELECT * FROM metrics", root=tmp_path)
    code, _, err = _cli(capsys, "sql", "SELECT * FROM metrics", "--root", str(tmp_path))
    assert code == 1 and "steplog compact --rebuild" in err and "Traceback" not in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # history reads no damaged page here, or falls back to the archive
        assert steplog.history("b", root=tmp_path).height == 30
    code, _, err = _cli(capsys, "compact", "--rebuild", "b", "--root", str(tmp_path))
    assert code == 0, err
    assert steplog.sql("SELECT count(*) AS n FROM metrics", root=tmp_path).item() == 90


@pytest.mark.parametrize("how", CHEAP_DAMAGE + ["overwritten"])
def test_a_damaged_sidecar_falls_back_to_the_archived_events(tmp_path, capsys, how):
    dirs = _make_runs(tmp_path)
    _damage(dirs["b"] / fmt.SIDECAR_FILE, how)
    assert sorted(steplog.runs(tmp_path)["name"]) == ["a", "b", "c"]
    assert steplog.compare(root=tmp_path).height == 3
    assert steplog.best("loss", root=tmp_path)["name"] == "c"
    assert steplog.history("b", root=tmp_path).height == 30
    assert steplog.scan(tmp_path).collect().height == 90
    for argv in (
        ["ls"],
        ["show", "b"],
        ["compare"],
        ["best", "loss"],
        ["tail", "b"],
        ["report"],
        ["sql", "SELECT count(*) FROM metrics"],
    ):
        code, _, err = _cli(capsys, *argv, "--root", str(tmp_path))
        assert code == 0, (argv, err)


@pytest.mark.parametrize("how", CHEAP_DAMAGE + ["overwritten"])
def test_a_damaged_sidecar_without_events_is_left_out_with_a_warning(tmp_path, how):
    dirs = _make_runs(tmp_path)
    (dirs["b"] / fmt.ARCHIVED_EVENTS_FILE).unlink()
    _damage(dirs["b"] / fmt.SIDECAR_FILE, how)
    with pytest.warns(UserWarning, match=f"run {dirs['b'].name} is left out: its run.json"):
        assert steplog.runs(tmp_path)["name"].to_list() == ["a", "c"]
    with pytest.warns(UserWarning, match="left out"):
        assert sorted(set(steplog.scan(tmp_path).collect()["name"])) == ["a", "c"]


@pytest.mark.parametrize("how", CHEAP_DAMAGE)
def test_every_cli_command_survives_a_damaged_parquet(tmp_path, capsys, how):
    dirs = _make_runs(tmp_path)
    _damage(dirs["b"] / fmt.PARQUET_FILE, how)
    warnings.simplefilter("ignore")
    for argv in (
        ["ls"],
        ["show", "b"],
        ["compare"],
        ["best", "loss"],
        ["tail", "b"],
        ["report"],
        ["export", "b", "-o", str(tmp_path / "b.csv")],
        ["sql", "SELECT count(*) FROM metrics"],
    ):
        code, _, err = _cli(capsys, *argv, "--root", str(tmp_path))
        assert code == 0, (argv, err)
    code, _, err = _cli(capsys, "compact", "--root", str(tmp_path))  # rebuilds it from the archived events
    assert code == 0, err
    assert not any(issubclass(w.category, UserWarning) for w in _warnings_of(lambda: steplog.scan(tmp_path)))


def _warnings_of(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return caught


# --- 2, 3, 4. a full disk --------------------------------------------------------------------


def test_init_on_a_full_disk_raises_store_error_and_leaves_nothing(small_disk):
    root = small_disk / "logs"
    root.mkdir()
    filler = _fill(small_disk)
    with pytest.raises(steplog.StoreError, match=f"could not start a run in {root}.*free space") as caught:
        steplog.init(name="x", config={"blob": "x" * 100_000}, root=root)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert list(root.iterdir()) == []  # no ghost run
    assert steplog.runs(root).height == 0
    filler.unlink()
    with steplog.init(name="x", root=root) as run:
        run.log({"loss": 1.0})
    assert steplog.runs(root)["status"].to_list() == ["finished"]


def test_init_on_a_read_only_root_raises_store_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(root)], check=True)
    try:
        with pytest.raises(steplog.StoreError, match=f"{root}.*pick a writable root"):
            steplog.init(name="x", root=root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.mark.parametrize("durability", ["mmap", "process"])
def test_logging_and_finish_on_a_full_disk_then_space_freed(small_disk, durability):
    root = small_disk / "logs"
    run = steplog.init(name="full", root=root, durability=durability)
    run.log({"loss": 1.0}, step=0)
    filler = _fill(small_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(1, 20_000):  # more than the mapped chunk holds
            run.log({"loss": 1.0 / step, "pad": float(step)}, step=step)
        run.finish()
    texts = [str(w.message) for w in caught]
    assert any("is NOT finished" in t and "call finish() again" in t for t in texts), texts
    assert steplog.runs(root)["status"].to_list() == ["running"]  # file and lock held
    filler.unlink()
    run.log({"loss": 0.5}, step=30_000)  # logging resumes by itself
    run.finish()
    assert steplog.runs(root)["status"].to_list() == ["finished"]
    history = steplog.history("full", root=root)
    assert history["step"][0] == 0 and history["step"][-1] == 30_000


def test_the_exit_hook_makes_a_last_attempt_at_finishing(small_disk):
    root = small_disk / "logs"
    script = (
        "import os, warnings, steplog\n"
        f"root = {str(root)!r}\n"
        "run = steplog.init(name='late', root=root, durability='process')\n"
        "run.log({'loss': 1.0})\n"
        f"filler = open({str(small_disk / 'filler')!r}, 'wb')\n"
        "try:\n"
        "    while True: os.write(filler.fileno(), b'0' * 4096)\n"
        "except OSError: pass\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        "    for i in range(5000): run.log({'loss': float(i)})  # past the file's last page\n"
        "run.finish()\n"
        "assert run in steplog.openruns.open_runs\n"
        "filler.close()\n"
        f"os.unlink({str(small_disk / 'filler')!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(steplog.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "is NOT finished" in proc.stderr
    assert steplog.runs(root)["status"].to_list() == ["finished"]


def test_compaction_on_a_full_disk_raises_store_error_and_keeps_what_was_done(small_disk):
    root = small_disk / "logs"
    for name in ("small", "big"):
        with steplog.init(name=name, root=root, durability="process") as run:
            count = 10 if name == "small" else 3000
            for step in range(count):
                run.log({f"m{i}": step * 1.000001 + i for i in range(8)})
    assert steplog.compact(root, ["small"], quiet=True)
    filler = _fill(small_disk)
    with pytest.raises(
        steplog.StoreError,
        match=r"could not compact run .*'big'.*free space, then run `steplog "
        r"compact` again",
    ):
        steplog.compact(root, quiet=True)
    big = store_dir(root, "big")
    assert sorted(p.name for p in big.iterdir()) == [fmt.EVENTS_FILE]  # no partial file
    assert steplog.runs(root).sort("name")["status"].to_list() == ["finished", "finished"]
    filler.unlink()
    assert len(steplog.compact(root, quiet=True)) == 1
    assert steplog.history("big", root=root).height == 3000


def store_dir(root: Path, name: str) -> Path:
    return steplog.store.runs_named(name, root)[-1]


# --- 4. ghost runs ---------------------------------------------------------------------------


def test_folders_without_a_complete_start_event_are_not_runs(tmp_path, capsys):
    with steplog.init(name="real", root=tmp_path) as run:
        run.log({"loss": 1.0})
    (tmp_path / "20260101-000000-000-aaaaaa").mkdir()  # an empty folder left by an old failed init
    torn = tmp_path / "20260101-000000-000-bbbbbb"
    torn.mkdir()
    (torn / fmt.EVENTS_FILE).write_bytes(b'{"k":"start","v":1,"run_id":"2026')  # a start event cut short
    assert steplog.runs(tmp_path)["name"].to_list() == ["real"]
    assert steplog.scan(tmp_path).collect()["name"].to_list() == ["real"]
    code, out, _ = _cli(capsys, "ls", "--root", str(tmp_path))
    assert code == 0 and "crashed" not in out and "real" in out


def test_a_reader_polling_while_200_runs_are_created_sees_only_complete_runs(tmp_path):
    script = (
        "import steplog, sys\n"
        "for i in range(200):\n"
        "    run = steplog.init(name=f'r{i}', config={'i': i}, root=sys.argv[1])\n"
        "    run.log({'loss': 1.0}); run.finish()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(steplog.__file__).parents[1])}
    writer = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=env)
    polls, problems = 0, []
    try:
        while writer.poll() is None or polls < 5:
            polls += 1
            table = steplog.runs(tmp_path)
            if table.height:
                bad = table.filter(pl.col("status") == "crashed")
                if bad.height:
                    problems.append(("crashed", bad["name"].to_list()))
                name = table["name"][-1]
                try:
                    steplog.history(name, root=tmp_path)
                except steplog.RunNotFoundError as exc:
                    problems.append(("not found", str(exc)))
            if writer.poll() is not None and polls >= 5:
                break
    finally:
        writer.wait()
    assert writer.returncode == 0
    assert problems == []
    assert steplog.runs(tmp_path).height == 200
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


# --- 5, 6, 7, 9 ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "\n"])
def test_an_empty_name_is_refused(tmp_path, name):
    with pytest.raises(ValueError, match="is empty: no query could find the run"):
        steplog.init(name=name, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_resume_auto_with_nothing_to_resume_starts_at_start_step(tmp_path):
    run = steplog.init(name="job", resume="auto", start_step=200, root=tmp_path)
    run.log({"loss": 1.0})
    run.log({"loss": 0.9})
    run.finish()
    assert steplog.history("job", root=tmp_path)["step"].to_list() == [200, 201]
    again = steplog.init(name="job", resume="auto", root=tmp_path)  # finished: a new run from 0
    again.log({"loss": 1.0})
    again.finish()
    assert again.step == 0


def test_integers_beyond_2_53_warn_once_per_metric(tmp_path):
    np = pytest.importorskip("numpy")
    run = steplog.init(root=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"tokens": 2**53 + 1, "loss": 0.5})
        run.log({"tokens": 2**60, "loss": 0.4})
        run.log({"np_tokens": np.int64(2**62)})
        run.log({"exact": 2**53, "loss": 0.3})
    run.finish()
    texts = [str(w.message) for w in caught]
    assert len(texts) == 2, texts
    assert "'tokens'" in texts[0] and "2**53" in texts[0] and "'np_tokens'" in texts[1]
    assert caught[0].filename == __file__  # points at the log() call


def test_run_id_and_segment(tmp_path):
    run = steplog.init(name="x", root=tmp_path)
    assert run.run_id == run.id == steplog.runs(tmp_path)["run_id"].item() and run.segment == 0
    run.finish()
    again = steplog.init(resume="x", root=tmp_path)
    assert again.run_id == run.run_id and again.segment == 1
    again.finish()


def test_store_error_is_exported_and_an_oserror():
    assert issubclass(steplog.StoreError, OSError) and "StoreError" in steplog.__all__
    assert orjson.loads(orjson.dumps({"ok": 1})) == {"ok": 1}


# --- 5, 8. names and widths in tables --------------------------------------------------------

ODD_NAMES = ["line\nbreak", "tab\there", "esc\x1b[31mred", "名前の実験-長い名前", "emoji 🙂🙂", "plain"]


def _fits(text: str, width: int) -> None:
    from steplog.tables import display_width

    for line in text.splitlines():
        assert display_width(line) <= width, line
        assert line.isprintable(), repr(line)


@pytest.fixture
def odd_root(tmp_path):
    for i, name in enumerate(ODD_NAMES):
        with steplog.init(
            name=name, config={"lr": 0.1 * (i + 1), "experiment_name": name, "seed": 1}, root=tmp_path
        ) as run:
            for step in range(5):
                run.log(
                    {
                        "train_loss": 1.0 / (step + 1 + i),
                        "val_accuracy": step / 5 + i,
                        "learning_rate": 0.1,
                        "gradient_step": 0.0,
                        "val_perplexity": 3.0 + i,
                    }
                )
    return tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["compare"],
        ["compare", "--all"],
        ["report"],
        ["show", "plain"],
        ["tail", "plain"],
        ["sql", "SELECT name, train_loss FROM metrics"],
    ],
)
def test_odd_names_keep_every_cli_table_aligned_and_within_the_width(odd_root, capsys, argv):
    width = 72
    extra = [] if argv[0] in ("show", "sql") else ["--width", str(width)]
    code, out, err = _cli(capsys, *argv, "--root", str(odd_root), *extra)
    assert code == 0, err
    if argv[0] in ("show", "sql"):
        assert all(line.isprintable() for line in out.splitlines())
    else:
        _fits(out, width)
    if argv[0] == "ls":
        assert "line\\nbreak" in out and "名前の実験" in out


def test_python_tables_escape_and_measure_names(odd_root):
    from steplog.tables import display_width, markdown_table, text_table

    runs = steplog.runs(odd_root).select("name", "status")
    text = text_table(runs)
    lines = text.splitlines()
    assert len(lines) == 2 + len(ODD_NAMES)
    assert len({display_width(line.rstrip()) for line in lines[2:]} | {display_width(lines[1])}) == 1  # aligned
    assert markdown_table(runs).count("\n") == 1 + len(ODD_NAMES)
    analyzer = steplog.ExperimentAnalyzer(odd_root)
    _fits(analyzer.get_comparison_table(width=80), 80)


def test_cli_compare_shows_what_helps_a_comparison(odd_root, capsys):
    code, out, _ = _cli(capsys, "compare", "--root", str(odd_root), "--width", "200")
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    assert rows == [
        "config.lr",
        "train_loss.best",
        "train_loss.last",
        "val_accuracy.best",
        "val_accuracy.last",
        "val_perplexity.best",
        "val_perplexity.last",
    ]
    _, out, _ = _cli(capsys, "compare", "--all", "--root", str(odd_root), "--width", "200")
    assert "learning_rate.best" in out and "config.experiment_name" in out
    assert "learning_rate.best" in steplog.compare(root=odd_root).columns  # the Python function keeps its defaults


def test_tail_of_a_thousand_metrics_fits_the_terminal(tmp_path, capsys):
    with steplog.init(name="wide", root=tmp_path) as run:
        run.log({f"metric_{i:04d}": i * 0.5 for i in range(1000)})
    code, out, _ = _cli(capsys, "tail", "wide", "--root", str(tmp_path), "--width", "100")
    assert code == 0
    _fits(out, 100)
    assert out.count("metric_") == 1000


def test_export_on_a_full_disk_raises_store_error_and_leaves_no_file(small_disk, tmp_path):
    root = tmp_path / "logs"
    with steplog.init(name="x", root=root) as run:
        for step in range(3000):
            run.log({"loss": 1.0 / (step + 1), "noise": step * 1.1})
    filler = _fill(small_disk)
    for target in ("x.csv", "x.parquet"):
        with pytest.raises(steplog.StoreError, match=f"cannot write {small_disk / target}.*free space"):
            steplog.export("x", small_disk / target, root=root)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    filler.unlink()
    assert steplog.export("x", small_disk / "x.csv", root=root).stat().st_size > 0
