"""The compiled record walk (forensics/sources/_walk.pyx) reads exactly as the Python one.

Each capture is read twice, with ``pcapio.compiled_walk`` set to the compiled
module and to None (the Python walk), and the two must give the same batches
(frames, timestamps, offsets, captured and original lengths, link types), the
same ``ReadStats`` (hence the same warnings) and the same error for a file that
is not a capture. The files: every capture of the shared corpus, the samples in
``pcaps/``, and hand-made ones with the damage the walk has to stop or count
at, read with tiny chunks and batches so that records straddle chunk and batch
boundaries.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import captures as C  # noqa: E402
from conftest import COMPILED_WALK as COMPILED  # noqa: E402
from conftest import CORPUS, ROOT, captures_under, need_compiled, need_corpus  # noqa: E402

from forensics.errors import InputError  # noqa: E402
from forensics.sources import pcapio  # noqa: E402

#: What running without the compiled walk means here (the reason a test skips).
WITHOUT = "nothing to compare the Python walk with"
COLUMNS = ("frame", "ts", "off", "caplen", "origlen", "linktype")
#: Chunk sizes that put chunk boundaries inside record headers, data and blocks.
SMALL_CHUNKS = (7, 16, 33, 100)
#: Batch sizes that end batches in the middle of a chunk and of a compiled run.
SMALL_BATCHES = (1, 2, 3)


class _Counting:
    """The compiled module, counting the calls that went through it."""

    def __init__(self, mod) -> None:
        self.calls = 0
        self._mod = mod

    def __getattr__(self, name):
        fn = getattr(self._mod, name)

        def counted(*args):
            self.calls += 1
            return fn(*args)

        return counted


def _read(path: Path, walk, monkeypatch) -> tuple:
    monkeypatch.setattr(pcapio, "compiled_walk", walk)
    stats = pcapio.ReadStats()
    batches = []
    try:
        for b in pcapio.read_batches(str(path), stats):
            batches.append(tuple(np.array(getattr(b, c)) for c in COLUMNS))
    except InputError as exc:
        return batches, stats, str(exc)
    return batches, stats, None


def assert_same(path: Path, monkeypatch) -> tuple:
    """Read ``path`` both ways; assert everything is equal; return (compiled calls, stats)."""
    need_compiled(WITHOUT)
    counting = _Counting(COMPILED)
    fast = _read(path, counting, monkeypatch)
    slow = _read(path, None, monkeypatch)
    assert fast[2] == slow[2], "different errors"
    assert len(fast[0]) == len(slow[0]), "different numbers of batches"
    for i, (a, b) in enumerate(zip(fast[0], slow[0])):
        for col, x, y in zip(COLUMNS, a, b):
            assert x.dtype == y.dtype, (i, col)
            # bit for bit, timestamps included (tobytes: NaN-proof and -0.0-proof)
            assert x.tobytes() == y.tobytes(), f"batch {i} column {col} differs"
    assert fast[1] == slow[1], "different ReadStats"
    assert fast[1].warnings() == slow[1].warnings()
    return counting.calls, slow[1]


# ------------------------------------------------------------- real captures


CORPUS_FILES = captures_under(CORPUS)
SAMPLE_FILES = captures_under(ROOT / "pcaps")


@pytest.mark.corpus
@pytest.mark.parametrize("path", CORPUS_FILES or [None],
                         ids=[str(p.relative_to(CORPUS)) for p in CORPUS_FILES] or ["no-corpus"])
def test_corpus_reads_the_same(path, monkeypatch):
    need_corpus()
    calls, stats = assert_same(path, monkeypatch)
    assert calls > 0 or stats.records == 0


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[str(p.relative_to(ROOT / "pcaps")) for p in SAMPLE_FILES])
def test_samples_read_the_same(path, monkeypatch):
    calls, stats = assert_same(path, monkeypatch)
    assert calls > 0 and stats.records > 0


def test_samples_are_there():
    assert len(SAMPLE_FILES) >= 20, "the samples in pcaps/ are missing: the comparison above is vacuous"


# ------------------------------------------------------------- hand-made pcap


def _records(nsec: bool) -> list:
    """Records of many lengths (zero included), timestamps going back once, one caplen > origlen."""
    recs = []
    for i in range(40):
        data = bytes(range(256))[: (i * 37) % 200]  # 0, 37, 74, ... bytes
        recs.append(C.Rec(C.T0_NS + i * 1_000_000, data))
    recs[5] = C.Rec(C.T0_NS - 5_000_000_000, recs[5].data)  # backwards
    recs[9] = C.Rec(recs[9].ts_ns, recs[9].data, orig=len(recs[9].data) - 1)  # caplen > origlen
    recs[11] = C.Rec(recs[11].ts_ns, b"")  # zero-length record
    return recs


PCAP_KINDS = [(e, ns) for e in ("<", ">") for ns in (False, True)]
PCAP_IDS = [f"{'big' if e == '>' else 'little'}-{'ns' if ns else 'us'}" for e, ns in PCAP_KINDS]


def _pcap(endian: str, nsec: bool, records=None, snaplen: int = 65535) -> bytes:
    return C.pcap_bytes(records if records is not None else _records(nsec), nsec=nsec, endian=endian,
                        snaplen=snaplen)


def _check_chunks(tmp_path: Path, data: bytes, monkeypatch, name: str = "x.pcap") -> list:
    """assert_same at the default chunk and batch sizes, then at tiny ones; the stats of each."""
    path = C.write_bytes(tmp_path / name, data)
    out = [assert_same(path, monkeypatch)[1]]
    for chunk in SMALL_CHUNKS:
        monkeypatch.setattr(pcapio, "CHUNK_BYTES", chunk)
        out.append(assert_same(path, monkeypatch)[1])
    monkeypatch.setattr(pcapio, "CHUNK_BYTES", 64)
    for batch in SMALL_BATCHES:
        monkeypatch.setattr(pcapio, "BATCH_RECORDS", batch)
        out.append(assert_same(path, monkeypatch)[1])
    monkeypatch.undo()
    return out


@pytest.mark.parametrize("endian,nsec", PCAP_KINDS, ids=PCAP_IDS)
def test_pcap_whole(tmp_path, monkeypatch, endian, nsec):
    for st in _check_chunks(tmp_path, _pcap(endian, nsec), monkeypatch):
        assert st.records == 40 and st.backwards_ts == 1 and st.truncated_records == 1
        assert st.stopped_at is None and st.trailing_bytes == 0


@pytest.mark.parametrize("endian,nsec", PCAP_KINDS, ids=PCAP_IDS)
def test_pcap_cut_anywhere_in_the_last_records(tmp_path, monkeypatch, endian, nsec):
    """Cut inside the last two records' headers and data, at every byte."""
    data = _pcap(endian, nsec)
    last = len(C.pcap_record(_records(nsec)[-1], nsec=nsec, endian=endian))
    before = len(C.pcap_record(_records(nsec)[-2], nsec=nsec, endian=endian))
    start, end = len(data) - last - before, len(data) - last  # where the last two records start
    for cut in range(start, len(data)):
        path = C.write_bytes(tmp_path / "cut.pcap", data[:cut])
        st = assert_same(path, monkeypatch)[1]
        whole = 38 if cut < end else 39
        assert (st.records, st.trailing_bytes) == (whole, cut - (start if cut < end else end))
        monkeypatch.setattr(pcapio, "CHUNK_BYTES", 33)
        assert_same(path, monkeypatch)
        monkeypatch.undo()


