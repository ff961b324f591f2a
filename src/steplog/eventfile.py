"""The bytes of an events file: whole-line appends with ``write(2)``, or copies into a memory mapping.

``"mmap"`` durability copies each encoded event into a shared mapping of the events file. The bytes
are in the kernel's page cache once the copy ends, so a SIGKILL, an OOM kill or a segfault of the
training process loses none of them, and readers on the same host see them at once. The file grows
in chunks whose blocks are reserved with ``posix_fallocate`` *before* they are mapped: writing into
a page the file system cannot back would raise SIGBUS and kill the training process. When reserving
fails (disk full, no fallocate), the file is cut to the bytes written and the run goes on with
``write(2)``. Only the current chunk is mapped, so memory stays flat however long the run.

Until the run is closed, the file ends in the zero bytes of the unused part of its last chunk; a
reader takes a trailing run of zero bytes as not yet written. Closing cuts them off and fsyncs.
When a chunk is full, the kernel is asked to start writing it to disk (without waiting), so that
the fsync of ``close`` waits for the last chunk only, not for the whole file.

Each line is copied without its newline first and the newline stored after it, so that whoever
sees a line's newline (a reader polling the file, or the file after a kill) sees the whole line.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "events.jsonl")
    >>> fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    >>> mapped = MappedEvents.open(fd, 0)
    >>> mapped.append(b'{"a":1}'); mapped.append(b'{"a":2}')
    >>> os.path.getsize(path) > 16  # a chunk is reserved ahead
    True
    >>> mapped.close(); open(path, "rb").read()
    b'{"a":1}\\n{"a":2}\\n'
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable

#: Size of the first mapped chunk; each next chunk doubles it, up to MAX_CHUNK.
FIRST_CHUNK = 256 << 10
MAX_CHUNK = 4 << 20
_PAGE = mmap.ALLOCATIONGRANULARITY
_NEWLINE = 10

#: statfs(2) f_type of the file systems where a shared mapping is not coherent across hosts.
NETWORK_FILESYSTEMS = {
    0x6969: "NFS",
    0x0BD00BD0: "Lustre",
    0x517B: "SMB",
    0xFF534D42: "CIFS",
    0xFE534D42: "SMB2",
    0x01021997: "9p",
    0x65735546: "FUSE",
}


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (completing short writes).

    Example:
        >>> import os, tempfile
        >>> fd, path = tempfile.mkstemp()
        >>> write_all(fd, b"line\\n"); os.close(fd); open(path, "rb").read()
        b'line\\n'
    """
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def network_filesystem(path: str | os.PathLike) -> str | None:
    """The name of the network file system ``path`` is on (NFS, Lustre, SMB...), or None for a local
    one (or when statfs cannot tell). Mappings are not coherent across hosts there. Asked once per
    device (``st_dev``) and process.

    Example:
        >>> import tempfile
        >>> network_filesystem(tempfile.gettempdir()) in (None, "NFS", "Lustre", "SMB", "CIFS", "SMB2", "9p", "FUSE")
        True
    """
    try:
        device = os.stat(path).st_dev
    except OSError:
        return None
    if device not in _fs_by_device:
        kind = _mount_type(path)
        _fs_by_device[device] = (
            NETWORK_FS_NAMES.get(kind.split(".")[0])
            if kind is not None
            else NETWORK_FILESYSTEMS.get(_statfs_type(path))
        )
    return _fs_by_device[device]


_fs_by_device: dict[int, str | None] = {}
#: The same file systems by the type /proc/self/mountinfo gives them ("fuse.sshfs" counts as "fuse").
NETWORK_FS_NAMES = {
    "nfs": "NFS",
    "nfs4": "NFS",
    "lustre": "Lustre",
    "smb3": "SMB",
    "smbfs": "SMB",
    "cifs": "CIFS",
    "9p": "9p",
    "fuse": "FUSE",
}


def _mount_type(path: str | os.PathLike) -> str | None:
    """The type of the file system holding ``path``, from /proc/self/mountinfo (what statfs's
    f_type says, without loading ctypes on the training process's first init); None where there
    is no /proc."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    where = os.path.realpath(path).rstrip("/") + "/"
    best, kind = -1, None
    for line in lines:
        fields = line.split(" ")
        point = fields[4].replace("\\040", " ").rstrip("/") + "/"
        if where.startswith(point) and len(point) > best and " - " in line:
            best, kind = len(point), line.split(" - ", 1)[1].split(" ", 1)[0]
    return kind


def _statfs_type(path: str | os.PathLike) -> int | None:
    """statfs(2)'s f_type of ``path`` (through the C library already loaded), or None."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the symbols of this process, the C library among them
        buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first field, a C long
        if libc.statfs(os.fsencode(path), buf) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


class ReserveFailed(OSError):
    """The next chunk could not be reserved; the file is cut to the bytes written."""


