"""One typed model of a run: ``RunRecord`` with its ``Segment``s, ``Finish`` and ``MetricSummary``s
(``steplog.summaries``), and where a record is read from (``load_run``, ``load_record``).

Everything that describes a run (the ``runs()`` table, ``run_info``, ``compare``, ``best``, the
sidecar ``run.json``, the CLI, the report, the seed API's ``ExperimentLog``) is built from a
``RunRecord``. A record comes from one of two places, and is the same either way:

* a run's events (``record_from_events``): live, or finished but not compacted yet;
* a compacted run's sidecar (``record_from_sidecar``), which compaction writes from a record
  (``RunRecord.sidecar_facts``).

``load_record(run_dir)`` picks the right one. Dicts remain only at the public edges documented to
return dicts (``run_info``, ``summary``), made by ``RunRecord.info`` and ``MetricSummary.to_dict``.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="x", config={"lr": 0.1}, root=root) as run:
    ...     run.log({"loss": 2.0}); run.log({"loss": 1.0})
    >>> record = load_record(run.dir)
    >>> record.name, record.status, record.config, record.num_steps, record.summary["loss"].min
    ('x', 'finished', {'lr': 0.1}, 2, 1.0)
    >>> record.segments[0].finish.status
    'finished'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, TypeVar

import polars as pl

from . import format as fmt
from . import readcache, runstatus, store
from .rankread import rank_events, rank_facts, world_size
from .reader import RunEvents, read_events, resolve_history
from .sidecar import sidecar_ranks
from .summaries import MetricSummary, summarize

_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)


class RemoteRun(Protocol):
    """A run that is not a local folder (``steplog.roots.RemoteRunDir``: a run of an object-store
    root): it has a ``name`` (its run id) and reads itself with ``load()``, as ``load_run`` would."""

    name: str

    def load(self) -> Loaded: ...


#: Where a run is: its local directory, or a run of an object-store root.
RunDir = Path | RemoteRun


# --- a run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finish:
    """A segment's ``finish`` event: ``status`` (finished / failed), ``time``, ``error`` (a dict
    with ``type``, ``message``... for a failed run) and ``notes``."""

    status: str | None
    time: float | None
    error: dict[str, Any] | None
    notes: str | None

    @classmethod
    def from_event(cls, event: dict[str, Any] | None) -> Finish | None:
        """From a finish event (or a sidecar's ``finish``); None for None.

        Example:
            >>> Finish.from_event({"status": "failed", "error": {"type": "E", "message": "m"}}).error_text
            'E: m'
        """
        if event is None:
            return None
        return cls(event.get("status"), _number(event.get("time")), event.get("error"), event.get("notes"))

    @property
    def error_text(self) -> str | None:
        """``"<type>: <message>"`` of the error, None without one."""
        return f"{self.error.get('type')}: {self.error.get('message')}" if isinstance(self.error, dict) else None


@dataclass(frozen=True)
class Segment:
    """One segment of a run (the first start, or a resume): steps, rows and times."""

    segment: int
    start_step: int | None
    first_step: int | None
    last_step: int | None
    rows: int
    superseded_rows: int
    start_time: float | None
    end_time: float | None
    durability: str | None
    meta: dict[str, Any] | None
    finish: Finish | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        """From a sidecar's segment dict (``to_dict``'s shape).

        Example:
            >>> Segment.from_dict({"segment": 0, "rows": 2}).rows
            2
        """
        fields = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        fields.update(
            rows=data.get("rows") or 0,
            superseded_rows=data.get("superseded_rows") or 0,
            finish=Finish.from_event(data.get("finish")),
        )
        return cls(**fields)  # type: ignore[arg-type]  # a sidecar's values, as compaction wrote them

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's shape of a segment (``finish`` as a dict or None)."""
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "finish": None if self.finish is None else dataclasses.asdict(self.finish),
        }


