"""Giving back a temporary file's space behind its last reader.

A run keeps its attempts in temporary files, each written once and read once: the spill
(stage 1's records, read in the report's order by stage 2) and the judged lines (read
in order into the report). Read, their bytes are of no more use, but their pages and blocks
stay until the file is removed, while the next file is written beside them: at their
fullest a run held the spill and the lines both, about 3 KB an attempt. ``Freer`` frees a
file's bytes behind the point its reader has passed (Linux ``fallocate`` with
``FALLOC_FL_PUNCH_HOLE``: the file keeps its size, the freed range reads as zeros), so the
file written next takes the pages and blocks the one read has given up.

The pages matter as much as the blocks: a page the kernel must find afresh costs more to
write into than one just freed, by far where the machine is a virtual one whose host gives
memory back lazily. On the benchmark machine stage 2 of the 1M file took 1.03 s writing its
lines into fresh pages, 0.60 s into pages just freed (three runs each way).

Where the system cannot punch holes (another OS, a file system without them) ``Freer`` does
nothing: the files are removed whole at the end, as before.
"""

from __future__ import annotations

import functools
import mmap
import sys
from typing import Callable

#: ``fallocate``'s mode: free the range, keep the file's size (``linux/falloc.h``).
_PUNCH_HOLE = 0x02 | 0x01
#: Bytes freed at a time, at least: a system call per MiB read, and never part of a page.
STEP = 1 << 20
_PAGE = mmap.PAGESIZE


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    """The C library's ``fallocate`` (64-bit offsets), looked up once; None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        f = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    f.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    f.restype = ctypes.c_int
    return f


class Freer:
    """Frees the bytes of the file open as ``fd`` before the offsets ``upto`` is given, whole
    pages and ``STEP`` bytes at a time. The first failure (a file system that cannot) stops it."""

    __slots__ = ("fd", "done", "_call")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.done = 0  # bytes before this offset are freed
        self._call = _fallocate()

    @property
    def works(self) -> bool:
        return self._call is not None

    def upto(self, offset: int, *, last: bool = False) -> None:
        """No byte before ``offset`` will be read again (``last``: free what is left of a
        step too)."""
        if self._call is None:
            return
        end = offset - offset % _PAGE
        if end - self.done < (_PAGE if last else STEP):
            return
        if self._call(self.fd, _PUNCH_HOLE, self.done, end - self.done) != 0:
            self._call = None  # (EOPNOTSUPP, a file system without holes: the file goes whole at the end)
            return
        self.done = end
