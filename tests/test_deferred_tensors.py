"""Accelerator tensors are logged without a device sync: their values wait on the device and are
copied to the host in one batched transfer. On CPU the decision "is this an accelerator tensor"
is forced (``steplog.values.is_device_value``) so that the batching path runs here."""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time

import orjson
import pytest

import steplog
from steplog import deferred, values
from steplog import format as fmt

try:
    import torch
except ImportError:  # the tests that need tensors are skipped; the others run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


@pytest.fixture
def defer_cpu_tensors(monkeypatch):
    monkeypatch.setattr(values, "is_device_value", lambda value: type(value).__module__.startswith("torch"))


def metric_events(run_dir) -> list[dict]:
    lines = (run_dir / fmt.EVENTS_FILE).read_bytes().rstrip(b"\0").splitlines()  # a live mapped file ends in zeros
    return [orjson.loads(line) for line in lines if not line.startswith(fmt.CONTROL_PREFIX)]


def training_log(run) -> None:
    """A mix of what a training loop logs: tensors of several dtypes and shapes, NaN and inf,
    plain floats with tensors in one call and alone, explicit steps, two calls for one step."""
    run.log({"train_loss": torch.tensor(2.5, requires_grad=True) * 1.0, "lr": 3e-4})
    run.log({"train_loss": torch.tensor(float("nan")), "grad_norm": torch.tensor([float("inf")])})
    run.log({"lr": 2e-4, "epoch": 1})
    run.log(
        {
            "train_loss": torch.tensor(1.25, dtype=torch.bfloat16),
            "tokens": torch.tensor(2**40 + 1),
            "ok": torch.tensor(True),
            "x64": torch.tensor(0.1, dtype=torch.float64),
            "neg": torch.tensor(-math.inf),
        }
    )
    run.log({"val_loss": torch.tensor(1.5)}, step=3)
    run.log({"val_loss": 1.4}, step=3)
    run.log({"train_loss": torch.tensor(0.5, dtype=torch.float16)}, step=10)


def without_times(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in event.items() if k not in (fmt.TIME, fmt.WALLCLOCK)} for event in events]


@needs_torch
def test_batched_values_give_exactly_the_events_and_history_of_immediate_logging(monkeypatch):
    root = tempfile.mkdtemp()
    with steplog.init(name="immediate", root=root) as run:
        training_log(run)
    monkeypatch.setattr(values, "is_device_value", lambda value: type(value).__module__.startswith("torch"))
    with steplog.init(name="deferred", root=root) as deferred:
        training_log(deferred)
    assert without_times(metric_events(deferred.dir)) == without_times(metric_events(run.dir))
    immediate = steplog.history("immediate", root=root).drop("time", "wallclock")
    batched = steplog.history("deferred", root=root).drop("time", "wallclock")
    assert batched.columns == immediate.columns
    assert batched.fill_nan(-1.0).equals(immediate.fill_nan(-1.0))
    assert math.isnan(batched["train_loss"][1]) and batched["grad_norm"][1] == math.inf
    assert batched["tokens"][3] == float(2**40 + 1) and batched["x64"][3] == 0.1 and batched["ok"][3] == 1.0


@needs_torch
def test_events_keep_their_own_step_time_and_order(defer_cpu_tensors):
    run = steplog.init(root=tempfile.mkdtemp())
    for step in range(4):
        run.log({"loss": torch.tensor(float(step))}, step=step)
        run.log({"lr": 0.1 * step}, step=step)  # a plain call behind waiting values keeps its place
    assert metric_events(run.dir) == []  # nothing copied from the device yet
    run.finish()
    events = metric_events(run.dir)
    assert [(e["s"], list(e["m"])) for e in events] == [(s, [k]) for s in range(4) for k in ("loss", "lr")]
    times = [e["t"] for e in events]
    assert times == sorted(times) and len(set(times)) > 1


@needs_torch
def test_values_are_copied_every_tensor_flush_steps(defer_cpu_tensors):
    run = steplog.init(root=tempfile.mkdtemp(), tensor_flush_steps=3)
    for step in range(3):
        run.log({"loss": torch.tensor(1.0)})
    assert metric_events(run.dir) == []
    run.log({"loss": torch.tensor(1.0)})  # step 3: three steps after the first waiting one
    assert [e["s"] for e in metric_events(run.dir)] == [0, 1, 2, 3]
    run.log({"loss": torch.tensor(1.0)})
    assert len(metric_events(run.dir)) == 4
    run.finish()


