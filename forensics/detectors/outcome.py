"""Outcome: what happened to an attempt, described as findings.

Detects: whether the exchange completed; SYNs that went unanswered; a SYN
answered by a reset; a first payload sent again and again with no answer; DNS
queries with no answer (not one sent once in the capture's last second: that is
not awaited) or an error rcode; and the facts that forbid calling an
exchange ok: DNS responses that disagree, packets from the server's side after a
reset from that side, server bytes that contradict bytes already received.

Known false positives: a capture that starts or ends in the middle of a
connection looks like an unanswered one; a capture taken on one leg of an
asymmetric route sees only one direction.
"""

from __future__ import annotations

from ..model import (C2S, CUT_FRAGMENTS, CUT_SNAPLEN, S2C, SEG_DIR, SEG_FLAGS, SEG_FRAME, SEG_INPUT, SEG_PLEN, SEG_TS,
                     SEG_TTL, Attempt, Finding, rcode_text)
from ..sources.decode import TCP_RST
from .base import doc_parts, ev, finding, query_text
from .features import asks_ecn

NAME = "outcome"

#: A query sent once that the capture watched for less than this is not called
#: unanswered: Windows' stub resolver asks again after 1 s, the shortest first wait of
#: the common stubs (glibc and dig wait 5 s), so an answer may still have been coming.
DNS_ANSWER_WAIT = 1.0

#: What ``exchange-complete`` says of a TLS attempt the server answered (``forensics.tlslane`` writes it too).
SERVER_HELLO_ANSWERED = "the server answered with a ServerHello"

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
    'dns-not-awaited': 'the query got no response, but the capture ended too soon after it, sent once, for that '
                       'to mean anything',
    'dns-disagreeing-answers': 'two or more responses to one query with different answers or sources',
    'dns-answers-cut': "two or more responses to one query of which the capture holds only part (cut by its "
                       "snapshot length, or sent in IP fragments not all captured): whether their answers "
                       "disagree cannot be told",
    'dns-response-cut': "the query's only response, NOERROR, is in the capture in part (cut by its snapshot length, or sent "
                        "in IP fragments not all captured): the resolver answered, but its answers, where a forged "
                        "one would show, cannot be read",
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


#: How each reason a response is not whole reads in a summary.
_CUT_WHY = {CUT_SNAPLEN: "cut by its snapshot length", CUT_FRAGMENTS: "sent in IP fragments not all captured"}
#: What capture would hold what each of those reasons hides.
_CUT_FIX = {CUT_SNAPLEN: "a capture of whole packets (tcpdump -s 0)",
            CUT_FRAGMENTS: "a capture that keeps every IP fragment (a filter on UDP port 53 keeps only the first)"}


