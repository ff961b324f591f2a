"""Queries over runs, returning Polars objects: ``history`` of one run, the ``runs`` table,
``summary``, ``compare``, ``best`` and ``export`` (``scan`` over many runs is in ``steplog.scan``).

Every query reads a run from its events file while it has one (live, or finished but not yet
compacted) and from its Parquet file and sidecar once compacted; the results are the same.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="baseline", config={"lr": 3e-4}, root=root) as run:
    ...     for step in range(3):
    ...         run.log({"train_loss": 3.0 - step})
    >>> steplog.history("baseline", root=root)["train_loss"].to_list()
    [3.0, 2.0, 1.0]
    >>> steplog.runs(root=root).select("name", "status", "num_steps", "config.lr").to_dicts()
    [{'name': 'baseline', 'status': 'finished', 'num_steps': 3, 'config.lr': 0.0003}]
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from . import format as fmt
from . import store
from .compact import SUMMARY_FIELDS, SUMMARY_TYPES, current_rows, read_sidecar, run_facts, summarize, write_atomically
from .reader import RunEvents, read_events, resolve_history



# --- one run, from wherever it lives ----------------------------------------------------------


def load_run(run_dir: Path) -> tuple[RunEvents | None, dict[str, Any] | None]:
    """(events, None) while the run has an events file; (None, sidecar) once compacted; the
    archived events if the sidecar is unreadable; (None, None) when there is no run here.

    Example:
        >>> load_run(Path("/no/such/run"))
        (None, None)
    """
    try:
        return read_events(run_dir / fmt.EVENTS_FILE), None
    except FileNotFoundError:  # never had one, or compaction moved it while we looked
        pass
    sidecar = read_sidecar(run_dir)
    if sidecar is not None:
        return None, sidecar
    try:
        return read_events(run_dir / fmt.ARCHIVED_EVENTS_FILE), None
    except FileNotFoundError:
        return None, None


def _compacted_history(run_dir: Path, sidecar: dict[str, Any], all_segments: bool) -> pl.LazyFrame:
    frame = pl.scan_parquet(run_dir / fmt.PARQUET_FILE, hive_partitioning=False)
    frame = frame if all_segments else current_rows(frame, bool(sidecar.get("steps_sorted")))
    return frame.drop("run_id", "name", strict=False)


def _history(run_dir: Path, all_segments: bool = False) -> pl.DataFrame:
    events, sidecar = load_run(run_dir)
    if events is not None:
        return resolve_history(events, all_segments=all_segments)
    if sidecar is None:
        raise store.RunNotFoundError(f"{run_dir} holds no run ({fmt.EVENTS_FILE}, {fmt.SIDECAR_FILE} and "
                                     f"{fmt.ARCHIVED_EVENTS_FILE} are all missing)")
    try:
        return _compacted_history(run_dir, sidecar, all_segments).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        archived = run_dir / fmt.ARCHIVED_EVENTS_FILE
        if not archived.exists():
            raise
        warnings.warn(f"steplog: {run_dir / fmt.PARQUET_FILE} is unreadable ({exc}); reading {archived} instead. "
                      f"Run steplog.compact() again after moving it back to {run_dir / fmt.EVENTS_FILE} to rebuild it",
                      stacklevel=3)
        return resolve_history(read_events(archived), all_segments=all_segments)


def history(run: str | os.PathLike, root: str | os.PathLike = "experiment_logs", *, all_segments: bool = False) -> pl.DataFrame:
    """The history of one run: one row per step, sorted by step.

    ``run`` is a run id, a unique id prefix, or a name (the latest run of that name). Columns:
    ``step`` (Int64), ``wallclock`` (Float64 seconds since start), ``time`` (UTC datetime), then
    one Float64 column per metric; null where a step did not log a metric, NaN kept as NaN.
    ``all_segments=True`` also returns rows superseded by a resume (see ``steplog.init``), with
    ``segment`` and ``superseded`` columns. Compacted or not, a run gives the same frame.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> run = steplog.init(name="x", root=root)
        >>> run.log({"loss": 2.0}); run.log({"loss": 1.5, "val_loss": 1.7}); run.finish()
        >>> steplog.history("x", root=root).select("step", "loss", "val_loss").rows()
        [(0, 2.0, None), (1, 1.5, 1.7)]
    """
    return _history(store.resolve_run(run, root), all_segments)


def summary(run: str | os.PathLike, root: str | os.PathLike = "experiment_logs") -> dict[str, dict[str, Any]]:
    """Per-metric figures of a run: ``{metric: {count, nan_count, min, max, mean, std, first, last,
    step_of_min, step_of_max}}`` (see ``steplog.compact.summarize``): the sidecar's for a compacted
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
    return _summary(store.resolve_run(run, root))


