"""Which rank this process is in a multi-process job, and which run all ranks of the job share.

Every rank of a job joins one run without talking to the others: the run id is computed from what
every rank sees alike. Precedence, first found wins:

* the rank: ``init(rank=, world_size=)``; then torchrun (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``);
  then SLURM (``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NTASKS``); then Open MPI's mpirun
  (``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_LOCAL_RANK``, ``OMPI_COMM_WORLD_SIZE``); else rank 0
  of a world of 1 (a single process).
* the run id: ``init(run_id=)``; then ``STEPLOG_RUN_ID``; then, in a job of more than one rank,
  ``job-<job id>-<name>-<hash>``
  from the job id (torchrun's ``TORCHELASTIC_RUN_ID`` unless it is the default ``none``; SLURM's
  ``SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID`` or ``SLURM_JOB_ID``; mpirun's ``OMPI_MCA_ess_base_jobid``
  or ``PMIX_NAMESPACE``) and the run name; else a fresh id (``store.new_run_id``). A job of more than
  one rank with no id to be found is an error that says how to pass one.
* the restart count: ``TORCHELASTIC_RESTART_COUNT``, else ``SLURM_RESTART_COUNT``, else 0.

Example:
    >>> env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "TORCHELASTIC_RUN_ID": "abc",
    ...        "TORCHELASTIC_RESTART_COUNT": "2"}
    >>> place = detect(env)
    >>> place.rank, place.local_rank, place.world_size, place.restart, place.launcher
    (3, 1, 4, 2, 'torchrun')
    >>> job_run_id(place.job_id, "gpt")
    'job-abc-gpt-96886d'
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import store

#: (launcher, rank, local rank, world size) variables, in order of precedence.
_LAUNCHERS = (
    ("torchrun", "RANK", "LOCAL_RANK", "WORLD_SIZE"),
    ("slurm", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"),
    ("mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE"),
)
_RESTART_VARS = ("TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Place:
    """Where this process stands in its job: rank, local rank, world size, the job's id (None when
    none is known), the restart count and the launcher that said so (None for a single process)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    job_id: str | None = None
    restart: int = 0
    launcher: str | None = None


def detect(env: Mapping[str, str] | None = None, rank: int | None = None, world_size: int | None = None) -> Place:
    """This process's ``Place`` from ``env`` (default ``os.environ``) and the explicit ``rank`` and
    ``world_size`` (both or neither), by the precedence of the module docstring.

    Example:
        >>> detect({"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "77"})
        Place(rank=5, local_rank=1, world_size=8, job_id='77', restart=0, launcher='slurm')
        >>> detect({}, rank=1, world_size=2).rank
        1
    """
    env = os.environ if env is None else env
    job_id, restart = _job_id(env), _restart(env)
    if rank is not None or world_size is not None:
        rank, world_size = _explicit(rank, world_size)
        return Place(rank, _int_var(env, "LOCAL_RANK", rank), world_size, job_id, restart, "explicit")
    for launcher, rank_var, local_var, size_var in _LAUNCHERS:
        if rank_var in env and size_var in env:
            found_rank, size = _int_var(env, rank_var, 0), _int_var(env, size_var, 1)
            if not 0 <= found_rank < size:
                raise ValueError(
                    f"{rank_var}={found_rank} is not a rank of a world of {size_var}={size}; "
                    f"check the launcher's environment"
                )
            return Place(found_rank, _int_var(env, local_var, 0), size, job_id, restart, launcher)
    return Place(job_id=job_id, restart=restart)


def _explicit(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        raise ValueError(f"pass rank= and world_size= together (got rank={rank!r}, world_size={world_size!r})")
    for what, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be an int, got {type(value).__name__} ({value!r})")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in 0..world_size-1 (world_size={world_size})")
    return rank, world_size


def _int_var(env: Mapping[str, str], var: str, default: int) -> int:
    text = env.get(var)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"environment variable {var}={text!r} is not an integer; fix the launcher's environment or unset it"
        ) from None


