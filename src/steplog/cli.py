"""The ``steplog`` command line: ``steplog <command> [options]``.

Commands are rows of ``COMMANDS``: a name, a one-line help, a function adding the command's
arguments to its parser, and a function running it (``args -> exit code``). Adding a command is
writing those two functions and one row.

Exit codes: 0 success, 1 an error (one line on stderr, no traceback), 2 a usage error.

Example:
    >>> main(["--version"])  # doctest: +ELLIPSIS
    steplog ...
    0
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import __version__

DEFAULT_ROOT = "experiment_logs"


@dataclass(frozen=True)
class Command:
    """One subcommand: ``configure`` adds its arguments, ``run`` executes it and returns the exit code."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR",
                        help=f"the experiment root holding the runs (default: ./{DEFAULT_ROOT})")


# --- demo -------------------------------------------------------------------------------------


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of about half a minute")


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.root, quick=args.quick)
    return 0


# --- report -----------------------------------------------------------------------------------


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    _add_root(parser)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (default: aligned text)")
    parser.add_argument("--fill", metavar="FILE", type=Path,
                        help="write the Markdown table into FILE between its steplog markers (e.g. docs/EXPERIMENT_LOG.md)")
    parser.add_argument("--metrics", metavar="M1,M2", help="metrics to show, comma-separated (default: train_loss,val_loss)")


def _report(args: argparse.Namespace) -> int:
    from .report import fill_experiment_log, runs_markdown, runs_report_frame
    from .tables import text_table

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    if args.fill is not None:
        count = fill_experiment_log(args.fill, args.root, metrics)
        print(f"wrote a table of {count} run(s) from {args.root} into {args.fill}")
    elif args.markdown:
        print(runs_markdown(args.root, metrics))
    else:
        frame = runs_report_frame(args.root, metrics)
        print(text_table(frame) if frame.height else f"(no runs in {args.root})")
    return 0


COMMANDS: list[Command] = [
    Command("demo", "train a small language model with a learning-rate sweep, logged by steplog (start here)",
            _demo_arguments, _demo),
    Command("report", "a table of the runs (text or Markdown), or fill it into docs/EXPERIMENT_LOG.md",
            _report_arguments, _report),
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
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 error, 2 usage).

    Errors are one line on stderr (``steplog: error: ...``); set ``STEPLOG_DEBUG=1`` for the traceback.

    Example:
        >>> main(["report", "--root", "/no/such/root"])
        (no runs in /no/such/root)
        0
        >>> main(["no-such-command"])
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help/--version (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else 2
    if getattr(args, "run", None) is None:
        parser.print_usage(sys.stderr)
        print("steplog: error: name a command; see steplog --help", file=sys.stderr)
        return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("steplog: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (steplog report | head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("STEPLOG_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"steplog: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
