"""The W&B and trackio importers on runs written by the real libraries (offline / local)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
from importer_checks import assert_values, no_leftovers

import steplog
from steplog import importers
from steplog.importers import SourceError

WRITE = """
import json, math, random, sys
rng = random.Random(int(sys.argv[2]))
rows = {}
for step in range(0, 60, 3):
    metrics = {"loss": rng.gauss(0, 1), "acc": rng.random(), "nested": {"a": rng.random()}}
    if step == 6:
        metrics["loss"] = math.nan
    if step == 9:
        metrics["acc"] = -math.inf
    rows[step] = metrics
"""


def run_writer(code: str, tmp_path, seed: int, env: dict) -> dict:
    script = textwrap.dedent(WRITE) + textwrap.dedent(code) + "\nprint(json.dumps({s: m for s, m in rows.items()}))\n"
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(seed)], check=True, capture_output=True,
                         text=True, env={**os.environ, **env}, cwd=tmp_path).stdout
    import json

    rows = json.loads(out.strip().splitlines()[-1].replace("NaN", '"nan"').replace("-Infinity", '"-inf"'))
    flat = {}
    for step, metrics in rows.items():
        nested = metrics.pop("nested")
        flat[int(step)] = {k: (float(v) if not isinstance(v, str) else {"nan": math.nan, "-inf": -math.inf}[v])
                           for k, v in metrics.items()}
        flat[int(step)]["nested/a" if "wandb" in code else "nested"] = nested["a"]
    return flat


def test_wandb_offline_runs(tmp_path, root):
    pytest.importorskip("wandb")  # in the `test` extra: CI installs it
    code = """
    import wandb
    run = wandb.init(project="p", name=f"seed{sys.argv[2]}", dir=sys.argv[1], config={"lr": 0.1, "opt": {"beta": 0.9}},
                     tags=["old"])
    for s, m in rows.items():
        run.log(m, step=s)
    run.summary["best"] = 0.5
    run.finish(exit_code=int(sys.argv[2]) % 2)
    """
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    logged = {seed: run_writer(code, tmp_path, seed, env) for seed in (2, 3)}
    ids = importers.wandb(tmp_path / "wandb", root=root, quiet=True)
    runs = {r["name"]: r for r in steplog.runs(root).iter_rows(named=True)}
    assert len(ids) == 2 and set(runs) == {"seed2", "seed3"}
    for seed, rows in logged.items():
        record = runs[f"seed{seed}"]
        assert_values(record["run_id"], root, rows)
        assert record["status"] == ("finished" if seed % 2 == 0 else "failed")
        assert (record["config.lr"], record["config.opt.beta"]) == (0.1, 0.9)
        meta = steplog.query.run_info(record["run_id"], root=root)["meta"]
        assert meta["summary"]["best"] == 0.5 and meta["wandb"]["tags"] == ["old"] and meta["wandb"]["project"] == "p"
    assert importers.wandb(tmp_path / "wandb", root=root, quiet=True) == ids


def test_wandb_corrupt_file(tmp_path, root):
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b":W&B\xe1\xbe\x00" + b"\0\0\0\0\x10\0\x01" + b"\xff" * 16)
    with pytest.raises(SourceError, match="run-x.wandb"):
        importers.wandb(bad, root=root, quiet=True)
    bad.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(SourceError, match="not a W&B run file"):
        importers.wandb(bad, root=root, quiet=True)
    no_leftovers(root)


def test_trackio_projects(tmp_path, root):
    pytest.importorskip("trackio")  # in the `test` extra: CI installs it
    code = """
    import trackio
    trackio.init(project="proj", name=f"seed{sys.argv[2]}", config={"lr": 0.1})
    for s, m in rows.items():
        flat = {k: v for k, v in m.items() if k != "nested"}
        trackio.log(flat | {"nested": m["nested"]["a"], "note": "text"}, step=s)
    trackio.finish()
    """
    env = {"TRACKIO_DIR": str(tmp_path / "trackio")}
    logged = {seed: run_writer(code, tmp_path, seed, env) for seed in (4, 5)}
    ids = importers.trackio(tmp_path / "trackio", root=root, quiet=True)
    runs = {r["name"]: r for r in steplog.runs(root).iter_rows(named=True)}
    assert len(ids) == 2 and set(runs) == {"seed4", "seed5"}
    for seed, rows in logged.items():
        assert_values(runs[f"seed{seed}"]["run_id"], root, rows)
        assert runs[f"seed{seed}"]["config.lr"] == 0.1
    assert importers.trackio(tmp_path / "trackio" / "proj.db", root=root, quiet=True) == ids


def test_trackio_not_a_database(tmp_path, root):
    (tmp_path / "proj.db").write_text("hello")
    with pytest.raises(SourceError, match="proj.db"):
        importers.trackio(tmp_path, root=root, quiet=True)
    no_leftovers(root)
