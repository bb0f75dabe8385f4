"""The report's order kept on disk: the external sort and merge give what one in-memory
stable sort gives, and a whole analysis numbered through many small runs and blocks (the
path of a capture of tens of millions of attempts) writes the same report as with the
default sizes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import CORPUS, ROOT

import forensics
from forensics import ordering, pipeline
from forensics.ordering import Appender, DiskArray, merged, sort_file
from forensics.render import render_to_string

KEYS = ("start", "input", "frame", "sub")
DT = np.dtype([("start", "f8"), ("input", "i4"), ("frame", "i8"), ("sub", "i4"), ("seq", "i8")])


def _rows(rng, n: int) -> np.ndarray:
    """Rows with many ties on the keys (few distinct values), told apart by ``seq``."""
    a = np.zeros(n, DT)
    a["start"] = rng.integers(0, 40, n) / 4
    a["input"] = rng.integers(0, 3, n)
    a["frame"] = rng.integers(0, 12, n)
    a["sub"] = rng.integers(0, 2, n)
    a["seq"] = np.arange(n)
    return a


def _lexsorted(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort([a[k] for k in reversed(KEYS)])]


@pytest.mark.parametrize("seed", range(40))
def test_sort_file_is_a_stable_sort(tmp_path, seed):
    rng = np.random.default_rng(seed)
    a = _rows(rng, int(rng.integers(0, 2500)))
    src = Appender(str(tmp_path / "in"), DT)
    src.add(a)
    src = src.close()
    out = sort_file(src, str(tmp_path / "out"), KEYS, run_rows=int(rng.integers(1, 300)),
                    block=int(rng.integers(1, 40)))
    assert np.array_equal(np.asarray(out), _lexsorted(a))  # seq differs on every row: the order is exact
    assert np.array_equal(np.asarray(src), a)  # the input is left as it was
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]  # no run left behind


def test_many_runs_merge_in_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(ordering, "MAX_FANIN", 3)
    a = _rows(np.random.default_rng(7), 5000)
    src = Appender(str(tmp_path / "in"), DT)
    src.add(a)
    out = sort_file(src.close(), str(tmp_path / "out"), KEYS, run_rows=97, block=5)  # 52 runs, 4 passes
    assert np.array_equal(np.asarray(out), _lexsorted(a))


@pytest.mark.parametrize("seed", range(20))
def test_merge_keeps_the_sources_order_on_ties(seed):
    rng = np.random.default_rng(100 + seed)
    a = _rows(rng, int(rng.integers(1, 2000)))
    parts = [_lexsorted(p) for p in np.array_split(a, int(rng.integers(1, 6)))]
    rows, src = zip(*merged(parts, KEYS, int(rng.integers(1, 50))))
    rows, src = np.concatenate(rows), np.concatenate(src)
    whole = np.concatenate(parts)
    which = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)])
    order = np.lexsort([whole[k] for k in reversed(KEYS)])  # stable over the sources in order
    assert np.array_equal(rows, whole[order])
    assert np.array_equal(src, which[order])


def test_disk_array_slices(tmp_path):
    ap = Appender(str(tmp_path / "x"), np.int32)
    ap.add(np.arange(10, dtype=np.int32))
    ap.add(np.arange(10, 25, dtype=np.int32))
    d = ap.close()
    assert len(d) == 25
    assert d[3:7].tolist() == [3, 4, 5, 6]
    assert d[20:99].tolist() == [20, 21, 22, 23, 24]
    assert len(d[30:40]) == 0
    assert np.asarray(DiskArray(d.path, np.int32)).tolist() == list(range(25))
    with pytest.raises(TypeError):
        d[3]


def _inputs() -> list[str]:
    inputs = [str(ROOT / "pcaps")]
    corpus = CORPUS / "censoredplanet__CenTrace" / "testdata"
    if corpus.is_dir():
        inputs.append(str(corpus))
    return inputs


def test_small_runs_and_blocks_give_the_same_report(monkeypatch):
    """The sample captures (30 inputs, TCP streams ranked across them) numbered through runs
    of 7 rows, merges of 2, blocks of 3 to 5: the report is the one the default sizes give."""
    want = render_to_string(forensics.analyze(_inputs(), jobs=1, keep_attempts=False), "json")
    monkeypatch.setattr(ordering, "RUN_ROWS", 7)
    monkeypatch.setattr(ordering, "MERGE_BLOCK", 3)
    monkeypatch.setattr(ordering, "MAX_FANIN", 2)
    monkeypatch.setattr(pipeline, "NUMBER_BLOCK", 5)
    monkeypatch.setattr(pipeline, "JUDGE_TICK", 4)
    for jobs in (1, 2):
        rep = forensics.analyze(_inputs(), jobs=jobs, keep_attempts=False)
        assert render_to_string(rep, "json") == want, jobs
    kept = forensics.analyze(_inputs(), jobs=1)  # attempt objects placed by their ids
    assert [a.id for a in kept.attempts] == [f"a{i}" for i in range(1, len(kept.attempts) + 1)]
    assert render_to_string(kept, "json") == want


@pytest.mark.parametrize("block", [1, 2, 3, 7, 1000])
def test_stream_ranks_are_dense_across_blocks(tmp_path, monkeypatch, block):
    """A stream with several attempts (keep-alive requests) whose rows fall in two blocks
    keeps one rank."""
    monkeypatch.setattr(pipeline, "NUMBER_BLOCK", block)
    rng = np.random.default_rng(block)
    n = 300
    keys = rng.integers(0, 40, n).astype(np.int64) << 40 | rng.integers(0, 5, n)  # many repeats
    streams = Appender(str(tmp_path / "s"), pipeline._STREAM_DTYPE)
    rows = np.empty(n, pipeline._STREAM_DTYPE)
    rows["key"], rows["pos"] = keys, rng.permutation(n)
    streams.add(rows)
    ranked = np.asarray(pipeline._dense_ranks(streams.close(), str(tmp_path / "s")))
    _, want = np.unique(keys, return_inverse=True)
    assert ranked["pos"].tolist() == list(range(n))
    assert np.array_equal(ranked["rank"], want[np.argsort(rows["pos"])])
    assert sorted(os.listdir(tmp_path)) == ["s.by_pos"]
