"""Each signal on small scapy-built flows, and the look-alikes that must not fire.

These are unit tests of the detectors' logic; the verdicts on real kernel traffic
are checked against the lab samples (test_samples.py) and the corpus.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from conftest import analyze_json
from flows import (MAC_C, MAC_S, Capture, Flow, client_hello, dns_exchange, http_request, http_response,
                   icmp_prohibited, server_hello)

SRV = "203.0.113.7"


def run(cap: Capture, tmp_path, **kw) -> list[dict]:
    report = analyze_json(cap.write(tmp_path / "t.pcap"), **kw)
    return report["attempts"]


def only(attempts, **match):
    found = [a for a in attempts if all((a.get(k) if "." not in k else a[k.split(".")[0]][k.split(".")[1]]) == v
                                        for k, v in match.items())]
    assert len(found) == 1, (match, [(a["kind"], a["name"], a["verdict"]) for a in attempts])
    return found[0]


# ------------------------------------------------------------------ injected resets

def _reset_flow(cap, sni="blocked.example", *, ttl=62, ipid=0, race=True, early=True, sport=40000, rst_ack=False):
    f = Flow(cap, sport=sport)
    f.handshake()
    f.c2s("PA", client_hello(sni))
    f.s2c("RA" if rst_ack else "R", dt=0.0005 if early else 0.045, ttl=ttl, ipid=ipid)
    if race:
        f.s2c("PA", b"\x16\x03\x03\x00\x10" + b"\0" * 16, dt=0.040)
    return f


def test_injected_reset_race_and_ttl_gap(tmp_path):
    cap = Capture()
    _reset_flow(cap)
    a = only(run(cap, tmp_path), kind="tls")
    assert (a["verdict"], a["class"], a["trigger"]) == ("injected-rst", "deliberate", "sni")
    assert a["confidence"] >= 0.95
    # TTL 62 from initial 64: hop 3; the server's 60: hop 5
    assert (a["hop"]["from_capture"], a["hop"]["server_hops"]) == (3, 5)
    assert {"ttl-mismatch", "race"} <= {e["signal"] for e in a["evidence"]}


def test_ttl_gap_alone_is_not_deliberate(tmp_path):
    cap = Capture()
    _reset_flow(cap, race=False, early=False)
    a = only(run(cap, tmp_path), kind="tls")
    assert a["class"] != "deliberate"
    assert "one signal alone" in a["summary"]


def test_client_abort_is_not_injection(tmp_path):
    cap = Capture()
    f = Flow(cap)
    f.handshake()
    f.c2s("PA", client_hello("news.example"))
    f.c2s("RA", dt=0.0005)  # the client gives up itself
    f.s2c("PA", b"\x16\x03\x03\x00\x10" + b"\0" * 16)
    a = only(run(cap, tmp_path), kind="tls")
    assert a["class"] != "deliberate"


def test_reset_after_the_clients_own_reset_interrupts_nothing(tmp_path):
    """An exchange completes, the client resets, and 17 s later a box at hop 1 (TTL 255,
    its own IP-ID) resets too: as a firewall tearing down its state does. Not an injection."""
    cap = Capture()
    f = Flow(cap, dport=80, server_ttl=53)
    f.exchange_ok(http_request("shop.example"), http_response(204, b""))
    f.c2s("RA")
    f.s2c("RA", dt=17.8, ttl=255, ipid=37157)
    a = only(run(cap, tmp_path), kind="http")
    assert a["verdict"] == "ok", a["summary"]


def test_reset_before_the_clients_own_reset_is_still_judged(tmp_path):
    """The same foreign reset, answered by the client's reset instead of following it."""
    cap = Capture()
    f = Flow(cap, dport=80, server_ttl=53)
    f.handshake()
    f.c2s("PA", http_request("shop.example"))
    f.s2c("RA", dt=0.0005, ttl=255, ipid=37157)
    f.c2s("R")
    f.s2c("PA", http_response(200), dt=0.04)
    a = only(run(cap, tmp_path), kind="http")
    assert a["verdict"] == "injected-rst", a["summary"]


def test_server_reset_after_long_transfer_is_the_servers(tmp_path):
    cap = Capture()
    f = Flow(cap, dport=80)
    f.handshake()
    f.c2s("PA", http_request("files.example", "/big"))
    f.s2c("PA", http_response(body=b"y" * 1400)[:1400])
    for _ in range(30):
        f.s2c("A", b"z" * 1400, dt=0.001)
        f.c2s("A")
    f.c2s("PA", b"more", dt=0.01)
    f.s2c("RA", dt=0.040)  # the server's own TTL and next IP-ID
    a = only(run(cap, tmp_path), kind="http")
    assert a["class"] != "deliberate"
    assert a["verdict"] in ("server-reset", "ok")


