"""Bring runs from other trackers into steplog: ``steplog.importers.<source>(path, root=..., name=None)``.

Each returns the ids of the runs it imported (a folder of runs gives several; ``name`` names a
single run and prefixes several as ``name/<run name>``). An imported run is an ordinary finished
steplog run with the source's own steps, values, start time and wallclock; ``meta["imported_from"]``
names the source (kind, path, id), and importing the same source again makes no second run.
docs/importers.md describes each source.

Example:
    >>> import tempfile, pathlib, steplog, steplog.importers
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "old.jsonl").write_text('{"step": 0, "loss": 1.0}\\n')
    >>> ids = steplog.importers.jsonl(folder / "old.jsonl", root=folder / "logs", quiet=True)
    >>> steplog.runs(folder / "logs")["name"].to_list()
    ['old']
"""

from ._runs import SourceError
from .from_mlflow import mlflow
from .from_table import csv, jsonl
from .from_tensorboard import tensorboard
from .from_trackio import trackio
from .from_wandb import wandb

__all__ = ["SourceError", "csv", "jsonl", "mlflow", "tensorboard", "trackio", "wandb"]
