"""``records.take``: the rows an index or a mask selects, the same as numpy's own indexing; and
``model.struct_of``: a row packed by ``struct``, the same as numpy's."""

import numpy as np
import pytest

from forensics import pipeline
from forensics.model import SEG_DTYPE, struct_of
from forensics.ordering import _order
from forensics.pipeline import INDEX_DTYPE, SORT_KEYS
from forensics.reassembly.engine import KEY_DTYPE
from forensics.records import take
from forensics.sources.decode import PKT_DTYPE


def _filled(dtype: np.dtype, n: int, seed: int = 1) -> np.ndarray:
    """``n`` rows of ``dtype`` with every byte random (padding included)."""
    raw = np.random.default_rng(seed).integers(0, 256, n * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype)


@pytest.mark.parametrize("dtype", [PKT_DTYPE, KEY_DTYPE, INDEX_DTYPE], ids=["packet", "key", "index"])
def test_take_is_numpy_indexing(dtype):
    rows = _filled(dtype, 1000)
    rng = np.random.default_rng(2)
    for sel in (rng.integers(0, 1000, 1500),  # repeats, any order
                np.sort(rng.choice(1000, 300, replace=False)),
                rng.random(1000) < 0.4,  # a mask
                np.array([], np.intp),
                np.zeros(1000, bool)):
        got = take(rows, sel)
        want = rows[sel]
        assert got.dtype == dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


def test_take_of_a_strided_view_and_a_copy():
    rows = _filled(PKT_DTYPE, 400)
    every_other = rows[::2]
    sel = np.array([5, 0, 199, 7])
    got = take(every_other, sel)
    assert got.tobytes() == every_other[sel].tobytes()
    got["ts"] = -1.0  # a copy: the rows taken from are not touched
    assert not (every_other["ts"][sel] == -1.0).any()


def test_sorted_index_rows_keep_their_fields():
    rows = np.zeros(50, INDEX_DTYPE)
    rng = np.random.default_rng(3)
    rows["start"] = rng.integers(0, 5, 50)
    rows["frame"] = rng.integers(0, 1000, 50)
    rows["seq"] = np.arange(50)
    out = take(rows, _order(rows, SORT_KEYS))
    assert out.tolist() == sorted(rows.tolist(), key=lambda r: (r[0], r[1], r[2], r[3]))


@pytest.mark.parametrize("dtype", [INDEX_DTYPE, SEG_DTYPE], ids=["index", "segment"])
def test_a_row_packed_by_struct_of_is_numpys_row(dtype):
    """``struct_of``: the index rows ``_Recorder`` packs one by one are the rows ``np.array`` makes."""
    st = struct_of(dtype)
    rows = _filled(dtype, 500, seed=5)
    rows = rows[np.isfinite(rows[[n for n in dtype.names if dtype[n].kind == "f"][0]])]  # (NaN != NaN)
    ext = np.zeros(4, dtype)  # the extremes of each field
    for n in dtype.names:
        info = np.iinfo(dtype[n]) if dtype[n].kind in "iu" else np.finfo(dtype[n])
        ext[n] = [info.min, info.max, 0, -1 if dtype[n].kind != "u" else 1]
    for part in (rows, ext):
        values = part.tolist()
        assert b"".join(st.pack(*v) for v in values) == np.array(values, dtype).tobytes()
    assert pipeline._INDEX_ROW.size == INDEX_DTYPE.itemsize


def test_struct_of_refuses_a_dtype_with_padding():
    with pytest.raises(AssertionError):
        struct_of(np.dtype([("a", np.int8), ("b", np.int64)], align=True))