@needs_torch
def test_values_are_copied_after_tensor_flush_seconds(defer_cpu_tensors):
    run = steplog.init(root=tempfile.mkdtemp(), tensor_flush_seconds=0.005)
    run.log({"loss": torch.tensor(1.0)})
    assert len(metric_events(run.dir)) == 0  # waiting for the device
    time.sleep(0.02)
    run.log({"loss": torch.tensor(2.0)})  # the interval has passed: both are copied and written
    assert len(metric_events(run.dir)) == 2
    run.finish()


@pytest.mark.parametrize("durability", ["process", "buffered", "fsync"])
@needs_torch
def test_flush_finish_and_same_process_reads_write_waiting_values(defer_cpu_tensors, durability):
    root = tempfile.mkdtemp()
    run = steplog.init(name="r", root=root, durability=durability)
    run.log({"loss": torch.tensor(3.0)})
    run.flush()
    assert [e["m"] for e in metric_events(run.dir)] == [{"loss": 3.0}]
    run.log({"loss": torch.tensor(2.0)})
    assert steplog.history("r", root=root)["loss"].to_list() == [3.0, 2.0]
    run.log({"loss": torch.tensor(1.0)})
    assert steplog.runs(root=root)["num_steps"].to_list() == [3]
    run.log({"loss": torch.tensor(0.5)})
    run.finish()
    assert [e["m"]["loss"] for e in metric_events(run.dir)] == [3.0, 2.0, 1.0, 0.5]


@needs_torch
def test_bad_tensors_raise_at_log_naming_the_key_and_the_run_goes_on(defer_cpu_tensors):
    run = steplog.init(root=tempfile.mkdtemp())
    with pytest.raises(TypeError, match="'batch_loss'.*shape \\(4,\\)"):
        run.log({"lr": 0.1, "batch_loss": torch.ones(4)})
    with pytest.raises(TypeError, match="'phase'.*complex"):
        run.log({"phase": torch.tensor(1 + 2j)})
    with pytest.raises(ValueError, match="'step'"):
        run.log({"step": torch.tensor(1.0)})
    run.log({"loss": torch.tensor(1.0)})
    run.finish()
    assert [e["m"] for e in metric_events(run.dir)] == [{"loss": 1.0}]


@needs_torch
def test_changing_a_logged_tensor_in_place_does_not_change_what_was_logged(defer_cpu_tensors):
    run = steplog.init(root=tempfile.mkdtemp())
    total = torch.zeros(())
    for step in range(3):
        total += 1.0
        run.log({"total": total})
        total.zero_() if step == 1 else None
    run.finish()
    assert [e["m"]["total"] for e in metric_events(run.dir)] == [1.0, 2.0, 1.0]


@needs_torch
def test_a_failed_copy_warns_and_keeps_the_other_events(defer_cpu_tensors, monkeypatch):
    def broken(batches):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(deferred, "materialise", broken)
    run = steplog.init(root=tempfile.mkdtemp())
    run.log({"loss": torch.tensor(1.0)})
    run.log({"lr": 0.1})
    with pytest.warns(UserWarning, match="could not copy 1 logged device value"):
        run.finish()
    assert [e["m"] for e in metric_events(run.dir)] == [{"lr": 0.1}]


@needs_torch
def test_a_finished_run_refuses_device_values(defer_cpu_tensors):
    run = steplog.init(root=tempfile.mkdtemp())
    run.finish()
    with pytest.raises(RuntimeError, match="is finished"):
        run.log({"loss": torch.tensor(1.0)})


@needs_torch
def test_cpu_tensors_and_numpy_values_take_the_immediate_path():
    import numpy as np

    assert not values.is_device_value(torch.tensor(1.0))
    assert not values.is_device_value(np.float32(1.0))
    run = steplog.init(root=tempfile.mkdtemp())
    run.log({"a": torch.tensor(1.5), "b": np.float32(0.5)})
    assert [e["m"] for e in metric_events(run.dir)] == [{"a": 1.5, "b": 0.5}]
    run.finish()


def test_only_torch_tensors_off_the_cpu_are_device_values():
    torch = pytest.importorskip("torch")
    assert values.is_device_value(torch.empty((), device="meta"))  # a device other than the CPU
    assert not values.is_device_value(torch.tensor(1.0))

    class Device:
        type = "cuda"

    lookalike = type("Metric", (), {"__module__": "torchmetrics", "device": Device()})()
    assert not values.is_device_value(lookalike)  # not a tensor: logged the ordinary way (and refused)


def test_logging_floats_never_imports_torch():
    code = (
        "import sys, tempfile, steplog\n"
        "run = steplog.init(root=tempfile.mkdtemp()); run.log({'a': 1.0, 'b': 2}); run.flush(); run.finish()\n"
        "steplog.runs(root=str(run.dir.parent))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
