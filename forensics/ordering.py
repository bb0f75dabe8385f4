"""Arrays of fixed-size rows kept on disk, and sorted there, in bounded memory.

The report numbers its attempts in a global order (start, input, first frame) and
ranks the TCP streams as Wireshark does. Held in memory, the rows that order
them cost about 80 bytes an attempt, which a capture of tens of gigabytes turns
into gigabytes. Here they stay in files: a sort writes sorted runs of at most
``RUN_ROWS`` rows and merges them, block by block, and a reader takes a file a
block at a time. Memory is bounded by the run and block sizes, whatever the
number of rows.

Every sort is stable (rows that compare equal keep their order in the input, and
in a merge of several sources, the order of the sources), so the order is the
same as ``np.lexsort`` over all the rows at once.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np

from .records import take

#: Rows sorted in memory at once: with the 60-byte index rows, the run, its order and its
#: sorted copy take about 70 MB at most (the stage-1 flows are gone by then).
RUN_ROWS = 1 << 19
#: Rows read at a time from each source of a merge, at most ...
MERGE_BLOCK = 1 << 15
#: ... and in all, over its sources: a merge of many sources (a Dask run's parts: one per
#: worker thread) holds at most about 32 MB of 60-byte index rows.
MERGE_ROWS = 1 << 19
#: Sources merged at once; past it, the runs are merged in passes (each pass divides
#: their number by this), so that a merge never holds more than this many blocks.
MAX_FANIN = 32


class DiskArray:
    """A one-dimensional array of ``dtype`` rows in a file: ``len``, slices (read from the
    file) and ``np.asarray`` (the whole file, for a machine that cannot read it). It pickles
    as its path: it serves processes on the machine that wrote it."""

    def __init__(self, path: str, dtype, n: int | None = None) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self.n = os.path.getsize(path) // self.dtype.itemsize if n is None else n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, sl: slice) -> np.ndarray:
        if not isinstance(sl, slice) or sl.step not in (None, 1):
            raise TypeError("a DiskArray is read in contiguous slices")
        lo, hi, _ = sl.indices(self.n)
        if hi <= lo:
            return np.empty(0, self.dtype)
        return np.fromfile(self.path, self.dtype, hi - lo, offset=lo * self.dtype.itemsize)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[0:self.n]
        return a if dtype is None else a.astype(dtype)

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        with open(self.path, "rb") as fh:
            while True:
                a = np.fromfile(fh, self.dtype, rows)
                if not len(a):
                    return
                yield a


class Appender:
    """Rows appended to a file in blocks; ``close`` gives the ``DiskArray``."""

    def __init__(self, path: str, dtype) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self._fh = open(path, "wb", buffering=1 << 20)
        self.n = 0

    def add(self, rows: np.ndarray) -> None:
        if len(rows):
            self._fh.write(np.ascontiguousarray(rows, self.dtype).data)  # (tofile's errors carry no errno)
            self.n += len(rows)

    def close(self) -> DiskArray:
        self._fh.close()
        return DiskArray(self.path, self.dtype, self.n)


def _keys(rows: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """The key fields of ``rows`` as a packed structured array (which numpy compares field by
    field, in order: what ``searchsorted`` needs)."""
    kd = np.dtype([(k, rows.dtype[k]) for k in keys])
    out = np.empty(len(rows), kd)
    for k in keys:
        out[k] = rows[k]
    return out


def _order(rows: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    return np.lexsort([rows[k] for k in reversed(keys)])


def merged(sources: Sequence, keys: Sequence[str], block: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The rows of ``sources`` (each sorted on ``keys``; ``DiskArray`` or ndarray) merged in
    order, in blocks: ``(rows, source)``, ``source`` the number of each row's source. Equal
    keys come in the order of the sources, then of the rows within a source."""
    n = len(sources)
    block = block or max(1024, min(MERGE_BLOCK, MERGE_ROWS // max(n, 1)))
    pos = [0] * n
    bufs: list[np.ndarray | None] = [None] * n
    kbufs: list[np.ndarray | None] = [None] * n
    while True:
        for s in range(n):  # refill the emptied buffers
            if (bufs[s] is None or not len(bufs[s])) and pos[s] < len(sources[s]):
                b = sources[s][pos[s]:pos[s] + block]
                pos[s] += len(b)
                bufs[s], kbufs[s] = b, _keys(b, keys)
        live = [s for s in range(n) if bufs[s] is not None and len(bufs[s])]
        if not live:
            return
        # The bound: the smallest last-buffered key of a source with rows still unread (the
        # first such source on ties). Every row below it can go; so can rows equal to it from
        # that source and those before it (their unread rows are above it, or come later).
        bound, first = None, n
        for s in live:
            if pos[s] < len(sources[s]):
                last = kbufs[s][-1].item()
                if bound is None or last < bound:
                    bound, first = last, s
        bound_key = kbufs[first][-1] if bound is not None else None  # (kbufs[first] is cut below)
        parts, srcs = [], []
        for s in live:
            if bound is None:
                cut = len(bufs[s])
            else:
                cut = int(np.searchsorted(kbufs[s], bound_key, side="right" if s <= first else "left"))
            if cut:
                parts.append(bufs[s][:cut])
                srcs.append(np.full(cut, s, np.int16))
                bufs[s], kbufs[s] = bufs[s][cut:], kbufs[s][cut:]
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        src = srcs[0] if len(srcs) == 1 else np.concatenate(srcs)
        if len(parts) > 1:
            o = _order(rows, keys)  # stable: ties stay in source order
            rows, src = take(rows, o), src[o]
        yield rows, src


def sort_file(src: DiskArray, dst: str, keys: Sequence[str], *, run_rows: int | None = None,
              block: int | None = None) -> DiskArray:
    """``src`` sorted on ``keys`` (stable) into the file ``dst``; ``src`` is left as it was.
    Runs of ``run_rows`` are sorted in memory and written beside ``dst``, then merged."""
    runs: list[DiskArray] = []
    for k, rows in enumerate(src.blocks(run_rows or RUN_ROWS)):
        out = Appender(f"{dst}.run{k}", src.dtype)
        out.add(take(rows, _order(rows, keys)))
        runs.append(out.close())
    if not runs:
        return Appender(dst, src.dtype).close()
    gen = 0
    while len(runs) > 1:  # merge MAX_FANIN consecutive runs at a time (consecutive: still stable)
        nxt: list[DiskArray] = []
        for g in range(0, len(runs), MAX_FANIN):
            group = runs[g:g + MAX_FANIN]
            if len(group) == 1:
                nxt.append(group[0])
                continue
            out = Appender(f"{dst}.m{gen}.{g}", src.dtype)
            for rows, _ in merged(group, keys, block):
                out.add(rows)
            nxt.append(out.close())
            for r in group:
                os.unlink(r.path)
        runs, gen = nxt, gen + 1
    os.replace(runs[0].path, dst)
    return DiskArray(dst, src.dtype, runs[0].n)
