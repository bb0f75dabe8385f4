"""Every container and link-layer variant of one small conversation gives the same attempts.

The conversation (``captures.conversation``): a TCP handshake, a TLS
ClientHello with SNI and a ServerHello, then a DNS query and its answer. Each
variant is written with ``tests/captures.py``; ``forensics.analyze`` must give
the same attempts (kind, name, endpoints, frames, TTLs, start time) for all of
them. The reader is also cross-checked against scapy's ``rdpcap`` and tshark on
the same files (timestamps, lengths, frame numbers).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import captures as C  # noqa: E402
from conftest import validate  # noqa: E402

import forensics  # noqa: E402
from forensics.sources.pcapio import ReadStats, read_batches  # noqa: E402

TSHARK = shutil.which("tshark")
# whole microseconds, so microsecond and nanosecond containers hold the same instants
T0_US_NS = 1_700_000_000_123_456_000
STEP_NS = 1_234_000


def _iso_ns(s: str) -> int:
    t = dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    return (int(t.timestamp()) * 1_000_000 + t.microsecond) * 1000


def signature(report, frame_map: list[int] | None = None, addresses: bool = True) -> list[tuple]:
    """What must not depend on the container or link type, per attempt.

    ``frame_map[i]`` is the frame number of the conversation's packet i+1 in
    this file (pcapng custom blocks shift frame numbers, as in Wireshark); the
    signature is given in conversation packet numbers.
    """
    back = {f: i + 1 for i, f in enumerate(frame_map)} if frame_map else None
    out = []
    for a in report.to_dict()["attempts"]:
        frames = [back[f] for f in a["frames"]] if back else a["frames"]
        ends = (a["client"]["ip"], a["client"]["port"], a["server"]["ip"], a["server"]["port"])
        if not addresses:
            ends = (a["client"]["port"], a["server"]["port"])
        ttls: tuple = ()
        if "tcp" in a:
            ttls = (a["tcp"]["syn"]["ttl"], a["tcp"]["synack"]["ttl"], a["tcp"]["packets"]["client"],
                    a["tcp"]["packets"]["server"], a["tcp"]["payload_bytes"]["client"])
        if "dns" in a:
            ttls = (a["dns"]["query_ttl"],) + tuple((r["ttl"], tuple(x["data"] for x in r["answers"]),
                                                      tuple(x["ttl"] for x in r["answers"]))
                                                     for r in a["dns"]["responses"])
        extra = a.get("tls", {}).get("client_hello", {}).get("sni")
        out.append((a["kind"], a["name"], ends, tuple(frames), ttls, extra, a["verdict"], a["history"]))
    return out


def _starts(report) -> list[int]:
    return [_iso_ns(a["start"]) for a in report.to_dict()["attempts"]]


@pytest.fixture(scope="module")
def conv4():
    return C.conversation(t0_ns=T0_US_NS, step_ns=STEP_NS)


@pytest.fixture(scope="module")
def conv6():
    return C.conversation(v6=True, t0_ns=T0_US_NS, step_ns=STEP_NS)


@pytest.fixture(scope="module")
def baseline4(conv4, tmp_path_factory):
    path = C.write_pcap(tmp_path_factory.mktemp("base") / "base.pcap", C.frames_for(C.DLT_EN10MB, conv4))
    rep = forensics.analyze(str(path))
    validate(rep.to_dict())
    sig = signature(rep)
    # the baseline itself must be what the conversation holds, or every comparison is vacuous
    kinds = sorted((s[0], s[1]) for s in sig)
    assert kinds == [("dns", C.QNAME), ("tls", C.SNI)]
    tls = next(s for s in sig if s[0] == "tls")
    assert tls[3] == (1, 2, 3, 4, 5, 6) and tls[4][:2] == (64, 51) and tls[5] == C.SNI
    dns = next(s for s in sig if s[0] == "dns")
    assert dns[3] == (7, 8) and dns[4] == (64, (60, ("192.0.2.7",), (300,)))
    assert _starts(rep) == [T0_US_NS, T0_US_NS + 6 * STEP_NS]
    return sig


@pytest.fixture(scope="module")
def baseline6(conv6, tmp_path_factory, baseline4):
    path = C.write_pcap(tmp_path_factory.mktemp("base6") / "base6.pcap", C.frames_for(C.DLT_RAW, conv6),
                        linktype=C.DLT_RAW)
    sig = signature(forensics.analyze(str(path)))
    assert [s for s in signature(forensics.analyze(str(path)), addresses=False)] == \
        [s[:2] + ((s[2][1], s[2][3]),) + s[3:] for s in baseline4]
    assert {s[2][0] for s in sig} == {C.CLIENT6}
    return sig


# ------------------------------------------------------------------- link types

LINK_VARIANTS = {
    "ethernet": (C.DLT_EN10MB, {}),
    "dot1q": (C.DLT_EN10MB, {"vlans": [(0x8100, 10)]}),
    "qinq-88a8": (C.DLT_EN10MB, {"vlans": [(0x88A8, 100), (0x8100, 10)]}),
    "qinq-9100": (C.DLT_EN10MB, {"vlans": [(0x9100, 100), (0x8100, 10)]}),
    "sll": (C.DLT_SLL, {}),
    "sll2": (C.DLT_SLL2, {}),
    "raw101": (C.DLT_RAW, {}),
    "raw12": (C.DLT_RAW12, {}),
    "raw14": (C.DLT_RAW14, {}),
    "null-le": (C.DLT_NULL, {"null_endian": "<"}),
    "null-be": (C.DLT_NULL, {"null_endian": ">"}),
    "loop": (C.DLT_LOOP, {}),
}
CONTAINERS = {
    "pcap-us-le": dict(nsec=False, endian="<"),
    "pcap-us-be": dict(nsec=False, endian=">"),
    "pcap-ns-le": dict(nsec=True, endian="<"),
    "pcap-ns-be": dict(nsec=True, endian=">"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("container", list(CONTAINERS))
@pytest.mark.parametrize("link", list(LINK_VARIANTS))
def test_pcap_link_variants_v4(tmp_path, conv4, baseline4, container, link):
    lt, kw = LINK_VARIANTS[link]
    path = C.write_pcap(tmp_path / f"{link}.pcap", C.frames_for(lt, conv4, **kw), linktype=lt,
                        **CONTAINERS[container])
    rep = forensics.analyze(str(path))
    assert signature(rep) == baseline4
    assert _starts(rep) == [T0_US_NS, T0_US_NS + 6 * STEP_NS]
    info = rep.inputs[0]
    assert info.packets == len(conv4) and info.warnings == []
    assert info.decoded["ip"] == len(conv4)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("link,family", [(k, 30) for k in ("ethernet", "dot1q", "qinq-88a8", "sll", "sll2",
                                                             "raw101")]
                         + [(k, f) for k in ("null-le", "null-be", "loop") for f in (24, 28, 30)])
def test_link_variants_v6(tmp_path, conv6, baseline6, link, family):
    """IPv6 over each link; the BSD AF_INET6 value (24, 28, 30) only matters to NULL and LOOP."""
    lt, kw = LINK_VARIANTS[link]
    path = C.write_pcap(tmp_path / f"{link}.pcap", C.frames_for(lt, conv6, v6_family=family, **kw), linktype=lt)
    assert signature(forensics.analyze(str(path))) == baseline6


def test_ipv4_and_ipv6_only_linktypes(tmp_path, conv4, conv6, baseline4, baseline6):
    p4 = C.write_pcap(tmp_path / "v4.pcap", conv4, linktype=C.DLT_IPV4)
    p6 = C.write_pcap(tmp_path / "v6.pcap", conv6, linktype=C.DLT_IPV6, nsec=True)
    assert signature(forensics.analyze(str(p4))) == baseline4
    assert signature(forensics.analyze(str(p6))) == baseline6


@pytest.mark.timeout(30)
@pytest.mark.parametrize("chain", ["hbh", "routing", "dest", "frag", "all"])
@pytest.mark.parametrize("lt", [C.DLT_RAW, C.DLT_EN10MB])
def test_ipv6_extension_headers(tmp_path, baseline6, chain, lt):
    conv = C.conversation(v6=True, ext=C.v6_ext_chain(chain), t0_ns=T0_US_NS, step_ns=STEP_NS)
    # the chain really is in the packets: next header of the fixed header is not TCP/UDP
    assert all(ip[6] not in (6, 17) for _t, ip in conv)
    path = C.write_pcap(tmp_path / f"{chain}.pcap", C.frames_for(lt, conv), linktype=lt)
    rep = forensics.analyze(str(path))
    assert signature(rep) == baseline6
    assert rep.inputs[0].decoded["fragments"] == 0


def test_ipv6_fragments_counted_and_a_datagram_with_a_gap_given_up(tmp_path, conv6):
    """Both fragments are counted; bytes 20-23 of the datagram never came, so it is given up
    (its first fragment read as cut short) and a warning says so."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

    first = bytes(IPv6(src=C.CLIENT6, dst=C.SERVER6) / IPv6ExtHdrFragment(offset=0, m=1, id=9, nh=6)
                  / (b"\x9c\x40\x01\xbb" + bytes(16)))
    later = bytes(IPv6(src=C.CLIENT6, dst=C.SERVER6) / IPv6ExtHdrFragment(offset=3, m=0, id=9, nh=6)
                  / b"tail-bytes-of-a-fragmented-datagram")
    recs = list(conv6) + [(conv6[-1][0] + 1000, first), (conv6[-1][0] + 2000, later)]
    path = C.write_pcap(tmp_path / "frag.pcap", recs, linktype=C.DLT_RAW)
    rep = forensics.analyze(str(path))
    assert rep.inputs[0].decoded["fragments"] == 2 and rep.inputs[0].decoded["reassembled"] == 0
    assert rep.inputs[0].decoded["ip"] == len(recs)
    assert any("1 IP datagrams came in fragments that were not all captured" in w for w in rep.inputs[0].warnings)


