"""Stage 2 writes the lines of the attempts whose early verdict stands straight from their spill
records (``pipeline.spilled_lines``: compiled in ``forensics._lines`` where it is built,
``pipeline._spilled_lines`` otherwise).

On the spills of real runs (the samples, a generated capture with injected resets, racing DNS
answers and dropped ClientHellos, and the corpus), both give the same segments, the same codes and
ask ``Judge.stands`` the same questions in the same order; a verdict that does not stand, a
pickled record and a record whose lengths do not add up are left to the caller by both; and the
whole report is the same either way.
"""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest

from conftest import generated, with_samples_and_corpus

from forensics import pipeline
from forensics.classify.engine import Judge
from forensics.sources import expand_paths

_compiled = pipeline._writer()
need_compiled = pytest.mark.skipif(_compiled is pipeline._spilled_lines,
                                   reason="the compiled line writer is not built (or FORENSICS_PURE is set)")


def _parts(tmp_path, inputs: list[str]):
    """Each input's stage 1 (``run_part``, one part) with its controls merged: (result, judge)."""
    out = []
    for k, path in enumerate(inputs):
        work = tmp_path / f"w{k}"
        work.mkdir()
        res = pipeline.run_part(expand_paths([path]), 0, 1, str(work))
        judge = Judge([], res.controls.reachable)
        judge.controls = pipeline.merge_controls([res])
        out.append((res, judge))
    return out


def _blocks(res, seed: int):
    """The part's records a stage-2 block at a time, with positions and ranks as ``number`` could
    give them (a rank of -1 for some: no stream)."""
    rng = random.Random(seed)
    index = np.asarray(res.index)
    fd = os.open(res.spill, os.O_RDONLY)
    try:
        for b in range(0, len(index), pipeline.JUDGE_TICK):
            sel = index[b:b + pipeline.JUDGE_TICK]
            bufs, ats = pipeline._spill_ranges(fd, sel["off"], sel["len"])
            n = len(sel)
            positions = [b + k + rng.choice((0, 0, 9, 10 ** 7)) for k in range(n)]
            ranks = [rng.choice((-1, 0, 7, 12345, 10 ** 12)) for _ in range(n)]
            yield bufs, ats, sel["len"].tolist(), sel["input"].tolist(), positions, ranks
    finally:
        os.close(fd)


def _run(writer, block, stands):
    asked = []

    def ask(inp, key):
        got = stands(inp, key)
        asked.append((inp, key, got))
        return got

    codes = np.full(len(block[0]), -7, np.int16)
    segs = writer(*block, codes, ask, pickle.loads)
    return segs, codes.tolist(), asked


def _inputs(tmp_path) -> list[str]:
    return with_samples_and_corpus(generated(tmp_path, 23, "--rst", "0.05", "--forged-dns", "0.05",
                                             "--sni-drop", "0.05"))


@need_compiled
def test_both_writers_give_the_same_lines_on_real_spills(tmp_path):
    seen = {"written": 0, "left": 0, "asked": 0}
    for res, judge in _parts(tmp_path, _inputs(tmp_path)):
        for block in _blocks(res, len(seen)):
            want = _run(pipeline._spilled_lines, block, judge.stands)
            got = _run(_compiled, block, judge.stands)
            assert got == want
            segs, codes, asked = got
            seen["written"] += sum(seg.count(b"\n") for seg in segs if type(seg) is bytes)
            seen["left"] += sum(type(seg) is int for seg in segs)
            seen["asked"] += len(asked)
            # runs are cut only by a record left to the caller
            assert all(not (type(x) is bytes and type(y) is bytes) for x, y in zip(segs, segs[1:]))
            assert all(c == -7 for seg in segs if type(seg) is int for c in [codes[seg]])
    # the lanes' and the early verdicts' records are most of them; some ask stands
    assert seen["written"] > 3 * seen["left"] > 0, seen
    assert seen["asked"] > 100, seen


@need_compiled
@pytest.mark.parametrize("writer", ["compiled", "python"])
def test_what_the_writers_leave_to_the_caller(tmp_path, writer):
    write = _compiled if writer == "compiled" else pipeline._spilled_lines
    good = pipeline.line_record(3, 0, b'"kind":"tcp"', b'"verdict":"ok"', b'"history":"S"', b'"x":1', b"", b"")
    keyed = pipeline.line_record(5, 1, b'"kind":"dns"', b'"verdict":"ok"', b'"m":2', b"", pickle.dumps(("k", 1)),
                                 pickle.dumps({"facts": 1}))
    pickled = pickle.dumps(({"facts": 2}, (b"h", b"m", b"t")), 5)
    lying = good[:-1]  # its lengths say one byte more than it has
    recs = [good, keyed, good, pickled, lying, keyed, good]
    buf = b"".join(recs)
    ats = [sum(len(r) for r in recs[:k]) for k in range(len(recs))]
    lens = [len(r) for r in recs]
    answers = iter([True, False])
    codes = np.full(len(recs), -1, np.int16)
    segs = write([buf] * len(recs), ats, lens, [0] * len(recs), [0, 1, 2, 3, 4, 5, 6], [-1, 4, 9, -1, -1, -1, 0],
                 codes, lambda inp, key: next(answers), pickle.loads)
    assert segs == [b'{"id":"a1","kind":"tcp","verdict":"ok","history":"S","x":1}\n'
                    b'{"id":"a2","kind":"dns","verdict":"ok","m":2,"stream":4}\n'
                    b'{"id":"a3","kind":"tcp","verdict":"ok","history":"S","stream":9,"x":1}\n',
                    3, 4, 5,
                    b'{"id":"a7","kind":"tcp","verdict":"ok","history":"S","stream":0,"x":1}\n']
    assert codes.tolist() == [3, 5, 3, -1, -1, -1, 3]
    assert pipeline.read_line_record(keyed) == (5, 1, b'"kind":"dns"', b'"verdict":"ok"', b'"m":2', b"",
                                                pickle.dumps(("k", 1)), pickle.dumps({"facts": 1}))
    with pytest.raises(ValueError, match="spill"):
        pipeline.read_line_record(lying)


@need_compiled
def test_the_compiled_writer_checks_its_block(tmp_path):
    rec = pipeline.line_record(1, 0, b'"a":1', b'"b":2', b'"c":3', b"", b"", b"")
    codes = np.zeros(2, np.int16)
    with pytest.raises(ValueError):  # the lists of a block differ in length
        _compiled([rec, rec], [0], [len(rec)] * 2, [0, 0], [0, 1], [-1, -1], codes, None, pickle.loads)
    with pytest.raises(ValueError):  # a record beyond its range's bytes
        _compiled([rec], [1], [len(rec)], [0], [0], [-1], codes, None, pickle.loads)
    with pytest.raises(TypeError):
        _compiled([bytearray(rec)], [0], [len(rec)], [0], [0], [-1], codes, None, pickle.loads)


@need_compiled
def test_the_report_is_the_same_with_either_writer(tmp_path, monkeypatch):
    from forensics import api
    from forensics.render import render_to_string

    path = generated(tmp_path, 29, "--rst", "0.05", "--forged-dns", "0.05", "--sni-drop", "0.05")
    texts = []
    for writer in (_compiled, pipeline._spilled_lines):
        monkeypatch.setattr(pipeline, "spilled_lines", writer)
        texts.append(render_to_string(api.analyze([path], jobs=1, keep_attempts=False), "json"))
    assert texts[0] == texts[1]
    assert texts[0].count('"verdict": ') == 0 and texts[0].count('"verdict":"') > 1000