def _summary(run_dir: Path, loaded: tuple[RunEvents | None, dict[str, Any] | None] | None = None) -> dict[str, dict[str, Any]]:
    events, sidecar = loaded or load_run(run_dir)
    if sidecar is not None:
        return sidecar["summary"]
    if events is None:
        raise store.RunNotFoundError(f"{run_dir} holds no run")
    return summarize(resolve_history(events))


# --- the runs table ---------------------------------------------------------------------------


def runs(root: str | os.PathLike = "experiment_logs", *, metrics: Iterable[str] | str | None = None,
         figures: Iterable[str] = ("best", "last"), mode: str | dict[str, str] = "min",
         runs: Iterable[str] | None = None) -> pl.DataFrame:
    """One row per run under ``root`` (or per run of ``runs``: ids, id prefixes or names), oldest
    first. Compacted runs are read from their sidecar only (their Parquet file is never opened).

    Columns: ``run_id``, ``name``, ``status`` (running / finished / failed / crashed),
    ``start_time``, ``end_time`` (UTC datetimes; the last event for a run that has not finished),
    ``duration_s``, ``num_steps``, ``last_step``, ``segments``, ``error``, ``notes``, then the
    config flattened into ``config.<key>`` columns (nested keys joined with '.').

    ``metrics`` (a list, or ``"all"`` for every metric logged) adds ``<metric>.<figure>`` columns
    as ``compare`` does (``figures``, ``mode``), from the sidecar's summary for a compacted run.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> steplog.init(name="a", config={"model": {"d": 512}}, root=root).finish()
        >>> steplog.runs(root=root).select("name", "status", "config.model.d").rows()
        [('a', 'finished', 512)]
        >>> with steplog.init(name="b", root=root) as run:
        ...     run.log({"loss": 2.0}); run.log({"loss": 1.0}); run.log({"loss": 1.5})
        >>> steplog.runs(root=root, metrics="all").select("name", "loss.best", "loss.last").rows()
        [('a', None, None), ('b', 1.0, 1.5)]
        >>> steplog.runs(root=root, runs=["b"])["name"].to_list()
        ['b']
    """
    if metrics is None:
        records = [run_record(d) for d in store.resolve_runs(runs, root)]
        return _records_frame([r for r in records if r is not None])
    figures = _check_figures(figures)
    records, summaries = _records_and_summaries(root, runs)
    return _records_frame(records).with_columns(
        _figure_columns(summaries, None if metrics == "all" else metrics, figures, mode, root))


def run_record(run_dir: Path, loaded: tuple[RunEvents | None, dict[str, Any] | None] | None = None) -> dict[str, Any] | None:
    """The ``runs()`` row of one run directory (None when it holds no readable run).

    Example:
        >>> run_record(Path("/no/such/run")) is None
        True
    """
    found = _facts(run_dir, loaded)
    return None if found is None else _record(found)


class _Facts:
    """What one read of a run gives: ``facts`` (``compact.run_facts``, or the sidecar), ``status``,
    and for a run read from its events the all-segments history they were computed from, which
    ``summary`` uses instead of resolving the events again."""

    def __init__(self, facts: dict[str, Any], status: str | None, history_all: pl.DataFrame | None) -> None:
        self.facts, self.status, self.history_all = facts, status, history_all

    def summary(self) -> dict[str, dict[str, Any]]:
        return self.facts["summary"] if self.history_all is None else summarize(current_rows(self.history_all))