# ------------------------------------------------------------------- containers


@pytest.mark.timeout(30)
@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("tsresol", [None, 6, 9, 0x94, 0x9E])
@pytest.mark.parametrize("lt", [C.DLT_EN10MB, C.DLT_SLL2, C.DLT_NULL])
def test_pcapng_single_interface(tmp_path, conv4, baseline4, endian, tsresol, lt):
    w = C.pcapng_simple(C.frames_for(lt, conv4), lt, endian=endian, tsresol=tsresol)
    rep = forensics.analyze(str(w.write(tmp_path / "x.pcapng")))
    assert signature(rep) == baseline4
    # 2^-20 s is coarser than a microsecond: allow one tick
    tol = 1000 if tsresol in (None, 6, 9) else 1000 + (10 ** 9 >> (tsresol & 0x7F))
    for got, want in zip(_starts(rep), [T0_US_NS, T0_US_NS + 6 * STEP_NS]):
        assert abs(got - want) <= tol
    assert rep.inputs[0].warnings == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("gz", [False, True])
def test_pcapng_multi_interface_with_extras(tmp_path, conv4, baseline4, endian, gz):
    w = C.pcapng_multi(conv4, (C.DLT_EN10MB, C.DLT_RAW, C.DLT_SLL, C.DLT_SLL2), endian=endian,
                       tsresols=(None, 9, 0x94, 3 + 0))
    path = w.write(tmp_path / ("m.pcapng.gz" if gz else "m.pcapng"), gz=gz)
    rep = forensics.analyze(str(path))
    validate(rep.to_dict())
    assert w.frames != list(range(1, len(conv4) + 1))  # custom blocks shifted the numbering
    assert signature(rep, w.frames) == baseline4
    info = rep.inputs[0]
    assert info.format == ("pcapng.gz" if gz else "pcapng")
    assert info.packets == len(conv4)
    assert sorted(info.link_types) == ["ethernet", "linux-sll", "linux-sll2", "raw"]
    # exactly the one unknown block type is reported; NRB, ISB, DSB, custom are expected
    assert info.warnings == ["1 pcapng blocks of unknown or unused types were skipped"]


