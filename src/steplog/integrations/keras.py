"""Keras 3: ``SteplogCallback``, a ``keras.callbacks.Callback`` writing to a steplog run.

``model.fit(..., callbacks=[SteplogCallback(name="mnist")])``: the run opens when training begins,
with ``fit``'s parameters (epochs, steps per epoch) and the optimizer's config added to the config
(``config["fit"]``, ``config["optimizer"]``). Every training batch's logs are logged as
``batch/<name>`` at the global batch step (0, 1, 2, ... across epochs), every epoch's logs (with
the validation metrics) as ``epoch/<name>`` plus ``epoch`` at the step of the epoch's last batch.
The run finishes when training ends. Any Keras backend (torch, JAX, TensorFlow).

Imports keras when this module is imported.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> callback = SteplogCallback(name="demo", root=root)
    >>> callback.on_train_begin()
    >>> callback.on_train_batch_end(0, {"loss": 0.5}); callback.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.6})
    >>> callback.on_train_end()
    >>> steplog.history("demo", root=root).select("step", "batch/loss", "epoch/val_loss", "epoch").rows()
    [(0, 0.5, 0.6, 0.0)]
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import keras

from ._common import RunHolder


class SteplogCallback(keras.callbacks.Callback):
    """Write a Keras ``fit`` to a steplog run. ``log_batches=False`` logs epochs only. ``config`` is the
    run's starting config; other keyword arguments go to ``steplog.init``.

    Example:
        >>> import tempfile
        >>> SteplogCallback(root=tempfile.mkdtemp()).run is None
        True
    """

    def __init__(self, name: str | None = None, root: str | os.PathLike = "experiment_logs", config: Any = None, *,
                 log_batches: bool = True, resume: str | os.PathLike | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        self._holder = RunHolder(name=name, root=root, config=config, resume=resume, **init_kwargs)
        self.log_batches = log_batches
        self._step = -1

    @property
    def run(self):
        """The ``steplog.Run`` (None before training began; closed after it ended)."""
        return self._holder.current

    def on_train_begin(self, logs=None) -> None:
        """Open the run (a second ``fit`` continues it as a new segment) and record fit's settings."""
        run = self._holder.run
        self._step = run.step if run.step is not None else -1
        config: dict[str, Any] = {}
        if self.params:
            config["fit"] = {k: v for k, v in self.params.items() if isinstance(v, (int, float, str, bool))}
        optimizer = getattr(self.model, "optimizer", None) if self._model_set() else None
        if optimizer is not None and hasattr(optimizer, "get_config"):
            try:
                config["optimizer"] = optimizer.get_config()
            except (TypeError, ValueError, AttributeError, NotImplementedError) as exc:  # never stop training
                warnings.warn(f"steplog: the optimizer's config could not be read ({exc}); not recorded", stacklevel=2)
        self._holder.update_config(config)

    def on_train_batch_end(self, batch, logs=None) -> None:
        """Log the batch's logs as ``batch/<name>`` at the global batch step."""
        self._step += 1
        if self.log_batches and logs:
            self._holder.log({f"batch/{k}": v for k, v in logs.items()}, max(self._step, 0))

    def on_epoch_end(self, epoch, logs=None) -> None:
        """Log the epoch's logs as ``epoch/<name>`` (and ``epoch``) at the step of its last batch."""
        self._holder.log({"epoch": epoch, **{f"epoch/{k}": v for k, v in (logs or {}).items()}}, max(self._step, 0))

    def on_train_end(self, logs=None) -> None:
        """Finish the run."""
        self._holder.close("finished")

    def _model_set(self) -> bool:
        try:
            return self.model is not None
        except AttributeError:
            return False