@pytest.mark.parametrize("endian,nsec", PCAP_KINDS, ids=PCAP_IDS)
def test_pcap_impossible_length_stops(tmp_path, monkeypatch, endian, nsec):
    recs = _records(nsec)
    recs[20] = C.Rec(recs[20].ts_ns, b"\x01" * 8, incl=pcapio.MAX_CAPLEN + 1)
    for st in _check_chunks(tmp_path, _pcap(endian, nsec, recs), monkeypatch):
        assert st.records == 20 and st.stopped_at is not None
        assert f"claims {pcapio.MAX_CAPLEN + 1} captured bytes" in st.stop_reason


def test_pcap_largest_possible_record_and_snaplen(tmp_path, monkeypatch):
    """A record of exactly MAX_CAPLEN bytes is read; beyond the snaplen it is counted as truncated."""
    recs = _records(False)[:5] + [C.Rec(C.T0_NS + 10**9, b"\x02" * pcapio.MAX_CAPLEN)] + _records(False)[5:8]
    path = C.write_bytes(tmp_path / "big.pcap", _pcap("<", False, recs, snaplen=1500))
    st = assert_same(path, monkeypatch)[1]
    assert st.records == 9 and st.stopped_at is None and st.truncated_records >= 1


def test_pcap_header_only_and_short_header(tmp_path, monkeypatch):
    assert assert_same(C.write_bytes(tmp_path / "h.pcap", _pcap("<", False, [])), monkeypatch)[1].records == 0
    path = C.write_bytes(tmp_path / "short.pcap", _pcap("<", False)[:20])
    need_compiled(WITHOUT)
    err = _read(path, COMPILED, monkeypatch)[2]
    assert err is not None and err == _read(path, None, monkeypatch)[2]