def test_pcapng_sections_of_both_byte_orders(tmp_path, conv4, baseline4):
    frames = C.frames_for(C.DLT_EN10MB, conv4)
    w = C.Pcapng("<").shb()
    w.idb(C.DLT_EN10MB)
    for t, d in frames[:4]:
        w.epb(0, t, d)
    w.shb(endian=">")  # a new section: interface ids start again
    w.idb(C.DLT_RAW, tsresol=9)
    for t, (_t, ip) in zip([t for t, _ in frames[4:]], conv4[4:]):
        w.epb(0, t, ip)
    rep = forensics.analyze(str(w.write(tmp_path / "two.pcapng")))
    assert signature(rep) == baseline4


def test_pcapng_simple_packet_blocks(tmp_path, conv4):
    frames = C.frames_for(C.DLT_EN10MB, conv4)
    w = C.Pcapng().shb()
    w.idb(C.DLT_EN10MB, snaplen=65535)
    for _t, d in frames:
        w.spb(d)
    rep = forensics.analyze(str(w.write(tmp_path / "spb.pcapng")))
    assert sorted((a.kind, a.name) for a in rep.attempts) == [("dns", C.QNAME), ("tls", C.SNI)]


@pytest.mark.parametrize("container", list(CONTAINERS))
def test_gzip_pcap(tmp_path, conv4, baseline4, container):
    path = C.write_pcap(tmp_path / "x.pcap.gz", C.frames_for(C.DLT_SLL, conv4), linktype=C.DLT_SLL, gz=True,
                        **CONTAINERS[container])
    rep = forensics.analyze(str(path))
    assert signature(rep) == baseline4
    assert rep.inputs[0].format == "pcap.gz" and rep.inputs[0].warnings == []


