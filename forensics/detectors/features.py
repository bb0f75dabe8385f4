"""The few attempt-level facts the cross-attempt controls compare."""

from __future__ import annotations

from ..model import C2S, SEG_DIR, SEG_FLAGS, SEG_FRAME, SEG_TS, Attempt, rcode_text, round_to
from ..sources.decode import TCP_ACK, TCP_CWR, TCP_ECE, TCP_SYN

_ECN = TCP_ECE | TCP_CWR
#: Responses to one query kept for the controls (a flood of forged answers is summarised by the first ones).
MAX_RESPONSES = 8


def is_client_syn(r: tuple) -> bool:
    """A row of ``TcpConn.rows`` that is the client's SYN (SYN without ACK; a connection's are
    ``TcpConn.syn_rows``, which ``tcp.scan_records`` takes apart by the same test)."""
    return r[SEG_DIR] == C2S and r[SEG_FLAGS] & (TCP_SYN | TCP_ACK) == TCP_SYN


def asks_ecn(flags: int) -> bool:
    """A SYN asking for ECN carries both ECE and CWR (RFC 3168)."""
    return flags & _ECN == _ECN


def ecn_answered(syns: list[tuple], synack_frame: int) -> bool:
    """Whether the SYN-ACK in frame ``synack_frame`` answered a SYN asking for ECN (``syns``:
    the client's SYNs, one of them asking): no plain SYN was sent before it."""
    return not any(not asks_ecn(r[SEG_FLAGS]) for r in syns if r[SEG_FRAME] < synack_frame)


def features(a: Attempt) -> dict:
    if a.dns is not None and a.transport == "udp":
        t = a.dns
        qts = t.query_ts
        responses = []
        for r in t.responses[:MAX_RESPONSES]:
            addrs = tuple(sorted(r.addresses()))
            # (src, ip ttl, outcome, delay s, ip id, frame, input, flags, qname matches, addresses)
            outcome = _outcome(addrs, r.rcode) if addrs or not r.cut else _cut_outcome(r.rcode)
            responses.append((r.src.ip, r.ttl, outcome, round_to(r.ts - qts, 6), r.ipid, r.frame,
                              r.input, r.flags, r.qname_matches, addrs))
        return {"qtype": t.qtype, "query_frame": t.query_frames[0], "query_ttl": t.query_ttl,
                "queries": len(t.query_frames), "responses": tuple(responses)}
    c = a.tcp
    if c is None:
        return {}
    x: dict = {"packets_c": c.packets[0], "packets_s": c.packets[1],
               "payload_c": c.payload_bytes[0], "payload_s": c.payload_bytes[1],
               "syn": c.syn is not None, "synack": c.synack is not None}
    if c.payload_cut:
        x["cut"] = c.payload_cut  # 1 the client's payload, 2 the server's, 3 both: cut by the snapshot length
    syns = c.syn_rows
    if any(asks_ecn(r[SEG_FLAGS]) for r in syns):
        if c.synack is not None:
            answered = ecn_answered(syns, c.synack.frame)
            x["ecn_answered"] = answered
            x["ecn_unanswered"] = not answered
        else:
            x["ecn_unanswered"] = True
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
    frame = c.synack.frame
    syn_ts = sa_ts = None  # the last SYN before the SYN-ACK; the SYN-ACK's first row
    for r in c.rows:
        if r[SEG_FRAME] < frame:
            if is_client_syn(r):
                syn_ts = r[SEG_TS]
        elif r[SEG_FRAME] == frame and sa_ts is None:
            sa_ts = r[SEG_TS]
    if syn_ts is None or sa_ts is None:
        return None
    return sa_ts - syn_ts


def dns_outcome(r) -> str:
    """A response's answer as one comparable string: the sorted addresses, or the rcode."""
    return _outcome(sorted(r.addresses()), r.rcode)


_NO_ADDRESS = {0: "NODATA", 3: "NXDOMAIN"}


def _cut_outcome(rcode: int) -> str:
    """The outcome of a response the capture cut before any address: its header's rcode is all there
    is (NXDOMAIN says it all; a NOERROR may have held addresses, so it is not called NODATA)."""
    return "NXDOMAIN" if rcode == 3 else f"{rcode_text(rcode)} (answers not captured)"


def _outcome(addrs, rcode: int) -> str:
    """``dns_outcome`` of a response whose sorted addresses are ``addrs``."""
    if addrs:
        return ",".join(addrs)
    return _NO_ADDRESS.get(rcode) or f"RCODE{rcode}"
