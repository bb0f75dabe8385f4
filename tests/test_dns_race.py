"""DNS transactions keep every response, in arrival order, with its IP TTL."""

from __future__ import annotations

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from conftest import CORPUS, analyze_json, need_corpus

CLIENT, RESOLVER = "192.0.2.10", "198.51.100.53"


def _race(path, t0=1_700_000_000.0):
    q = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=CLIENT, dst=RESOLVER, ttl=64, id=100) / UDP(sport=40000, dport=53) / DNS(
        id=0x1234, rd=1, qd=DNSQR(qname="blog.example", qtype="A"))
    def ans(addr, ttl, ipid, dttl):
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=RESOLVER, dst=CLIENT, ttl=ttl, id=ipid) / UDP(sport=53, dport=40000) / DNS(
            id=0x1234, qr=1, aa=0, rd=1, ra=1, qd=DNSQR(qname="blog.example", qtype="A"),
            an=DNSRR(rrname="blog.example", type="A", ttl=dttl, rdata=addr))
    pkts = [q, ans("198.51.100.7", 61, 0, 300), ans("198.51.100.8", 250, 54321, 60), ans("203.0.113.5", 55, 7000, 3600)]
    for i, p in enumerate(pkts):
        p.time = t0 + [0, 0.002, 0.003, 0.041][i]
    wrpcap(str(path), pkts)


def test_two_forged_answers_and_the_real_one_in_one_attempt(tmp_path):
    _race(tmp_path / "race.pcap")
    report = analyze_json(tmp_path / "race.pcap")
    dns = [a for a in report["attempts"] if a["kind"] == "dns"]
    assert len(dns) == 1
    resp = dns[0]["dns"]["responses"]
    assert [r["frame"] for r in resp] == [2, 3, 4]
    assert [r["ttl"] for r in resp] == [61, 250, 55]
    assert [r["answers"][0]["data"] for r in resp] == ["198.51.100.7", "198.51.100.8", "203.0.113.5"]
    assert [r["answers"][0]["ttl"] for r in resp] == [300, 60, 3600]
    assert resp == sorted(resp, key=lambda r: r["time"])


def test_corpus_injection_keeps_both_answers():
    need_corpus()
    report = analyze_json(CORPUS / "vaishali-chanana__DNS-Inject-Detect" / "dnsinject.pcap")
    raced = [a for a in report["attempts"] if a["kind"] == "dns" and len(a["dns"]["responses"]) >= 2]
    assert raced, "the forged and the real answer to 0x7093 must both be in one attempt"
    a = raced[0]
    assert a["dns"]["id"] == 0x7093
    first, second = a["dns"]["responses"][:2]
    assert first["answers"][0]["data"] == "192.168.10.133"
    assert first["ttl"] == 64 and second["ttl"] == 128
