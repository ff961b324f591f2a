"""Push compacted runs to another root: an object store (``s3://bucket/prefix``) or a folder.

Each run goes as ``<to>/<run id>/metrics.parquet`` then ``<to>/<run id>/run.json``: Parquet
first and sidecar last, so a reader never finds a sidecar without its data. A run whose remote
sidecar holds the same bytes as the local one is skipped (its ETag is the MD5 of the
local sidecar, or else the SHA-256 of the bytes read back matches), so pushing twice stores a
run once, and a push killed midway is finished by running it again (a run whose sidecar did not
arrive is sent again; objects are only ever overwritten whole). Push never deletes local files.
After the uploads the remote catalog (``steplog.catalog``) is updated for the runs sent. On an
object store, before the first sidecar is put, a pending marker names the runs about to be sent
(``steplog.journal``); it is removed once the catalog holds them, so a reader checks those runs
while a push is under way, or was killed before its catalog update.

Example:
    >>> import tempfile, steplog
    >>> root, remote = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> steplog.init(name="a", root=root).finish()
    >>> pushed = push(remote, root=root, compact=True, quiet=True)
    >>> push(remote, root=root, quiet=True)  # already there: nothing sent
    []
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from . import format as fmt
from . import journal, store
from .storage import Storage, open_root

if TYPE_CHECKING:
    from typing_extensions import Unpack

_LIVE = "live, resumed or not compacted yet"
#: Runs uploaded at once (object stores reward concurrency; each run's two objects stay in order).
CONCURRENCY = 8


class PushOptions(TypedDict, total=False):
    """The keywords ``push`` and ``push_each`` take (one list, for both)."""

    root: str | os.PathLike
    storage_options: dict[str, Any] | None
    compact: bool
    quiet: bool


def push(to: str | os.PathLike, runs: Iterable[str] | str | None = None, **options: Unpack[PushOptions]) -> list[str]:
    """Upload the compacted runs of ``root`` (or only ``runs``: ids, id prefixes or names) to ``to``
    and return the ids uploaded, oldest first (runs already there are skipped, runs not compacted
    are reported on stderr and left). Keywords: ``root`` (default ``"experiment_logs"``),
    ``storage_options`` (for ``to``), ``compact=True`` compacts the runs first, ``quiet=True`` prints
    nothing. Progress goes to stderr: a tqdm bar when tqdm is installed and stderr is a terminal,
    else a line per run.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> run = steplog.init(name="a", root=root); run.finish()
        >>> push(tempfile.mkdtemp(), root=root, quiet=True)  # not compacted yet: nothing to send
        []
    """
    return [run_id for run_id, outcome, _ in push_each(to, runs, **options) if outcome == "pushed"]


def push_each(
    to: str | os.PathLike,
    runs: Iterable[str] | str | None = None,
    *,
    root: str | os.PathLike = "experiment_logs",
    storage_options: dict[str, Any] | None = None,
    compact: bool = False,
    quiet: bool = False,
) -> list[tuple[str, str, str]]:
    """``push``, returning ``(run id, outcome, detail)`` per run, outcome ``pushed``, ``current``
    (already there) or ``skipped`` (not compacted, or unreadable).

    Example:
        >>> import tempfile
        >>> push_each(tempfile.mkdtemp(), root=tempfile.mkdtemp(), quiet=True)
        []
    """
    dirs = store.resolve_runs(runs, root)
    if compact:
        from .compact import compact as compact_runs

        compact_runs(root, [d.name for d in dirs] if runs is not None else None, quiet=quiet)
    remote = open_root(to, storage_options)
    listing = remote.run_files()  # one listing: which runs may be there already
    progress = _Progress(len(dirs), quiet, remote.url)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        checked = list(pool.map(lambda d: _check(d, remote, listing.get(d.name, {})), dirs))
        for c in checked:
            if c.outcome != "send":
                progress.update(c.run_dir.name, c.outcome, c.detail)
        sending = [c for c in checked if c.outcome == "send"]
        marker = journal.begin(remote, [c.run_dir.name for c in sending])  # before any sidecar is put
        sent = {}
        for run_id, detail, put in pool.map(lambda c: _upload(remote, c), sending):
            progress.update(run_id, "pushed", detail)
            sent[run_id] = put
    if sent:
        from . import catalog

        catalog.add_sidecars(remote, sent)
    journal.end(remote, marker)  # only now: a push killed before leaves it for readers to check
    progress.close()
    return [(c.run_dir.name, "pushed" if c.outcome == "send" else c.outcome, c.detail) for c in checked]


class _Checked(NamedTuple):
    run_dir: Path
    outcome: str  # send, current or skipped
    detail: str
    sidecar: bytes


def _check(run_dir: Path, remote: Storage, there: dict[str, str]) -> _Checked:
    """Whether a run is to be sent: not when it is not compacted, or its sidecar is there already."""
    run_id = run_dir.name
    if (run_dir / fmt.EVENTS_FILE).exists():
        return _Checked(run_dir, "skipped", f"not compacted ({_LIVE}): compact it, or push --compact", b"")
    try:
        sidecar = (run_dir / fmt.SIDECAR_FILE).read_bytes()
        size = (run_dir / fmt.PARQUET_FILE).stat().st_size
    except OSError:
        return _Checked(run_dir, "skipped", "no sidecar and Parquet file to send", b"")
    parquet_there = there.get(fmt.PARQUET_FILE, "")  # "<size>:<etag>"; a local folder says only "?" (present)
    if fmt.SIDECAR_FILE in there and parquet_there.split(":")[0] in ("?", str(size)):
        if there[fmt.SIDECAR_FILE].split(":", 1)[1].strip('"') == hashlib.md5(sidecar).hexdigest():
            return _Checked(run_dir, "current", "already there", sidecar)  # a plain PUT's S3 ETag is the MD5
        try:
            same = _sha(remote.read(f"{run_id}/{fmt.SIDECAR_FILE}")) == _sha(sidecar)
        except FileNotFoundError:
            same = False
        if same:
            return _Checked(run_dir, "current", "already there", sidecar)
    return _Checked(run_dir, "send", f"{size + len(sidecar):,} bytes", sidecar)


def _upload(remote: Storage, run: _Checked) -> tuple[str, str, tuple[bytes, str]]:
    """Put a run's Parquet file, then its sidecar: (run id, detail, (sidecar bytes, its stamp))."""
    run_id = run.run_dir.name
    remote.put(f"{run_id}/{fmt.PARQUET_FILE}", run.run_dir / fmt.PARQUET_FILE)
    return run_id, run.detail, (run.sidecar, remote.put(f"{run_id}/{fmt.SIDECAR_FILE}", run.sidecar))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Progress:
    """A tqdm bar on a terminal when tqdm is installed, else one plain line per run; silent if quiet."""

    def __init__(self, total: int, quiet: bool, url: str) -> None:
        self.quiet, self.total, self.done, self.url = quiet, total, 0, url
        self.counts = {"pushed": 0, "current": 0, "skipped": 0}
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc=f"steplog push {url}", unit="run", file=sys.stderr)

    def update(self, run_id: str, outcome: str, detail: str) -> None:
        self.done += 1
        self.counts[outcome] += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(1)
            if outcome == "skipped":
                self.bar.write(f"steplog push {run_id}: skipped: {detail}", file=sys.stderr)
            return
        print(f"steplog push [{self.done}/{self.total}] {run_id}: {outcome}: {detail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if not self.quiet:
            print(
                f"steplog push {self.url}: {self.counts['pushed']} pushed, {self.counts['current']} already there, "
                f"{self.counts['skipped']} skipped",
                file=sys.stderr,
                flush=True,
            )


# --- the CLI command (registered by steplog.cli) -----------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``steplog push``.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["--to", "s3://b/x", "r1", "--compact"]).runs
        ['r1']
    """
    parser.add_argument("runs", nargs="*", help="run ids, id prefixes or names (default: every compacted run)")
    parser.add_argument("--to", required=True, help="destination root: s3://bucket/prefix or a folder")
    parser.add_argument("--compact", action="store_true", help="compact the runs first")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    """Run ``steplog push``: 0 when every run is there, 1 when a run was skipped.

    Example:
        >>> import tempfile
        >>> run(argparse.Namespace(runs=[], to=tempfile.mkdtemp(), compact=False, quiet=True,
        ...                        root=tempfile.mkdtemp()))
        0
    """
    results = push_each(args.to, args.runs or None, root=args.root, compact=args.compact, quiet=args.quiet)
    return 1 if any(outcome == "skipped" for _, outcome, _ in results) else 0
