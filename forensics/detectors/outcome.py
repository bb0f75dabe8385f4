"""Outcome: what happened to an attempt, described as findings.

Detects: whether the exchange completed; SYNs that went unanswered; a SYN
answered by a reset; a first payload sent again and again with no answer; DNS
queries with no answer or an error rcode; and the facts that forbid calling an
exchange ok: DNS responses that disagree, packets from the server's side after a
reset from that side, server bytes that contradict bytes already received.

Known false positives: a capture that starts or ends in the middle of a
connection looks like an unanswered one; a capture taken on one leg of an
asymmetric route sees only one direction.
"""

from __future__ import annotations

import numpy as np

from ..model import C2S, S2C, Attempt, Finding, rcode_text
from ..sources.decode import TCP_ACK, TCP_CWR, TCP_ECE, TCP_RST, TCP_SYN
from .base import doc_parts, ev, finding

NAME = "outcome"

#: The signals this detector reports, and what each means.
SIGNALS = {
    'exchange-complete': 'the exchange the attempt expects happened (ServerHello, HTTP response, data both ways)',
    'syn-rst': 'the SYN was answered by a reset and no SYN-ACK came',
    'syn-unanswered': 'SYNs sent, nothing came back',
    'payload-unanswered': 'the first client payload was sent (and re-sent) with no answer',
    'dns-answered': 'at least one response with NOERROR or NXDOMAIN',
    'dns-error': 'responses, all with an error rcode',
    'dns-icmp-error': "the query was answered by an ICMP error from the resolver's side",
    'dns-unanswered': 'the query got no response',
    'dns-disagreeing-answers': 'two or more responses to one query with different answers or sources',
    'server-side-after-reset': "packets from the server's side kept coming after a reset from that side",
    'conflicting-server-data': 'server bytes contradict bytes already received at the same sequence numbers',
    'ecn-syn-unanswered': "SYNs asking for ECN went unanswered, the same connection's plain SYN was answered",
    'data-answered-by-reset': "the client's last data got only a reset from the server's side",
}


class OutcomeDetector:
    name = NAME
    detects, false_positives = doc_parts(__doc__)

    def run(self, a: Attempt) -> list[Finding]:
        if a.dns is not None and a.transport == "udp":
            return _dns(a)
        if a.tcp is not None:
            return _tcp(a)
        return []


def _dns(a: Attempt) -> list[Finding]:
    txn = a.dns
    q = txn.query_frames[0]
    if not txn.responses and txn.icmp:
        e = txn.icmp[0]
        return [finding(NAME, "dns-icmp-error", 1.0, f"the query was answered by ICMP \"{e.describe()}\" from {e.router}",
                        [ev(a.input, q, "query", f"{txn.qtype} {txn.qname}"),
                         ev(e.input, e.frame, "icmp", f"{e.describe()} from {e.router}")])]
    if not txn.responses:
        waited = ""
        return [finding(NAME, "dns-unanswered", 1.0,
                        f"query sent {len(txn.query_frames)} time(s), no response{waited}",
                        [ev(a.input, q, "query", f"{txn.qtype} {txn.qname}")], sends=len(txn.query_frames))]
    out = []
    first = txn.responses[0]
    rc = {r.rcode for r in txn.responses}
    if all(r.rcode not in (0, 3) for r in txn.responses):
        out.append(finding(NAME, "dns-error", 1.0, f"the resolver answered {rcode_text(first.rcode)}",
                           [ev(a.input, q, "query", f"{txn.qtype} {txn.qname}"),
                            ev(first.input, first.frame, "rcode", rcode_text(first.rcode))],
                           rcode=first.rcode))
    else:
        sets = {r.addresses() for r in txn.responses if r.rcode in (0, 3)}
        sources = {r.src for r in txn.responses}
        if len(sets) > 1 or len(sources) > 1:
            detail = "; ".join(f"frame {r.frame}: {', '.join(sorted(r.addresses())) or rcode_text(r.rcode)} "
                               f"(IP TTL {r.ttl}, +{(r.ts - txn.query_ts) * 1000:.1f} ms)" for r in txn.responses[:4])
            out.append(finding(NAME, "dns-disagreeing-answers", 1.0,
                               f"{len(txn.responses)} responses disagree: {detail}",
                               [ev(r.input, r.frame, "response", ", ".join(sorted(r.addresses())) or rcode_text(r.rcode))
                                for r in txn.responses[:4]]))
        out.append(finding(NAME, "dns-answered", 1.0,
                           f"{len(txn.responses)} response(s), first after "
                           f"{(first.ts - txn.query_ts) * 1000:.1f} ms ({'/'.join(rcode_text(x) for x in sorted(rc))})",
                           [ev(a.input, q, "query", f"{txn.qtype} {txn.qname}"),
                            ev(first.input, first.frame, "response", ", ".join(sorted(first.addresses())) or rcode_text(first.rcode))]))
    return out


