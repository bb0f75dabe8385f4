"""Silence: what the server's side did (and did not do) with what the client sent.

Detects: a first payload (ClientHello, HTTP request) retransmitted with no
acknowledgement and no answer until the client gave up (dropped on the way, or
its answer dropped); a payload the server acknowledged but never answered (the
server got it: an endpoint matter); full-size segments retransmitted
unacknowledged while the server's ACKs show smaller segments of the same flow
got through, with no ICMP "fragmentation needed" / "packet too big" (a PMTU
black hole); SYNs retransmitted with no answer at all (sent again within the
longest back-off any stack uses; SYNs further apart are separate tries, and say
nothing of one attempt); and ICMP/ICMPv6
"administratively prohibited" quoting the client's SYN, with the hop of the
router that sent it.

Known false positives: a capture that ends before the client gives up; a server
overloaded enough to drop a payload it has already ACKed the handshake for; a
lossy link that eats every retransmission.
"""

from __future__ import annotations

from ..model import (C2S, S2C, SEG_ACK, SEG_DIR, SEG_FLAGS, SEG_FRAME, SEG_INPUT, SEG_PLEN, SEG_SEQ, SEG_TS, SEG_TTL,
                     Attempt, Finding)
from ..sources.decode import TCP_ACK, TCP_SYN
from .base import doc_parts, ev, finding
from .features import handshake_rtt
from .ttl import hop_of

NAME = "silence"

#: The signals this detector reports, and what each means.
SIGNALS = {
    'payload-expired': 'the first payload expired in transit (ICMP time exceeded quoting it): a TTL-limited probe',
    'hello-dropped': 'the ClientHello was re-sent, never acknowledged, never answered',
    'request-dropped': 'the HTTP request was re-sent, never acknowledged, never answered',
    'payload-dropped': 'another first payload was re-sent, never acknowledged, never answered',
    'payload-acked-unanswered': 'the server acknowledged the first payload and sent nothing else',
    'answer-not-awaited': 'the server acknowledged the first payload, but the client closed or the capture ended '
                          'before an answer could be expected',
    'big-segments-lost': "full-size segments re-sent unacknowledged while the server's ACKs show small ones arrived; no ICMP fragmentation-needed",
    'syn-dropped': 'SYNs re-sent, no answer and no ICMP error',
    'syns-apart': "unanswered SYNs further apart than any stack waits between two sends of one SYN: separate "
                  "tries that reused the port and sequence number, not one attempt's retries",
    'icmp-prohibited': 'an ICMP/ICMPv6 administratively-prohibited error quoting the attempt',
}

#: Sent this many times (the original and a retransmission) the loss of a payload
#: is not one unlucky packet: TCP retransmits with backoff from 200 ms up.
MIN_SENDS = 2
#: A segment this close to the largest the flow sent counts as full-size: TCP options
#: (at most 40 bytes, e.g. SACK blocks) vary per segment and shorten the payload.
FULL_SIZE_SLACK = 64
#: The shortest wait after which a missing answer says something: TCP's own
#: retransmission timeout after one round-trip sample R (RFC 6298: SRTT + 4 RTTVAR =
#: 3 R), and never under its 1 s floor. A client that closed, or a capture that ended,
#: sooner than this after its request gave the server no time to answer.
ANSWER_WAIT_MIN = 1.0
ANSWER_WAIT_RTTS = 3
#: No stack waits longer than this between two sends of one SYN: Linux caps its
#: retransmission timeout at TCP_RTO_MAX = 120 s (its default six SYN retries are 1 to
#: 32 s apart), Windows and macOS back off to well under it. Unanswered SYNs further
#: apart are separate tries that reused the port and sequence number (a tool with a
#: fixed ISN, or captures of different days merged), and say nothing of one attempt.
SYN_RETRY_GAP_MAX = 120.0
#: Segments no larger than this fit every IPv4 path (576 bytes is the datagram size
#: every host must accept), so their loss cannot be a PMTU black hole.
PMTU_MIN_SEGMENT = 576


