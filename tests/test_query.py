"""The query surface over compacted and live runs: scan (and its laziness), summary, compare,
best, export, and runs() reading sidecars only."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import steplog
from steplog import format as fmt
from steplog import scanning

NAN, INF = float("nan"), float("inf")


def _run(root: Path, name: str, rows: list[dict], config: dict | None = None, finish: bool = True) -> steplog.Run:
    run = steplog.init(name=name, config=config or {}, root=root)
    for metrics in rows:
        run.log(metrics)
    if finish:
        run.finish()
    return run


def _with_identity(frame: pl.DataFrame, run: steplog.Run) -> pl.DataFrame:
    return frame.select(
        pl.lit(run.id).alias("run_id"), pl.lit(run.name).alias("name"), pl.lit(0, pl.Int32).alias("rank"), pl.all()
    )


def _mixed_root(root: Path) -> tuple[steplog.Run, steplog.Run, steplog.Run]:
    a = _run(root, "a", [{"loss": 1.0, "acc": 0.1}, {"loss": 0.5, "acc": NAN}, {"loss": 0.25}])
    steplog.compact(root, quiet=True)
    b = _run(root, "b", [{"loss": 2.0, "val": 3.0}, {"val": -INF}])
    c = _run(root, "c", [{"x": 1.0}], finish=False)
    return a, b, c


def test_scan_over_compacted_finished_and_running_runs(tmp_path):
    a, b, c = _mixed_root(tmp_path)
    expected = pl.concat(
        [_with_identity(steplog.history(r.id, root=tmp_path), r) for r in (a, b, c)], how="diagonal_relaxed"
    )
    scanned = steplog.scan(tmp_path).collect()
    assert scanned.columns == ["run_id", "name", "rank", "step", "wallclock", "time", "loss", "acc", "val", "x"]
    assert_frame_equal(scanned, expected)
    assert scanned.schema["time"] == pl.Datetime("us", "UTC")
    assert_frame_equal(
        steplog.scan(tmp_path, runs=["b"]).collect(),
        expected.filter(pl.col("name") == "b").select(
            "run_id", "name", "rank", "step", "wallclock", "time", "loss", "val"
        ),
    )
    assert steplog.scan(tmp_path).select("name", "x").drop_nulls().collect().rows() == [("c", 1.0)]
    assert steplog.scan(tmp_path).head(4).collect().height == 4
    c.finish()


def _break(path: Path) -> None:
    path.write_bytes(b"this is not a Parquet file")


def _break_data(path: Path) -> None:
    """Overwrite the data pages of every column, leaving the footer readable."""
    for column in pq.read_metadata(path).schema.names:
        _break_column(path, column)


def test_a_filter_on_run_id_or_name_does_not_open_other_runs_files(tmp_path):
    good = _run(tmp_path, "good", [{"loss": 1.0}, {"loss": 0.5}])
    bad = _run(tmp_path, "bad", [{"loss": 9.0, "other": 1.0}])
    steplog.compact(tmp_path, quiet=True)
    _break_data(bad.dir / fmt.PARQUET_FILE)  # its footer (statistics included) stays readable
    with pytest.raises(pl.exceptions.PolarsError):
        steplog.scan(tmp_path).collect()  # the broken pages are read when the run is not filtered out
    expected = _with_identity(steplog.history(good.id, root=tmp_path), good).with_columns(
        pl.lit(None, pl.Float64).alias("other")
    )
    lazy = steplog.scan(tmp_path)
    assert_frame_equal(lazy.filter(pl.col("run_id") == good.id).collect(), expected)
    assert_frame_equal(lazy.filter(pl.col("name") == "good").collect(), expected)
    assert_frame_equal(lazy.filter(pl.col("run_id").is_in([good.id])).collect(), expected)
    both = lazy.filter((pl.col("run_id") == good.id) & (pl.col("loss") < 0.75)).select("step", "loss").collect()
    assert both.rows() == [(1, 0.5)]
    chained = lazy.filter(pl.col("loss") < 0.75).filter(pl.col("name").str.starts_with("go")).select("loss").collect()
    assert chained.rows() == [(0.5,)]


def test_runs_compacted_by_layout_1_without_a_name_column_still_read(tmp_path):
    import orjson

    a, b, c = _mixed_root(tmp_path)
    expected = {"scan": steplog.scan(tmp_path).collect(), "history": steplog.history("a", root=tmp_path)}
    table = pl.read_parquet(a.dir / fmt.PARQUET_FILE).drop("name")  # as layout 1 wrote it
    table.write_parquet(a.dir / fmt.PARQUET_FILE)
    sidecar = orjson.loads((a.dir / fmt.SIDECAR_FILE).read_bytes())
    assert sidecar["sidecar_version"] == 2 and sidecar["parquet"]["columns"][:2] == ["run_id", "name"]
    sidecar.update(
        sidecar_version=1,
        parquet={**sidecar["parquet"], "columns": table.columns, "bytes": (a.dir / fmt.PARQUET_FILE).stat().st_size},
    )
    (a.dir / fmt.SIDECAR_FILE).write_bytes(orjson.dumps(sidecar))
    assert_frame_equal(steplog.scan(tmp_path).collect(), expected["scan"])
    assert_frame_equal(
        steplog.scan(tmp_path).filter(pl.col("name") == "a").collect(), expected["scan"].filter(pl.col("name") == "a")
    )
    assert_frame_equal(steplog.history("a", root=tmp_path), expected["history"])
    c.finish()


def _break_column(path: Path, column: str) -> None:
    """Overwrite the data of one column chunk, leaving the footer (and other columns) readable."""
    meta = pq.read_metadata(path)
    index = meta.schema.names.index(column)
    data = bytearray(path.read_bytes())
    for group in range(meta.num_row_groups):
        chunk = meta.row_group(group).column(index)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))


def test_a_select_reads_only_the_columns_it_uses(tmp_path):
    run = _run(tmp_path, "r", [{"loss": 1.0 / (i + 1), "acc": i / 10} for i in range(10)])
    steplog.compact(tmp_path, quiet=True)
    _break_column(run.dir / fmt.PARQUET_FILE, "acc")
    with pytest.raises(Exception):
        steplog.scan(tmp_path).select("acc").collect()
    got = steplog.scan(tmp_path).select("run_id", "step", "loss").collect()
    assert got["loss"].to_list() == [1.0 / (i + 1) for i in range(10)]


def test_runs_reads_sidecars_only(tmp_path):
    a, b, c = _mixed_root(tmp_path)
    before = steplog.runs(tmp_path)
    _break(a.dir / fmt.PARQUET_FILE)
    assert_frame_equal(steplog.runs(tmp_path), before)
    assert steplog.summary("a", root=tmp_path)["loss"]["min"] == 0.25
    assert steplog.best("loss", root=tmp_path)["name"] == "a"
    c.finish()


def test_history_of_a_compacted_run_with_a_broken_parquet_file_falls_back_to_the_archive(tmp_path):
    run = _run(tmp_path, "r", [{"loss": 1.0}, {"loss": NAN}])
    before = steplog.history("r", root=tmp_path)
    steplog.compact(tmp_path, quiet=True)
    _break(run.dir / fmt.PARQUET_FILE)
    with pytest.warns(UserWarning, match="unreadable"):
        assert_frame_equal(steplog.history("r", root=tmp_path), before)


def test_compacted_runs_resolve_by_id_prefix_name_and_path(tmp_path):
    run = _run(tmp_path, "named", [{"loss": 1.0}])
    steplog.compact(tmp_path, quiet=True)
    for ref in (run.id, run.id[:-2], "named", str(run.dir), run.dir):
        assert steplog.history(ref, root=tmp_path)["loss"].to_list() == [1.0]


# --- summary, best, compare on hand-made runs -------------------------------------------------


def _hand_made(root: Path) -> dict[str, steplog.Run]:
    runs = {
        "a": _run(
            root,
            "a",
            [{"val_loss": 3.0, "acc": 0.5}, {"val_loss": NAN, "acc": 0.7}, {"val_loss": 1.0}],
            {"lr": 0.1, "layers": 4, "opt": {"name": "adam"}},
        ),
        "b": _run(
            root,
            "b",
            [{"val_loss": 2.0}, {"val_loss": 1.0}, {"val_loss": 1.0}],  # ties a's best, later run
            {"lr": 0.2, "layers": 4, "opt": {"name": "adam"}},
        ),
        "c": _run(
            root, "c", [{"acc": 0.9}, {"acc": 0.9}], {"lr": 0.1, "layers": 4, "opt": {"name": "sgd"}, "warmup": 10}
        ),
        "d": _run(
            root,
            "d",
            [{"val_loss": NAN}, {"val_loss": NAN, "acc": NAN}],
            {"lr": 0.1, "layers": 4, "opt": {"name": "adam"}},
        ),
    }
    return runs


@pytest.mark.parametrize("compacted", ["none", "some", "all"])
def test_best_and_compare_have_known_answers(tmp_path, compacted):
    runs = _hand_made(tmp_path)
    if compacted == "all":
        steplog.compact(tmp_path, quiet=True)
    elif compacted == "some":
        steplog.compact(tmp_path, runs=["a", "c"], quiet=True)
    a, b, c, d = (runs[k] for k in "abcd")
    assert steplog.best("val_loss", root=tmp_path) == {
        "run_id": a.id,
        "name": "a",
        "value": 1.0,
        "step": 2,
    }  # tie: earlier run
    assert steplog.best("val_loss", "max", root=tmp_path) == {"run_id": a.id, "name": "a", "value": 3.0, "step": 0}
    assert steplog.best("acc", "max", root=tmp_path) == {
        "run_id": c.id,
        "name": "c",
        "value": 0.9,
        "step": 0,
    }  # tie: earlier step
    assert steplog.best("val_loss", root=tmp_path, runs=["b", "d"]) == {
        "run_id": b.id,
        "name": "b",
        "value": 1.0,
        "step": 1,
    }
    with pytest.raises(ValueError, match="no run .* has a value for metric 'val_loss'"):
        steplog.best("val_loss", root=tmp_path, runs=["c", "d"])  # d has only NaN, c none at all
    with pytest.raises(ValueError, match="mode"):
        steplog.best("val_loss", "lowest", root=tmp_path)

    table = steplog.compare(root=tmp_path, mode={"acc": "max"})
    assert table.columns == [
        "run_id",
        "name",
        "config.lr",
        "config.opt.name",
        "config.warmup",
        "val_loss.best",
        "val_loss.last",
        "acc.best",
        "acc.last",
    ]
    rows = {r["name"]: r for r in table.to_dicts()}
    assert (rows["a"]["val_loss.best"], rows["a"]["val_loss.last"], rows["a"]["acc.best"]) == (1.0, 1.0, 0.7)
    assert (
        rows["c"]["val_loss.best"] is None and rows["c"]["config.warmup"] == 10 and rows["a"]["config.warmup"] is None
    )
    assert rows["d"]["val_loss.best"] is None and math.isnan(rows["d"]["val_loss.last"])
    assert table["run_id"].to_list() == [a.id, b.id, c.id, d.id]

    subset = steplog.compare(["a", "b"], metrics=["val_loss"], root=tmp_path, figures=("best", "step_of_best", "count"))
    assert subset.columns == ["run_id", "name", "config.lr", "val_loss.best", "val_loss.step_of_best", "val_loss.count"]
    assert subset.select("val_loss.step_of_best", "val_loss.count").rows() == [(2, 3), (1, 3)]
    assert subset.schema["val_loss.count"] == pl.Int64
    with pytest.raises(ValueError, match="unknown figure 'median'"):
        steplog.compare(root=tmp_path, figures=("median",))


def test_summary_figures(tmp_path):
    _run(tmp_path, "s", [{"m": 4.0}, {"m": NAN}, {"other": 1.0}, {"m": 1.0}, {"m": 4.0}, {"m": 1.0}])
    live = steplog.summary("s", root=tmp_path)
    steplog.compact(tmp_path, quiet=True)
    assert repr(steplog.summary("s", root=tmp_path)) == repr(live)
    m = live["m"]
    assert {k: m[k] for k in ("count", "nan_count", "min", "max", "first", "last", "step_of_min", "step_of_max")} == {
        "count": 5,
        "nan_count": 1,
        "min": 1.0,
        "max": 4.0,
        "first": 4.0,
        "last": 1.0,
        "step_of_min": 3,
        "step_of_max": 0,
    }
    assert m["mean"] == pytest.approx(2.5) and m["std"] == pytest.approx(math.sqrt(3.0))
    assert live["other"]["std"] is None  # one value: no sample std


# --- export -----------------------------------------------------------------------------------


@pytest.mark.parametrize("compact_first", [False, True])
def test_export_round_trips(tmp_path, compact_first):
    _run(tmp_path, "e", [{"loss": 1.5, "acc": NAN}, {"loss": INF}, {"acc": -INF}, {"loss": 0.1}])
    if compact_first:
        steplog.compact(tmp_path, quiet=True)
    expected = steplog.history("e", root=tmp_path)
    parquet = steplog.export("e", tmp_path / "e.parquet", root=tmp_path)
    assert_frame_equal(pl.read_parquet(parquet), expected)
    csv = steplog.export("e", tmp_path / "e.csv", root=tmp_path)
    assert_frame_equal(pl.read_csv(csv, schema=expected.schema), expected)
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".*.steplog-tmp"))
    with pytest.raises(ValueError, match="use .csv, .parquet or .pq"):
        steplog.export("e", tmp_path / "e.xlsx", root=tmp_path)


_EXPORTER = """
import sys, steplog
sys.stdin.readline()  # all four start together
for _ in range(5):
    steplog.export("e", sys.argv[2], root=sys.argv[1])
