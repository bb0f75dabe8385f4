"""Captures cut by a small snapshot length (``tcpdump -s 96``, common at ISPs), and DNS
answers sent in IP fragments: the report says so, and no attempt is called ok on payload
the capture does not hold.

The inputs are the lab's own recordings of real kernel traffic (``pcaps/``), cut in a
copy to what ``tcpdump -s N`` would have kept (the original length stays in each record).
Before this, a forged DNS answer racing the resolver's own was reported ``ok`` once the
answers were cut off: the two responses looked alike because neither was readable.
"""

from __future__ import annotations

import struct

import pytest

import captures as C
from conftest import ROOT, analyze_json

LAB = ROOT / "pcaps"
SNAP_WARNING = "cut short by the capture's snapshot length"


def snapped(src, dst, snaplen: int) -> None:
    """``src`` as ``tcpdump -s snaplen`` would have written it."""
    data = src.read_bytes()
    head = bytearray(data[:24])
    struct.pack_into("<I", head, 16, snaplen)
    out = bytearray(head)
    for pos in C.pcap_offsets(data):
        ts, us, incl, orig = struct.unpack_from("<IIII", data, pos)
        keep = min(incl, snaplen)
        out += struct.pack("<IIII", ts, us, keep, orig) + data[pos + 16:pos + 16 + keep]
    dst.write_bytes(bytes(out))


def _dns_by_query(report) -> dict:
    """A report's DNS attempts by (client port, transaction id)."""
    return {(a["client"]["port"], a["dns"]["id"]): a for a in report["attempts"] if a["kind"] == "dns"}


@pytest.mark.parametrize("scenario", ["dns-injector", "dns-injector-v6", "dns-injector-double"])
def test_racing_dns_answers_cut_off_are_not_called_ok(scenario, tmp_path):
    src = LAB / scenario / "client.pcap"
    full = analyze_json(src)
    cut_path = tmp_path / "cut.pcap"
    snapped(src, cut_path, 96)
    cut = analyze_json(cut_path)
    assert not any(SNAP_WARNING in w for w in full["warnings"])
    said = [w for w in cut["warnings"] if SNAP_WARNING in w]
    assert len(said) == 1 and int(said[0].split()[0]) > 0
    assert analyze_json(cut_path, jobs=2)["warnings"] == cut["warnings"], "counted once whatever the parts"

    before, after = _dns_by_query(full), _dns_by_query(cut)
    assert before.keys() == after.keys(), "every query still has its attempt"
    forged = [k for k, a in before.items() if a["verdict"] == "forged-dns"]
    assert forged
    unreadable = 0
    for k in forged:
        a = after[k]
        assert a["verdict"] in ("forged-dns", "inconclusive"), (k, a["verdict"], a["summary"])
        if a["verdict"] == "inconclusive":
            unreadable += 1
            assert "holds only part of them (cut by its snapshot length)" in a["summary"]
            assert any(r.get("cut") == "snapshot length" for r in a["dns"]["responses"])
    assert unreadable, "96 bytes cut at least one race's answers"
    _lone_answers(before, after)
    uncut = [r for a in full["attempts"] if a["kind"] == "dns" for r in a["dns"]["responses"]]
    assert uncut and not any("cut" in r for r in uncut), "whole responses carry no cut mark"


def _lone_answers(before: dict, after: dict) -> int:
    """Every query with a single answer, judged ok on the whole capture, is still ok once cut
    (the resolver answered); one whose NOERROR response was cut is less sure and says why.
    Returns how many were cut."""
    lone_cut = 0
    for k, a in before.items():
        if a["verdict"] == "ok" and len(a["dns"]["responses"]) == 1:
            b = after[k]
            assert b["verdict"] == "ok"
            assert (a["rule"], a["confidence"]) == ("ok.dns", 0.95)
            if b["dns"]["responses"][0].get("cut") and b["dns"]["responses"][0]["rcode"] == "NOERROR":
                # ... but one whose answers were cut off is not as sure, and says what would settle it
                lone_cut += 1
                assert (b["rule"], b["confidence"]) == ("ok.dns-unread", 0.6), b
                assert "its answers cannot be checked; a capture of whole packets (tcpdump -s 0)" in b["summary"]
                assert [e["signal"] for e in b["evidence"]][-1] == "response-cut"
            else:
                assert (b["rule"], b["confidence"]) == ("ok.dns", 0.95), b
    return lone_cut


