"""Make the importer fixtures in this folder with the real libraries, and expected.json with what was written.

Run from the repository root, in an environment with tensorboardX, mlflow (+ sqlalchemy, alembic),
wandb and trackio installed (see docs/importers.md):

    python tests/data/importers/make_fixtures.py

Each source gets one small run whose values include NaN and infinities where the library keeps them.
expected.json holds, per fixture, what the library was asked to write: {step: {metric: value}} (non-finite
values as the strings "nan", "inf", "-inf"), and the config.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = range(5)


def values(step: int) -> dict[str, float]:
    """The metrics every fixture logs at ``step`` (a NaN at step 3, an infinity at step 4)."""
    loss = 1.0 / (step + 1) if step != 3 else math.nan
    return {"loss": loss, "acc": step * 0.1 if step != 4 else math.inf}


def encoded(rows: dict[int, dict[str, float]]) -> dict[str, dict[str, object]]:
    return {str(s): {k: (v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")))
                     for k, v in m.items()} for s, m in rows.items()}


def tensorboard() -> dict:
    from tensorboardX import SummaryWriter

    folder = HERE / "tb_logs" / "run-a"
    shutil.rmtree(HERE / "tb_logs", ignore_errors=True)
    writer = SummaryWriter(logdir=str(folder))
    for step in STEPS:
        for key, value in values(step).items():
            writer.add_scalar(key, value, step, walltime=1_700_000_000.0 + step)
    writer.close()
    return {"rows": encoded({s: values(s) for s in STEPS}), "config": {}}


def mlflow() -> dict:
    import mlflow as ml

    db = HERE / "mlflow.db"
    db.unlink(missing_ok=True)
    ml.set_tracking_uri(f"sqlite:///{db}")
    ml.set_experiment("fixture")
    with ml.start_run(run_name="run-a"):
        ml.log_params({"lr": 0.1, "layers": 2})
        ml.set_tag("team", "vision")
        for step in STEPS:
            ml.log_metrics(values(step), step=step, timestamp=1_700_000_000_000 + 1000 * step)
    import sqlite3

    with sqlite3.connect(db) as connection:  # MLflow's schema is mostly empty tables: keep the fixture small
        connection.execute("VACUUM")
    return {"rows": encoded({s: values(s) for s in STEPS}), "config": {"lr": "0.1", "layers": "2"}}


def wandb() -> dict:
    folder = HERE / "wandb"  # where wandb writes; moved to wandb_offline (a folder named wandb would shadow
    shutil.rmtree(folder, ignore_errors=True)  # the package when pytest puts this folder on sys.path)
    shutil.rmtree(HERE / "wandb_offline", ignore_errors=True)
    code = (f"import wandb, sys; sys.path.insert(0, {str(HERE)!r}); from make_fixtures import values, STEPS\n"
            f"run = wandb.init(project='fixture', name='run-a', dir={str(HERE)!r}, config={{'lr': 0.1, 'model': {{'d': 4}}}})\n"
            "for s in STEPS: run.log(values(s), step=s)\n"
            "run.summary['best'] = 0.25\nrun.finish()\n")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    for offline in folder.glob("offline-run-*"):  # keep only the run file: logs and tmp folders are not needed
        for extra in offline.iterdir():
            if not extra.name.endswith(".wandb"):
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    for extra in folder.iterdir():
        if not extra.name.startswith("offline-run-"):
            shutil.rmtree(extra) if extra.is_dir() and not extra.is_symlink() else extra.unlink()
    folder.rename(HERE / "wandb_offline")
    return {"rows": encoded({s: values(s) for s in STEPS}), "config": {"lr": 0.1, "model": {"d": 4}}}


def trackio() -> dict:
    folder = HERE / "trackio_store"
    shutil.rmtree(folder, ignore_errors=True)
    code = (f"import trackio, sys; sys.path.insert(0, {str(HERE)!r}); from make_fixtures import values, STEPS\n"
            "trackio.init(project='fixture', name='run-a', config={'lr': 0.1})\n"
            "for s in STEPS: trackio.log(values(s), step=s)\n"
            "trackio.finish()\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, TRACKIO_DIR=str(folder)))
    for extra in folder.iterdir():
        if extra.suffix != ".db":
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    return {"rows": encoded({s: values(s) for s in STEPS}), "config": {"lr": 0.1}}


def main() -> None:
    expected = {"tensorboard": tensorboard(), "mlflow": mlflow(), "wandb": wandb(), "trackio": trackio()}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
