"""The bucket catalog's journal (steplog.journal) against a real local S3 server: runs(url) reads
the catalog without a full listing, and still never gives a wrong answer when the catalog is stale
(a push killed before its catalog update, a catalog written back from an old copy, two writers
racing, runs added or removed by other tools) or damaged."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_cloud import bucket, make_runs, s3_endpoint  # noqa: F401  (fixtures)

import steplog
from steplog import catalog, journal, storage
from steplog.push import push


@pytest.fixture
def pushed(root, bucket):  # noqa: F811
    """Four compacted runs pushed: (local root, opened bucket root, run ids)."""
    url, options = bucket
    ids = make_runs(root, 4)
    push(url, root=root, storage_options=options, quiet=True)
    return root, storage.open_root(url, options), ids


def new_best(local, run_id: str, loss: float) -> None:
    """Resume a run, log a new best loss, compact it again: its sidecar changes."""
    with steplog.init(resume=run_id, root=local) as again:
        again.log({"loss": loss})
    steplog.compact(local, quiet=True)


def same_as_local(remote, local) -> None:
    assert_frame_equal(steplog.runs(remote, metrics="all"), steplog.runs(local, metrics="all"))
    assert_frame_equal(catalog.read(remote).table, catalog.read(remote, full=True).table)


def test_a_current_catalog_is_read_without_a_full_listing(pushed):
    local, remote, ids = pushed
    table, others, from_catalog = journal.fast_read(remote)
    assert sorted(table["run_id"].to_list()) == ids and others == [] and from_catalog == 4
    assert journal.journal(remote).pending == []  # the push's marker went with its commit
    found = catalog.read(remote)
    assert (found.from_catalog, found.from_sidecars) == (4, 0)
    same_as_local(remote, local)


def test_a_push_killed_between_its_sidecars_and_the_catalog_leaves_a_marker_readers_follow(pushed, monkeypatch):
    local, remote, ids = pushed
    new_best(local, ids[1], -5.0)
    with monkeypatch.context() as patch:  # killed after the uploads, before the catalog update

        def killed(*args, **kwargs):
            raise KeyboardInterrupt

        patch.setattr(catalog, "add_sidecars", killed)
        with pytest.raises(KeyboardInterrupt):
            push(remote.url, root=local, storage_options=remote.options, quiet=True)
    marks = journal.journal(remote)
    assert len(marks.pending) == 1
    assert journal.fast_read(remote) is not None  # still the fast path: the marker names the run to check
    found = catalog.read(remote)
    assert (found.from_catalog, found.from_sidecars) == (3, 1)
    same_as_local(remote, local)
    assert steplog.best("loss", root=remote)["value"] == -5.0
    assert push(remote.url, root=local, storage_options=remote.options, quiet=True) == []  # all there
    assert journal.remove_stale_markers(remote, marks.pending) == []  # a day must pass first


def test_a_catalog_written_back_from_an_old_copy_is_not_trusted(pushed):
    local, remote, ids = pushed
    old = remote.read(catalog.CATALOG_FILE)
    new_best(local, ids[0], -1.0)
    push(remote.url, root=local, storage_options=remote.options, quiet=True)
    remote.put(catalog.CATALOG_FILE, old)  # its generation is below the highest marker
    assert journal.fast_read(remote) is None
    same_as_local(remote, local)
    catalog.rebuild(remote)
    assert journal.fast_read(remote) is not None
    same_as_local(remote, local)


def test_a_damaged_catalog_or_marker_falls_back_to_the_full_listing(pushed):
    local, remote, _ = pushed
    remote.put(journal.PENDING + "20260101T000000-damaged.json", b"not json")
    assert journal.fast_read(remote) is None
    same_as_local(remote, local)
    remote.delete(journal.PENDING + "20260101T000000-damaged.json")
    remote.put(catalog.CATALOG_FILE, b"PAR1 no parquet file")
    assert journal.fast_read(remote) is None
    same_as_local(remote, local)
    push(remote.url, root=local, storage_options=remote.options, quiet=True)  # nothing to send: no write
    new_best(local, next(iter(catalog.read(local).table["run_id"])), -2.0)
    push(remote.url, root=local, storage_options=remote.options, quiet=True)  # a damaged base is completed first
    assert journal.fast_read(remote) is not None
    same_as_local(remote, local)


def test_runs_added_or_removed_by_other_tools_are_seen(pushed, tmp_path):
    local, remote, ids = pushed
    extra = tmp_path / "extra"
    [added] = make_runs(extra, 1)
    for name in ("metrics.parquet", "run.json"):  # copied in by hand: no marker, no catalog row
        remote.put(f"{added}/{name}", (extra / added / name).read_bytes())
    for name in ("metrics.parquet", "run.json"):
        remote.delete(f"{ids[2]}/{name}")
    [half] = make_runs(tmp_path / "half", 1)  # a push killed between a new run's Parquet file and its sidecar
    remote.put(f"{half}/metrics.parquet", (tmp_path / "half" / half / "metrics.parquet").read_bytes())
    table, others, _ = journal.fast_read(remote)
    assert sorted(table["run_id"].to_list()) == sorted([*ids[:2], ids[3], added]) and others == [half]
    assert_frame_equal(catalog.read(remote).table, catalog.read(remote, full=True).table)
    listed = steplog.runs(remote)["run_id"].to_list()
    assert sorted(listed) == sorted([*ids[:2], ids[3], added])  # the half-pushed run is no run yet


def test_two_writers_racing_never_lose_a_row(pushed, tmp_path):
    """A commit whose catalog changed between its read and its write retries (If-Match), so the
    other writer's rows survive; and a writer committing an older sidecar than the one there
    (its HEAD, made after reading the catalog, says so) writes the newer one's row."""
    local, remote, ids = pushed
    extra = tmp_path / "extra"
    [other] = make_runs(extra, 1)
    put_if = type(remote).put_if
    raced = []

    def racing(self, path, data, stamp):
        if path == catalog.CATALOG_FILE and not raced:  # another writer commits in between
            raced.append(True)
            push(remote.url, root=extra, storage_options=remote.options, quiet=True)
        return put_if(self, path, data, stamp)

    before = remote.read(f"{ids[0]}/run.json")
    before_stamp = remote.head(f"{ids[0]}/run.json")
    new_best(local, ids[0], -3.0)
    type(remote).put_if = racing
    try:
        push(remote.url, root=local, storage_options=remote.options, quiet=True)
    finally:
        type(remote).put_if = put_if
    assert raced and set(catalog.read(remote).table["run_id"]) == {*ids, other}
    assert journal.fast_read(remote)[2] == 5  # every row from the catalog
    catalog.add_sidecars(remote, {ids[0]: (before, before_stamp)})  # a slow writer's older sidecar
    assert steplog.best("loss", root=remote)["value"] == -3.0
    assert catalog.read(remote).from_catalog == 5


