"""Run references, the writer lock and statuses."""

from __future__ import annotations

import os
import subprocess
import threading

import orjson
import polars as pl
import pytest
from conftest import make_crashed_run, python_subprocess
from hypothesis import given
from hypothesis import strategies as st

import steplog


def test_resolve_by_id_prefix_and_name(root):
    first = steplog.init(name="same", root=root)
    first.log({"v": 1.0})
    first.finish()
    second = steplog.init(name="same", root=root)
    second.log({"v": 2.0})
    second.finish()
    assert steplog.history(first.id, root=root)["v"].to_list() == [1.0]
    assert steplog.history(first.id[:-2], root=root)["v"].to_list() == [1.0]
    assert steplog.history("same", root=root)["v"].to_list() == [2.0]  # a name means its latest run


def test_unknown_and_ambiguous_references(root):
    for _ in range(2):
        steplog.init(name="baseline", root=root).finish()
    with pytest.raises(steplog.RunNotFoundError, match="did you mean 'baseline'"):
        steplog.history("baselin", root=root)
    with pytest.raises(steplog.AmbiguousRunError, match="matches 2 runs"):
        steplog.history("20", root=root)
    with pytest.raises(steplog.RunNotFoundError, match="does not exist"):
        steplog.history("x", root=root / "nope")


def test_runs_on_a_missing_root_is_empty(root):
    table = steplog.runs(root=root)
    assert table.height == 0 and "status" in table.columns


def test_runs_table(root):
    with steplog.init(name="a", config={"lr": 1e-3, "model": {"layers": 4}}, root=root) as run:
        for step in range(3):
            run.log({"loss": 1.0})
    steplog.init(name="b", config={"lr": 1, "optimizer": "sgd"}, root=root).finish(notes="note")
    table = steplog.runs(root=root)
    assert table["name"].to_list() == ["a", "b"]
    assert table["num_steps"].to_list() == [3, 0]
    assert table["last_step"].to_list() == [2, None]
    assert table["config.lr"].to_list() == [1e-3, 1.0]
    assert table["config.model.layers"].to_list() == [4, None]
    assert table["config.optimizer"].to_list() == [None, "sgd"]
    assert table["notes"].to_list() == [None, "note"]
    assert (table["end_time"] >= table["start_time"]).all()
    assert (table["duration_s"] >= 0).all()


HOLDER = """
import sys, steplog
run = steplog.init(name="held", root=sys.argv[1])
print(run.id, flush=True)
sys.stdin.read()
"""


def test_two_writers_on_one_run(root):
    import subprocess

    proc = python_subprocess(HOLDER, str(root), stdin=subprocess.PIPE)
    run_id = proc.stdout.readline().strip()
    try:
        with pytest.raises(steplog.RunLockedError, match=f"being written by pid {proc.pid}"):
            steplog.init(resume=run_id, root=root)
        assert steplog.runs(root=root)["status"].to_list() == ["running"]
    finally:
        proc.kill()
        proc.wait()
    assert steplog.runs(root=root)["status"].to_list() == ["crashed"]
    run = steplog.init(resume=run_id, root=root)  # the dead writer's lock is stale: taken over
    run.finish()
    assert steplog.runs(root=root)["status"].to_list() == ["finished"]


def test_second_writer_in_the_same_process(root):
    run = steplog.init(name="x", root=root)
    with pytest.raises(steplog.RunLockedError, match="already open for writing in this process"):
        steplog.init(resume=run.id, root=root)
    run.finish()


def test_a_dead_writers_lock_is_stale_even_if_its_pid_lives_on(root):
    run_id = make_crashed_run(root, "x")
    # Its pid is reused by a live process (ours): the lock file names a live pid on this host, but
    # nobody holds the kernel lock any more.
    lock = root / run_id / "writer.lock"
    lock.write_bytes(orjson.dumps({**orjson.loads(lock.read_bytes()), "pid": os.getpid()}))
    assert orjson.loads(lock.read_bytes())["pid"] == os.getpid()
    assert steplog.runs(root=root)["status"].to_list() == ["crashed"]
    again = steplog.init(resume="x", root=root)
    again.finish()
    assert steplog.runs(root=root)["status"].to_list() == ["finished"]
    assert not lock.exists()


def test_two_processes_racing_for_a_stale_lock_never_both_get_it(root):
    make_crashed_run(root, "contested")
    racer = """
import sys, steplog
sys.stdin.readline()  # all start together
try:
    run = steplog.init(resume="contested", root=sys.argv[1])
except steplog.RunLockedError:
    print("locked", flush=True)
else:
    print("acquired", flush=True)
    sys.stdin.readline()  # hold the lock until every racer has tried, however slow it was to start
    run.finish()
"""
    racers = [python_subprocess(racer, str(root), stdin=subprocess.PIPE) for _ in range(4)]
    for proc in racers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outcomes = sorted(proc.stdout.readline().strip() for proc in racers)
    for proc in racers:
        try:
            proc.stdin.write("done\n")
            proc.stdin.close()
        except BrokenPipeError:  # a loser has exited already
            pass
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert outcomes == ["acquired", "locked", "locked", "locked"]
    assert steplog.runs(root=root)["status"].to_list() == ["finished"]