class SilenceDetector:
    name = NAME
    detects, false_positives = doc_parts(__doc__)

    def run(self, a: Attempt) -> list[Finding]:
        c = a.tcp
        if c is None or (a.kind == "dns"):
            return []
        out: list[Finding] = []
        for e in c.icmp:
            if e.admin_prohibited:
                h = hop_of(e.ttl)
                out.append(finding(NAME, "icmp-prohibited", 1.0,
                                   f"router {e.router} answered the {'SYN' if c.synack is None else 'packet'} with "
                                   f"ICMP{'v6' if e.version == 6 else ''} \"{e.describe()}\" (type {e.type} code {e.code}); "
                                   f"its TTL {e.ttl} places it at hop {h}",
                                   [ev(c.input, c.rows[0][SEG_FRAME] if c.rows else e.frame, "syn", "the SYN quoted"),
                                    ev(e.input, e.frame, "icmp-prohibited", f"{e.describe()} from {e.router}, TTL {e.ttl}")],
                                   hop=(h, h, h, None, "ttl"), trigger="ip"))
        rows = c.rows
        if c.synack is None:
            if c.syn is not None and c.syn_count >= MIN_SENDS and not c.icmp \
                    and not any(r[SEG_DIR] == S2C for r in rows):
                syns = c.syn_rows
                span = syns[-1][SEG_TS] - syns[0][SEG_TS] if syns else 0.0
                gaps = [abs(q[SEG_TS] - p[SEG_TS]) for p, q in zip(syns, syns[1:])]
                i = max(range(len(gaps)), key=gaps.__getitem__, default=None)
                if i is not None and gaps[i] > SYN_RETRY_GAP_MAX:
                    before, at = syns[i], syns[i + 1]
                    out.append(finding(NAME, "syns-apart", 1.0,
                                       f"{c.syn_count} unanswered SYNs, two of them {_span(gaps[i])} apart (frames "
                                       f"{before[SEG_FRAME]} and {at[SEG_FRAME]}): no stack waits over "
                                       f"{SYN_RETRY_GAP_MAX:.0f} s between two sends of one SYN, so these are separate "
                                       f"tries that reused the port and sequence number, not one attempt's retries; "
                                       f"the capture does not show why they went unanswered",
                                       [ev(a.input, r[SEG_FRAME], "syn", "SYN") for r in dict.fromkeys((syns[0], before))]
                                       + [ev(a.input, at[SEG_FRAME], "syn", f"SYN {_span(gaps[i])} after the one before")]))
                    return out
                out.append(finding(NAME, "syn-dropped", 1.0,
                                   f"{c.syn_count} SYNs over {span:.1f} s got no answer and no ICMP error",
                                   [ev(a.input, r[SEG_FRAME], "syn", "SYN") for r in syns[:3]],
                                   sends=c.syn_count, trigger="ip"))
            return out
        if not c.client_payload or c.payload_bytes[S2C]:
            return out  # data from the server (even when the capture misses its stream's start)
        data = [r for r in rows if r[SEG_DIR] == C2S and r[SEG_PLEN] > 0]
        if not data:
            return out
        srv = [r for r in rows if r[SEG_DIR] == S2C]
        isn = data[0][SEG_SEQ]
        ack_rows = [r for r in srv if r[SEG_FLAGS] & TCP_ACK]
        # how far the server acknowledged into the client's payload
        reach = [((r[SEG_ACK] - isn) & 0xFFFFFFFF) % 0x80000000 for r in ack_rows]
        acked = max(reach) if reach else 0
        acked = acked if acked < 0x40000000 else 0
        what = {"tls": "ClientHello", "http": "request"}.get(a.kind, "first payload")
        waited = rows[-1][SEG_TS] - data[0][SEG_TS]
        sends = c.client_payload_sends
        resets = [m for m in c.markers if m.kind == "rst" and m.dir == S2C]
        if resets:
            return out
        expired = [e for e in c.icmp if e.time_exceeded and e.q_src == a.client.ip]
        if expired:
            e = expired[0]
            out.append(finding(NAME, "payload-expired", 1.0,
                               f"the {what}'s TTL ran out at router {e.router} (ICMP \"{e.describe()}\" quoting it): "
                               f"a TTL-limited probe, so the server never saw it", [ev(e.input, e.frame, "icmp-time-exceeded", f"from {e.router}")]))
            return out
        first_len = data[0][SEG_PLEN]
        acked = acked if acked >= first_len else 0
        if acked > 0:
            ack_row = ack_rows[reach.index(max(reach))]  # the first that reached furthest
            short = _not_awaited(c, data[0][SEG_TS], rows[-1][SEG_TS])
            if short is not None:
                watched, need, how = short
                signal, detail = "answer-not-awaited", (
                    f"the server acknowledged the {what} (frame {ack_row[SEG_FRAME]}), but {how} {watched:.2f} s "
                    f"after it was sent, before an answer could be expected (TCP itself waits {need:.1f} s "
                    f"before it calls a segment lost)")
            else:
                watched, signal, detail = waited, "payload-acked-unanswered", (
                    f"the server acknowledged the {what} (frame {ack_row[SEG_FRAME]}, TTL {ack_row[SEG_TTL]}) "
                    f"and sent nothing else in {waited:.1f} s")
            out.append(finding(NAME, signal, 1.0, detail,
                               [ev(a.input, data[0][SEG_FRAME], "payload", what),
                                ev(ack_row[SEG_INPUT], ack_row[SEG_FRAME], "ack", "the server's ACK of it")],
                               waited=watched))
            return out
        if sends < MIN_SENDS:
            return out
        # PMTU shape: the full-size segments are what keeps being resent, and a duplicate ACK
        # of the server's, sent after a smaller segment from beyond the hole, shows that
        # something smaller of this flow arrived
        biggest = max(r[SEG_PLEN] for r in data)
        resent = [r for r in data if r[SEG_FRAME] > data[0][SEG_FRAME]]
        frag = [e for e in c.icmp if e.frag_needed]
        mss = (c.syn.mss if c.syn else None, c.synack.mss if c.synack else None)
        tail, dup = _tail_and_dup_ack(rows, isn, biggest - FULL_SIZE_SLACK)
        if dup is not None and not frag and biggest > PMTU_MIN_SEGMENT:
            big_resent = [r for r in resent if r[SEG_PLEN] >= biggest - FULL_SIZE_SLACK]
            if len(big_resent) >= MIN_SENDS - 1:
                out.append(finding(NAME, "big-segments-lost", 1.0,
                                   f"{len(big_resent)} full-size segment(s) ({biggest} bytes) were resent and never "
                                   f"acknowledged, while the server's duplicate ACK (frame {dup[SEG_FRAME]}) after a "
                                   f"{tail[SEG_PLEN]}-byte segment from beyond the hole (frame {tail[SEG_FRAME]}) "
                                   f"shows small ones arrive; no ICMP "
                                   f"\"fragmentation needed\" came back (MSS announced {mss[0]}/{mss[1]})",
                                   [ev(a.input, big_resent[0][SEG_FRAME], "lost-segment", f"{biggest} bytes, resent"),
                                    ev(tail[SEG_INPUT], tail[SEG_FRAME], "small-segment",
                                       f"{tail[SEG_PLEN]} bytes at relative seq {(tail[SEG_SEQ] - isn) & 0xFFFFFFFF}"),
                                    ev(dup[SEG_INPUT], dup[SEG_FRAME], "dup-ack",
                                       f"ACK {dup[SEG_ACK]} below the big segments")],
                                   size=biggest, trigger="size"))
                return out
        signal = {"tls": "hello-dropped", "http": "request-dropped"}.get(a.kind, "payload-dropped")
        trigger = {"tls": "sni", "http": "host"}.get(a.kind, "unknown")
        out.append(finding(NAME, signal, 1.0,
                           f"the handshake completed (SYN-ACK TTL {c.synack.ttl}), then the {what} "
                           f"({len(c.client_payload)} bytes in {len(c.client_payload_frames)} segment(s)) was sent "
                           f"{sends} times over {waited:.1f} s with no acknowledgement and no answer",
                           [ev(a.input, c.synack.frame, "syn-ack", f"SYN-ACK TTL {c.synack.ttl}")]
                           + [ev(a.input, r[SEG_FRAME], "payload", f"{what}, unacknowledged") for r in data[:2]],
                           sends=sends, waited=waited, trigger=trigger, size=len(c.client_payload),
                           segments=len(c.client_payload_frames)))
        return out


