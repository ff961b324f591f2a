"""Per-pixel downsampling that never hides a spike: each bucket keeps its first, minimum, maximum
and last point, and a range that holds at most two points per pixel is sent whole.

Buckets hold equal numbers of consecutive points (not random samples, not LTTB). Drawing a line
through the kept points in x order looks like the full data at that width, since every raw point
lies inside the vertical extent of its bucket. NaN and infinite values are never drawn as numbers:
they become gaps in ``y`` and markers in ``nonfinite`` (one per bucket that has any).

Example:
    >>> import numpy as np
    >>> x = np.arange(1000, dtype=np.float64)
    >>> y = np.zeros(1000); y[537] = 9.0; y[700] = float("nan")
    >>> out = downsample(x, y, width=10)
    >>> out["raw"], len(out["x"]) <= 4 * 10, 9.0 in out["y"], out["nonfinite"]
    (False, True, True, [[700.0, 'nan']])
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: A range with at most this many raw points per pixel is sent without downsampling.
POINTS_PER_PIXEL = 2


def window(x: np.ndarray, lo: float | None, hi: float | None) -> tuple[int, int]:
    """The index range ``[i0, i1)`` of sorted ``x`` to draw ``[lo, hi]``, with one point beyond each
    end (so the line reaches the panel's edges).

    Example:
        >>> window(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 1.5, 2.5)
        (1, 4)
    """
    i0 = 0 if lo is None else max(int(np.searchsorted(x, lo, "left")) - 1, 0)
    i1 = len(x) if hi is None else min(int(np.searchsorted(x, hi, "right")) + 1, len(x))
    return i0, max(i1, i0)


def downsample(x: np.ndarray, y: np.ndarray, width: int) -> dict[str, Any]:
    """Points of the sorted series ``(x, y)`` to draw at ``width`` pixels: ``x``, ``y`` (float arrays,
    NaN where the value is not finite), ``nonfinite`` (``[[x, "nan" | "inf" | "-inf"], ...]``, at
    most one per bucket), ``raw`` (every point sent) and ``count`` (raw points in the range).

    Example:
        >>> out = downsample(np.arange(4.0), np.array([1.0, float("inf"), 2.0, 3.0]), width=100)
        >>> out["raw"], out["y"].tolist(), out["nonfinite"]
        (True, [1.0, nan, 2.0, 3.0], [[1.0, 'inf']])
    """
    n = len(x)
    bad = ~np.isfinite(y)
    finite = np.where(bad, np.nan, y) if bad.any() else y
    if n <= POINTS_PER_PIXEL * max(width, 1):
        return {"x": x, "y": finite, "nonfinite": _markers(x, y, np.flatnonzero(bad)), "raw": True, "count": n}
    size = -(-n // max(width, 1))  # points per bucket
    keep = kept_indices(finite, size)
    marks = np.flatnonzero(bad)
    if len(marks):
        marks = marks[np.unique(marks // size, return_index=True)[1]]
    return {"x": x[keep], "y": finite[keep], "nonfinite": _markers(x, y, marks), "raw": False, "count": n}


def kept_indices(y: np.ndarray, size: int) -> np.ndarray:
    """Sorted unique indices of each ``size``-point bucket's first, min, max and last point (NaN
    values are never a bucket's min or max).

    Example:
        >>> kept_indices(np.array([5.0, 1.0, 9.0, 2.0, 3.0, 4.0]), 3).tolist()
        [0, 1, 2, 3, 5]
    """
    n = len(y)
    whole = n // size * size
    parts = []
    if whole:
        parts.append(_block_extremes(y[:whole].reshape(-1, size), 0))
    if whole < n:
        parts.append(_block_extremes(y[whole:].reshape(1, -1), whole))
    return np.unique(np.concatenate(parts))


def _block_extremes(blocks: np.ndarray, offset: int) -> np.ndarray:
    rows, size = blocks.shape
    nan = np.isnan(blocks)
    lowest = np.where(nan, np.inf, blocks).argmin(axis=1) if nan.any() else blocks.argmin(axis=1)
    highest = np.where(nan, -np.inf, blocks).argmax(axis=1) if nan.any() else blocks.argmax(axis=1)
    base = offset + np.arange(rows) * size
    return np.concatenate([base, base + lowest, base + highest, base + size - 1])


def _markers(x: np.ndarray, y: np.ndarray, indices: np.ndarray) -> list[list[Any]]:
    codes = np.where(np.isnan(y[indices]), "nan", np.where(y[indices] > 0, "inf", "-inf"))
    return [[float(a), str(c)] for a, c in zip(x[indices], codes)]