def _record(found: _Facts) -> dict[str, Any]:
    facts = found.facts
    finish = facts.get("finish") or {}
    error = finish.get("error")
    return {
        "run_id": facts["run_id"],
        "name": facts["name"],
        "status": found.status,
        "start_time": _utc(facts["start_time"]),
        "end_time": _utc(facts["end_time"]),
        "duration_s": facts["duration_s"],
        "num_steps": facts["num_steps"],
        "last_step": facts["last_step"],
        "segments": len(facts["segments"]),
        "error": f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else None,
        "notes": finish.get("notes"),
        "config": facts["config"] if isinstance(facts.get("config"), dict) else {},
    }


def _facts(run_dir: Path, loaded: tuple[RunEvents | None, dict[str, Any] | None] | None = None) -> _Facts | None:
    """The facts of the run in ``run_dir`` from one read (``loaded``, else ``load_run``); None when no run is there."""
    try:
        events, sidecar = loaded or load_run(run_dir)
    except OSError:
        return None
    if sidecar is not None:
        return _Facts(sidecar, sidecar.get("status"), None)
    if events is None:
        return None
    history_all = resolve_history(events, all_segments=True)
    facts = run_facts(run_dir, events, history_all)
    finish = facts["finish"]
    return _Facts(facts, store.run_status(run_dir, finish.get("status") if finish else None), history_all)


def run_info(run: str | os.PathLike, root: str | os.PathLike = "experiment_logs") -> dict[str, Any]:
    """Everything known about one run, for ``steplog show``: ``run_id``, ``name``, ``status``,
    ``dir``, ``compacted``, ``config``, ``meta`` (host, pid, python, platform, argv, cwd,
    steplog_version, git_commit, git_dirty: what the writer captured), ``start_time``,
    ``end_time`` (UTC datetimes), ``duration_s``, ``num_steps``, ``first_step``, ``last_step``,
    ``num_rows``, ``superseded_rows``, ``error``, ``notes``, ``segments`` (one dict per segment:
    ``segment``, ``start_step``, ``first_step``, ``last_step``, ``rows``, ``superseded_rows``,
    ``start_time``, ``end_time``, ``durability``, ``status``) and ``summary`` (``summary()``).
    A compacted run is described from its sidecar alone.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> with steplog.init(name="x", config={"lr": 0.1}, root=root) as run:
        ...     run.log({"loss": 2.0}); run.log({"loss": 1.0})
        >>> info = run_info("x", root)
        >>> info["status"], info["config"], info["num_steps"], info["summary"]["loss"]["min"]
        ('finished', {'lr': 0.1}, 2, 1.0)
        >>> [s["status"] for s in info["segments"]]
        ['finished']
    """
    run_dir = store.resolve_run(run, root)
    found = _facts(run_dir)
    if found is None:
        raise store.RunNotFoundError(f"{run_dir} holds no readable run")
    facts, record = found.facts, _record(found)
    segments = [{**{k: v for k, v in segment.items() if k not in ("finish", "meta")},
                 "start_time": _utc(segment.get("start_time")), "end_time": _utc(segment.get("end_time")),
                 "status": (segment.get("finish") or {}).get("status")}
                for segment in facts.get("segments", [])]
    return {
        "run_id": facts["run_id"],
        "name": facts["name"],
        "status": found.status,
        "dir": str(run_dir),
        "compacted": found.history_all is None,
        "config": record.get("config", {}),
        "meta": facts.get("meta") if isinstance(facts.get("meta"), dict) else {},
        "start_time": record.get("start_time"),
        "end_time": record.get("end_time"),
        "duration_s": facts.get("duration_s"),
        "num_steps": facts.get("num_steps"),
        "first_step": facts.get("first_step"),
        "last_step": facts.get("last_step"),
        "num_rows": facts.get("num_rows"),
        "superseded_rows": facts.get("superseded_rows"),
        "error": record.get("error"),
        "notes": record.get("notes"),
        "segments": segments,
        "summary": found.summary(),
    }


# --- many runs at once ------------------------------------------------------------------------


def _loaded_runs(root: str | os.PathLike, runs: Iterable[str] | str | None) -> list[tuple[Path, tuple]]:
    return [(d, loaded) for d in store.resolve_runs(runs, root) if (loaded := load_run(d)) != (None, None)]


