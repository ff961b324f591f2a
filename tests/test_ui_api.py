"""The dashboard's JSON API, over HTTP against a real server on a free port (urllib only)."""

from __future__ import annotations

import json
import math
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np
import pytest

import steplog
import steplog.ui
from steplog.downsample import downsample

HOSTILE = "<img src=x onerror=alert(1)>"


def get(server, path: str, **params):
    """(status, JSON body) of GET path?params; params may hold lists (repeated keys)."""
    url = server.url + path.lstrip("/") + ("?" + urlencode(params, doseq=True) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        assert exc.headers["Content-Type"] == "application/json"
        return exc.code, json.loads(exc.read())


@pytest.fixture
def server(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with steplog.ui.serve(root, port=0) as server:
        yield server


def test_runs_table_lists_every_run_newest_first_with_config_and_figures(root, server):
    for name, lr in (("first", 0.1), ("second", 0.01)):
        with steplog.init(name=name, config={"opt": {"lr": lr}}, root=root) as run:
            for step in range(5):
                run.log({"loss": 1.0 / (step + 1) + lr})
    status, body = get(server, "/api/runs")
    assert status == 200 and body["root"] == str(root)
    assert [r["name"] for r in body["runs"]] == ["second", "first"]
    row = body["runs"][0]
    assert (row["status"], row["steps"], row["last_step"], row["config"]) == ("finished", 5, 4, {"opt": {"lr": 0.01}})
    assert row["metrics"]["loss"] == {
        "last": pytest.approx(0.21),
        "min": pytest.approx(0.21),
        "max": pytest.approx(1.01),
    }


def test_compacted_and_live_runs_give_the_same_rows_and_series(root, server):
    with steplog.init(name="a", config={"lr": 0.1}, root=root) as run:
        for step in range(50):
            run.log({"loss": 50.0 - step, "acc": step / 50})
    before = get(server, "/api/runs")[1]["runs"][0]
    series_before = get(server, "/api/series", run="a", metric=["loss", "acc"], width=100)[1]["series"]
    steplog.compact(root, quiet=True)
    after = get(server, "/api/runs")[1]["runs"][0]
    series_after = get(server, "/api/series", run="a", metric=["loss", "acc"], width=100)[1]["series"]
    assert after["compacted"] and not before["compacted"]
    for key in ("id", "name", "status", "steps", "last_step", "config", "metrics"):
        assert after[key] == before[key], key
    assert series_after == series_before
    assert series_after["loss"]["y"] == [50.0 - s for s in range(50)] and series_after["loss"]["raw"]


def _spiky_run(root: Path, n: int = 20_000, nan_at: int | None = None) -> tuple[np.ndarray, str]:
    values = np.sin(np.arange(n) / 500.0)
    values[12_345] = 40.0  # one spike and one dip that a random sample would miss
    values[3_333] = -25.0
    if nan_at is not None:
        values[nan_at] = math.nan
    with steplog.init(name="long", root=root) as run:
        for step, v in enumerate(values):
            run.log({"loss": float(v)})
    return values, run.id


@pytest.mark.parametrize("compacted", [False, True])
def test_downsampling_keeps_each_buckets_extremes_and_zoom_gives_exact_values(root, server, compacted):
    values, run_id = _spiky_run(root)
    if compacted:
        steplog.compact(root, quiet=True)
    zoom = {"from": 12_300, "to": 12_400}
    zoomed_first = get(server, "/api/series", run=run_id, metric="loss", width=200, **zoom)[1]  # read: the range
    body = get(server, "/api/series", run=run_id, metric="loss", width=200)[1]["series"]["loss"]
    assert not body["raw"] and body["count"] == len(values)
    assert len(body["x"]) <= 4 * 200 and max(body["y"]) == 40.0 and min(body["y"]) == -25.0
    assert body["x"][0] == 0 and body["x"][-1] == len(values) - 1
    assert [values[int(x)] for x in body["x"]] == body["y"]  # real points only, at their own steps
    zoomed = get(server, "/api/series", run=run_id, metric="loss", width=200, **zoom)[1]  # from memory now
    assert zoomed == zoomed_first
    zoomed = zoomed["series"]["loss"]
    assert zoomed["raw"] and zoomed["x"] == list(range(12_299, 12_402))  # every point, one beyond each edge
    assert zoomed["y"] == values[12_299:12_402].tolist()


def test_nan_and_infinity_are_marked_not_dropped(root, server):
    with steplog.init(name="bad", root=root) as run:
        for v in (1.0, math.nan, 2.0, math.inf, -math.inf, 3.0):
            run.log({"loss": v})
    body = get(server, "/api/series", run="bad", metric="loss")[1]["series"]["loss"]
    assert body["y"] == [1.0, None, 2.0, None, None, 3.0]
    assert body["nonfinite"] == [[1.0, "nan"], [3.0, "inf"], [4.0, "-inf"]]


def test_downsample_keeps_every_buckets_min_and_max():
    rng = np.random.default_rng(0)
    for n, width in ((10_000, 37), (999, 10), (5, 1), (4_096, 512)):
        x, y = np.arange(n, dtype=float), rng.standard_normal(n)
        out = downsample(x, y, width)
        size = -(-n // width)
        if n <= 2 * width:
            assert out["raw"] and out["y"].tolist() == y.tolist()
            continue
        kept = set(out["x"].astype(int).tolist())
        for start in range(0, n, size):
            bucket = y[start : start + size]
            for i in (start, start + int(bucket.argmin()), start + int(bucket.argmax()), start + len(bucket) - 1):
                assert i in kept
        assert len(kept) <= 4 * -(-n // size)


def test_a_cursor_brings_only_the_new_points(root, server):
    run = steplog.init(name="live", root=root)
    for step in range(10):
        run.log({"loss": float(step)})
    run.flush()
    first = get(server, "/api/series", run="live", metric="loss")[1]
    assert first["status"] == "running" and first["series"]["loss"]["x"] == list(range(10))
    for step in range(10, 13):
        run.log({"loss": float(step), "acc": 0.5})
    run.flush()
    new = get(server, "/api/series", run="live", metric=["loss", "acc"], cursor=first["cursor"])[1]
    assert not new["reset"] and new["cursor"] > first["cursor"]
    assert new["series"]["loss"]["x"] == [10, 11, 12] and new["series"]["acc"]["y"] == [0.5, 0.5, 0.5]
    nothing = get(server, "/api/series", run="live", metric="loss", cursor=new["cursor"])[1]
    assert nothing["series"]["loss"]["x"] == [] and nothing["cursor"] == new["cursor"]
    run.finish()
    rows = get(server, "/api/runs")[1]["runs"]
    assert rows[0]["status"] == "finished" and rows[0]["steps"] == 13


def test_a_resume_that_rewinds_resets_older_cursors_and_is_marked(root, server):
    with steplog.init(name="r", root=root) as run:
        for step in range(10):
            run.log({"loss": 1.0})
    cursor = get(server, "/api/series", run="r", metric="loss")[1]["cursor"]
    with steplog.init(resume="r", root=root, start_step=5) as again:
        for step in range(5, 8):
            again.log({"loss": 2.0})
    body = get(server, "/api/series", run="r", metric="loss", cursor=cursor)[1]
    assert body["reset"] and body["marks"] == [{"kind": "resume", "segment": 1, "x": 5.0}]
    assert body["series"]["loss"]["y"] == [1.0] * 5 + [2.0] * 3  # the superseded steps 5..9 are gone


def test_a_killed_run_turns_crashed(root, server):
    import signal

    from conftest import python_subprocess

    writer = python_subprocess(
        "import sys, time, steplog\n"
        "run = steplog.init(name='doomed', root=sys.argv[1]); run.log({'loss': 1.0})\n"
        "print(run.id, flush=True); time.sleep(60)\n",
        str(root),
    )
    try:
        assert writer.stdout.readline().strip()
        assert get(server, "/api/runs")[1]["runs"][0]["status"] == "running"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert get(server, "/api/runs")[1]["runs"][0]["status"] == "crashed"


def test_trailing_nul_bytes_are_not_yet_written(root, server):
    run = steplog.init(name="mm", root=root)
    run.log({"loss": 1.0})
    run.finish()
    events = run.dir / "events.jsonl"
    data = events.read_bytes()
    events.write_bytes(data + b'{"s":7,"t":1.0,"w":1.0,"m":{"loss":9.0}}' + bytes(4096))
    body = get(server, "/api/series", run="mm", metric="loss")[1]
    assert body["series"]["loss"]["y"] == [1.0]
    events.write_bytes(data + b'{"s":7,"t":1.0,"w":1.0,"m":{"loss":9.0}}\n' + bytes(4096))
    again = get(server, "/api/series", run="mm", metric="loss", cursor=body["cursor"])[1]
    assert again["series"]["loss"]["y"] == [9.0]


@pytest.mark.parametrize("ref", ["../secret", "..", "/etc/passwd", "a/../../b", ".hidden", "x\\..\\y"])
def test_run_references_outside_the_root_are_refused(root, server, ref):
    steplog.init(name="ok", root=root).finish()
    status, body = get(server, "/api/series", run=ref, metric="loss")
    assert status == 400 and "not a path" in body["error"]


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/%2e%2e/api.py", "/../../etc/passwd", "/nope"])
def test_only_the_packaged_files_are_served(server, path):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.url.rstrip("/") + path)
    assert caught.value.code == 404 and json.loads(caught.value.read())["error"].startswith("no such page")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"metric": "loss"}, "run is required"),
        ({"run": "a"}, "metric is required"),
        ({"run": "a", "metric": "loss", "x": "epoch"}, "x must be one of step, wallclock, time"),
        ({"run": "a", "metric": "loss", "width": "wide"}, "width must be a whole number"),
        ({"run": "a", "metric": "loss", "width": "0"}, "width must be a whole number"),
        ({"run": "a", "metric": "loss", "cursor": "-1"}, "cursor must be a whole number"),
        ({"run": "a", "metric": "loss", "from": "nan"}, "from must be a finite number"),
        ({"run": "a", "metric": "loss", "from": "5", "to": "1"}, "from (5.0) must not be greater than to (1.0)"),
        ({"run": ["a", "b"], "metric": "loss"}, "run was given 2 times"),
    ],
)
def test_malformed_parameters_get_400_naming_the_parameter(root, server, params, message):
    steplog.init(name="a", root=root).finish()
    status, body = get(server, "/api/series", **params)
    assert status == 400 and message in body["error"]


