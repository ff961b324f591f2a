"""Per-metric figures of a run: ``MetricSummary`` (count, nan_count, min, max, mean, std, first,
last, step_of_min, step_of_max), ``summarize`` computing them from a history in one Polars pass, and
their JSON-safe form in the sidecar (``encode_summary`` / ``decode_summary``: NaN and +-inf as the
format's codes).

Example:
    >>> h = pl.DataFrame({"step": [0, 1], "loss": [2.0, 1.0]})
    >>> summarize(h)["loss"].to_dict()["step_of_min"]
    1
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from . import format as fmt
from .reader import metric_col

#: The per-metric figures of ``summarize``, in order.
SUMMARY_FIELDS = ("count", "nan_count", "min", "max", "mean", "std", "first", "last", "step_of_min", "step_of_max")
#: The Polars type of each figure of ``SUMMARY_FIELDS``: counts and steps are Int64, values Float64.
SUMMARY_TYPES = {
    field: pl.Int64 if field in ("count", "nan_count", "step_of_min", "step_of_max") else pl.Float64
    for field in SUMMARY_FIELDS
}


@dataclass(frozen=True)
class MetricSummary:
    """The figures of one metric over a run's history (see ``summarize``); None where there is no
    value to take one from."""

    count: int | None = None
    nan_count: int | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    first: float | None = None
    last: float | None = None
    step_of_min: int | None = None
    step_of_max: int | None = None

    @classmethod
    def from_dict(cls, figures: dict[str, Any]) -> MetricSummary:
        """From a dict of figures (a sidecar's, decoded); unknown keys are ignored.

        Example:
            >>> MetricSummary.from_dict({"min": 0.5, "count": 3, "later": 1}).min
            0.5
        """
        return cls(**{k: figures.get(k) for k in SUMMARY_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """The figures as a dict, in ``SUMMARY_FIELDS`` order.

        Example:
            >>> list(MetricSummary(count=1).to_dict())[:3]
            ['count', 'nan_count', 'min']
        """
        return dataclasses.asdict(self)

    def figure(self, name: str) -> Any:
        """One figure by name: any of ``SUMMARY_FIELDS``.

        Example:
            >>> MetricSummary(step_of_min=4).figure("step_of_min")
            4
        """
        return getattr(self, name)


def summarize(history: pl.DataFrame) -> dict[str, MetricSummary]:
    """Per-metric figures of a history frame (``steplog.history``): for each metric ``count``
    (steps that logged it, NaN included), ``nan_count``, ``min``/``max``/``mean``/``std`` (over the
    values that are not NaN; +-inf count; ``std`` with ddof=1), ``first``/``last`` (logged values,
    NaN included), ``step_of_min``/``step_of_max`` (the earliest step reaching the min/max).
    A figure with no value to take it from is None. NaN never is the min or max.

    Example:
        >>> h = pl.DataFrame({"step": [0, 1, 2], "loss": [3.0, float("nan"), 1.0]})
        >>> s = summarize(h)["loss"]
        >>> s.count, s.nan_count, s.min, s.step_of_min, s.last
        (3, 1, 1.0, 2, 1.0)
    """
    metrics = [c for c in history.columns if c not in fmt.RESERVED_NAMES]
    if not metrics:
        return {}
    figures = history.select([_figures(name, history.columns) for name in metrics]).row(0, named=True)
    return {name: MetricSummary.from_dict(values) for name, values in figures.items()}


def _figures(name: str, columns: list[str]) -> pl.Expr:
    value = metric_col(name, columns)
    number = value.fill_nan(None)  # NaN never wins min/max, and stays out of mean/std
    logged = value.drop_nulls()
    step = pl.col("step")
    return pl.struct(
        value.count().cast(pl.Int64).alias("count"),
        value.is_nan().sum().cast(pl.Int64).alias("nan_count"),
        number.min().alias("min"),
        number.max().alias("max"),
        number.mean().alias("mean"),
        number.std().alias("std"),
        logged.first().alias("first"),
        logged.last().alias("last"),
        step.filter(number == number.min()).first().alias("step_of_min"),
        step.filter(number == number.max()).first().alias("step_of_max"),
    ).alias(name)


def encode_summary(summary: dict[str, MetricSummary]) -> dict[str, dict[str, Any]]:
    """Summaries made JSON-safe for the sidecar: NaN and +-inf become the format's codes ``"nan"``,
    ``"inf"``, ``"-inf"`` (JSON has no such numbers). ``decode_summary`` undoes it.

    Example:
        >>> encode_summary({"loss": MetricSummary(min=float("-inf"), count=2)})["loss"]["min"]
        '-inf'
    """
    return {
        name: {
            k: (fmt.nonfinite_code(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in figures.to_dict().items()
        }
        for name, figures in summary.items()
    }


def decode_summary(summary: dict[str, dict[str, Any]]) -> dict[str, MetricSummary]:
    """The inverse of ``encode_summary``.

    Example:
        >>> decode_summary({"loss": {"max": "inf", "count": 2}})["loss"].max
        inf
    """
    return {
        name: MetricSummary.from_dict(
            {
                k: (fmt.decode_nonfinite(v) if isinstance(v, str) and SUMMARY_TYPES.get(k) == pl.Float64 else v)
                for k, v in figures.items()
            }
        )
        for name, figures in summary.items()
    }