@dataclass(frozen=True)
class RunRecord:
    """Everything known about one run, from its events or its sidecar.

    Times are Unix seconds (``start_time_ns`` only where the writer wrote a ``time_ns``);
    ``summary`` (per metric) is computed on first use for a run read from its events;
    ``files`` holds what only a sidecar records (``parquet``, ``events``, ``steps_sorted``,
    ``compacted_at``), empty for a run read from its events."""

    run_id: str
    name: str
    status: str
    run_dir: RunDir
    format_version: int | None
    config: dict[str, Any]
    meta: dict[str, Any]
    start_time: float | None
    start_time_ns: int | None
    end_time: float | None
    duration_s: float | None
    num_steps: int
    first_step: int | None
    last_step: int | None
    num_rows: int
    superseded_rows: int
    finish: Finish | None
    segments: tuple[Segment, ...]
    metrics: tuple[str, ...]
    compacted: bool
    files: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    history_all: pl.DataFrame | None = dataclasses.field(default=None, repr=False, compare=False)
    stored_summary: dict[str, MetricSummary] | None = dataclasses.field(default=None, repr=False)
    #: one dict per rank of a multi-process run (``rankread.rank_facts``); () for a single process
    ranks: tuple[dict[str, Any], ...] = ()

    @property
    def world_size(self) -> int:
        """The number of ranks of the run's current attempt (1 for a single process)."""
        return world_size(list(self.ranks)) if self.ranks else 1

    @property
    def crashed_ranks(self) -> list[int]:
        """The ranks that died without finishing ([] for a single process: its status says it)."""
        return [f["rank"] for f in self.ranks if f.get("status") == "crashed"]

    @cached_property
    def summary(self) -> dict[str, MetricSummary]:
        """Per-metric figures (``summarize``): the sidecar's, or computed from the events' history."""
        if self.stored_summary is not None:
            return self.stored_summary
        assert self.history_all is not None, "a record has a stored summary or its history"
        return summarize(current_rows(self.history_all))

    def summary_dicts(self) -> dict[str, dict[str, Any]]:
        """``summary`` as plain dicts (the shape ``steplog.summary`` returns)."""
        return {name: figures.to_dict() for name, figures in self.summary.items()}

    def sidecar_facts(self) -> dict[str, Any]:
        """The part of the sidecar (``run.json``) a record makes, in the sidecar's key order."""
        return {
            "status": self.status,
            "run_id": self.run_id,
            "name": self.name,
            "format_version": self.format_version,
            "config": self.config,
            "meta": self.meta,
            "start_time": self.start_time,
            "start_time_ns": self.start_time_ns,
            "end_time": self.end_time,
            "duration_s": self.duration_s,
            "num_steps": self.num_steps,
            "first_step": self.first_step,
            "last_step": self.last_step,
            "num_rows": self.num_rows,
            "superseded_rows": self.superseded_rows,
            "finish": None if self.finish is None else dataclasses.asdict(self.finish),
            "segments": [segment.to_dict() for segment in self.segments],
        }


def record_from_events(
    run_dir: RunDir, events: RunEvents, status: str | None = None, history_all: pl.DataFrame | None = None
) -> RunRecord:
    """The record of a run from its events (``history_all``: ``resolve_history(events,
    all_segments=True)`` when the caller has it). ``status`` None: as ``runstatus.run_status`` says.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(name="x", root=tempfile.mkdtemp())
        >>> run.log({"loss": 1.0}); run.log({"loss": 0.5}); run.finish()
        >>> r = record_from_events(run.dir, read_events(run.dir / "events.jsonl"))
        >>> r.name, r.num_steps, r.last_step, r.finish.status, r.summary["loss"].last
        ('x', 2, 1, 'finished', 0.5)
    """
    if history_all is None:
        history_all = resolve_history(events, all_segments=True)
    start = events.start or {}
    finish = events.last_finish
    if status is None:
        assert isinstance(run_dir, Path), "a remote run's status is given (load_record)"
        status = runstatus.run_status(run_dir, finish.get("status") if finish else None)
    start_time = _number(start.get("time"))
    times = [t for t in (start_time, *(_number(c.get("time")) for c in events.controls)) if t is not None]
    last_event = _number(events.rows["time"].max()) if events.rows.height else None
    if last_event is not None:
        times.append(last_event)
    end_time = _number(finish.get("time")) if finish else (max(times) if times else None)
    current = history_all.filter(~pl.col("superseded"))
    steps = current.select(pl.len(), pl.col("step").min().alias("first"), pl.col("step").max().alias("last")).row(0)
    return RunRecord(
        run_id=start.get("run_id", run_dir.name),
        name=start.get("name", run_dir.name),
        status=status,
        run_dir=run_dir,
        format_version=start.get("v"),
        config=_config(events),
        meta=_dict(start.get("meta")),
        start_time=start_time,
        start_time_ns=start.get("time_ns") if type(start.get("time_ns")) is int else None,
        end_time=end_time,
        duration_s=end_time - start_time if start_time is not None and end_time is not None else None,
        num_steps=steps[0],
        first_step=steps[1],
        last_step=steps[2],
        num_rows=history_all.height,
        superseded_rows=history_all.height - steps[0],
        finish=Finish.from_event(finish),
        segments=_segments(events, history_all, start),
        metrics=tuple(events.metric_names),
        compacted=False,
        history_all=history_all,
        ranks=_ranks_of(run_dir, events),
    )


