"""Writing an imported run: the events file the writer would produce, with the source's own times.

``Run.log`` stamps every event with the current time, so an importer cannot use it: a run read from
another tracker is written here, through ``steplog.format``'s encoders, as one ``start`` event, the
metric events (one per step and source timestamp) and a ``finish`` event. The run is written into a
hidden temporary folder of the root and renamed to its run id only when complete, so a failed import
leaves nothing that reads as a run. The run id carries the source's start time, so imported runs sort
among the others by when they really ran.

Every imported run records where it came from in ``meta["imported_from"]`` (source kind, absolute
path, the source's own id); importing the same source again skips it and returns the id it has.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> source = Source("csv", "/data/a.csv", "a", name="a", start_time=1.7e9)
    >>> source.add(0, 1.7e9 + 1, {"loss": 2.0}); source.add(1, 1.7e9 + 2, {"loss": 1.5})
    >>> run_id, created = write_run(root, source)
    >>> created, steplog.history(run_id, root=root)["loss"].to_list()
    (True, [2.0, 1.5])
    >>> write_run(root, source) == (run_id, False)  # the same source again: skipped
    True
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from .. import __version__, store
from .. import format as fmt
from ..values import to_jsonable


class SourceError(ValueError):
    """A source that cannot be imported (missing, corrupt, unsupported); the message names the file."""


class Source:
    """One run read from another tracker, before it is written: identity, times, config, meta, metrics.

    ``add(step, time, metrics)`` records the metrics the source holds at a step with their Unix time.

    Example:
        >>> s = Source("jsonl", "/x.jsonl", "x", name="x", start_time=10.0)
        >>> s.add(3, 12.0, {"acc": 0.5}); s.add(3, 12.0, {"loss": 1.0}); s.add(3, 13.0, {"lr": 0.1})
        >>> sorted(s.events.items())
        [((3, 12.0), {'acc': 0.5, 'loss': 1.0}), ((3, 13.0), {'lr': 0.1})]
    """

    def __init__(
        self,
        kind: str,
        path: str | os.PathLike,
        source_id: str,
        *,
        name: str,
        start_time: float | None = None,
        end_time: float | None = None,
        config: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        status: str | None = fmt.FINISHED,
    ) -> None:
        self.kind, self.path, self.id, self.name = kind, os.path.abspath(path), str(source_id), name
        self.start_time, self.end_time, self.status = start_time, end_time, status
        self.config: dict[str, Any] = dict(config or {})
        self.meta: dict[str, Any] = dict(meta or {})
        #: ``{(step, time): {metric: value}}``: one metric event each.
        self.events: dict[tuple[int, float], dict[str, float]] = {}

    def add(self, step: int, time: float, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` at ``step``, reported at Unix ``time`` (seconds)."""
        key = (int(step), float(time))
        event = self.events.get(key)
        if event is None:
            self.events[key] = {k: float(v) for k, v in metrics.items()}
        else:
            event.update((k, float(v)) for k, v in metrics.items())

    def add_columns(self, metric: str, steps: Iterable[int], times: Iterable[float], values: Iterable[float]) -> None:
        """Record one metric's whole history: parallel sequences of steps, Unix times and values."""
        events = self.events
        for step, when, value in zip(steps, times, values):
            key = (step, when)
            event = events.get(key)
            if event is None:
                events[key] = {metric: value}
            else:
                event[metric] = value

    @property
    def origin(self) -> dict[str, str]:
        """What ``meta["imported_from"]`` records: source kind, absolute path and the source's id."""
        return {"source": self.kind, "path": self.path, "id": self.id}


