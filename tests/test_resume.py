"""Resume after a crash with rewind to the checkpoint's step; auto-resume; following a live run."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest
from conftest import make_crashed_run, python_subprocess

import steplog

SEGMENT_WRITER = """
import sys, steplog
root, checkpoint, segment = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if segment == 0:
    run = steplog.init(name="long", root=root)
else:
    run = steplog.init(resume="long", root=root, start_step=checkpoint)
print("ready", flush=True)
step = checkpoint
while True:
    run.log({"loss": segment * 1_000_000 + step, "seg": float(segment)}, step=step)
    print(step, flush=True)
    step += 1
"""


def test_twenty_crashes_and_resumes_give_one_clean_history(root):
    rng = random.Random(1234)
    checkpoints: list[int] = []
    checkpoint = 0
    for segment in range(22):
        checkpoints.append(checkpoint)
        proc = python_subprocess(SEGMENT_WRITER, str(root), str(checkpoint), str(segment))
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for _ in range(rng.randrange(0, 40)):  # a random moment: after some steps, maybe none
            proc.stdout.readline()
        time.sleep(rng.random() * 0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        hist = steplog.history("long", root=root)
        steps = hist["step"].to_list()
        assert steps == list(range(len(steps)))  # every step exactly once, no gap
        assert steplog.runs(root=root)["status"].to_list() == ["crashed"]
        last = steps[-1] if steps else 0
        checkpoint = rng.randint(max(0, last - 30), last)  # restart from a checkpoint at or before the last step
    checkpoints.append(checkpoint)
    final = steplog.init(resume="long", root=root, start_step=checkpoint)
    for step in range(checkpoint, checkpoint + 5):
        final.log({"loss": 22 * 1_000_000 + step, "seg": 22.0}, step=step)
    final.finish()

    hist = steplog.history("long", root=root)
    steps = hist["step"].to_list()
    assert steps == list(range(checkpoint + 5))
    for row in hist.iter_rows(named=True):  # the value of the latest segment that logged the step
        latest = max(k for k, c in enumerate(checkpoints) if c <= row["step"])
        assert row["seg"] == latest and row["loss"] == latest * 1_000_000 + row["step"]
    assert hist["wallclock"].is_sorted()  # training time, not downtime: wallclock keeps increasing
    table = steplog.runs(root=root).row(0, named=True)
    assert (table["status"], table["segments"], table["last_step"]) == ("finished", 23, checkpoint + 4)
    everything = steplog.history("long", root=root, all_segments=True)
    assert set(everything.columns) >= {"segment", "superseded"}
    assert everything.filter(~everything["superseded"]).height == len(steps)
    assert everything.height >= len(steps)
    assert steplog.compact(root=root, quiet=True) == [final.id]  # identical after compaction
    assert steplog.history("long", root=root).equals(hist)
    assert steplog.history("long", root=root, all_segments=True).equals(everything)
    assert steplog.runs(root=root).row(0, named=True)["segments"] == 23


def test_superseded_rows_stay_readable(root):
    run = steplog.init(name="r", root=root)
    for step in range(10):
        run.log({"loss": float(step)})
    run.fail("preempted")
    again = steplog.init(resume="r", root=root, start_step=6)
    assert again.step == 9  # the last step logged so far; the next default step is the checkpoint's
    again.log({"loss": 60.0})
    again.log({"loss": 70.0})
    again.finish()
    hist = steplog.history("r", root=root)
    assert hist.select("step", "loss").rows()[-4:] == [(4, 4.0), (5, 5.0), (6, 60.0), (7, 70.0)]
    assert hist.height == 8  # steps 8 and 9 of the abandoned timeline are superseded too
    full = steplog.history("r", root=root, all_segments=True)
    assert full.filter(full["superseded"])["step"].to_list() == [6, 7, 8, 9]
    assert full.filter(full["superseded"])["segment"].to_list() == [0, 0, 0, 0]


def test_resume_without_start_step_takes_the_first_step_logged(root):
    run = steplog.init(name="r", root=root)
    for step in range(10):
        run.log({"loss": float(step)})
    run.finish()
    again = steplog.init(resume="r", root=root)
    again.log({"loss": 40.0}, step=4)
    again.log({"loss": 50.0})
    again.finish()
    assert steplog.history("r", root=root).select("step", "loss").rows() == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
        (4, 40.0),
        (5, 50.0),
    ]
    more = steplog.init(resume="r", root=root)
    more.log({"loss": 60.0})  # step=None continues after the last step logged
    more.finish()
    assert steplog.history("r", root=root)["step"].to_list()[-2:] == [5, 6]


def test_resume_cuts_a_torn_tail_before_appending(root):
    run_id = make_crashed_run(root, "r", losses=(1.0, 2.0))
    with open(root / run_id / "events.jsonl", "ab") as f:
        f.write(b'{"s":2,"t":1.0,"w":0.1,"m":{"lo')  # the dead writer's half line
    again = steplog.init(resume="r", root=root, start_step=2)
    again.log({"loss": 3.0})
    again.finish()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing damaged remains
        assert steplog.history("r", root=root)["loss"].to_list() == [1.0, 2.0, 3.0]


def test_resume_auto_picks_the_latest_crashed_run_of_the_name(root):
    finished = steplog.init(name="job", root=root)
    finished.finish()
    crashed_id = make_crashed_run(root, "job")
    other = steplog.init(name="other", root=root)  # another name's run is never picked
    other.finish()
    run = steplog.init(name="job", resume="auto", root=root)
    assert run.id == crashed_id
    run.log({"loss": 0.5})
    run.finish()
    assert steplog.history(crashed_id, root=root)["loss"].to_list() == [1.0, 0.5]
    fresh = steplog.init(name="job", resume="auto", root=root)  # nothing crashed now: a new run
    assert fresh.id not in (crashed_id, finished.id)
    fresh.finish()
    assert steplog.runs(root=root)["status"].to_list() == ["finished"] * 4
    with pytest.raises(ValueError, match="name="):
        steplog.init(resume="auto", root=root)


def test_resume_auto_starting_a_new_run_checks_start_step(root):
    with pytest.raises(ValueError, match="step must be an int from 0"):
        steplog.init(name="fresh", resume="auto", root=root, start_step=-1)
    with pytest.raises(TypeError, match="step must be a non-negative int"):
        steplog.init(name="fresh", resume="auto", root=root, start_step=2.0)
    assert not root.exists() or list(root.iterdir()) == []  # refused before anything was made
    run = steplog.init(name="fresh", resume="auto", root=root, start_step=7)
    run.log({"loss": 1.0})
    run.finish()
    assert steplog.history("fresh", root=root)["step"].to_list() == [7]


def test_resuming_a_running_run_is_refused(root):
    proc = python_subprocess(
        """
