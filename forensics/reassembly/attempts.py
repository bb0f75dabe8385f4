"""Turn finished connections and DNS transactions into the contract's attempts.

A TCP connection is a ``tls`` attempt when its first client payload is a
ClientHello, ``http`` when it is an HTTP request, ``dns`` (one attempt per
query) when it carries DNS on port 53, and ``tcp`` otherwise, including SYNs
that were never answered.
"""

from __future__ import annotations

from ..model import (SEG_FRAME, SEG_PLEN, Attempt, DnsAnswer, DnsResponse, DnsTransaction, Endpoint, TcpConn,
                     new_attempt, new_http_request, new_http_response, new_tls_client_hello, new_tls_server_reply,
                     slot_reader)
from . import dnswire, httpwire, tlswire


def from_tcp(conn: TcpConn) -> list[Attempt]:
    (frames, fragment_frames, client, server, data, server_payload, first_ts, last_ts, input_idx,
     history) = _CONN(conn)
    if fragment_frames:  # segments made whole from IP fragments: the fragments are its packets too
        frames = tuple(sorted(set(frames).union(fragment_frames)))
    # Attempt(id, kind, transport, client, server, name, start, end, input, frames, history, tcp, dns, hello,
    # tls_reply, request, response), positionally: no keyword dict built per attempt
    if tlswire.looks_like_client_hello(data):
        h = tlswire.parse_client_hello(data)
        if h is not None:
            sni, versions, size, extensions, ciphers = _HELLO(h)
            hello = new_tls_client_hello(sni, versions, size, _segments(conn, size), extensions, ciphers)
            reply = tlswire.parse_server_reply(server_payload)
            tr = new_tls_server_reply(*_REPLY(reply)) if reply else None
            return [new_attempt("", "tls", "tcp", client, server, sni, first_ts, last_ts, input_idx,
                                frames, history, conn, None, hello, tr, None, None, None)]
    if httpwire.looks_like_request(data):
        req = httpwire.parse_request(data)
        if req is not None:
            rq = new_http_request(req.method, req.host, req.path, req.version, req.complete)
            resp = httpwire.parse_response(server_payload)
            rs = None
            if resp is not None:
                rs = new_http_response(resp.status, resp.reason, resp.title, resp.headers.get("location"),
                                       resp.body_bytes, resp.headers.get("server"),
                                       conn.server_payload_frames[0] if conn.server_payload_frames else 0)
            return [new_attempt("", "http", "tcp", client, server, req.host, first_ts, last_ts,
                                input_idx, frames, history, conn, None, None, None, rq, rs, None)]
    if 53 in (server.port, client.port) and data:
        dns = _dns_over_tcp(conn)
        if dns:
            return dns
    return [Attempt("", "tcp", "tcp", client, server, "", first_ts, last_ts, input_idx, frames, history, conn)]


#: what ``from_tcp`` reads of a connection, in one call (``model.slot_reader``)
_CONN = slot_reader(TcpConn, "row_frames", "fragment_frames", "client", "server", "client_payload", "server_payload",
                    "first_ts", "last_ts", "input", "history")


#: what ``from_tcp`` reads of a parsed ClientHello and server reply, each in one call
_HELLO = slot_reader(tlswire.Hello, "sni", "versions", "record_size", "extensions", "ciphers")
_REPLY = slot_reader(tlswire.ServerReply, "server_hello", "version", "alerts")


def _segments(conn: TcpConn, size: int) -> int:
    """How many TCP segments the first ``size`` bytes of client payload took."""
    frames = conn.client_payload_frames
    if frames:  # most hellos take one segment: its row is among the first, no table is needed
        try:
            k = conn.row_frames.index(frames[0])
        except ValueError:
            pass
        else:
            if conn.rows.row(k)[SEG_PLEN] >= size:
                return 1
    plen: dict[int, int] = {}
    for r in conn.rows:
        plen.setdefault(r[SEG_FRAME], r[SEG_PLEN])  # a frame's first row, as a frame number can repeat across inputs
    seen = 0
    count = 0
    for frame in conn.client_payload_frames:
        count += 1
        seen += plen.get(frame, 0)
        if seen >= size:
            break
    return max(count, 1)


def _dns_over_tcp(conn: TcpConn) -> list[Attempt]:
    queries = [dnswire.fast_parse(m) for m in dnswire.split_tcp_stream(conn.client_payload)]
    answers = [dnswire.fast_parse(m) for m in dnswire.split_tcp_stream(conn.server_payload)]
    out = []
    s2c = conn.segs[conn.segs["dir"] == 1]
    first_resp = s2c[s2c["plen"] > 0]
    for q in queries:
        if q is None or q.is_response:
            continue
        resps = []
        for a in answers:
            if a is not None and a.is_response and a.txid == q.txid and len(first_resp):
                r = first_resp[0]
                resps.append(DnsResponse(
                    input=conn.input, frame=int(r["frame"]), ts=float(r["ts"]), src=conn.server,
                    ttl=int(r["ttl"]), ipid=int(r["ipid"]), flags=a.flags, rcode=a.rcode,
                    answers=tuple(DnsAnswer(*x) for x in a.answers), authority=a.nscount,
                    additional=a.arcount, qname_matches=a.qname == q.qname))
        txn = DnsTransaction(
            input=conn.input, client=conn.client, server=conn.server, transport="tcp", txid=q.txid,
            qname=q.qname, qtype=dnswire.qtype_text(q.qtype),
            query_frames=conn.client_payload_frames[:1], query_ts=conn.first_ts,
            query_ttl=int(conn.segs["ttl"][0]) if len(conn.segs) else 0, responses=tuple(resps))
        out.append(Attempt(id="", kind="dns", transport="tcp", client=conn.client, server=conn.server,
                           name=q.qname, start=conn.first_ts, end=conn.last_ts, input=conn.input,
                           frames=tuple(conn.segs["frame"].tolist()), history=conn.history,
                           tcp=conn, dns=txn))
    return out


def from_dns(txn: DnsTransaction) -> Attempt:
    responses = txn.responses
    server = txn.server
    frames = [*txn.query_frames, *[r.frame for r in responses], *[e.frame for e in txn.icmp]]
    if txn.query_fragments:  # a query made whole from IP fragments
        frames.extend([f for f in txn.query_fragments if f != txn.query_frames[0]])
    for r in responses:
        if r.fragments:  # a response made whole from IP fragments: the others are its packets too
            frames.extend([f for f in r.fragments if f != r.frame])
    frames.sort()
    end = txn.query_ts
    for r in responses:
        if r.ts > end:
            end = r.ts
    history = "Q" * min(len(txn.query_frames), 9) + "".join(["r" if r.src == server else "x" for r in responses[:9]])
    # Attempt(id, kind, transport, client, server, name, start, end, input, frames, history)
    return new_attempt("", "dns", "udp", txn.client, server, txn.qname, txn.query_ts, end, txn.input,
                       tuple(frames), history, None, txn, None, None, None, None, None)


def endpoint_text(e: Endpoint) -> str:
    return str(e)
