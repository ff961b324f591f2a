"""Import TensorBoard event files: scalars with their steps and wall times, hparams as config.

An event file is a sequence of TFRecords (length, CRC, an ``Event`` protobuf, CRC). It is read here
with a small protobuf decoder of the few fields scalars need, so neither TensorFlow nor TensorBoard
has to be installed, and so a million scalars import faster than TensorBoard's ``EventAccumulator``
loads them (benchmarks/bench_importers.py). Scalars are ``simple_value`` (``SummaryWriter.add_scalar``
of torch and tensorboardX) or 0-d float tensors of the ``scalars`` plugin (``tf.summary.scalar``).
TensorBoard stores scalars as float32: the run's meta says ``"value_precision": "float32"`` and the
values are exactly the float32 numbers written. CRCs are not checked; a torn last record (a writer
that died) ends the file cleanly and is counted in meta ``"torn_records"``.

One run per directory holding ``events.out.tfevents.*`` files (several files of one directory, as a
restarted writer leaves, are one run, read in name order). Images, histograms, text are left out.

Example:
    >>> import tempfile, pathlib, struct, steplog
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> event = _record(_event(100.0, 3, _scalar_summary("loss", 0.5)))
    >>> _ = (folder / "events.out.tfevents.1.host").write_bytes(event)
    >>> [run_id] = tensorboard(folder, root=folder / "logs", quiet=True)
    >>> steplog.history(run_id, root=folder / "logs").select("step", "loss").rows()
    [(3, 0.5)]
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from ._protobuf import fields as _fields
from ._runs import Source, SourceError, write_runs

EVENT_FILE_MARK = "tfevents"
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_HEADER = struct.Struct("<QI")


def tensorboard(path: str | os.PathLike, root: str | os.PathLike = "experiment_logs", name: str | None = None, *,
                quiet: bool = False) -> list[str]:
    """Import a TensorBoard event file or log directory (one run per folder of event files); returns the run ids.

    Example:
        >>> import tempfile
        >>> tensorboard(tempfile.mkdtemp(), root=tempfile.mkdtemp(), quiet=True)
        Traceback (most recent call last):
        ...
        steplog.importers._runs.SourceError: no TensorBoard event file (events.out.tfevents.*) under ...
    """
    groups = _run_folders(Path(path))
    top = Path(path) if Path(path).is_dir() else Path(path).parent
    sources = (_read_run(folder, files, top) for folder, files in groups)
    return write_runs(root, sources, name=name, count=len(groups), quiet=quiet)


def _run_folders(path: Path) -> list[tuple[Path, list[Path]]]:
    if path.is_file():
        return [(path.parent, [path])]
    if not path.is_dir():
        raise SourceError(f"{path} does not exist; pass a TensorBoard event file or log directory")
    by_folder: dict[Path, list[Path]] = {}
    for file in sorted(path.rglob(f"*{EVENT_FILE_MARK}*")):
        if file.is_file():
            by_folder.setdefault(file.parent, []).append(file)
    if not by_folder:
        raise SourceError(f"no TensorBoard event file (events.out.tfevents.*) under {path}")
    return sorted(by_folder.items())


def _read_run(folder: Path, files: list[Path], top: Path) -> Source:
    relative = folder.relative_to(top).as_posix() if folder != top else folder.name
    source = Source("tensorboard", folder, files[0].name, name=relative or folder.name,
                    meta={"value_precision": "float32", "event_files": [f.name for f in files]})
    torn = 0
    for file in files:
        torn += _read_file(file, source)
    if torn:
        source.meta["torn_records"] = torn
    if source.start_time is None:
        raise SourceError(f"{files[0]} holds no event: not a TensorBoard event file, or empty")
    return source


def _read_file(file: Path, source: Source) -> int:
    """Add the scalars of one event file to ``source``; returns 1 if its last record is torn, else 0."""
    data = file.read_bytes()
    pos, end = 0, len(data)
    events, hparams = source.events, source.config
    while pos < end:
        if pos + 12 > end:
            return 1
        length = _HEADER.unpack_from(data, pos)[0]
        body = pos + 12
        pos = body + length + 4
        if pos > end:
            return 1
        try:
            wall, step, values = _decode_event(data, body, body + length, hparams)
        except (IndexError, struct.error, ValueError, UnicodeDecodeError) as exc:
            raise SourceError(f"{file}: record at byte {body - 12} is not a TensorBoard event ({exc}); "
                              f"the file is corrupt or not an event file") from exc
        if wall is not None and (source.start_time is None or wall < source.start_time):
            source.start_time = wall
        if values:
            key = (step, wall if wall is not None else source.start_time or 0.0)
            event = events.get(key)
            if event is None:
                events[key] = values
            else:
                event.update(values)
    return 0


def _decode_event(data: bytes, pos: int, end: int, hparams: dict[str, Any]) -> tuple[float | None, int, dict]:
    """An Event's wall time, step and scalar values ``{tag: float}`` (hparams go into ``hparams``)."""
    wall: float | None = None
    step = 0
    values: dict[str, float] = {}
    for number, wire, value in _fields(data, pos, end):
        if number == 1 and wire == 1:
            wall = _F64.unpack_from(data, value[0])[0]
        elif number == 2 and wire == 0:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5 and wire == 2:
            for vnum, vwire, span in _fields(data, *value):
                if vnum == 1 and vwire == 2:
                    _decode_value(data, span, values, hparams)
    return wall, step, values


