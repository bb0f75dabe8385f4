"""HTTP responses forged on the path: block pages and redirects.

Detects: an HTTP response whose first segment departs from the server's own
packets in the same connection (TTL two or more hops apart, an IP-ID outside
the server's progression), that arrives sooner after the request than the
handshake round trip allows, or that the server's real response later
contradicts (different bytes at the same sequence numbers: the race); and
responses with a block page's shape (a redirect to another host, a tiny page,
an iframe pointing at a bare address, status 403/451 with a few hundred bytes).
The shape alone is never enough: many sites redirect and many pages are small.

Known false positives: a reverse proxy or CDN edge in front of the server that
answers from cache with its own TTL (it is also faster than the origin); a
transparent proxy the user's network runs on purpose.
"""

from __future__ import annotations

import re

from ..model import S2C, Attempt, Finding
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
        segs = c.segs
        s2c = segs[(segs["dir"] == S2C) & ((segs["flags"] & TCP_RST) == 0)]
        row = s2c[s2c["frame"] == a.response.frame]
        if not len(row):
            return []
        r = row[0]
        inp = int(r["input"])
        others = s2c[s2c["frame"] != a.response.frame]
        signals: dict[str, tuple[str, list]] = {}
        base = None
        if c.synack is not None:
            base = c.synack.ttl
        elif len(others):
            base = int(others["ttl"][0])
        ttl = int(r["ttl"])
        if base is not None and abs(ttl - base) >= TTL_GAP_STRONG:
            signals["ttl-gap"] = (f"the response's TTL is {ttl}, the server's SYN-ACK had {base}",
                                  [ev(inp, int(r["frame"]), "ttl-mismatch", f"response TTL {ttl}, server TTL {base}")])
        later = others[(others["ts"] > float(r["ts"])) & (abs(others["ttl"].astype(int) - (base or 0)) <= TTL_SLACK)]
        if c.conflicts[1] and len(later):
            x = later[later["plen"] > 0][:1] if (later["plen"] > 0).any() else later[:1]
            signals["race"] = (f"the server's own packets (TTL {int(x['ttl'][0])}) kept coming and "
                               f"{c.conflicts[1]} of its segments contradict the response's bytes",
                               [ev(int(x["input"][0]), int(x["frame"][0]), "race", "server data contradicting the response")])
        elif base is not None and abs(ttl - base) >= TTL_GAP_STRONG and len(later):
            x = later[:1]
            signals["race"] = (f"the server's own packets (TTL {int(x['ttl'][0])}) still arrived after the response",
                               [ev(int(x["input"][0]), int(x["frame"][0]), "race", "server packet after the response")])
        ids = [int(v) for v in others["ipid"].tolist() if v > 0]
        if ":" not in a.server.ip and len(ids) >= 2 and int(r["ipid"]) > 0:
            if all(0 < ipid_step(p, q) <= IPID_MAX_STEP for p, q in zip(ids, ids[1:])):
                if not any(0 < ipid_step(p, int(r["ipid"])) <= IPID_MAX_STEP or 0 < ipid_step(int(r["ipid"]), p) <= IPID_MAX_STEP
                           for p in ids):
                    signals["ipid"] = (f"its IP-ID {int(r['ipid'])} is outside the server's sequence ({ids[0]}..{ids[-1]})",
                                       [ev(inp, int(r["frame"]), "ipid", f"IP-ID {int(r['ipid'])}")])
        rtt = handshake_rtt(c)
        req = segs[(segs["dir"] == 0) & (segs["plen"] > 0) & (segs["ts"] <= float(r["ts"]))]
        delay = float(r["ts"]) - float(req["ts"][-1]) if len(req) else None
        if too_early(delay, rtt):
            signals["early"] = (f"it came {delay * 1000:.1f} ms after the request, the round trip is {rtt * 1000:.1f} ms",
                                [ev(inp, int(req["frame"][-1]), "trigger", "the request")])
        shape = _shape(a)
        if shape:
            signals["shape"] = (shape, [ev(inp, int(r["frame"]), "blockpage", shape)])
        strong = [k for k in ("race", "ttl-gap", "early", "ipid") if k in signals]
        if len(strong) >= 2 or (strong and "shape" in signals and "race" in signals):
            order = [k for k in ("race", "ttl-gap", "early", "ipid", "shape") if k in signals]
            hop, why = place([ttl], base)
            where = placed_text(hop, ttl) if hop else f"; {why}"
            detail = (f"HTTP {a.response.status} {delay * 1000 if delay is not None else 0:.1f} ms after the request: "
                      + "; ".join(signals[k][0] for k in order) + where)
            evid = [ev(inp, int(r["frame"]), "forged-response", f"HTTP {a.response.status}, TTL {ttl}")]
            evid += [e for k in order for e in signals[k][1]]
            return [finding(NAME, "blockpage-forged", combine(order), detail, evid, hop=hop, trigger="host")]
        return []


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