def _resets_after_a_fin(cap, fin_ttl: int, rst_ttl: int = 52) -> None:
    """The server answers, then a FIN from its side; the client's data still on its way is
    answered 21 ms after the client's last packet (half the round trip) by two resets with
    IP-IDs off the connection's sequence: a Linux server's stack answering segments that
    reach it after it closed (the shape of a real trace: 13 such resets, Ethereum peer)."""
    f = Flow(cap, server_ttl=52, rtt=0.043, server_ipid=25953)
    f.handshake()
    f.c2s("PA", client_hello("peer.example"))
    f.s2c("PA", server_hello())
    f.c2s("PA", b"x" * 300, dt=0.001)
    f.s2c("FA", dt=0.001, ttl=fin_ttl)
    f.c2s("A")
    f.s2c("R", dt=0.021, ipid=45518, ttl=rst_ttl)
    f.s2c("R", dt=0.0001, ipid=45519, ttl=rst_ttl)


def test_resets_after_the_servers_own_fin_are_the_servers(tmp_path):
    cap = Capture()
    _resets_after_a_fin(cap, fin_ttl=52)
    a = only(run(cap, tmp_path), kind="tls")
    assert (a["verdict"], a["class"]) == ("server-reset", "endpoint"), a["summary"]
    assert "after the server's own FIN" in a["summary"]


@pytest.mark.parametrize("fin_ttl, rst_ttl", [
    (61, 52),  # the FIN nine hops of TTL off the SYN-ACK's: not the server's own close
    (52, 61),  # the server's own FIN, then resets from another sender (a box reacting to the response)
])
def test_resets_after_a_fin_not_both_the_servers_are_still_judged(tmp_path, fin_ttl, rst_ttl):
    """The same, but the FIN or the resets have another TTL than the server's: the resets
    (too early, off the IP-ID sequence) are judged as usual."""
    cap = Capture()
    _resets_after_a_fin(cap, fin_ttl=fin_ttl, rst_ttl=rst_ttl)
    a = only(run(cap, tmp_path), kind="tls")
    assert a["verdict"] == "injected-rst", a["summary"]


def test_route_change_mid_flow_is_not_injection(tmp_path):
    cap = Capture()
    f = Flow(cap)
    f.handshake()
    f.c2s("PA", client_hello("news.example"))
    f.s2c("PA", b"\x16\x03\x03\x00\x10" + b"\0" * 16)
    f.sttl = 57  # the path got 3 hops longer
    for _ in range(5):
        f.c2s("PA", b"q" * 100, dt=0.1)
        f.s2c("PA", b"r" * 100)
    f.c2s("PA", b"q" * 100, dt=0.1)
    f.s2c("R", dt=0.040)
    a = only(run(cap, tmp_path), kind="tls")
    assert a["class"] != "deliberate", a["summary"]


def test_reset_burst_with_changing_seq(tmp_path):
    cap = Capture()
    f = _reset_flow(cap, race=False, early=True, ipid=4242)
    base = f.sseq
    f.s2c("RA", dt=0.0001, ttl=62, ipid=4242, seq=base + 1460)
    f.s2c("RA", dt=0.0001, ttl=62, ipid=4242, seq=base + 4380)
    a = only(run(cap, tmp_path), kind="tls")
    assert a["verdict"] == "injected-rst"
    assert "burst" in {e["signal"] for e in a["evidence"]}


def test_copied_ttl_widens_the_hop_bounds(tmp_path):
    cap = Capture()
    # a device at hop 2 copying the trigger's TTL: 64 - 2*(2-1) = 62
    _reset_flow(cap, ttl=62)
    a = only(run(cap, tmp_path), kind="tls")
    assert (a["hop"]["low"], a["hop"]["high"]) == (2, 3)
    assert "copied" in a["summary"]


def test_reset_to_the_syn_racing_the_syn_ack(tmp_path):
    cap = Capture()
    f = Flow(cap)
    f.c2s("S", dt=0.001)
    f.s2c("RA", dt=0.002, ttl=50, ipid=777, ack=f.cseq)
    f.s2c("SA", ipid=0, dt=0.040)
    f.c2s("A")
    a = only(run(cap, tmp_path), kind="tcp")
    assert (a["verdict"], a["trigger"]) == ("injected-rst", "ip")


# ------------------------------------------------------------------ idle-timeout reset

