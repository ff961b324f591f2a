"""PyTorch Lightning: ``SteplogLogger``, a Lightning ``Logger`` writing to a steplog run.

``Trainer(logger=SteplogLogger(name="mnist", root="experiment_logs"))``: every ``self.log(...)``
Lightning flushes arrives as ``Run.log(metrics, step=step)`` at Lightning's own step, the
module's hyperparameters (``save_hyperparameters``) as ``Run.update_config`` (Lightning reads
``logger.experiment`` before it reports them), and the end of ``fit``/``test`` finishes the run
with Lightning's status (``failed`` on an exception). A later stage (``trainer.test`` after
``fit``) reopens the run as a new segment. Only rank zero writes (the other ranks' logger is a no-op).

Resuming: ``version`` is the run id, so Lightning's default checkpoints land in
``<default_root_dir>/<name>/<run id>/checkpoints``. ``SteplogLogger(resume=...)`` with that
checkpoint's path (or the run id) continues the same run; its steps from the checkpoint's
``global_step`` on (read from the checkpoint; with a run id, from the first step logged) are
superseded by the resumed training (rewind), as ``steplog.init(resume=..., start_step=...)`` does.

Imports Lightning (``lightning.pytorch``, else ``pytorch_lightning``) when this module is imported.

Example:
    >>> import tempfile
    >>> logger = SteplogLogger(name="demo", root=tempfile.mkdtemp())
    >>> logger.log_hyperparams({"lr": 0.01})
    >>> logger.log_metrics({"train_loss": 0.5}, step=0)
    >>> logger.finalize("success")
    >>> logger.experiment.name == logger.name == "demo"
    True
"""

from __future__ import annotations

import os
from argparse import Namespace
from pathlib import Path
from typing import Any

from .. import format as fmt
from ..silentrun import SilentRun
from ..store import is_run_id
from ..writer import Run
from ._common import RunHolder

try:
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
except ImportError:  # the older package name
    from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment  # type: ignore[assignment, unused-ignore]
    from pytorch_lightning.utilities.rank_zero import rank_zero_only  # type: ignore[assignment, unused-ignore]

_STATUS = {"success": fmt.FINISHED, "finished": fmt.FINISHED, "failed": fmt.FAILED}


def run_of_checkpoint(path: str | os.PathLike) -> str | None:
    """The run id in a checkpoint path of Lightning's default layout
    (``<root dir>/<name>/<run id>/checkpoints/<file>.ckpt``), else None.

    Example:
        >>> run_of_checkpoint("out/mnist/20260101-120000-000-abcdef/checkpoints/epoch=1-step=20.ckpt")
        '20260101-120000-000-abcdef'
    """
    parent = Path(path).parent
    return parent.parent.name if parent.name == "checkpoints" and is_run_id(parent.parent.name) else None


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The ``global_step`` a Lightning checkpoint was saved at (read memory-mapped), None if unreadable.

    Example:
        >>> checkpoint_step("/no/such.ckpt") is None
        True
    """
    import torch

    try:
        step = torch.load(path, map_location="cpu", mmap=True, weights_only=False).get("global_step")
    except (OSError, RuntimeError, ValueError, AttributeError, EOFError):
        return None
    return step if isinstance(step, int) else None


class SteplogLogger(Logger):
    """A Lightning logger writing one steplog run. ``config`` is the run's starting config; other
    keyword arguments go to ``steplog.init`` (``durability=...``).

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> logger = SteplogLogger(name="x", root=root, config={"seed": 0})
        >>> logger.log_metrics({"loss": 1.0, "epoch": 0}, step=5)
        >>> logger.finalize("failed")
        >>> steplog.runs(root)["status"].to_list()
        ['failed']
    """

    def __init__(
        self,
        name: str | None = None,
        root: str | os.PathLike = "experiment_logs",
        config: Any = None,
        *,
        resume: str | os.PathLike | None = None,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        start_step = None
        if resume is not None and str(resume).endswith(".ckpt"):
            found = run_of_checkpoint(resume)
            if found is None:
                raise ValueError(
                    f"resume={str(resume)!r}: this checkpoint path does not name a steplog run "
                    f"(<dir>/<name>/<run id>/checkpoints/<file>.ckpt); pass the run id instead"
                )
            resume, start_step = found, checkpoint_step(resume)
        self._name = name
        self._holder = RunHolder(
            name=name, root=root, config=config, resume=resume, start_step=start_step, **init_kwargs
        )

    @property
    def name(self) -> str:
        """The run's name (``"steplog"`` when none was given): the folder of default checkpoints."""
        return self._name or "steplog"

    @property
    def version(self) -> str | None:
        """The run id (None on ranks other than zero)."""
        return self._version()

    @rank_zero_only
    def _version(self) -> str:
        return self._holder.run_id

    @property
    def root_dir(self) -> str:
        """The steplog root the run is written under."""
        return os.fspath(self._holder.root)

    @property
    @rank_zero_experiment
    def experiment(self) -> Run | SilentRun:
        """The ``steplog.Run`` (opened on first use; Lightning asks for it in its setup)."""
        return self._holder.run

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Add the hyperparameters to the run's config (``Run.update_config``)."""
        if isinstance(params, Namespace):
            params = vars(params)
        self._holder.update_config(dict(params or {}))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log Lightning's metrics at its step."""
        self._holder.log(metrics, step)

    @rank_zero_only
    def save(self) -> None:
        """Write what the run buffers (every event is on disk already in the default durability)."""
        self._holder.flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finish the run with Lightning's status: ``success``/``finished`` finish it, ``failed`` fails it."""
        self._holder.close(_STATUS.get(status, fmt.FINISHED))