def _decode_value(data: bytes, span: tuple[int, int], values: dict[str, float], hparams: dict[str, Any]) -> None:
    tag, simple, tensor, plugin, content = None, None, None, None, None
    for number, wire, value in _fields(data, *span):
        if number == 1 and wire == 2:
            tag = data[value[0]:value[1]].decode()
        elif number == 2 and wire == 5:
            simple = _F32.unpack_from(data, value[0])[0]
        elif number == 8 and wire == 2:
            tensor = value
        elif number == 9 and wire == 2:
            plugin, content = _plugin(data, value)
    if tag is None:
        return
    if simple is not None:
        values[tag] = simple
    elif tensor is not None and plugin == "scalars":
        scalar = _tensor_scalar(data, tensor)
        if scalar is not None:
            values[tag] = scalar
    elif plugin == "hparams" and content is not None:
        hparams.update(_hparams(data, content))


def _plugin(data: bytes, span: tuple[int, int]) -> tuple[str | None, tuple[int, int] | None]:
    """The plugin name and content span of a SummaryMetadata."""
    for number, wire, value in _fields(data, *span):
        if number == 1 and wire == 2:
            name, content = None, None
            for pnum, pwire, pvalue in _fields(data, *value):
                if pnum == 1 and pwire == 2:
                    name = data[pvalue[0]:pvalue[1]].decode()
                elif pnum == 2 and pwire == 2:
                    content = pvalue
            return name, content
    return None, None


def _tensor_scalar(data: bytes, span: tuple[int, int]) -> float | None:
    """The value of a 0-d float or double TensorProto (dtype 1 or 2), else None."""
    dtype, content, floats, doubles = None, None, None, None
    for number, wire, value in _fields(data, *span):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            content = data[value[0]:value[1]]
        elif number == 5:
            floats = data[value[0]:value[0] + 4] if wire in (2, 5) else None
        elif number == 6:
            doubles = data[value[0]:value[0] + 8] if wire in (1, 2) else None
    if dtype == 1:
        raw = content if content and len(content) == 4 else floats
        return _F32.unpack(raw)[0] if raw and len(raw) == 4 else None
    if dtype == 2:
        raw = content if content and len(content) == 8 else doubles
        return _F64.unpack(raw)[0] if raw and len(raw) == 8 else None
    return None


def _hparams(data: bytes, span: tuple[int, int]) -> dict[str, Any]:
    """The hparams of an HParamsPluginData's session_start_info: ``{name: number, string or bool}``."""
    found: dict[str, Any] = {}
    for number, wire, value in _fields(data, *span):
        if number != 3 or wire != 2:
            continue
        for snum, swire, entry in _fields(data, *value):
            if snum == 1 and swire == 2:
                key, item = None, None
                for enum, ewire, evalue in _fields(data, *entry):
                    if enum == 1 and ewire == 2:
                        key = data[evalue[0]:evalue[1]].decode()
                    elif enum == 2 and ewire == 2:
                        item = _protobuf_value(data, evalue)
                if key is not None:
                    found[key] = item
    return found


def _protobuf_value(data: bytes, span: tuple[int, int]) -> Any:
    """A google.protobuf.Value holding a number, a string or a bool (None otherwise)."""
    for number, wire, value in _fields(data, *span):
        if number == 2 and wire == 1:
            return _F64.unpack_from(data, value[0])[0]
        if number == 3 and wire == 2:
            return data[value[0]:value[1]].decode()
        if number == 4 and wire == 0:
            return bool(value)
    return None


# --- writing, for examples and fixture files only -----------------------------------------------

def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _scalar_summary(tag: str, value: float) -> bytes:
    """A Summary holding one simple_value (what ``add_scalar`` writes)."""
    tag_bytes = tag.encode()
    inner = _key(1, 2) + _encode_varint(len(tag_bytes)) + tag_bytes + _key(2, 5) + _F32.pack(value)
    return _key(1, 2) + _encode_varint(len(inner)) + inner


def _event(wall: float, step: int, summary: bytes) -> bytes:
    """An Event with a wall time, a step and a Summary."""
    head = _key(1, 1) + _F64.pack(wall) + _key(2, 0) + _encode_varint(step)
    return head + _key(5, 2) + _encode_varint(len(summary)) + summary


def _record(payload: bytes) -> bytes:
    """A TFRecord around ``payload`` (CRCs written as zeros: this reader does not check them)."""
    return _HEADER.pack(len(payload), 0) + payload + b"\0\0\0\0"
