"""SteplogCallback with real Keras 3 (torch backend) on a tiny model: the history holds what Keras reported."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; CI has torch, not TensorFlow
keras = pytest.importorskip("keras")  # the `keras` extra; CI installs it (see pyproject's test extra)

import numpy as np

import steplog
from steplog.integrations.keras import SteplogCallback


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append({k: float(v) for k, v in logs.items()})

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((epoch, {k: float(v) for k, v in logs.items()}))


def fit(callbacks, epochs=2, seed=0):
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse", metrics=["mae"])
    model.fit(x, y, batch_size=8, epochs=epochs, validation_data=(x[:8], y[:8]), callbacks=callbacks, verbose=0)
    return model


def test_batches_and_epochs_are_logged_as_keras_reported(root):
    recorder, callback = Recorder(), SteplogCallback(name="tiny", root=root)
    fit([callback, recorder])
    history = steplog.history("tiny", root=root)
    assert history["step"].to_list() == list(range(8))  # 2 epochs x 4 batches, one global step per batch
    for step, logs in enumerate(recorder.batches):
        row = history.row(step, named=True)
        assert {k: row[f"batch/{k}"] for k in logs} == logs
    for epoch, logs in recorder.epochs:
        row = history.row(4 * epoch + 3, named=True)
        assert row["epoch"] == epoch and {k: row[f"epoch/{k}"] for k in logs} == logs
    assert "epoch/val_loss" in history.columns
    record = steplog.runs(root).row(0, named=True)
    assert record["status"] == "finished" and record["config.fit.epochs"] == 2
    assert record["config.optimizer.learning_rate"] == pytest.approx(0.01)
    assert callback.run.name == "tiny"


def test_a_second_fit_continues_the_run(root):
    callback = SteplogCallback(name="twice", root=root, log_batches=False)
    fit([callback], epochs=1)
    fit([callback], epochs=1, seed=1)
    history = steplog.history("twice", root=root)
    assert history["step"].to_list() == [3, 7] and history["epoch"].to_list() == [0.0, 0.0]
    assert len(steplog.runs(root)) == 1
