"""The TLS lane (``forensics.tlslane``) gives what the general path gives.

For every attempt the lane takes in the samples (the lab's captures), a generated capture with
injected resets and dropped ClientHellos, a capture of ECN and retransmitted SYNs and the
corpus: the general path's findings are
``exchange-complete`` alone, its early verdict needs no check against the controls, its
verdict's piece is the lane's byte for byte, and the controls fed by both are equal. And the
reports are the same with the lane closed.
"""

from __future__ import annotations

import pytest

from conftest import ROOT, assert_same_reports_without, generated, handed_on, reworded, with_samples_and_corpus
from flows import Capture, Flow, client_hello, http_request, http_response, server_hello

from forensics import tlslane
from forensics.classify.engine import Judge
from forensics.detectors.features import asks_ecn
from forensics.model import SEG_FLAGS, TcpConn
from forensics.reassembly.attempts import from_tcp
from forensics.report import verdict_piece


def _generated(tmp_path) -> str:
    return generated(tmp_path, 7, "--rst", "0.05", "--sni-drop", "0.05")


def _crafted(tmp_path) -> str:
    """TLS exchanges the lab and the generator do not make: an ECN SYN answered, an ECN SYN
    left unanswered for a plain one, a SYN sent twice, a capture begun after the handshake; HTTP
    answers other than 200; over IPv4 and IPv6 (documentation addresses)."""
    cap = Capture()
    for k, (client, server) in enumerate((("192.0.2.10", "203.0.113.7"), ("2001:db8::10", "2001:db8:2::7"))):
        port = 41000 + 10 * k
        f = Flow(cap, client, server, sport=port)  # ECN asked and answered
        f.c2s("SEC", dt=0.001)
        f.s2c("SAE", ipid=0)
        f.c2s("A")
        f.c2s("PA", client_hello("ecn.example"))
        f.s2c("PA", server_hello())
        f.c2s("FA")
        f.s2c("FA", dt=0.001)
        f = Flow(cap, client, server, sport=port + 1)  # an ECN SYN unanswered, then a plain one
        f.c2s("SEC", dt=0.001, seq=f.cseq)
        f.c2s("S", dt=1.0)
        f.s2c("SA", ipid=0)
        f.c2s("A")
        f.c2s("PA", client_hello("plain.example"))
        f.s2c("PA", server_hello())
        f = Flow(cap, client, server, sport=port + 2)  # a SYN sent twice
        f.c2s("S", dt=0.001, seq=f.cseq)
        f.tls_ok("twice.example")
        f = Flow(cap, client, server, sport=port + 3)  # the capture begins after the handshake
        f.c2s("PA", client_hello("late.example"))
        f.s2c("PA", server_hello())
        f.c2s("FA")
        f.s2c("FA", dt=0.001)
        for j, status in enumerate((301, 404, 503)):  # HTTP answers besides 200, from the server itself
            f = Flow(cap, client, server, sport=port + 4 + j, dport=80)
            f.exchange_ok(http_request(f"s{status}.example", "/page"),
                          http_response(status, extra="Location: http://www.example/\r\n" if status == 301 else ""))
    return cap.write(tmp_path / "crafted.pcap")


def _inputs(tmp_path) -> list[str]:
    return with_samples_and_corpus(_generated(tmp_path), _crafted(tmp_path))


def test_the_lane_gives_what_the_general_path_gives(tmp_path, monkeypatch):
    seen = {"taken": 0, "http taken": 0, "http blockpage left": 0, "tls left": 0, "tls ok left": 0, "other kinds": 0, "ecn": 0, "ipv6": 0}
    for path in _inputs(tmp_path):
        general, laned = Judge([]), Judge([])
        lane = tlslane.TlsLane(laned)
        assert lane.open
        for c in handed_on(path, monkeypatch, TcpConn):
            for a in from_tcp(c):
                piece = lane.take(a)
                if piece is None:
                    if a.kind == "http" and a.response is not None:
                        # a block page (the lab's injectors, front box and office filter) is left
                        facts = Judge([]).local(a)
                        seen["http blockpage left"] += any(f.detector == "blockpage" for f in facts.findings)
                    if a.kind != "tls":
                        seen["other kinds"] += 1
                        continue
                    seen["tls left"] += 1
                    facts = Judge([]).local(a)
                    seen["tls ok left"] += [f.signal for f in facts.findings] == ["exchange-complete"]
                    continue
                seen["taken"] += 1
                seen["http taken"] += a.kind == "http"
                seen["ecn"] += any(asks_ecn(r[SEG_FLAGS]) for r in c.rows)
                seen["ipv6"] += ":" in a.server.ip
                facts = general.local(a)
                assert [f.signal for f in facts.findings] == ["exchange-complete"], (path, a)
                got = general.early(facts)
                assert got is not None, (path, a)
                v, key = got
                assert key is None and (v.verdict, v.rule) == (lane.verdict.verdict, lane.verdict.rule), (path, a)
                assert piece == verdict_piece(v, a.input), (path, a)
        # the controls fed by the lane (the attempts it took) equal those of the general path
        assert laned.controls == general.controls, path
    assert seen["taken"] > 200 and seen["tls left"] > 20 and seen["other kinds"] > 100, seen
    assert seen["http taken"] > 20 and seen["http blockpage left"] > 2, seen
    assert seen["ecn"] and seen["ipv6"], seen


def test_the_lane_leaves_tls_attempts_with_more_to_say(tmp_path, monkeypatch):
    """Resets, dropped ClientHellos, unanswered SYNs: left to the general path, which finds
    more than a completed exchange in each."""
    lane = tlslane.TlsLane(Judge([]))
    judge = Judge([])
    left = 0
    for c in handed_on(_generated(tmp_path), monkeypatch, TcpConn):
        for a in from_tcp(c):
            if a.kind == "tls" and lane.take(a) is None:
                left += 1
                assert [f.signal for f in judge.local(a).findings] != ["exchange-complete"], a
    assert left > 20


def test_the_lane_stays_closed_when_the_rules_word_the_verdict_otherwise(monkeypatch):
    assert tlslane.TlsLane(Judge([])).open
    monkeypatch.setattr(tlslane, "apply_rules", reworded(tlslane.apply_rules))
    assert not tlslane.TlsLane(Judge([])).open


@pytest.mark.parametrize("jobs", [1, 2])
def test_reports_are_the_same_with_the_lane_closed(tmp_path, monkeypatch, jobs):
    inputs = _inputs(tmp_path)
    assert_same_reports_without("TLS_LANE", inputs[:2] if jobs == 2 else inputs, monkeypatch, jobs)


def test_the_http_answers_kept_are_bounded_and_the_others_still_served(tmp_path, monkeypatch):
    """Past ``MAX_HTTP_ANSWERS`` answers the lane keeps no more templates, and still gives each
    HTTP attempt the general path's piece (a template made for it alone)."""
    conns = handed_on(str(ROOT / "pcaps"), monkeypatch, TcpConn) + handed_on(_crafted(tmp_path), monkeypatch, TcpConn)
    monkeypatch.setattr(tlslane, "MAX_HTTP_ANSWERS", 1)
    lane, judge = tlslane.TlsLane(Judge([])), Judge([])
    statuses = set()
    for c in conns:
        for a in from_tcp(c):
            if a.kind != "http":
                continue
            piece = lane.take(a)
            if piece is not None:
                statuses.add(a.response.status)
                got = judge.early(judge.local(a))
                assert piece == verdict_piece(got[0], a.input), a
    assert statuses == {200, 301, 404, 503}, statuses
    assert len(lane._http) == 1
