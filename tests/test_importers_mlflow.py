"""The MLflow importer on a SQLite store written by mlflow itself, and on a file store (mlruns/)."""

from __future__ import annotations

import math
import random

import pytest
from importer_checks import assert_values, no_leftovers, origin

import steplog
from steplog import importers
from steplog.importers import SourceError

mlflow = pytest.importorskip("mlflow")  # in the `test` extra (with sqlalchemy and alembic): CI installs it


@pytest.fixture
def store(tmp_path):
    """Two experiments, three runs (one failed, one still running, one deleted): what was logged per run."""
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    rng = random.Random(1)
    logged = {}
    for experiment, runs in (("vision", ["a", "b"]), ("text", ["c", "deleted"])):
        mlflow.set_experiment(experiment)
        for name in runs:
            run = mlflow.start_run(run_name=name)
            mlflow.log_params({"lr": rng.random(), "name": name})
            mlflow.set_tags({"owner": "me"})
            rows = {}
            for step in range(0, 40, 4):
                metrics = {"loss": rng.gauss(0, 1), "acc": rng.random()}
                if step == 8:
                    metrics["loss"] = math.nan if name == "a" else math.inf
                mlflow.log_metrics(metrics, step=step)
                rows[step] = metrics
            logged[name] = (run.info.run_id, rows)
            mlflow.end_run("FAILED" if name == "b" else "FINISHED")
            if name == "deleted":
                mlflow.delete_run(run.info.run_id)
    mlflow.MlflowClient().update_run(logged["c"][0], status="RUNNING")  # as a run whose process died shows
    return tmp_path / "mlflow.db", logged


def test_every_metric_history_params_tags_and_status(store, root):
    path, logged = store
    ids = importers.mlflow(path, root=root, quiet=True)
    assert len(ids) == 3  # the deleted run is left out
    runs = {r["name"]: r for r in steplog.runs(root).iter_rows(named=True)}
    assert set(runs) == {"a", "b", "c"}
    assert (runs["a"]["status"], runs["b"]["status"], runs["c"]["status"]) == ("finished", "failed", "crashed")
    for name in "abc":
        run_id, rows = logged[name]
        assert_values(runs[name]["run_id"], root, rows)
        assert runs[name]["config.name"] == name  # params are text in MLflow
        info = steplog.query.run_info(runs[name]["run_id"], root=root)
        assert info["meta"]["tags"]["owner"] == "me" and info["meta"]["mlflow"]["run_id"] == run_id
        assert info["meta"]["mlflow"]["experiment"] == ("vision" if name != "c" else "text")
        assert origin(runs[name]["run_id"], root)["id"] == run_id
        mlflow_run = mlflow.MlflowClient().get_run(run_id)
        assert runs[name]["start_time"].timestamp() == pytest.approx(mlflow_run.info.start_time / 1000)
        history = mlflow.MlflowClient().get_metric_history(run_id, "acc")
        times = steplog.history(runs[name]["run_id"], root=root)["time"].to_list()
        assert [t.timestamp() for t in times] == pytest.approx([m.timestamp / 1000 for m in history])
    assert importers.mlflow(path, root=root, quiet=True) == ids  # idempotent


def test_file_store(tmp_path, root):
    run = tmp_path / "mlruns" / "1" / "abc123"
    (run / "metrics" / "train").mkdir(parents=True)
    (run / "params").mkdir()
    (tmp_path / "mlruns" / "1" / "meta.yaml").write_text("experiment_id: '1'\nlifecycle_stage: active\nname: exp\n")
    (run / "meta.yaml").write_text("run_id: abc123\nrun_name: old-run\nstatus: 3\nstart_time: 1700000000000\n"
                                   "end_time: 1700000100000\nlifecycle_stage: active\n")
    (run / "params" / "lr").write_text("0.1")
    (run / "metrics" / "train" / "loss").write_text("1700000001000 2.5 0\n1700000002000 nan 1\n1700000003000 1.25 2\n")
    [run_id] = importers.mlflow(tmp_path / "mlruns", root=root, quiet=True)
    assert_values(run_id, root, {0: {"train/loss": 2.5}, 1: {"train/loss": math.nan}, 2: {"train/loss": 1.25}})
    record = steplog.runs(root).row(0, named=True)
    found = (record["name"], record["config.lr"], record["status"], record["duration_s"])
    assert found == ("old-run", "0.1", "finished", 100)


def test_not_a_database(tmp_path, root):
    bad = tmp_path / "mlflow.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SourceError, match="mlflow.db"):
        importers.mlflow(bad, root=root, quiet=True)
    no_leftovers(root)