def test_pcap_gzip_cut(tmp_path, monkeypatch):
    import gzip

    data = gzip.compress(_pcap(">", True))
    assert_same(C.write_bytes(tmp_path / "x.pcap.gz", data[: len(data) * 2 // 3]), monkeypatch)


# ------------------------------------------------------------- hand-made pcapng


def _pcapng(endian: str = "<") -> C.Pcapng:
    pkts = [(t, ip) for t, ip in C.conversation(t0_ns=C.T0_NS, step_ns=1_000_000)]
    return C.pcapng_multi(pkts * 3, endian=endian)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_multi_interface(tmp_path, monkeypatch, endian):
    w = _pcapng(endian)
    for st in _check_chunks(tmp_path, w.bytes(), monkeypatch, "m.pcapng"):
        assert st.records == len(w.frames) and st.skipped_blocks > 0


def test_pcapng_damage_the_compiled_walk_hands_back(tmp_path, monkeypatch):
    """Blocks the compiled run stops at: unknown interface, lengths, SPB, ts, a second section."""
    w = C.Pcapng("<").shb()
    a = w.idb(C.DLT_RAW)
    b = w.idb(C.DLT_RAW, tsresol=9)
    coarse = w.idb(C.DLT_RAW, tsresol=0)  # one tick a second: a large tick count is past year 9999
    ip = C.conversation()[0][1]
    for i in range(6):
        w.epb(a if i % 2 else b, C.T0_NS + i * 1000, ip)
    w.epb(a, C.T0_NS - 10**9, ip)  # backwards
    w.epb(coarse, 0, ip, ticks=2**62)  # past MAX_TS
    w.epb(a, C.T0_NS, ip)
    w.epb(7, C.T0_NS, ip)  # an interface never described
    w.epb(a, C.T0_NS, ip, incl=len(ip) + 400)  # claims more than its block holds
    w.epb(a, C.T0_NS, ip, orig=len(ip) - 1)  # caplen > origlen, by one byte
    w.spb(ip)
    w.epb(b, C.T0_NS + 5, ip)
    w.custom()
    w.shb(endian=">")  # a new section: interfaces restart, other byte order
    w.epb(0, C.T0_NS, ip)  # no interface yet in this section
    c = w.idb(C.DLT_RAW, tsresol=0x94)
    for i in range(5):
        w.epb(c, C.T0_NS + i, ip)
    for st in _check_chunks(tmp_path, w.bytes(), monkeypatch, "d.pcapng"):
        assert st.records == len(w.frames) - 2  # two on undescribed interfaces
        assert st.bad_interface == 2 and st.bad_ts == 1 and st.truncated_records == 2
        assert st.backwards_ts >= 1 and st.stopped_at is None


def test_pcapng_first_packet_past_year_9999(tmp_path, monkeypatch):
    """A bad timestamp with no packet before it: the timestamp used is 0, not the -1 start value."""
    w = C.Pcapng(">").shb()
    coarse = w.idb(C.DLT_RAW, tsresol=0)
    ip = C.conversation()[0][1]
    w.epb(coarse, 0, ip, ticks=2**62)
    w.epb(coarse, C.T0_NS, ip)
    path = w.write(tmp_path / "ts.pcapng")
    st = assert_same(path, monkeypatch)[1]
    assert st.bad_ts == 1 and st.records == 2
    assert list(_read(path, None, monkeypatch)[0][0][1]) == [0.0, C.T0_NS // 10**9]


@pytest.mark.parametrize("damage", ["trailer", "length-not-4", "length-huge", "length-small"])
def test_pcapng_bad_block_stops(tmp_path, monkeypatch, damage):
    w = _pcapng()
    ip = C.conversation()[0][1]
    body = struct.pack("<IIIII", 0, 0, 0, len(ip), len(ip)) + C._pad4(ip)
    total = 12 + len(body)
    length, trailer = {"trailer": (total, total + 4), "length-not-4": (total + 2, total + 2),
                       "length-huge": (pcapio.MAX_BLOCK + 4, pcapio.MAX_BLOCK + 4),
                       "length-small": (28, 28)}[damage]
    w.block(6, body, length=length, trailer=trailer)
    w.epb(0, C.T0_NS, ip)
    for st in _check_chunks(tmp_path, w.bytes(), monkeypatch, "b.pcapng"):
        assert st.stopped_at is not None and st.records == len(w.frames) - 1  # the packet after it


def test_pcapng_cut_anywhere_in_the_last_blocks(tmp_path, monkeypatch):
    data = _pcapng().bytes()
    for cut in range(len(data) - 300, len(data)):
        path = C.write_bytes(tmp_path / "cut.pcapng", data[:cut])
        assert_same(path, monkeypatch)
        monkeypatch.setattr(pcapio, "CHUNK_BYTES", 100)
        assert_same(path, monkeypatch)
        monkeypatch.undo()


def test_pcapng_bad_first_block_raises_the_same(tmp_path, monkeypatch):
    need_compiled(WITHOUT)
    good = _pcapng().bytes()
    for name, data in [("cut", good[:20]), ("blen", good[:4] + b"\xff\xff\x00\x00" + good[8:])]:
        path = C.write_bytes(tmp_path / f"{name}.pcapng", data)
        err = _read(path, COMPILED, monkeypatch)[2]
        assert err is not None and err == _read(path, None, monkeypatch)[2]


# ------------------------------------------------------------- selection


def test_pure_walk_variable_forces_the_python_walk():
    env = {**os.environ, "FORENSICS_PURE_WALK": "1", "PYTHONPATH": str(ROOT)}
    code = "from forensics.sources import pcapio; print(pcapio.compiled_walk is None)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    if COMPILED is not None:
        env.pop("FORENSICS_PURE_WALK")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"


def test_stop_codes_agree():
    need_compiled(WITHOUT)
    assert (COMPILED.WALK_FULL, COMPILED.WALK_MORE, COMPILED.WALK_BAD) == \
        (pcapio.WALK_FULL, pcapio.WALK_MORE, pcapio.WALK_BAD)
    assert len({pcapio.WALK_FULL, pcapio.WALK_MORE, pcapio.WALK_BAD}) == 3
