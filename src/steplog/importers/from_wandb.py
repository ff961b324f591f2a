"""Import W&B offline runs: ``wandb/offline-run-*`` folders (or one ``run-*.wandb`` file).

A ``.wandb`` file is a LevelDB-style log (a 7-byte ``:W&B`` header, 32 KiB blocks of checksummed
records) of ``Record`` protobufs. wandb 0.19+ reads it in its Go core and ships no Python reader, so
it is read here with the same small protobuf decoder as TensorBoard files (wandb need not be installed;
field numbers from wandb's ``wandb_internal.proto``). Imported: the history rows (``_step`` as the
step, ``_timestamp`` as the time, every number logged; ``_runtime`` and text, media and tables are
left out), the config (``config``; wandb's own ``_wandb`` entry goes to meta), the summary
(``meta["summary"]``), project, display name, tags, notes and run id (meta). The run finishes with
the exit code's status (0: finished, else failed); a run with no exit record (killed) reads as crashed.

Example:
    >>> import tempfile
    >>> wandb(tempfile.mkdtemp(), root=tempfile.mkdtemp(), quiet=True)
    Traceback (most recent call last):
    ...
    steplog.importers._runs.SourceError: no W&B run file (run-*.wandb) under ...
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from .. import format as fmt
from ._protobuf import fields
from ._runs import Source, SourceError, source_files, write_runs

_BLOCK = 32768
_HEADER = b":W&B"
_RECORD_HEAD = struct.Struct("<IHB")  # checksum, length, type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
# Record fields (wandb_internal.proto)
_HISTORY, _SUMMARY, _CONFIG, _RUN, _EXIT = 2, 3, 5, 17, 18


def wandb(
    path: str | os.PathLike,
    root: str | os.PathLike = "experiment_logs",
    name: str | None = None,
    *,
    quiet: bool = False,
) -> list[str]:
    """Import W&B offline runs (a ``wandb`` folder, an ``offline-run-*`` folder or a ``.wandb`` file);
    returns the run ids."""
    path = Path(path)
    files = source_files(
        path,
        sorted(path.rglob("run-*.wandb")) if path.is_dir() else [],
        f"no W&B run file (run-*.wandb) under {path}; pass a wandb folder or an offline-run folder",
        f"{path} does not exist; pass a wandb folder, an offline-run-* folder or a run-*.wandb file",
    )
    return write_runs(root, (_read_run(f) for f in files), name=name, count=len(files), quiet=quiet)


def records(path: Path) -> list[bytes]:
    """The records (serialized ``Record`` protobufs) of a ``.wandb`` file; a torn tail ends the list.

    Example:
        >>> import tempfile, pathlib
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "run-x.wandb"
        >>> _ = file.write_bytes(b":W&B" + struct.pack("<HB", 0xBEE1, 0) + _RECORD_HEAD.pack(0, 2, _FULL) + b"ab")
        >>> records(file)
        [b'ab']
    """
    data = path.read_bytes()
    if not data.startswith(_HEADER):
        raise SourceError(f"{path} is not a W&B run file (it does not start with {_HEADER!r})")
    found, parts, pos = [], [], 7
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # too little room left in the block for a header: padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _, length, kind = _RECORD_HEAD.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero padding (a preallocated or torn tail)
            break
        body = data[pos + 7 : pos + 7 + length]
        if len(body) < length or kind not in (_FULL, _FIRST, _MIDDLE, _LAST):
            break
        pos += 7 + length
        if kind == _FULL:
            found.append(body)
        elif kind == _FIRST:
            parts = [body]
        else:
            parts.append(body)
            if kind == _LAST:
                found.append(b"".join(parts))
                parts = []
    return found


def _text(data: bytes, span: tuple[int, int]) -> str:
    return data[span[0] : span[1]].decode()


def _items(data: bytes, span: tuple[int, int], item_field: int) -> list[tuple[str, Any]]:
    """(key, decoded JSON value) of each item (key 1, nested_key 2, value_json 16) of a record."""
    items = []
    for number, wire, value in fields(data, *span):
        if number != item_field or wire != 2:
            continue
        key, nested, raw = None, [], None
        for inum, iwire, ivalue in fields(data, *value):
            if inum == 1 and iwire == 2:
                key = _text(data, ivalue)
            elif inum == 2 and iwire == 2:
                nested.append(_text(data, ivalue))
            elif inum == 16 and iwire == 2:
                raw = _text(data, ivalue)
        if raw is not None:
            items.append(("/".join(nested) if nested else key or "", json.loads(raw)))
    return items


def _read_run(path: Path) -> Source:
    try:
        return _decode_run(path, records(path))
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as exc:
        if isinstance(exc, SourceError):
            raise
        raise SourceError(f"{path}: a record is not a W&B record ({exc}); the file is corrupt") from exc


def _decode_run(path: Path, found: list[bytes]) -> Source:
    info: dict[str, Any] = {}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    exit_code = None
    for data in found:
        for number, wire, value in fields(data, 0, len(data)):
            if wire != 2:
                continue
            if number == _HISTORY:
                rows.append(dict(_items(data, value, 1)))
            elif number == _CONFIG:
                config.update(_items(data, value, 1))
            elif number == _SUMMARY:
                summary.update(_items(data, value, 1))
            elif number == _RUN:
                info.update(_run_record(data, value, config))
            elif number == _EXIT:
                exit_code = next((v for n, w, v in fields(data, *value) if n == 1 and w == 0), 0)
    return _source(path, info, config, summary, rows, exit_code)


def _run_record(data: bytes, span: tuple[int, int], config: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"tags": []}
    names = {1: "run_id", 2: "entity", 3: "project", 7: "job_type", 8: "display_name", 9: "notes", 6: "group"}
    for number, wire, value in fields(data, *span):
        if number in names and wire == 2:
            info[names[number]] = _text(data, value)
        elif number == 10 and wire == 2:
            info["tags"].append(_text(data, value))
        elif number == 4 and wire == 2:
            config.update(_items(data, value, 1))
        elif number == 17 and wire == 2:
            stamp = {n: v for n, w, v in fields(data, *value) if w == 0}
            info["start_time"] = stamp.get(1, 0) + stamp.get(2, 0) / 1e9
    return info


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _source(
    path: Path,
    info: dict[str, Any],
    config: dict[str, Any],
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    exit_code: int | None,
) -> Source:
    run_id = info.get("run_id") or path.stem.removeprefix("run-")
    internal = config.pop("_wandb", None)
    config = {
        k: v.get("value") if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v else v
        for k, v in config.items()
    }
    meta = {"wandb": {k: v for k, v in info.items() if k != "start_time"}, "summary": summary}
    if internal is not None:
        meta["wandb"]["internal"] = internal
    status = None if exit_code is None else (fmt.FINISHED if exit_code == 0 else fmt.FAILED)
    source = Source(
        "wandb",
        path,
        run_id,
        name=info.get("display_name") or run_id,
        start_time=info.get("start_time"),
        config=config,
        meta=meta,
        status=status,
    )
    for index, row in enumerate(rows):
        step = row.pop("_step", index)
        when = _number(row.pop("_timestamp", None))
        row.pop("_runtime", None)
        values = {k: v for k, v in ((k, _number(v)) for k, v in row.items()) if v is not None}
        if values:
            source.add(int(step), when if when is not None else source.start_time or 0.0, values)
    if source.start_time is None and source.events:
        source.start_time = min(when for _, when in source.events)
    if source.start_time is None:
        raise SourceError(f"{path} holds no run record and no history: not a W&B run, or empty")
    return source
