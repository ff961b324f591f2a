"""Every query and CLI command with an object-store URL as root, against a real local S3 server
(moto's ThreadedMotoServer, the fixtures of test_cloud): answers equal the local root's, live runs
read from their part objects, a stale or corrupt catalog never gives a wrong answer."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_cloud import bucket, make_runs, s3_endpoint  # noqa: F401  (fixtures)

import steplog
from steplog import catalog, storage
from steplog.cli import main
from steplog.push import push
from steplog.query import run_info
from steplog.sync import sync


@pytest.fixture
def pushed(root, bucket):  # noqa: F811
    """Four compacted runs, pushed: (local root, remote root as an opened Storage, run ids, url, options)."""
    url, options = bucket
    ids = make_runs(root, 4)
    push(url, root=root, storage_options=options, quiet=True)
    return root, storage.open_root(url, options), ids, url, options


@pytest.fixture
def env_url(bucket, monkeypatch):  # noqa: F811
    """The bucket's URL with credentials and endpoint in the environment, as the CLI is used."""
    url, options = bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["aws_endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return url


def test_per_run_queries_over_the_bucket_equal_the_local_ones(pushed, tmp_path):
    local, remote, ids, _, _ = pushed
    for ref in (ids[1], ids[2][:-3], "run3"):
        assert_frame_equal(steplog.history(ref, root=remote), steplog.history(ref, root=local))
    assert_frame_equal(
        steplog.history("run0", root=remote, all_segments=True), steplog.history("run0", root=local, all_segments=True)
    )
    assert json.dumps(steplog.summary("run2", root=remote)) == json.dumps(steplog.summary("run2", root=local))
    info, expected = run_info("run1", root=remote), run_info("run1", root=local)
    assert info.pop("dir") == f"{remote.url}/{ids[1]}"
    expected.pop("dir")
    assert json.dumps(info, default=str) == json.dumps(expected, default=str)
    out = steplog.export("run2", tmp_path / "remote.csv", root=remote)
    assert out.read_text() == steplog.export("run2", tmp_path / "local.csv", root=local).read_text()


def test_table_queries_over_the_bucket_equal_the_local_ones(pushed):
    local, remote, ids, _, _ = pushed
    assert_frame_equal(steplog.runs(remote), steplog.runs(local))
    assert_frame_equal(
        steplog.runs(remote, metrics="all", figures=("best", "step_of_best", "mean"), mode="auto"),
        steplog.runs(local, metrics="all", figures=("best", "step_of_best", "mean"), mode="auto"),
    )
    assert_frame_equal(steplog.runs(remote, runs=["run2", ids[0]]), steplog.runs(local, runs=["run2", ids[0]]))
    assert_frame_equal(steplog.compare(root=remote), steplog.compare(root=local))
    assert_frame_equal(
        steplog.compare(["run1", "run3"], ["val_loss"], root=remote, figures=("best", "last")),
        steplog.compare(["run1", "run3"], ["val_loss"], root=local, figures=("best", "last")),
    )
    for metric, mode in (("loss", "min"), ("val_loss", "max"), ("loss", "auto")):
        assert steplog.best(metric, mode, root=remote) == steplog.best(metric, mode, root=local)
    with pytest.raises(ValueError, match="did you mean 'val_loss'"):
        steplog.best("val_los", root=remote)
    with pytest.raises(ValueError, match="did you mean 'val_loss'"):
        steplog.compare(metrics=["val_los"], root=remote)


def test_scan_over_the_bucket_equals_the_local_one_and_pushes_projections_down(pushed):
    local, remote = pushed[:2]
    assert_frame_equal(steplog.scan(remote).collect(), steplog.scan(local).collect())
    query = steplog.scan(remote).filter(pl.col("name") == "run1").select("step", "loss")
    assert_frame_equal(
        query.collect(), steplog.scan(local).filter(pl.col("name") == "run1").select("step", "loss").collect()
    )
    plan = query.explain()
    assert "s3://" in plan and "metrics.parquet" in plan
    read, of = map(int, re.search(r"PROJECT (\d+)/(\d+) COLUMNS", plan).groups())
    assert read < of  # only the columns the query uses are fetched (ranged GETs), not whole files
    assert 'SELECTION: (col("name") == "run1")' in plan  # the filter reaches the scan: row groups skipped


def test_a_url_root_with_credentials_from_the_environment(pushed, env_url):
    local = pushed[0]
    assert_frame_equal(steplog.runs(env_url), steplog.runs(local))
    assert_frame_equal(steplog.history("run0", root=env_url), steplog.history("run0", root=local))
    with pytest.raises(steplog.store.RunNotFoundError, match=r"no run 'run9' in s3://.*did you mean"):
        steplog.history("run9", root=env_url)
    with pytest.raises(steplog.store.RunNotFoundError, match="no run '20990101-000000-000-abcdef' in s3://"):
        steplog.history("20990101-000000-000-abcdef", root=env_url)  # the shape of an id, but no such run
    with pytest.raises(steplog.store.AmbiguousRunError, match="matches 4 runs"):
        steplog.summary(pushed[2][0][:2], root=env_url)


def test_a_stale_or_corrupt_catalog_never_gives_a_wrong_answer(pushed):
    local, remote, ids, _, _ = pushed
    expected = steplog.runs(local, metrics="all")
    remote.put(catalog.CATALOG_FILE, b"PAR1 this is no parquet file")
    assert_frame_equal(steplog.runs(remote, metrics="all"), expected)
    catalog.rebuild(remote)
    with steplog.init(resume=ids[0], root=local) as again:  # a new best loss, compacted and pushed again,
        again.log({"loss": -1.0})
    steplog.compact(local, quiet=True)
    stale = remote.read(catalog.CATALOG_FILE)
    push(remote.url, root=local, storage_options=remote.options, quiet=True)
    remote.put(catalog.CATALOG_FILE, stale)  # ...while the catalog still holds the run as it was
    assert_frame_equal(steplog.runs(remote, metrics="all"), steplog.runs(local, metrics="all"))
    assert steplog.best("loss", root=remote)["value"] == -1.0


def test_a_live_run_is_read_from_its_part_objects_torn_tail_forgiven(root, bucket):  # noqa: F811
    url, options = bucket
    remote = storage.open_root(url, options)
    run = steplog.init(name="live", config={"lr": 0.5}, root=root)
    try:
        for step in range(4):
            run.log({"loss": 1.0 / (step + 1)})
        sync(url, root=root, storage_options=options)
        table = steplog.runs(remote, metrics="all")
        assert table.select("name", "status", "config.lr", "loss.best").rows() == [("live", "running", 0.5, 0.25)]
        assert_frame_equal(steplog.history("live", root=remote), steplog.history("live", root=root))
        sent = storage.read_parts(remote, run.id)
        torn = storage.part_name(run.id, "events.jsonl", len(sent), len(sent) + 10)
        remote.put(torn, b'{"s":4,"t"')  # a torn last line (sync itself never sends one)
        assert_frame_equal(steplog.history("live", root=remote), steplog.history("live", root=root))
        assert steplog.scan(remote).collect()["loss"].to_list() == [1.0, 0.5, 1 / 3, 0.25]
        remote.delete(torn)
    finally:
        run.finish()
    sync(url, root=root, storage_options=options)
    assert run_info("live", root=remote)["status"] == "finished"


def test_cli_commands_take_a_url_root(pushed, env_url, tmp_path, capsys):
    local, _, ids, _, _ = pushed
    assert main(["ls", "--root", env_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in listed] == ["run3", "run2", "run1", "run0"]
    assert main(["show", "run1", "--root", env_url]) == 0
    assert ids[1] in capsys.readouterr().out
    assert main(["compare", "run0", "run1", "--root", env_url, "--metrics", "loss"]) == 0
    assert "run1" in capsys.readouterr().out
    assert main(["best", "loss", "--root", env_url]) == 0
    assert "run3" in capsys.readouterr().out
    assert main(["export", "run2", "-o", str(tmp_path / "h.csv"), "--root", env_url]) == 0
    assert (tmp_path / "h.csv").read_text() == steplog.history("run2", root=local).write_csv()
    assert main(["plot", "run0", "run1", "--metric", "loss", "--root", env_url, "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["sql", "SELECT name FROM runs ORDER BY name", "--root", env_url, "--csv"]) == 0
    assert capsys.readouterr().out.split() == ["name", "run0", "run1", "run2", "run3"]
    assert main(["compact", "--root", env_url]) == 1  # a local-folder command names what reads buckets
    assert "is an object-store URL" in capsys.readouterr().err


def test_sql_over_the_bucket_covers_live_runs_as_a_local_root_does(pushed):
    from steplog.sql import sql, tables

    local, remote, _, url, options = pushed
    run = steplog.init(name="live", config={"lr": 0.5}, root=local)
    try:
        for step in range(3):
            run.log({"loss": 1.0 / (step + 1), "grad_norm": float(step)})  # a metric only the live run has
        sync(url, root=local, storage_options=options)
        sent = storage.read_parts(remote, run.id)
        remote.put(storage.part_name(run.id, "events.jsonl", len(sent), len(sent) + 9), b'{"s":3,"m')  # torn
        for query in (
            "SELECT run_id, name, rank, step, loss, val_loss, grad_norm FROM metrics ORDER BY run_id, step",
            "SELECT name, min(loss) AS best, count(*) AS n FROM metrics GROUP BY name ORDER BY name",
            "SELECT m.name, r.status, max(m.grad_norm) AS g FROM metrics m JOIN runs r USING (run_id) "
            "GROUP BY m.name, r.status ORDER BY m.name",
        ):
            there = sql(query, root=url, storage_options=options)
            assert_frame_equal(there, sql(query, root=local))
        live = sql("SELECT count(*) AS n FROM metrics WHERE name = 'live'", root=url, storage_options=options)
        assert live.item() == 3  # the torn last line left out
        schema = tables(url, storage_options=options)["metrics"].collect_schema()
        assert schema == tables(local)["metrics"].collect_schema()
    finally:
        run.finish()