def _check_mode(metric: str, mode: str) -> str:
    """``"min"`` or ``"max"`` for ``metric``: ``mode`` itself, or for ``"auto"`` what the name suggests."""
    if mode == "auto":
        return "max" if higher_is_better(metric) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode for metric {metric!r} is {mode!r}; use 'min' (lower is better), 'max' or 'auto'")
    return mode


_HIGHER_IS_BETTER = frozenset({"acc", "accuracy", "score", "reward", "return", "auc", "f1", "bleu", "rouge",
                               "precision", "recall", "throughput", "mfu"})


def higher_is_better(metric: str) -> bool:
    """Whether a metric's name says that higher is better (``mode="auto"``): a word of it (split at
    anything but letters and digits) is one of acc, accuracy, score, reward, return, auc, f1, bleu,
    rouge, precision, recall, throughput, mfu, or it is a rate (``*per_sec``, ``*per_s``).
    Everything else (losses, perplexity, error rates, norms) is taken as lower is better.

    Example:
        >>> [higher_is_better(m) for m in ("val_loss", "val/acc", "tokens_per_sec", "top1_accuracy", "ppl")]
        [False, True, True, True, False]
    """
    words = set(re.split(r"[^a-z0-9]+", metric.lower()))
    return bool(words & _HIGHER_IS_BETTER) or bool(re.search(r"per_s(ec)?$", metric.lower())) \
        or any(w.endswith(("accuracy", "acc")) for w in words if w.startswith("top"))


def best(metric: str, mode: str = "min", root: str | os.PathLike = "experiment_logs", *,
         runs: Iterable[str] | None = None) -> dict[str, Any]:
    """The run with the best value of ``metric`` over its whole history: ``{"run_id", "name",
    "value", "step"}``. ``mode`` is ``"min"``, ``"max"`` or ``"auto"`` (max for names like
    accuracy or tokens_per_sec: ``higher_is_better``). Runs that never logged the metric (or
    only NaN) are ignored; NaN never wins. Ties go to the earliest run (by start), and within a
    run to the earliest step. Compacted runs are decided from their sidecars alone.

    Raises ValueError when no run has a value for ``metric``.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> for name, losses in (("a", [3.0, 2.0]), ("b", [2.5, 1.0, 1.5])):
        ...     with steplog.init(name=name, root=root) as run:
        ...         for loss in losses:
        ...             run.log({"val_loss": loss})
        >>> r = steplog.best("val_loss", root=root); (r["name"], r["value"], r["step"])
        ('b', 1.0, 1)
    """
    direction = _check_mode(metric, mode)
    rows = []
    available: dict[str, None] = {}
    for run_dir, loaded in _loaded_runs(root, runs):
        figures = _summary(run_dir, loaded)
        available.update(dict.fromkeys(figures))
        record = figures.get(metric) or {}
        run_id, name = run_identity(run_dir, loaded)
        rows.append({"run_id": run_id, "name": name, "value": record.get(direction),
                     "step": record.get(f"step_of_{direction}")})
    table = pl.DataFrame(rows, schema={"run_id": pl.String, "name": pl.String, "value": pl.Float64, "step": pl.Int64})
    winner = table.drop_nulls("value").sort("value", descending=direction == "max", maintain_order=True).head(1)
    if winner.height == 0:
        raise ValueError(f"no run under {root} has a value for metric {metric!r} (NaN aside); "
                         f"{metric_hint(metric, available)}")
    return winner.row(0, named=True)


def metric_hint(metric: str, available: Iterable[str]) -> str:
    """For an error about an unknown metric: ``did you mean ...?`` with the names close to
    ``metric``, else the names there are.

    Example:
        >>> metric_hint("val_los", ["train_loss", "val_loss", "lr"])
        "did you mean 'val_loss', 'train_loss'?"
        >>> metric_hint("acc", ["loss"])
        'metrics logged there: loss'
    """
    known = sorted(available)
    close = difflib.get_close_matches(metric, known, n=3, cutoff=0.5)
    if close and metric not in known:
        return f"did you mean {', '.join(map(repr, close))}?"
    return f"metrics logged there: {', '.join(known[:20]) or 'none'}" + (" ..." if len(known) > 20 else "")


