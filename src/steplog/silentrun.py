"""``SilentRun``: what ``init`` returns on a rank that ``log_ranks=`` leaves out. It has a ``Run``'s
methods and attributes, writes nothing, and its ``log`` does nothing at the cost of one call.

Example:
    >>> import tempfile, steplog
    >>> run = steplog.init(name="x", root=tempfile.mkdtemp(), rank=1, world_size=2, run_id="job-1",
    ...                    log_ranks=[0])
    >>> run.log({"loss": 1.0}); run.finish(); run.logging, run.rank
    (False, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class SilentRun:
    """A run on a rank that does not log: ``log``, ``flush``, ``update_config``, ``finish`` and
    ``fail`` do nothing (a system metrics sampler, if one was asked for, still runs until finish).

    Example:
        >>> run = SilentRun("job-1", "x", Path("/tmp/job-1"), rank=3)
        >>> with run:
        ...     run.log({"loss": 0.5}, step=7)
        >>> run.step is None
        True
    """

    logging = False
    durability = "none"

    def __init__(self, run_id: str, name: str, run_dir: Path, rank: int) -> None:
        self.id, self.name, self.dir, self.rank = run_id, name, run_dir, rank
        self.step: int | None = None
        self._sampler: Any = None

    def __repr__(self) -> str:
        return f"<steplog.SilentRun {self.id} name={self.name!r} rank={self.rank} (log_ranks leaves it out)>"

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Nothing: this rank does not log."""

    def flush(self) -> None:
        """Nothing to write."""

    def update_config(self, config: Mapping[str, Any]) -> None:
        """Nothing: rank 0 records the config."""

    def finish(self, *, notes: str | None = None) -> None:
        """Stop the system metrics sampler, if any."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None

    def fail(self, error: BaseException | str) -> None:
        """As ``finish``."""
        self.finish()

    def __enter__(self) -> SilentRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish()