def test_unknown_runs_and_endpoints_get_404_and_writes_405(root, server):
    steplog.init(name="a", root=root).finish()
    assert get(server, "/api/series", run="nope", metric="loss")[0] == 404
    status, body = get(server, "/api/run", run="nope")
    assert status == 404 and "no run 'nope'" in body["error"]
    assert get(server, "/api/delete")[0] == 404
    request = urllib.request.Request(server.url + "api/runs", method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 405 and "read-only" in json.loads(caught.value.read())["error"]


def test_a_server_error_is_json_500_not_a_traceback_page(root, server):
    steplog.init(name="a", root=root).finish()
    broken = root / "20260101-000000-000-abcdef"
    (broken / "events.jsonl").mkdir(parents=True)  # a directory where a file should be
    assert get(server, "/api/runs")[0] == 200  # the table skips it
    status, body = get(server, "/api/series", run=broken.name, metric="loss")
    assert status == 500 and body["error"].startswith("internal error: IsADirectoryError")


def test_run_page_has_config_meta_segments_and_summary(root, server):
    with steplog.init(name=HOSTILE, config={"model": {"d": 8}}, root=root) as run:
        run.log({"loss": 2.0})
    status, info = get(server, "/api/run", run=run.id)
    assert status == 200 and info["name"] == HOSTILE and info["config"] == {"model": {"d": 8}}
    assert info["meta"]["python"] and info["segments"][0]["status"] == "finished"
    assert info["summary"]["loss"]["last"] == 2.0 and isinstance(info["start_time"], float)
    assert get(server, "/api/run", run=quote(HOSTILE, safe=""))[0] in (400, 404)


def test_serve_refuses_a_port_in_use_and_warns_for_other_hosts(root, capsys):
    root.mkdir(parents=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is in use"):
            steplog.ui.serve(root, port=port)
    with steplog.ui.serve(root, host="0.0.0.0", port=0):
        assert "anyone who can reach port 0 can read every run" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="no folder"):
        steplog.ui.serve(root / "missing", port=0)


def test_a_local_root_is_served_alike_as_a_folder_a_file_url_or_an_opened_local_storage(root, server):
    from steplog.storage import open_root

    with steplog.init(name="a", root=root) as run:
        run.log({"loss": 1.0})
    expected = get(server, "/api/runs")[1]
    assert [r["id"] for r in expected["runs"]] == [run.id]
    for given in (f"file://{root}", open_root(root), open_root(f"file://{root}")):
        with steplog.ui.serve(given, port=0) as other:
            assert get(other, "/api/runs")[1] == expected, given
    with pytest.raises(FileNotFoundError, match=f"no folder {root / 'missing'}"):
        steplog.ui.serve(open_root(f"file://{root}/missing"), port=0)


def test_command_serves_until_stopped_and_reports_a_missing_root(root, capsys):
    import argparse
    import threading

    from steplog.ui import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args(["--root", str(root / "missing")])) == 2
    assert "no folder" in capsys.readouterr().err
    root.mkdir(parents=True)
    stop = threading.Event()
    stop.set()
    assert command.run(parser.parse_args(["--root", str(root), "--port", "0"]), stop=stop) == 0
    assert "serving" in capsys.readouterr().out


