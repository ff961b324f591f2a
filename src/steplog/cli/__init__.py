"""The ``steplog`` command line: ``steplog <command> [options]``.

Commands are rows of ``COMMANDS``: a name, a one-line help, an example, a function adding the
command's arguments to its parser, and a function running it (``args -> exit code``). Adding a
command is writing those two functions and one row. Every command is a thin shell over the library
(``query``, ``compact``, ``reader.follow``, ``plot``, ``report``, ``demo``); docs/cli.md shows each.

Exit codes: 0 success, 1 an error (one line on stderr, no traceback), 2 a usage error.
``--json`` output (ls, show, compare, best) writes datetimes as ISO 8601 strings (UTC) and the
non-finite floats, which JSON lacks, as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (the codes
of the event format and the sidecar); null means "no value" (a metric never logged).

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    steplog ...
    0
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from .common import Command, _add_root
from .files import (
    _compact,
    _compact_arguments,
    _demo,
    _demo_arguments,
    _export,
    _export_arguments,
    _plot,
    _plot_arguments,
    _report,
    _report_arguments,
    _tail,
    _tail_arguments,
)
from .runs import _best, _best_arguments, _compare, _compare_arguments, _ls, _ls_arguments, _show, _show_arguments

def shell_command(name: str, help: str, example: str, module: str, *, root: bool = True) -> Command:
    """A command whose arguments and handler live in the module ``steplog.<module>`` (its
    ``add_arguments(parser)`` and ``run(args) -> int``), imported only when the command is used or its
    parser built; ``root`` adds the common ``--root`` option.

    Example:
        >>> command = shell_command("sql", "SQL over the runs", "steplog sql 'SELECT 1'", "sql")
        >>> parser = argparse.ArgumentParser(); command.configure(parser)
        >>> parser.parse_args(["SELECT 1", "--root", "r"]).root
        'r'
    """

    def configure(parser: argparse.ArgumentParser) -> None:
        if root:
            _add_root(parser)
        importlib.import_module(f"steplog.{module}").add_arguments(parser)

    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(f"steplog.{module}").run(args))

    return Command(name, help, example, configure, run)


COMMANDS: list[Command] = [
    Command(
        "ls",
        "list the runs, newest first: status, steps, time and the main metrics",
        "steplog ls --status finished --name 'lr_*'",
        _ls_arguments,
        _ls,
    ),
    Command(
        "show",
        "everything about one run: config, metadata, status, segments, every metric's summary",
        "steplog show demo_lr_0.03",
        _show_arguments,
        _show,
    ),
    Command(
        "compare",
        "runs side by side: the config keys that differ and the metric summaries",
        "steplog compare demo_lr_0.003 demo_lr_0.03 --metrics train_loss,val_loss",
        _compare_arguments,
        _compare,
    ),
    Command(
        "best",
        "the run with the best value of a metric over its whole history",
        "steplog best val_loss",
        _best_arguments,
        _best,
    ),
    Command(
        "compact",
        "fold finished runs into Parquet + a JSON sidecar (progress on stderr)",
        "steplog compact --dry-run",
        _compact_arguments,
        _compact,
    ),
    Command(
        "export",
        "write a run's history to CSV or Parquet",
        "steplog export demo_lr_0.03 -o demo.csv",
        _export_arguments,
        _export,
    ),
    Command(
        "tail",
        "print a run's last steps; with -f, follow it while it runs",
        "steplog tail demo_lr_0.03 -n 5 -f",
        _tail_arguments,
        _tail,
    ),
    Command(
        "plot",
        "curves of several runs in one PNG (needs matplotlib: pip install 'steplog[plot]')",
        "steplog plot demo_lr_0.003 demo_lr_0.03 --metric train_loss --metric val_loss --smooth 20 -o curves.png",
        _plot_arguments,
        _plot,
    ),
    Command(
        "demo",
        "train a small language model with a learning-rate sweep, logged by steplog (start here)",
        "steplog demo --quick --root /tmp/steplog-demo",
        _demo_arguments,
        _demo,
    ),
    Command(
        "report",
        "a table of the runs (text or Markdown), or fill it into docs/EXPERIMENT_LOG.md",
        "steplog report --markdown -o runs.md",
        _report_arguments,
        _report,
    ),
    shell_command("sql", "SQL over the tables runs and metrics (Polars SQL), as a table, --json or --csv",
                  "steplog sql \"SELECT name, min(val_loss) AS best FROM metrics GROUP BY name ORDER BY best\"", "sql"),
    shell_command("push", "upload compacted runs to object storage (s3://...) or a folder; again finishes a killed push",
                  "steplog push --to s3://bucket/runs --compact", "push"),
    shell_command("sync", "keep a remote copy of running runs current (new complete lines as part objects)",
                  "steplog sync --to s3://bucket/runs --every 30", "sync"),
    shell_command("ui", "serve a live dashboard of the runs (every point, zoom, live updates) at http://127.0.0.1:8765",
                  "steplog ui --open", "ui.command", root=False),
    shell_command("import", "bring runs over from TensorBoard, MLflow, W&B, trackio, CSV or JSONL",
                  "steplog import tensorboard runs/ --root experiment_logs", "importers.command", root=False),
    shell_command("catalog", "the root's run table (_catalog/runs.parquet): rebuild it from the sidecars",
                  "steplog catalog --rebuild", "catalog"),
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command in ``COMMANDS``.

    Example:
        >>> build_parser().parse_args(["demo", "--quick"]).quick
        True
    """
    parser = argparse.ArgumentParser(prog="steplog", description="A local, crash-safe experiment tracker.")
    parser.add_argument("--version", action="version", version=f"steplog {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            epilog=f"example:\n  {command.example}\n",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.configure(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 error, 2 usage).

    Errors are one line on stderr (``steplog: error: ...``); set ``STEPLOG_DEBUG=1`` for the traceback.

    Example:
        >>> main(["ls", "--root", "/no/such/root"])
        1
        >>> main(["no-such-command"])
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help/--version (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    if getattr(args, "handler", None) is None:
        parser.print_usage(sys.stderr)
        print("steplog: error: name a command; see steplog --help", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("steplog: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (steplog report | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("STEPLOG_DEBUG"):
            raise
        text = (
            f"{exc.strerror}: {exc.filename}"
            if isinstance(exc, OSError) and exc.strerror and exc.filename
            else (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
        )
        message = " ".join(text.split()) or type(exc).__name__
        print(f"steplog: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