def test_idle_firewall_reset_is_a_fault(tmp_path):
    cap = Capture()
    f = Flow(cap, dport=80)
    f.http_ok_keepalive = None
    f.handshake()
    f.c2s("PA", http_request("news.example"))
    f.s2c("PA", http_response())
    f.c2s("A")
    f.c2s("PA", http_request("news.example", "/2"), dt=120.0)
    f.s2c("R", dt=0.0004, ttl=63, ipid=0)
    a = only(run(cap, tmp_path), kind="http")
    assert (a["verdict"], a["class"], a["trigger"]) == ("idle-timeout-reset", "middlebox-fault", "idle")


# ------------------------------------------------------------------ forged DNS

def _resolver_baseline(cap, n=3):
    for i in range(n):
        dns_exchange(cap, f"site{i}.example.org", [("93.184.216.%d" % (10 + i), 0.030 + i * 0.002, 58, 7000 + i)],
                     sport=51000 + i, txid=100 + i)


def test_racing_dns_answer_off_the_resolvers_baseline(tmp_path):
    cap = Capture()
    _resolver_baseline(cap)
    dns_exchange(cap, "blocked.example.org", [("10.10.34.35", 0.002, 62, 0), ("93.184.216.99", 0.031, 58, 7010)],
                 sport=52000, txid=9)
    a = only(run(cap, tmp_path), kind="dns", name="blocked.example.org")
    assert (a["verdict"], a["trigger"]) == ("forged-dns", "dns-qname")
    assert a["hop"]["from_capture"] == 3
    assert len({e["packet"] for e in a["evidence"]}) >= 2


def test_second_identical_answer_is_not_forgery(tmp_path):
    cap = Capture()
    _resolver_baseline(cap)
    dns_exchange(cap, "dup.example.org", [("93.184.216.50", 0.030, 58, 7020), ("93.184.216.50", 0.031, 58, 7021)],
                 sport=52001, txid=10)
    a = only(run(cap, tmp_path), kind="dns", name="dup.example.org")
    assert a["verdict"] == "ok"


def test_cdn_gives_different_addresses_to_different_resolvers(tmp_path):
    cap = Capture()
    dns_exchange(cap, "cdn.example.org", [("93.184.216.60", 0.030, 58, 7030)], sport=52002, txid=11)
    dns_exchange(cap, "cdn.example.org", [("151.101.1.60", 0.012, 120, 300)], sport=52003, txid=12,
                 resolver="198.51.100.54")
    atts = run(cap, tmp_path)
    assert all(a["verdict"] == "ok" for a in atts), [(a["verdict"], a["summary"]) for a in atts]


def test_multicast_name_queries_are_not_resolver_attempts(tmp_path):
    # seen in three corpus captures and real-merged: mDNS and LLMNR queries to their groups,
    # unanswered as they normally are (silence means "no such name"), were reported as
    # dns-failure; they ask the link, not a resolver
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    cap = Capture()
    dns_exchange(cap, "news.example.org", [("93.184.216.10", 0.030, 58, 7000)])
    cap.add(Ether(src=MAC_C, dst="01:00:5e:00:00:fb") / IP(src="192.0.2.10", dst="224.0.0.251", ttl=255)
            / UDP(sport=5353, dport=5353) / DNS(id=0, qd=DNSQR(qname="_ipp._tcp.local", qtype="PTR")), 0.1)
    cap.add(Ether(src=MAC_C, dst="33:33:00:01:00:03") / IPv6(src="2001:db8::10", dst="ff02::1:3", hlim=1)
            / UDP(sport=53000, dport=5355) / DNS(id=77, qd=DNSQR(qname="printer", qtype="A")), 0.1)
    cap.add(Ether(src=MAC_C, dst="ff:ff:ff:ff:ff:ff") / IP(src="192.0.2.10", dst="255.255.255.255", ttl=64)
            / UDP(sport=53001, dport=53) / DNS(id=78, qd=DNSQR(qname="wpad", qtype="A")), 0.1)
    attempts = run(cap, tmp_path)
    assert [(a["kind"], a["server"]["ip"], a["verdict"]) for a in attempts] == [("dns", "198.51.100.53", "ok")]


