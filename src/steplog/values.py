"""Turning what users pass into what the event format stores.

Two concerns, with opposite failure policies (DESIGN.md, "training comes first"):

* metric values (``to_metric_value``): a value that cannot be a number is the caller's bug and
  raises TypeError at once, naming the key and the type;
* config and metadata (``to_jsonable``): anything is accepted; what cannot be represented is stored
  as its ``repr`` with a warning, and capturing never raises.

Example:
    >>> import numpy as np
    >>> to_metric_value("loss", np.float32(0.5))
    0.5
    >>> to_jsonable({"betas": (0.9, 0.95), "path": __import__("pathlib").Path("/data")})
    {'betas': [0.9, 0.95], 'path': '/data'}
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import warnings
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

_ACCEPTED = "int, float, bool, a numpy scalar or 0-d array, or a tensor with .item()"


def to_metric_value(key: str, value: Any) -> float:
    """Convert one metric value to a Python float, or raise TypeError naming ``key``.

    Accepts int, float, bool, numpy scalars and 0-d arrays, and objects whose ``.item()`` returns
    a real number (torch tensors, jax arrays). NaN and infinities are kept as they are.

    Example:
        >>> to_metric_value("step_ok", True)
        1.0
        >>> to_metric_value("loss", "2.3")
        Traceback (most recent call last):
        ...
        TypeError: metric 'loss': cannot log a value of type str ('2.3'); pass int, float, bool, a numpy scalar or 0-d array, or a tensor with .item()
    """
    if isinstance(value, (float, int)):  # bool is an int; numpy.float64 is a float
        return float(value)
    if isinstance(value, numbers.Real):  # numpy integer and float scalars of every width
        return float(value)
    item = getattr(value, "item", None)
    if item is not None and callable(item) and not isinstance(value, (str, bytes)):
        try:
            inner = item()
        except Exception as exc:  # e.g. numpy: "can only convert an array of size 1"
            raise TypeError(
                f"metric {key!r}: {type(value).__name__}.item() failed ({exc}); log a single number, "
                f"e.g. a 0-d array or tensor, not a batch of values"
            ) from None
        if isinstance(inner, numbers.Real) and not isinstance(inner, complex):
            return float(inner)
        raise TypeError(
            f"metric {key!r}: {type(value).__name__}.item() returned {type(inner).__name__} ({inner!r:.40}); "
            f"pass {_ACCEPTED}"
        )
    raise TypeError(f"metric {key!r}: cannot log a value of type {type(value).__name__} ({value!r:.40}); pass {_ACCEPTED}")


def to_metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Convert every value of a metrics mapping with ``to_metric_value`` (all or nothing).

    Example:
        >>> to_metric_values({"a": 1, "b": 2.5})
        {'a': 1.0, 'b': 2.5}
    """
    return {key: to_metric_value(key, value) for key, value in metrics.items()}


_MAX_DEPTH = 32


def to_jsonable(obj: Any, *, what: str = "config") -> Any:
    """A JSON-ready copy of a config or metadata object; never raises.

    dicts (keys become strings), dataclasses, pathlib paths, enums (their value), tuples, lists and
    sets, numpy scalars and arrays, argparse namespaces and other objects with ``__dict__`` of
    plain data are converted recursively. Non-finite floats become the strings "NaN", "Infinity",
    "-Infinity" (JSON has no such numbers). Anything else is stored as its repr, with a warning
    naming where in ``what`` it was found.

    Example:
        >>> import enum
        >>> class Opt(enum.Enum):
        ...     ADAM = "adamw"
        >>> to_jsonable({"opt": Opt.ADAM, "eps": float("inf")})
        {'opt': 'adamw', 'eps': 'Infinity'}
    """
    try:
        return _convert(obj, what, 0, set())
    except Exception as exc:  # a hostile __repr__ or __iter__: training comes first
        warnings.warn(f"steplog: could not capture {what} ({type(exc).__name__}: {exc}); stored as a string", stacklevel=2)
        try:
            return repr(obj)
        except Exception:
            return f"<unrepresentable {type(obj).__name__}>"


def _convert(obj: Any, where: str, depth: int, seen: set[int]) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj) if -(2**63) <= obj < 2**64 else str(obj)  # JSON readers stop at 64 bits
    if isinstance(obj, float):
        if math.isfinite(obj):
            return float(obj)
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _convert(obj.value, where, depth + 1, seen)
    if depth > _MAX_DEPTH or id(obj) in seen:
        return _as_repr(obj, where, "nested too deeply or contains itself")
    seen = seen | {id(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _convert(v, f"{where}.{k}", depth + 1, seen) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _convert(getattr(obj, f.name), f"{where}.{f.name}", depth + 1, seen) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_convert(v, f"{where}[{i}]", depth + 1, seen) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        items = [_convert(v, f"{where}[]", depth + 1, seen) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(obj, numbers.Number) and hasattr(obj, "item"):  # numpy scalars
        return _convert(obj.item(), where, depth + 1, seen)
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):  # numpy arrays
        return _convert(obj.tolist(), where, depth + 1, seen)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="backslashreplace")
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict) and type(obj).__name__ == "Namespace":  # argparse.Namespace
        return _convert(attributes, where, depth + 1, seen)
    return _as_repr(obj, where, f"a {type(obj).__name__} is not plain data")


def _as_repr(obj: Any, where: str, why: str) -> str:
    text = repr(obj)
    warnings.warn(f"steplog: {where}: {why}; stored as its repr {text[:60]!r}", stacklevel=4)
    return text
