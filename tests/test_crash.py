"""Crashes are normal: SIGKILL mid-run, and readers polling a live writer."""

from __future__ import annotations

import signal
import time

import polars as pl
import pytest
from conftest import python_subprocess

import steplog

WRITER = """
import sys, steplog
root, durability = sys.argv[1], sys.argv[2]
run = steplog.init(name="victim", root=root, durability=durability)
print(run.id, flush=True)
step = 0
while True:
    run.log({"train_loss": 1.0 / (step + 1), "nan_metric": float("nan"), "step_sq": float(step * step)})
    if step % 50 == 0:
        print(step, flush=True)   # reported only after log() returned
    step += 1
"""


@pytest.mark.filterwarnings("error::UserWarning")  # a live or crashed mapped file reads without a warning
@pytest.mark.parametrize("durability", ["mmap", "process"])
def test_sigkill_loses_nothing_that_was_logged(root, durability):
    proc = python_subprocess(WRITER, str(root), durability)
    run_id = proc.stdout.readline().strip()
    reported = -1
    for line in proc.stdout:
        reported = int(line)
        if reported >= 1000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hist = steplog.history(run_id, root=root)
    steps = hist["step"].to_list()
    assert steps[: reported + 1] == list(range(reported + 1))  # every step up to K, in order, once
    assert steps == list(range(len(steps)))
    assert hist["nan_metric"].is_nan().all()
    assert hist["step_sq"].to_list() == [float(s * s) for s in steps]
    row = steplog.runs(root=root).row(0, named=True)
    assert row["status"] == "crashed"
    assert row["last_step"] == steps[-1] >= reported


@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("durability", ["mmap", "process"])
def test_a_running_writer_reads_as_running_and_readers_see_growing_prefixes(root, durability):
    proc = python_subprocess(WRITER, str(root), durability)
    run_id = proc.stdout.readline().strip()
    proc.stdout.readline()  # step 0 is logged
    try:
        assert steplog.runs(root=root)["status"].to_list() == ["running"]
        previous: pl.DataFrame | None = None
        deadline = time.time() + 3
        reads = 0
        while time.time() < deadline or reads < 10:
            hist = steplog.history(run_id, root=root)
            steps = hist["step"].to_list()
            assert steps == list(range(len(steps)))  # a consistent prefix: no gaps, no torn rows
            if previous is not None:
                assert hist.height >= previous.height
                assert (
                    hist.head(previous.height)
                    .select("step", "train_loss")
                    .equals(previous.select("step", "train_loss"))
                )
            previous = hist
            reads += 1
        assert previous is not None and previous.height > 50
    finally:
        proc.kill()
        proc.wait()
    assert steplog.runs(root=root)["status"].to_list() == ["crashed"]


def test_unfinished_run_is_closed_at_normal_interpreter_exit(root):
    code = """
import sys, steplog
run = steplog.init(name="forgot", root=sys.argv[1], durability="buffered")
run.log({"a": 1.0})
"""
    proc = python_subprocess(code, str(root))
    proc.wait()
    assert proc.returncode == 0
    row = steplog.runs(root=root).row(0, named=True)
    assert (row["status"], row["num_steps"]) == ("finished", 1)


def test_uncaught_exception_at_exit_marks_the_run_failed(root):
    code = """
import sys, steplog
run = steplog.init(name="oops", root=sys.argv[1])
run.log({"a": 1.0})
raise ValueError("diverged")
"""
    proc = python_subprocess(code, str(root))
    proc.wait()
    assert proc.returncode == 1
    row = steplog.runs(root=root).row(0, named=True)
    assert row["status"] == "failed" and row["error"] == "ValueError: diverged"