def test_gzip_multi_member(tmp_path, conv4, baseline4):
    import gzip

    data = C.pcap_bytes(C.frames_for(C.DLT_EN10MB, conv4))
    cut = len(data) // 2
    path = tmp_path / "two-members.pcap.gz"
    path.write_bytes(gzip.compress(data[:cut]) + gzip.compress(data[cut:]))
    assert signature(forensics.analyze(str(path))) == baseline4


def test_small_chunks_give_the_same_answer(tmp_path, conv4, baseline4, monkeypatch):
    """Records straddling chunk boundaries are carried over (CHUNK_BYTES tiny)."""
    from forensics.sources import pcapio

    for chunk in (7, 64, 100):
        monkeypatch.setattr(pcapio, "CHUNK_BYTES", chunk)
        p1 = C.write_pcap(tmp_path / "c.pcap", C.frames_for(C.DLT_EN10MB, conv4))
        assert signature(forensics.analyze(str(p1))) == baseline4
        w = C.pcapng_multi(conv4)
        p2 = w.write(tmp_path / "c.pcapng")
        assert signature(forensics.analyze(str(p2)), w.frames) == baseline4
        p3 = w.write(tmp_path / "c.pcapng.gz", gz=True)
        assert signature(forensics.analyze(str(p3)), w.frames) == baseline4
    monkeypatch.setattr(pcapio, "BATCH_RECORDS", 3)
    assert signature(forensics.analyze(str(p1))) == baseline4


# ---------------------------------------------------------- timestamps precision


def test_nanosecond_timestamps_keep_microsecond_precision(tmp_path):
    # packets 1 us apart, at a timestamp with sub-microsecond digits
    t0 = C.T0_NS
    conv = C.conversation(t0_ns=t0, step_ns=1000)
    for name, path in [
        ("pcap-ns", C.write_pcap(tmp_path / "ns.pcap", conv, linktype=C.DLT_RAW, nsec=True)),
        ("pcapng-ns", C.pcapng_simple(conv, C.DLT_RAW, tsresol=9).write(tmp_path / "ns.pcapng")),
    ]:
        rep = forensics.analyze(str(path))
        starts = [a.start for a in rep.attempts]
        assert abs(starts[0] * 1e9 - t0) < 1000, name
        assert abs(starts[1] * 1e9 - (t0 + 6000)) < 1000, name
        iso = [_iso_ns(a["start"]) for a in rep.to_dict()["attempts"]]
        assert all(abs(i - w) <= 500 for i, w in zip(iso, [t0, t0 + 6000])), (name, iso)
        d = rep.to_dict()["attempts"]
        resp = d[1]["dns"]["responses"][0]
        # query at +6 us, response at +7 us: still 1 us apart in the report
        assert _iso_ns(resp["time"]) - iso[1] == 1000, name


# -------------------------------------------------------------- directory input