import sys, steplog
run = steplog.init(name="busy", root=sys.argv[1])
print(run.id, flush=True)
sys.stdin.read()
""",
        str(root),
        stdin=subprocess.PIPE,
    )
    run_id = proc.stdout.readline().strip()
    try:
        with pytest.raises(steplog.RunLockedError, match="one writer per run"):
            steplog.init(resume="busy", root=root)
        fresh = steplog.init(name="busy", resume="auto", root=root)  # auto never takes a running run
        assert fresh.id != run_id
        fresh.finish()
    finally:
        proc.kill()
        proc.wait()


def test_resume_warns_when_the_config_differs(root):
    steplog.init(name="c", config={"lr": 1.0}, root=root).finish()
    with pytest.warns(UserWarning, match="keeps its original config"):
        steplog.init(resume="c", config={"lr": 2.0}, root=root).finish()
    steplog.init(resume="c", config={"lr": 1.0}, root=root).finish()  # same config: silent
    assert steplog.runs(root=root)["config.lr"].to_list() == [1.0]


FOLLOWED_WRITER = """
import sys, time, steplog
run = steplog.init(name="followed", root=sys.argv[1])
print(run.id, flush=True)
for step in range(200):
    run.log({"loss": 1.0 / (step + 1), "inf": float("inf")})
    if step % 20 == 0:
        time.sleep(0.02)