def check_metrics(metrics: Iterable[str], logged: Iterable[str], root: str | os.PathLike) -> None:
    """Raise ValueError naming the first of ``metrics`` that is not among the metrics ``logged``
    by the runs under ``root``, with the close names (``metric_hint``).

    Example:
        >>> check_metrics(["val_loss"], ["train_loss", "val_loss"], "logs")
        >>> check_metrics(["val_los"], ["train_loss", "val_loss"], "logs")
        Traceback (most recent call last):
        ...
        ValueError: no run in logs logged metric 'val_los'; did you mean 'val_loss', 'train_loss'?
    """
    logged = set(logged)
    for metric in metrics:
        if metric not in logged:
            raise ValueError(f"no run in {root} logged metric {metric!r}; {metric_hint(metric, logged)}")


def run_identity(run_dir: Path, loaded: tuple[RunEvents | None, dict[str, Any] | None]) -> tuple[str, str]:
    """(run id, name) of a run as ``load_run`` loaded it (the directory's name where unknown).

    Example:
        >>> run_identity(Path("/logs/20260102-030405-678-aaaaaa"), (None, {"name": "a"}))
        ('20260102-030405-678-aaaaaa', 'a')
    """
    events, sidecar = loaded
    start = sidecar if sidecar is not None else (events.start or {})
    return start.get("run_id", run_dir.name), start.get("name", run_dir.name)


def compare(runs: Iterable[str] | None = None, metrics: Iterable[str] | None = None,
            root: str | os.PathLike = "experiment_logs", *, figures: Iterable[str] = ("best", "last"),
            mode: str | dict[str, str] = "min") -> pl.DataFrame:
    """One row per run (all runs under ``root``, or ``runs``: ids, id prefixes or names): ``run_id``,
    ``name``, the ``config.<key>`` columns whose values differ between these runs (a key missing
    from some runs differs), then ``<metric>.<figure>`` for each metric (default: every metric
    logged) and figure. Figures: ``best`` (min or max by ``mode``, a string or a dict metric ->
    mode; default min; ``"auto"``: by the metric's name, see ``higher_is_better``), ``step_of_best``,
    and any of ``steplog.compact.SUMMARY_FIELDS``.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> for lr in (0.1, 0.2):
        ...     with steplog.init(config={"lr": lr, "layers": 4}, root=root) as run:
        ...         run.log({"loss": 2.0}); run.log({"loss": lr * 10})
        >>> steplog.compare(root=root).drop("run_id", "name").rows()
        [(0.1, 1.0, 1.0), (0.2, 2.0, 2.0)]
        >>> steplog.compare(root=root).columns[2:]
        ['config.lr', 'loss.best', 'loss.last']
    """
    figures = _check_figures(figures)
    records, summaries = _records_and_summaries(root, runs)
    table = _records_frame(records)
    return table.select("run_id", "name", *differing_config(table)).with_columns(
        _figure_columns(summaries, metrics, figures, mode, root))


def differing_config(table: pl.DataFrame) -> list[str]:
    """The ``config.<key>`` columns of a runs table whose values differ between its rows (a key
    missing from some runs differs): what ``compare`` shows.

    Example:
        >>> differing_config(pl.DataFrame({"name": ["a", "b"], "config.lr": [0.1, 0.2], "config.layers": [4, 4]}))
        ['config.lr']
    """
    return [c for c in table.columns if c.startswith("config.") and table[c].n_unique() > 1]


def _records_and_summaries(root: str | os.PathLike, runs: Iterable[str] | str | None
                           ) -> tuple[list[dict[str, Any]], list[dict[str, dict[str, Any]]]]:
    """The ``run_record`` and the ``summary`` of each run, from one read of each run."""
    records, summaries = [], []
    for run_dir, loaded in _loaded_runs(root, runs):
        found = _facts(run_dir, loaded)
        if found is not None:
            records.append(_record(found))
            summaries.append(found.summary())
    return records, summaries


def _check_figures(figures: Iterable[str]) -> list[str]:
    figures = list(figures)
    for figure in figures:
        if figure not in ("best", "step_of_best", *SUMMARY_FIELDS):
            raise ValueError(f"unknown figure {figure!r}; choose from best, step_of_best, {', '.join(SUMMARY_FIELDS)}")
    return figures


