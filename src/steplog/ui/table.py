"""The dashboard's runs table (``GET /api/runs``): one JSON-ready dict per run, the compacted runs
taken in one read of the root catalog (``steplog.catalog.read``: the catalog file where it is
current, sidecars where it is not), the live runs from their events as the dashboard reads them.

Example:
    >>> import tempfile, steplog
    >>> from steplog import catalog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="a", config={"opt": {"lr": 0.1}}, root=root) as run:
    ...     run.log({"loss": 2.0}); run.log({"loss": 1.0})
    >>> _ = steplog.compact(root, quiet=True)
    >>> [row] = catalog_rows(catalog.read(root).table)
    >>> row["name"], row["config"], row["metrics"]["loss"], row["ranks"]
    ('a', {'opt': {'lr': 0.1}}, {'min': 1.0, 'max': 2.0, 'last': 1.0}, None)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from .live import LiveRun

#: The run-table columns of a catalog row, as the API names them.
_FIELDS = {
    "run_id": "id",
    "name": "name",
    "status": "status",
    "start_time": "start",
    "end_time": "end",
    "duration_s": "duration",
    "num_steps": "steps",
    "last_step": "last_step",
    "segments": "segments",
    "error": "error",
    "notes": "notes",
    "world_size": "world_size",
}
#: The summary figures the table shows (last and best of a metric, and the filter on them).
_FIGURES = ("last", "min", "max")


def catalog_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The API rows of a catalog-shaped frame (``steplog.catalog`` columns), in its order: only
    the fields the table needs, times as Unix seconds, config nested again, ``compacted`` true."""
    times = [pl.col(c).dt.epoch("us") / 1e6 for c in ("start_time", "end_time") if c in frame.columns]
    figures = [c for c in frame.columns if c.startswith("summary.") and c.rsplit(".", 1)[1] in _FIGURES]
    config = [c for c in frame.columns if c.startswith("config.")]
    wanted = [c for c in _FIELDS if c in frame.columns] + ["rank_status"] * ("rank_status" in frame.columns)
    records = frame.with_columns(times).select(*wanted, *config, *figures).to_dicts()
    rows = []
    for record in records:
        row = {api: record.get(column) for column, api in _FIELDS.items()}
        row["config"] = nest({c[7:]: record[c] for c in config if record[c] is not None})
        row["metrics"] = _metrics({c[8:]: record[c] for c in figures})
        row["ranks"] = parse_rank_status(record.get("rank_status"))
        row["world_size"] = row["world_size"] or 1
        row["compacted"] = True
        rows.append(row)
    return rows


def live_row(live: LiveRun, status: str, ranks: dict[str, str] | None) -> dict[str, Any]:
    """The runs-table row of a run read from its events (rank 0's, the run's status given)."""
    start = live.start or {}
    rows = live.rows
    finish = live.finish or {}
    metrics = live.metrics()
    summary = {}
    if rows.height:
        figures = rows.select(
            [
                pl.struct(
                    last=pl.col(m).drop_nulls().last(),
                    min=pl.col(m).fill_nan(None).min(),
                    max=pl.col(m).fill_nan(None).max(),
                ).alias(m)
                for m in metrics
            ]
        ).row(0)
        summary = dict(zip(metrics, figures))
    last = rows.row(-1, named=True) if rows.height else {}
    error = finish.get("error")
    return {
        "id": start.get("run_id"),
        "name": start.get("name"),
        "status": status,
        "start": start.get("time"),
        "end": last.get("time"),
        "duration": last.get("wallclock"),
        "steps": rows["step"].n_unique() if rows.height else 0,
        "last_step": last.get("step"),
        "segments": 1 + len(live.resumes),
        "error": f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else error,
        "notes": finish.get("notes"),
        "world_size": start.get("world_size") or 1,
        "ranks": ranks,
        "config": start.get("config") if isinstance(start.get("config"), dict) else {},
        "metrics": summary,
        "compacted": False,
    }


def _metrics(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"loss.last": 1.0, ...}`` as ``{"loss": {"last": 1.0, ...}}``, metrics never logged left out."""
    found: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        metric, _, figure = key.rpartition(".")
        found.setdefault(metric, {})[figure] = value
    return {m: f for m, f in found.items() if any(v is not None for v in f.values())}


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Flattened config keys (``model.depth``) nested again, as the run logged them.

    Example:
        >>> nest({"lr": 0.1, "model.depth": 4, "model.act": "gelu"})
        {'lr': 0.1, 'model': {'depth': 4, 'act': 'gelu'}}
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return out


def parse_rank_status(text: str | None) -> dict[str, str] | None:
    """``{rank: status}`` from the run table's ``rank_status`` text (None for one process).

    Example:
        >>> parse_rank_status("finished: 0, 2-3; crashed: 1")
        {'0': 'finished', '1': 'crashed', '2': 'finished', '3': 'finished'}
    """
    if not text:
        return None
    found: dict[int, str] = {}
    for group in text.split(";"):
        status, _, spans = group.strip().partition(":")
        for span in spans.split(","):
            low, _, high = span.strip().partition("-")
            if low.isdigit():
                found.update(dict.fromkeys(range(int(low), int(high or low) + 1), status.strip()))
    return {str(rank): found[rank] for rank in sorted(found)} or None


def rank_statuses_json(statuses: dict[int, str]) -> dict[str, str] | None:
    """``runstatus.rank_statuses`` as the API gives it: None for a single process.

    Example:
        >>> rank_statuses_json({0: "running", 1: "crashed"}), rank_statuses_json({0: "running"})
        ({'0': 'running', '1': 'crashed'}, None)
    """
    return {str(rank): statuses[rank] for rank in sorted(statuses)} if len(statuses) > 1 else None


def newest_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by start time, newest first (then by id, as ``steplog.store.run_dirs`` orders them).

    Example:
        >>> [r["id"] for r in newest_first([{"id": "a", "start": 1.0}, {"id": "b", "start": 2.0},
        ...                                 {"id": "c", "start": None}])]
        ['b', 'a', 'c']
    """
    return sorted(rows, key=lambda r: (r["start"] is not None, r["start"] or 0.0, r["id"]), reverse=True)