def _dns(a: Attempt) -> list[Finding]:
    txn = a.dns
    query = ev(a.input, txn.query_frames[0], "query", query_text(txn.qtype, txn.qname))
    if not txn.responses and txn.icmp:
        e = txn.icmp[0]
        return [finding(NAME, "dns-icmp-error", 1.0, f"the query was answered by ICMP \"{e.describe()}\" from {e.router}",
                        [query, ev(e.input, e.frame, "icmp", f"{e.describe()} from {e.router}")])]
    if not txn.responses:
        if len(txn.query_frames) == 1 and txn.watched is not None and txn.watched < DNS_ANSWER_WAIT:
            return [finding(NAME, "dns-not-awaited", 1.0,
                            f"the capture ended {txn.watched:.2f} s after the query was sent, before an answer "
                            f"could be expected (stub resolvers wait at least {DNS_ANSWER_WAIT:.0f} s before "
                            f"they ask again)", [query], waited=round(txn.watched, 3))]
        return [finding(NAME, "dns-unanswered", 1.0, f"query sent {len(txn.query_frames)} time(s), no response",
                        [query], sends=len(txn.query_frames))]
    responses = txn.responses
    first = responses[0]
    answered = [r for r in responses if r.rcode in (0, 3)]
    if not answered:
        return [finding(NAME, "dns-error", 1.0, f"the resolver answered {rcode_text(first.rcode)}",
                        [query, ev(first.input, first.frame, "rcode", rcode_text(first.rcode))],
                        rcode=first.rcode)]
    out = []
    if len(responses) > 1:  # one response cannot disagree with itself
        sets = {r.addresses() for r in answered}
        sources = {r.src for r in responses}
        if len(sets) > 1 or len(sources) > 1:
            detail = "; ".join(f"frame {r.frame}: {', '.join(sorted(r.addresses())) or rcode_text(r.rcode)} "
                               f"(IP TTL {r.ttl}, +{(r.ts - txn.query_ts) * 1000:.1f} ms)" for r in responses[:4])
            out.append(finding(NAME, "dns-disagreeing-answers", 1.0,
                               f"{len(responses)} responses disagree: {detail}",
                               [ev(r.input, r.frame, "response", ", ".join(sorted(r.addresses())) or rcode_text(r.rcode))
                                for r in responses[:4]]))
        elif any(r.cut for r in responses):
            # answers that look alike only because the capture kept none of them are no agreement
            shown = "; ".join(f"frame {r.frame}: IP TTL {r.ttl}, +{(r.ts - txn.query_ts) * 1000:.1f} ms"
                              for r in responses[:4])
            why = " and ".join(_CUT_WHY[c] for c in dict.fromkeys(r.cut for r in responses if r.cut))
            out.append(finding(NAME, "dns-answers-cut", 1.0,
                               f"{len(responses)} responses came ({shown}), but the capture holds only part of "
                               f"them ({why}): whether their answers disagree cannot be told",
                               [ev(r.input, r.frame, "response-cut", f"IP TTL {r.ttl}") for r in responses[:4]]))
        rcodes = "/".join([rcode_text(x) for x in sorted({r.rcode for r in responses})])
    else:
        rcodes = rcode_text(first.rcode)
        if first.cut and first.rcode == 0:  # NXDOMAIN is all in the header, which a cut keeps
            out.append(finding(NAME, "dns-response-cut", 1.0,
                               f"the capture holds only part of the response ({_CUT_WHY[first.cut]}): its answers "
                               f"cannot be checked; {_CUT_FIX[first.cut]} would show them",
                               [ev(first.input, first.frame, "response-cut", f"IP TTL {first.ttl}")]))
    out.append(finding(NAME, "dns-answered", 1.0, answered_detail(len(responses), first.ts - txn.query_ts, rcodes),
                       [query, ev(first.input, first.frame, "response",
                                  response_detail(sorted(first.addresses()), first.rcode))]))
    return out


def answered_detail(count: int, delay: float, rcodes: str) -> str:
    """What ``dns-answered`` says: ``count`` responses, the first ``delay`` s after the query."""
    return f"{count} response(s), first after {delay * 1000:.1f} ms ({rcodes})"


def response_detail(addrs, rcode: int) -> str:
    """A response's evidence line: its sorted addresses ``addrs``, or its rcode without any."""
    return ", ".join(addrs) or rcode_text(rcode)


def _tcp(a: Attempt) -> list[Finding]:
    c = a.tcp
    out: list[Finding] = []
    if c.syn is not None and c.synack is None:
        s2c, c2s = _side(c.rows, S2C), _side(c.rows, C2S)
        syn_frames = [r[SEG_FRAME] for r in c.syn_rows]
        rst = [r for r in s2c if r[SEG_FLAGS] & TCP_RST]
        if rst:
            r = rst[0]
            out.append(finding(NAME, "syn-rst", 1.0,
                               f"the SYN was answered by a reset (TTL {r[SEG_TTL]})",
                               [ev(a.input, syn_frames[0], "syn", "SYN sent"),
                                ev(r[SEG_INPUT], r[SEG_FRAME], "rst", f"RST TTL {r[SEG_TTL]}")],
                               ttl=r[SEG_TTL]))
        elif not s2c:
            span = (c2s[-1][SEG_TS] - c2s[0][SEG_TS]) if c2s else 0.0
            out.append(finding(NAME, "syn-unanswered", 1.0,
                               f"SYN sent {c.syn_count} time(s) over {span:.1f} s, no answer",
                               [ev(a.input, f, "syn", "SYN") for f in syn_frames[:4]],
                               sends=c.syn_count, span=span))
    out.extend(_contradictions(a))
    completed = _completed(a)
    if completed:
        out.append(finding(NAME, "exchange-complete", 1.0, completed,
                           [ev(a.input, c.server_payload_frames[0], "answer", completed)] if c.server_payload_frames else []))
    elif c.client_payload and not c.payload_bytes[S2C]:
        waited = c.last_ts - c.client_payload_ts  # set whenever a client payload was kept
        what = {"tls": "ClientHello", "http": "request"}.get(a.kind, "first payload")
        out.append(finding(NAME, "payload-unanswered", 1.0,
                           f"{what} sent {c.client_payload_sends} time(s), no answer in {waited:.1f} s",
                           [ev(a.input, f, "payload", what) for f in c.client_payload_frames[:2]],
                           sends=c.client_payload_sends, waited=waited))
    return out