def test_directory_means_every_capture_below_it_sorted(tmp_path, conv4):
    root = tmp_path / "caps"
    (root / "b" / "deeper").mkdir(parents=True)
    (root / "a").mkdir()
    def fr(i):  # a different client per file, so each file's attempts are its own
        return C.frames_for(C.DLT_EN10MB, C.conversation(client=f"10.0.1.{i}"))

    files = [
        C.write_pcap(root / "z.pcap", fr(1)),
        C.write_pcap(root / "b" / "deeper" / "1.cap", fr(2), nsec=True),
        C.pcapng_simple(fr(3)).write(root / "a" / "x.pcapng"),
        C.write_pcap(root / "b" / "c.pcap.gz", fr(4), gz=True),
    ]
    (root / "README.txt").write_text("not a capture")
    (root / "a" / "notes.pcap").write_bytes(b"hello world, not a capture")
    rep = forensics.analyze(str(root))
    assert [i.path for i in rep.inputs] == sorted(str(f) for f in files)
    assert len(rep.attempts) == 2 * len(files)
    assert sorted({a.input for a in rep.attempts}) == list(range(len(files)))
    by_input = {rep.inputs[a.input].path: a.client.ip for a in rep.attempts}
    assert by_input == {str(f): f"10.0.1.{i}" for i, f in enumerate(files, 1)}
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("x")
    with pytest.raises(forensics.errors.InputError, match="no pcap or pcapng"):
        forensics.analyze(str(empty))


# --------------------------------------------------- reader vs scapy and tshark


def _read_all(path) -> tuple[list[int], list[float], list[int], list[int]]:
    st = ReadStats()
    frames, ts, caps, origs = [], [], [], []
    for b in read_batches(str(path), st):
        frames += b.frame.tolist()
        ts += b.ts.tolist()
        caps += b.caplen.tolist()
        origs += b.origlen.tolist()
    return frames, ts, caps, origs


def _variant_files(tmp_path, conv4, conv6):
    fr = C.frames_for(C.DLT_EN10MB, conv4, vlans=[(0x8100, 5)])
    trunc = [C.Rec(t, d[:60], orig=len(d)) for t, d in fr]  # snaplen-cut records
    multi = C.pcapng_multi(conv4 + conv6)
    return {
        "pcap-us": C.write_pcap(tmp_path / "us.pcap", fr),
        "pcap-ns-be": C.write_pcap(tmp_path / "ns.pcap", fr, nsec=True, endian=">"),
        "pcap-trunc": C.write_pcap(tmp_path / "tr.pcap", trunc, snaplen=60),
        "pcapng-multi": multi.write(tmp_path / "m.pcapng"),
        "pcapng-be-ns": C.pcapng_simple(fr, endian=">", tsresol=9).write(tmp_path / "be.pcapng"),
    }


def test_reader_matches_scapy(tmp_path, conv4, conv6):
    from scapy.utils import rdpcap

    for name, path in _variant_files(tmp_path, conv4, conv6).items():
        frames, ts, caps, origs = _read_all(path)
        pk = rdpcap(str(path))
        assert len(pk) == len(frames), name
        assert caps == [len(p.original) for p in pk], name
        assert origs == [p.wirelen if p.wirelen is not None else len(p.original) for p in pk], name
        for mine, p in zip(ts, pk):
            assert abs(mine - float(p.time)) < 1e-6, name


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_reader_matches_tshark(tmp_path, conv4, conv6):
    for name, path in _variant_files(tmp_path, conv4, conv6).items():
        out = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-e", "frame.number",
                              "-e", "frame.time_epoch", "-e", "frame.cap_len", "-e", "frame.len",
                              "-Y", "ip or ipv6"], capture_output=True, text=True, timeout=60, check=True).stdout
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        frames, ts, caps, origs = _read_all(path)
        assert [int(r[0]) for r in rows] == frames, name
        assert [int(r[2]) for r in rows] == caps, name
        assert [int(r[3]) for r in rows] == origs, name
        for r, mine in zip(rows, ts):
            sec, _, frac = r[1].partition(".")
            want_ns = int(sec) * 10 ** 9 + int((frac + "000000000")[:9])
            assert abs(mine * 1e9 - want_ns) < 1000, (name, r)


# ------------------------------------------- link types decoded through tshark

TSHARK_LINKS = {
    "radiotap": (C.DLT_RADIOTAP, {}),
    "ieee802.11": (C.DLT_IEEE802_11, {}),
    "ppp": (C.DLT_PPP, {}),
    "ppp-hdlc": (C.DLT_PPP_HDLC, {}),
}


def _mpls_frames(conv):
    from scapy.contrib.mpls import MPLS
    from scapy.layers.l2 import Ether

    head = bytes(Ether(src=C.ETH_SRC, dst=C.ETH_DST, type=0x8847) / MPLS(label=100, s=0, ttl=64)
                 / MPLS(label=200, s=1, ttl=64))
    return [(t, head + ip) for t, ip in conv]


