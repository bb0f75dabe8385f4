"""``forensics.reassembly._segscan``: a connection's rows scanned as the bytes they are kept in
give what ``tcp.scan_records`` gives from the rows as tuples (``tcp._scan``'s history,
retransmissions, starts and FIN/RST rows, then the frames, the client's SYN rows and the rows).

Compared on generated rows (hypothesis: any flags, directions, sequence numbers, windows), on
every connection of real runs (the samples, a generated capture with interference, the corpus),
and by the whole report, compiled against ``FORENSICS_PURE=1`` (``test_compiled.py``). The rows
themselves (``model.SegRows``) are made only when asked for, and behave as the list they stand for.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import generated, with_samples_and_corpus

from forensics import compiled, model, pipeline
from forensics.model import SEG_DTYPE, SegRows, seg_rows
from forensics.reassembly import tcp
from forensics.sources import expand_paths

_mod = compiled.segscan_module()
need_scan = pytest.mark.skipif(tcp.scan_rows is tcp.scan_records,
                               reason="forensics.reassembly._segscan is not built (or FORENSICS_PURE is set)")

_FIELDS = {"frame": st.integers(0, 2 ** 40), "ts": st.floats(0, 2e9), "dir": st.integers(0, 1),
           "ttl": st.integers(0, 255), "ipid": st.integers(-1, 0xFFFF), "df": st.integers(0, 1),
           "flags": st.integers(0, 0x1FF), "seq": st.integers(0, 2 ** 32 - 1),
           "ack": st.integers(0, 2 ** 32 - 1), "win": st.sampled_from([0, 1, 512, 0xFFFF]),
           "plen": st.sampled_from([0, 0, 1, 2, 100, 1460, 65535, -1]), "tos": st.integers(0, 255),
           "input": st.integers(-1, 3)}


def _records(rows: list[dict]) -> bytearray:
    """The rows as SEG_DTYPE records, sequence numbers near each other (one connection's) as often
    as not, as ``TcpState`` keeps them."""
    a = np.zeros(len(rows), SEG_DTYPE)
    seq0 = rows[0]["seq"] if rows else 0
    for k, r in enumerate(rows):
        for name in SEG_DTYPE.names:
            a[k][name] = (seq0 + k * 700) % 2 ** 32 if name == "seq" and k % 2 else r[name]
    return bytearray(a.tobytes())


def _same(got: tuple, want: tuple) -> None:
    assert len(got) == len(want) == 9
    assert got[:8] == want[:8]
    assert [type(x) for x in got[:5]] == [type(x) for x in want[:5]]
    assert [[type(v) for v in r] for r in got[5] + list(got[7])] == [[type(v) for v in r] for r in want[5] + list(want[7])]
    assert type(got[8]) is SegRows and list(got[8]) == list(want[8])


@need_scan
@settings(max_examples=400, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.fixed_dictionaries(_FIELDS), max_size=40),
       base=st.tuples(st.none() | st.integers(0, 2 ** 32 - 1), st.none() | st.integers(0, 2 ** 32 - 1)))
def test_the_compiled_scan_gives_what_the_rows_give(rows, base):
    raw = _records(rows)
    want = tcp.scan_records(bytes(raw), list(base))
    for r in (raw, bytes(raw)):
        _same(tcp.scan_rows(r, list(base)), want)


@need_scan
def test_long_histories_and_every_row_code():
    """Every one of the 512 row codes, then the counted letters past their 10th and 100th time."""
    rows = []
    for code in range(512):
        rows.append({"frame": code, "ts": code / 10, "dir": 1 if code & 256 else 0, "ttl": 64, "ipid": code,
                     "df": 1, "flags": code & 0x1F, "seq": 1000 + code * 10, "ack": 0,
                     "win": 0 if code & 64 else 512, "plen": 10 if code & 32 else 0, "tos": 0, "input": 0})
    for k in range(250):  # the same data again and again: retransmissions, noted at 1, 10, 100
        rows.append({"frame": 600 + k, "ts": 60.0 + k, "dir": k % 2, "ttl": 64, "ipid": 0, "df": 0,
                     "flags": 0x18, "seq": 5, "ack": 1, "win": 0, "plen": 10, "tos": 0, "input": 1})
    a = np.zeros(len(rows), SEG_DTYPE)
    for k, r in enumerate(rows):
        for name in SEG_DTYPE.names:
            a[k][name] = r[name]
    raw = bytearray(a.tobytes())
    want = tcp.scan_records(raw, [None, None])
    _same(tcp.scan_rows(raw, [None, None]), want)
    assert want[1].count("t") == 3 and want[1].count("T") == 3, want[1]


@need_scan
def test_every_connection_of_real_runs_scans_alike(tmp_path, monkeypatch):
    seen = {"connections": 0, "rows": 0, "syns": 0, "ends": 0}
    scan = tcp.scan_rows

    def both(raw, base):
        got = scan(raw, base)
        want = tcp.scan_records(raw, base)
        _same(got, want)
        seen["connections"] += 1
        seen["rows"] += len(want[8])
        seen["syns"] += len(want[7])
        seen["ends"] += len(want[5])
        return got

    monkeypatch.setattr(tcp, "scan_rows", both)
    inputs = with_samples_and_corpus(generated(tmp_path, 31, "--rst", "0.05", "--sni-drop", "0.05"))
    for k, path in enumerate(inputs):
        work = tmp_path / f"w{k}"
        work.mkdir()
        res = pipeline.run_part(expand_paths([path]), 0, 1, str(work))
        assert len(res.index)
    assert seen["connections"] > 500 and seen["syns"] > 500 and seen["ends"] > 500, seen


@need_scan
def test_the_scanner_refuses_what_it_cannot_read():
    scan = tcp.scan_rows
    with pytest.raises(TypeError):
        scan(memoryview(bytes(44)), [None, None])
    with pytest.raises(ValueError):
        scan(bytes(45), [None, None])
    with pytest.raises(ValueError):
        scan(bytes(44), [None])
    with pytest.raises(ValueError):  # a table that is not every row code's
        _mod.Scanner([], "TW", (1,), 2, 16, 1, 4, 0x17, 1, 256, 32, 128, 64, SegRows)
    a = np.zeros(1, SEG_DTYPE)
    a["dir"], a["plen"] = 2, 5  # a direction that is neither: the lists of two refuse it, as _scan's do
    with pytest.raises(IndexError):
        tcp.scan_records(a.tobytes(), [None, None])
    with pytest.raises(IndexError):
        scan(a.tobytes(), [None, None])


def test_the_rows_are_made_when_asked_for_and_behave_as_their_list():
    a = np.zeros(3, SEG_DTYPE)
    a["frame"], a["ts"], a["seq"], a["plen"] = [7, 8, 9], [0.5, 1.5, 2.5], [1, 2, 2 ** 32 - 1], [0, -1, 3]
    raw = bytearray(a.tobytes())
    rows = SegRows(raw)
    want = seg_rows(a)
    assert rows._rows is None
    assert len(rows) == 3 and bool(rows) and not SegRows(bytearray())
    assert rows.row(2) == want[2] and rows.row(0) == want[0] and rows._rows is None  # one row: no list made
    with pytest.raises(IndexError):
        rows.row(3)
    with pytest.raises(IndexError):
        rows.row(-1)
    assert list(rows) == want and rows == want and rows._rows is not None
    assert rows[1] == want[1] and rows[-1] == want[-1] and rows[1:] == want[1:]
    assert rows.row(1) == want[1]
    assert repr(rows) == repr(want)
    back = pickle.loads(pickle.dumps(rows, 5))
    assert type(back) is SegRows and back == rows and back == SegRows(bytes(raw))
    with pytest.raises(TypeError):
        hash(rows)


def test_a_connection_carries_its_frames_and_client_syns(tmp_path):
    """``finish_tcp`` gives each connection the frames of its rows and its client's SYN rows,
    what the attempts and the TLS lane read in place of the rows."""
    from forensics.reassembly.engine import Reassembler
    from forensics.sources import iter_inputs

    conns = []
    engine = Reassembler(lambda items: conns.extend(x for x in items if isinstance(x, model.TcpConn)))
    path = generated(tmp_path, 5)
    for idx, (info, batches) in enumerate(iter_inputs([path])):
        for rows, buf, now, made in batches:
            engine.feed(idx, rows, buf, now, made)
    engine.flush()
    assert len(conns) > 100
    for c in conns:
        rows = seg_rows(c.segs)
        assert c.rows == rows
        assert c.row_frames == tuple(r[model.SEG_FRAME] for r in rows)
        assert c.syn_rows == tuple(r for r in rows if r[model.SEG_DIR] == model.C2S
                                   and r[model.SEG_FLAGS] & 0x12 == 0x02)


#: what a live connection holds, compared when its state is finished
_STATE = ("stream", "c_key", "s_key", "direction_from", "base_seq", "n_detail", "n_marks", "capped", "packets",
          "pbytes", "syn", "synack", "syn_count", "icmp", "first_ts", "last_ts", "want_all", "fins", "cut",
          "fragments", "fragments_disagree")


def _states_after(tmp_path, keep, inputs: list[str], **steps) -> list[tuple]:
    """Each connection's pieces and their byte counts, every input read by an engine whose
    payload rows are kept by ``keep`` (and whose other batch steps are ``steps``, by name:
    ``take_groups``, ``take_syns``); with ``steps``, the whole state besides."""
    from forensics.reassembly import engine as eng
    from forensics.sources import iter_inputs

    out = []
    real = tcp.finish_tcp

    def finish(st):
        got = (st.stream, st.pieces, st.piece_bytes)
        if steps:
            got += (b"".join(st.chunks), *[getattr(st, name) for name in _STATE])
        out.append(got)
        return real(st)

    mp = pytest.MonkeyPatch()
    mp.setattr(eng, "keep_pieces", keep)
    mp.setattr(eng, "finish_tcp", finish)
    for name, step in steps.items():
        mp.setattr(eng, name, step)
    try:
        for path in inputs:
            engine = eng.Reassembler(lambda items: None)
            for idx, (info, batches) in enumerate(iter_inputs(expand_paths([path]))):
                for rows, buf, now, made in batches:
                    engine.feed(idx, rows, buf, now, made)
            engine.flush()
    finally:
        mp.undo()
    return out


@pytest.mark.skipif(tcp.keep_pieces is tcp.add_pieces,
                    reason="forensics.reassembly._segscan is not built (or FORENSICS_PURE is set)")
def test_the_compiled_piece_keeper_keeps_what_the_connections_want(tmp_path):
    """Every connection of the samples, a generated capture with interference, DNS over TCP and
    the corpus keeps the same pieces (sequence number, frame, bytes, time) either way."""
    inputs = with_samples_and_corpus(generated(tmp_path, 37, "--rst", "0.05", "--sni-drop", "0.05"))
    got = _states_after(tmp_path, tcp.keep_pieces, inputs)
    want = _states_after(tmp_path, tcp.add_pieces, inputs)
    assert got == want
    assert sum(len(p[0]) + len(p[1]) for _, p, _ in want if p) > 2000
    for _, pieces, sizes in got:  # the types too: what finish_tcp and the writers read
        if pieces:
            assert type(sizes[0]) is int and all(type(p[2]) is bytes and type(p[3]) is float
                                                 and type(p[0]) is int for d in pieces for p in d)


@pytest.mark.skipif(tcp.keep_pieces is tcp.add_pieces,
                    reason="forensics.reassembly._segscan is not built (or FORENSICS_PURE is set)")
def test_the_piece_keepers_stop_at_the_caps():
    """A connection's pieces stop at each direction's cap (bytes, or pieces), and a DNS over TCP
    connection's at its own; a payload past the batch's end is cut as a slice of it is."""
    from forensics.reassembly.tcp import MAX_PIECES, PAYLOAD_CAP, SERVER_KEEP, TcpState

    def fresh(want_all=False):
        st = TcpState.start(0, (1, 2, 3, 4, 5, 6, 2, 4, 0.0, 1))
        st.want_all = want_all
        return st

    buf = np.arange(256, dtype=np.uint8).repeat(400)  # 102,400 bytes
    n = 400  # 100 rows a connection, 50 each way
    groups = np.repeat(np.arange(4), n // 4)
    dirs = np.tile(np.array([0, 1], np.uint8), n // 2)
    seqs = np.arange(n, dtype=np.uint32) * 1000
    frames = np.arange(n, dtype=np.int64) + 10
    pays = (np.arange(n, dtype=np.int64) * 500) % 100_000
    caps = np.full(n, 1460, np.int32)
    caps[groups == 2] = 10  # small pieces: the count of pieces is reached first
    tss = np.arange(n, dtype=np.float64) / 3
    results = []
    for keep in (tcp.keep_pieces, tcp.add_pieces):
        states = [fresh(), fresh(True), fresh(), fresh(True)]
        keep(states, groups, dirs, seqs, frames, pays, caps, tss, memoryview(buf))
        results.append([(s.pieces, s.piece_bytes) for s in states])
    assert results[0] == results[1]
    for (pieces, sizes), all_ in zip(results[0], (False, True, False, True)):
        for d, cap in ((0, PAYLOAD_CAP), (1, SERVER_KEEP)):
            cap = PAYLOAD_CAP * 4 if all_ else cap
            assert sizes[d] == sum(len(p[2]) for p in pieces[d])
            assert sizes[d] - len(pieces[d][-1][2]) < cap and len(pieces[d]) <= MAX_PIECES
    for keep in (tcp.keep_pieces, tcp.add_pieces):  # a payload past the end of buf: cut there
        st = fresh()
        keep([st], np.zeros(1, np.int64), np.zeros(1, np.uint8), seqs[:1], frames[:1],
             np.array([100_000], np.int64), np.array([5000], np.int32), tss[:1], memoryview(buf))
        assert len(st.pieces[0][0][2]) == st.piece_bytes[0] == 2400
    assert len(results[0][2][0][0]) == len(results[0][2][0][1]) == MAX_PIECES


@pytest.mark.skipif(tcp.take_groups is tcp.absorb_groups or tcp.take_syns is tcp.syn_rows,
                    reason="forensics.reassembly._segscan is not built (or FORENSICS_PURE is set)")
def test_the_compiled_batch_steps_leave_every_connection_as_the_python_ones(tmp_path, monkeypatch):
    """The counts, close bits, first sequence numbers, kept rows (past the row cap too) and SYN
    options of every connection of the samples, a generated capture and the corpus are the
    same whether ``_absorb_fast`` takes its groups and SYN rows compiled or in Python."""
    monkeypatch.setattr(tcp, "MAX_DETAIL", 6)  # (read by both at each call: long connections pass it)
    inputs = with_samples_and_corpus(generated(tmp_path, 41, "--rst", "0.05", "--sni-drop", "0.05"))
    got = _states_after(tmp_path, tcp.add_pieces, inputs, take_groups=tcp.take_groups, take_syns=tcp.take_syns)
    want = _states_after(tmp_path, tcp.add_pieces, inputs, take_groups=tcp.absorb_groups, take_syns=tcp.syn_rows)
    assert got == want
    assert sum(1 for x in want if x[_STATE.index("capped") + 4]) > 100  # connections past the row cap
    assert sum(1 for x in want if x[_STATE.index("syn") + 4] is not None) > 500


_PIECE = st.tuples(st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 40), st.binary(max_size=40),
                   st.floats(0, 2e9))


@pytest.mark.skipif(tcp._usual is None, reason="forensics.reassembly._segscan is not built (or FORENSICS_PURE is set)")
@settings(max_examples=500, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(_PIECE, max_size=8), start=st.none() | st.integers(0, 2 ** 32 - 1),
       contiguous=st.booleans(), cap=st.sampled_from([1, 7, 40, 100, 16384]))
def test_the_usual_reassembly_is_reassemble_s(pieces, start, contiguous, cap):
    """``tcp.reassemble`` (the usual first payloads in compiled code) gives ``_reassemble``'s
    answer for any pieces: in order and touching as often as not, empty or not, any cap."""
    if contiguous and pieces:  # each piece where the last one ended, from the start (or not)
        at = pieces[0][0] if start is None else start
        laid = []
        for seq, frame, data, ts in pieces:
            laid.append((at, frame, data, ts))
            at = (at + len(data)) & 0xFFFFFFFF
        pieces = laid
    want = tcp._reassemble(pieces, start, cap)
    got = tcp.reassemble(pieces, start, cap)
    assert got == want and [type(x) for x in got] == [type(x) for x in want]
    usual = tcp._usual(pieces, start, cap)
    assert usual is None or usual == want
