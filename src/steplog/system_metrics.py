"""System metrics: an optional sampler thread that records CPU, memory and GPU figures beside a run.

``steplog.init(..., system_metrics=True)`` (or the environment variable ``STEPLOG_SYSTEM_METRICS=1``)
starts one daemon thread per process; ``finish`` stops it. Every ``interval`` seconds (default 10)
it appends one line of JSON to ``<run dir>/system.rank<k>.jsonl`` (k: the process's rank, 0 for a
single process), with one ``os.write`` of a whole line to a file opened in append mode, so a crash
leaves at most a torn last line, which readers skip. The first line of each sampler is a header
(``{"e": "start", ...}``: pid, host, interval, the GPUs and why there are none). Figures, each a float:

* every process: ``proc_cpu_percent`` (CPU time of this process over the interval, in % of one
  core: above 100 with several busy threads), ``proc_rss_bytes`` (resident memory);
* the host (local rank 0 only, or ``host_figures=True``): ``host_cpu_percent`` (all cores, 0-100),
  ``host_mem_used_bytes`` (total minus available), ``host_mem_total_bytes``;
* per GPU (with the ``nvidia-ml-py`` package and an NVIDIA driver), ``gpu<i>_`` + ``util_percent``,
  ``mem_used_bytes``, ``mem_total_bytes``, ``power_watts``, ``temp_c``, ``sm_clock_mhz``, where
  ``i`` is the device's NVML (host-wide) index. A figure the device does not support is left out.
  NVML's process-listing functions (slow, and privileged on shared machines) are never called.

The figures need ``psutil`` (``pip install 'steplog[system]'``); without it the sampler warns once
and does nothing. The thread never raises into the training loop: a failure is warned about once
and sampling goes on.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="x", root=root, system_metrics=True) as run:
    ...     run.log({"loss": 1.0})
    >>> from steplog.system_read import read_system
    >>> frame = read_system(run.dir)
    >>> frame.columns[:4], frame["rank"].to_list()  # a sample when it started and one when it stopped
    (['time', 'rank', 'proc_cpu_percent', 'proc_rss_bytes'], [0, 0])
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import orjson

ENV_VAR = "STEPLOG_SYSTEM_METRICS"
INSTALL_HINT = "pip install 'steplog[system]'"
DEFAULT_INTERVAL = 10.0
FILE_GLOB = "system.rank*.jsonl"
FILE_PATTERN = re.compile(r"^system\.rank(\d+)\.jsonl$")
#: The figures, in the order readers show them (GPU ones after a ``gpu<i>_`` prefix).
HOST_FIGURES = ("proc_cpu_percent", "proc_rss_bytes", "host_cpu_percent", "host_mem_used_bytes", "host_mem_total_bytes")
GPU_FIGURES = ("util_percent", "mem_used_bytes", "mem_total_bytes", "power_watts", "temp_c", "sm_clock_mhz")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}
_warned_no_psutil = False


def system_file(run_dir: str | os.PathLike, rank: int = 0) -> Path:
    """Where the sampler of ``rank`` writes in a run directory.

    Example:
        >>> system_file("/logs/20260102-030405-678-abcdef", rank=3).name
        'system.rank3.jsonl'
    """
    return Path(run_dir) / f"system.rank{int(rank)}.jsonl"


def enabled(option: bool | None) -> bool:
    """Whether to record system metrics: ``option`` when it is True or False; when it is None, the
    environment variable ``STEPLOG_SYSTEM_METRICS`` (``1``/``true``/``yes``/``on``; unset: off).
    An unrecognised value warns and counts as off.

    Example:
        >>> enabled(True), enabled(False)
        (True, False)
        >>> os.environ["STEPLOG_SYSTEM_METRICS"] = "1"; enabled(None)
        True
        >>> del os.environ["STEPLOG_SYSTEM_METRICS"]; enabled(None)
        False
    """
    if option is not None:
        return bool(option)
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        warnings.warn(
            f"steplog: {ENV_VAR}={os.environ[ENV_VAR]!r} is not understood; system metrics stay off "
            f"(set it to 1 to record them, or 0)",
            stacklevel=2,
        )
    return False


class _Host:
    """The psutil figures: this process's CPU and RSS, and (``host_figures``) the host's CPU and memory."""

    def __init__(self, psutil: Any, host_figures: bool) -> None:
        self._psutil = psutil
        self._process = psutil.Process()
        self._host = host_figures
        self._process.cpu_percent(None)  # the first call only starts the measurement
        if host_figures:
            psutil.cpu_percent(None)

    def figures(self, out: dict[str, float], primed: bool) -> None:
        process = self._process
        with process.oneshot():
            if primed:
                out["proc_cpu_percent"] = process.cpu_percent(None)
            out["proc_rss_bytes"] = process.memory_info().rss
        if self._host:
            if primed:
                out["host_cpu_percent"] = self._psutil.cpu_percent(None)
            memory = self._psutil.virtual_memory()
            out["host_mem_used_bytes"] = memory.total - memory.available
            out["host_mem_total_bytes"] = memory.total


def _nvml_utilisation(nv: Any, handle: Any) -> dict[str, float]:
    return {"util_percent": nv.nvmlDeviceGetUtilizationRates(handle).gpu}


def _nvml_memory(nv: Any, handle: Any) -> dict[str, float]:
    memory = nv.nvmlDeviceGetMemoryInfo(handle)
    return {"mem_used_bytes": memory.used, "mem_total_bytes": memory.total}


def _nvml_power(nv: Any, handle: Any) -> dict[str, float]:
    return {"power_watts": nv.nvmlDeviceGetPowerUsage(handle) / 1000.0}  # NVML gives milliwatts


def _nvml_temperature(nv: Any, handle: Any) -> dict[str, float]:
    return {"temp_c": nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)}


def _nvml_clock(nv: Any, handle: Any) -> dict[str, float]:
    return {"sm_clock_mhz": nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM)}


#: What is asked of each GPU; a query the device refuses (NVML_ERROR_NOT_SUPPORTED...) is dropped for it.
_NVML_QUERIES = (_nvml_utilisation, _nvml_memory, _nvml_power, _nvml_temperature, _nvml_clock)


class _Gpus:
    """NVML figures of the GPUs this process records (see ``SystemSampler``'s ``gpus``)."""

    def __init__(self, nv: Any, handles: list[tuple[int, Any]]) -> None:
        self._nv = nv
        self._devices = [(f"gpu{index}_", handle, list(_NVML_QUERIES)) for index, handle in handles]
        self.described = [_describe(nv, index, handle) for index, handle in handles]

    def figures(self, out: dict[str, float]) -> None:
        for prefix, handle, queries in self._devices:
            for query in list(queries):
                try:
                    values = query(self._nv, handle)
                except Exception:  # not supported by this device (or MIG mode): ask no more
                    queries.remove(query)
                    continue
                for name, value in values.items():
                    out[prefix + name] = value

    def close(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except Exception:
            pass


def _describe(nv: Any, index: int, handle: Any) -> dict[str, Any]:
    described: dict[str, Any] = {"index": index}
    for key, call in (("name", "nvmlDeviceGetName"), ("uuid", "nvmlDeviceGetUUID")):
        try:
            value = getattr(nv, call)(handle)
            described[key] = value.decode() if isinstance(value, bytes) else str(value)
        except Exception:
            pass
    return described


def _open_gpus(selection: list[int] | None) -> tuple[_Gpus | None, str]:
    """The GPUs to record and a word on NVML's state for the header: ``ok``, or why there are none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecated 'pynvml' wrapper package warns on import
            import pynvml as nv
    except ImportError:
        return None, "nvidia-ml-py is not installed"
    try:
        nv.nvmlInit()
    except Exception as exc:  # no driver, no GPU: nothing to record
        return None, f"no NVML ({type(exc).__name__}: {exc})"
    try:
        handles = _visible_handles(nv)
        if selection is not None:
            handles = [handles[i] for i in selection if 0 <= i < len(handles)]
    except Exception as exc:
        _Gpus(nv, []).close()
        return None, f"could not list GPUs ({type(exc).__name__}: {exc})"
    return _Gpus(nv, handles), "ok"


def _visible_handles(nv: Any) -> list[tuple[int, Any]]:
    """(NVML index, handle) of each GPU this process can use, in CUDA's order when CUDA_VISIBLE_DEVICES
    names them (by index or UUID), else every GPU of the host."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [(i, nv.nvmlDeviceGetHandleByIndex(i)) for i in range(nv.nvmlDeviceGetCount())]
    handles = []
    for entry in (part.strip() for part in visible.split(",")):
        if not entry:
            break
        if entry.lstrip("-").isdigit():
            if int(entry) < 0:
                break  # CUDA stops at the first invalid entry
            handle = nv.nvmlDeviceGetHandleByIndex(int(entry))
        else:
            handle = nv.nvmlDeviceGetHandleByUUID(entry)
        handles.append((int(nv.nvmlDeviceGetIndex(handle)), handle))
    return handles


class SystemSampler:
    """A daemon thread appending system figures to ``<run_dir>/system.rank<rank>.jsonl`` every
    ``interval`` seconds: one sample when it starts, then every interval, and a last one at ``stop()``.

    ``host_figures`` (default: ``local_rank == 0``) adds the host's CPU and memory; every process
    records its own CPU and RSS. ``gpus``: the CUDA device ordinals this process records (as
    ``torch.cuda`` numbers them under CUDA_VISIBLE_DEVICES, e.g. ``[local_rank]`` in a job of one
    GPU per rank; with CUDA_VISIBLE_DEVICES unset, ordinal k is NVML's k-th GPU, which is CUDA's under
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or on a host of one GPU model); None: every GPU visible to the
    process. ``samples`` counts the samples written and ``cpu_seconds`` is the CPU time the thread
    has spent sampling and writing.

    Example:
        >>> import tempfile
        >>> run_dir = tempfile.mkdtemp()
        >>> sampler = SystemSampler(run_dir, interval=0.01).start()
        >>> sampler.running
        True
        >>> sampler.stop()
        >>> sampler.running, sampler.samples >= 2, system_file(run_dir).exists()
        (False, True, True)
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        rank: int = 0,
        local_rank: int = 0,
        interval: float = DEFAULT_INTERVAL,
        *,
        host_figures: bool | None = None,
        gpus: list[int] | None = None,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise ValueError(f"system metrics interval={interval!r} must be a number of seconds > 0, e.g. 10")
        self.path = system_file(run_dir, rank)
        self.rank, self.local_rank, self.interval = int(rank), int(local_rank), float(interval)
        self.host_figures = local_rank == 0 if host_figures is None else bool(host_figures)
        self.gpus = None if gpus is None else [int(g) for g in gpus]
        self.samples = 0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._host: _Host | None = None
        self._gpus: _Gpus | None = None
        self._warned = False

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SystemSampler:
        """Start sampling (once); without psutil, warn once per process and start nothing. Never raises."""
        global _warned_no_psutil
        if self._thread is not None:
            return self
        try:
            import psutil
        except ImportError:
            if not _warned_no_psutil:
                _warned_no_psutil = True
                warnings.warn(
                    f"steplog: system metrics need psutil (and nvidia-ml-py for GPUs): {INSTALL_HINT}; "
                    f"this run records none",
                    stacklevel=2,
                )
            return self
        try:
            self._host = _Host(psutil, self.host_figures)
            self._fd = _open_append(self.path)
        except Exception as exc:
            self._warn(exc)
            return self
        self._thread = threading.Thread(target=self._loop, name=f"steplog-system-rank{self.rank}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Take a last sample, stop the thread and wait for it (at most ``timeout`` seconds). Never raises."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        if thread is not threading.current_thread():
            thread.join(timeout)
        if thread.is_alive():
            warnings.warn(
                f"steplog: the system metrics thread of {self.path} did not stop within {timeout} s; "
                f"it is left to end with the process",
                stacklevel=2,
            )

    def _loop(self) -> None:
        clock = time.thread_time
        began = clock()
        try:
            self._gpus, nvml = _open_gpus(self.gpus)
            described = self._gpus.described if self._gpus is not None else []
            self._append(
                {
                    "e": "start",
                    "t": time.time(),
                    "rank": self.rank,
                    "local_rank": self.local_rank,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "interval": self.interval,
                    "host_figures": self.host_figures,
                    "gpus": described,
                    "nvml": nvml,
                }
            )
            self._sample(primed=False)
        except Exception as exc:
            self._warn(exc)
        self.cpu_seconds += clock() - began
        while not self._stop.wait(self.interval):
            began = clock()
            self._sample(primed=True)
            self.cpu_seconds += clock() - began
        began = clock()
        self._sample(primed=True)
        self._close()
        self.cpu_seconds += clock() - began

    def _sample(self, primed: bool) -> None:
        try:
            figures: dict[str, float] = {"t": time.time()}
            if self._host is not None:
                self._host.figures(figures, primed)
            if self._gpus is not None:
                self._gpus.figures(figures)
            self._append(figures)
            self.samples += 1
        except Exception as exc:  # never into training: say it once and go on
            self._warn(exc)

    def _append(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        written = os.write(self._fd, line)  # type: ignore[arg-type]
        if written != len(line):  # a short write (disk full): end the line so the next one starts clean
            os.write(self._fd, b"\n")  # type: ignore[arg-type]
            raise OSError(f"short write to {self.path} ({written} of {len(line)} bytes)")

    def _close(self) -> None:
        if self._gpus is not None:
            self._gpus.close()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _warn(self, exc: BaseException) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"steplog: system metrics of {self.path} failed ({type(exc).__name__}: {exc}); "
                f"training goes on, this is not reported again",
                stacklevel=2,
            )


def _open_append(path: Path) -> int:
    """Open ``path`` for appending; if a crash left a torn last line (or NUL bytes), end it first."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                os.write(fd, b"\n")
    except BaseException:
        os.close(fd)
        raise
    return fd
