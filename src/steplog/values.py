"""Turning what users pass into what the event format stores.

Two concerns, with opposite failure policies (DESIGN.md, "training comes first"):

* metric values (``to_metric_value``): a value that cannot be a number is the caller's bug and
  raises TypeError at once, naming the key and the type. A scalar tensor on an accelerator is
  not copied to the host when logged (``.item()`` would wait for the device): ``split_metric_values``
  checks it (dtype and shape only, no device sync) and keeps a copy on the device, and
  ``materialise`` later brings the values of many steps to the host in one transfer;
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
import sys
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
        TypeError: metric 'loss': cannot log a value of type str ('2.3'); pass int, float, bool, ...
    """
    if isinstance(value, (float, int, numbers.Real)):  # bool is an int; numpy scalars of every width are Real
        try:
            return float(value)
        except OverflowError:
            raise TypeError(f"metric {key!r}: {value!r:.40} is too large for a 64-bit float") from None
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
            return to_metric_value(key, inner)
        raise TypeError(
            f"metric {key!r}: {type(value).__name__}.item() returned {type(inner).__name__} ({inner!r:.40}); "
            f"pass {_ACCEPTED}"
        )
    raise TypeError(
        f"metric {key!r}: cannot log a value of type {type(value).__name__} ({value!r:.40}); pass {_ACCEPTED}"
    )


