"""The dashboard's JSON API (read-only; documented in docs/dashboard.md).

``GET /api/runs``, ``GET /api/run?run=ID`` and
``GET /api/series?run=ID&metric=M[&metric=M2...]&x=step&from=&to=&width=&cursor=&rank=``.
``handle(data, path, query)`` answers one request as ``(status, payload)``: 400 with a JSON error
for a malformed parameter, 404 for an unknown run or path.

Example:
    >>> import tempfile
    >>> from steplog.ui.data import Data
    >>> data = Data(tempfile.mkdtemp())
    >>> handle(data, "/api/runs", "")[1]["runs"]
    []
    >>> handle(data, "/api/series", "run=../etc&metric=loss")[0]
    400
    >>> handle(data, "/api/series", "run=nope&metric=loss")[0]
    404
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs

from .. import store
from .data import X_AXES, Data

#: Widest panel the API draws for (pixels); more gives no more detail.
MAX_WIDTH = 20_000


class ApiError(Exception):
    """A request the API refuses: ``status`` (400, 404) and a message naming what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def handle(data: Data, path: str, query: str) -> tuple[int, dict[str, Any]]:
    """Answer ``GET path?query`` as ``(status, payload)``."""
    routes = {"/api/runs": _runs, "/api/run": _run, "/api/series": _series}
    route = routes.get(path)
    if route is None:
        return 404, {"error": f"no API endpoint {path!r}; there are {', '.join(routes)}"}
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=1000)
        return 200, route(data, params)
    except ApiError as exc:
        return exc.status, {"error": str(exc)}
    except ValueError as exc:
        return 400, {"error": str(exc)}
    except (store.RunNotFoundError, store.AmbiguousRunError) as exc:
        return 404, {"error": str(exc)}


def _runs(data: Data, params: dict[str, list[str]]) -> dict[str, Any]:
    return {"root": data.where, "runs": data.runs_table()}


def _run(data: Data, params: dict[str, list[str]]) -> dict[str, Any]:
    return data.run_page(data.resolve(_one(params, "run")))


def _series(data: Data, params: dict[str, list[str]]) -> dict[str, Any]:
    run_dir = data.resolve(_one(params, "run"))
    metrics = params.get("metric") or []
    if not metrics or not all(metrics):
        raise ApiError(400, "metric is required (repeat it for several: metric=loss&metric=acc)")
    x = _one(params, "x", "step")
    if x not in X_AXES:
        raise ApiError(400, f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    lo, hi = _number(params, "from"), _number(params, "to")
    if lo is not None and hi is not None and lo > hi:
        raise ApiError(400, f"from ({lo}) must not be greater than to ({hi})")
    width = _integer(params, "width", 1000, 1, MAX_WIDTH)
    cursor = _integer(params, "cursor", None, 0, 2**62)
    rank = _integer(params, "rank", 0, 0, 1_000_000)
    answer = data.series(run_dir, metrics, x, lo, hi, width, cursor, rank)
    answer["run"] = run_dir.name
    return answer


def _one(params: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = params.get(name)
    if not values:
        if default is None:
            raise ApiError(400, f"{name} is required")
        return default
    if len(values) > 1:
        raise ApiError(400, f"{name} was given {len(values)} times; give it once")
    return values[0]


def _number(params: dict[str, list[str]], name: str) -> float | None:
    text = _one(params, name, "")
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be a finite number, got {text!r}")
    return value


def _integer(params: dict[str, list[str]], name: str, default: int | None, low: int, high: int) -> Any:
    text = _one(params, name, "")
    if text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}, got {text!r}")
    return int(text)
