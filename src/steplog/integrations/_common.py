"""What every framework adapter shares: one run opened late, reopened after it was closed, and the
numbers picked out of what a framework reports.

Example:
    >>> import tempfile
    >>> holder = RunHolder(name="demo", root=tempfile.mkdtemp(), config={"lr": 0.1})
    >>> holder.log({"loss": 0.5, "phase": "train"}, step=3)  # text is not a metric: left out
    >>> holder.close("finished")
    >>> holder.log({"test_loss": 0.4}, step=4)  # after close: the run is reopened as a new segment
    >>> holder.close("finished")
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

from .. import format as fmt
from ..silentrun import SilentRun
from ..writer import Run, init


def numeric(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``metrics`` that are numbers (int, float, bool, numpy scalars, 1-element tensors).

    Example:
        >>> numeric({"loss": 0.5, "epoch": 1, "name": "x", "none": None})
        {'loss': 0.5, 'epoch': 1}
    """
    return {str(key): value for key, value in metrics.items() if _is_number(value)}


def _is_number(value: Any) -> bool:
    if isinstance(value, numbers.Number):
        return not isinstance(value, complex)
    return hasattr(value, "item") and (getattr(value, "ndim", None) == 0 or tuple(getattr(value, "shape", ())) == (1,))


class RunHolder:
    """One steplog run for an adapter: opened on first use (or ``open(...)``), closed with a status,
    and reopened as a new segment when the framework logs again after closing it (test after fit).

    Example:
        >>> import tempfile
        >>> holder = RunHolder(name="x", root=tempfile.mkdtemp())
        >>> holder.run.name
        'x'
        >>> holder.close("failed")
    """

    def __init__(
        self,
        name: str | None = None,
        root: str | os.PathLike = "experiment_logs",
        config: Any = None,
        resume: str | os.PathLike | None = None,
        start_step: int | None = None,
        **init_kwargs: Any,
    ) -> None:
        self.name, self.root, self.config, self.resume, self.start_step = name, root, config, resume, start_step
        self.init_kwargs = init_kwargs
        self._run: Run | SilentRun | None = None
        self._closed = False

    @property
    def opened(self) -> bool:
        """Whether the run was opened (it may be closed since)."""
        return self._run is not None

    @property
    def current(self) -> Run | SilentRun | None:
        """The run as it is (open or closed; None before it was opened): never opens or reopens it."""
        return self._run

    @property
    def run_id(self) -> str:
        """The run's id (opening the run if it never was; a closed run stays closed)."""
        return (self._run if self._run is not None else self.run).id

    @property
    def run(self) -> Run | SilentRun:
        """The open run: opened now if it was not, reopened if it was closed."""
        if self._run is None:
            return self.open()
        if self._closed:
            self._run = init(resume=self._run.dir, root=self.root, **self.init_kwargs)
            self._closed = False
        return self._run

    def open(self, resume: str | os.PathLike | None = None, start_step: int | None = None) -> Run | SilentRun:
        """Open the run: a new one, or (``resume``, else the holder's ``resume``) an existing one,
        continuing from ``start_step`` (the checkpoint's step; None: the holder's, else the first step logged)."""
        if resume is None:
            resume, start_step = self.resume, start_step if start_step is not None else self.start_step
        if resume is None:
            self._run = init(name=self.name, config=self.config, root=self.root, **self.init_kwargs)
        else:
            config = self.config if resume == "auto" else None  # "auto" may start a new run
            self._run = init(
                name=self.name, config=config, root=self.root, resume=resume, start_step=start_step, **self.init_kwargs
            )
        self._closed = False
        return self._run

    def log(self, metrics: Mapping[str, Any], step: int | None) -> None:
        """Log the numbers among ``metrics`` at ``step`` (nothing when there is none)."""
        values = numeric(metrics)
        if values:
            self.run.log(values, step=step)

    def update_config(self, config: Mapping[str, Any]) -> None:
        """Add to the run's config (``Run.update_config``)."""
        if config:
            self.run.update_config(config)

    def flush(self) -> None:
        """Write what the run buffers, if it is open (never opens or reopens it)."""
        if self._run is not None and not self._closed:
            self._run.flush()

    def close(self, status: str, error: BaseException | str | None = None) -> None:
        """Finish (``"finished"``) or fail the run if it is open; a later log reopens it."""
        if self._run is None or self._closed:
            return
        if status == fmt.FAILED:
            self._run.fail(error if error is not None else "the training framework reported a failure")
        else:
            self._run.finish()
        self._closed = True