def test_query_at_the_end_of_the_capture_was_not_awaited(tmp_path):
    # a live capture ended by Ctrl-C (or a file cut) right after a query sent once was
    # reported as dns-failure; nothing was given time to answer
    cap = Capture()
    dns_exchange(cap, "news.example.org", [("93.184.216.10", 0.030, 58, 7000)], resolver="198.51.100.54")
    dns_exchange(cap, "blog.example.org", [], sport=50001, txid=5, dt=0.2)
    a = only(run(cap, tmp_path), name="blog.example.org")
    assert a["verdict"] == "inconclusive", a["summary"]
    assert a["summary"].startswith("The capture ended 0.00 s after the query was sent")
    # the capture went on for 3 s more: the resolver was silent
    cap = Capture()
    dns_exchange(cap, "blog.example.org", [], sport=50001, txid=5)
    dns_exchange(cap, "news.example.org", [("93.184.216.10", 0.030, 58, 7000)], resolver="198.51.100.54", dt=3.0)
    assert only(run(cap, tmp_path), name="blog.example.org")["verdict"] == "dns-failure"
    # sent twice in the capture's last second: the client's own timer ran out once
    cap = Capture()
    dns_exchange(cap, "news.example.org", [("93.184.216.10", 0.030, 58, 7000)], resolver="198.51.100.54")
    dns_exchange(cap, "blog.example.org", [], sport=50001, txid=5, dt=0.2)
    dns_exchange(cap, "blog.example.org", [], sport=50001, txid=5, dt=0.5)
    assert only(run(cap, tmp_path), name="blog.example.org")["verdict"] == "dns-failure"


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_query_answered_by_port_unreachable(tmp_path, v6):
    # a resolver host with nothing on port 53 answers with its kernel's port unreachable,
    # quoting the query: the engine finds the pending query by the quote's client address and
    # port, and only that one (another client port's query, sent just before, stays unanswered)
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6, ICMPv6DestUnreach
    client, resolver = ("2001:db8::10", "2001:db8:53::53") if v6 else ("192.0.2.10", "198.51.100.53")

    def ip(src, dst, ttl):
        return IPv6(src=src, dst=dst, hlim=ttl) if v6 else IP(src=src, dst=dst, ttl=ttl, id=9)

    cap = Capture()
    for sport, txid, name in ((50001, 5, "other.example.org"), (50002, 6, "blog.example.org")):
        q = ip(client, resolver, 64) / UDP(sport=sport, dport=53) / DNS(id=txid, rd=1, qd=DNSQR(qname=name))
        cap.add(Ether(src=MAC_C, dst=MAC_S) / q, 0.5)
    quoted = bytes(q)
    err = (IPv6(src=resolver, dst=client, hlim=58) / ICMPv6DestUnreach(code=4) / quoted if v6 else
           IP(src=resolver, dst=client, ttl=58, id=0) / ICMP(type=3, code=3) / quoted)
    frame = cap.add(Ether(src=MAC_S, dst=MAC_C) / err, 0.002)
    # the capture goes on, so that neither query ends merely unawaited
    dns_exchange(cap, "news.example.org", [("93.184.216.10", 0.030, 58, 7000)], resolver="198.51.100.54", dt=3.0)
    for jobs in (1, 2):
        attempts = run(cap, tmp_path, jobs=jobs)
        a = only(attempts, name="blog.example.org")
        assert (a["verdict"], a["rule"]) == ("dns-failure", "endpoint.dns-icmp"), a["summary"]
        assert [e["frame"] for e in a["dns"]["icmp"]] == [frame]
        other = only(attempts, name="other.example.org")
        assert other["dns"]["icmp"] == [] and other["verdict"] != "ok"


def test_loopback_answer_for_a_public_name(tmp_path):
    cap = Capture()
    dns_exchange(cap, "twitter.com", [("127.0.0.1", 0.030, 58, 7000)], sport=52004, txid=13)
    a = only(run(cap, tmp_path), kind="dns")
    assert a["verdict"] == "forged-dns"


def test_private_answer_for_a_private_name_is_fine(tmp_path):
    cap = Capture()
    dns_exchange(cap, "printer.corp", [("10.1.2.3", 0.030, 58, 7000)], sport=52005, txid=14)
    a = only(run(cap, tmp_path), kind="dns")
    assert a["verdict"] == "ok"


# ------------------------------------------------------------------ forged block pages

def test_forged_block_page_racing_the_real_response(tmp_path):
    cap = Capture()
    f = Flow(cap, dport=80)
    f.handshake()
    f.c2s("PA", http_request("shop.example"))
    start = f.sseq
    f.s2c("PA", http_response(403, b"<html>Blocked</html>"), dt=0.0006, ttl=62, ipid=0)
    f.c2s("A")
    f.s2c("PA", http_response(200), dt=0.040, seq=start)
    a = only(run(cap, tmp_path), kind="http")
    assert (a["verdict"], a["trigger"]) == ("injected-blockpage", "host")
    assert a["hop"]["from_capture"] == 3


def test_small_403_from_the_server_itself_is_not_a_block_page(tmp_path):
    cap = Capture()
    f = Flow(cap, dport=80)
    f.handshake()
    f.c2s("PA", http_request("shop.example", "/admin"))
    f.s2c("PA", http_response(403, b"<html>Forbidden</html>"))
    f.c2s("A")
    a = only(run(cap, tmp_path), kind="http")
    assert a["verdict"] == "ok"


