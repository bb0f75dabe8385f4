"""The compiled header decoder (``_walk.decode_rows``) gives ``decode_numpy``'s rows, byte for byte.

``decode.decode`` runs the compiled decoder when the record walk is built; the
numpy one is the reference. Every row is compared whole (``tobytes``): the fields
of good packets, the status of bad ones, and what the numpy gathers read past a
damaged header (they clip to the buffer's ends; so does the compiled one). The
inputs: packets of every link type and encapsulation the decoder knows, built
with scapy, then cut, damaged and mixed at random; arbitrary bytes; the samples
in ``pcaps/``, the shared corpus and the merged public traces.
"""

from __future__ import annotations

import importlib
import random
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import CORPUS, MERGED, ROOT, captures_under, need_compiled, need_corpus, need_merged  # noqa: E402

from forensics.sources import pcapio  # noqa: E402

dec = importlib.import_module("forensics.sources.decode")

WITHOUT = "nothing to compare the numpy decoder with"
#: Locally administered MAC addresses for the frames built here (named: scapy would ask ARP for a missing one).
MAC = "02:00:00:00:00:02"
SRC_MAC = "02:00:00:00:00:01"


def _need() -> None:
    need_compiled(WITHOUT)
    if dec.compiled_decode is None:
        pytest.skip("the compiled walk is built from an older _walk.pyx without decode_rows "
                    "(pip install -e . rebuilds it); " + WITHOUT)


def _both(buf, frame, ts, off, caplen, linktype, origlen) -> tuple[np.ndarray, np.ndarray]:
    ref = dec.decode_numpy(buf, frame, ts, off, caplen, linktype, origlen)
    got = dec.decode(buf, frame, ts, off, caplen, linktype, origlen)
    return ref, got


def assert_rows_equal(ref: np.ndarray, got: np.ndarray, what: str) -> None:
    assert ref.dtype == got.dtype and len(ref) == len(got), what
    if ref.tobytes() == got.tobytes():
        return
    for name in dec.PKT_DTYPE.names:
        bad = np.flatnonzero(ref[name] != got[name])
        if len(bad):
            i = int(bad[0])
            raise AssertionError(f"{what}: field {name} differs in {len(bad)} rows; row {i}: "
                                 f"numpy {ref[i]!r}, compiled {got[i]!r}")
    raise AssertionError(f"{what}: the rows differ")


def _chain(first, layers):
    for layer in layers:
        first = first / layer
    return first


