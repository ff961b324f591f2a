"""Hugging Face transformers: ``SteplogCallback``, a ``TrainerCallback`` writing to a steplog run.

``Trainer(..., callbacks=[SteplogCallback(root="experiment_logs")])`` (and ``report_to="none"`` to
keep the other trackers out): ``on_train_begin`` opens the run (named after ``args.run_name``
unless ``name=`` is given) and records the ``TrainingArguments`` (``config["training_args"]``),
the model's config (``config["model"]``) and what the Trainer computes late (``config["trainer"]``:
max steps, epochs, batch size); ``on_log`` and ``on_evaluate`` log the numbers reported at
``state.global_step``; ``on_train_end`` finishes the run. Only the world's process zero writes.

Resuming: the callback saves its run id in each checkpoint's ``trainer_state.json``; so
``trainer.train(resume_from_checkpoint=...)`` continues that same run, rewound to the
checkpoint's step (what the first training logged after it is superseded). Logging after
``on_train_end`` (``trainer.evaluate()`` after ``train()``) reopens the run as a new segment.

Imports transformers when this module is imported.

Example:
    >>> import tempfile, steplog
    >>> from transformers import TrainerControl, TrainerState, TrainingArguments
    >>> root, args = tempfile.mkdtemp(), TrainingArguments(output_dir=tempfile.mkdtemp(), report_to="none")
    >>> callback, state = SteplogCallback(name="demo", root=root), TrainerState()
    >>> callback.on_train_begin(args, state, TrainerControl())
    >>> state.global_step = 10
    >>> callback.on_log(args, state, TrainerControl(), logs={"loss": 0.5, "learning_rate": 1e-3})
    >>> callback.on_train_end(args, state, TrainerControl())
    >>> steplog.history("demo", root=root).select("step", "loss").rows()
    [(10, 0.5)]
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from ._common import RunHolder

try:
    from transformers.trainer_callback import ExportableState
except ImportError:  # transformers before 4.42: no callback state in checkpoints
    ExportableState = object  # type: ignore[misc,assignment]


class SteplogCallback(TrainerCallback, ExportableState):
    """Write a Trainer's logs to a steplog run. ``config`` is the run's starting config; other keyword
    arguments go to ``steplog.init`` (``durability=...``); ``resume`` reopens a given run (id, name or
    ``"auto"``) when the checkpoint does not name one.

    Example:
        >>> import tempfile
        >>> SteplogCallback(name="x", root=tempfile.mkdtemp()).state()
        {'args': {}, 'attributes': {'run_id': None}}
    """

    def __init__(self, name: str | None = None, root: str | os.PathLike = "experiment_logs", config: Any = None, *,
                 resume: str | os.PathLike | None = None, **init_kwargs: Any) -> None:
        self._holder = RunHolder(name=name, root=root, config=config, resume=resume, **init_kwargs)

    @property
    def run(self):
        """The ``steplog.Run`` (None before training began on process zero; closed after it ended)."""
        return self._holder.current

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback: the run id, so resuming continues the run."""
        return {"args": {}, "attributes": {"run_id": self._holder.run_id if self._holder.opened else None}}

    def on_train_begin(self, args, state, control, model=None, **kwargs) -> None:
        """Open the run (or resume the checkpoint's, rewound to its step) and record the config."""
        if not state.is_world_process_zero:
            return
        saved = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        run_id = saved.get("attributes", {}).get("run_id") if isinstance(saved, dict) else None
        if self._holder.name is None and getattr(args, "run_name", None):
            self._holder.name = args.run_name
        if state.global_step > 0 and (run_id or self._holder.resume):  # resume_from_checkpoint
            if self._holder.opened:
                self._holder.close("finished")
            self._holder.open(resume=run_id, start_step=state.global_step)
        elif not self._holder.opened:
            self._holder.open()
        config: dict[str, Any] = {"training_args": args.to_sanitized_dict()}
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            config["model"] = model_config.to_dict()
        config["trainer"] = {k: getattr(state, k, None) for k in ("max_steps", "num_train_epochs", "train_batch_size")}
        self._holder.update_config(config)

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        """Log the numbers of ``logs`` at ``state.global_step``."""
        if state.is_world_process_zero and logs:
            self._holder.log(logs, state.global_step)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        """Log the evaluation metrics at ``state.global_step``."""
        if state.is_world_process_zero and metrics:
            self._holder.log(metrics, state.global_step)

    def on_train_end(self, args, state, control, **kwargs) -> None:
        """Finish the run."""
        if state.is_world_process_zero:
            self._holder.close("finished")
