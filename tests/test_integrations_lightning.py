"""SteplogLogger with the real Lightning on a tiny model: the history holds exactly what Lightning logged."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("lightning")  # the `lightning` extra; CI installs it (see pyproject's test extra)

import lightning.pytorch as lp
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.logger import Logger

import steplog
from steplog.integrations.lightning import SteplogLogger


class Recorder(Logger):
    """A second logger that keeps every call Lightning makes, to compare with the history."""

    def __init__(self):
        super().__init__()
        self.metrics, self.hparams, self.statuses = [], {}, []

    name, version = "recorder", 0

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        self.hparams.update(dict(params))

    def finalize(self, status):
        self.statuses.append(status)


class Tiny(lp.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 3):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch, _):
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def trainer(tmp_path, loggers, epochs, every=1, **kwargs):
    return lp.Trainer(max_epochs=epochs, logger=loggers, log_every_n_steps=every, accelerator="cpu", devices=1,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


def expected_rows(recorded):
    """What history should hold: per step, the later value wins per key (as Run.log merges a step)."""
    rows = {}
    for step, metrics in recorded:
        rows.setdefault(step, {}).update(metrics)
    return rows


def assert_history_matches(history, rows):
    assert history["step"].to_list() == sorted(rows)
    for record in history.iter_rows(named=True):
        for key, value in rows[record["step"]].items():
            assert record[key] == float(value), (record["step"], key)


def test_fit_and_test_write_what_lightning_reported(tmp_path, root):
    recorder, logger = Recorder(), SteplogLogger(name="tiny", root=root, config={"seed": 0})
    t = trainer(tmp_path, [logger, recorder], epochs=2, enable_checkpointing=False)
    t.fit(Tiny(lr=0.05), loader(), loader(1))
    assert recorder.metrics and all(step is not None for step, _ in recorder.metrics)
    history = steplog.history("tiny", root=root)
    assert_history_matches(history, expected_rows(recorder.metrics))
    record = steplog.runs(root).row(0, named=True)
    assert record["status"] == "finished"
    assert (record["config.seed"], record["config.lr"], record["config.hidden"]) == (0, 0.05, 3)
    assert logger.version == logger.experiment.id and logger.name == "tiny"

    t.test(t.lightning_module, loader(2))  # a later stage reopens the same run
    assert len(steplog.runs(root)) == 1 and steplog.runs(root)["status"].item() == "finished"
    test_step, test_metrics = recorder.metrics[-1]
    after = steplog.history("tiny", root=root)
    assert after.filter(after["step"] == test_step)["test_loss"].item() == test_metrics["test_loss"]
    fit_rows = history.filter(history["step"] < test_step)  # the fit's rows before the test's step are kept
    assert fit_rows.equals(after.filter(after["step"] < test_step).select(fit_rows.columns))


def test_exception_fails_the_run(tmp_path, root):
    class Exploding(Tiny):
        def training_step(self, batch, index):
            if self.global_step == 2:
                raise RuntimeError("loss diverged")
            return super().training_step(batch, index)

    t = trainer(tmp_path, SteplogLogger(name="boom", root=root), epochs=1, enable_checkpointing=False)
    with pytest.raises(RuntimeError, match="diverged"):
        t.fit(Exploding(), loader())
    record = steplog.runs(root).row(0, named=True)
    assert record["status"] == "failed"
    assert steplog.history("boom", root=root)["step"].to_list() == [0, 1]


def test_resume_from_checkpoint_continues_the_run_rewound(tmp_path, root):
    first = SteplogLogger(name="resumable", root=root)
    checkpoints = ModelCheckpoint(save_top_k=-1, every_n_epochs=1)
    t = trainer(tmp_path, first, epochs=3, callbacks=[checkpoints])
    t.fit(Tiny(), loader())
    run_id = first.version
    saved = sorted((tmp_path / "resumable" / run_id / "checkpoints").glob("*.ckpt"))
    assert len(saved) == 3
    after_epoch_1 = saved[0]
    restart_step = torch.load(after_epoch_1, weights_only=False)["global_step"]

    recorder = Recorder()
    again = SteplogLogger(name="resumable", root=root, resume=after_epoch_1)
    t2 = trainer(tmp_path, [again, recorder], epochs=3, every=3)  # the first step logged after resuming is
    # past the checkpoint's: the run is still rewound to the checkpoint's step
    t2.fit(Tiny(), loader(), ckpt_path=after_epoch_1)
    assert again.version == run_id and len(steplog.runs(root)) == 1
    everything = steplog.history(run_id, root=root, all_segments=True)
    resumed = everything.filter(everything["segment"] == 1)
    assert resumed["step"].min() > restart_step
    old = everything.filter(everything["segment"] == 0)
    assert old.filter(old["step"] >= restart_step)["superseded"].all()
    assert not old.filter(old["step"] < restart_step)["superseded"].any()
    current = steplog.history(run_id, root=root)
    assert_history_matches(current.filter(current["step"] >= restart_step), expected_rows(recorder.metrics))
    assert not any(math.isnan(v) for v in current["train_loss"].drop_nulls().to_list())