def _tcp(a: Attempt) -> list[Finding]:
    c = a.tcp
    segs = c.segs
    out: list[Finding] = []
    s2c = segs[segs["dir"] == S2C]
    c2s = segs[segs["dir"] == C2S]
    syn_frames = c2s["frame"][(c2s["flags"] & (TCP_SYN | TCP_ACK)) == TCP_SYN]
    server_answered = len(s2c) > 0
    if c.syn is not None and c.synack is None:
        rst = s2c[(s2c["flags"] & TCP_RST) != 0]
        if len(rst):
            r = rst[0]
            out.append(finding(NAME, "syn-rst", 1.0,
                               f"the SYN was answered by a reset (TTL {int(r['ttl'])})",
                               [ev(a.input, int(syn_frames[0]), "syn", "SYN sent"),
                                ev(int(r["input"]), int(r["frame"]), "rst", f"RST TTL {int(r['ttl'])}")],
                               ttl=int(r["ttl"])))
        elif not server_answered:
            span = (float(c2s["ts"][-1]) - float(c2s["ts"][0])) if len(c2s) else 0.0
            out.append(finding(NAME, "syn-unanswered", 1.0,
                               f"SYN sent {c.syn_count} time(s) over {span:.1f} s, no answer",
                               [ev(a.input, int(f), "syn", "SYN") for f in syn_frames[:4]],
                               sends=c.syn_count, span=span))
    out.extend(_contradictions(a, s2c))
    completed = _completed(a)
    if completed:
        out.append(finding(NAME, "exchange-complete", 1.0, completed,
                           [ev(a.input, c.server_payload_frames[0], "answer", completed)] if c.server_payload_frames else []))
    elif c.client_payload and not c.server_payload:
        first_ts = float(c2s["ts"][c2s["plen"] > 0][0])
        waited = c.last_ts - first_ts
        what = {"tls": "ClientHello", "http": "request"}.get(a.kind, "first payload")
        out.append(finding(NAME, "payload-unanswered", 1.0,
                           f"{what} sent {c.client_payload_sends} time(s), no answer in {waited:.1f} s",
                           [ev(a.input, f, "payload", what) for f in c.client_payload_frames[:2]],
                           sends=c.client_payload_sends, waited=waited))
    return out