run.finish()
"""


def test_follow_sees_every_row_in_order_and_ends_when_the_run_finishes(root):
    proc = python_subprocess(FOLLOWED_WRITER, str(root))
    run_id = proc.stdout.readline().strip()
    rows = list(steplog.follow(run_id, root=root, poll_interval=0.01, timeout=60))
    proc.wait()
    assert [r["step"] for r in rows] == list(range(200))
    assert [r["loss"] for r in rows] == [1.0 / (s + 1) for s in range(200)]
    assert all(r["inf"] == float("inf") for r in rows)


def test_follow_ends_when_the_writer_crashes(root):
    proc = python_subprocess(SEGMENT_WRITER, str(root), "0", "0")
    proc.stdout.readline()
    for _ in range(10):
        proc.stdout.readline()
    rows = steplog.follow("long", root=root, poll_interval=0.01, timeout=60)
    first = next(rows)
    proc.kill()
    proc.wait()
    rest = list(rows)  # drains what was written, then stops: no live writer
    assert first["step"] == 0 and [r["step"] for r in rest] == list(range(1, len(rest) + 1))


def test_follow_from_the_end_and_timeout(root):
    run = steplog.init(name="f", root=root)
    run.log({"a": 1.0})
    follower = steplog.follow("f", root=root, from_start=False, poll_interval=0.01, timeout=0.5)
    run.log({"a": 2.0})
    assert [r["a"] for r in follower] == [2.0]  # stops at the timeout: the run is still open
    run.finish()


def test_follow_from_the_end_of_a_resumed_run_ends_at_its_finish(root):
    steplog.init(name="f", root=root).finish()
    run = steplog.init(resume="f", root=root)
    run.log({"a": 1.0})
    follower = steplog.follow("f", root=root, from_start=False, poll_interval=0.01, timeout=30)
    run.log({"a": 2.0})
    run.finish()
    assert [(r["a"], r["segment"]) for r in follower] == [(2.0, 1)]


def test_a_compacted_crashed_run_resumes_and_is_folded_again(root):
    proc = python_subprocess(SEGMENT_WRITER, str(root), "0", "0")
    proc.stdout.readline()
    for _ in range(30):
        proc.stdout.readline()
    proc.kill()
    proc.wait()
    assert steplog.compact(root=root, quiet=True) != []
    before = steplog.history("long", root=root)
    assert steplog.runs(root=root)["status"].to_list() == ["crashed"]
    run = steplog.init(name="long", resume="auto", root=root, start_step=10)
    run.log({"loss": 1e6 + 10, "seg": 1.0})
    run.finish()
    live = steplog.history("long", root=root)
    assert live["step"].to_list() == list(range(11))
    assert live.head(10).equals(before.head(10))
    assert steplog.compact(root=root, quiet=True) == [run.id]
    assert steplog.history("long", root=root).equals(live)
    assert steplog.history("long", root=root, all_segments=True)["superseded"].sum() == before.height - 10
    row = steplog.runs(root=root).row(0, named=True)
    assert (row["status"], row["segments"]) == ("finished", 2)


def test_follow_a_compacted_run_reads_its_archived_events(root):
    run = steplog.init(name="done", root=root)
    run.log({"a": 1.0})
    run.log({"a": float("nan")})
    run.finish()
    steplog.compact(root=root, quiet=True)
    rows = list(steplog.follow("done", root=root, timeout=10))
    assert [r["step"] for r in rows] == [0, 1] and rows[0]["a"] == 1.0
    assert list(steplog.follow("done", root=root, from_start=False, timeout=10)) == []
