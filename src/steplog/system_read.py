"""Reading system metrics (``steplog.system_metrics`` writes them): every rank's stream of a run as one
Polars frame, and the lines ``steplog show`` prints about it. Polars is imported when first needed.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> with steplog.init(name="x", root=root, system_metrics=True, system_interval=0.01) as run:
    ...     run.log({"loss": 1.0})
    >>> system("x", root=root).height >= 2
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import store
from .system_metrics import FILE_GLOB, FILE_PATTERN, GPU_FIGURES, HOST_FIGURES, system_file

if TYPE_CHECKING:
    import polars as pl

__all__ = ["read_system", "summary_lines", "system", "system_file"]


def read_system(run_dir: str | os.PathLike) -> pl.DataFrame:
    """The system metrics of a run directory, every rank's stream one after the other (by rank, each
    in the order written): ``time`` (UTC datetime), ``rank`` (Int64), then one Float64 column per
    figure (null where a sample lacks it). Torn lines, NUL bytes and other damage a crash leaves are
    skipped. A run without system metrics gives a frame with only ``time`` and ``rank``, and no rows.

    Example:
        >>> import tempfile
        >>> run_dir = Path(tempfile.mkdtemp())
        >>> _ = system_file(run_dir, 1).write_bytes(b'{"t": 0, "proc_rss_bytes": 2048}\\n{"t": 10, "proc_r')
        >>> read_system(run_dir).rows()
        [(datetime.datetime(1970, 1, 1, 0, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 1, 2048.0)]
    """
    import polars as pl

    rows: list[dict[str, Any]] = []
    for rank, path in _system_files(Path(run_dir)):
        rows.extend(_read_samples(path, rank))
    figures = sorted({key for row in rows for key in row if key not in ("time", "rank")}, key=_figure_order)
    schema = {"time": pl.Float64, "rank": pl.Int64, **{name: pl.Float64 for name in figures}}
    frame = pl.from_dicts(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return frame.with_columns((pl.col("time") * 1e6).cast(pl.Int64).cast(pl.Datetime("us", "UTC")))


def _figure_order(name: str) -> tuple[int, int, int, str]:
    """proc_ figures, then host_ ones, then each GPU's by index; each group in the order written."""
    if name.startswith("gpu") and "_" in name and name[3 : name.index("_")].isdigit():
        index, figure = name[3:].split("_", 1)
        return 2, int(index), _known(GPU_FIGURES, figure), name
    group = 0 if name.startswith("proc_") else 1 if name.startswith("host_") else 3
    return group, 0, _known(HOST_FIGURES, name), name


def _known(figures: tuple[str, ...], name: str) -> int:
    return figures.index(name) if name in figures else len(figures)


def _system_files(run_dir: Path) -> list[tuple[int, Path]]:
    found = [(FILE_PATTERN.match(path.name), path) for path in run_dir.glob(FILE_GLOB)]
    return sorted((int(match.group(1)), path) for match, path in found if match)


def _read_samples(path: Path, rank: int) -> list[dict[str, Any]]:
    """The samples of one stream as {time, rank, figure: number}; lines that do not parse are skipped."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    rows = []
    for line in data.split(b"\n"):
        line = line.strip(b"\x00 \r\t")
        if not line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict) or "e" in record or not _is_number(record.get("t")):
            continue
        row = {key: value for key, value in record.items() if key != "t" and _is_number(value)}
        row["time"], row["rank"] = record["t"], rank
        rows.append(row)
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def system(run: str | os.PathLike, *, root: str | os.PathLike = "experiment_logs") -> pl.DataFrame:
    """The system metrics of a run (id, unique id prefix, name or run directory) as ``read_system``
    returns them: time on the x axis, one row per sample and rank.

    Example:
        >>> import tempfile, steplog
        >>> root = tempfile.mkdtemp()
        >>> with steplog.init(name="x", root=root, system_metrics=True) as run:
        ...     run.log({"loss": 1.0})
        >>> import polars as pl
        >>> frame = system("x", root=root)
        >>> frame.group_by("rank").agg(pl.col("proc_rss_bytes").max() > 0).rows()
        [(0, True)]
    """
    return read_system(store.resolve_run(run, root))


def summary_lines(frame: pl.DataFrame) -> list[str]:
    """Lines summarising system metrics (a ``read_system`` frame) for ``steplog show``: the samples and
    ranks, then the mean and max of each figure in readable units. No lines for an empty frame.

    Example:
        >>> import polars as pl, datetime as dt
        >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        >>> frame = pl.DataFrame({"time": [t, t + dt.timedelta(seconds=20)], "rank": [0, 0],
        ...                       "proc_cpu_percent": [50.0, 150.0], "proc_rss_bytes": [2**30, 3 * 2**30]})
        >>> for line in summary_lines(frame): print(line)
        system metrics: 2 samples from 1 rank over 20 s
          proc_cpu_percent   mean 100.0 %     max 150.0 %
          proc_rss_bytes     mean 2.0 GiB     max 3.0 GiB
    """
    import polars as pl

    if frame.height == 0:
        return []
    figures = [name for name in frame.columns if name not in ("time", "rank")]
    stats = frame.select(
        pl.col("rank").n_unique().alias("_ranks"),
        (pl.col("time").max() - pl.col("time").min()).alias("_span"),
        *[pl.col(name).mean().alias(f"mean {name}") for name in figures],
        *[pl.col(name).max().alias(f"max {name}") for name in figures],
    ).row(0, named=True)
    ranks, span = stats["_ranks"], stats["_span"].total_seconds()
    lines = [f"system metrics: {frame.height} samples from {ranks} rank{'s' if ranks != 1 else ''} over {span:.0f} s"]
    width = max(len(name) for name in figures) if figures else 0
    for name in figures:
        mean, most = (_readable(name, stats[f"{kind} {name}"]) for kind in ("mean", "max"))
        lines.append(f"  {name:<{width}}   mean {mean:<10}  max {most}".rstrip())
    return lines


_UNITS = (("_bytes", ""), ("_percent", "%"), ("_watts", "W"), ("_temp_c", "°C"), ("_mhz", "MHz"))


def _readable(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name.endswith("_bytes"):
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= size:
                return f"{value / size:.1f} {unit}"
        return f"{value:.0f} B"
    unit = next((unit for suffix, unit in _UNITS if name.endswith(suffix)), "")
    return f"{value:.1f} {unit}".rstrip()
