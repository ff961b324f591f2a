"""steplog: a local, crash-safe experiment tracker for training loops.

A training loop appends one small JSON event per step to an append-only file; queries read it
back as Polars data frames, forgiving whatever a crash left behind.

``import steplog`` loads only the writing side (orjson and the standard library): the query side
(``history``, ``runs``, ``scan``..., which need Polars and PyArrow) is imported at its first use,
so a training process that only logs never loads them.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="baseline", config={"lr": 3e-4}, root=root) as run:
    ...     for step in range(100):
    ...         run.log({"train_loss": 1.0 / (step + 1), "lr": 3e-4})
    >>> steplog.history("baseline", root=root).height
    100
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

from .locks import RunLockedError
from .store import AmbiguousRunError, RunNotFoundError, StoreError
from .writer import Run, init

#: Public names imported at first use: name -> module (they need Polars / PyArrow, or the tracker).
_LAZY = {
    "compact": "compact",
    "best": "query",
    "export": "query",
    "history": "query",
    "summary": "query",
    "compare": "runtable",
    "runs": "runtable",
    "scan": "scanning",
    "push": "push",
    "sync": "sync",
    "sql": "sql",
    "system": "system_read",
    "CorruptEventsError": "reader",
    "follow": "follow",
    "read_events": "reader",
    "ExperimentAnalyzer": "analyzer",
    "ExperimentLog": "experimentlog",
    "ExperimentConfig": "tracker",
    "ExperimentTracker": "tracker",
    "MetricsSnapshot": "tracker",
}


def __getattr__(name: str) -> Any:
    """Import a query-side name at its first use (PEP 562) and keep it in the package."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'steplog' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """steplog's module type: importing the submodule ``steplog.compact`` binds ``steplog.compact``
    to the module; the public name is the function of that name, so it is kept instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "init",
    "Run",
    "history",
    "runs",
    "scan",
    "summary",
    "compare",
    "best",
    "export",
    "system",
    "compact",
    "push",
    "sync",
    "sql",
    "follow",
    "read_events",
    "RunNotFoundError",
    "AmbiguousRunError",
    "RunLockedError",
    "StoreError",
    "CorruptEventsError",
    "ExperimentConfig",
    "MetricsSnapshot",
    "ExperimentLog",
    "ExperimentTracker",
    "ExperimentAnalyzer",
]
