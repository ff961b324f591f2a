"""Object storage against a real local S3 server (moto's ThreadedMotoServer on 127.0.0.1): storage
errors, push (twice, killed midway), history read back with Polars, the catalog in the bucket."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import moto.server as moto_server  # the test extra: moto[server]
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import steplog
from steplog import catalog, storage
from steplog.push import push, push_each

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_region": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch):
    """A fresh bucket: (s3:// URL of a prefix in it, storage_options)."""
    import boto3  # comes with moto

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    name = f"steplog-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return f"s3://{name}/team/logs", {"aws_endpoint_url": s3_endpoint, **CREDENTIALS}


def run_objects(listing: dict[str, int]) -> list[str]:
    """The objects of a listing outside ``_catalog/`` (the catalog, its generation and push markers)."""
    return sorted(name for name in listing if not name.startswith("_catalog/"))


def make_runs(root: Path, count: int, steps: int = 5) -> list[str]:
    ids = []
    for i in range(count):
        with steplog.init(
            name=f"run{i}", config={"lr": 10.0 ** -(i % 3 + 2), "model": {"size": 64 * (1 + i % 2)}}, root=root
        ) as run:
            for step in range(steps):
                run.log({"loss": 1.0 / (step + 1 + i), "val_loss": float("nan") if step == 1 else 2.0 - step * 0.1})
        ids.append(run.id)
    steplog.compact(root, quiet=True)
    return ids


def test_history_read_back_from_the_bucket_equals_the_local_one(root, bucket):
    url, options = bucket
    ids = make_runs(root, 3)
    assert push(url, root=root, storage_options=options, quiet=True) == ids
    for run_id in ids:
        local = pl.read_parquet(root / run_id / "metrics.parquet")
        remote = pl.read_parquet(f"{url}/{run_id}/metrics.parquet", storage_options=options)
        assert_frame_equal(remote, local)  # values, dtypes, NaN where it was
        assert remote["val_loss"].is_nan().sum() == 1
    lazy = pl.scan_parquet(f"{url}/*/metrics.parquet", storage_options=options).select("run_id", "loss")
    assert_frame_equal(
        lazy.collect().sort("run_id", maintain_order=True),
        pl.concat([pl.read_parquet(root / r / "metrics.parquet", columns=["run_id", "loss"]) for r in ids]),
    )


def test_a_run_pushed_twice_is_stored_once(root, bucket):
    url, options = bucket
    ids = make_runs(root, 2)
    push(url, root=root, storage_options=options, quiet=True)
    remote = storage.open_root(url, options)
    before = remote.list()
    results = push_each(url, root=root, storage_options=options, quiet=True)
    assert [outcome for _, outcome, _ in results] == ["current", "current"]
    assert remote.list() == before
    assert run_objects(before) == sorted(f"{r}/{n}" for r in ids for n in ("metrics.parquet", "run.json"))
    assert catalog.CATALOG_FILE in before


def test_a_push_killed_midway_is_finished_by_running_it_again(root, bucket):
    url, options = bucket
    ids = make_runs(root, 12, steps=3)
    # A real push in another process, slowed between each run's Parquet file and its sidecar so the
    # kill lands mid-push; SIGKILL it once some objects are there.
    code = (
        f"import sys, time, steplog.push, steplog.storage as s\n"
        f"p = sys.modules['steplog.push']  # steplog.push is also the function\n"
        f"put = s.ObjectStorage.put\n"
        f"def slow(self, path, data):\n"
        f"    put(self, path, data); time.sleep(0.2 if path.endswith('.parquet') else 0)\n"
        f"s.ObjectStorage.put = slow; p.CONCURRENCY = 1\n"
        f"p.push({url!r}, root={str(root)!r}, storage_options={options!r}, quiet=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    remote = storage.open_root(url, options)
    try:
        while proc.poll() is None and len(remote.list()) < 5:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    partial = remote.list()
    assert catalog.CATALOG_FILE not in partial and 0 < len(partial) < 2 * len(ids)
    assert push(url, root=root, storage_options=options, quiet=True)  # sends what was missing
    complete = remote.list()
    assert run_objects(complete) == sorted(f"{r}/{n}" for r in ids for n in ("metrics.parquet", "run.json"))
    assert catalog.CATALOG_FILE in complete
    for run_id in ids:
        assert remote.read(f"{run_id}/run.json") == (root / run_id / "run.json").read_bytes()
        assert remote.read(f"{run_id}/metrics.parquet") == (root / run_id / "metrics.parquet").read_bytes()
    assert catalog.read(url, storage_options=options).table["run_id"].to_list() == ids


def test_the_catalog_in_the_bucket_lists_what_the_local_root_does(root, bucket):
    url, options = bucket
    make_runs(root, 4)
    push(url, root=root, storage_options=options, quiet=True)
    found = catalog.read(url, storage_options=options)
    assert found.from_catalog == 4 and found.from_sidecars == 0
    assert_frame_equal(found.table, catalog.read(root).table)


def test_push_never_deletes_local_files(root, bucket):
    url, options = bucket
    make_runs(root, 1)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    push(url, root=root, storage_options=options, quiet=True)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_a_live_run_is_not_pushed_but_compact_true_compacts_it_first(root, bucket):
    url, options = bucket
    steplog.init(name="done", root=root).finish()
    [(run_id, outcome, detail)] = push_each(url, root=root, storage_options=options, quiet=True)
    assert outcome == "skipped" and "compact" in detail
    assert push(url, root=root, storage_options=options, compact=True, quiet=True) == [run_id]


def test_an_unreachable_endpoint_fails_quickly_naming_the_url(root):
    make_runs(root, 1, steps=1)
    endpoint = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(storage.StorageError) as caught:
        push("s3://nowhere/logs", root=root, storage_options={"aws_endpoint_url": endpoint, **CREDENTIALS}, quiet=True)
    assert time.monotonic() - started < 10
    assert "s3://nowhere/logs" in str(caught.value) and endpoint in str(caught.value)
    assert "cannot be reached" in str(caught.value)


def test_a_missing_bucket_is_named(root, s3_endpoint):
    make_runs(root, 1, steps=1)
    with pytest.raises(storage.StorageError, match="bucket 'no-such-bucket' does not exist"):
        push(
            "s3://no-such-bucket/x",
            root=root,
            storage_options={"aws_endpoint_url": s3_endpoint, **CREDENTIALS},
            quiet=True,
        )


def test_missing_credentials_say_what_to_set(root, s3_endpoint, monkeypatch):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    make_runs(root, 1, steps=1)
    with pytest.raises(storage.StorageError, match="no AWS credentials: set AWS_ACCESS_KEY_ID"):
        push("s3://some-bucket/x", root=root, quiet=True)


def test_credentials_and_endpoint_from_the_environment(root, bucket, monkeypatch):
    url, options = bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["aws_endpoint_url"])  # plain http: allowed by itself
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    ids = make_runs(root, 1, steps=2)
    assert push(url, root=root, quiet=True) == ids
    remote = storage.open_root(url)
    assert pl.read_parquet(remote.uri(f"{ids[0]}/metrics.parquet"), storage_options=remote.polars_options()).height == 2


def test_a_url_root_without_obstore_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "obstore", None)  # as if the cloud extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'steplog\[cloud\]'"):
        storage.open_root("s3://bucket/logs")