def test_precomputed_levels_answer_the_whole_run_with_every_buckets_extremes(root, server):
    from steplog.levels import read_level, write_levels

    values, run_id = _spiky_run(root, n=60_000, nan_at=40_000)
    steplog.compact(root, quiet=True)  # the spiky run, compacted, then its levels
    run_dir = root / run_id
    with pytest.raises(FileNotFoundError):
        write_levels(root / "nope")
    write_levels(run_dir)
    level = read_level(run_dir, "loss")
    assert level is not None and len(level[0]) < len(values) / 50
    body = get(server, "/api/series", run=run_id, metric="loss", width=200)[1]["series"]["loss"]
    assert not body["raw"] and body["count"] == len(values) and len(body["x"]) <= 4 * 200
    assert max(body["y"]) == 40.0 and min(y for y in body["y"] if y is not None) == -25.0
    assert all(y == values[int(x)] for x, y in zip(body["x"], body["y"]) if y is not None)  # real points
    assert body["nonfinite"] == [[40_000.0, "nan"]]
    zoomed = get(server, "/api/series", run=run_id, metric="loss", width=200, **{"from": 100, "to": 200})[1]
    assert zoomed["series"]["loss"]["raw"]  # zoomed in: the raw points, not the level
    with steplog.init(resume=run_id, root=root) as again:
        again.log({"loss": 0.0})
    steplog.compact(root, quiet=True)
    assert read_level(run_dir, "loss") is None  # compacted again: the levels are stale, ignored