def _frames() -> list[tuple[int, bytes]]:
    """(link type, frame) for each encapsulation and transport the decoder reads."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                    IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
    from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether
    from scapy.layers.ppp import PPP, PPPoE
    from scapy.packet import Raw

    v4 = [IP(src="192.0.2.1", dst="198.51.100.2", ttl=57, id=4242, flags="DF") / TCP(sport=40000, dport=443,
                                                                                      flags="SA", seq=7, ack=9)
          / Raw(b"x" * 30),
          IP(src="192.0.2.1", dst="198.51.100.2", options=b"\x01" * 8) / UDP(sport=53, dport=5353) / Raw(b"q" * 12),
          IP(src="203.0.113.9", dst="192.0.2.1", ttl=250) / ICMP(type=3, code=4) / Raw(b"e" * 28),
          IP(src="192.0.2.1", dst="198.51.100.2", flags="MF", frag=0) / UDP() / Raw(b"f" * 40),
          IP(src="192.0.2.1", dst="198.51.100.2", frag=100) / Raw(b"g" * 40),
          IP(src="192.0.2.1", dst="198.51.100.2", proto=47) / Raw(b"gre")]
    v6 = [IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=60, tc=0xB8) / TCP(dport=80, flags="S",
                                                                               options=[("MSS", 1440)]),
          IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=53) / Raw(b"d" * 20),
          IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(),
          IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(),
          IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrRouting() / UDP() / Raw(b"r" * 9),
          IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(m=1) / UDP() / Raw(b"h" * 16),
          IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(offset=20) / Raw(b"i" * 16),
          IPv6(src="2001:db8::1", dst="2001:db8::2", nh=51) / Raw(bytes([6, 1, 0, 0]) + b"\0" * 8) / TCP(),
          _chain(IPv6(src="2001:db8::1", dst="2001:db8::2"), [IPv6ExtHdrDestOpt() for _ in range(9)]) / TCP(),
          _chain(IPv6(src="2001:db8::1", dst="2001:db8::2"), [IPv6ExtHdrDestOpt() for _ in range(8)]) / TCP(),
          _chain(IPv6(src="2001:db8::1", dst="2001:db8::2"), [IPv6ExtHdrDestOpt() for _ in range(7)]) / UDP()]
    ips = [bytes(p) for p in v4 + v6]
    out: list[tuple[int, bytes]] = []
    for ip in ips:
        et = b"\x08\x00" if ip[0] >> 4 == 4 else b"\x86\xdd"
        fam_le = (2 if ip[0] >> 4 == 4 else 30).to_bytes(4, "little")
        fam_be = (2 if ip[0] >> 4 == 4 else 24).to_bytes(4, "big")
        out += [(1, bytes(Ether(src=SRC_MAC, dst=MAC))[:12] + et + ip),
                (1, bytes(Ether(src=SRC_MAC, dst=MAC) / Dot1Q(vlan=7))[:16] + et + ip),
                (1, bytes(Ether(src=SRC_MAC, dst=MAC) / Dot1AD(vlan=7) / Dot1Q(vlan=8))[:20] + et + ip),
                (1, bytes(Ether(src=SRC_MAC, dst=MAC, type=0x8864) / PPPoE(sessionid=3)
                          / PPP(proto=0x21 if et == b"\x08\x00" else 0x57)) + ip),
                (113, bytes(CookedLinux(proto=0x0800 if et == b"\x08\x00" else 0x86DD)) + ip),
                (276, et + b"\0\0" + b"\0\0\0\x02" + b"\0\x01\x00\x06" + b"\x02" * 8 + ip),
                (101, ip), (12, ip), (14, ip), (228, ip), (229, ip),
                (0, fam_le + ip), (0, fam_be + ip), (108, fam_be + ip)]
    out += [(1, bytes(Ether(src=SRC_MAC, dst=MAC, type=0x8847)) + b"\0\x01\x01\x40" + ips[0]),  # MPLS: left to tshark
            (1, bytes(Ether(src=SRC_MAC, dst=MAC, type=0x0806)) + b"\0" * 28),  # ARP: not IP
            (9, b"\xff\x03\x00\x21" + ips[0]),  # PPP: a link type not decoded here
            (105, b"\0" * 40)]
    return out


def _batch(records: list[tuple[int, bytes, int, int]]):
    """The columns ``decode`` takes for records of (link type, bytes, captured length, length on the wire)."""
    buf = bytearray()
    offs = []
    for _lt, data, _cap, _orig in records:
        buf += b"\xa5" * 16  # a record header's place: what the numpy gathers may read past a record
        offs.append(len(buf))
        buf += data
    n = len(records)
    return (np.frombuffer(bytes(buf), np.uint8), np.arange(1, n + 1, dtype=np.int64),
            np.linspace(1.7e9, 1.7e9 + n, n), np.asarray(offs, np.int64),
            np.asarray([min(r[2], len(r[1])) for r in records], np.int32),
            np.asarray([r[0] for r in records], np.int32), np.asarray([r[3] for r in records], np.int64))


def test_every_encapsulation_whole_cut_and_damaged():
    _need()
    rng = random.Random(20261124)
    base = _frames()
    records = []
    for lt, frame in base:
        records.append((lt, frame, len(frame), len(frame)))
        for cut in range(0, len(frame), max(1, len(frame) // 23)):  # every header cut short somewhere
            records.append((lt, frame[:cut], cut, len(frame)))
    for _ in range(6000):  # damaged: bytes flipped in the headers, lengths that lie, other link types
        lt, frame = rng.choice(base)
        data = bytearray(frame)
        for _k in range(rng.randint(1, 4)):
            data[rng.randrange(min(len(data), 80))] = rng.randrange(256)
        cap = rng.choice([len(data), rng.randrange(len(data) + 1)])
        orig = rng.choice([len(data), cap, rng.randrange(1 << 32), 0])
        if rng.random() < 0.05:
            lt = rng.choice([0, 1, 12, 101, 108, 113, 276, 9, 147, -1])
        records.append((lt, bytes(data[:cap]), cap, orig))
    rng.shuffle(records)
    cols = _batch(records)
    ref, got = _both(*cols)
    assert_rows_equal(ref, got, "scapy's packets, cut and damaged")
    assert_rows_equal(dec.decode_numpy(*cols[:6], None), dec.decode(*cols[:6], None), "without origlen")
    # the packets came out as meant: some of each status, and the good ones read right
    assert set(np.unique(ref["status"]).tolist()) == {dec.ST_OK, dec.ST_NOT_IP, dec.ST_BAD_IP, dec.ST_BAD_L4,
                                                     dec.ST_LINK, dec.ST_FRAG}
    assert {4, 6} <= set(ref["ipver"].tolist())


def test_arbitrary_bytes():
    _need()
    rng = np.random.default_rng(7)
    for lt in (0, 1, 12, 101, 108, 113, 276, 228):
        n = 4000
        caps = rng.integers(0, 120, n).astype(np.int32)
        offs = np.concatenate([[0], np.cumsum(caps[:-1].astype(np.int64) + 3)])
        buf = rng.integers(0, 256, int(offs[-1] + caps[-1] + 3), dtype=np.uint8)
        buf[offs[rng.random(n) < 0.5]] = 0x45  # half of them start like IPv4, the rest anything
        lts = np.full(n, lt, np.int32)
        origs = caps.astype(np.int64) + rng.integers(0, 3, n)
        ref, got = _both(buf, np.arange(n, dtype=np.int64), np.zeros(n), offs, caps, lts, origs)
        assert_rows_equal(ref, got, f"arbitrary bytes, link type {lt}")


def test_edges():
    _need()
    empty = np.zeros(0, np.uint8)
    for n in (0, 3):  # no records; records with no bytes in an empty buffer
        cols = (empty, np.arange(n, dtype=np.int64), np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int32),
                np.ones(n, np.int32), np.zeros(n, np.int64))
        ref, got = _both(*cols)
        assert_rows_equal(ref, got, f"{n} records, empty buffer")
    # columns of other integer types are taken as decode's callers give them
    cols = _batch([(101, bytes(range(60)), 60, 60)])
    odd = (cols[0], cols[1].astype(np.int32), cols[2].astype(np.float32).astype(np.float64), cols[3].astype(np.int32),
           cols[4].astype(np.int64), cols[5].astype(np.int64), cols[6])
    assert_rows_equal(dec.decode_numpy(*cols), dec.decode(*odd), "other column types")


def test_the_row_layout_is_the_dtype():
    """The compiled rows are PKT_DTYPE's; a dtype that changed would turn the compiled decoder off."""
    _need()
    walk = importlib.import_module("forensics.sources._walk")
    assert walk.PKT_LAYOUT == dec._layout()
    assert walk.PKT_LAYOUT[-1] == ("itemsize", dec.PKT_DTYPE.itemsize, "")


def _files() -> list[Path]:
    return captures_under(ROOT / "pcaps") + captures_under(CORPUS)


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(p.parents[1])))
def test_real_captures(path):
    _need()
    if CORPUS in path.parents:
        need_corpus()
    rows, records = _same_file(path)
    assert rows == records > 0, f"{path}: {rows} rows compared of {records} records"


def test_merged_public_traces():
    _need()
    need_merged()
    rows, records = _same_file(MERGED)
    assert rows == records > 100_000


def _same_file(path: Path) -> tuple[int, int]:
    """The rows compared (each batch of ``path`` decoded both ways, equal), and the records read."""
    stats = pcapio.ReadStats()
    rows = 0
    for raw in pcapio.read_batches(str(path), stats):
        ref, got = _both(raw.buf, raw.frame, raw.ts, raw.off, raw.caplen, raw.linktype, raw.origlen)
        assert_rows_equal(ref, got, str(path))
        rows += len(ref)
    return rows, stats.records
