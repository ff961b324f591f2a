"""One run, many ranks: real processes started with torchrun-style and SLURM-style environments,
a SIGKILLed rank and its relaunch with the restart counter, compaction, and the rules of rank
detection and run ids (steplog.ranks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import steplog
from steplog import ranks, runstatus
from steplog.locks import RunLockedError
from steplog.query import run_info

SRC = str(Path(__file__).resolve().parents[1] / "src")
STEPS = 2000

# Logs `steps` steps from `start` (the checkpoint's step); value = rank * 1e6 + segment-tag * 1e5 + step.
# With a kill step, says so on stdout once that step's log() returned, then waits to be killed.
WORKER = """
import os, sys, time, steplog
root, name, steps, start, tag, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \\
    int(sys.argv[5]), int(sys.argv[6])
run = steplog.init(name=name, root=root, config={"lr": 0.1}, start_step=start)
rank = run.rank
for step in range(start, steps):
    run.log({"value": rank * 1e6 + tag * 1e5 + step, "rank_seen": float(rank)})
    if step == kill_at:
        print("logged", step, flush=True)
        time.sleep(600)
print(run.id, flush=True)
run.finish()
"""


def torchrun_env(rank: int, world: int, job: str = "job42", restart: int = 0) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank % 2),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": "2",
        "TORCHELASTIC_RUN_ID": job,
        "TORCHELASTIC_RESTART_COUNT": str(restart),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }


def slurm_env(rank: int, world: int, job: str = "1234", restart: int = 0) -> dict[str, str]:
    env = {"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank % 2), "SLURM_NTASKS": str(world), "SLURM_JOB_ID": job}
    if restart:
        env["SLURM_RESTART_COUNT"] = str(restart)
    return env


def launch(
    root: Path,
    envs: list[dict[str, str]],
    name: str = "ddp",
    steps: int = STEPS,
    start: int = 0,
    tag: int = 0,
    kill_at: dict[int, int] | None = None,
) -> list[subprocess.Popen]:
    """Start one worker per environment (a clean environment: no launcher variables of ours leak in)."""
    procs = []
    for rank, extra in enumerate(envs):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "TORCHELASTIC_", "OMPI_", "PMIX_", "STEPLOG_"))
            and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")
        }
        env.update(extra, PYTHONPATH=SRC, PYTHONUNBUFFERED="1")
        args = [str(root), name, str(steps), str(start), str(tag), str((kill_at or {}).get(rank, -1))]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(WORKER), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def wait_all(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outs.append(out.strip())
    return outs


def expected(rank: int, steps: range, tag: int = 0) -> list[float]:
    return [rank * 1e6 + tag * 1e5 + s for s in steps]


@pytest.mark.parametrize("make_env", [torchrun_env, slurm_env], ids=["torchrun", "slurm"])
def test_four_ranks_one_run(root, make_env):
    ids = wait_all(launch(root, [make_env(rank, 4) for rank in range(4)]))
    assert len(set(ids)) == 1 and ids[0].startswith("job-")  # one run, named alike on every rank
    run_id = ids[0]
    run_dir = root / run_id
    assert sorted(p.name for p in run_dir.glob("events*.jsonl")) == [
        "events.jsonl",
        "events.rank1.jsonl",
        "events.rank2.jsonl",
        "events.rank3.jsonl",
    ]
    for rank in range(4):
        h = steplog.history(run_id, root=root, rank=rank)
        assert h["step"].to_list() == list(range(STEPS)) and h["value"].to_list() == expected(rank, range(STEPS))
    assert steplog.history(run_id, root=root).equals(steplog.history(run_id, root=root, rank=0))
    every = steplog.history(run_id, root=root, rank="all")
    assert every.height == 4 * STEPS and every["rank"].unique().sort().to_list() == [0, 1, 2, 3]
    assert (every["rank"].cast(pl.Float64) == every["rank_seen"]).all()
    table = steplog.runs(root)
    assert table.select("status", "world_size", "rank_status").row(0) == ("finished", 4, "finished: 0-3")
    info = run_info(run_id, root=root)
    assert info["config"] == {"lr": 0.1} and [f["local_rank"] for f in info["ranks"]] == [0, 1, 0, 1]
    assert all(f["pid"] and f["host"] and f["device"] == "cpu" for f in info["ranks"])
    scanned = steplog.scan(root).collect()
    assert scanned.group_by("rank").len().sort("rank")["len"].to_list() == [STEPS] * 4
    before = (every, scanned, table.drop("end_time", "duration_s"))
    assert steplog.compact(root, quiet=True) == [run_id]
    after = (
        steplog.history(run_id, root=root, rank="all"),
        steplog.scan(root).collect(),
        steplog.runs(root).drop("end_time", "duration_s"),
    )
    for old, new in zip(before, after):
        assert_frame_equal(old, new)
    for rank in range(4):
        assert steplog.history(run_id, root=root, rank=rank)["value"].to_list() == expected(rank, range(STEPS))
    assert run_info(run_id, root=root)["world_size"] == 4


def test_sigkill_of_one_rank_then_relaunch_with_the_restart_counter(root):
    procs = launch(root, [torchrun_env(rank, 4) for rank in range(4)], kill_at={2: 1500})
    assert procs[2].stdout.readline().split() == ["logged", "1500"]
    procs[2].send_signal(signal.SIGKILL)
    procs[2].wait()
    ids = wait_all([p for i, p in enumerate(procs) if i != 2])
    run_id = ids[0]
    info = run_info(run_id, root=root)
    assert info["status"] == "crashed" and info["crashed_ranks"] == [2]
    assert steplog.runs(root)["rank_status"].item() == "finished: 0-1, 3; crashed: 2"
    killed = steplog.history(run_id, root=root, rank=2)  # every step whose log() returned is there
    assert killed["step"].to_list() == list(range(1501)) and killed["value"].to_list() == expected(2, range(1501))
    for rank in (0, 1, 3):
        assert steplog.history(run_id, root=root, rank=rank)["value"].to_list() == expected(rank, range(STEPS))

    # the job restarts from the checkpoint of step 1000 on every rank, with the same command line
    wait_all(launch(root, [torchrun_env(rank, 4, restart=1) for rank in range(4)], start=1000, tag=1))
    assert run_info(run_id, root=root)["status"] == "finished"
    for rank in range(4):
        h = steplog.history(run_id, root=root, rank=rank)
        assert h["step"].to_list() == list(range(STEPS))
        assert h["value"].to_list() == expected(rank, range(1000)) + expected(rank, range(1000, STEPS), tag=1)
    live = steplog.history(run_id, root=root, rank="all")
    steplog.compact(root, quiet=True)
    assert_frame_equal(steplog.history(run_id, root=root, rank="all"), live)


def test_a_restart_with_fewer_ranks(root):
    procs = launch(root, [slurm_env(rank, 4) for rank in range(4)], steps=100, kill_at={3: 50})
    assert procs[3].stdout.readline().startswith("logged")
    procs[3].send_signal(signal.SIGKILL)
    procs[3].wait()
    run_id = wait_all(procs[:3])[0]
    assert run_info(run_id, root=root)["crashed_ranks"] == [3]
    wait_all(launch(root, [slurm_env(rank, 2, restart=1) for rank in range(2)], steps=100, start=40, tag=1))
    info = run_info(run_id, root=root)  # ranks 2 and 3 belong to the first attempt
    assert (info["status"], info["world_size"], [f["rank"] for f in info["ranks"]]) == ("finished", 2, [0, 1])
    steplog.compact(root, quiet=True)
    assert steplog.runs(root).select("status", "world_size").row(0) == ("finished", 2)


def test_explicit_ranks_in_one_process_and_log_ranks(root):
    runs = [
        steplog.init(name="x", root=root, rank=r, world_size=3, run_id="sweep-1", log_ranks=[0, 2]) for r in range(3)
    ]
    assert [run.logging for run in runs] == [True, False, True]
    for run in runs:
        run.log({"loss": float(run.rank)})
        run.finish()
    assert sorted(p.name for p in (root / "sweep-1").glob("events*")) == ["events.jsonl", "events.rank2.jsonl"]
    assert steplog.history("x", root=root, rank="all").select("rank", "loss").rows() == [(0, 0.0), (2, 2.0)]
    with pytest.raises(LookupError, match=r"has no rank 1 \(ranks: 0, 2\)"):
        steplog.history("x", root=root, rank=1)
    with pytest.raises(ValueError, match="rank=-1"):
        steplog.history("x", root=root, rank=-1)


def test_one_writer_per_rank_file(root):
    first = steplog.init(root=root, rank=1, world_size=2, run_id="j")
    with pytest.raises(RunLockedError, match=r"rank 1"):
        steplog.init(root=root, rank=1, world_size=2, run_id="j")
    first.finish()


def test_a_rank_joining_a_shared_run_checks_start_step(root):
    for bad, error in ((-3, ValueError), (2**63, ValueError), (True, TypeError), (1.5, TypeError)):
        with pytest.raises(error, match="step must be"):
            steplog.init(name="a", root=root, rank=0, world_size=2, run_id="x1", start_step=bad)
    assert not (root / "x1" / "events.jsonl").exists()  # nothing written: the check comes first
    run = steplog.init(name="a", root=root, rank=0, world_size=2, run_id="x1", start_step=5)
    run.log({"loss": 1.0})
    run.finish()
    assert steplog.history("x1", root=root)["step"].to_list() == [5]


def test_a_rank_whose_start_event_cannot_be_written_may_start_again(root, monkeypatch):
    """A full disk while a rank writes its start event into a shared run: the error is raised, and
    the file and the writer lock are let go, so a retry in the same process starts the rank."""
    import errno

    from steplog import opening

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(opening, "write_all", full_disk)
    with pytest.raises(OSError, match="No space left"):
        steplog.init(name="a", root=root, rank=0, world_size=2, run_id="x2")
    monkeypatch.undo()
    run = steplog.init(name="a", root=root, rank=0, world_size=2, run_id="x2")  # not RunLockedError
    run.log({"loss": 1.0})
    run.finish()
    assert steplog.history("x2", root=root)["loss"].to_list() == [1.0]


def test_a_rank_that_finishes_while_its_status_is_read_reads_as_finished(root, monkeypatch):
    opened = [steplog.init(name="x", root=root, rank=r, world_size=2, run_id="job-f") for r in range(2)]
    for run in opened:
        run.log({"loss": 1.0})
    opened[0].finish()
    real = runstatus.writer_is_alive
    finished = []

    def finishing_first(run_dir, rank=0):  # rank 1's writer finishes after its last event was read
        if rank == 1 and not finished:
            finished.append(opened[1].finish())
        return real(run_dir, rank)

    monkeypatch.setattr(runstatus, "writer_is_alive", finishing_first)
    assert runstatus.rank_statuses(root / "job-f") == {0: "finished", 1: "finished"}
    assert finished  # the race did happen
    assert runstatus.current_status(root / "job-f") == "finished"


def test_rank_detection_precedence_and_errors():
    env = {**torchrun_env(1, 2, job="abc"), **slurm_env(5, 8)}
    place = ranks.detect(env)  # torchrun's variables win over SLURM's (torchrun inside an allocation)
    assert (place.rank, place.world_size, place.launcher, place.job_id) == (1, 2, "torchrun", "abc")
    assert ranks.detect(env, rank=0, world_size=1).launcher == "explicit"
    mpi = ranks.detect(
        {
            "OMPI_COMM_WORLD_RANK": "2",
            "OMPI_COMM_WORLD_SIZE": "4",
            "OMPI_COMM_WORLD_LOCAL_RANK": "0",
            "OMPI_MCA_ess_base_jobid": "99",
        }
    )
    assert (mpi.rank, mpi.world_size, mpi.job_id, mpi.launcher) == (2, 4, "99", "mpirun")
    array = ranks.detect({**slurm_env(0, 2), "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "3"})
    assert array.job_id == "7_3"
    none = ranks.detect({**torchrun_env(0, 2), "TORCHELASTIC_RUN_ID": "none"})
    assert none.job_id is None  # torchrun's default rendezvous id is no job id
    with pytest.raises(ValueError, match="STEPLOG_RUN_ID"):
        ranks.shared_run_id(none, "a", None, {})
    assert ranks.shared_run_id(none, "a", None, {"STEPLOG_RUN_ID": "mine"}) == "mine"
    assert ranks.shared_run_id(none, "a", "given", {"STEPLOG_RUN_ID": "mine"}) == "given"
    assert ranks.shared_run_id(place, "a", None, {}) != ranks.shared_run_id(place, "b", None, {})
    with pytest.raises(ValueError, match="RANK=4 is not a rank"):
        ranks.detect({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ValueError, match="together"):
        ranks.detect({}, rank=1)
    with pytest.raises(ValueError, match="not a usable run id"):
        ranks.check_run_id("../../etc")


def test_world_size_above_one_without_a_job_id_fails_clearly(root, monkeypatch):
    for var in ("STEPLOG_RUN_ID", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=r"rank 1 of 2 found no job id.*init\(run_id=\.\.\.\)"):
        steplog.init(root=root, rank=1, world_size=2)


def test_runs_of_earlier_versions_read_as_rank_zero(root):
    with steplog.init(name="old", root=root) as run:
        run.log({"loss": 1.0})
    assert steplog.history("old", root=root, rank="all").select("rank", "loss").rows() == [(0, 1.0)]
    steplog.compact(root, quiet=True)
    sidecar = run.dir / "run.json"  # a layout-2 sidecar of the round before ranks: no rank column, no ranks
    frame = pl.read_parquet(run.dir / "metrics.parquet").drop("rank")
    frame.write_parquet(run.dir / "metrics.parquet")
    import orjson

    data = orjson.loads(sidecar.read_bytes())
    data.pop("ranks"), data.pop("world_size")
    data["parquet"]["columns"] = frame.columns
    data["parquet"]["bytes"] = (run.dir / "metrics.parquet").stat().st_size
    sidecar.write_bytes(orjson.dumps(data))
    assert steplog.history("old", root=root)["loss"].to_list() == [1.0]
    assert steplog.history("old", root=root, rank="all").select("rank", "loss").rows() == [(0, 1.0)]
    assert steplog.scan(root).select("rank", "loss").collect().rows() == [(0, 1.0)]
    assert steplog.runs(root).select("world_size", "rank_status").row(0) == (1, None)


def test_show_names_the_crashed_ranks(root):
    for rank in range(3):
        run = steplog.init(name="x", root=root, rank=rank, world_size=3, run_id="job-9")
        run.log({"loss": 1.0})
        if rank != 1:
            run.finish()
    steplog.locks.release_lock(run.dir, 1)  # as if rank 1 had been killed: its lock is free, no finish event
    out = subprocess.run(
        [sys.executable, "-m", "steplog", "show", "x", "--root", str(root)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
        check=True,
    ).stdout
    assert "crashed (rank 1 died without finishing)" in out
    assert "ranks (world size 3):" in out and out.count("finished") >= 2


def test_one_process_under_a_launcher_gets_runs_of_its_own(root, monkeypatch):
    for var, value in slurm_env(0, 1).items():  # e.g. pytest or a sweep inside a one-task SLURM job
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("STEPLOG_RUN_ID", raising=False)
    first = steplog.init(name="trial", root=root)
    first.finish()
    second = steplog.init(name="trial", root=root)
    second.finish()
    assert first.id != second.id and steplog.runs(root).height == 2


def test_a_damaged_parquet_file_falls_back_to_every_rank_archived_events(root):
    for rank in range(2):
        run = steplog.init(name="x", root=root, rank=rank, world_size=2, run_id="job-3")
        run.log({"loss": float(rank)})
        run.finish()
    live = steplog.history("x", root=root, rank="all")
    steplog.compact(root, quiet=True)
    (run.dir / "metrics.parquet").write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="unreadable"):
        assert_frame_equal(steplog.history("x", root=root, rank="all"), live)
    with pytest.warns(UserWarning, match="unreadable"):
        assert steplog.history("x", root=root, rank=1)["loss"].to_list() == [1.0]


def test_system_metrics_follow_the_rank(root, monkeypatch):
    for rank in range(2):  # one host, two ranks: the host's CPU and memory from local rank 0 only
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        with steplog.init(
            name="sys", root=root, rank=rank, world_size=2, run_id="job-s", system_metrics=True, system_interval=60
        ) as run:
            run.log({"loss": 1.0})
    frame = steplog.system("sys", root=root)
    assert sorted(frame["rank"].unique().to_list()) == [0, 1]
    host = frame.filter(pl.col("host_cpu_percent").is_not_null())["rank"].unique().to_list()
    assert host == [0] and frame.filter(pl.col("rank") == 1)["proc_rss_bytes"].min() > 0


def test_a_read_from_the_logging_thread_sees_every_rank_it_has_open(root):
    opened = []
    for rank in range(3):  # buffered: nothing is written until a flush
        with pytest.warns(DeprecationWarning):
            opened.append(steplog.init(root=root, rank=rank, world_size=3, run_id="job-b", durability="buffered"))
        opened[-1].log({"loss": float(rank)})
    assert steplog.history("job-b", root=root, rank="all").select("rank", "loss").rows() == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
    ]
    for run in opened:
        run.finish()
