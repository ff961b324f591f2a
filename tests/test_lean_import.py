"""A training process that only logs never loads Polars, PyArrow or NumPy and starts no thread;
numpy scalars and torch tensors are still accepted (recognised without importing their packages),
and the query side loads at the first query."""

from __future__ import annotations

import json

from conftest import python_subprocess

HEAVY = ("polars", "pyarrow", "numpy", "torch")

REPORT = """
import json, os, sys, threading
heavy = [m for m in {heavy!r} if m in sys.modules]
threads = len(os.listdir("/proc/self/task"))
print(json.dumps({{"heavy": heavy, "threads": threads, "python_threads": threading.active_count()}}))
"""

THROUGH_RUN = """
import sys, steplog
after_import = [m for m in {heavy!r} if m in sys.modules]
for durability in ("mmap", "process"):
    run = steplog.init(name=durability, config={{"lr": 0.1}}, root=sys.argv[1], durability=durability)
    for step in range(10_000):
        run.log({{"train_loss": 1.0 / (step + 1), "lr": 0.1, "tokens": step}})
    run.finish()
assert after_import == [], after_import
"""

THROUGH_TRACKER = """
import sys
from steplog import ExperimentConfig, ExperimentTracker
config = ExperimentConfig(experiment_name="lean", learning_rate=0.1, max_iters=10_000)
tracker = ExperimentTracker(config, log_dir=sys.argv[1])
tracker.start()
for it in range(10_000):
    tracker.log_metrics(it, train_loss=1.0 / (it + 1), learning_rate=0.1)
    tracker.increment_gradient_step()
tracker.finish()
"""


def report_of(code: str, root) -> dict:
    proc = python_subprocess(code + REPORT.format(heavy=HEAVY), str(root))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_import_init_log_finish_loads_no_heavy_library_and_starts_no_thread(root):
    report = report_of(THROUGH_RUN.format(heavy=HEAVY), root)
    assert report["heavy"] == [] and report["threads"] == 1 and report["python_threads"] == 1


def test_the_seed_tracker_loads_no_heavy_library_and_starts_no_thread(root):
    report = report_of(THROUGH_TRACKER, root)
    assert report["heavy"] == [] and report["threads"] == 1


def test_numpy_scalars_and_torch_tensors_are_accepted_without_steplog_importing_them(root):
    code = """
import sys, steplog
run = steplog.init(root=sys.argv[1])
run.log({"a": 1.0})
assert "numpy" not in sys.modules and "torch" not in sys.modules
import numpy as np, torch
run.log({"a": np.float32(0.5), "b": np.array(2.0), "c": torch.tensor(3.0), "d": np.int64(4)})
run.finish()
print(steplog.history(run.id, root=sys.argv[1]).select("a", "b", "c", "d").row(1))
"""
    proc = python_subprocess(code, str(root))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.strip() == "(0.5, 2.0, 3.0, 4.0)"


def test_the_query_side_loads_at_the_first_query(root):
    code = (
        THROUGH_RUN.format(heavy=HEAVY)
        + """
assert "polars" not in sys.modules
frame = steplog.history("mmap", root=sys.argv[1])
assert type(frame).__module__.startswith("polars") and frame.height == 10_000
assert callable(steplog.compact) and callable(steplog.runs) and steplog.CorruptEventsError
print("ok")
"""
    )
    proc = python_subprocess(code, str(root))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.strip() == "ok"


def test_queries_that_read_only_sidecars_never_load_pyarrow(root):
    code = (
        THROUGH_RUN.format(heavy=HEAVY)
        + """
steplog.compact(sys.argv[1], quiet=True)
"""
        + """
import subprocess
query = '''
import sys, steplog
table = steplog.runs(sys.argv[1], metrics="all")
winner = steplog.best("train_loss", root=sys.argv[1])
assert table.height == 2 and winner["value"] > 0, (table, winner)
assert "pyarrow" not in sys.modules  # compacted runs: sidecars only, the JSON parser is never needed
live = steplog.init(name="live", root=sys.argv[1]); live.log({"loss": 1.0})
assert steplog.runs(sys.argv[1]).height == 3 and "pyarrow" in sys.modules  # a live run is parsed
live.finish()
print("ok")
'''
out = subprocess.run([sys.executable, "-c", query, sys.argv[1]], capture_output=True, text=True)
assert out.returncode == 0, out.stderr
print(out.stdout.strip())
"""
    )
    proc = python_subprocess(code, str(root))
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == "ok"