def _figure_columns(summaries: list[dict[str, dict[str, Any]]], metrics: Iterable[str] | str | None,
                    figures: list[str], mode: str | dict[str, str], root: str | os.PathLike) -> list[pl.Series]:
    """The ``<metric>.<figure>`` columns of ``compare`` and ``runs``, one value per summary;
    ``metrics=None``: every metric in the summaries, in order of first appearance. A metric named
    that no run logged raises ValueError with close names."""
    if metrics is None:
        names: dict[str, None] = {}
        for figures_of_run in summaries:
            names.update(dict.fromkeys(figures_of_run))
        metrics = list(names)
    else:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        if summaries:
            check_metrics(metrics, {name for figures_of_run in summaries for name in figures_of_run}, root)
    columns = []
    for metric in metrics:
        direction = _check_mode(metric, mode.get(metric, "min") if isinstance(mode, dict) else mode)
        for figure in figures:
            field = {"best": direction, "step_of_best": f"step_of_{direction}"}.get(figure, figure)
            values = [(s.get(metric) or {}).get(field) for s in summaries]
            columns.append(pl.Series(f"{metric}.{figure}", values, dtype=SUMMARY_TYPES[field]))
    return columns


def export(run: str | os.PathLike, path: str | os.PathLike, root: str | os.PathLike = "experiment_logs", *,
           all_segments: bool = False) -> Path:
    """Write a run's history (``steplog.history``) to ``path``: CSV for ``.csv``, Parquet for
    ``.parquet``/``.pq``. The file is written with ``steplog.compact.write_atomically`` (a
    temporary name, fsync, rename), so it is never seen half-written. Returns the path.

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
    frame = history(run, root, all_segments=all_segments)
    if suffix == ".csv":
        return write_atomically(path, frame.write_csv)
    return write_atomically(path, lambda f: frame.write_parquet(f, compression="zstd", statistics=True))


# --- config columns ---------------------------------------------------------------------------


def flatten_config(config: dict[str, Any], prefix: str = "config.") -> dict[str, Any]:
    """Flatten nested dicts into ``{prefix + 'a.b': value}``; lists stay values.

    Example:
        >>> flatten_config({"model": {"d": 512, "heads": 8}, "lr": 0.1})
        {'config.model.d': 512, 'config.model.heads': 8, 'config.lr': 0.1}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_RUN_COLUMNS = {
    "run_id": pl.String, "name": pl.String, "status": pl.String,
    "start_time": pl.Datetime("us", "UTC"), "end_time": pl.Datetime("us", "UTC"), "duration_s": pl.Float64,
    "num_steps": pl.Int64, "last_step": pl.Int64, "segments": pl.Int64, "error": pl.String, "notes": pl.String,
}


def _records_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    base = pl.DataFrame([{k: r[k] for k in _RUN_COLUMNS} for r in records], schema=_RUN_COLUMNS)
    flat = [flatten_config(r["config"]) for r in records]
    keys: dict[str, None] = {}
    for row in flat:
        keys.update(dict.fromkeys(row))
    config_columns = [config_column(key, [row.get(key) for row in flat]) for key in keys]
    return base.with_columns(config_columns) if config_columns else base


def config_column(name: str, values: list[Any]) -> pl.Series:
    """One config column over several runs, typed by what the values share: Int64, Float64,
    Boolean or String; values of mixed kinds (or lists) become their JSON text.

    Example:
        >>> config_column("config.lr", [1, 0.5, None]).dtype
        Float64
    """
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds <= {int} and all(v is None or -(2**63) <= v < 2**63 for v in values):
        return pl.Series(name, values, dtype=pl.Int64)
    if kinds <= {int, float}:
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    if kinds <= {str}:
        return pl.Series(name, values, dtype=pl.String)
    return pl.Series(name, [None if v is None else (v if isinstance(v, str) else orjson.dumps(v).decode()) for v in values],
                     dtype=pl.String)


def _utc(seconds: float | None) -> _dt.datetime | None:
    if seconds is None:
        return None
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
