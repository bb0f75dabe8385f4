"""HTTP responses forged on the path: block pages and redirects.

Detects: an HTTP response whose first segment departs from the server's own
packets in the same connection (TTL two or more hops apart, an IP-ID outside
the server's progression), that arrives sooner after the request than the
handshake round trip allows, or that the server's real response later
contradicts (different bytes at the same sequence numbers: the race); and
responses with a block page's shape (a redirect to another host, a tiny page,
an iframe pointing at a bare address, status 403/451 with a few hundred bytes).
The shape alone is never enough: many sites redirect and many pages are small.

Not reported: a response that the packets with the handshake's TTL later
continue in sequence (their sequence number is exactly where the response's
sender's data ends) while nothing contradicts its bytes. That is one stream from
two boxes: a load balancer or SYN proxy (F5, NetScaler, cloud front ends) that
answers the handshake and the close itself, with its own TTL, IP-ID counter and
a shorter round trip, while the server behind it sends the data. An injector's
response is not continued: the server's own packets stay where its own data
ends, or its data contradicts the forged bytes.

Known false positives: a reverse proxy or CDN edge in front of the server that
answers from cache with its own TTL (it is also faster than the origin) and
closes the connection with that TTL too; a transparent proxy the user's network
runs on purpose.
"""

from __future__ import annotations

import re

from ..model import (C2S, S2C, SEG_DIR, SEG_FLAGS, SEG_FRAME, SEG_INPUT, SEG_IPID, SEG_PLEN, SEG_SEQ, SEG_TS, SEG_TTL,
                     Attempt, Finding)
from ..sources.decode import TCP_RST
from .base import doc_parts, ev, finding
from .features import handshake_rtt
from .ttl import IPID_MAX_STEP, TTL_GAP_STRONG, TTL_SLACK, combine, ipid_step, place, placed_text, too_early

NAME = "blockpage"

#: The signals this detector reports, and what each means.
SIGNALS = {
    'blockpage-forged': "an HTTP response with two or more signs of another sender (race, TTL gap, too early, IP-ID), or one plus a block page's shape and the race",
}

#: Block pages are short: a title and a sentence, or a redirect with no body.
TINY_BODY = 1024
_BARE_IP_FRAME = re.compile(rb"<iframe[^>]+src=[\"']?https?://\d{1,3}(\.\d{1,3}){3}", re.I)


