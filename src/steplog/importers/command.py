"""The ``steplog import SOURCE PATH`` command: ``add_arguments(parser)`` and ``run(args) -> int``.

The CLI registers it; it prints the ids of the runs imported (one a line) on stdout, progress on
stderr, and exits 1 with a message naming the file when a source cannot be imported.

Example:
    >>> import argparse, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.csv").write_text("step,loss\\n0,1.0\\n")
    >>> parser = argparse.ArgumentParser(prog="steplog import")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["csv", str(folder / "a.csv"), "--root", str(folder / "logs"), "--quiet"])
    >>> run(args)  # doctest: +ELLIPSIS
    20...
    0
"""

from __future__ import annotations

import argparse
import sys

SOURCES = ("tensorboard", "mlflow", "wandb", "trackio", "csv", "jsonl")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``steplog import`` to ``parser``.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["jsonl", "log.jsonl", "--step-col", "iter"]).step_col
        'iter'
    """
    parser.add_argument("source", choices=SOURCES, help="what PATH holds")
    parser.add_argument("path", help="the source: event file or log folder (tensorboard), mlflow.db or mlruns folder "
                                     "(mlflow), wandb folder or offline run folder (wandb), trackio database or folder "
                                     "(trackio), a file or folder of files (csv, jsonl)")
    parser.add_argument("--root", default="experiment_logs", help="steplog root to import into (default: %(default)s)")
    parser.add_argument("--name", default=None,
                        help="name of the imported run; prefix (NAME/<run>) when there are several")
    parser.add_argument("--step-col", default="step",
                        help="csv/jsonl: the column holding the step (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``steplog import`` with parsed ``args``; prints the run ids; returns the exit status.

    Example:
        >>> import argparse
        >>> run(argparse.Namespace(source="csv", path="/no/such.csv", root="/tmp/x", name=None, step_col="step",
        ...                        quiet=True))
        1
    """
    from . import SourceError, csv, jsonl, mlflow, tensorboard, trackio, wandb

    importers = {"tensorboard": tensorboard, "mlflow": mlflow, "wandb": wandb, "trackio": trackio}
    quiet = getattr(args, "quiet", False)
    try:
        if args.source in ("csv", "jsonl"):
            table = csv if args.source == "csv" else jsonl
            ids = table(args.path, root=args.root, name=args.name, step_col=args.step_col, quiet=quiet)
        else:
            ids = importers[args.source](args.path, root=args.root, name=args.name, quiet=quiet)
    except (SourceError, OSError) as exc:
        print(f"steplog import: {exc}", file=sys.stderr)
        return 1
    for run_id in ids:
        print(run_id)
    return 0
