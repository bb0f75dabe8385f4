"""The router of ``-j N`` (``_walk.route``) gives each record the part the reassembler gives its flow.

With N parts, each part decodes only the records the router gives it and the
ones it gives no part (-1). A record given to the wrong part is lost: no part
would reassemble it. So, record by record, on every capture of the shared
corpus, the samples and hand-made packets:

- a record the router gives a part is one ``decode`` finds whole (status OK),
  TCP or UDP, and the reassembler's own partition (``Reassembler._mine``,
  ``_mine_udp``) puts it in that part and in no other;
- every plain TCP/UDP packet (no fragment, no IPv6 extension header, Ethernet,
  SLL or SLL2 with up to two VLAN tags and maybe a PPPoE session header, or raw
  IP) is given a part: otherwise the
  router would save nothing and the test above would hold for want of cases.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE

sys.path.insert(0, str(Path(__file__).resolve().parent))

import captures as C  # noqa: E402
from conftest import COMPILED_WALK as COMPILED  # noqa: E402
from conftest import CORPUS, ROOT, captures_under, need_compiled, need_corpus  # noqa: E402

from forensics.reassembly.engine import Reassembler, _canonical_keys, _mix, _mix_int  # noqa: E402
from forensics.sources import pcapio  # noqa: E402
from forensics.sources.decode import ST_OK, decode  # noqa: E402

#: What running without the compiled walk means here (the reason a test skips).
WITHOUT = "-j N decodes every record in every part without it"
PARTS = (2, 3, 7)
#: Locally administered MACs: frames written to a file, never sent.
MAC_C, MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"
#: Where the network header of a plain packet starts, from the record's start, per link
#: type: after the link header, 0-2 VLAN tags (4 bytes each) and maybe PPPoE (8 bytes).
_TYPED = {1: 14, 113: 16, 276: 20}
PLAIN_L3 = {**{lt: tuple(sorted({h + 4 * tags + pppoe for tags in (0, 1, 2) for pppoe in (0, 8)}))
               for lt, h in _TYPED.items()},
            101: (0,), 12: (0,), 14: (0,), 228: (0,), 229: (0,)}


def _engine_parts(rows: np.ndarray, buf: np.ndarray, nparts: int) -> np.ndarray:
    """Per row, the parts whose reassembler keeps it (a bool per part)."""
    ok = rows["status"] == ST_OK
    tcp = ok & (rows["proto"] == 6)
    udp = ok & (rows["proto"] == 17)
    mine = np.zeros((nparts, len(rows)), bool)
    for p in range(nparts):
        eng = Reassembler(lambda items: None, part=p, nparts=nparts)
        t = np.flatnonzero(tcp)
        if len(t):
            mine[p, t] = eng._mine(_canonical_keys(rows[t]))
        mine[p] |= udp & eng._mine_udp(rows, buf, udp)
    return mine


def check_file(path: Path) -> tuple[int, int]:
    """Check every record of ``path``; return (records given a part, records)."""
    need_compiled(WITHOUT)
    routed = total = 0
    stats = pcapio.ReadStats()
    try:
        batches = list(pcapio.read_batches(str(path), stats))
    except Exception:  # an unreadable file has nothing to route
        return 0, 0
    for raw in batches:
        rows = decode(raw.buf, raw.frame, raw.ts, raw.off, raw.caplen, raw.linktype, raw.origlen)
        ok = rows["status"] == ST_OK
        transport = ok & np.isin(rows["proto"], (6, 17))
        lt = raw.linktype
        l3 = rows["l3"] - raw.off
        plain = transport & (rows["frag"] == 0) & ((rows["ipver"] == 4) | (rows["l4"] - rows["l3"] == 40))
        plain &= np.array([int(x) in PLAIN_L3.get(int(t), ()) for t, x in zip(lt.tolist(), l3.tolist())], bool)
        for n in PARTS:
            dest = COMPILED.route(raw.buf, raw.off, raw.caplen, raw.linktype, n)
            assert dest.dtype == np.int16 and len(dest) == len(raw)
            given = dest >= 0
            assert not (given & ~transport).any(), \
                f"{path.name}: frames {rows['frame'][given & ~transport][:5]} given a part but not whole TCP/UDP"
            mine = _engine_parts(rows, raw.buf, n)
            idx = np.flatnonzero(given)
            assert (mine[dest[idx], idx]).all(), f"{path.name}: a record given a part its flow is not in (N={n})"
            assert (mine[:, idx].sum(axis=0) == 1).all()
            missed = plain & ~given
            assert not missed.any(), f"{path.name}: plain TCP/UDP frames {rows['frame'][missed][:5]} not routed"
        routed += int(given.sum())  # with the last N: which records get a part does not depend on N
        total += len(raw)
    return routed, total


CORPUS_FILES = captures_under(CORPUS)
SAMPLE_FILES = captures_under(ROOT / "pcaps")


@pytest.mark.corpus
@pytest.mark.parametrize("path", CORPUS_FILES or [None],
                         ids=[str(p.relative_to(CORPUS)) for p in CORPUS_FILES] or ["no-corpus"])
def test_corpus_routes_like_the_reassembler(path):
    need_corpus()
    check_file(path)


def test_samples_route_like_the_reassembler():
    routed = total = 0
    for path in SAMPLE_FILES:
        r, t = check_file(path)
        routed += r
        total += t
    assert total > 1000 and routed > total // 2, (routed, total)


def _packets() -> list:
    """Packets the router must get right or leave to every part: both address families,
    both directions, DNS queries and responses, VLAN tags, PPPoE, damage and fragments."""
    dns_q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    dns_r = b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00"
    pk = []
    for k in range(40):
        c4, s4 = f"192.0.2.{k + 1}", f"203.0.113.{(7 * k) % 250 + 1}"
        c6, s6 = f"2001:db8::{k + 1:x}", f"2001:db8:1::{(7 * k) % 250 + 1:x}"
        for ip in (IP(src=c4, dst=s4), IPv6(src=c6, dst=s6)):
            back = ip.__class__(src=ip.dst, dst=ip.src)
            pk.append(Ether(src=MAC_C, dst=MAC_S) / ip / TCP(sport=40000 + k, dport=443, flags="S"))
            pk.append(Ether(src=MAC_C, dst=MAC_S) / back / TCP(sport=443, dport=40000 + k, flags="SA"))
            pk.append(Ether(src=MAC_C, dst=MAC_S) / Dot1Q(vlan=7) / ip / TCP(sport=40000 + k, dport=443, flags="A"))
            pk.append(Ether(src=MAC_C, dst=MAC_S) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / back / TCP(sport=443, dport=40000 + k, flags="A"))
            pk.append(Ether(src=MAC_C, dst=MAC_S) / ip / UDP(sport=30000 + k, dport=53) / dns_q)
            pk.append(Ether(src=MAC_C, dst=MAC_S) / back / UDP(sport=53, dport=30000 + k) / dns_r)
            pk.append(Ether(src=MAC_C, dst=MAC_S) / back / UDP(sport=53, dport=30000 + k) / b"\x12")  # too short to say
    for ip in (IP(src="192.0.2.9", dst="192.0.2.9"), IPv6(src="2001:db8::9", dst="2001:db8::9")):
        for sport, dport in ((40000, 443), (443, 40000)):  # one address at both ends: the ports decide
            pk.append(Ether(src=MAC_C, dst=MAC_S) / ip / TCP(sport=sport, dport=dport, flags="A"))
    # PPPoE sessions (a BRAS-side capture), one behind a VLAN tag: IPv4 and IPv6 go by their flows
    for k in range(8):
        ip = IP(src=f"192.0.2.{k + 1}", dst="198.51.100.7") if k % 2 else IPv6(src=f"2001:db8::{k + 1:x}", dst="2001:db8:2::7")
        ppp = PPP(proto=0x0021 if k % 2 else 0x0057)
        pk.append(Ether(src=MAC_C, dst=MAC_S) / PPPoE(sessionid=k + 1) / ppp / ip / TCP(sport=41000 + k, dport=443, flags="S"))
        pk.append(Ether(src=MAC_C, dst=MAC_S) / Dot1Q(vlan=9) / PPPoE(sessionid=k + 1) / ppp / ip
                  / UDP(sport=31000 + k, dport=53) / dns_q)
    # PPP carrying something else than IP (here LCP), and a PPPoE header cut short: every part
    pk.append(Ether(src=MAC_C, dst=MAC_S) / PPPoE(sessionid=1) / PPP(proto=0xC021) / b"\x01\x01\x00\x04")
    pk.append(Ether(src=MAC_C, dst=MAC_S, type=0x8864) / b"\x11\x00\x00\x01")
    pk.append(Ether(src=MAC_C, dst=MAC_S) / IP(src="192.0.2.1", dst="203.0.113.1", flags="MF") / TCP(sport=1, dport=2))
    # three tags: past what decode unwraps, so not IP to it
    pk.append(Ether(src=MAC_C, dst=MAC_S) / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / IP(src="192.0.2.1", dst="203.0.113.1")
              / TCP(sport=1, dport=2))
    pk.append(Ether(src=MAC_C, dst=MAC_S) / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment() / UDP(sport=1, dport=53))
    return pk


def test_handmade_packets_route_like_the_reassembler(tmp_path):
    frames = [bytes(p) for p in _packets()]
    frames.append(frames[0][:40])  # a TCP header cut short
    frames.append(frames[4][:14 + 20 + 4])  # a UDP header cut short
    bad = bytearray(frames[1])
    bad[14 + 20 + 12] = 0x40  # a data offset of 16 bytes: no TCP header
    frames.append(bytes(bad))
    bad[14 + 20 + 12] = 0xF0  # a data offset of 60 bytes, past the packet's end
    frames.append(bytes(bad))
    path = tmp_path / "mixed.pcap"
    path.write_bytes(C.pcap_bytes([(C.T0_NS + i * 1000, f) for i, f in enumerate(frames)], 1))
    routed, total = check_file(path)
    assert total == len(frames) and routed == 40 * 2 * 7 + 4 + 8 * 2


def test_one_row_hash_is_the_columns_hash():
    """ICMP quotes are placed one at a time with ``_mix_int``: it must be ``_mix`` exactly."""
    rng = np.random.default_rng(7)
    cols = [rng.integers(0, 2**63, 5000, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 5000, dtype=np.uint64)
            for _ in range(4)] + [rng.integers(0, 2**32, 5000, dtype=np.uint64)]
    want = _mix(*cols)
    got = [_mix_int(*(int(c[i]) for c in cols)) for i in range(5000)]
    assert want.tolist() == got


def test_no_router_means_every_record_decoded(monkeypatch):
    """Without the router (no compiled walk, or one built before it), a part gets every
    record's row, as before; with it, only its own and the shared ones, and the
    input's counts are the whole file's either way."""
    import types

    import forensics.sources as sources

    path = ROOT / "pcaps" / "benign-browsing" / "client.pcap"  # many short connections, shared among parts
    if not path.exists():
        pytest.skip("pcaps/benign-browsing is not in this checkout")

    def rows_and_info(walk, nparts):
        monkeypatch.setattr(sources, "compiled_walk", walk)
        (info, batches), = list(sources.iter_inputs([str(path)], None, 1, nparts))
        n = sum(len(rows) for rows, _buf, _now, _made in batches)
        return n, info.decoded, (info.first_ts, info.last_ts)

    whole = rows_and_info(None, 1)
    stale = rows_and_info(types.SimpleNamespace(), 2)  # an old build: no route
    assert stale == whole
    if COMPILED is not None:
        n, decoded, times = rows_and_info(COMPILED, 2)
        assert n < whole[0] and (decoded, times) == whole[1:]


def _in_pppoe(frame: bytes) -> bytes:
    """An Ethernet frame's IPv4 or IPv6 packet moved into a PPPoE session (as a BRAS-side
    capture has it): ethertype 0x8864, the 6-byte PPPoE header, PPP's 2-byte protocol."""
    et = frame[12:14]
    if et not in (b"\x08\x00", b"\x86\xdd"):
        return frame
    payload = frame[14:]
    ppp = b"\x00\x21" if et == b"\x08\x00" else b"\x00\x57"
    return frame[:12] + b"\x88\x64" + b"\x11\x00\x00\x2a" + (len(payload) + 2).to_bytes(2, "big") + ppp + payload


