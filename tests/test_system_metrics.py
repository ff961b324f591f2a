"""System metrics (issue 14): the sampler thread started by init(system_metrics=True), its stream
system.rank<k>.jsonl, and reading it back. psutil runs for real; NVML cannot run on this machine (no
GPU), so the GPU path is tested with a fake ``pynvml`` module object put in sys.modules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import types
import warnings
from collections import namedtuple
from pathlib import Path

import orjson
import psutil
import pytest
from conftest import python_subprocess

import steplog
from steplog import compact, system_metrics
from steplog.system_read import read_system, summary_lines, system


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("steplog-system")]


def stream_lines(run_dir, rank=0) -> list[dict]:
    return [orjson.loads(line) for line in system_metrics.system_file(run_dir, rank).read_bytes().splitlines()]


def log_until_samples(run, count: int, limit: int = 20_000) -> None:
    """Log steps until the run's sampler has written ``count`` samples (bounded, never timed)."""
    for step in range(limit):
        run.log({"loss": 1.0 / (step + 1)})
        if run._sampler.samples >= count:
            return
        time.sleep(0.001)
    raise AssertionError(f"the sampler wrote {run._sampler.samples} samples, expected {count}")


def test_a_run_records_sane_figures_every_interval(root):
    with steplog.init(name="sys", root=root, system_metrics=True, system_interval=0.05) as run:
        log_until_samples(run, 4)
    frame = system("sys", root=root)
    assert frame.height >= 5  # the ones counted plus the last one at finish
    assert frame["rank"].unique().to_list() == [0]
    assert frame.columns[:2] == ["time", "rank"]
    for name in (
        "proc_cpu_percent",
        "proc_rss_bytes",
        "host_cpu_percent",
        "host_mem_used_bytes",
        "host_mem_total_bytes",
    ):
        assert str(frame[name].dtype) == "Float64", name
    total = psutil.virtual_memory().total
    assert (frame["host_mem_total_bytes"] == total).all()
    assert ((frame["host_mem_used_bytes"] > 0) & (frame["host_mem_used_bytes"] <= total)).all()
    assert ((frame["proc_rss_bytes"] > 10 * 2**20) & (frame["proc_rss_bytes"] < total)).all()
    cpu = frame["proc_cpu_percent"].drop_nulls()  # the first sample has none: CPU % needs an interval
    assert cpu.len() == frame.height - 1 and (cpu >= 0).all()
    assert ((frame["host_cpu_percent"].drop_nulls() >= 0) & (frame["host_cpu_percent"].drop_nulls() <= 100)).all()
    assert frame["time"].is_sorted()
    header = stream_lines(run.dir)[0]
    assert header["e"] == "start" and header["pid"] == os.getpid() and header["interval"] == 0.05
    gpu_columns = {name.split("_")[0] for name in frame.columns if name.startswith("gpu")}
    assert gpu_columns == {f"gpu{gpu['index']}" for gpu in header["gpus"]}  # none without a GPU and nvidia-ml-py
    assert steplog.history("sys", root=root).height == run.step + 1  # the step history is untouched


def test_finish_stops_the_thread_and_nothing_is_written_after_the_finish_event(root):
    run = steplog.init(name="sys", root=root, system_metrics=True, system_interval=0.02)
    log_until_samples(run, 2)
    assert len(sampler_threads()) == 1
    run.finish()
    assert sampler_threads() == []
    path = system_metrics.system_file(run.dir)
    size = path.stat().st_size
    time.sleep(0.1)  # five intervals: a sampler still running would have written
    assert path.stat().st_size == size
    finished = [orjson.loads(line) for line in (run.dir / "events.jsonl").read_bytes().splitlines()][-1]
    assert finished["e"] == "finish"
    assert max(line["t"] for line in stream_lines(run.dir)) <= finished["time"]


def test_fail_and_the_context_manager_stop_it_too(root):
    with pytest.raises(KeyError):
        with steplog.init(name="sys", root=root, system_metrics=True, system_interval=0.02) as run:
            log_until_samples(run, 1)
            raise KeyError("boom")
    assert sampler_threads() == []
    assert steplog.runs(root)["status"].to_list() == ["failed"]


def test_off_by_default_and_the_environment_variable_switches_it_on(root, monkeypatch):
    monkeypatch.delenv(system_metrics.ENV_VAR, raising=False)
    with steplog.init(name="off", root=root) as run:
        run.log({"loss": 1.0})
    assert not system_metrics.system_file(run.dir).exists() and system("off", root=root).height == 0
    monkeypatch.setenv(system_metrics.ENV_VAR, "1")
    with steplog.init(name="env", root=root, system_interval=0.02) as run:
        log_until_samples(run, 1)
    assert system("env", root=root).height >= 2
    with steplog.init(name="refused", root=root, system_metrics=False) as run:
        run.log({"loss": 1.0})
    assert not system_metrics.system_file(run.dir).exists()
    monkeypatch.setenv(system_metrics.ENV_VAR, "maybe")
    with pytest.warns(UserWarning, match="STEPLOG_SYSTEM_METRICS='maybe' is not understood"):
        run = steplog.init(name="odd", root=root)
    run.finish()
    assert run._sampler is None


