"""IP reassembly (``forensics.sources.defrag``): datagrams that came in fragments are read whole.

The verdict-level tests read real kernel fragments: the lab's ``dns-fragmented``
sample (a resolver's 1.6 KB and 2.8 KB answers, fragmented by its kernel) and
zeek's ``dns-edns-ecs.pcap`` (DNSSEC answers from the internet, with tshark as
the oracle where it is installed). The unit tests build fragments with scapy:
out of order, missing, overlapping with other bytes, a TCP segment, and bounds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CORPUS, MERGED, ROOT, analyze_json, need_corpus, need_merged  # noqa: E402

from forensics.lab import topology as T  # noqa: E402
from forensics.reassembly.dnswire import MAX_ANSWERS  # noqa: E402
from forensics.sources import defrag  # noqa: E402
from forensics.sources.decode import ST_FRAG, decode  # noqa: E402

SAMPLE = ROOT / "pcaps" / "dns-fragmented" / "client.pcap"
EDNS = CORPUS / "zeek__zeek" / "testing" / "btest" / "Traces" / "dns-edns-ecs.pcap"


def _responses(rep: dict, name: str) -> list[dict]:
    return [r for a in rep["attempts"] if a["kind"] == "dns" and a["name"] == name for r in a["dns"]["responses"]]


# ------------------------------------------------------------------ real fragments
def test_lab_answers_in_fragments_are_read_whole():
    """The resolver's kernel sent each pool.example answer in 2 fragments: both answers read
    whole (not marked cut), at the frame of their last fragment, as Wireshark shows them."""
    rep = analyze_json(SAMPLE)
    (inp,) = rep["inputs"]
    assert inp["decoded"]["reassembled"] == 2 and inp["decoded"]["fragments"] == 4
    assert not rep["warnings"]
    v4, v6 = sorted(_responses(rep, "pool.example"), key=lambda r: ":" in r["src"]["ip"])
    want = min(T.POOL_NAMES["pool.example"], MAX_ANSWERS)
    for r, is6 in ((v4, False), (v6, True)):
        assert "cut" not in r
        assert [x["data"] for x in r["answers"]] == T.pool_addrs("pool.example", is6)[:want]
    # without reassembly, the IPv6 first fragment (1,448 bytes of UDP) held 50 of the answers
    assert len(v6["answers"]) == want > 50
    assert {a["verdict"] for a in rep["attempts"]} == {"ok"}
    # each answer's fragments are its packets: in the response, and among the attempt's frames
    for r in (v4, v6):
        assert len(r["fragments"]) == 2 and r["fragments"][-1] == r["frame"]
        (a,) = [a for a in rep["attempts"] if a["kind"] == "dns" and r in a["dns"]["responses"]]
        assert set(r["fragments"]) <= set(a["frames"]) and a["frames_total"] == 3
    if shutil.which("tshark"):
        assert {r["frame"]: r["fragments"] for r in (v4, v6)} == _tshark_fragment_frames(SAMPLE)


def test_lab_sample_same_report_with_two_parts():
    """Fragments go to every part (they carry no ports); each part keeps the datagrams of its flows."""
    assert analyze_json(SAMPLE, jobs=1) == analyze_json(SAMPLE, jobs=2)


def _tshark_reassembled_dns(path: Path) -> dict[int, int]:
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "dns.flags.response==1 && "
                          "(ip.reassembled.length || ipv6.reassembled.length)",
                          "-T", "fields", "-e", "frame.number", "-e", "dns.count.answers"],
                         capture_output=True, text=True, timeout=120).stdout
    return {int(f): int(n) for f, n in (line.split("\t") for line in out.splitlines() if line)}


def _tshark_fragment_frames(path: Path) -> dict[int, list[int]]:
    """The frame of each DNS response tshark reassembles -> the frames of its fragments."""
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "dns.flags.response==1 && "
                          "(ip.reassembled.length || ipv6.reassembled.length)", "-T", "fields",
                          "-e", "frame.number", "-e", "ip.fragment", "-e", "ipv6.fragment"],
                         capture_output=True, text=True, timeout=120).stdout
    got = {}
    for line in out.splitlines():
        frame, v4, v6 = line.split("\t")
        got[int(frame)] = sorted(int(x) for x in (v4 or v6).split(","))
    return got


@pytest.mark.corpus
def test_corpus_dnssec_answers_in_fragments_are_read_whole():
    """zeek's dns-edns-ecs.pcap holds 4 DNS answers (DNSKEY, RRSIG) that came in IP
    fragments: each is reassembled, and those of the capture's queries are read whole, at
    the frame tshark reassembles them in, with as many answer records as tshark counts."""
    need_corpus()
    rep = analyze_json(EDNS)
    assert rep["inputs"][0]["decoded"]["reassembled"] == 4
    assert not any("fragment" in w for w in rep["warnings"])
    by_frame = {r["frame"]: r for a in rep["attempts"] if a["kind"] == "dns" for r in a["dns"]["responses"]}
    whole = {54: 4, 59: 2, 63: 4, 85: 4}  # what tshark 4.x says (checked below where it is installed)
    if shutil.which("tshark"):
        assert _tshark_reassembled_dns(EDNS) == whole
    # frames 54 and 63 answer queries from before the capture began: no attempt holds them
    assert sorted(set(whole) & set(by_frame)) == [59, 85]
    for frame in (59, 85):
        assert "cut" not in by_frame[frame]
        assert len(by_frame[frame]["answers"]) == min(whole[frame], MAX_ANSWERS)
        assert len(by_frame[frame]["fragments"]) >= 2 and by_frame[frame]["fragments"][-1] == frame
    if shutil.which("tshark"):
        theirs = _tshark_fragment_frames(EDNS)
        assert {f: by_frame[f]["fragments"] for f in (59, 85)} == {f: theirs[f] for f in (59, 85)}


# ------------------------------------------------------------------ built fragments
def _write(pkts, path: Path) -> Path:
    from scapy.utils import wrpcap

    wrpcap(str(path), pkts)
    return path


def _eth(pkt, t: float, to_client: bool):
    from scapy.layers.l2 import Ether

    e = (Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") if to_client
         else Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")) / pkt
    e.time = t
    return e


def _dns_pair(v6: bool, t: float, order=None, drop=(), overlap: bytes | None = None):
    """A query and its 40-answer response in fragments (``order``: the fragments' order; ``drop``:
    which are lost; ``overlap``: a forged copy of fragment 1 with these bytes, after the real one)."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6

    qtype = "AAAA" if v6 else "A"
    ans = [DNSRR(rrname="pool.example", type=qtype, ttl=300,
                 rdata=(f"2001:db8:5::{0x100 + i:x}" if v6 else f"203.0.113.{100 + i}")) for i in range(40)]
    c, s = ("2001:db8:1:1::10", "2001:db8:53::53") if v6 else ("192.0.2.10", "203.0.113.53")
    q = DNS(id=7, rd=1, qd=DNSQR(qname="pool.example", qtype=qtype))
    r = DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname="pool.example", qtype=qtype), an=ans)
    if v6:
        query = IPv6(src=c, dst=s) / UDP(sport=40000, dport=53) / q
        frags = fragment6(IPv6(src=s, dst=c, hlim=60) / IPv6ExtHdrFragment(id=0xBEEF) / UDP(sport=53, dport=40000)
                          / r, 400)
    else:
        query = IP(src=c, dst=s, ttl=64) / UDP(sport=40000, dport=53) / q
        frags = fragment(IP(src=s, dst=c, ttl=60, id=4242) / UDP(sport=53, dport=40000) / r, fragsize=296)
    pkts = [_eth(query, t, False)]
    order = list(range(len(frags))) if order is None else order
    for k, i in enumerate(i for i in order if i not in drop):
        pkts.append(_eth(frags[i], t + 0.03 + k * 1e-4, True))
    if overlap is not None:
        forged = frags[1].copy()
        raw = bytearray(bytes(forged))
        raw[-len(overlap):] = overlap
        pkts.append(_eth(forged.__class__(bytes(raw)), t + 0.031 + len(order) * 1e-4, True))
    return pkts, len(frags)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
