"""steplog: a local, crash-safe experiment tracker for training loops.

A training loop appends one small JSON event per step to an append-only file; queries read it
back as Polars data frames, forgiving whatever a crash left behind.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="baseline", config={"lr": 3e-4}, root=root) as run:
    ...     for step in range(100):
    ...         run.log({"train_loss": 1.0 / (step + 1), "lr": 3e-4})
    >>> steplog.history("baseline", root=root).height
    100
"""

__version__ = "0.1.0"

from .compact import compact
from .query import best, compare, export, history, runs, scan, summary
from .reader import CorruptEventsError, follow, read_events
from .store import AmbiguousRunError, RunLockedError, RunNotFoundError
from .system_read import system
from .writer import Run, init
from .tracker import ExperimentAnalyzer, ExperimentConfig, ExperimentLog, ExperimentTracker, MetricsSnapshot  # noqa: E402

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
    "follow",
    "read_events",
    "RunNotFoundError",
    "AmbiguousRunError",
    "RunLockedError",
    "CorruptEventsError",
    "ExperimentConfig",
    "MetricsSnapshot",
    "ExperimentLog",
    "ExperimentTracker",
    "ExperimentAnalyzer",
]