_WITHOUT_PSUTIL = """
import sys, threading, warnings
sys.modules["psutil"] = None  # as if psutil were not installed
import steplog
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name in ("a", "b"):
        with steplog.init(name=name, root=sys.argv[1], system_metrics=True, system_interval=0.01) as run:
            run.log({"loss": 1.0})
            print("threads", sum(t.name.startswith("steplog-system") for t in threading.enumerate()))
for w in caught:
    print("warning", w.message)
"""


def test_without_psutil_one_warning_and_no_thread(root):
    proc = python_subprocess(_WITHOUT_PSUTIL, str(root))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["threads 0", "threads 0"]
    assert lines[2:] == [
        "warning steplog: system metrics need psutil (and nvidia-ml-py for GPUs): "
        "pip install 'steplog[system]'; this run records none"
    ]
    assert not list(root.glob("*/system.rank*.jsonl"))
    assert steplog.runs(root)["status"].to_list() == ["finished", "finished"]


def test_a_failing_sampler_warns_once_and_never_raises_into_the_loop(root, monkeypatch):
    def broken():
        raise OSError("cannot read /proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with steplog.init(name="broken", root=root, system_metrics=True, system_interval=0.01) as run:
            for step in range(300):
                run.log({"loss": float(step)})
                time.sleep(0.001)
    assert sampler_threads() == []
    mine = [str(w.message) for w in caught if "system metrics" in str(w.message)]
    assert len(mine) == 1 and "OSError: cannot read /proc/meminfo" in mine[0] and "training goes on" in mine[0]
    assert steplog.history("broken", root=root)["loss"].to_list() == [float(s) for s in range(300)]
    assert steplog.runs(root)["status"].to_list() == ["finished"]


_KILLED = """
import os, sys, steplog
run = steplog.init(name="killed", root=sys.argv[1], system_metrics=True, system_interval=0.01)
step = 0
while run._sampler.samples < 5:
    run.log({"loss": 1.0}); step += 1
print(run.dir, flush=True)
os.kill(os.getpid(), 9)
"""


def test_sigkill_leaves_a_readable_stream_and_a_resume_appends_cleanly(root):
    proc = python_subprocess(_KILLED, str(root))
    run_dir = proc.stdout.readline().strip()
    proc.wait(timeout=60)
    assert run_dir, proc.stderr.read()
    before = system("killed", root=root)
    assert before.height >= 5 and before["proc_rss_bytes"].null_count() == 0
    path = system_metrics.system_file(run_dir)
    with open(path, "ab") as f:  # what a crash may leave: a torn line, then NUL bytes
        f.write(b'{"t": 1.0, "proc_rss_bytes": 12' + b"\x00" * 64)
    assert system("killed", root=root).equals(before)
    with steplog.init(resume="killed", root=root, system_metrics=True, system_interval=0.01) as run:
        log_until_samples(run, 1)
    after = system("killed", root=root)
    assert after.head(before.height).equals(before) and after.height >= before.height + 2
    assert [line.get("e") for line in _parsable(path)].count("start") == 2


def _parsable(path) -> list[dict]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass
    return out


def test_ranks_streams_are_read_together_with_host_figures_from_local_rank_zero(tmp_path):
    samplers = [
        system_metrics.SystemSampler(tmp_path, rank=rank, local_rank=rank % 2, interval=0.01).start()
        for rank in (0, 1, 2)
    ]
    for sampler in samplers:
        sampler.stop()
    frame = read_system(tmp_path)
    assert frame["rank"].unique(maintain_order=True).to_list() == [0, 1, 2]
    has_host = {rank: frame.filter(rank=rank)["host_mem_total_bytes"].null_count() == 0 for rank in (0, 1, 2)}
    assert has_host == {0: True, 1: False, 2: True}
    assert frame["proc_rss_bytes"].null_count() == 0


def test_compaction_leaves_the_system_stream_readable(root):
    with steplog.init(name="sys", root=root, system_metrics=True, system_interval=0.01) as run:
        log_until_samples(run, 2)
    before = system("sys", root=root)
    assert compact(root, ["sys"]) == [run.id]
    assert (run.dir / "metrics.parquet").exists()
    assert system("sys", root=root).equals(before)


def test_summary_lines_name_every_figure_in_readable_units(root):
    with steplog.init(name="sys", root=root, system_metrics=True, system_interval=0.01) as run:
        log_until_samples(run, 2)
    frame = system("sys", root=root)
    lines = summary_lines(frame)
    assert lines[0].startswith(f"system metrics: {frame.height} samples from 1 rank over ")
    figures = [name for name in frame.columns if name not in ("time", "rank")]
    assert [line.split()[0] for line in lines[1:]] == figures
    rss = next(line for line in lines if "proc_rss_bytes" in line)
    assert "MiB" in rss or "GiB" in rss
    assert summary_lines(frame.clear()) == []


def test_bad_interval_raises_before_any_run_is_made(root):
    for interval in (0, -1.0, "10", True, float("nan")):
        with pytest.raises(ValueError, match="system_interval=.* must be a number of seconds > 0"):
            steplog.init(name="x", root=root, system_metrics=True, system_interval=interval)
    assert not root.exists() or not list(root.iterdir())


def test_the_real_nvml_records_each_gpu_or_says_why_there_is_none(tmp_path):
    """With nvidia-ml-py (test extra): on a machine with an NVIDIA driver every visible GPU's figures
    are recorded and sane; on one without (CI, this machine), the header names NVML's error."""
    import pynvml

    assert pynvml.nvmlInit  # the real package, not a fake
    sampler = system_metrics.SystemSampler(tmp_path, interval=0.01).start()
    while sampler.samples < 3:
        time.sleep(0.005)
    sampler.stop()
    frame, header = read_system(tmp_path), stream_lines(tmp_path)[0]
    if header["nvml"] != "ok":
        assert header["nvml"].startswith("no NVML (NVMLError") and header["gpus"] == []
        assert not [name for name in frame.columns if name.startswith("gpu")]
        return
    assert header["gpus"], "NVML works, so the GPUs visible to this process are recorded"
    for gpu in header["gpus"]:
        prefix, last = f"gpu{gpu['index']}_", frame.row(-1, named=True)
        assert 0 <= last[prefix + "mem_used_bytes"] <= last[prefix + "mem_total_bytes"]
        assert 0 <= last.get(prefix + "util_percent", 0) <= 100 and 0 < last.get(prefix + "temp_c", 1) < 130
        assert last.get(prefix + "power_watts", 1) > 0 and last.get(prefix + "sm_clock_mhz", 1) > 0


# --- the GPU path, with a fake pynvml -----------------------------------------------------------


class NVMLError(Exception):
    pass


def fake_pynvml(calls: list[str], fail_init: bool = False) -> types.ModuleType:
    """A stand-in for nvidia-ml-py's ``pynvml`` with three GPUs; GPU 2 supports no power reading."""
    nv = types.ModuleType("pynvml")
    nv.NVMLError = NVMLError
    nv.NVML_TEMPERATURE_GPU, nv.NVML_CLOCK_SM = 0, 1
    util, memory = namedtuple("Utilization", "gpu memory"), namedtuple("Memory", "total free used")

    def record(name, result):
        def call(*args):
            calls.append(name)
            if isinstance(result, Exception):
                raise result
            return result(*args) if callable(result) else result

        setattr(nv, name, call)

    record("nvmlInit", NVMLError("Driver Not Loaded") if fail_init else None)
    record("nvmlShutdown", None)
    record("nvmlDeviceGetCount", 3)
    record("nvmlDeviceGetHandleByIndex", lambda i: ("handle", i))
    record("nvmlDeviceGetHandleByUUID", lambda uuid: ("handle", int(uuid.rsplit("-", 1)[1])))
    record("nvmlDeviceGetIndex", lambda h: h[1])
    record("nvmlDeviceGetName", lambda h: b"NVIDIA H200")
    record("nvmlDeviceGetUUID", lambda h: f"GPU-fake-{h[1]}")
    record("nvmlDeviceGetUtilizationRates", lambda h: util(gpu=10 * h[1] + 5, memory=1))
    record("nvmlDeviceGetMemoryInfo", lambda h: memory(total=80 * 2**30, free=60 * 2**30, used=20 * 2**30))

    def power(h):
        if h[1] == 2:
            raise NVMLError("Not Supported")
        return 250_000 + h[1]  # milliwatts

    record("nvmlDeviceGetPowerUsage", power)
    record("nvmlDeviceGetTemperature", lambda h, sensor: 60 + h[1] if sensor == 0 else -1)
    record("nvmlDeviceGetClockInfo", lambda h, clock: 1980 if clock == 1 else -1)
    for name in (
        "nvmlDeviceGetComputeRunningProcesses",
        "nvmlDeviceGetGraphicsRunningProcesses",
        "nvmlDeviceGetProcessUtilization",
        "nvmlDeviceGetAccountingPids",
    ):
        record(name, [])
    return nv


def sample_with(monkeypatch, tmp_path, nv, **options):
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    sampler = system_metrics.SystemSampler(tmp_path, interval=0.01, **options).start()
    while sampler.samples < 3:
        time.sleep(0.005)
    sampler.stop()
    return read_system(tmp_path), stream_lines(tmp_path)[0]


def test_nvml_figures_of_every_gpu_are_parsed_and_unsupported_ones_dropped(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    calls: list[str] = []
    frame, header = sample_with(monkeypatch, tmp_path, fake_pynvml(calls))
    last = frame.row(-1, named=True)
    for gpu in (0, 1, 2):
        assert last[f"gpu{gpu}_util_percent"] == 10.0 * gpu + 5
        assert last[f"gpu{gpu}_mem_used_bytes"] == 20.0 * 2**30 and last[f"gpu{gpu}_mem_total_bytes"] == 80.0 * 2**30
        assert last[f"gpu{gpu}_temp_c"] == 60.0 + gpu and last[f"gpu{gpu}_sm_clock_mhz"] == 1980.0
    assert last["gpu0_power_watts"] == 250.0 and last["gpu1_power_watts"] == 250.001
    assert "gpu2_power_watts" not in frame.columns
    assert calls.count("nvmlDeviceGetPowerUsage") == 2 * frame.height + 1  # GPU 2 was asked once, then no more
    assert not [c for c in calls if "Process" in c or "Pids" in c]  # never the process-listing functions
    assert calls[0] == "nvmlInit" and calls[-1] == "nvmlShutdown"
    assert header["nvml"] == "ok"
    assert header["gpus"] == [{"index": i, "name": "NVIDIA H200", "uuid": f"GPU-fake-{i}"} for i in (0, 1, 2)]
    assert frame.columns[:4] == ["time", "rank", "proc_cpu_percent", "proc_rss_bytes"]
    assert [c for c in frame.columns if c.startswith("gpu")][:2] == ["gpu0_util_percent", "gpu0_mem_used_bytes"]
    assert any(line.split()[0] == "gpu1_power_watts" and line.endswith("250.0 W") for line in summary_lines(frame))


@pytest.mark.parametrize(
    ("visible", "gpus", "recorded"),
    [
        ("2,0", None, [2, 0]),
        ("GPU-fake-1", None, [1]),
        ("2,0", [1], [0]),  # a CUDA ordinal under CUDA_VISIBLE_DEVICES, recorded by its host-wide index
        (None, [1], [1]),
        ("", None, []),
    ],
)
def test_the_gpus_recorded_follow_cuda_visible_devices_and_the_selection(
    monkeypatch, tmp_path, visible, gpus, recorded
):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    frame, header = sample_with(monkeypatch, tmp_path, fake_pynvml([]), gpus=gpus)
    assert [gpu["index"] for gpu in header["gpus"]] == recorded
    columns = {c.split("_")[0] for c in frame.columns if c.startswith("gpu")}
    assert sorted(columns) == sorted(f"gpu{i}" for i in recorded)


def test_without_a_driver_there_are_no_gpu_figures_and_the_header_says_why(monkeypatch, tmp_path):
    calls: list[str] = []
    frame, header = sample_with(monkeypatch, tmp_path, fake_pynvml(calls, fail_init=True))
    assert calls == ["nvmlInit"]
    assert header["nvml"] == "no NVML (NVMLError: Driver Not Loaded)" and header["gpus"] == []
    assert not [c for c in frame.columns if c.startswith("gpu")] and frame["proc_rss_bytes"].null_count() == 0


def test_the_benchmark_runs_at_a_tiny_size():
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_system.py"
    out = subprocess.run([sys.executable, str(bench), "--tiny"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| share of one core at the default 10 s interval | **" in out.stdout
    assert "| sampler / baseline, mean |" in out.stdout


def test_the_examples_of_docs_system_md_run():
    doc = Path(__file__).resolve().parents[1] / "docs" / "system.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"{doc.name} example {number}", "exec"), namespace)
    assert sampler_threads() == []


_LEFT_OPEN = """
import sys, steplog
run = steplog.init(name="open", root=sys.argv[1], system_metrics=True, system_interval=0.01)
while run._sampler.samples < 3:
    run.log({"loss": 1.0})
print(run.dir, flush=True)
"""


def test_a_run_left_open_stops_its_sampler_at_exit_before_the_finish_event(root):
    proc = python_subprocess(_LEFT_OPEN, str(root))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    run_dir = out.strip()
    finished = orjson.loads((Path(run_dir) / "events.jsonl").read_bytes().splitlines()[-1])
    assert finished["e"] == "finish" and finished["status"] == "finished"
    samples = [line for line in stream_lines(run_dir) if "e" not in line]
    assert len(samples) >= 4 and max(line["t"] for line in samples) <= finished["time"]