def _front_box_flow(cap, *, fin_seq_after_response: bool):
    """A front box (initial TTL 255, own IP-ID) answers the handshake and later sends a FIN;
    the data comes from a server farther away (TTL 50). The FIN either continues the
    response's bytes or sits where the front box's own data ended (before them)."""
    f = Flow(cap, dport=80, server_ttl=252)
    f.handshake()
    f.c2s("PA", http_request("shop.example"))
    start = f.sseq
    f.s2c("PA", http_response(200, b"<html>hello</html>"), ttl=50, ipid=40000)
    f.c2s("A")
    f.c2s("FA", dt=0.5)
    f.s2c("FA", ipid=7, seq=None if fin_seq_after_response else start)


def test_handshake_box_continuing_the_response_is_one_stream(tmp_path):
    """A load balancer's FIN where the backend's data ends: one stream from two boxes
    (TTL gap and the box's later packet are not a forgery and its race)."""
    cap = Capture()
    _front_box_flow(cap, fin_seq_after_response=True)
    a = only(run(cap, tmp_path), kind="http")
    assert a["verdict"] == "ok", a["summary"]


def test_handshake_box_not_continuing_the_response_still_races(tmp_path):
    """The same packets, but the handshake box's FIN sits before the response's bytes,
    as the real server's would after a forged page: a forgery."""
    cap = Capture()
    _front_box_flow(cap, fin_seq_after_response=False)
    a = only(run(cap, tmp_path), kind="http")
    assert a["verdict"] == "injected-blockpage", a["summary"]


# ------------------------------------------------------------------ silent drops and their controls

def test_sni_drop_with_a_control_name(tmp_path):
    cap = Capture()
    Flow(cap, sport=40001).tls_ok("news.example")
    f = Flow(cap, sport=40002)
    f.handshake()
    f.resend(client_hello("blocked.example"), 5)
    a = only(run(cap, tmp_path), kind="tls", name="blocked.example")
    assert (a["verdict"], a["trigger"]) == ("sni-drop", "sni")
    assert "news.example" in a["summary"]


def test_sni_drop_without_a_control_is_inconclusive_and_says_so(tmp_path):
    cap = Capture()
    f = Flow(cap, sport=40002)
    f.handshake()
    f.resend(client_hello("blocked.example"), 5)
    a = only(run(cap, tmp_path), kind="tls")
    assert a["verdict"] == "inconclusive"
    assert "control" in a["summary"] and SRV in a["summary"]


def test_request_acknowledged_but_unanswered_is_the_server(tmp_path):
    cap = Capture()
    Flow(cap, sport=40001, dport=80).http_ok("news.example")
    f = Flow(cap, sport=40002, dport=80)
    f.handshake()
    f.c2s("PA", http_request("slow.example"))
    f.s2c("A")
    f.c2s("FA", dt=10.0)
    a = only(run(cap, tmp_path), kind="http", name="slow.example")
    assert a["verdict"] == "server-timeout"


def _acked_request_then(cap, sport: int, name: str, closer: str, after: float) -> None:
    f = Flow(cap, sport=sport, dport=80)
    f.handshake()
    f.c2s("PA", http_request(name))
    f.s2c("A")
    if closer == "client":
        f.c2s("FA", dt=after)
        f.s2c("FA")
    else:
        f.s2c("FA", dt=after)
        f.c2s("FA")


def test_client_that_closed_at_once_did_not_wait_for_an_answer(tmp_path):
    # seen in real traces: the client closed (or the capture ended) 0.0-0.3 s after its
    # request; "the server never answered" needs at least TCP's own 1 s timeout of waiting
    cap = Capture()
    Flow(cap, sport=40001, dport=80).http_ok("news.example")
    _acked_request_then(cap, 40002, "quick.example", "client", 0.05)
    a = only(run(cap, tmp_path), kind="http", name="quick.example")
    assert a["verdict"] == "inconclusive", a["summary"]
    assert "before an answer could be expected" in a["summary"], a["summary"]


def test_server_that_closed_without_answering_is_still_the_server(tmp_path):
    cap = Capture()
    Flow(cap, sport=40001, dport=80).http_ok("news.example")
    _acked_request_then(cap, 40002, "closer.example", "server", 0.05)
    a = only(run(cap, tmp_path), kind="http", name="closer.example")
    assert a["verdict"] == "server-timeout", a["summary"]


