"""Helpers shared by the importer tests: compare an imported run with what was written."""

from __future__ import annotations

import math
from pathlib import Path

import steplog
from steplog import format as fmt
from steplog import store


def decode(value):
    return fmt.decode_nonfinite(value) if isinstance(value, str) else float(value)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_values(run_id: str, root: Path, rows: dict[int, dict[str, float]]) -> None:
    """Every (step, metric) written is in the history with exactly that value, and nothing else is."""
    history = steplog.history(run_id, root=root)
    assert history["step"].to_list() == sorted(rows)
    metrics = [c for c in history.columns if c not in ("step", "wallclock", "time")]
    for record in history.iter_rows(named=True):
        written = rows[record["step"]]
        assert set(written) <= set(metrics)
        for metric in metrics:
            if metric in written:
                assert same(record[metric], float(written[metric])), (record["step"], metric, record[metric])
            else:
                assert record[metric] is None, (record["step"], metric)


def origin(run_id: str, root: Path) -> dict:
    return fmt.read_start_event(store.events_path(Path(root) / run_id))["meta"]["imported_from"]


def no_leftovers(root: Path) -> None:
    """A failed import leaves no temporary folder and nothing that reads as a run."""
    assert not [p for p in Path(root).iterdir() if p.name.startswith(".import-")] if Path(root).exists() else True
