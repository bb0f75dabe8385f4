"""The plain-Python forms of a connection's rows that the TCP path works on.

``seg_rows`` must give exactly what ``tolist`` gives; the one-segment shortcut of
``_reassemble`` what the general loop gives; the cached history letters the
history Zeek writes; ``first_seq`` the same base for ints and arrays.
"""

from __future__ import annotations

import numpy as np

from forensics.model import SEG_DTYPE, SEG_FLAGS, SEG_FRAME, SEG_INPUT, SEG_SEQ, SEG_TS, flags_text, seg_rows
from forensics.reassembly.tcp import U32, _reassemble, _walk, first_seq, history

S, A, F, R, P = 0x02, 0x10, 0x01, 0x04, 0x08


def test_seg_rows_is_tolist():
    rng = np.random.default_rng(7)
    segs = np.zeros(50, SEG_DTYPE)
    for name in SEG_DTYPE.names:
        info = np.finfo if segs[name].dtype.kind == "f" else np.iinfo
        lo, hi = info(segs[name].dtype).min, info(segs[name].dtype).max
        segs[name] = rng.choice([lo, hi, 0, 1], size=len(segs))
    segs["ts"] = rng.random(len(segs)) * 2e9
    assert seg_rows(segs) == segs.tolist()
    assert seg_rows(segs[::3]) == segs[::3].tolist()  # not contiguous
    assert seg_rows(segs[:0]) == []
    row = seg_rows(segs[:1])[0]
    assert (row[SEG_FRAME], row[SEG_TS], row[SEG_FLAGS], row[SEG_SEQ], row[SEG_INPUT]) == \
        tuple(segs[0][n].item() for n in ("frame", "ts", "flags", "seq", "input"))


def test_reassemble_one_segment():
    assert _reassemble([(100, 5, b"abc", 0.0)], 100) == (b"abc", (5,), 1, 0)
    assert _reassemble([(100, 5, b"abc", 0.0)], None) == (b"abc", (5,), 1, 0)
    assert _reassemble([(100, 5, b"abc", 0.0)], 99) == (b"", (), 0, 0)  # a gap before it
    assert _reassemble([(100, 5, b"abc", 0.0)], 101) == (b"", (), 0, 0)  # before the start
    assert _reassemble([(100, 5, b"abcdef", 0.0)], 100, cap=4) == (b"abcd", (5,), 1, 0)
    assert _reassemble([(100, 5, b"", 0.0)], 100) == (b"", (), 1, 0)
    # the general path, for contrast: a resend, a conflicting resend, and what follows
    pieces = [(U32, 5, b"ab", 0.0), (U32, 6, b"ab", 0.1), (U32, 7, b"xb", 0.2), (1, 8, b"cd", 0.3)]
    assert _reassemble(pieces, U32) == (b"abcd", (5, 8), 3, 1)


def test_flags_text_names_the_nine_flag_bits():
    """One letter per flag set, SYN and ACK first; bits past the ninth are not flags."""
    assert flags_text(0x02) == "S"
    assert flags_text(0x12) == "SA"
    assert flags_text(0x18) == "AP"
    assert flags_text(0x14) == "AR"
    assert flags_text(0x1FF) == "SAPFRUECN"
    assert flags_text(0) == "."
    assert flags_text(0x200) == "."  # beyond the 9 bits: no flag, the same text as none
    assert flags_text(0x212) == flags_text(0x12)


def test_history_letters():
    rows = [  # frame, ts, dir, ttl, ipid, df, flags, seq, ack, win, plen, tos, input
        (1, 0.0, 0, 64, 1, 1, S, 4294967290, 0, 64240, 0, 0, 0),
        (2, 0.1, 1, 50, 0, 1, S | A, 1000, 4294967291, 65535, 0, 0, 0),
        (3, 0.2, 0, 64, 2, 1, A, 4294967291, 1001, 502, 0, 0, 0),
        (4, 0.3, 0, 64, 3, 1, P | A, 4294967291, 1001, 502, 10, 0, 0),  # data across the wrap
        (5, 0.9, 0, 64, 4, 1, P | A, 4294967291, 1001, 502, 10, 0, 0),  # sent again
        (6, 1.0, 1, 50, 0, 1, A, 1001, 5, 0, 0, 0, 0),  # zero window
        (7, 1.1, 1, 50, 0, 1, P | A, 1001, 5, 65535, 20, 0, 0),
        (8, 1.2, 1, 50, 0, 1, F | A, 1021, 5, 65535, 0, 0, 0),
        (9, 1.3, 0, 64, 5, 1, R, 5, 0, 0, 0, 0, 0),
    ]
    segs = np.array(rows, SEG_DTYPE)
    assert history(segs) == "ShADTawdfR"
    assert history(segs[3:]) == "DTawdfR"
    assert history(segs[5:], [1000, None]) == "awdfR"


def test_first_seq_ints_and_arrays():
    assert first_seq(10, S) == 10
    assert first_seq(10, A) == 9
    assert first_seq(0, A) == U32
    got = first_seq(np.array([10, 10, 0], np.uint32), np.array([S, A, P | A], np.uint16))
    assert got.tolist() == [10, 9, U32]


def test_keepalive_is_not_a_retransmission():
    """Wireshark's rule: one byte (or none) just below the next sequence number, no
    SYN/FIN/RST, is a keep-alive; the same byte resent with FIN, or two bytes, is not."""
    rows = [  # frame, ts, dir, ttl, ipid, df, flags, seq, ack, win, plen, tos, input
        (1, 0.0, 0, 64, 1, 1, S, 999, 0, 64240, 0, 0, 0),
        (2, 0.1, 1, 50, 0, 1, S | A, 5000, 1000, 65535, 0, 0, 0),
        (3, 0.2, 0, 64, 2, 1, P | A, 1000, 5001, 502, 10, 0, 0),
        (4, 0.3, 1, 50, 0, 1, A, 5001, 1010, 65535, 0, 0, 0),
        (5, 45.3, 0, 64, 3, 1, A, 1009, 5001, 502, 1, 0, 0),  # keep-alive, one byte (Windows)
        (6, 45.3, 0, 64, 4, 1, A, 1009, 5001, 502, 0, 0, 0),  # keep-alive, no byte (Linux)
        (7, 90.3, 0, 64, 5, 1, A, 1009, 5001, 502, 1, 0, 0),  # another
    ]
    segs = np.array(rows, SEG_DTYPE)
    nrt, hist = _walk(seg_rows(segs), [None, None])
    assert nrt == [0, 0] and hist == "ShDaA"  # the empty probe is a pure ACK (A)
    resent = [*rows[:4], (5, 0.9, 0, 64, 3, 1, P | A, 1008, 5001, 502, 2, 0, 0),  # two bytes: resent data
              (6, 1.0, 0, 64, 4, 1, F | A, 1009, 5001, 502, 1, 0, 0)]  # the last byte again, with FIN
    nrt, hist = _walk(seg_rows(np.array(resent, SEG_DTYPE)), [None, None])
    assert nrt == [2, 0] and hist == "ShDaTF"