def test_live_runs_beside_a_current_catalog(pushed):
    from steplog.sync import sync

    local, remote, _ = pushed
    run = steplog.init(name="live", root=local)
    try:
        run.log({"loss": 0.125})
        sync(remote.url, root=local, storage_options=remote.options)
        table, others, _ = journal.fast_read(remote)
        assert others == [run.id] and run.id not in table["run_id"].to_list()
        found = steplog.runs(remote, metrics="all").filter(pl.col("name") == "live")
        assert found.select("status", "loss.best").rows() == [("running", 0.125)]
    finally:
        run.finish()
    steplog.compact(local, quiet=True)
    sync(remote.url, root=local, storage_options=remote.options)  # compacted form pushed, parts removed
    assert journal.fast_read(remote)[1] == []
    same_as_local(remote, local)


def test_a_marker_naming_many_catalogued_runs_means_a_full_listing_and_old_markers_go(pushed, monkeypatch):
    local, remote, ids = pushed
    old = journal.PENDING + "20200101T000000-killed.json"  # a push killed long ago
    remote.put(old, b'{"runs": ["%s", "%s"]}' % (ids[0].encode(), ids[1].encode()))
    assert journal.fast_read(remote)[2] == 4  # two HEADs, both current
    monkeypatch.setattr(journal, "RECHECK_LIMIT", 1)
    assert journal.fast_read(remote) is None  # more HEADs than a listing would cost
    same_as_local(remote, local)
    new_best(local, ids[3], -4.0)
    push(remote.url, root=local, storage_options=remote.options, quiet=True)  # its commit removes the old marker
    assert journal.journal(remote).pending == [] and journal.fast_read(remote) is not None
    same_as_local(remote, local)