def test_lock_of_another_host_counts_as_live(root):
    run = steplog.init(name="x", root=root)
    run.finish()
    (run.dir / "writer.lock").write_bytes(orjson.dumps({"pid": 1, "host": "some-other-node", "time": 0.0}))
    with pytest.raises(steplog.RunLockedError, match="some-other-node"):
        steplog.init(resume="x", root=root)


@given(
    st.lists(st.text(alphabet="0123456789-abcdef", min_size=1, max_size=12), min_size=1, max_size=30),
    st.integers(min_value=1, max_value=14),
)
def test_unique_prefixes_are_unique_prefixes(ids, min_length):
    from steplog.store import unique_prefixes

    short = unique_prefixes(ids, min_length)
    assert set(short) == set(ids)
    for run_id, prefix in short.items():
        assert run_id.startswith(prefix) and len(prefix) >= min(min_length, len(run_id))
        others = [other for other in short if other != run_id and other.startswith(prefix)]
        assert not others or prefix == run_id  # unique, unless the whole id is a prefix of another


# --- run order ----------------------------------------------------------------------------------


@pytest.mark.parametrize("one_millisecond", [False, True])
def test_runs_created_in_a_tight_loop_keep_their_order(root, monkeypatch, one_millisecond):
    if one_millisecond:  # as on a machine fast enough to start them all within one millisecond
        import secrets

        monkeypatch.setattr(steplog.store, "new_run_id", lambda: "20260101-000000-000-" + secrets.token_hex(3))
    created = [steplog.init(name="sweep", root=root) for _ in range(100)]
    for run in created:
        run.finish()
    ids = [run.id for run in created]
    assert steplog.runs(root)["run_id"].to_list() == ids
    assert [d.name for d in steplog.store.run_dirs(root)] == ids
    assert steplog.store.resolve_run("sweep", root).name == ids[-1]  # "the latest run named sweep"
    steplog.compact(root, quiet=True)  # compacted runs are ordered the same way, from their sidecars
    assert steplog.runs(root)["run_id"].to_list() == ids
    assert steplog.store.resolve_run("sweep", root).name == ids[-1]


def _start_times(root) -> list[float]:
    return [
        orjson.loads((d / "events.jsonl").read_bytes().split(b"\n")[0])["time"] for d in steplog.store.run_dirs(root)
    ]


def test_runs_created_by_threads_at_once_are_in_start_order_everywhere(root):
    barrier = threading.Barrier(4)

    def sweep(worker: int) -> None:
        barrier.wait()
        for _ in range(25):
            steplog.init(name="sweep", config={"worker": worker}, root=root).finish()

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts = _start_times(root)
    assert len(starts) == 100 and starts == sorted(starts)
    table = steplog.runs(root)
    assert table["run_id"].to_list() == [d.name for d in steplog.store.run_dirs(root)]
    for worker in range(4):  # each thread's runs in the order it created them
        mine = table.filter(pl.col("config.worker") == worker)["start_time"]
        assert mine.is_sorted() and mine.n_unique() == 25
    assert steplog.store.resolve_run("sweep", root).name == table["run_id"][-1]


_SWEEPER = """
import sys, steplog
sys.stdin.readline()  # all start together
ids = []
for _ in range(25):
    run = steplog.init(name="sweep", root=sys.argv[1])
    run.finish()
    ids.append(run.id)
print(",".join(ids), flush=True)
"""


def test_runs_created_by_processes_at_once_are_in_start_order_everywhere(root):
    procs = [python_subprocess(_SWEEPER, str(root), stdin=subprocess.PIPE) for _ in range(4)]
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    per_process = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        per_process.append(out.strip().split(","))
    order = [d.name for d in steplog.store.run_dirs(root)]
    assert len(order) == 100 and _start_times(root) == sorted(_start_times(root))
    for ids in per_process:  # each process's runs in the order it created them
        assert [i for i in order if i in set(ids)] == ids
    assert steplog.runs(root)["run_id"].to_list() == order
    assert steplog.store.resolve_run("sweep", root).name == order[-1]


def test_the_order_does_not_depend_on_the_shape_of_the_ids(root):
    """Ids that sort against their start order (as ids derived from a job id may) change nothing."""
    first, second = steplog.init(name="a", root=root), steplog.init(name="b", root=root)
    first.finish(), second.finish()
    renamed = root / ("00000000-000000-000-" + second.id[-6:])  # sorts first by name, started last
    second.dir.rename(renamed)
    assert [d.name for d in steplog.store.run_dirs(root)] == [first.id, renamed.name]
    assert steplog.store.start_order(renamed)[0] > steplog.store.start_order(first.dir)[0]