def _side(rows: list[tuple], d: int) -> list[tuple]:
    """The rows (``TcpConn.rows``) of direction ``d``. Plain loops over the rows: a
    connection has a dozen, fewer than numpy calls would cost; built only by the
    findings that read them (most connections raise none of those)."""
    return [r for r in rows if r[SEG_DIR] == d]


def _contradictions(a: Attempt) -> list[Finding]:
    """Server-side packets after a server-side reset; server bytes that contradict earlier ones."""
    c = a.tcp
    rows = c.rows
    out = []
    rst = [m for m in c.markers if m.kind == "rst" and m.dir == S2C]
    if rst:
        first = rst[0]
        later = [r for r in _side(rows, S2C) if r[SEG_TS] > first.ts and not r[SEG_FLAGS] & TCP_RST]
        if later:
            r = later[0]
            out.append(finding(NAME, "server-side-after-reset", 1.0,
                               f"{len(later)} packet(s) from the server's side arrived after a reset from that side "
                               f"(reset frame {first.frame}, TTL {first.ttl}; next frame {r[SEG_FRAME]}, TTL {r[SEG_TTL]})",
                               [ev(first.input, first.frame, "rst", f"RST TTL {first.ttl}"),
                                ev(r[SEG_INPUT], r[SEG_FRAME], "after-reset", f"TTL {r[SEG_TTL]}")]))
    if c.synack is not None:
        syns = c.syn_rows
        ecn = [asks_ecn(r[SEG_FLAGS]) for r in syns]
        if len(syns) > 1 and ecn[0] and not all(ecn):
            plain = syns[ecn.index(False)]
            if c.synack.frame > plain[SEG_FRAME]:
                out.append(finding(NAME, "ecn-syn-unanswered", 1.0,
                                   f"{sum(ecn)} SYN(s) asking for ECN went unanswered; the SYN-ACK came only "
                                   f"after a plain SYN (frame {plain[SEG_FRAME]})",
                                   [ev(a.input, syns[0][SEG_FRAME], "ecn-syn", "SYN with ECE+CWR"),
                                    ev(a.input, plain[SEG_FRAME], "plain-syn", "SYN without ECN"),
                                    ev(a.input, c.synack.frame, "syn-ack", "")]))
    # the client's last data, and what the server's side sent after it
    i = len(rows) - 1
    while i >= 0 and not (rows[i][SEG_DIR] == C2S and rows[i][SEG_PLEN] > 0):
        i -= 1
    if i >= 0:
        last = rows[i]
        from_server = [r for r in rows[i + 1:] if r[SEG_DIR] == S2C]
        if from_server and not any(r[SEG_PLEN] > 0 for r in from_server) \
                and any(r[SEG_FLAGS] & TCP_RST for r in from_server):
            r = [r for r in from_server if r[SEG_FLAGS] & TCP_RST][0]
            out.append(finding(NAME, "data-answered-by-reset", 1.0,
                               f"the client's last data (frame {last[SEG_FRAME]}) was answered only by a reset from "
                               f"the server's side {(r[SEG_TS] - last[SEG_TS]) * 1000:.1f} ms later (TTL {r[SEG_TTL]}), "
                               f"{last[SEG_TS] - rows[max(i - 1, 0)][SEG_TS]:.1f} s after the packet before it",
                               [ev(a.input, last[SEG_FRAME], "data", "client data"),
                                ev(r[SEG_INPUT], r[SEG_FRAME], "rst", f"RST TTL {r[SEG_TTL]}")]))
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
            return SERVER_HELLO_ANSWERED
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