def source_files(path: Path, found: list[Path], none_found: str, missing: str) -> list[Path]:
    """The files an importer reads: ``path`` itself when it is a file, else ``found`` (the files a
    folder holds); a ``SourceError`` with ``none_found`` or ``missing`` when there are none.

    Example:
        >>> source_files(Path("/no/such/file.db"), [], "no database", "it does not exist")
        Traceback (most recent call last):
        ...
        steplog.importers._runs.SourceError: it does not exist
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SourceError(missing)
    if not found:
        raise SourceError(none_found)
    return found


def imported_runs(root: str | os.PathLike) -> dict[tuple[Any, Any, Any], str]:
    """``{(source kind, path, source id): run id}`` for every imported run under ``root``.

    Example:
        >>> imported_runs("/no/such/root")
        {}
    """
    found = {}
    for run_dir in store.run_dirs(root):
        start = fmt.read_start_event(store.events_path(run_dir))
        meta = (start or {}).get("meta") or store.raw_sidecar(run_dir).get("meta")
        origin = meta.get("imported_from") if isinstance(meta, dict) else None
        if isinstance(origin, dict):
            found[(origin.get("source"), origin.get("path"), origin.get("id"))] = run_dir.name
    return found


def write_run(
    root: str | os.PathLike, source: Source, known: dict | None = None, *, sync_root: bool = True
) -> tuple[str, bool]:
    """Write ``source`` as a finished steplog run under ``root``; returns (run id, whether it was
    created). A source imported before (same kind, path and id, see ``imported_runs``) is not
    written again: its existing run id is returned with False. ``known`` is ``imported_runs(root)``
    when the caller has it. ``sync_root=False`` leaves the fsync of the root (which makes the new run's
    name durable) to the caller, as ``write_runs`` does once for all its runs.
    """
    known = imported_runs(root) if known is None else known
    key = (source.kind, source.path, source.id)
    if key in known:
        return known[key], False
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    times = [when for _, when in source.events]
    start = source.start_time if source.start_time is not None else min(times, default=time.time())
    while True:  # until the run id is free when the finished folder is renamed to it (it nearly always is)
        run_id = store.new_run_id(_dt.datetime.fromtimestamp(start, _dt.timezone.utc))
        tmp = root / f".import-{secrets.token_hex(6)}"
        tmp.mkdir()
        try:
            _write_events(tmp / fmt.EVENTS_FILE, run_id, start, source, max(times, default=start))
            store.fsync_directory(tmp)
            published = _publish(tmp, root / run_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if published:
            break
        shutil.rmtree(tmp, ignore_errors=True)
    known[key] = run_id
    if sync_root:
        store.fsync_directory(root)
    return run_id, True


def _write_events(path: Path, run_id: str, start: float, source: Source, last: float) -> None:
    meta = {
        **to_jsonable(source.meta, what="metadata"),
        "imported_from": source.origin,
        "imported": {"time": time.time(), "steplog_version": __version__},
    }
    head = fmt.encode_control_event(
        fmt.START,
        v=fmt.FORMAT_VERSION,
        run_id=run_id,
        name=source.name,
        time=start,
        start_time=_dt.datetime.fromtimestamp(start, _dt.timezone.utc).isoformat(),
        durability="imported",
        config=to_jsonable(source.config, what="config"),
        meta=meta,
    )
    end = source.end_time if source.end_time is not None else last
    with open(path, "wb") as f:
        f.write(head)
        _write_metric_lines(f, source, start)
        if source.status is not None:  # a run the source shows as still running reads as crashed
            f.write(fmt.encode_control_event(fmt.FINISH, status=source.status, time=end, w=end - start, segment=0))
        f.flush()
        os.fsync(f.fileno())


def _write_metric_lines(f: Any, source: Source, start: float) -> None:
    """Write the metric events of ``source`` in step order, encoded as ``format.encode_metric_event``
    does (inlined, as in ``Run.log``: a million events per import; a test checks the bytes). Lines go
    out 64 at a time: orjson.dumps gets ~10x slower while more than ~1,000 of its results are alive
    (measured: 0.44 us per event with 64 kept, 4.5 us with 8,192); the file object buffers the writes."""
    dumps, option, add_nonfinite = orjson.dumps, orjson.OPT_APPEND_NEWLINE, fmt.add_nonfinite
    step_key, time_key, wallclock_key, metrics_key = fmt.STEP, fmt.TIME, fmt.WALLCLOCK, fmt.METRICS
    chunk: list[bytes] = []
    for (step, when), metrics in sorted(source.events.items()):
        event = {step_key: step, time_key: when, wallclock_key: when - start, metrics_key: metrics}
        total = sum(metrics.values())
        if total - total != 0.0:  # a NaN or an infinity: record its code under "nf"
            add_nonfinite(event, metrics)
        chunk.append(dumps(event, option=option))
        if len(chunk) == 64:
            f.write(b"".join(chunk))
            chunk.clear()
    f.write(b"".join(chunk))


def _publish(tmp: Path, target: Path) -> bool:
    """Rename the finished temporary folder to the run's folder; False if that one exists already."""
    try:
        os.rename(tmp, target)  # fails when the target exists and is not empty
    except OSError:
        if target.exists():
            return False
        raise
    return True  # the caller fsyncs the root (once for a whole batch)


def write_runs(
    root: str | os.PathLike,
    sources: Iterable[Source],
    *,
    name: str | None = None,
    count: int | None = None,
    quiet: bool = False,
) -> list[str]:
    """Write every source (``write_run``), naming them after ``name`` when given: a single source is
    named ``name``, several ``name/<source name>``. Shows a progress bar on stderr unless ``quiet``.
    Returns the run ids, one per source, in order (existing ids for sources imported before).

    Example:
        >>> import tempfile
        >>> sources = [Source("csv", f"/{n}.csv", n, name=n, start_time=1.0) for n in "ab"]
        >>> for s in sources: s.add(0, 2.0, {"x": 1.0})
        >>> ids = write_runs(tempfile.mkdtemp(), sources, name="old", count=2, quiet=True)
        >>> len(ids)
        2
    """
    if count is None:
        sources = list(sources)
        count = len(sources)
    total = count
    known = imported_runs(root)
    ids = []
    try:
        with _Progress(total, quiet) as bar:
            for source in sources:
                if name is not None:
                    source.name = name if total == 1 else f"{name}/{source.name}"
                run_id, created = write_run(root, source, known, sync_root=False)
                ids.append(run_id)
                bar.update(f"{source.name}: {'imported' if created else 'already imported'} as {run_id}")
    finally:  # the runs written so far (also when a later source fails) are made durable
        if Path(root).is_dir():
            store.fsync_directory(Path(root))
    return ids


class _Progress:
    """A progress bar on stderr (tqdm when installed, else one line per run); silent when quiet."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.quiet, self.done, self.total, self.bar = quiet, 0, total, None
        if not quiet:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, unit="run", desc="import", file=sys.stderr, leave=True)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, line: str) -> None:
        self.done += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(line[-60:], refresh=False)
            self.bar.update(1)
        else:
            print(f"import [{self.done}/{self.total}] {line}", file=sys.stderr)