def _no_tshark(monkeypatch):
    from forensics.sources import tshark_src

    monkeypatch.delenv("FORENSICS_TSHARK", raising=False)
    real = shutil.which
    monkeypatch.setattr(tshark_src.shutil, "which",
                        lambda name, *a, **k: None if "tshark" in str(name) else real(name, *a, **k))
    assert tshark_src.find_tshark() is None


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
@pytest.mark.parametrize("link", list(TSHARK_LINKS) + ["mpls"])
def test_non_native_link_types_through_tshark(tmp_path, conv4, baseline4, link, monkeypatch):
    monkeypatch.delenv("FORENSICS_TSHARK", raising=False)
    if link == "mpls":
        path = C.write_pcap(tmp_path / "x.pcap", _mpls_frames(conv4), linktype=C.DLT_EN10MB)
    else:
        lt, kw = TSHARK_LINKS[link]
        path = C.write_pcap(tmp_path / "x.pcap", C.frames_for(lt, conv4, **kw), linktype=lt, nsec=True)
    rep = forensics.analyze(str(path))
    assert signature(rep) == baseline4
    assert _starts(rep) == [T0_US_NS, T0_US_NS + 6 * STEP_NS]  # timestamps are the reader's
    info = rep.inputs[0]
    assert info.decoded["via_tshark"] == len(conv4) and info.decoded["link_not_decoded"] == 0
    assert info.warnings == []
    validate(rep.to_dict())


@pytest.mark.parametrize("link", list(TSHARK_LINKS) + ["mpls"])
def test_non_native_link_types_without_tshark_are_counted_and_warned(tmp_path, conv4, link, monkeypatch):
    _no_tshark(monkeypatch)
    if link == "mpls":
        lt = C.DLT_EN10MB
        path = C.write_pcap(tmp_path / "x.pcap", _mpls_frames(conv4), linktype=lt)
    else:
        lt, kw = TSHARK_LINKS[link]
        path = C.write_pcap(tmp_path / "x.pcap", C.frames_for(lt, conv4, **kw), linktype=lt)
    rep = forensics.analyze(str(path))
    assert rep.attempts == []
    info = rep.inputs[0]
    assert info.decoded["link_not_decoded"] == len(conv4) and info.decoded["via_tshark"] == 0
    validate(rep.to_dict())
    (w,) = info.warnings
    assert w.startswith(f"{len(conv4)} packets of link type ") and f"({lt})" in w
    assert "apt install tshark" in w


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_mixed_native_and_tshark_interfaces(tmp_path, conv4, baseline4, monkeypatch):
    monkeypatch.delenv("FORENSICS_TSHARK", raising=False)
    w = C.pcapng_multi(conv4, (C.DLT_EN10MB, C.DLT_RADIOTAP, C.DLT_PPP, C.DLT_SLL))
    rep = forensics.analyze(str(w.write(tmp_path / "mixed.pcapng")))
    assert signature(rep, w.frames) == baseline4
    assert rep.inputs[0].decoded["via_tshark"] == 4  # packets 2, 3, 6, 7 went out on radiotap/PPP

    # and with tshark gone, only the native half is read
    _no_tshark(monkeypatch)
    rep = forensics.analyze(str(w.write(tmp_path / "mixed.pcapng")))
    assert rep.inputs[0].decoded["link_not_decoded"] == 4
    assert sorted(x.split(" were")[0] for x in rep.inputs[0].warnings if "tshark" in x) == [
        "2 packets of link type ppp (9)", "2 packets of link type radiotap (127)"]