def _restart(env: Mapping[str, str]) -> int:
    for var in _RESTART_VARS:
        if env.get(var):
            return _int_var(env, var, 0)
    return 0


def _job_id(env: Mapping[str, str]) -> str | None:
    """The job id every rank of the job sees alike, or None."""
    torch_id = env.get("TORCHELASTIC_RUN_ID")
    if torch_id and torch_id != "none":
        return torch_id
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    for var in ("SLURM_JOB_ID", "OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE"):
        if env.get(var):
            return env[var]
    return None


def job_run_id(job_id: str, name: str | None) -> str:
    """The run id all ranks of job ``job_id`` derive for a run called ``name``: ``job-<job id>-<name>-<hash>``
    (unsafe characters become ``_``, both parts cut to 40 characters, and 6 hex digits of a hash of
    both keep cut or replaced ones apart).

    Example:
        >>> job_run_id("1234_7", "my run/1")
        'job-1234_7-my_run_1-de7fc3'
    """
    digest = hashlib.sha256(f"{job_id}\0{name or ''}".encode()).hexdigest()[:6]
    parts = [_UNSAFE.sub("_", part)[:40] for part in (job_id, name or "") if part]
    return "-".join(["job", *parts, digest])


def check_run_id(run_id: Any, source: str = "run_id=") -> str:
    """``run_id`` if it is a safe directory name (letters, digits, ``.``, ``_``, ``-``; at most 128
    characters, starting with a letter or digit), else ValueError naming ``source``.

    Example:
        >>> check_run_id("../x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: run_id='../x' is not a usable run id: use letters, digits, '.', '_' and '-' ...
    """
    if not isinstance(run_id, str) or not store.is_shared_id(run_id):  # a safe directory name
        raise ValueError(
            f"{source.rstrip('=')}={run_id!r} is not a usable run id: use letters, digits, '.', '_' "
            f"and '-' (at most 128, starting with a letter or digit)"
        )
    return run_id


def shared_run_id(
    place: Place, name: str | None, run_id: str | None, env: Mapping[str, str] | None = None
) -> str | None:
    """The run id every rank of the job computes alike, by the precedence of the module docstring;
    None for a single process with none given (it gets a fresh id).

    Example:
        >>> shared_run_id(Place(), None, None, {}) is None
        True
        >>> shared_run_id(Place(rank=1, world_size=2), "a", None, {"STEPLOG_RUN_ID": "sweep-3"})
        'sweep-3'
        >>> shared_run_id(Place(rank=1, world_size=2), "a", None, {})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: rank 1 of 2 found no job id to name the run all ranks share; pass init(run_id=...) or set ...
    """
    env = os.environ if env is None else env
    if run_id is not None:
        return check_run_id(run_id)
    if env.get("STEPLOG_RUN_ID"):
        return check_run_id(env["STEPLOG_RUN_ID"], "STEPLOG_RUN_ID=")
    if place.job_id is not None and place.world_size > 1:  # one process under a launcher: a run of its own
        return job_run_id(place.job_id, name)
    if place.world_size > 1:
        raise ValueError(
            f"rank {place.rank} of {place.world_size} found no job id to name the run all ranks share; "
            f"pass init(run_id=...) or set STEPLOG_RUN_ID to the same value on every rank "
            f"(torchrun: --rdzv-id; SLURM sets SLURM_JOB_ID)"
        )
    return None


def device_of(local_rank: int) -> str:
    """The device this rank most likely drives, without importing torch: ``cuda:<k>`` when CUDA
    devices are visible to the process (``CUDA_VISIBLE_DEVICES``), with k the local rank modulo
    their number, else ``cpu``. torch, when the program has already imported it, says for sure.

    Example:
        >>> device_of(0) in ("cpu",) or device_of(0).startswith("cuda:")
        True
    """
    import sys

    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            return f"cuda:{torch.cuda.current_device()}"
    except Exception:  # a broken CUDA setup must not stop training
        pass
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if visible and visible != ["-1"]:
        return f"cuda:{local_rank % len(visible)}"
    return "cpu"
