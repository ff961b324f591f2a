"""The dashboard of an object-store root, against a real local S3 server (moto's ThreadedMotoServer
on 127.0.0.1): compacted runs pushed there, a live run synced there as part objects, over HTTP and in
headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cloud import bucket, s3_endpoint  # noqa: F401  (fixtures: a local S3 server and a fresh bucket)
from test_ui_api import get  # GET through the server's JSON API

import steplog
import steplog.ui
from steplog import storage
from steplog.push import push
from steplog.sync import sync


def compacted_runs(root: Path) -> list[str]:
    ids = []
    for i, lr in enumerate((0.1, 0.01)):
        with steplog.init(name=f"lr{lr}", config={"lr": lr, "model": {"depth": 4}}, root=root) as run:
            for step in range(3_000):
                run.log({"loss": 10.0 * (i + 1) - step * 0.001, "acc": step / 3_000})
        ids.append(run.id)
    steplog.compact(root, quiet=True)
    return ids


@pytest.fixture
def served(root, bucket):  # noqa: F811
    """(local root, bucket URL, storage_options, a server of the bucket)."""
    url, options = bucket
    root.mkdir(parents=True, exist_ok=True)
    with steplog.ui.serve(storage.open_root(url, options), port=0) as server:
        yield root, url, options, server


def test_a_bucket_serves_compacted_runs_as_the_local_root_does(served):
    root, url, options, server = served
    ids = compacted_runs(root)
    push(url, root=root, storage_options=options, quiet=True)
    with steplog.ui.serve(root, port=0) as local:
        status, body = get(server, "/api/runs")
        assert status == 200 and body["root"] == url
        assert body["runs"] == get(local, "/api/runs")[1]["runs"]
        assert [r["name"] for r in body["runs"]] == ["lr0.01", "lr0.1"]
        for params in ({}, {"from": 1_000, "to": 1_100}, {"x": "wallclock"}):
            remote = get(server, "/api/series", run=ids[0], metric=["loss", "acc"], width=300, **params)[1]
            assert remote == get(local, "/api/series", run=ids[0], metric=["loss", "acc"], width=300, **params)[1]
        zoomed = get(server, "/api/series", run=ids[0], metric="loss", width=300, **{"from": 1_000, "to": 1_100})[1]
        assert zoomed["series"]["loss"]["raw"] and zoomed["series"]["loss"]["x"] == list(range(999, 1_102))
        page = get(server, "/api/run", run="lr0.1")[1]
        assert page["run_id"] == ids[0] and page["config"] == {"lr": 0.1, "model": {"depth": 4}}
    assert get(server, "/api/series", run="../" + ids[0], metric="loss")[0] == 400
    assert get(server, "/api/series", run="nope", metric="loss")[0] == 404


def test_a_pushed_run_of_two_ranks_serves_each_rank(served):
    from test_ui_api import two_rank_run

    root, url, options, server = served
    two_rank_run(root)
    steplog.compact(root, quiet=True)
    push(url, root=root, storage_options=options, quiet=True)
    [row] = get(server, "/api/runs")[1]["runs"]
    assert (row["status"], row["world_size"], row["ranks"]) == ("crashed", 2, {"0": "finished", "1": "crashed"})
    rank1 = get(server, "/api/series", run="job-7", metric="loss", rank=1)[1]["series"]["loss"]
    assert rank1["y"] == [100.0 + s for s in range(25)]
    assert get(server, "/api/series", run="job-7", metric="loss", rank=2)[0] == 404


def test_a_synced_live_run_is_read_incrementally_from_its_parts(served):
    root, url, options, server = served
    run = steplog.init(name="live", config={"lr": 0.3}, root=root)
    try:
        for step in range(10):
            run.log({"loss": float(step)})
        run.flush()
        sync(url, root=root, storage_options=options)
        [row] = get(server, "/api/runs")[1]["runs"]
        assert (row["id"], row["status"], row["steps"], row["compacted"]) == (run.id, "running", 10, False)
        first = get(server, "/api/series", run=run.id, metric="loss")[1]
        assert first["series"]["loss"]["y"] == [float(s) for s in range(10)] and first["cursor"] > 0
        remote = storage.open_root(url, options)
        [(_, _, old_part)] = storage.parts_of(remote.list(), run.id)["events.jsonl"]
        remote.put(old_part, b"garbage that a reader re-reading every part would choke on\n")
        for step in range(10, 14):
            run.log({"loss": float(step)})
        run.flush()
        sync(url, root=root, storage_options=options)
        new = get(server, "/api/series", run=run.id, metric="loss", cursor=first["cursor"])[1]
        assert new["series"]["loss"]["x"] == [10, 11, 12, 13] and not new["reset"]  # only the new part was read
        assert get(server, "/api/series", run=run.id, metric="loss")[1]["series"]["loss"]["x"] == list(range(14))
    finally:
        run.finish()
    sync(url, root=root, storage_options=options)
    assert get(server, "/api/series", run=run.id, metric="loss", cursor=new["cursor"])[1]["status"] == "finished"
    steplog.compact(root, quiet=True)
    sync(url, root=root, storage_options=options)  # the compacted form replaces the parts
    after = get(server, "/api/series", run=run.id, metric="loss", cursor=new["cursor"])[1]
    assert after["reset"] and after["cursor"] is None and after["series"]["loss"]["x"] == list(range(14))


def test_a_synced_live_run_of_two_ranks_serves_rank_1_with_the_runs_status(served):
    root, url, options, server = served
    runs = [steplog.init(name="ddp", root=root, rank=rank, world_size=2, run_id="job-8") for rank in (0, 1)]
    try:
        for rank, run in enumerate(runs):
            for step in range(5):
                run.log({"loss": 100.0 * rank + step})
            run.flush()
        sync(url, root=root, storage_options=options)
        rank1 = get(server, "/api/series", run="job-8", metric="loss", rank=1)[1]
        assert rank1["series"]["loss"]["y"] == [100.0 + s for s in range(5)] and rank1["status"] == "running"
    finally:
        for run in reversed(runs):
            run.finish()
    sync(url, root=root, storage_options=options)
    assert get(server, "/api/series", run="job-8", metric="loss", rank=1)[1]["status"] == "finished"


def test_a_bucket_that_cannot_be_read_is_refused_at_start(s3_endpoint):  # noqa: F811
    options = {"aws_endpoint_url": s3_endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    with pytest.raises(OSError, match="no-such-bucket"):
        steplog.ui.serve("s3://no-such-bucket/logs", port=0, storage_options={**options, "aws_region": "us-east-1"})


def test_the_page_of_a_bucket_in_headless_chromium(served):
    from playwright import sync_api

    from steplog.ui.browser import CHROMIUM_ARGS, chromium_path

    root, url, options, server = served
    ids = compacted_runs(root)
    push(url, root=root, storage_options=options, quiet=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)  # for evaluate
        page.goto(server.url + "?metrics=loss&smooth=0")
        page.wait_for_function("window.steplog && window.steplog.ready === true")
        assert page.locator("#root").inner_text() == url
        assert page.locator("#runs-body td.name").all_inner_texts() == ["lr0.01", "lr0.1"]
        data = page.evaluate("window.steplog.data('loss').map(a => Array.from(a))")
        assert len(data) == 3 and len(data[0]) <= 4 * 1000 and max(v for v in data[2] if v is not None) == 10.0
        browser.close()
    assert ids