def test_answer_whose_start_the_capture_missed_is_not_silence(tmp_path):
    # seen in a real trace: the server's first 753 bytes are not in the capture, 31 KB after
    # them are; "the server sent nothing else" would be false
    cap = Capture()
    f = Flow(cap, sport=40002, dport=80)
    f.handshake()
    f.c2s("PA", http_request("gap.example"))
    f.s2c("A")
    body = http_response()
    f.sseq += 753  # the first segment of the answer is missing from the capture
    f.s2c("PA", body[753:], dt=0.4)
    f.c2s("A")
    f.c2s("FA", dt=10.0)
    a = only(run(cap, tmp_path), kind="http", name="gap.example")
    assert a["verdict"] != "server-timeout", a["summary"]
    assert "no answer" not in a["summary"] and "sent nothing else" not in a["summary"], a["summary"]


def test_syn_ack_with_a_new_isn_then_the_answer_after_it(tmp_path):
    # seen in a real trace: SYN-ACKs retransmitted with a different ISN each; the server's
    # data follows the last one (the one the client acknowledged)
    cap = Capture()
    f = Flow(cap, sport=40003, dport=443)
    f.c2s("S", dt=0.001)
    isn = f.sseq
    f.s2c("SA", ipid=0, seq=isn - 500000)
    f.s2c("SA", ipid=0, seq=isn - 1, dt=2.0)
    f.c2s("A", dt=0.01)
    f.c2s("PA", client_hello("new-isn.example"))
    f.s2c("PA", server_hello())
    f.c2s("A")
    a = only(run(cap, tmp_path), kind="tls", name="new-isn.example")
    assert a["verdict"] == "ok", a["summary"]


def _request_dropped_beside_control(tmp_path, sends: int) -> dict:
    """A GET for blocked.example sent ``sends`` times, never acknowledged, while
    another Host completed at the same server: the attempt's report."""
    cap = Capture()
    Flow(cap, sport=40001, dport=80).http_ok("news.example")
    f = Flow(cap, sport=40002, dport=80)
    f.handshake()
    f.resend(http_request("blocked.example"), sends)
    return only(run(cap, tmp_path), kind="http", name="blocked.example")


def test_host_drop_with_control(tmp_path):
    a = _request_dropped_beside_control(tmp_path, 5)
    assert (a["verdict"], a["trigger"]) == ("host-drop", "host")


# ------------------------------------------------------------------ address blocks

def test_address_dropped_while_others_answer(tmp_path):
    cap = Capture()
    Flow(cap, sport=40001, server="203.0.113.8").tls_ok("news.example")
    f = Flow(cap, sport=40002, server="203.0.113.9")
    seq = f.cseq
    f.c2s("S", dt=0.001)
    f.c2s("S", dt=1.0, seq=seq)
    f.c2s("S", dt=2.0, seq=seq)
    a = only(run(cap, tmp_path), kind="tcp")
    assert (a["verdict"], a["trigger"]) == ("ip-block", "ip")
    assert a["confidence"] <= 0.7  # a dead server looks the same
    assert "down" in a["summary"]


@pytest.mark.parametrize("gaps, blocked", [
    ((1, 2, 4, 8, 16, 32), True),  # Linux's six SYN retries (tcp_syn_retries=6)
    ((1, 2, 120), True),  # backed off to TCP_RTO_MAX, still one attempt's retries
    ((1, 121), False),  # longer than any stack waits: separate tries reusing port and ISN
])
def test_unanswered_syns_count_as_one_attempt_only_within_the_longest_back_off(tmp_path, gaps, blocked):
    cap = Capture()
    Flow(cap, sport=40001, server="203.0.113.8").tls_ok("news.example")
    f = Flow(cap, sport=40002, server="203.0.113.9")
    seq = f.cseq
    f.c2s("S", dt=0.001)
    for g in gaps:
        f.c2s("S", dt=float(g), seq=seq)
    a = only(run(cap, tmp_path), kind="tcp")
    if blocked:
        assert a["verdict"] == "ip-block"
    else:
        assert a["verdict"] == "inconclusive" and "2.0 min apart" in a["summary"]


def test_unanswered_syns_with_no_other_server_are_inconclusive(tmp_path):
    cap = Capture()
    f = Flow(cap, sport=40002, server="203.0.113.9")
    seq = f.cseq
    f.c2s("S", dt=0.001)
    f.c2s("S", dt=1.0, seq=seq)
    a = only(run(cap, tmp_path), kind="tcp")
    assert a["verdict"] == "inconclusive"


def test_icmp_administratively_prohibited(tmp_path):
    cap = Capture()
    f = Flow(cap, sport=40002, server="203.0.113.9")
    f.c2s("S", dt=0.001)
    icmp_prohibited(cap, f, cap.pkts[-1], ttl=63)
    a = only(run(cap, tmp_path), kind="tcp")
    assert (a["verdict"], a["trigger"], a["hop"]["from_capture"]) == ("ip-block", "ip", 2)


