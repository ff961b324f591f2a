"""The root catalog (_catalog/runs.parquet): what it lists equals what the sidecars say, whether it is
current, missing a run, stale (a run compacted again) or corrupt."""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

import steplog
from steplog import catalog


def _run(root, name, losses, config=None):
    with steplog.init(name=name, config=config or {"lr": 0.1}, root=root) as run:
        for loss in losses:
            run.log({"loss": loss})
    return run


def _from_sidecars(root) -> pl.DataFrame:
    """The table as the sidecars alone give it (no catalog file at all)."""
    (root / catalog.CATALOG_FILE).unlink(missing_ok=True)
    found = catalog.read(root)
    assert found.from_catalog == 0
    return found.table


def test_catalog_rows_match_runs_and_summary(root):
    _run(root, "a", [3.0, 1.0, float("nan")], {"lr": 0.1, "model": {"d": 8}})
    _run(root, "b", [2.0], {"lr": 0.01})
    steplog.compact(root, quiet=True)
    assert catalog.rebuild(root) == 2
    found = catalog.read(root)
    assert (found.from_catalog, found.from_sidecars, found.live) == (2, 0, [])
    runs = steplog.runs(root=root)
    assert_frame_equal(found.table.select(runs.columns), runs)
    assert found.table["summary.loss.nan_count"].to_list() == [1, 0]
    assert found.table["summary.loss.min"].to_list() == [1.0, 2.0]
    assert found.table["summary.loss.last"].is_nan().to_list() == [True, False]


def test_a_run_the_catalog_misses_is_read_from_its_sidecar(root):
    _run(root, "a", [1.0])
    steplog.compact(root, quiet=True)
    catalog_file = Path(root, catalog.CATALOG_FILE)
    before_b = catalog_file.read_bytes()
    _run(root, "b", [2.0])
    steplog.compact(root, quiet=True)  # compaction keeps the catalog current
    assert (catalog.read(root).from_catalog, catalog.read(root).from_sidecars) == (2, 0)
    catalog_file.write_bytes(before_b)  # a catalog that misses b (an older steplog compacted it, say)
    found = catalog.read(root)
    assert (found.from_catalog, found.from_sidecars) == (1, 1)
    assert found.table["name"].to_list() == ["a", "b"]


def test_a_stale_catalog_never_gives_a_stale_row(root):
    run = _run(root, "a", [1.0, 0.5])
    steplog.compact(root, quiet=True)
    catalog.rebuild(root)
    with steplog.init(resume=run.id, root=root) as again:  # resumed, then compacted again
        again.log({"loss": 0.25})
    assert catalog.read(root).live == [run.id]  # while its events are live, it is not a catalog row
    catalog_file = Path(root, catalog.CATALOG_FILE)
    stale = catalog_file.read_bytes()
    steplog.compact(root, quiet=True)
    assert catalog.read(root).from_catalog == 1  # compaction brought the catalog up to date
    catalog_file.write_bytes(stale)  # a catalog that missed the second compaction
    found = catalog.read(root)
    assert (found.from_catalog, found.from_sidecars) == (0, 1)
    assert found.table["summary.loss.min"].to_list() == [0.25]
    catalog.update(root, [run.id])
    assert catalog.read(root).from_catalog == 1
    assert_frame_equal(catalog.read(root).table, _from_sidecars(root))


def test_a_corrupt_catalog_gives_the_right_answer(root, capsys):
    for i in range(3):
        _run(root, f"r{i}", [float(i)])
    steplog.compact(root, quiet=True)
    expected = _from_sidecars(root)
    catalog.rebuild(root)
    path = root / catalog.CATALOG_FILE
    path.write_bytes(path.read_bytes()[:50])  # torn
    found = catalog.read(root)
    assert found.from_catalog == 0 and "unreadable" in capsys.readouterr().err
    assert_frame_equal(found.table, expected)
    path.write_bytes(b"not parquet at all")
    assert_frame_equal(catalog.read(root).table, expected)


def test_update_drops_the_row_of_a_run_no_longer_compacted_and_ignores_deleted_runs(root):
    import shutil

    a, b = _run(root, "a", [1.0]), _run(root, "b", [2.0])
    steplog.compact(root, quiet=True)
    catalog.rebuild(root)
    shutil.rmtree(b.dir)
    assert catalog.read(root).table["name"].to_list() == ["a"]
    catalog.update(root, [a.dir, b.dir])
    assert pl.read_parquet(root / catalog.CATALOG_FILE)["name"].to_list() == ["a"]


def test_runs_table_adds_live_runs_from_their_events(root):
    _run(root, "done", [1.0])
    steplog.compact(root, quiet=True)
    live = steplog.init(name="live", root=root)
    live.log({"loss": 4.0})
    try:
        table = catalog.runs_table(root)
        assert table.select("name", "status", "summary.loss.last").rows() == [("done", "finished", 1.0),
                                                                             ("live", "running", 4.0)]
    finally:
        live.finish()


def test_cli_rebuild(root, capsys):
    from steplog.catalog import add_arguments, run

    _run(root, "a", [1.0])
    steplog.compact(root, quiet=True)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--rebuild"])
    args.root = root
    assert run(args) == 0
    assert "1 run" in capsys.readouterr().out
    assert catalog.read(root).from_catalog == 1
