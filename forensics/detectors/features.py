"""The few attempt-level facts the cross-attempt controls compare."""

from __future__ import annotations

import numpy as np

from ..model import C2S, Attempt
from ..sources.decode import TCP_ACK, TCP_CWR, TCP_ECE, TCP_RST, TCP_SYN

_ECN = TCP_ECE | TCP_CWR
#: Responses to one query kept for the controls (a flood of forged answers is summarised by the first ones).
MAX_RESPONSES = 8


def features(a: Attempt) -> dict:
    if a.dns is not None and a.transport == "udp":
        t = a.dns
        return {"qtype": t.qtype, "query_frame": t.query_frames[0], "query_ttl": t.query_ttl,
                "queries": len(t.query_frames),
                # (src, ip ttl, outcome, delay s, ip id, frame, input, flags, qname matches, addresses)
                "responses": tuple((r.src.ip, r.ttl, dns_outcome(r), round(r.ts - t.query_ts, 6), r.ipid, r.frame,
                                    r.input, r.flags, r.qname_matches, tuple(sorted(r.addresses())))
                                   for r in t.responses[:MAX_RESPONSES])}
    c = a.tcp
    if c is None:
        return {}
    segs = c.segs
    c2s = segs["dir"] == C2S
    s2c = ~c2s
    x: dict = {"packets_c": c.packets[0], "packets_s": c.packets[1],
               "payload_c": c.payload_bytes[0], "payload_s": c.payload_bytes[1],
               "syn": c.syn is not None, "synack": c.synack is not None, "answered": c.packets[1] > 0}
    syns = segs[c2s & ((segs["flags"] & (TCP_SYN | TCP_ACK)) == TCP_SYN)]
    if len(syns):
        ecn = (syns["flags"] & _ECN) == _ECN
        if ecn.any():
            # the SYN-ACK answered an ECN SYN if no plain SYN was sent before it
            if c.synack is not None:
                before = syns[syns["frame"] < c.synack.frame]
                plain_before = ((before["flags"] & _ECN) != _ECN).any()
                x["ecn_answered"] = not plain_before
                x["ecn_unanswered"] = bool(plain_before)
            else:
                x["ecn_unanswered"] = True
    srv = segs[s2c & ((segs["flags"] & TCP_RST) == 0)]
    if len(srv):
        vals, counts = np.unique(srv["ttl"], return_counts=True)
        x["server_ttl"] = int(vals[np.argmax(counts)])
    # the largest client segment the server acknowledged (cumulative ack beyond its end)
    data = segs[c2s & (segs["plen"] > 0)]
    if len(data) and s2c.any():
        max_ack = int(segs["ack"][s2c].max())
        ends = (data["seq"].astype(np.int64) + data["plen"]) & 0xFFFFFFFF
        acked = data["plen"][((max_ack - ends) & 0xFFFFFFFF) < 0x80000000]
        if len(acked):
            x["max_seg_acked"] = int(acked.max())
    if a.request is not None:
        x["path"] = a.request.path
    if a.hello is not None:
        x["hello_size"] = a.hello.record_size
        x["hello_segments"] = a.hello.segments
    resets = [m for m in c.markers if m.kind == "rst"]
    if resets:
        x["resets"] = len(resets)
        x["reset_sides"] = " and ".join(sorted({"client" if m.dir == C2S else "server" for m in resets}))
    return x


def handshake_rtt(c) -> float | None:
    """Round trip from the capture point to the server: the SYN-ACK after the SYN it answers."""
    if c.synack is None:
        return None
    segs = c.segs
    syns = segs[(segs["dir"] == C2S) & ((segs["flags"] & (TCP_SYN | TCP_ACK)) == TCP_SYN) & (segs["frame"] < c.synack.frame)]
    sa = segs[segs["frame"] == c.synack.frame]
    if not len(syns) or not len(sa):
        return None
    return float(sa["ts"][0]) - float(syns["ts"][-1])


def dns_outcome(r) -> str:
    """A response's answer as one comparable string: the sorted addresses, or the rcode."""
    addrs = sorted(r.addresses())
    if addrs:
        return ",".join(addrs)
    return {0: "NODATA", 3: "NXDOMAIN"}.get(r.rcode, f"RCODE{r.rcode}")