_RANK_WRITER = """
import os, sys, steplog
root, rank = sys.argv[1], int(sys.argv[2])
run = steplog.init(name="ddp", root=root, rank=rank, world_size=2, run_id="job-7", config={"lr": 0.1})
for step in range(40 if rank == 0 else 25):
    run.log({"loss": 100.0 * rank + step})
run.flush()
if rank == 1:
    os._exit(3)  # rank 1 dies without finishing
run.finish()
"""


def two_rank_run(root: Path) -> None:
    """A run of two real processes (ranks 0 and 1 of one job): rank 0 finishes 40 steps, rank 1 dies
    after 25 (loss = 100 * rank + step)."""
    from conftest import python_subprocess

    root.mkdir(parents=True, exist_ok=True)
    for rank in (0, 1):
        proc = python_subprocess(_RANK_WRITER, str(root), str(rank))
        assert proc.wait(timeout=60) == (3 if rank else 0), proc.stderr.read() if proc.stderr else ""


@pytest.mark.parametrize("compacted", [False, True])
def test_a_run_of_two_ranks_lists_each_ranks_status_and_serves_each_ranks_series(root, server, compacted):
    two_rank_run(root)
    if compacted:
        steplog.compact(root, quiet=True)
    [row] = get(server, "/api/runs")[1]["runs"]
    assert (row["status"], row["world_size"], row["ranks"]) == ("crashed", 2, {"0": "finished", "1": "crashed"})
    rank0 = get(server, "/api/series", run="job-7", metric="loss")[1]
    rank1 = get(server, "/api/series", run="job-7", metric="loss", rank=1)[1]
    assert rank0["series"]["loss"]["y"] == [float(s) for s in range(40)] and rank0["rank"] == 0
    assert rank1["series"]["loss"]["y"] == [100.0 + s for s in range(25)] and rank1["rank"] == 1
    assert rank1["series"]["loss"]["y"] == steplog.history("job-7", root=root, rank=1)["loss"].to_list()
    page = get(server, "/api/run", run="job-7")[1]
    assert [(r["rank"], r["status"], r["steps"]) for r in page["ranks"]] == [(0, "finished", 40), (1, "crashed", 25)]
    assert page["crashed_ranks"] == [1]
    status, body = get(server, "/api/series", run="job-7", metric="loss", rank=5)  # a rank it does not have
    assert status == 404 and "rank 5" in body["error"] and "ranks: 0, 1" in body["error"]
    assert get(server, "/api/series", run="job-7", metric="loss", rank="one")[0] == 400