def _ranks_of(run_dir: RunDir, events: RunEvents) -> tuple[dict[str, Any], ...]:
    """The rank facts of a live run of several processes (its rank 0 events already read); ().
    A live run in object storage (``steplog sync``'s parts) is read as rank 0 only."""
    if not isinstance(run_dir, Path) or all(rank == 0 for rank in store.rank_files(run_dir)):
        return ()
    return tuple(rank_facts(run_dir, {0: events, **rank_events(run_dir, others_only=True)}))


def _config(events: RunEvents) -> dict[str, Any]:
    """The run's config: the one place a run's config is read from its events (the start event's,
    with later ``Run.update_config`` events merged over it: ``RunEvents.config``)."""
    return events.config


def record_from_sidecar(run_dir: RunDir, sidecar: dict[str, Any]) -> RunRecord:
    """The record of a compacted run from its sidecar (``read_sidecar``: summary decoded).

    Example:
        >>> r = record_from_sidecar(Path("/logs/r1"), {"run_id": "r1", "name": "a", "status": "finished",
        ...                                            "num_steps": 3, "summary": {}, "segments": [{"segment": 0}]})
        >>> r.name, r.num_steps, len(r.segments), r.compacted
        ('a', 3, 1, True)
    """
    return RunRecord(
        run_id=sidecar.get("run_id", run_dir.name),
        name=sidecar.get("name", run_dir.name),
        status=str(sidecar.get("status")),
        run_dir=run_dir,
        format_version=sidecar.get("format_version"),
        config=_dict(sidecar.get("config")),
        meta=_dict(sidecar.get("meta")),
        start_time=sidecar.get("start_time"),
        start_time_ns=sidecar.get("start_time_ns"),
        end_time=sidecar.get("end_time"),
        duration_s=sidecar.get("duration_s"),
        num_steps=sidecar.get("num_steps") or 0,
        first_step=sidecar.get("first_step"),
        last_step=sidecar.get("last_step"),
        num_rows=sidecar.get("num_rows") or 0,
        superseded_rows=sidecar.get("superseded_rows") or 0,
        finish=Finish.from_event(sidecar.get("finish")),
        segments=tuple(Segment.from_dict(s) for s in sidecar.get("segments") or ()),
        metrics=tuple(sidecar.get("metrics") or ()),
        compacted=True,
        files={k: sidecar.get(k) for k in ("parquet", "events", "steps_sorted", "compacted_at")},
        stored_summary=sidecar["summary"],
        ranks=sidecar_ranks(sidecar),
    )