def test_samples_in_pppoe_give_the_same_attempts_with_every_part_count(tmp_path):
    """The lab's captures moved into PPPoE sessions: the router gives their packets parts,
    and one process and three give the attempts the plain captures give."""
    import json

    from scapy.utils import RawPcapReader

    import forensics
    from forensics.render import render_to_string

    need_compiled(WITHOUT)
    wrapped = tmp_path / "pcaps"
    n_frames = 0
    for src in SAMPLE_FILES:
        reader = RawPcapReader(str(src))
        assert reader.linktype == 1 and not getattr(reader, "nano", False), src
        recs = [C.Rec((m.sec * 1_000_000 + m.usec) * 1000, _in_pppoe(d), orig=m.wirelen + len(_in_pppoe(d)) - len(d))
                for d, m in reader]
        reader.close()
        n_frames += len(recs)
        dst = wrapped / src.relative_to(ROOT / "pcaps")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(C.pcap_bytes(recs, 1))
    routed = sum(check_file(p)[0] for p in captures_under(wrapped))
    assert routed > n_frames // 2, (routed, n_frames)

    def attempts(path, jobs):
        rep = json.loads(render_to_string(forensics.analyze([str(path)], jobs=jobs), "json"))
        return rep["attempts"]

    plain = attempts(ROOT / "pcaps", 1)
    assert len(plain) > 100
    assert attempts(wrapped, 1) == plain
    assert attempts(wrapped, 3) == plain
