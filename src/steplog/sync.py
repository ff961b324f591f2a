"""Keep a remote copy of running runs current: ``steplog.sync(to, root=..., every=None)``.

Each pass looks at every run of ``root`` that still has live events files (``events*.jsonl``) and
uploads the complete lines added since the last pass (up to the last newline: a torn line in
progress, or the unused NUL tail of a memory-mapped file, is never sent) as a part object
``<to>/<run id>/parts/<events file>/<start>-<end>`` (``storage.part_name``), named by its byte
offsets in the local file. What was sent is read back from the remote listing (the highest end
offset of contiguous parts), so sync keeps no state of its own and a sync killed or restarted
carries on where the bucket says. A run compacted since its parts went up is pushed in compacted
form (``steplog.push``) and then its parts are removed. ``storage.read_parts`` gives a live run's
events back as one stream. Compacted runs that never had parts are ``push``'s job.

Example:
    >>> import tempfile, steplog
    >>> from steplog.storage import open_root, read_parts
    >>> root, remote = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> run = steplog.init(name="a", root=root); run.log({"loss": 1.0})
    >>> [(outcome, detail) for _, outcome, detail in sync(remote, root=root)]
    [('synced', '2 lines, ... bytes')]
    >>> read_parts(open_root(remote), run.id) == (run.dir / "events.jsonl").read_bytes().rstrip(bytes(1))
    True
    >>> run.finish(); _ = steplog.compact(root, quiet=True)
    >>> [outcome for _, outcome, _ in sync(remote, root=root)]  # pushed compacted, parts removed
    ['compacted']
    >>> sorted(open_root(remote).list()) == [f"{run.id}/metrics.parquet", f"{run.id}/run.json", "_catalog/runs.parquet"]
    ... # (a folder: no journal; a bucket also holds _catalog/generation/<n>, see steplog.journal)
    True
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import format as fmt
from . import store
from .storage import PARTS_DIR, Storage, open_root, part_name, parts_of


def sync(
    to: str | os.PathLike,
    *,
    root: str | os.PathLike = "experiment_logs",
    every: float | None = None,
    storage_options: dict[str, Any] | None = None,
    passes: int | None = None,
    quiet: bool = True,
) -> list[tuple[str, str, str]]:
    """One sync pass (``every=None``), or a pass every ``every`` seconds until interrupted (or
    ``passes`` passes). Returns what the last pass did: ``(run id, outcome, detail)`` with outcome
    ``synced`` (new lines sent), ``current`` (nothing new), ``compacted`` (compacted form pushed,
    parts removed). ``quiet=False`` prints one line per run that changed.

    Example:
        >>> import tempfile
        >>> sync(tempfile.mkdtemp(), root=tempfile.mkdtemp())
        []
    """
    remote = open_root(to, storage_options)
    done = 0
    while True:
        results = sync_pass(remote, root)
        if not quiet:
            for run_id, outcome, detail in results:
                if outcome != "current":
                    print(f"steplog sync {run_id}: {outcome}: {detail}", file=sys.stderr, flush=True)
        done += 1
        if every is None or (passes is not None and done >= passes):
            return results
        time.sleep(every)


def sync_pass(remote: Storage, root: str | os.PathLike) -> list[tuple[str, str, str]]:
    """One pass of ``sync`` over the runs of ``root`` to an open ``Storage``.

    Example:
        >>> import tempfile
        >>> sync_pass(open_root(tempfile.mkdtemp()), tempfile.mkdtemp())
        []
    """
    listing = remote.list()
    with_parts = {name.split("/", 1)[0] for name in listing if f"/{PARTS_DIR}/" in name}
    results = []
    for run_dir in store.run_dirs(root):
        live = sorted(run_dir.glob("events*.jsonl"))
        if live:
            results.append(_send_new_lines(remote, run_dir, live, parts_of(listing, run_dir.name)))
        elif run_dir.name in with_parts and (run_dir / fmt.SIDECAR_FILE).exists():
            results.append(_finish(remote, run_dir, parts_of(listing, run_dir.name)))
    return results


def complete_lines(data: bytes) -> bytes:
    """The part of ``data`` that is safe to send: up to its last newline, and never past a NUL
    byte (a memory-mapped events file's unused tail).

    Example:
        >>> complete_lines(b'{"a":1}\\n{"a":2}\\n{"a"'), complete_lines(b'{"a":1}\\n\\x00\\x00')
        (b'{"a":1}\\n{"a":2}\\n', b'{"a":1}\\n')
    """
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    return data[: data.rfind(b"\n") + 1]


def _sent(spans: list[tuple[int, int, str]]) -> int:
    """How far the contiguous parts from offset 0 reach."""
    offset = 0
    for start, end, _ in spans:
        if start != offset:
            break
        offset = end
    return offset


def _send_new_lines(
    remote: Storage, run_dir: Path, files: list[Path], parts: dict[str, list[tuple[int, int, str]]]
) -> tuple[str, str, str]:
    lines = sent_bytes = 0
    for path in files:
        spans = parts.get(path.name, [])
        offset = _sent(spans)
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # compacted while we looked: the next pass pushes it
            continue
        if size < offset:  # not the file the parts came from (rewritten): send it again from the start
            for _, _, name in spans:
                remote.delete(name)
            offset = 0
        chunk = complete_lines(fmt.read_settled(path, offset))
        if chunk:
            remote.put(part_name(run_dir.name, path.name, offset, offset + len(chunk)), chunk)
            lines += chunk.count(b"\n")
            sent_bytes += len(chunk)
    if not lines:
        return run_dir.name, "current", "no new complete lines"
    return run_dir.name, "synced", f"{lines:,} lines, {sent_bytes:,} bytes"


def _finish(remote: Storage, run_dir: Path, parts: dict[str, list[tuple[int, int, str]]]) -> tuple[str, str, str]:
    from .push import push_each

    [(_, outcome, detail)] = push_each(
        remote.url, [str(run_dir)], root=run_dir.parent, storage_options=getattr(remote, "options", None), quiet=True
    )
    if outcome == "skipped":
        return run_dir.name, "skipped", detail
    for spans in parts.values():
        for _, _, name in spans:
            remote.delete(name)
    return run_dir.name, "compacted", f"compacted form pushed ({detail}); {sum(map(len, parts.values()))} parts removed"


# --- the CLI command (registered by steplog.cli) -----------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``steplog sync``.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["--to", "s3://b/x", "--every", "30"]).every
        30.0
    """
    parser.add_argument("--to", required=True, help="destination root: s3://bucket/prefix or a folder")
    parser.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep syncing, a pass every SECONDS (default: one pass)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no line per run")


def run(args: argparse.Namespace) -> int:
    """Run ``steplog sync`` (until interrupted with ``--every``).

    Example:
        >>> import tempfile
        >>> run(argparse.Namespace(to=tempfile.mkdtemp(), every=None, quiet=True, root=tempfile.mkdtemp()))
        0
    """
    try:
        sync(args.to, root=args.root, every=args.every, quiet=args.quiet)
    except KeyboardInterrupt:
        return 0
    return 0