def test_tshark_that_fails_is_a_warning(tmp_path, conv4, monkeypatch):
    fake = tmp_path / "tshark"
    fake.write_text("#!/bin/sh\necho 'tshark: something broke' >&2\nexit 2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("FORENSICS_TSHARK", str(fake))
    path = C.write_pcap(tmp_path / "x.pcap", C.frames_for(C.DLT_PPP, conv4), linktype=C.DLT_PPP)
    rep = forensics.analyze(str(path))
    assert rep.attempts == []
    ws = rep.inputs[0].warnings
    assert any("decoding through tshark failed" in w and "something broke" in w for w in ws), ws
    assert any(w.startswith(f"{len(conv4)} packets of link type ppp (9) were not decoded") for w in ws), ws


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_tshark_frames_without_ip_are_not_ip(tmp_path, conv4, monkeypatch):
    """802.11 management frames and PPP LCP are decoded by tshark and carry no IP: not IP, no warning."""
    from scapy.layers.dot11 import Dot11, Dot11Beacon, Dot11Elt, RadioTap

    monkeypatch.delenv("FORENSICS_TSHARK", raising=False)
    beacon = bytes(RadioTap() / Dot11(type=0, subtype=8, addr1="ff:ff:ff:ff:ff:ff", addr2=C.ETH_SRC,
                                      addr3=C.ETH_SRC) / Dot11Beacon() / Dot11Elt(ID=0, info=b"testnet"))
    frames = C.frames_for(C.DLT_RADIOTAP, conv4)
    frames.insert(0, (frames[0][0] - 1000, beacon))
    rep = forensics.analyze(str(C.write_pcap(tmp_path / "b.pcap", frames, linktype=C.DLT_RADIOTAP)))
    info = rep.inputs[0]
    assert info.decoded["not_ip"] == 1 and info.decoded["via_tshark"] == len(conv4)
    assert info.warnings == []
    assert sorted((a.kind, a.name) for a in rep.attempts) == [("dns", C.QNAME), ("tls", C.SNI)]


def test_cli_without_tshark_warns_what_to_install(tmp_path, conv4):
    import os

    path = C.write_pcap(tmp_path / "x.pcap", C.frames_for(C.DLT_RADIOTAP, conv4), linktype=C.DLT_RADIOTAP)
    env = dict(os.environ, FORENSICS_TSHARK="")
    proc = subprocess.run([sys.executable, "-m", "forensics", "analyze", "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    warn = [ln for ln in proc.stderr.splitlines() if ln.startswith("forensics: warning: ")]
    assert len(warn) == 1 and f"{len(conv4)} packets of link type radiotap (127)" in warn[0]
    assert "apt install tshark" in warn[0]


@pytest.mark.timeout(30)
def test_tshark_that_hangs_is_stopped(tmp_path, conv4, monkeypatch):
    from forensics.sources import tshark_src

    fake = tmp_path / "tshark"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("FORENSICS_TSHARK", str(fake))
    monkeypatch.setattr(tshark_src, "RUN_TIMEOUT", 1.0)
    monkeypatch.setattr(tshark_src, "PER_PACKET_TIMEOUT", 0.0)
    path = C.write_pcap(tmp_path / "x.pcap", C.frames_for(C.DLT_PPP, conv4), linktype=C.DLT_PPP)
    rep = forensics.analyze(str(path))
    ws = rep.inputs[0].warnings
    assert any("tshark was stopped after 1 s" in w for w in ws), ws
    assert rep.inputs[0].decoded["link_not_decoded"] == len(conv4)


@pytest.mark.tshark
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_link_headers_written_here_are_what_tshark_reads(tmp_path, conv4, conv6):
    """The oracle for captures.py itself: tshark finds the same IP packets behind every link header."""
    w = C.Pcapng().shb()
    expect = []
    for name, (lt, kw) in LINK_VARIANTS.items():
        for conv in (conv4, conv6):
            if lt in (C.DLT_NULL, C.DLT_LOOP) and conv is conv6:
                fams = (24, 28, 30)
            else:
                fams = (30,)
            for fam in fams:
                iid = w.idb(lt)
                for t, ip in conv:
                    w.epb(iid, t, C.link_wrap(lt, ip, v6_family=fam, **kw))
                    expect.append((name, ip))
    path = w.write(tmp_path / "all-links.pcapng")
    out = subprocess.run([TSHARK, "-n", "-r", str(path), "-T", "fields", "-e", "ip.src", "-e", "ipv6.src",
                          "-e", "ip.ttl", "-e", "ipv6.hlim", "-e", "tcp.srcport", "-e", "udp.srcport",
                          "-e", "tls.handshake.extensions_server_name", "-e", "dns.qry.name"],
                         capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    assert len(out) == len(expect)
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    for line, (name, ip) in zip(out, expect):
        f = line.split("\t")
        pkt = IP(ip) if ip[0] >> 4 == 4 else IPv6(ip)
        src = f[0] or f[1]
        ttl = f[2] or f[3]
        port = f[4] or f[5]
        assert (src, int(ttl), int(port)) == (pkt.src, pkt.ttl if ip[0] >> 4 == 4 else pkt.hlim,
                                             pkt.payload.sport), (name, line)
        if f[6]:
            assert f[6] == C.SNI
        if f[7]:
            assert f[7] == C.QNAME
