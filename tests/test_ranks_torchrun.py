"""A real torchrun job: 4 processes on the gloo backend train a tiny model with DistributedDataParallel
and log loss and throughput per rank into one run. Needs torch (the CPU wheel is enough; .ci/run installs
it where a wheel exists for the platform)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import steplog
from steplog.query import run_info

torch = pytest.importorskip("torch", reason="torch is not installed: the torchrun test needs the CPU wheel of torch")
SRC = str(Path(__file__).resolve().parents[1] / "src")
STEPS = 60

TRAIN = """
import sys, time
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
import steplog

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = DistributedDataParallel(torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
gen = torch.Generator().manual_seed(rank)
true_w = torch.arange(8, dtype=torch.float32)
run = steplog.init(name="ddp-tiny", root=sys.argv[1], config={"lr": 0.05, "world": world})
for step in range(int(sys.argv[2])):
    began = time.perf_counter()
    x = torch.randn(32, 8, generator=gen)
    loss = torch.nn.functional.mse_loss(model(x).squeeze(-1), x @ true_w)
    opt.zero_grad()
    loss.backward()
    opt.step()
    run.log({"loss": loss.detach(), "samples_per_s": 32 / (time.perf_counter() - began)})
run.finish()
dist.destroy_process_group()
"""


def test_torchrun_gloo_job_logs_every_rank_into_one_run(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TRAIN))
    root = tmp_path / "logs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "STEPLOG_", "TORCHELASTIC_"))}
    env.update(PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "4", str(script), str(root), str(STEPS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = steplog.runs(root)
    assert runs.height == 1 and runs.select("status", "world_size").row(0) == ("finished", 4)
    run_id = runs["run_id"].item()
    info = run_info(run_id, root=root)
    assert info["config"] == {"lr": 0.05, "world": 4}  # rank 0 records the config; the others do not
    assert steplog.read_events(root / run_id / "events.rank1.jsonl").start["config"] == {}
    assert [f["rank"] for f in info["ranks"]] == [0, 1, 2, 3] and {f["device"] for f in info["ranks"]} == {"cpu"}
    assert len({f["pid"] for f in info["ranks"]}) == 4
    every = steplog.history(run_id, root=root, rank="all")
    assert every.group_by("rank").len().sort("rank")["len"].to_list() == [STEPS] * 4
    assert every["samples_per_s"].min() > 0 and all(math.isfinite(v) for v in every["loss"])
    per_rank = every.group_by("rank").agg(first=pl_first("loss"), last=pl_last("loss"))
    assert (per_rank["last"] < per_rank["first"]).all()  # the model learns on every rank
    assert steplog.compact(root, quiet=True) == [run_id]
    assert steplog.history(run_id, root=root, rank="all").equals(every)


def pl_first(column: str):
    import polars as pl

    return pl.col(column).head(5).mean()


def pl_last(column: str):
    import polars as pl

    return pl.col(column).tail(5).mean()
