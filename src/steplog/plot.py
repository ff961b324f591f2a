"""Curves of several runs in one PNG (matplotlib, the optional extra ``plot``).

matplotlib is imported only when a plot is made, and its global pyplot state is never touched
(a Figure with an Agg canvas), so plotting from a training process or a notebook is safe.

Example:
    >>> import tempfile, steplog
    >>> root = tempfile.mkdtemp()
    >>> for lr in (1e-3, 3e-3):
    ...     with steplog.init(name=f"lr={lr}", root=root) as run:
    ...         for step in range(50):
    ...             run.log({"train_loss": 2.0 / (1 + lr * 1000 * step)})
    >>> path = plot_curves(["lr=0.001", "lr=0.003"], ["train_loss"], root=root, output=f"{root}/curves.png")
    >>> path.name
    'curves.png'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from . import roots
from .query import check_metrics, history
from .reader import metric_col

X_AXES = ("step", "wallclock", "time")
#: The smallest width and height of a plot, in pixels.
MIN_SIZE = 100


class PlotUnavailableError(ImportError):
    """matplotlib is not installed."""


def plot_curves(
    runs: Sequence[str],
    metrics: Sequence[str] = ("train_loss",),
    *,
    root: str | os.PathLike = "experiment_logs",
    x: str = "step",
    smooth: int | None = None,
    logy: bool = False,
    output: str | os.PathLike = "curves.png",
    size: tuple[int, int] = (1200, 800),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Plot ``metrics`` of ``runs`` (ids, id prefixes or names) against ``x`` into a PNG of
    ``size`` pixels; one panel per metric, one colour per run, legend by run name. Returns the path.

    ``smooth=N`` draws a centred rolling mean over N logged points (the raw curve stays, faint);
    the window is capped at a tenth of a curve's points, so a sparse eval curve keeps its shape.
    ``x`` is ``"step"``, ``"wallclock"`` (seconds of training) or ``"time"``. Points where a
    metric was not logged are skipped, so sparse curves (eval loss) are drawn as lines too.
    Raises ValueError for an unknown metric (suggesting close names) and PlotUnavailableError
    when matplotlib is missing.

    Example:
        >>> plot_curves([], ["loss"])
        Traceback (most recent call last):
        ...
        ValueError: name at least one run to plot
    """
    if not runs:
        raise ValueError("name at least one run to plot")
    if not metrics:
        raise ValueError("name at least one metric to plot, e.g. train_loss")
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not an axis; choose one of {', '.join(X_AXES)}")
    if smooth is not None and (not isinstance(smooth, int) or smooth < 1):
        raise ValueError(f"smooth={smooth!r} must be a whole number of points >= 1")
    width, height = size
    if width < MIN_SIZE or height < MIN_SIZE:
        raise ValueError(f"size={size!r} is too small for a plot; use at least {MIN_SIZE}x{MIN_SIZE} pixels")
    figure_cls, canvas_cls = _matplotlib()

    curves = _load(runs, root)
    check_metrics(metrics, {c for _, frame in curves for c in frame.columns if c not in X_AXES}, root)
    figure = figure_cls(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas_cls(figure)
    axes = figure.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    colors = [f"C{i % 10}" for i in range(len(curves))]
    for ax, metric in zip(axes, metrics):
        for (label, frame), color in zip(curves, colors):
            if metric not in frame.columns:
                continue
            points = frame.select(pl.col(x), metric_col(metric, frame.columns).alias("y"))
            points = points.filter(pl.col("y").is_not_null())
            if points.height == 0:
                continue
            xs, ys = points[x].to_numpy(), points["y"].to_numpy()
            window = min(smooth or 1, max(1, points.height // 10))  # sparse curves (eval) are not flattened
            if window > 1:
                smoothed = points["y"].rolling_mean(window_size=window, min_samples=1, center=True).to_numpy()
                ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(xs, smoothed, color=color, linewidth=1.5, label=label)
            else:
                ax.plot(xs, ys, color=color, linewidth=1.2, label=label, marker="o" if points.height < 3 else None)
        ax.set_ylabel(metric)
        if logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    axes[-1].set_xlabel({"step": "step", "wallclock": "wall-clock seconds (training time)", "time": "time (UTC)"}[x])
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(output)
    try:
        figure.savefig(path, dpi=dpi, format="png")
    except OSError as exc:
        raise OSError(f"cannot write the plot to {path}: {exc.strerror or exc}") from None
    return path


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailableError(
            "plotting needs matplotlib: pip install 'steplog[plot]' (or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def _load(runs: Sequence[str], root: roots.Root) -> list[tuple[str, pl.DataFrame]]:
    """(legend label, history) per run; a name used by several runs shown gets its id added."""
    dirs = roots.resolve_runs(runs, root)  # one listing of an object-store root for all of them
    names = [roots.run_name(d) or d.name for d in dirs]
    curves = []
    for d, name in zip(dirs, names):
        label = name if names.count(name) == 1 else f"{name} ({d.name[-6:]})"
        curves.append((label, history(d, root=root)))
    return curves