def test_a_lone_dns_answer_cut_off_is_ok_with_less_confidence(tmp_path):
    """70 bytes keep the DNS header (NOERROR) but not the answer: still ok, the resolver
    answered, at confidence 0.6 under ok.dns-unread, with the cut response as evidence and
    the summary saying that a capture of whole packets would settle it."""
    src = LAB / "dns-injector" / "client.pcap"
    cut_path = tmp_path / "cut.pcap"
    snapped(src, cut_path, 70)

    before, after = _dns_by_query(analyze_json(src)), _dns_by_query(analyze_json(cut_path))
    assert before.keys() == after.keys()
    assert _lone_answers(before, after) > 0


def test_a_tls_exchange_cut_short_says_so(tmp_path):
    """IPv6 and TCP timestamps leave 10 bytes of a 96-byte frame for the ClientHello: its
    record header and a byte more. The report lists no version rather than 0x0000, marks
    the payload cut both ways, and its summary says the exchange cannot be read (not that
    the payload was of another kind)."""
    src = LAB / "dns-injector-v6" / "client.pcap"
    cut_path = tmp_path / "cut.pcap"
    snapped(src, cut_path, 96)
    tls = [a for a in analyze_json(cut_path)["attempts"] if a["kind"] == "tls"]
    assert tls
    for a in tls:
        hello = a["tls"]["client_hello"]
        assert hello["versions"] == [] and hello["sni"] == "" and hello["size"] > 96
        assert a["verdict"] == "inconclusive"
        assert a["tcp"]["payload_cut"] == {"client": True, "server": True}
        assert "snapshot length" in a["summary"] and "not of the kind" not in a["summary"]
    whole = [a for a in analyze_json(src)["attempts"] if a["kind"] == "tls"]
    assert whole and all("payload_cut" not in a["tcp"] and a["verdict"] == "ok" for a in whole)


