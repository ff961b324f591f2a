"""Queries over one run or many, returning Polars objects or the documented dicts: ``history``,
``summary``, ``run_info``, ``best`` and ``export``. The runs table and ``compare`` are in
``steplog.runtable``, ``scan`` in ``steplog.scanning``; all build on ``steplog.model``.

Every query reads a run from its events file while it has one (live, or finished but not yet
compacted) and from its Parquet file and sidecar once compacted; the results are the same.

Where the root is the only subject (``runs``, ``scan``, ``compact``) it comes first; where a run or
a metric does, ``root`` is keyword-only (``history(run, root=...)``). Passing it by position there
still works for one release, with a DeprecationWarning.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="baseline", config={"lr": 3e-4}, root=root) as run:
    ...     for step in range(3):
    ...         run.log({"train_loss": 3.0 - step})
    >>> steplog.history("baseline", root=root)["train_loss"].to_list()
    [3.0, 2.0, 1.0]
    >>> steplog.best("train_loss", root=root)["value"]
    1.0
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from . import format as fmt
from . import readcache, roots, store
from .atomic import write_atomically
from .keywordonly import root_keyword_only
from .model import RemoteRun, RunRecord, current_rows, load_record, load_run
from .ranking import (  # noqa: F401  (their home was this module)
    best,
    check_metrics,
    check_mode,
    higher_is_better,
    loaded_runs,
    metric_hint,
)
from .rankread import RANK_DTYPE, check_rank, no_such_rank, rank_history
from .reader import metric_col, read_events, resolve_history
from .sidecar import sidecar_metrics
from .summaries import summarize

# --- one run, from wherever it lives ----------------------------------------------------------


def _compacted_history(
    run_dir: roots.RunDir, sidecar: dict[str, Any], all_segments: bool, rank: int | str = 0
) -> pl.LazyFrame:
    frame = roots.scan_parquet([run_dir])
    frame = frame if all_segments else current_rows(frame, bool(sidecar.get("steps_sorted")))
    frame = frame.drop("run_id", "name", strict=False)
    columns = (sidecar.get("parquet") or {}).get("columns") or []
    if "rank" not in columns:  # written before ranks (or by one process of an older steplog): all rank 0
        if rank not in (0, "all"):
            raise no_such_rank(run_dir, rank, [0])
        return frame.select(pl.lit(0, RANK_DTYPE).alias("rank"), pl.all()) if rank == "all" else frame
    if rank == "all":
        return frame
    known = {f.get("rank"): f for f in sidecar.get("ranks") or [{"rank": 0, "metrics": sidecar.get("metrics")}]}
    if rank not in known:
        raise no_such_rank(run_dir, rank, sorted(known))
    metrics = known[rank].get("metrics") or []
    every = set(sidecar_metrics(sidecar))
    names = frame.collect_schema().names()
    keep = [metric_col(c, names) for c in names if c != "rank" and (c in metrics or c not in every)]
    return frame.filter(pl.col("rank") == rank).select(keep)


def _history(run_dir: roots.RunDir, all_segments: bool = False, rank: int | str = 0) -> pl.DataFrame:
    events, sidecar = (None, None) if rank != 0 else load_run(run_dir)
    if rank != 0:
        if isinstance(run_dir, Path):
            sidecar = readcache.sidecar(run_dir) if not (run_dir / fmt.EVENTS_FILE).exists() else None
        else:
            sidecar = load_run(run_dir)[1]
        if sidecar is None:
            if not isinstance(run_dir, Path):
                raise ValueError(
                    f"history(rank={rank!r}) of a live run in object storage is not supported; "
                    f"read it where it runs, or once it is compacted and pushed"
                )
            return rank_history(run_dir, rank, all_segments)
    if events is not None:
        return resolve_history(events, all_segments=all_segments)
    if sidecar is None:
        raise store.RunNotFoundError(
            f"{run_dir} holds no run ({fmt.EVENTS_FILE}, {fmt.SIDECAR_FILE} and "
            f"{fmt.ARCHIVED_EVENTS_FILE} are all missing)"
        )
    # a local run's compacted files are renamed into place, never changed: read once while the same
    files = None
    if isinstance(run_dir, Path):
        files = readcache.stamp(run_dir / fmt.PARQUET_FILE, run_dir / fmt.SIDECAR_FILE)
    try:
        frame = readcache.derived(
            ("compacted history", run_dir, all_segments, rank),
            files,
            lambda: _compacted_history(run_dir, sidecar, all_segments, rank).collect(),
        )
        return frame.clone()
    except (OSError, pl.exceptions.PolarsError) as exc:
        if not isinstance(run_dir, Path):
            raise
        archived = run_dir / fmt.ARCHIVED_EVENTS_FILE
        if not archived.is_file():
            raise store.storage_error(
                exc, f"run {run_dir.name}: cannot read", run_dir / fmt.PARQUET_FILE, store.rebuild_hint(run_dir)
            ) from exc
        warnings.warn(
            f"steplog: {run_dir / fmt.PARQUET_FILE} is unreadable ({exc}); reading {archived} instead; "
            f"{store.rebuild_hint(run_dir)}",
            stacklevel=3,
        )
        if rank != 0:  # every rank's archived events are there too
            return rank_history(run_dir, rank, all_segments)
        return resolve_history(read_events(archived), all_segments=all_segments)


@root_keyword_only(1, ("root",))
def history(
    run: str | os.PathLike | RemoteRun,
    *,
    root: roots.Root = "experiment_logs",
    all_segments: bool = False,
    rank: int | str = 0,
) -> pl.DataFrame:
    """The history of one run: one row per step, sorted by step.

    ``run`` is a run id, a unique id prefix, or a name (the latest run of that name). Columns:
    ``step`` (Int64), ``wallclock`` (Float64 seconds since start), ``time`` (UTC datetime), then
    one Float64 column per metric; null where a step did not log a metric, NaN kept as NaN.
    ``all_segments=True`` also returns rows superseded by a resume (see ``steplog.init``), with
    ``segment`` and ``superseded`` columns. Compacted or not, a run gives the same frame.

    A run of several processes (docs/distributed.md): ``rank=0`` (default) is rank 0's history,
    ``rank=k`` rank k's, ``rank="all"`` every rank's with a ``rank`` column (Int32) in front, ranks
    in order, each rank's rows by step, null where a rank did not log a metric.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> run = steplog.init(name="x", root=root)
        >>> run.log({"loss": 2.0}); run.log({"loss": 1.5, "val_loss": 1.7}); run.finish()
        >>> steplog.history("x", root=root).select("step", "loss", "val_loss").rows()
        [(0, 2.0, None), (1, 1.5, 1.7)]
    """
    return _history(roots.resolve_run(run, root), all_segments, check_rank(rank))


@root_keyword_only(1, ("root",))
def summary(run: str | os.PathLike | RemoteRun, *, root: roots.Root = "experiment_logs") -> dict[str, dict[str, Any]]:
    """Per-metric figures of a run: ``{metric: {count, nan_count, min, max, mean, std, first, last,
    step_of_min, step_of_max}}`` (see ``steplog.summaries.summarize``): the sidecar's for a compacted
    run, computed the same way from the events for the others. NaN never is a min or max.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> with steplog.init(name="x", root=root) as run:
        ...     run.log({"loss": 2.0}); run.log({"loss": float("nan")}); run.log({"loss": 0.5})
        >>> s = steplog.summary("x", root=root)["loss"]
        >>> s["min"], s["step_of_min"], s["nan_count"], s["last"]
        (0.5, 2, 1, 0.5)
    """
    run_dir = roots.resolve_run(run, root)
    events, sidecar = load_run(run_dir)
    if sidecar is not None:
        return {name: figures.to_dict() for name, figures in sidecar["summary"].items()}
    if events is None:
        raise store.RunNotFoundError(f"{run_dir} holds no run")
    return {name: figures.to_dict() for name, figures in summarize(resolve_history(events)).items()}


@root_keyword_only(1, ("root",))
def run_info(run: str | os.PathLike, *, root: roots.Root = "experiment_logs") -> dict[str, Any]:
    """Everything known about one run, for ``steplog show``: ``run_id``, ``name``, ``status``,
    ``dir``, ``compacted``, ``config``, ``meta`` (host, pid, python, platform, argv, cwd,
    steplog_version, git_commit, git_dirty: what the writer captured), ``start_time``,
    ``end_time`` (UTC datetimes), ``duration_s``, ``num_steps``, ``first_step``, ``last_step``,
    ``num_rows``, ``superseded_rows``, ``error``, ``notes``, ``segments`` (one dict per segment:
    ``segment``, ``start_step``, ``first_step``, ``last_step``, ``rows``, ``superseded_rows``,
    ``start_time``, ``end_time``, ``durability``, ``status``), ``summary`` (``summary()``), and for
    a run of several processes ``world_size``, ``ranks`` (one dict per rank: ``rank``, ``status``,
    ``host``, ``pid``, ``local_rank``, ``device``, ``world_size``, ``restart``, ``segments``,
    ``steps``, ``last_step``; [] for one process) and ``crashed_ranks``.
    A compacted run is described from its sidecar alone.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> with steplog.init(name="x", config={"lr": 0.1}, root=root) as run:
        ...     run.log({"loss": 2.0}); run.log({"loss": 1.0})
        >>> info = run_info("x", root=root)
        >>> info["status"], info["config"], info["num_steps"], info["summary"]["loss"]["min"]
        ('finished', {'lr': 0.1}, 2, 1.0)
        >>> [s["status"] for s in info["segments"]]
        ['finished']
    """
    run_dir = roots.resolve_run(run, root)
    record = load_record(run_dir)
    if record is None:
        raise store.RunNotFoundError(f"{run_dir} holds no readable run")
    return info_dict(record)


def info_dict(record: RunRecord) -> dict[str, Any]:
    """``run_info``'s dict of a record: its public edge.

    Example:
        >>> import tempfile, steplog
        >>> run = steplog.init(name="x", root=tempfile.mkdtemp()); run.finish()
        >>> info_dict(load_record(run.dir))["compacted"]
        False
    """
    segments = [
        {
            "segment": s.segment,
            "start_step": s.start_step,
            "first_step": s.first_step,
            "last_step": s.last_step,
            "rows": s.rows,
            "superseded_rows": s.superseded_rows,
            "start_time": utc(s.start_time),
            "end_time": utc(s.end_time),
            "durability": s.durability,
            "status": s.finish.status if s.finish else None,
        }
        for s in record.segments
    ]
    return {
        "run_id": record.run_id,
        "name": record.name,
        "status": record.status,
        "dir": str(record.run_dir),
        "compacted": record.compacted,
        "config": record.config,
        "meta": record.meta,
        "start_time": utc(record.start_time),
        "end_time": utc(record.end_time),
        "duration_s": record.duration_s,
        "num_steps": record.num_steps,
        "first_step": record.first_step,
        "last_step": record.last_step,
        "num_rows": record.num_rows,
        "superseded_rows": record.superseded_rows,
        "error": record.finish.error_text if record.finish else None,
        "notes": record.finish.notes if record.finish else None,
        "segments": segments,
        "summary": record.summary_dicts(),
        "world_size": record.world_size,
        "ranks": [dict(f) for f in record.ranks],
        "crashed_ranks": record.crashed_ranks,
    }


def utc(seconds: float | None) -> _dt.datetime | None:
    """Unix seconds as a UTC datetime (None stays None).

    Example:
        >>> utc(0.0).isoformat()
        '1970-01-01T00:00:00+00:00'
    """
    if seconds is None:
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)


@root_keyword_only(2, ("root",))
def export(
    run: str | os.PathLike | RemoteRun,
    path: str | os.PathLike,
    *,
    root: roots.Root = "experiment_logs",
    all_segments: bool = False,
) -> Path:
    """Write a run's history (``steplog.history``) to ``path``: CSV for ``.csv``, Parquet for
    ``.parquet``/``.pq``. The file is written with ``steplog.atomic.write_atomically`` (a
    temporary name of its own, fsync, rename), so it is never seen half-written, and processes
    exporting to one path at once never clobber each other. Returns the path.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> with steplog.init(name="x", root=root) as run:
        ...     run.log({"loss": 1.0})
        >>> steplog.export("x", Path(root) / "x.csv", root=root).read_text().splitlines()[0]
        'step,wallclock,time,loss'
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"cannot tell the format of {path} from its extension {suffix!r}; use .csv, .parquet or .pq")
    frame = history(run, root=root, all_segments=all_segments)
    if suffix == ".csv":
        return write_atomically(path, frame.write_csv)
    return write_atomically(path, lambda f: frame.write_parquet(f, compression="zstd", statistics=True))