class BlockpageDetector:
    name = NAME
    detects, false_positives = doc_parts(__doc__)

    def run(self, a: Attempt) -> list[Finding]:
        if a.kind != "http" or a.response is None or a.tcp is None or not a.response.frame:
            return []
        c = a.tcp
        frame = a.response.frame
        s2c = [x for x in c.rows if x[SEG_DIR] == S2C and not x[SEG_FLAGS] & TCP_RST]
        row = [x for x in s2c if x[SEG_FRAME] == frame]
        if not row:
            return []
        r = row[0]
        inp = r[SEG_INPUT]
        others = [x for x in s2c if x[SEG_FRAME] != frame]
        signals: dict[str, tuple[str, list]] = {}
        base = None
        if c.synack is not None:
            base = c.synack.ttl
        elif others:
            base = others[0][SEG_TTL]
        ttl = r[SEG_TTL]
        if base is not None and not c.conflicts[1] and _continued(s2c, r, base):
            return []  # one stream from two boxes (see the module's docstring)
        if base is not None and abs(ttl - base) >= TTL_GAP_STRONG:
            signals["ttl-gap"] = (f"the response's TTL is {ttl}, the server's SYN-ACK had {base}",
                                  [ev(inp, r[SEG_FRAME], "ttl-mismatch", f"response TTL {ttl}, server TTL {base}")])
        later = [x for x in others if x[SEG_TS] > r[SEG_TS] and abs(x[SEG_TTL] - (base or 0)) <= TTL_SLACK]
        if c.conflicts[1] and later:
            x = next((y for y in later if y[SEG_PLEN] > 0), later[0])
            signals["race"] = (f"the server's own packets (TTL {x[SEG_TTL]}) kept coming and "
                               f"{c.conflicts[1]} of its segments contradict the response's bytes",
                               [ev(x[SEG_INPUT], x[SEG_FRAME], "race", "server data contradicting the response")])
        elif base is not None and abs(ttl - base) >= TTL_GAP_STRONG and later:
            x = later[0]
            signals["race"] = (f"the server's own packets (TTL {x[SEG_TTL]}) still arrived after the response",
                               [ev(x[SEG_INPUT], x[SEG_FRAME], "race", "server packet after the response")])
        ids = [x[SEG_IPID] for x in others if x[SEG_IPID] > 0]
        ipid = r[SEG_IPID]
        if ":" not in a.server.ip and len(ids) >= 2 and ipid > 0:
            if all(0 < ipid_step(p, q) <= IPID_MAX_STEP for p, q in zip(ids, ids[1:])):
                if not any(0 < ipid_step(p, ipid) <= IPID_MAX_STEP or 0 < ipid_step(ipid, p) <= IPID_MAX_STEP
                           for p in ids):
                    signals["ipid"] = (f"its IP-ID {ipid} is outside the server's sequence ({ids[0]}..{ids[-1]})",
                                       [ev(inp, r[SEG_FRAME], "ipid", f"IP-ID {ipid}")])
        rtt = handshake_rtt(c)
        req = [x for x in c.rows if x[SEG_DIR] == C2S and x[SEG_PLEN] > 0 and x[SEG_TS] <= r[SEG_TS]]
        delay = r[SEG_TS] - req[-1][SEG_TS] if req else None
        if too_early(delay, rtt):
            signals["early"] = (f"it came {delay * 1000:.1f} ms after the request, the round trip is {rtt * 1000:.1f} ms",
                                [ev(inp, req[-1][SEG_FRAME], "trigger", "the request")])
        shape = _shape(a)
        if shape:
            signals["shape"] = (shape, [ev(inp, r[SEG_FRAME], "blockpage", shape)])
        strong = [k for k in ("race", "ttl-gap", "early", "ipid") if k in signals]
        if len(strong) >= 2 or (strong and "shape" in signals and "race" in signals):
            order = [k for k in ("race", "ttl-gap", "early", "ipid", "shape") if k in signals]
            hop, why = place([ttl], base)
            where = placed_text(hop, ttl) if hop else f"; {why}"
            detail = (f"HTTP {a.response.status} {delay * 1000 if delay is not None else 0:.1f} ms after the request: "
                      + "; ".join(signals[k][0] for k in order) + where)
            evid = [ev(inp, r[SEG_FRAME], "forged-response", f"HTTP {a.response.status}, TTL {ttl}")]
            evid += [e for k in order for e in signals[k][1]]
            return [finding(NAME, "blockpage-forged", combine(order), detail, evid, hop=hop, trigger="host")]
        return []


def _continued(s2c: list[tuple], r: tuple, base: int) -> bool:
    """Whether a packet with the handshake's TTL ``base``, after the response ``r``, sits
    exactly where the data of ``r``'s sender (its TTL) ends in sequence space so far."""
    if abs(r[SEG_TTL] - base) <= TTL_SLACK:
        return False  # one TTL: no second box to continue anything
    start, end = r[SEG_SEQ], None  # end: past the sender's data so far, relative to the response
    for x in s2c:  # in capture order
        rel = (x[SEG_SEQ] - start) & 0xFFFFFFFF
        if abs(x[SEG_TTL] - r[SEG_TTL]) <= TTL_SLACK:
            if x[SEG_PLEN] > 0 and (end is None or rel + x[SEG_PLEN] > end):
                end = rel + x[SEG_PLEN]
        elif x[SEG_TS] > r[SEG_TS] and abs(x[SEG_TTL] - base) <= TTL_SLACK and rel == end:
            return True
    return False


def _shape(a: Attempt) -> str:
    rs = a.response
    host = (a.request.host or "").split(":")[0].lower()
    if rs.status in (301, 302, 303, 307, 308) and rs.location:
        m = re.match(r"https?://([^/:]+)", rs.location)
        if m and m.group(1).lower() != host and not m.group(1).lower().endswith("." + host):
            return f"a redirect to another host ({m.group(1)})"
    if rs.status in (403, 451) and rs.body_bytes <= TINY_BODY:
        return f"status {rs.status} with a {rs.body_bytes}-byte page"
    if a.tcp is not None and _BARE_IP_FRAME.search(a.tcp.server_payload[:4096]):
        return "an iframe pointing at a bare IP address"
    return ""