def test_storage_reads_ranges_and_puts_whole_objects(bucket):
    url, options = bucket
    remote = storage.open_root(url, options)
    remote.put("a/b.bin", b"0123456789")
    assert remote.read("a/b.bin", 2, 5) == b"234" and remote.read("a/b.bin", 7) == b"789"
    assert remote.list("a") == {"a/b.bin": 10}
    remote.delete("a/b.bin")
    remote.delete("a/b.bin")  # already gone: fine
    with pytest.raises(FileNotFoundError, match=f"{url}/a/b.bin does not exist"):
        remote.read("a/b.bin")


def test_a_local_put_writes_each_time_through_its_own_temporary_and_clears_killed_writers_leftovers(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    local = storage.open_root(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".b.bin.999999999-0badcafe.steplog-tmp").write_bytes(b"half")  # a killed writer's
    payloads = [bytes([i]) * 100_000 for i in range(8)]
    with ThreadPoolExecutor(8) as pool:  # threads of one process writing one path: no shared temporary
        stamps = list(pool.map(lambda data: local.put("a/b.bin", data), payloads * 4))
    assert all(stamp.startswith("100000:") for stamp in stamps) and local.read("a/b.bin") in payloads
    assert local.put("a/b.bin", b"xyz") == local.head("a/b.bin") and local.read("a/b.bin") == b"xyz"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.bin"]


def test_sql_over_the_bucket_answers_as_the_local_root_does(root, bucket):
    from steplog.sql import sql

    url, options = bucket
    make_runs(root, 4)
    push(url, root=root, storage_options=options, quiet=True)
    query = (
        'SELECT r."config.model.size" AS size, r."config.lr" AS lr, min(m.val_loss) AS best, count(*) AS n '
        "FROM metrics m JOIN runs r USING (run_id) GROUP BY size, lr ORDER BY size, lr"
    )
    remote = sql(query, root=url, storage_options=options)
    assert remote.height == 4 and remote.equals(sql(query, root=root))
    names = sql("SELECT DISTINCT name FROM metrics ORDER BY name", root=url, storage_options=options)
    assert names["name"].to_list() == ["run0", "run1", "run2", "run3"]


def test_sync_sends_only_new_complete_lines_and_a_restart_carries_on(root, bucket):
    from steplog.reader import parse_events, read_events
    from steplog.sync import sync

    url, options = bucket
    run = steplog.init(name="live", root=root)
    for step in range(3):
        run.log({"loss": float(step)})
    events = run.dir / "events.jsonl"
    try:
        [(run_id, outcome, _)] = sync(url, root=root, storage_options=options)
        assert (run_id, outcome) == (run.id, "synced")
        assert sync(url, root=root, storage_options=options)[0][1] == "current"  # nothing new: no new object
        for step in range(3, 6):
            run.log({"loss": float("nan") if step == 4 else float(step)})
        sync(url, root=root, storage_options=options, every=0.01, passes=2)  # a second process would do the same
        remote = storage.open_root(url, options)
        parts = storage.parts_of(remote.list(), run.id)["events.jsonl"]
        assert len(parts) == 2 and parts[0][1] == parts[1][0]  # contiguous, nothing sent twice
        written = events.read_bytes()
        assert storage.read_parts(remote, run.id) == written[: written.rfind(b"\n") + 1]  # no NUL tail of a mapping
        remote_rows = parse_events(storage.read_parts(remote, run.id), events).rows
        assert_frame_equal(remote_rows, read_events(events).rows)
        found = catalog.read(url, storage_options=options)
        assert found.live == [run.id] and found.table.height == 0
    finally:
        run.finish()


def test_sync_never_sends_a_torn_line_or_a_nul_tail(root, bucket):
    from steplog.sync import sync

    url, options = bucket
    run = steplog.init(name="mapped", root=root)
    run.log({"loss": 1.0})
    run.finish()
    events = run.dir / "events.jsonl"
    complete = events.read_bytes()
    with open(events, "ab") as f:  # what a memory-mapped writer's file and a torn append leave behind
        f.write(b'{"step": 1, "loss"')
    sync(url, root=root, storage_options=options)
    with open(events, "ab") as f:
        f.write(b"\0" * 4096)
    sync(url, root=root, storage_options=options)
    assert storage.read_parts(storage.open_root(url, options), run.id) == complete


def test_sync_pushes_the_compacted_form_and_removes_the_parts(root, bucket):
    from steplog.sync import sync

    url, options = bucket
    with steplog.init(name="soon-compacted", root=root) as run:
        run.log({"loss": 1.0})
    sync(url, root=root, storage_options=options)
    steplog.compact(root, quiet=True)
    [(_, outcome, detail)] = sync(url, root=root, storage_options=options)
    assert outcome == "compacted" and "1 parts removed" in detail
    remote = storage.open_root(url, options)
    assert run_objects(remote.list()) == [f"{run.id}/metrics.parquet", f"{run.id}/run.json"]
    assert sync(url, root=root, storage_options=options) == []


def test_push_to_a_folder_compares_sidecar_bytes(root, tmp_path):
    ids = make_runs(root, 2)
    remote = tmp_path / "remote"
    assert push(remote, root=root, quiet=True) == ids
    assert [outcome for _, outcome, _ in push_each(remote, root=root, quiet=True)] == ["current", "current"]
    (remote / ids[0] / "run.json").write_bytes(b"{}")  # a different sidecar there: sent again
    assert push(remote, root=root, quiet=True) == [ids[0]]
    assert (remote / ids[0] / "run.json").read_bytes() == (root / ids[0] / "run.json").read_bytes()
    assert catalog.read(remote).from_catalog == 2


def test_a_listing_split_into_parallel_ranges_finds_every_file(root, bucket):
    url, options = bucket
    ids = make_runs(root, 6, steps=1)
    push(url, root=root, storage_options=options, quiet=True)
    remote = storage.open_root(url, options)
    whole = remote.run_files()
    assert sorted(whole) == ids
    for splits in ([ids[2]], [ids[0], ids[3], ids[5]], [ids[1][:-1] + "0", "0", "zzz"], ids):
        assert remote.run_files(splits=splits) == whole