def test_fragments_in_any_order_make_the_datagram(tmp_path, v6, reverse):
    pkts, n = _dns_pair(v6, 1.7e9)
    if reverse:
        pkts = pkts[:1] + pkts[1:][::-1]
        for k, p in enumerate(pkts[1:]):
            p.time = 1.7e9 + 0.03 + k * 1e-4
    rep = analyze_json(_write(pkts, tmp_path / "f.pcap"), reachable=("203.0.113.0/24", "2001:db8:5::/64"))
    assert n >= 3
    (r,) = _responses(rep, "pool.example")
    assert len(r["answers"]) == 40 and "cut" not in r
    assert r["frame"] == 1 + n  # the last fragment to arrive completes it
    assert r["fragments"] == list(range(2, 2 + n))  # every fragment, whatever order they came in
    assert r["fragment_ttls"] == [60] * n and "fragments_disagree" not in r
    (a,) = rep["attempts"]
    assert a["frames"] == list(range(1, 2 + n))
    assert rep["inputs"][0]["decoded"]["reassembled"] == 1 and not rep["warnings"]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_a_query_in_fragments_lists_them(tmp_path, v6):
    """A query that came in IP fragments (a long name in small fragments) lists them in
    ``dns.query_fragments`` and its attempt's frames, as tshark's ``ip.fragment`` and
    ``ipv6.fragment`` do; its retransmission count is still one."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6

    name = ".".join(["label%02d" % i for i in range(12)]) + ".example"
    qtype = "AAAA" if v6 else "A"
    c, s = ("2001:db8:1:1::10", "2001:db8:53::53") if v6 else ("192.0.2.10", "203.0.113.53")
    q = DNS(id=9, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    r = DNS(id=9, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype),
            an=DNSRR(rrname=name, type=qtype, ttl=60, rdata="2001:db8:5::1" if v6 else "203.0.113.80"))
    if v6:
        frags = fragment6(IPv6(src=c, dst=s) / IPv6ExtHdrFragment(id=0x1234) / UDP(sport=40001, dport=53) / q, 96)
        reply = IPv6(src=s, dst=c, hlim=60) / UDP(sport=53, dport=40001) / r
    else:
        frags = fragment(IP(src=c, dst=s, ttl=64, id=777) / UDP(sport=40001, dport=53) / q, fragsize=40)
        reply = IP(src=s, dst=c, ttl=60) / UDP(sport=53, dport=40001) / r
    n = len(frags)
    assert n >= 3
    pkts = [_eth(f, 1.7e9 + k * 1e-4, False) for k, f in enumerate(frags)] + [_eth(reply, 1.7e9 + 0.03, True)]
    path = _write(pkts, tmp_path / "q.pcap")
    rep = analyze_json(path, reachable=("203.0.113.0/24", "2001:db8:5::/64"))
    (a,) = rep["attempts"]
    assert a["verdict"] == "ok" and a["name"] == name
    assert a["dns"]["query_frames"] == [n]  # the frame that completed it, sent once
    assert a["dns"]["query_fragments"] == list(range(1, n + 1))
    assert a["frames"] == list(range(1, n + 2))
    assert "fragments" not in a["dns"]["responses"][0]
    if shutil.which("tshark"):
        out = subprocess.run(["tshark", "-r", str(path), "-Y", "dns.flags.response==0", "-T", "fields",
                              "-e", "frame.number", "-e", "ip.fragment", "-e", "ipv6.fragment"],
                             capture_output=True, text=True, timeout=120).stdout.split()
        assert int(out[0]) == n and [int(x) for x in out[1].split(",")] == a["dns"]["query_fragments"]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_a_lost_fragment_leaves_the_first_read_as_cut(tmp_path, v6):
    pkts, n = _dns_pair(v6, 1.7e9, drop=(1,))
    rep = analyze_json(_write(pkts, tmp_path / "f.pcap"))
    (r,) = _responses(rep, "pool.example")
    assert r["cut"] == "IP fragments" and 0 < len(r["answers"]) < 40
    assert "fragments" not in r  # not made whole: read from its first fragment alone
    assert rep["inputs"][0]["decoded"]["reassembled"] == 0
    assert any(f"({n - 1} fragments of them were)" in w for w in rep["warnings"]), rep["warnings"]


@pytest.mark.parametrize("forged_first", [False, True], ids=["forgery-late", "forgery-first"])
def test_fragments_that_disagree_are_counted(tmp_path, forged_first):
    """A second copy of a fragment with other bytes (a forged fragment racing the real one):
    counted whether it came before the real one or after the datagram was whole."""
    pkts, _ = _dns_pair(False, 1.7e9, overlap=b"\xff" * 8)
    if forged_first:  # planted ahead of the real one, by a sender 3 hops nearer
        from scapy.layers.inet import IP

        pkts.insert(1, pkts.pop())
        pkts[1].time = pkts[0].time + 0.0299
        pkts[1][IP].ttl = 63
        del pkts[1][IP].chksum
    rep = analyze_json(_write(pkts, tmp_path / "f.pcap"))
    (r,) = _responses(rep, "pool.example")
    if forged_first:  # the response read holds the forged bytes: its fragments say so, and their TTLs
        assert r["fragments_disagree"] is True
        assert r["fragments"][0] == 2 and r["fragment_ttls"] == [63] + [60] * (len(r["fragments"]) - 1)
    else:
        assert len(r["answers"]) == 40  # the bytes first captured are kept
        assert "fragments_disagree" not in r  # (the forgery came after the datagram was whole)
        assert r["fragment_ttls"] == [60] * len(r["fragments"])
    assert rep["inputs"][0]["decoded"]["reassembled"] == 1
    assert [w for w in rep["warnings"] if "IP datagrams" in w] == [
        next(w for w in rep["warnings"] if "1 IP datagrams came in fragments that overlap with different bytes" in w)]


@pytest.mark.parametrize("size", [24, 8], ids=["host-in-a-later-fragment", "tcp-header-split"])
def test_an_http_request_in_fragments_shows_its_host(tmp_path, size):
    """A TCP segment sent in fragments (no DF): its Host header is in a later one; with 8-byte
    fragments even its TCP header is split across three (RFC 1858's evasion of filters that
    read the first fragment only), and the first fragment alone is too short to decode."""
    from scapy.layers.inet import IP, TCP, fragment

    c, s, t = "192.0.2.10", "203.0.113.20", 1.7e9
    req = b"GET / HTTP/1.1\r\nHost: frag.example\r\nUser-Agent: curl/8\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    syn = IP(src=c, dst=s, ttl=64) / TCP(sport=41000, dport=80, flags="S", seq=1000)
    synack = IP(src=s, dst=c, ttl=60) / TCP(sport=80, dport=41000, flags="SA", seq=5000, ack=1001)
    ack = IP(src=c, dst=s, ttl=64) / TCP(sport=41000, dport=80, flags="A", seq=1001, ack=5001)
    data = IP(src=c, dst=s, ttl=64, id=99, flags=0) / TCP(sport=41000, dport=80, flags="PA", seq=1001, ack=5001) / req
    frags = fragment(data, fragsize=size)
    answer = IP(src=s, dst=c, ttl=60) / TCP(sport=80, dport=41000, flags="PA", seq=5001, ack=1001 + len(req)) / resp
    pkts = [_eth(syn, t, False), _eth(synack, t + 0.02, True), _eth(ack, t + 0.021, False)]
    pkts += [_eth(f, t + 0.022 + k * 1e-4, False) for k, f in enumerate(frags)]
    pkts.append(_eth(answer, t + 0.05, True))
    rep = analyze_json(_write(pkts, tmp_path / "h.pcap"))
    (a,) = rep["attempts"]
    assert len(frags) >= 3 and a["kind"] == "http" and a["name"] == "frag.example"
    assert a["tcp"]["payload_bytes"] == {"client": len(req), "server": len(resp)}
    assert a["tcp"]["retransmissions"] == {"client": 0, "server": 0}
    # the request's fragments are the connection's packets too: every frame of the capture
    assert a["tcp"]["ip_fragments"] == list(range(4, 4 + len(frags)))
    assert a["tcp"]["ip_fragment_ttls"] == [64] * len(frags) and "ip_fragments_disagree" not in a["tcp"]
    assert a["frames"] == list(range(1, len(pkts) + 1))


def test_a_forged_fragment_of_a_request_shows_its_ttl(tmp_path):
    """A fragment planted ahead of the client's own, 3 hops nearer and with other bytes where the
    Host is: the connection's fragments show its TTL apart from the client's and that they disagreed."""
    from scapy.layers.inet import IP, TCP, fragment

    c, s, t = "192.0.2.10", "203.0.113.20", 1.7e9
    req = b"GET / HTTP/1.1\r\nHost: frag.example\r\nUser-Agent: curl/8\r\n\r\n"
    syn = IP(src=c, dst=s, ttl=64) / TCP(sport=41000, dport=80, flags="S", seq=1000)
    synack = IP(src=s, dst=c, ttl=60) / TCP(sport=80, dport=41000, flags="SA", seq=5000, ack=1001)
    data = IP(src=c, dst=s, ttl=64, id=99, flags=0) / TCP(sport=41000, dport=80, flags="PA", seq=1001, ack=5001) / req
    frags = fragment(data, fragsize=24)
    forged = frags[1].copy()
    forged[IP].ttl = 61
    forged[IP].remove_payload()
    forged = forged / bytes(b ^ 0x20 for b in bytes(frags[1][IP].payload))  # the same length, other bytes
    forged[IP].proto = 6  # (scapy would write its payload's protocol: none)
    del forged[IP].chksum, forged[IP].len
    pkts = [_eth(syn, t, False), _eth(synack, t + 0.02, True), _eth(forged, t + 0.021, False)]
    pkts += [_eth(f, t + 0.022 + k * 1e-4, False) for k, f in enumerate(frags)]
    (a,) = analyze_json(_write(pkts, tmp_path / "x.pcap"))["attempts"]
    frames = a["tcp"]["ip_fragments"]
    assert frames[0] == 3 and len(frames) == len(frags) + 1
    assert a["tcp"]["ip_fragment_ttls"] == [61] + [64] * len(frags)
    assert a["tcp"]["ip_fragments_disagree"] is True


def test_a_segment_in_many_fragments_lists_the_first_64(tmp_path):
    """A 600-byte request in 8-byte fragments (78 of them): the connection lists the first 64 (the
    report lists 64 frames of an attempt anyway), and frames_total counts what it lists."""
    from scapy.layers.inet import IP, TCP, fragment

    c, s, t = "192.0.2.10", "203.0.113.20", 1.7e9
    req = b"GET / HTTP/1.1\r\nHost: frag.example\r\nX-Pad: " + b"p" * 540 + b"\r\n\r\n"
    pkts = [_eth(IP(src=c, dst=s) / TCP(sport=41000, dport=80, flags="S", seq=1000), t, False),
            _eth(IP(src=s, dst=c) / TCP(sport=80, dport=41000, flags="SA", seq=5000, ack=1001), t + 0.02, True),
            _eth(IP(src=c, dst=s) / TCP(sport=41000, dport=80, flags="A", seq=1001, ack=5001), t + 0.021, False)]
    frags = fragment(IP(src=c, dst=s, id=7, flags=0) / TCP(sport=41000, dport=80, flags="PA", seq=1001, ack=5001)
                     / req, fragsize=8)
    pkts += [_eth(f, t + 0.022 + k * 1e-5, False) for k, f in enumerate(frags)]
    (a,) = analyze_json(_write(pkts, tmp_path / "m.pcap"))["attempts"]
    assert len(frags) > 64 and a["name"] == "frag.example"
    assert a["tcp"]["ip_fragments"] == list(range(4, 4 + 64))
    assert len(a["tcp"]["ip_fragment_ttls"]) == 64
    assert a["frames_total"] == 3 + 64 + 1  # the handshake, the fragments listed, the one that completed it


def _rows(pkts) -> tuple[np.ndarray, np.ndarray]:
    raw = [bytes(p) for p in pkts]
    buf = np.frombuffer(b"".join(raw), np.uint8)
    off = np.concatenate(([0], np.cumsum([len(r) for r in raw])[:-1])).astype(np.int64)
    n = len(raw)
    return decode(buf, np.arange(1, n + 1, dtype=np.int64), np.array([float(p.time) for p in pkts]), off,
                  np.array([len(r) for r in raw], np.int32), np.ones(n, np.int32)), buf


def test_a_datagram_waits_for_its_pieces_only_so_long():
    """A fragment missing FRAG_TIMEOUT after the first one came: the first goes on, cut."""
    pkts, n = _dns_pair(False, 1.7e9, drop=(2,))
    rows, buf = _rows(pkts)
    r = defrag.Reassembler()
    out, _ = r.feed(rows, buf, 1.7e9 + 1)
    assert (out["status"][1:] == ST_FRAG).all() and len(out) == len(rows) and r.open
    out, _ = r.feed(rows[:0], buf, 1.7e9 + 1 + defrag.FRAG_TIMEOUT)
    assert len(out) == 1 and out["frag"][0] == 1 and out["frame"][0] == 2 and not r.open
    assert r.stats.given_up == 1 and r.stats.given_up_fragments == n - 1


def test_open_datagrams_are_bounded(monkeypatch):
    monkeypatch.setattr(defrag, "MAX_DATAGRAMS", 2)
    r = defrag.Reassembler()
    for k in range(3):
        pkts, _ = _dns_pair(False, 1.7e9 + k, drop=(1,))
        pkts[1]["IP"].id = 100 + k
        rows, buf = _rows([pkts[1]])
        r.feed(rows, buf, 1.7e9 + k)
    assert len(r.open) == 2 and r.stats.given_up == 1


def test_fragments_claiming_past_64k_are_skipped():
    from scapy.layers.inet import IP, UDP

    bad = IP(src="203.0.113.53", dst="192.0.2.10", id=5, flags="MF", frag=8190) / UDP() / (b"x" * 64)
    rows, buf = _rows([_eth(bad, 1.7e9, True)])
    r = defrag.Reassembler()
    r.feed(rows, buf, 1.7e9)
    assert r.stats.bad == 1 and not r.open


@pytest.mark.tshark
def test_merged_public_traces_reassemble_what_tshark_does(monkeypatch):
    """../shared/bench/real-merged.pcap (many public test traces merged; a survival input,
    read here for its fragments only): the datagrams made whole are the ones tshark
    reassembles, frame for frame: 108 when written, among them trains of 313 16-byte
    fragments whose identification is reused every 0.3 s, and TCP headers split across
    fragments."""
    need_merged()
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed (the oracle)")
    from forensics.sources import iter_inputs

    done: list[int] = []
    add = defrag.Reassembler._add

    def counting(self, row, buf, out):
        n = self.stats.reassembled
        add(self, row, buf, out)
        if self.stats.reassembled > n:
            done.append(int(row["frame"]))

    monkeypatch.setattr(defrag.Reassembler, "_add", counting)
    for _info, batches in iter_inputs([str(MERGED)], None, 0, 1):
        for _ in batches:
            pass
    out = subprocess.run(["tshark", "-r", str(MERGED), "-Y", "ip.reassembled.length || ipv6.reassembled.length",
                          "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=300).stdout
    theirs = sorted(int(x) for x in out.split())
    assert len(theirs) >= 100
    assert sorted(done) == theirs