def _segments(events: RunEvents, history_all: pl.DataFrame, start: dict[str, Any]) -> tuple[Segment, ...]:
    by_rows = {
        row["segment"]: row
        for row in history_all.group_by("segment")
        .agg(
            pl.len().alias("rows"),
            pl.col("superseded").sum().cast(pl.Int64).alias("superseded_rows"),
            pl.col("step").min().alias("first_step"),
            pl.col("step").max().alias("last_step"),
        )
        .iter_rows(named=True)
    }
    last_time = dict(events.rows.group_by("segment").agg(pl.col("time").max()).iter_rows())
    finishes = {event.get("segment", 0): event for event in events.controls if event.get(fmt.KIND) == fmt.FINISH}
    opened = [start, *events.resumes]
    segments = []
    for index in range(max(len(opened), 1 + max(by_rows, default=0))):
        control = opened[index] if index < len(opened) else {}
        rows, finish = by_rows.get(index, {}), finishes.get(index)
        begin = _number(control.get("time"))
        segments.append(
            Segment(
                segment=index,
                start_step=control.get("start_step") if index else None,
                first_step=rows.get("first_step"),
                last_step=rows.get("last_step"),
                rows=rows.get("rows", 0),
                superseded_rows=rows.get("superseded_rows", 0),
                start_time=begin,
                end_time=_number(finish.get("time")) if finish else last_time.get(index, begin),
                durability=control.get("durability"),
                meta=control.get("meta") if index and isinstance(control.get("meta"), dict) else None,
                finish=Finish.from_event(finish),
            )
        )
    return tuple(segments)


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- where a run is read from -------------------------------------------------------------------


def current_rows(history_all: _Frame, steps_sorted: bool | None = None) -> _Frame:
    """The rows of an all-segments history (``resolve_history(events, all_segments=True)``, or
    ``metrics.parquet``, of one run or several) as ``steplog.history`` shows them: without the rows
    a resume superseded, sorted by step (within ``run_id`` and ``rank`` where there are such columns). ``steps_sorted``
    says they are in step order already (a sidecar's ``steps_sorted``: no sort needed); None finds
    out (a DataFrame only). A resumed segment that logs steps below its start step needs the sort.

    Example:
        >>> h = pl.DataFrame({"segment": [0, 0, 1], "step": [0, 1, 1], "superseded": [False, True, False],
        ...                   "loss": [3.0, 2.0, 1.0]})
        >>> current_rows(h).rows()
        [(0, 3.0), (1, 1.0)]
    """
    current = history_all.filter(~pl.col("superseded")).drop("segment", "superseded")
    if steps_sorted is None:
        steps_sorted = isinstance(current, pl.DataFrame) and bool(current["step"].is_sorted())
    if steps_sorted:
        return current
    names = current.collect_schema().names()
    keys = [key for key in ("run_id", "rank") if key in names] + ["step"]  # rank: a run of several processes
    return current.sort(keys, maintain_order=True)


Loaded = tuple[RunEvents | None, dict[str, Any] | None]


def load_run(run_dir: RunDir) -> Loaded:
    """(events, None) while the run has an events file; (None, sidecar) once compacted; the
    archived events if the sidecar is unreadable; (None, None) when there is no run here.

    Example:
        >>> load_run(Path("/no/such/run"))
        (None, None)
    """
    if not isinstance(run_dir, Path):  # a run of an object-store root (steplog.roots.RemoteRunDir)
        return run_dir.load()
    try:
        return read_events(run_dir / fmt.EVENTS_FILE), None
    except FileNotFoundError:  # never had one, or compaction moved it while we looked
        pass
    sidecar = readcache.sidecar(run_dir)  # parsed once while it is the same file
    if sidecar is not None:
        return None, sidecar
    try:
        return read_events(run_dir / fmt.ARCHIVED_EVENTS_FILE), None
    except FileNotFoundError:
        if (run_dir / fmt.PARQUET_FILE).exists():  # compacted, but neither its sidecar nor its events can be read
            store.warn_unreadable_compacted(run_dir)
        return None, None


def load_record(run_dir: RunDir, loaded: Loaded | None = None) -> RunRecord | None:
    """The record of the run in ``run_dir`` from one read (``loaded``, else ``load_run``); None
    when no readable run is there.

    Example:
        >>> load_record(Path("/no/such/run")) is None
        True
    """
    try:
        events, sidecar = loaded or load_run(run_dir)
    except OSError:
        return None
    if sidecar is not None:
        return record_from_sidecar(run_dir, sidecar)
    if events is None:
        return None
    return record_from_events(run_dir, events, None if isinstance(run_dir, Path) else _remote_status(events))


def _remote_status(events: RunEvents) -> str:
    """The status of a live run read from an object store, where no writer lock can be looked at:
    as its last finish event says, else running."""
    finish = (events.last_finish or {}).get("status")
    return finish if finish in (fmt.FINISHED, fmt.FAILED) else fmt.RUNNING