print("ok", flush=True)
"""


def test_four_processes_exporting_to_one_path_never_clobber_each_other(tmp_path):
    from conftest import python_subprocess

    _run(tmp_path, "e", [{"loss": float(i)} for i in range(2000)])
    target = tmp_path / "out" / "e.csv"
    target.parent.mkdir()
    procs = [python_subprocess(_EXPORTER, str(tmp_path), str(target), stdin=subprocess.PIPE) for _ in range(4)]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out) == (0, "ok\n"), err
    expected = steplog.history("e", root=tmp_path)
    assert_frame_equal(pl.read_csv(target, schema=expected.schema), expected)
    assert [p.name for p in target.parent.iterdir()] == ["e.csv"]  # no temporary file left


def test_export_removes_the_temporary_files_of_killed_writers_only(tmp_path):
    from steplog.atomic import TEMP_SUFFIX

    _run(tmp_path, "e", [{"loss": 1.0}])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".e.csv.{dead.pid}-0badcafe{TEMP_SUFFIX}"
    live = tmp_path / f".e.csv.{os.getppid()}-0badcafe{TEMP_SUFFIX}"  # a live process (pytest's parent)
    other = tmp_path / ".e.csv.tmp.notes"  # not ours: the pattern does not match
    for path in (killed, live, other):
        path.write_bytes(b"half")
    steplog.export("e", tmp_path / "e.csv", root=tmp_path)
    assert not killed.exists() and live.exists() and other.exists()


def test_best_auto_maximises_accuracy_and_minimises_loss(tmp_path):
    root = tmp_path / "logs"
    for name, acc, loss in (("a", [0.5, 0.7], [2.0, 1.5]), ("b", [0.6, 0.9], [2.5, 1.7])):
        with steplog.init(name=name, root=root) as run:
            for a, lo in zip(acc, loss):
                run.log({"val_accuracy": a, "val_loss": lo})
    best_acc = steplog.best("val_accuracy", mode="auto", root=root)
    assert (best_acc["name"], best_acc["value"], best_acc["step"]) == ("b", 0.9, 1)
    best_loss = steplog.best("val_loss", mode="auto", root=root)
    assert (best_loss["name"], best_loss["value"]) == ("a", 1.5)


def test_scan_resolves_each_live_run_once_per_scan_however_often_collected(tmp_path, monkeypatch):
    for name in ("keep", "other", "third"):
        _run(tmp_path, name, [{"loss": 1.0}, {"loss": 0.5}])
    resolved = []
    real = scanning.lazy_history  # the live run's history, resolved (or, in order already, converted in the query)
    monkeypatch.setattr(
        scanning, "lazy_history", lambda events, **kw: resolved.append(events.start["name"]) or real(events, **kw)
    )
    frame = steplog.scan(tmp_path).filter(pl.col("name") == "keep")
    assert sorted(resolved) == ["keep", "other", "third"]  # when scan() is called, once per run
    assert frame.collect_schema().names()[-1] == "loss"
    assert frame.select("step", "loss").collect().rows() == [(0, 1.0), (1, 0.5)]
    frame.collect(), frame.collect()
    assert len(resolved) == 3


@pytest.fixture
def reads(monkeypatch):
    """Counts, per run name, the events files parsed and the histories resolved by queries."""
    counts = {"read": [], "resolved": []}
    model = sys.modules["steplog.model"]
    real_read, real_resolve = model.read_events, model.resolve_history

    def read(path, *args, **kwargs):
        events = real_read(path, *args, **kwargs)
        counts["read"].append(events.start["name"])
        return events

    def resolve(events, **kwargs):
        counts["resolved"].append(events.start["name"])
        return real_resolve(events, **kwargs)

    monkeypatch.setattr(model, "read_events", read)
    monkeypatch.setattr(model, "resolve_history", resolve)
    monkeypatch.setattr(scanning, "lazy_history", lambda events, **kwargs: resolve(events, **kwargs).lazy())
    monkeypatch.setattr(sys.modules["steplog.compact"], "resolve_history", resolve)
    return counts


def test_each_live_run_is_read_and_resolved_once_per_query(tmp_path, reads):
    resumed = _run(tmp_path, "a", [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.0}])
    again = steplog.init(resume=resumed.id, root=tmp_path, start_step=1)
    again.log({"loss": 0.5})
    again.finish()
    _run(tmp_path, "b", [{"loss": 2.5}, {"acc": 0.5}])
    info = steplog.query.run_info("a", root=tmp_path)
    assert (info["num_steps"], info["superseded_rows"], info["summary"]["loss"]["min"]) == (2, 2, 0.5)
    assert reads == {"read": ["a"], "resolved": ["a"]}
    for query in (lambda: steplog.compare(root=tmp_path), lambda: steplog.runs(tmp_path, metrics="all")):
        reads["read"].clear(), reads["resolved"].clear()
        table = query()
        assert table["loss.best"].to_list() == [0.5, 2.5] and table["loss.last"].to_list() == [0.5, 2.5]
        assert reads == {"read": ["a", "b"], "resolved": ["a", "b"]}


def test_root_is_keyword_only_where_a_run_or_metric_comes_first_and_positional_still_works_for_now(tmp_path):
    _run(tmp_path, "a", [{"loss": 2.0}, {"loss": 1.0}])
    calls = {
        "history": (lambda: steplog.history("a", tmp_path), lambda: steplog.history("a", root=tmp_path)),
        "summary": (lambda: steplog.summary("a", tmp_path), lambda: steplog.summary("a", root=tmp_path)),
        "run_info": (
            lambda: steplog.query.run_info("a", tmp_path)["num_steps"],
            lambda: steplog.query.run_info("a", root=tmp_path)["num_steps"],
        ),
        "best": (lambda: steplog.best("loss", "min", tmp_path), lambda: steplog.best("loss", "min", root=tmp_path)),
        "compare": (lambda: steplog.compare(None, None, tmp_path), lambda: steplog.compare(root=tmp_path)),
        "export": (
            lambda: steplog.export("a", tmp_path / "a.csv", tmp_path).name,
            lambda: steplog.export("a", tmp_path / "a.csv", root=tmp_path).name,
        ),
    }
    for name, (positional, keyword) in calls.items():
        with pytest.warns(DeprecationWarning, match=rf"steplog.{name}\(\): passing root by position is deprecated"):
            old = positional()
        new = keyword()
        assert old.equals(new) if isinstance(new, pl.DataFrame) else old == new, name
    with pytest.raises(TypeError, match="takes 1 positional arguments but 3 were given"):
        steplog.history("a", tmp_path, True)
    assert steplog.runs(tmp_path).height == steplog.scan(tmp_path).collect().select("run_id").n_unique() == 1


@pytest.mark.parametrize("with_damage", [False, True])
def test_scan_of_many_live_runs_read_together_matches_each_runs_history(tmp_path, with_damage):
    """scan() parses the live runs' metric lines together (reader.read_many); each run's rows must
    still be exactly its history(), whatever its neighbours hold. A damaged line anywhere makes
    the files be read one by one (with_damage): the same rows again."""
    _run(tmp_path, "floats", [{"loss": 2.0, "acc": 0.1}, {"loss": 1.0}])
    # ints where the others log floats, and "*", a name pl.col would misread
    _run(tmp_path, "ints", [{"loss": 3}, {"loss": 2, "*": 1.5}])
    _run(tmp_path, "nonfinite", [{"loss": float("nan")}, {"acc": float("inf"), "grad": float("-inf")}])
    _run(tmp_path, "empty", [])
    going_back = steplog.init(name="going_back", root=tmp_path)
    going_back.log({"loss": 1.0}, step=5), going_back.log({"loss": 0.5}, step=2), going_back.log({"acc": 0.9}, step=5)
    going_back.finish()
    resumed = _run(tmp_path, "resumed", [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.0}])
    again = steplog.init(resume=resumed.id, root=tmp_path, start_step=1)
    again.log({"loss": 0.25, "lr": 0.1})
    again.finish()
    damaged = _run(tmp_path, "damaged", [{"loss": 1.0}, {"loss": 0.5}])
    path = damaged.dir / fmt.EVENTS_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    if with_damage:
        path.write_bytes(b"".join([lines[0], lines[1], b'{"s": 7, "m": not json}\n', *lines[2:]]))
    live = _run(tmp_path, "live", [{"loss": 4.0}, {"val_loss": 3.0}], finish=False)
    with pytest.warns(UserWarning, match="skipped 1 damaged line") if with_damage else _no_warning():
        scanned = steplog.scan(tmp_path).collect()
    assert scanned.columns[:6] == ["run_id", "name", "rank", "step", "wallclock", "time"]
    assert scanned.columns[6:] == ["loss", "acc", "*", "grad", "lr", "val_loss"]  # in order of first appearance
    assert scanned["rank"].unique().to_list() == [0]  # single-process runs
    names = ["floats", "ints", "nonfinite", "empty", "going_back", "resumed", "damaged", "live"]
    assert scanned["name"].unique(maintain_order=True).to_list() == [n for n in names if n != "empty"]
    for name in names:
        with pytest.warns(UserWarning) if name == "damaged" and with_damage else _no_warning():
            history = steplog.history(name, root=tmp_path)
        rows = scanned.filter(pl.col("name") == name).drop("run_id", "name", "rank")
        mine = [rows.columns.index(c) for c in history.columns]  # by position: "*" is a metric name here
        assert_frame_equal(rows.select(pl.nth(mine)), history)
        others = rows.select(pl.nth([i for i in range(rows.width) if i not in mine]))
        assert others.null_count().row(0) == (rows.height,) * others.width  # the other runs' metrics: null
    assert steplog.history("resumed", root=tmp_path)["loss"].to_list() == [3.0, 0.25]
    live.finish()


class _no_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