# ------------------------------------------------------------------ middlebox faults

def test_pmtu_black_hole(tmp_path):
    cap = Capture()
    Flow(cap, sport=40001, dport=80).http_ok("files.example", "/small")
    f = Flow(cap, sport=40002, dport=80)
    f.handshake()
    body = http_request("files.example", "/upload") + b"u" * 3000
    seq = f.cseq
    f.c2s("A", body[:1448])
    f.c2s("PA", body[1448:2896])
    f.c2s("PA", body[2896:])  # the small tail gets through...
    f.s2c("A", ack=seq)  # ...and provokes a duplicate ACK for the hole
    for rto in (0.2, 0.4, 0.8):
        f.c2s("A", body[:1448], dt=rto, seq=seq)
    a = only(run(cap, tmp_path), kind="http", name="files.example", verdict="pmtu-blackhole")
    assert (a["class"], a["trigger"]) == ("middlebox-fault", "size")


def test_ecn_syns_unanswered_plain_syn_answered(tmp_path):
    cap = Capture()
    f = Flow(cap, dport=80)
    seq = f.cseq
    f.c2s("SEC", dt=0.001)
    f.cseq = seq
    f.c2s("S", dt=1.0)
    f.s2c("SA", ipid=0)
    f.c2s("A")
    f.c2s("PA", http_request("news.example"))
    f.s2c("PA", http_response())
    a = only(run(cap, tmp_path), kind="http")
    assert (a["verdict"], a["trigger"]) == ("ecn-blackhole", "ecn")


def test_big_hello_dropped_small_hello_passes(tmp_path):
    cap = Capture()
    Flow(cap, sport=40001).tls_ok("news.example")
    f = Flow(cap, sport=40002)
    f.handshake()
    hello = client_hello("news.example", pad=2000)
    seq = f.cseq
    f.c2s("A", hello[:1448])
    f.c2s("PA", hello[1448:])
    for rto in (0.2, 0.4, 0.8):
        f.c2s("A", hello[:1448], dt=rto, seq=seq)
    atts = run(cap, tmp_path)
    bad = [a for a in atts if a["verdict"] != "ok"]
    assert len(bad) == 1 and (bad[0]["verdict"], bad[0]["trigger"]) == ("tls-intolerance", "size")


# ------------------------------------------------------------------ the faults' nearest look-alikes

def test_lookalike_of_idle_reset_without_idle_is_not_a_fault(tmp_path):
    """The same nearer-hop reset on the first request, with no idle period: injection, not a forgetful firewall."""
    cap = Capture()
    f = Flow(cap, dport=80)
    f.handshake()
    f.c2s("PA", http_request("news.example"))
    f.s2c("R", dt=0.0004, ttl=63, ipid=0)
    f.s2c("A", dt=0.040)
    a = only(run(cap, tmp_path), kind="http")
    assert a["verdict"] != "idle-timeout-reset"
    assert a["verdict"] == "injected-rst"


def test_lookalike_of_pmtu_small_request_dropped_is_not_pmtu(tmp_path):
    a = _request_dropped_beside_control(tmp_path, 4)
    assert a["verdict"] != "pmtu-blackhole"


def test_lookalike_of_pmtu_big_upload_that_works_is_ok(tmp_path):
    cap = Capture()
    f = Flow(cap, dport=80)
    f.handshake()
    body = http_request("files.example", "/upload") + b"u" * 3000
    f.c2s("A", body[:1448])
    f.c2s("PA", body[1448:2896])
    f.c2s("PA", body[2896:])
    f.s2c("PA", http_response())
    a = only(run(cap, tmp_path), kind="http")
    assert a["verdict"] == "ok"


def test_lookalike_of_pmtu_handshake_repeated_with_the_same_isn_is_not_pmtu(tmp_path):
    # seen in a merged real trace: two connections on one 4-tuple with one ISN, 14 s apart
    # (one stream, as Wireshark counts them); the second's 580-byte payload sits where the
    # first's 390 bytes did. The second SYN-ACK acknowledges the SYN, not data, and the
    # small segment starts at the hole itself: nothing shows a small segment got through.
    cap = Capture()
    Flow(cap, sport=40001, dport=389).exchange_ok(b"q" * 100, b"r" * 100)
    f = Flow(cap, sport=50000, dport=389)
    f.handshake()
    seq = f.cseq
    f.c2s("PA", b"x" * 390)
    f.c2s("S", dt=14.0, seq=seq - 1)
    f.s2c("SA", ipid=0, seq=f.sseq - 1, ack=seq)
    f.c2s("A", seq=seq)
    f.c2s("PA", b"y" * 580, seq=seq)
    a = only(run(cap, tmp_path), kind="tcp", server={"ip": "203.0.113.7", "port": 389}, client={"ip": "192.0.2.10", "port": 50000})
    assert a["verdict"] != "pmtu-blackhole", a["summary"]