def _fragmented_answers(path, answers) -> None:
    """A TXT query and, for each (TTL, IP-ID, text) of ``answers``, a response in 400-byte IP
    fragments whose last fragment was not captured."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    q = IP(src="192.0.2.10", dst="198.51.100.53", ttl=64, id=1) / UDP(sport=40000, dport=53) / DNS(
        id=0x4242, rd=1, qd=DNSQR(qname="big.example", qtype="TXT"))

    def answer(ttl, ipid, text):
        return IP(src="198.51.100.53", dst="192.0.2.10", ttl=ttl, id=ipid) / UDP(sport=53, dport=40000) / DNS(
            id=0x4242, qr=1, rd=1, ra=1, qd=DNSQR(qname="big.example", qtype="TXT"),
            an=[DNSRR(rrname="big.example", type="TXT", rdata=text * 200) for _ in range(4)])

    pkts = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / q]
    for ttl, ipid, text in answers:
        pkts += [Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / f
                 for f in fragment(answer(ttl, ipid, text), fragsize=400)[:-1]]  # the last one lost
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000.0 + i * 0.004
    wrpcap(str(path), pkts)


def test_a_lone_answer_in_ip_fragments_not_all_captured_is_less_sure(tmp_path):
    """One response, its last fragment lost: ok (the resolver answered NOERROR), at 0.6, and
    the summary names the capture that would hold its answers."""
    path = tmp_path / "frag1.pcap"
    _fragmented_answers(path, [(61, 777, "x")])
    dns = [a for a in analyze_json(path)["attempts"] if a["kind"] == "dns"]
    assert len(dns) == 1 and dns[0]["dns"]["responses"][0]["cut"] == "IP fragments"
    assert (dns[0]["verdict"], dns[0]["rule"], dns[0]["confidence"]) == ("ok", "ok.dns-unread", 0.6)
    assert "sent in IP fragments not all captured" in dns[0]["summary"]
    assert "a capture that keeps every IP fragment" in dns[0]["summary"]


def test_racing_answers_in_ip_fragments_are_not_called_ok(tmp_path):
    """Two responses whose datagrams came in fragments, the last fragment of each not
    captured: neither can be reassembled, each is read from its first fragment, marked so,
    and the two racing are not called ok. (Built with scapy: the lab's fragmented answers,
    pcaps/dns-fragmented, arrive whole; tests/test_defrag.py reads those.)"""
    path = tmp_path / "frag.pcap"
    _fragmented_answers(path, [(61, 777, "x"), (55, 5000, "y")])
    report = analyze_json(path)
    dns = [a for a in report["attempts"] if a["kind"] == "dns"]
    assert len(dns) == 1 and dns[0]["verdict"] == "inconclusive"
    assert [r["cut"] for r in dns[0]["dns"]["responses"]] == ["IP fragments", "IP fragments"]
    assert "sent in IP fragments not all captured" in dns[0]["summary"]
    assert any(w.startswith("2 DNS messages came in IP fragments that were not all captured")
               for w in report["warnings"])
    assert any("2 IP datagrams came in fragments that were not all captured" in w for w in report["warnings"])
    assert not any(SNAP_WARNING in w for w in report["warnings"])


def _same_name_two_resolvers(path) -> None:
    """One long name asked of two resolvers: one answers an address, the other NXDOMAIN."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    name, client, pkts = "a-rather-long-name-the-snapshot-cuts.example", "192.0.2.10", []
    for k, (resolver, rcode) in enumerate([("198.51.100.53", 0), ("198.51.100.54", 3)]):
        t = 1.7e9 + k
        q = DNS(id=100 + k, rd=1, qd=DNSQR(qname=name, qtype="A"))
        r = DNS(id=100 + k, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name, qtype="A"),
                an=DNSRR(rrname=name, type="A", ttl=300, rdata="203.0.113.5") if rcode == 0 else [])
        for pkt, when, to_client in ((IP(src=client, dst=resolver, ttl=64) / UDP(sport=40001 + k, dport=53) / q, t,
                                      False),
                                     (IP(src=resolver, dst=client, ttl=57) / UDP(sport=53, dport=40001 + k) / r,
                                      t + 0.02, True)):
            e = (Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") if to_client
                 else Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")) / pkt
            e.time = when
            pkts.append(e)
    wrpcap(str(path), pkts)


def test_names_and_answers_cut_off_are_not_compared_across_resolvers(tmp_path):
    """Two resolvers disagreeing on one name is evidence (dnsforge's cross-resolver check). Cut off by
    the snapshot length: the names unknown, nothing is compared (every unknown name would match every
    other); the answers unknown, only what the headers say is (NXDOMAIN or not), in those words."""
    full = tmp_path / "full.pcap"
    _same_name_two_resolvers(full)

    def claims(report) -> list[str]:
        return [a["summary"] for a in report["attempts"] if "for the same name" in a["summary"]]

    whole = analyze_json(full, reachable=("203.0.113.0/24",))
    assert claims(whole), "the disagreement the capture holds is reported"
    for snaplen in (74, 110):
        cut = tmp_path / f"cut{snaplen}.pcap"
        snapped(full, cut, snaplen)
        rep = analyze_json(cut, reachable=("203.0.113.0/24",))
        assert len(rep["attempts"]) == 2 and any(SNAP_WARNING in w for w in rep["warnings"])
        if snaplen == 74:  # the questions are not in the capture: no name, no type, nothing compared
            assert {(a["name"], a["dns"]["qtype"]) for a in rep["attempts"]} == {("", "")}
            assert {e["detail"] for a in rep["attempts"] for e in a["evidence"] if e["signal"] == "query"} \
                == {"(question not captured)"}
            assert not claims(rep)
        else:  # the names are, the answers are not: NXDOMAIN against NOERROR still shows, and the
            # NOERROR whose address was cut off is not called NODATA
            said = claims(rep)
            assert said and all("NODATA" not in s and "NOERROR (answers not captured)" in s for s in said), said
