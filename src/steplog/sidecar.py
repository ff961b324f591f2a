"""The sidecar ``run.json`` of a compacted run, as queries read it: its layout version, reading
and checking it (a damaged sidecar, or one of a newer layout, reads as None), its ranks.
Compaction writes it from a ``RunRecord`` (``steplog.compact``); ``steplog.model`` builds a
record from it.

Example:
    >>> check_sidecar({"sidecar_version": SIDECAR_VERSION + 1, "summary": {}}) is None
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import store
from .summaries import decode_summary

#: Version of the sidecar and Parquet layout, written into every ``run.json``; readers accept
#: versions <= it. 2: ``metrics.parquet`` holds a ``name`` column after ``run_id``.
SIDECAR_VERSION = 2


def read_sidecar(run_dir: Path) -> dict[str, Any] | None:
    """The sidecar (``run.json``) of a run directory, or None when it is missing, damaged or of a
    newer layout than this steplog reads. The summary comes back decoded (``MetricSummary``s).

    Example:
        >>> read_sidecar(Path("/no/such/run")) is None
        True
    """
    return check_sidecar(store.raw_sidecar(run_dir))


def check_sidecar(sidecar: dict[str, Any]) -> dict[str, Any] | None:
    """A parsed sidecar checked as ``read_sidecar`` checks it (summary decoded), wherever it was read
    from; None when it is damaged or of a newer layout than this steplog reads.

    Example:
        >>> check_sidecar({"sidecar_version": 2, "summary": {"loss": {"min": "nan"}}})["summary"]["loss"].min
        nan
    """
    if (
        not isinstance(sidecar.get("sidecar_version"), int)
        or sidecar["sidecar_version"] > SIDECAR_VERSION
        or not isinstance(sidecar.get("summary"), dict)
    ):
        return None
    try:
        sidecar["summary"] = decode_summary(sidecar["summary"])
    except (ValueError, AttributeError, TypeError):
        return None
    return sidecar


def sidecar_ranks(sidecar: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The sidecar's ranks of a run of several processes; () for one process (or an older sidecar)."""
    ranks = tuple(f for f in sidecar.get("ranks") or () if isinstance(f, dict))
    return ranks if len(ranks) > 1 else ()


def sidecar_metrics(sidecar: dict[str, Any]) -> tuple[str, ...]:
    """Every metric column of a compacted run's Parquet file (any rank's), in the sidecar's order.

    Example:
        >>> sidecar_metrics({"metrics": ["loss"], "ranks": [{"metrics": ["loss"]}, {"metrics": ["gpu"]}]})
        ('loss', 'gpu')
    """
    names = dict.fromkeys(sidecar.get("metrics") or ())
    for facts in sidecar.get("ranks") or ():
        names.update(dict.fromkeys(facts.get("metrics") or ()))
    return tuple(names)