def test_lookalike_of_tls_intolerance_small_hello_dropped_is_sni(tmp_path):
    cap = Capture()
    Flow(cap, sport=40001).tls_ok("news.example", pad=2000)  # even a big hello passes here
    f = Flow(cap, sport=40002)
    f.handshake()
    f.resend(client_hello("video.example"), 4)
    a = only(run(cap, tmp_path), kind="tls", name="video.example")
    assert a["verdict"] == "sni-drop"


def test_lookalike_of_ecn_blackhole_plain_syns_unanswered_too(tmp_path):
    cap = Capture()
    Flow(cap, sport=40001, server="203.0.113.8").tls_ok("news.example")
    f = Flow(cap, sport=40002, server="203.0.113.9", dport=80)
    seq = f.cseq
    f.c2s("SEC", dt=0.001)
    f.c2s("S", dt=1.0, seq=seq)
    f.c2s("S", dt=2.0, seq=seq)
    a = only(run(cap, tmp_path), kind="tcp")
    assert a["verdict"] != "ecn-blackhole"


def test_slot_filler_builds_the_same_objects_as_the_constructor():
    import dataclasses
    import pickle

    import pytest

    from forensics.model import Evidence, Finding, Hop, Verdict, slot_filler

    e = Evidence(0, 7, "rst", "RST TTL 54")
    f = Finding("rst", "rst-forged", 0.9, "detail", (e,), (("trigger", "sni"),))
    v = Verdict("injected-rst", "deliberate", "sni", 0.93, "Detail.", "deliberate.rst", Hop(3, 3, 3, 9), (e,))
    for obj in (e, f, v):
        args = [getattr(obj, fl.name) for fl in dataclasses.fields(obj)]
        made = slot_filler(type(obj))(*args)
        assert type(made) is type(obj) and made == obj and hash(made) == hash(obj)
        assert pickle.loads(pickle.dumps(made)) == obj
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.__setattr__(dataclasses.fields(obj)[0].name, None)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self):
            pass

    with pytest.raises(AssertionError):
        slot_filler(Checked)


def test_the_record_constructors_build_what_the_classes_build():
    """``model.new_*`` (``slot_filler``) make the records of every attempt: on the records of
    real lab captures, each one equals, field for field, what its class's own constructor makes
    of the same fields, and is as frozen and as picklable."""
    import dataclasses
    import pickle
    from pathlib import Path

    from forensics import api, model

    factories = {f"new_{cls.__name__}": cls for cls in vars(model).values()
                 if isinstance(cls, type) and dataclasses.is_dataclass(cls)}
    made = {name: getattr(model, name) for name in dir(model) if name.startswith("new_")}
    by_class = {}
    for name, make in made.items():
        assert make.__name__ in factories, f"{name} builds no record class of the model"
        by_class[factories[make.__name__]] = make
    assert {c.__name__ for c in by_class} >= {"Attempt", "TcpConn", "Marker", "TcpOptions", "Endpoint",
                                              "DnsTransaction", "DnsResponse", "DnsAnswer"}
    seen: dict[type, int] = {}

    def walk(obj):
        if isinstance(obj, (list, tuple)):
            for x in obj:
                walk(x)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            cls = type(obj)
            values = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
            if cls in by_class:
                seen[cls] = seen.get(cls, 0) + 1
                mine, theirs = by_class[cls](*values), cls(*values)
                assert type(mine) is cls
                for f in dataclasses.fields(cls):
                    assert getattr(mine, f.name) is getattr(theirs, f.name)
                assert repr(mine) == repr(theirs)
                with pytest.raises(dataclasses.FrozenInstanceError):
                    setattr(mine, dataclasses.fields(cls)[0].name, None)
                back = pickle.loads(pickle.dumps(mine))
                assert type(back) is cls and repr(back) == repr(theirs)
            for v in values:
                walk(v)

    root = Path(__file__).resolve().parent.parent / "pcaps"
    for sample in ("rst-injector", "dns-injector", "blockpage-injector", "benign-closed-server"):
        report = api.analyze([str(root / sample)], keep_attempts=True)
        walk(report.attempts)
    for cls in (model.Attempt, model.TcpConn, model.Marker, model.TcpOptions, model.Endpoint,
                model.DnsTransaction, model.DnsResponse, model.DnsAnswer):
        assert seen.get(cls), f"no {cls.__name__} in the samples: the test checks nothing of it"
