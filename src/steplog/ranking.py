"""The best run of a root by one metric (``best``), and the checks and hints about metric names
that the query surface shares (``check_mode``, ``higher_is_better``, ``metric_hint``,
``check_metrics``). Decided from the run table (``roots.runs_frame``): no run's rows are read.

Example:
    >>> check_mode("val_acc", "auto")
    'max'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

import polars as pl

from . import roots
from .keywordonly import root_keyword_only
from .model import Loaded, load_run


def loaded_runs(root: roots.Root, runs: Iterable[str] | str | None) -> list[tuple[roots.RunDir, Loaded]]:
    """(run dir, ``load_run`` of it) for each readable run of ``runs`` (every run when None), in order.

    Example:
        >>> loaded_runs("/no/such/root", None)
        []
    """
    dirs = roots.resolve_runs(runs, root)
    roots.prefetch(dirs)
    return [(d, loaded) for d in dirs if (loaded := load_run(d)) != (None, None)]


def check_mode(metric: str, mode: str) -> str:
    """``"min"`` or ``"max"`` for ``metric``: ``mode`` itself, or for ``"auto"`` what the name suggests.

    Example:
        >>> check_mode("val_acc", "auto"), check_mode("loss", "max")
        ('max', 'max')
    """
    if mode == "auto":
        return "max" if higher_is_better(metric) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode for metric {metric!r} is {mode!r}; use 'min' (lower is better), 'max' or 'auto'")
    return mode


_HIGHER_IS_BETTER = frozenset(
    {
        "acc",
        "accuracy",
        "score",
        "reward",
        "return",
        "auc",
        "f1",
        "bleu",
        "rouge",
        "precision",
        "recall",
        "throughput",
        "mfu",
    }
)


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
    return (
        bool(words & _HIGHER_IS_BETTER)
        or bool(re.search(r"per_s(ec)?$", metric.lower()))
        or any(w.endswith(("accuracy", "acc")) for w in words if w.startswith("top"))
    )


@root_keyword_only(2, ("root",))
def best(
    metric: str, mode: str = "min", *, root: roots.Root = "experiment_logs", runs: Iterable[str] | None = None
) -> dict[str, Any]:
    """The run with the best value of ``metric`` over its whole history: ``{"run_id", "name",
    "value", "step"}``. ``mode`` is ``"min"``, ``"max"`` or ``"auto"`` (max for names like
    accuracy or tokens_per_sec: ``higher_is_better``). Runs that never logged the metric (or
    only NaN) are ignored; NaN never wins. Ties go to the earliest run (by start), and within a
    run to the earliest step. Compacted runs are decided from the root catalog where it is current
    (else their sidecars), never from their Parquet files.

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
    direction = check_mode(metric, mode)
    return _best_of_table(roots.runs_frame(root, runs), metric, direction, root)


def _best_of_table(table: pl.DataFrame, metric: str, direction: str, root: roots.Root) -> dict[str, Any]:
    """``best`` over a catalog-shaped table (``roots.runs_frame``: the catalog where it is current,
    sidecars and live events elsewhere), oldest first: a Polars sort, no run opened."""
    value, step = f"summary.{metric}.{direction}", f"summary.{metric}.step_of_{direction}"
    winner = pl.DataFrame(schema={"run_id": pl.String, "name": pl.String, "value": pl.Float64, "step": pl.Int64})
    if value in table.columns:
        winner = table.select(
            "run_id", "name", pl.col(value).cast(pl.Float64).alias("value"), pl.col(step).cast(pl.Int64).alias("step")
        )
        winner = winner.filter(pl.col("value").is_not_null() & ~pl.col("value").is_nan())
        winner = winner.sort("value", descending=direction == "max", maintain_order=True).head(1)
    if winner.height == 0:
        logged = [
            c[len("summary.") : -len(".count")]
            for c in table.columns
            if c.startswith("summary.") and c.endswith(".count") and table[c].null_count() < table.height
        ]
        raise ValueError(
            f"no run under {root} has a value for metric {metric!r} (NaN aside); {metric_hint(metric, logged)}"
        )
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


def check_metrics(metrics: Iterable[str], logged: Iterable[str], root: roots.Root) -> None:
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
