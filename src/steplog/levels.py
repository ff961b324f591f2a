"""Precomputed levels of a compacted run (a mipmap), so that the whole of a very long run is a small read.

``write_levels(run_dir)`` writes ``metrics.levels.parquet`` beside ``metrics.parquet``: for every
metric, the first, minimum, maximum and last point of each bucket of ``LEVEL_BUCKET`` consecutive
steps (and the first NaN/inf of a bucket that has one), with the point's index among the metric's
points. Those points are real points at their own steps, so bucketing them again for a chart keeps
every bucket's true minimum and maximum. The file records the ``sha256`` of the events it derives
from (the sidecar's), so a run compacted again makes it stale and it is ignored until rewritten.
Compaction writes it for runs of at least ``LEVELS_MIN_ROWS`` rows (shorter runs are read whole
fast enough); like the Parquet file, it is derived and rebuildable.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="a", root=root) as run:
    ...     for step in range(10_000):
    ...         run.log({"loss": 1.0 if step != 4321 else 99.0})
    >>> _ = steplog.compact(root, quiet=True)
    >>> write_levels(run.dir).name
    'metrics.levels.parquet'
    >>> xs, ys, index = read_level(run.dir, "loss")
    >>> len(xs) < 10_000, float(ys.max()), int(index[-1])
    (True, 99.0, 9999)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from . import format as fmt
from . import store
from .atomic import write_atomically
from .downsample import kept_indices

#: Name of the levels file in a compacted run's directory.
LEVELS_FILE = fmt.LEVELS_FILE
#: Compaction writes levels for runs of at least this many rows.
LEVELS_MIN_ROWS = 1_000_000
#: Raw points per bucket of the level.
LEVEL_BUCKET = 256
_KEY = b"steplog.events_sha256"


def write_levels(run_dir: Path) -> Path:
    """Write the levels file of the compacted run in ``run_dir`` (atomically); return its path."""
    import pyarrow.parquet as pq

    sha = _events_sha(run_dir)
    if sha is None:
        raise FileNotFoundError(f"{run_dir} is not a compacted run ({fmt.SIDECAR_FILE} with its events' sha256)")
    frame = pl.scan_parquet(run_dir / fmt.PARQUET_FILE, hive_partitioning=False).filter(~pl.col("superseded"))
    metrics = [c for c in frame.collect_schema().names() if c not in fmt.RESERVED_NAMES and c != "superseded"]
    parts = [_level(frame, m) for m in metrics]
    table = pl.concat(parts) if parts else pl.DataFrame(schema={"metric": pl.String, "i": pl.Int64,
                                                                 "x": pl.Float64, "y": pl.Float64})
    arrow = table.to_arrow()
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), _KEY: sha.encode()})
    return write_atomically(run_dir / LEVELS_FILE, lambda f: pq.write_table(arrow, f, compression="zstd"))


def _level(frame: pl.LazyFrame, metric: str) -> pl.DataFrame:
    selected = frame.select(pl.col("step").cast(pl.Float64).alias("x"), pl.col(metric).alias("y"))
    points = selected.filter(pl.col("y").is_not_null()).sort("x").collect()
    xs, ys = points["x"].to_numpy(), points["y"].to_numpy()
    bad = np.flatnonzero(~np.isfinite(ys))
    keep = kept_indices(np.where(np.isfinite(ys), ys, np.nan), LEVEL_BUCKET) if len(ys) else np.empty(0, np.int64)
    if len(bad):  # the first NaN/inf of each bucket, as logged, so that it is still marked
        keep = np.union1d(keep, bad[np.unique(bad // LEVEL_BUCKET, return_index=True)[1]])
    return pl.DataFrame({"metric": pl.repeat(metric, len(keep), eager=True, dtype=pl.String),
                         "i": keep.astype(np.int64), "x": xs[keep], "y": ys[keep]})


def read_level(run_dir: Path, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(x, y, index)`` of ``metric``'s level points, or None without a current levels file.

    Example:
        >>> read_level(Path("/no/such/run"), "loss") is None
        True
    """
    import pyarrow.parquet as pq

    path = run_dir / LEVELS_FILE
    try:
        recorded = (pq.read_schema(path).metadata or {}).get(_KEY)
    except OSError:
        return None
    sha = _events_sha(run_dir)
    if sha is None or recorded != sha.encode():
        return None  # compacted again since: stale
    level = pl.scan_parquet(path).filter(pl.col("metric") == metric).select("x", "y", "i").collect()
    return level["x"].to_numpy(), level["y"].to_numpy(), level["i"].to_numpy()


def _events_sha(run_dir: Path) -> str | None:
    events = store.raw_sidecar(run_dir).get("events")
    sha = events.get("sha256") if isinstance(events, dict) else None
    return sha if isinstance(sha, str) else None