def test_the_runs_table_follows_runs_added_compacted_and_removed_between_polls(root, server):
    import shutil

    def names():
        return sorted(r["name"] + ("*" if r["compacted"] else "") for r in get(server, "/api/runs")[1]["runs"])

    with steplog.init(name="a", root=root) as a:
        a.log({"loss": 1.0})
    assert names() == ["a"]
    steplog.compact(root, quiet=True)
    assert names() == ["a*"]
    with steplog.init(name="b", root=root) as b:
        b.log({"loss": 1.0})
    assert names() == ["a*", "b"]
    shutil.rmtree(a.dir)
    assert names() == ["b"]
    steplog.compact(root, quiet=True)
    assert names() == ["b*"]


def test_a_live_rank_is_followed_through_its_own_cursor(root, server):
    ranks = [steplog.init(name="ddp", root=root, rank=r, world_size=2, run_id="job-9") for r in (0, 1)]
    try:
        for step in range(5):
            for run in ranks:
                run.log({"loss": 10.0 * run.rank + step})
        for run in ranks:
            run.flush()
        [row] = get(server, "/api/runs")[1]["runs"]
        assert (row["status"], row["ranks"]) == ("running", {"0": "running", "1": "running"})
        first = get(server, "/api/series", run="job-9", metric="loss", rank=1)[1]
        assert first["series"]["loss"]["y"] == [10.0, 11.0, 12.0, 13.0, 14.0] and first["status"] == "running"
        ranks[1].log({"loss": 15.0})
        ranks[1].flush()
        new = get(server, "/api/series", run="job-9", metric="loss", rank=1, cursor=first["cursor"])[1]
        assert new["series"]["loss"]["y"] == [15.0] and not new["reset"]
        assert get(server, "/api/series", run="job-9", metric="loss")[1]["series"]["loss"]["y"] == [0.0, 1, 2, 3, 4]
    finally:
        for run in ranks:
            run.finish()
    assert get(server, "/api/runs")[1]["runs"][0]["ranks"] == {"0": "finished", "1": "finished"}