def is_device_value(value: Any) -> bool:
    """Whether ``value`` is a tensor on an accelerator, whose ``.item()`` would wait for the device.

    torch is never imported here: a value can only be a torch tensor once the program has
    imported torch, so ``sys.modules`` is asked (objects of torchvision, torchmetrics... that are
    not tensors do not count). A tensor whose ``device.type`` is not ``"cpu"`` is on a device.
    ``split_metric_values`` looks this predicate up at each call, so tests can replace it to run
    the deferred path on CPU tensors.

    Example:
        >>> import numpy as np
        >>> is_device_value(2.5), is_device_value(np.float32(2.5))
        (False, False)
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        return False
    return value.device.type != "cpu"


def split_metric_values(metrics: Mapping[str, Any]) -> tuple[dict[str, float | None], DeviceValues | None]:
    """Convert every value of a metrics mapping with ``to_metric_value``, except accelerator tensors
    (``is_device_value``): those are checked without a device sync and returned as ``DeviceValues``,
    their keys holding ``None`` in the dict (which keeps the caller's key order) until
    ``materialise`` fills them in. All or nothing: a bad value raises before anything is copied.

    Example:
        >>> split_metric_values({"lr": 3e-4, "epoch": 2})
        ({'lr': 0.0003, 'epoch': 2.0}, None)
    """
    converted: dict[str, float | None] = {}
    on_device: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        if is_device_value(value):
            _check_device_value(key, value)
            on_device.append((key, value))
            converted[key] = None
        else:
            converted[key] = to_metric_value(key, value)
    return converted, (DeviceValues(on_device) if on_device else None)


def _check_device_value(key: str, value: Any) -> None:
    """The checks ``.item()`` would make, from the tensor's metadata only (no device sync)."""
    dtype = value.dtype
    if dtype.is_complex or getattr(value, "is_quantized", False):
        raise TypeError(
            f"metric {key!r}: a tensor of dtype {dtype} is not a real number; log a real value, e.g. x.abs()"
        )
    if value.numel() != 1:
        raise TypeError(
            f"metric {key!r}: a tensor of shape {tuple(value.shape)} holds {value.numel()} values; "
            f"log a single number, "
            f"e.g. a 0-d tensor such as the loss or x.mean(), not a batch of values"
        )


class DeviceValues:
    """The accelerator values of one ``log`` call, copied on their device without waiting for it.

    The values of one call are stacked into one tensor per (device, dtype): a copy, so that
    changing a logged tensor in place afterwards does not change what was logged, and one small
    kernel launch per call, however many values. Made by ``split_metric_values``.

    Example:
        >>> DeviceValues([]).keys
        []
    """

    __slots__ = ("keys", "stacks")

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        groups: dict[tuple[Any, Any], list[tuple[str, Any]]] = {}
        for key, value in items:
            groups.setdefault((value.device, value.dtype), []).append((key, value))
        self.keys = [key for group in groups.values() for key, _ in group]
        self.stacks = []
        if groups:
            import torch  # only reached with torch tensors in hand: torch is already imported

            self.stacks = [torch.stack([value.detach().reshape(()) for _, value in group]) for group in groups.values()]


def materialise(batches: list[DeviceValues]) -> list[dict[str, float]]:
    """The values of many ``DeviceValues``, brought to the host in one transfer per (device,
    dtype) (a single one in the usual case): one dict of floats per batch, in order. The floats
    are those ``.item()`` would have given.

    Example:
        >>> materialise([])
        []
    """
    if not batches:
        return []
    import torch  # batches hold torch tensors, so torch is already imported

    chunks: dict[tuple[Any, Any], list[Any]] = {}
    for batch in batches:
        for stack in batch.stacks:
            chunks.setdefault((stack.device, stack.dtype), []).append(stack)
    floats = {group: iter(torch.cat(stacks).cpu().tolist()) for group, stacks in chunks.items()}
    result = []
    for batch in batches:
        values = [float(next(floats[(stack.device, stack.dtype)])) for stack in batch.stacks for _ in range(len(stack))]
        result.append(dict(zip(batch.keys, values)))
    return result


_MAX_DEPTH = 32


def to_jsonable(obj: Any, *, what: str = "config") -> Any:
    """A JSON-ready copy of a config or metadata object; never raises.

    dicts (keys become strings), dataclasses, pathlib paths, enums (their value), tuples, lists and
    sets, numpy scalars and arrays, argparse and ``types.SimpleNamespace`` namespaces (their
    attributes) are converted recursively. Non-finite floats become the strings "NaN", "Infinity",
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
        warnings.warn(
            f"steplog: could not capture {what} ({type(exc).__name__}: {exc}); stored as a string", stacklevel=2
        )
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
    return _convert_container(obj, where, depth, seen | {id(obj)})


def _convert_container(obj: Any, where: str, depth: int, seen: set[int]) -> Any:
    """``_convert`` for what holds other values (mappings, dataclasses, sequences, sets, numpy
    values, namespaces), or its repr with a warning."""
    if isinstance(obj, Mapping):
        return {str(k): _convert(v, f"{where}.{k}", depth + 1, seen) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _convert(getattr(obj, f.name), f"{where}.{f.name}", depth + 1, seen)
            for f in dataclasses.fields(obj)
        }
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
    if isinstance(attributes, dict) and type(obj).__name__ in ("Namespace", "SimpleNamespace"):
        return _convert(attributes, where, depth + 1, seen)
    return _as_repr(obj, where, f"a {type(obj).__name__} is not plain data")


def _as_repr(obj: Any, where: str, why: str) -> str:
    text = repr(obj)
    warnings.warn(f"steplog: {where}: {why}; stored as its repr {text[:60]!r}", stacklevel=4)
    return text


#: Largest step: steps are stored as signed 64-bit integers.
MAX_STEP = 2**63 - 1


def check_step(step: Any) -> int:
    """``step`` as an int from 0 to 2**63-1, or TypeError/ValueError saying what is wrong.

    Example:
        >>> check_step(3), check_step(True)
        Traceback (most recent call last):
        ...
        TypeError: step must be a non-negative int, got bool (True)
    """
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(f"step must be a non-negative int, got {type(step).__name__} ({step!r:.40})")
    value = step.__index__()
    if not 0 <= value <= MAX_STEP:
        raise ValueError(f"step must be an int from 0 to 2**63-1, got {value}")
    return value


def check_mapping(metrics: Any) -> dict[str, Any]:
    """``metrics`` as a dict, or TypeError when it is not a mapping.

    Example:
        >>> check_mapping([("loss", 1.0)])
        Traceback (most recent call last):
        ...
        TypeError: log() takes a dict of metric name -> number, got list; e.g. run.log({'loss': 0.5})
    """
    if isinstance(metrics, Mapping):
        return dict(metrics)
    raise TypeError(
        f"log() takes a dict of metric name -> number, got {type(metrics).__name__}; e.g. run.log({{'loss': 0.5}})"
    )


def check_metric_names(names: Any, reserved: frozenset[str] | set[str]) -> None:
    """Raise ValueError for a metric name that is empty, not a string, not encodable, or ``reserved``.

    Example:
        >>> check_metric_names(["loss", ""], {"step"})
        Traceback (most recent call last):
        ...
        ValueError: metric names must be non-empty strings, got ''
    """
    for key in names:
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric names must be non-empty strings, got {key!r}")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"metric name {key!r} is not valid unicode (a lone surrogate); decode it properly or rename the metric"
            ) from None
        if key in reserved:
            raise ValueError(
                f"metric name {key!r} is reserved by steplog (reserved: {', '.join(sorted(reserved))}); "
                f"pass the step with log(..., step=N) and rename the metric, e.g. 'train/{key}'"
            )


#: Integers beyond this magnitude have no exact float64 (metrics are read back as Float64).
EXACT_INTEGER_LIMIT = 2**53


def inexact_integers(metrics: Mapping[str, Any]) -> list[str]:
    """The keys of ``metrics`` whose value is an integer (Python, numpy or a CPU tensor's) beyond
    2**53 in magnitude: read back as a Float64, it is rounded. Accelerator tensors are not looked
    at (that would wait for the device).

    Example:
        >>> inexact_integers({"tokens": 2**53 + 1, "loss": 0.5, "step_tokens": 2**53, "flag": True})
        ['tokens']
    """
    found = []
    for key, value in metrics.items():
        if not isinstance(value, int) and hasattr(value, "item") and not is_device_value(value):
            try:
                value = value.item()
            except (TypeError, ValueError, RuntimeError):
                continue
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > EXACT_INTEGER_LIMIT:
            found.append(key)
    return found