def _contradictions(a: Attempt, s2c) -> list[Finding]:
    """Server-side packets after a server-side reset; server bytes that contradict earlier ones."""
    c = a.tcp
    out = []
    rst = [m for m in c.markers if m.kind == "rst" and m.dir == S2C]
    if rst:
        first = rst[0]
        later = s2c[(s2c["ts"] > first.ts) & ((s2c["flags"] & TCP_RST) == 0)]
        if len(later):
            r = later[0]
            out.append(finding(NAME, "server-side-after-reset", 1.0,
                               f"{len(later)} packet(s) from the server's side arrived after a reset from that side "
                               f"(reset frame {first.frame}, TTL {first.ttl}; next frame {int(r['frame'])}, TTL {int(r['ttl'])})",
                               [ev(first.input, first.frame, "rst", f"RST TTL {first.ttl}"),
                                ev(int(r["input"]), int(r["frame"]), "after-reset", f"TTL {int(r['ttl'])}")]))
    syns = a.tcp.segs[(a.tcp.segs["dir"] == C2S) & ((a.tcp.segs["flags"] & (TCP_SYN | TCP_ACK)) == TCP_SYN)]
    if len(syns) > 1 and a.tcp.synack is not None:
        ecn = (syns["flags"] & (TCP_ECE | TCP_CWR)) == (TCP_ECE | TCP_CWR)
        if ecn[0] and not ecn.all():
            plain = syns[~ecn][0]
            if a.tcp.synack.frame > int(plain["frame"]):
                out.append(finding(NAME, "ecn-syn-unanswered", 1.0,
                                   f"{int(ecn.sum())} SYN(s) asking for ECN went unanswered; the SYN-ACK came only "
                                   f"after a plain SYN (frame {int(plain['frame'])})",
                                   [ev(a.input, int(syns["frame"][0]), "ecn-syn", "SYN with ECE+CWR"),
                                    ev(a.input, int(plain["frame"]), "plain-syn", "SYN without ECN"),
                                    ev(a.input, a.tcp.synack.frame, "syn-ack", "")]))
    data = np.flatnonzero((a.tcp.segs["dir"] == C2S) & (a.tcp.segs["plen"] > 0))
    if len(data):
        last = a.tcp.segs[data[-1]]
        after = a.tcp.segs[data[-1] + 1:]
        from_server = after[after["dir"] == S2C]
        if len(from_server) and not (from_server["plen"] > 0).any() and (from_server["flags"] & TCP_RST).any():
            r = from_server[(from_server["flags"] & TCP_RST) != 0][0]
            out.append(finding(NAME, "data-answered-by-reset", 1.0,
                               f"the client's last data (frame {int(last['frame'])}) was answered only by a reset from "
                               f"the server's side {float(r['ts'] - last['ts']) * 1000:.1f} ms later (TTL {int(r['ttl'])}), "
                               f"{float(last['ts'] - a.tcp.segs['ts'][max(data[-1] - 1, 0)]):.1f} s after the packet before it",
                               [ev(a.input, int(last["frame"]), "data", "client data"),
                                ev(int(r["input"]), int(r["frame"]), "rst", f"RST TTL {int(r['ttl'])}")]))
    if c.conflicts[1]:
        out.append(finding(NAME, "conflicting-server-data", 1.0,
                           f"{c.conflicts[1]} server segment(s) carry bytes that contradict bytes already received "
                           f"at the same sequence numbers",
                           [ev(a.input, f, "server-data", "") for f in c.server_payload_frames[:2]]))
    return out


def _completed(a: Attempt) -> str:
    """A sentence saying how the exchange completed, or "" if it did not."""
    c = a.tcp
    if a.kind == "tls":
        if a.tls_reply is not None and a.tls_reply.server_hello:
            return "the server answered with a ServerHello"
        return ""
    if a.kind == "http":
        if a.response is not None and a.response.status:
            return f"the server answered HTTP {a.response.status}"
        return ""
    if a.kind == "dns":
        return "the resolver answered over TCP" if a.dns.responses else ""
    if c.client_payload and c.server_payload:
        return "both sides exchanged data"
    if c.handshake and not c.client_payload:
        fin_both = {m.dir for m in c.markers if m.kind == "fin"} == {C2S, S2C}
        if fin_both:
            return "handshake completed and closed gracefully with no data"
        return ""
    if c.synack is None and c.syn is None and c.server_payload:
        return "data from the server (the handshake was not captured)"
    return ""
