"""Stage 2 reads a block's spill records by ranges (``pipeline._spill_ranges``): each record's
bytes as they were written, in the order asked, in few reads where records sit together; a spill
shorter than its index says is an error, not records cut short."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from forensics import pipeline


def _spill(tmp_path, n: int, seed: int):
    rng = random.Random(seed)
    records = [rng.randbytes(rng.randint(1, 3000)) for _ in range(n)]
    path = tmp_path / "part0.spill"
    offs = []
    with open(path, "wb") as fh:
        for r in records:
            offs.append(fh.tell())
            fh.write(r)
    return path, records, np.array(offs, np.int64), np.array([len(r) for r in records], np.uint32)


def _records(fd, offs, lens) -> list[bytes]:
    bufs, ats = pipeline._spill_ranges(fd, offs, lens)
    return [b[at:at + n] for b, at, n in zip(bufs, ats, lens.tolist())]


def test_records_come_back_whole_in_the_order_asked(tmp_path, monkeypatch):
    path, records, offs, lens = _spill(tmp_path, 3000, 1)
    rng = random.Random(2)
    reads = []
    real = os.pread
    monkeypatch.setattr(pipeline.os, "pread", lambda fd, n, off: reads.append(n) or real(fd, n, off))
    fd = os.open(path, os.O_RDONLY)
    try:
        # a block as stage 2 asks for it: two interleaved runs (connections, and DNS queries that
        # finished later), some records far away, one asked twice
        near = list(range(0, 1000))
        later = list(range(1500, 2500))
        ask = [x for pair in zip(near, later) for x in pair] + rng.sample(range(3000), 200) + [5]
        assert _records(fd, offs[ask], lens[ask]) == [records[i] for i in ask]
        assert len(reads) < 250, len(reads)  # not one read per record (2,201 asked)
        assert sum(reads) < 1.3 * sum(len(records[i]) for i in set(ask))
        # records further apart than SPILL_GAP are read apart: nothing between them is read
        reads.clear()
        far = [0, 2999]
        assert _records(fd, offs[far], lens[far]) == [records[0], records[2999]]
        assert reads == [len(records[0]), len(records[2999])]
    finally:
        os.close(fd)


def test_a_spill_shorter_than_its_index_is_an_error(tmp_path):
    path, records, offs, lens = _spill(tmp_path, 10, 3)
    os.truncate(path, int(offs[-1]) + 1)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert _records(fd, offs[:9], lens[:9]) == records[:9]
        with pytest.raises(ValueError, match="shorter"):
            pipeline._spill_ranges(fd, offs[8:], lens[8:])
    finally:
        os.close(fd)