class MappedEvents:
    """The current chunk of an events file, mapped; ``append`` copies one line into it.

    ``fd`` is the events file opened read-write (with O_APPEND: ``write(2)`` after ``close`` or a
    fallback appends at the end of what was written). ``written`` is the file's length of real data.
    """

    def __init__(self, fd: int, on_full: Callable[[bytes, BaseException], None]) -> None:
        self.fd = fd
        self.buf: mmap.mmap | None = None  # the current chunk; its position (tell) is the next free byte
        self.base = 0  # file offset of the mapping
        self.size = 0  # length of the mapping
        self._written = 0  # the length of the data, while nothing is mapped
        self.chunk = FIRST_CHUNK // 2
        self._on_full = on_full

    @classmethod
    def open(cls, fd: int, written: int, on_full: Callable[[bytes, BaseException], None] | None = None) -> MappedEvents:
        """Map the first chunk after ``written`` bytes; raises ReserveFailed (the file cut to
        ``written``) when its blocks cannot be reserved. See the module docstring."""
        mapped = cls(fd, on_full or _raise)
        mapped._map_at(written, 0)
        return mapped

    @property
    def written(self) -> int:
        """The length of the data written so far."""
        buf = self.buf
        return self.base + buf.tell() if buf is not None else self._written

    def append(self, line: bytes, step: int = 0, now: float = 0.0) -> None:
        """Copy ``line`` (an encoded event without its newline), then its newline. ``Run.log`` does
        the same two calls itself (a call less), and ``continue_line`` where they raise."""
        buf = self.buf
        if buf is None:  # unmapped by a close that could not finish (disk full)
            return self.continue_line(line)
        try:
            buf.write(line)  # mmap.write copies all of the line or, when it does not fit, nothing
            buf.write_byte(_NEWLINE)
        except ValueError:  # the chunk is full
            self.continue_line(line)

    def continue_line(self, line: bytes) -> None:
        """The current chunk had no room for ``line`` and its newline: map the next chunk and copy
        into it what is missing (the line and its newline; or, when the line just fit, its newline).
        If the next chunk cannot be reserved, ``on_full`` gets what is missing (the file is cut to
        the bytes written, which then end in the line without its newline). Also maps again after
        a ``close`` that could not finish (its fsync failed: the run stays open)."""
        buf = self.buf
        if buf is None:
            written, rest = self._written, line
        else:
            pos = buf.tell()
            written = self.base + pos
            rest = b"" if pos == self.size and buf[pos - 1] != _NEWLINE else line
        try:
            buf = self._map_at(written, len(rest) + 1)
            _populate(buf)
        except ReserveFailed as exc:
            self._on_full(rest, exc)
            return
        buf.write(rest)
        buf.write_byte(_NEWLINE)

    def append_lines(self, data: bytes) -> None:
        """Copy complete lines (each ending in a newline), one by one."""
        for line in data.split(b"\n")[:-1]:
            self.append(line)

    def close(self) -> None:
        """Unmap, cut the file to the bytes written and fsync. Calling it again does nothing."""
        if self.buf is None:
            return
        written = self.written
        self._unmap()
        os.ftruncate(self.fd, written)
        os.fsync(self.fd)

    def _map_at(self, written: int, need: int) -> mmap.mmap:
        """Reserve and map the chunk holding byte ``written`` onwards, with room for ``need`` bytes."""
        if self.buf is not None:
            done, size = self.base, self.size
            self._unmap()
            _start_writeback(self.fd, done, size)
        base = written - written % _PAGE
        self.chunk = min(self.chunk * 2, MAX_CHUNK)
        size = max(self.chunk, -(-(written - base + need + 1) // _PAGE) * _PAGE)
        try:
            os.posix_fallocate(self.fd, base, size)
            buf = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=base)
        except (OSError, ValueError) as exc:
            os.ftruncate(self.fd, written)
            raise ReserveFailed(getattr(exc, "errno", None), f"could not reserve {size:,} bytes ({exc})") from exc
        buf.seek(written - base)
        self.buf, self.base, self.size = buf, base, size
        return buf

    def _unmap(self) -> None:
        if self.buf is not None:
            self._written = self.written
            self.buf.close()
            self.buf = None
            self.base, self.size = self._written, 0


def _raise(line: bytes, exc: BaseException) -> None:
    raise exc


def _populate(buf: mmap.mmap) -> None:
    """Fault the pages of a new chunk in now, in one system call (``MADV_POPULATE_WRITE``, Linux
    5.14; elsewhere nothing happens): each first write to a page of the file is otherwise a page
    fault of its own. Measured on this project's VM (ext4): 3.0-3.8 us a page this way against
    3.9-5.3 us one fault at a time, about 0.04x of the bare write per ``log()`` call; the price is
    3-5 ms in the one call that switches to a 4 MiB chunk, and the chunk's page cache taken at once.
    Not done for the first chunk (``open``): short runs would pay for pages they never use.

    Example:
        >>> import mmap, os, tempfile
        >>> fd, path = tempfile.mkstemp(); os.posix_fallocate(fd, 0, 8192)
        >>> buf = mmap.mmap(fd, 8192); _populate(buf); buf[:2] = b"ok"; buf.close(); os.close(fd)
    """
    try:
        buf.madvise(getattr(mmap, "MADV_POPULATE_WRITE", 23))
    except (OSError, AttributeError):  # an older kernel (EINVAL), no madvise: the pages fault in one by one
        pass


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a full chunk to disk now, without waiting for it
    (``POSIX_FADV_DONTNEED`` starts the writeback of dirty pages, and drops only pages already clean).
    The chunk's pages would otherwise all wait for ``close``'s fsync: measured here, a run that
    mapped 12 MB spent 16 ms in that fsync, and 2.6 ms with this hint at each chunk switch.

    Example:
        >>> import os, tempfile
        >>> fd, path = tempfile.mkstemp()
        >>> os.write(fd, b"x" * 8192); _start_writeback(fd, 0, 8192); os.close(fd)
        8192
    """
    advise = getattr(os, "posix_fadvise", None)  # not on macOS
    if advise is not None:
        try:
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass  # only a hint