def _span(seconds: float) -> str:
    """A long time span in the unit that reads best (s, min, h, days)."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _tail_and_dup_ack(rows: list, isn: int, small_below: int) -> tuple:
    """The first client segment smaller than ``small_below`` bytes that starts beyond the
    first payload's sequence number ``isn`` (a piece from past the hole), and the first
    ACK of the server's after it that does not cover it (a duplicate ACK: the server saw
    data out of order). ``(None, None)`` when there is no such pair.

    A SYN-ACK acknowledges the SYN, not data, and a segment starting at the hole itself
    would have moved the ACK: neither shows that a smaller segment got through."""
    tail = None
    for r in rows:
        if r[SEG_DIR] == C2S:
            if tail is None and 0 < r[SEG_PLEN] < small_below and 0 < (r[SEG_SEQ] - isn) & 0xFFFFFFFF < 0x40000000:
                tail = r
        elif tail is not None and r[SEG_FLAGS] & TCP_ACK and not r[SEG_FLAGS] & TCP_SYN \
                and (r[SEG_ACK] - isn) & 0xFFFFFFFF <= (tail[SEG_SEQ] - isn) & 0xFFFFFFFF:
            return tail, r
    return None, None


def _not_awaited(c, sent: float, last: float) -> tuple[float, float, str] | None:
    """``(watched, needed, what ended it)`` when the client's wait for an answer to its
    payload (sent at ``sent``) was too short to call the server silent: the client's own
    FIN or reset, or the connection's last packet in the capture, came less than
    ``needed`` after it. ``None`` when the wait was long enough, or when the server
    closed first (its FIN, unprovoked: the server chose to send nothing)."""
    rtt = handshake_rtt(c)
    need = max(ANSWER_WAIT_MIN, ANSWER_WAIT_RTTS * rtt) if rtt else ANSWER_WAIT_MIN
    end, how = last, "the capture of this connection ended"
    for m in c.markers:
        if m.ts < sent:
            continue
        if m.dir == S2C and m.kind == "fin":
            return None
        if m.dir == C2S:
            end, how = m.ts, "the client closed" if m.kind == "fin" else "the client reset the connection"
            break
    watched = end - sent
    return (watched, need, how) if watched < need else None
