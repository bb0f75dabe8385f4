"""Per-packet facts from tshark and from the tool's own decode, compared field by field.

tshark runs once per capture with every field at once (``-T fields``, every
occurrence of each field, outermost first), absolute sequence numbers and raw
windows. Our side is what the analysis itself reads:

- the columnar rows of ``forensics.sources.iter_inputs`` (every packet);
- the per-connection rows (``model.SEG_DTYPE``) the engine hands the detectors,
  with the direction and ``tcp.stream`` it gave each;
- the DNS message ``dnswire`` parses from every UDP payload the engine feeds it;
- the header fields ``parse_icmp_quote`` reads from every ICMP error;
- the SNI and Host of every TLS/HTTP attempt, at the frame that completes the
  ClientHello or the request head (where Wireshark shows them).

``compare`` returns every disagreement; ``explain`` names the ones that are
Wireshark's choice rather than our mistake (see ``EXPLAINED``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

import numpy as np

TSHARK = shutil.which("tshark")
SEP = "\x1e"  # between fields
AGG = "\x1f"  # between occurrences of one field

FIELDS = [
    "frame.number", "frame.protocols", "_ws.malformed",
    "ip.src", "ip.dst", "ip.ttl", "ip.id", "ip.fragment",
    "ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.fragment",
    "tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq", "tcp.ack", "tcp.window_size_value",
    "tcp.len", "tcp.analysis.retransmission",
    "udp.srcport", "udp.dstport",
    "icmp.type", "icmpv6.type",
    "dns.id", "dns.flags.response", "dns.qry.name", "dns.count.answers",
    "dns.resp.name", "dns.resp.type", "dns.resp.ttl", "dns.a", "dns.aaaa", "dns.cname",
    "tls.handshake.type", "tls.handshake.extensions_server_name",
    "http.request", "http.host", "http.content_length",
]

#: Absolute sequence numbers; every other preference as Wireshark ships it.
PREFS = ["-o", "tcp.relative_sequence_numbers:FALSE"]

#: Disagreements that are Wireshark's choice, by kind: why they are not our bug.
EXPLAINED = {
    "icmp-quote-app": "tshark dissects the application data quoted inside an ICMP error (an HTTP request "
                      "or a ClientHello cut at the router's quote limit) as if it were traffic; for us the "
                      "quote is evidence attached to the attempt it quotes, not an attempt of its own. The "
                      "quote's IP and transport headers are compared separately (icmp-quote fields).",
    "http-over-udp": "tshark shows http.host for HTTP over UDP (SSDP M-SEARCH/NOTIFY to port 1900); the "
                     "contract's http attempts are TCP connections, so the tool does not dissect these.",
    "ip-fragment": "both reassemble IP fragments and dissect the datagram at the fragment that completed "
                   "it (compared there as any packet); a datagram the tool gave up (a fragment missing, or "
                   "past its 5 s wait) is read from its first fragment, whose values are compared with "
                   "tshark's at the frame that reassembles it, the DNS records past the first fragment "
                   "missing on our side (a prefix of tshark's list).",
    "answers-capped": "the tool reads the first 64 answer records of a DNS message (dnswire.MAX_ANSWERS) and "
                      "counts the rest; tshark lists them all. The 64 are compared with tshark's first 64.",
    "tunnel": "tshark dissects TCP, UDP, DNS, TLS and HTTP carried inside a tunnel (GRE, IP-in-IP, 6in4, "
              "Teredo); the tool reads the outer packet only (compared above as such), so what the tunnel "
              "carries is neither traffic nor an attempt for it. (No capture of the corpus has one today.)",
    "http-body": "Wireshark reassembles a whole HTTP request, body included (Content-Length), and shows "
                 "http.host at the frame that completes the body; the tool reads the head and places the "
                 "request at the frame that completes the head. The Host is the same.",
    "http-body-unfinished": "Wireshark shows an HTTP request only once its body (Content-Length) is complete; "
                            "a request whose body the capture never completes (an upload that stalled or was cut "
                            "off) has no http.host in tshark at all, where the tool reads the head. The "
                            "connection's client bytes are checked to fall short of head plus Content-Length.",
    "later-message": "an HTTP request (or ClientHello) after the first one in the same TCP connection "
                     "(keep-alive): an attempt is one connection, judged by its first client payload, "
                     "so the tool parses only that one; the first agrees (compared above).",
    "retransmission": "payload segments counted as retransmitted per connection and direction differ: "
                      "Wireshark calls a copy of a segment that arrives after a later one out-of-order, "
                      "where the tool counts every payload segment ending at or below the highest byte "
                      "already seen, keep-alives aside on both sides (SYN/FIN-only retransmissions are "
                      "left out on both sides too). Listed, not asserted.",
}


def tshark_packets(path: str) -> dict[int, dict[str, list[str]]]:
    """Frame number -> field -> every occurrence of it in that frame (outermost first)."""
    cmd = [TSHARK, "-n", "-r", path, *PREFS, "-T", "fields", "-E", f"separator={SEP}",
           "-E", "occurrence=a", "-E", f"aggregator={AGG}"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, timeout=300, check=True).stdout.decode("utf-8", "replace")
    packets: dict[int, dict[str, list[str]]] = {}
    for line in out.split("\n"):
        if not line:
            continue
        row = {name: (v.split(AGG) if v else []) for name, v in zip(FIELDS, line.split(SEP))}
        packets[int(row["frame.number"][0])] = row
    return packets


@dataclass
class Ours:
    """What the tool read from one capture."""

    rows: np.ndarray  # PKT_DTYPE, every record
    dns: dict[int, object] = field(default_factory=dict)  # frame -> dnswire.DnsMessage or None
    icmp: dict[int, object] = field(default_factory=dict)  # frame -> model.IcmpError or None
    conns: list = field(default_factory=list)  # (tcp.stream, TcpConn)
    sni: dict[int, str] = field(default_factory=dict)  # frame completing a ClientHello -> SNI
    host: dict[int, str] = field(default_factory=dict)  # frame completing a request head -> Host
    first_msg: dict[int, int] = field(default_factory=dict)  # tcp.stream -> frame of its SNI/Host


def our_packets(path: str) -> Ours:
    from forensics import analyze
    from forensics.reassembly import dnswire
    from forensics.reassembly.engine import DNS_PORTS, ICMP4_ERRORS, ICMP6_ERRORS, parse_icmp_quote
    from forensics.sources import iter_inputs
    from forensics.sources.decode import ST_OK

    parts = []
    dns: dict[int, object] = {}
    icmp: dict[int, object] = {}
    for _info, batches in iter_inputs([path]):
        for rows, buf, _now, _made in batches:
            parts.append(rows.copy())
            ok = rows["status"] == ST_OK
            udp = ok & (rows["proto"] == 17)
            m = udp & (np.isin(rows["sport"], DNS_PORTS) | np.isin(rows["dport"], DNS_PORTS))
            for r in rows[m]:
                p, cap = int(r["pay"]), int(r["caplen_pay"])
                dns[int(r["frame"])] = dnswire.parse(buf[p:p + cap].tobytes())
            e = ok & (((rows["proto"] == 1) & np.isin(rows["itype"], ICMP4_ERRORS) & (rows["ipver"] == 4))
                      | ((rows["proto"] == 58) & np.isin(rows["itype"], ICMP6_ERRORS) & (rows["ipver"] == 6)))
            for r in rows[e]:
                icmp[int(r["frame"])] = parse_icmp_quote(0, r, buf)
    from forensics.sources.decode import PKT_DTYPE

    ours = Ours(rows=np.concatenate(parts) if parts else np.empty(0, PKT_DTYPE), dns=dns, icmp=icmp)
    seen = set()
    for a in analyze([path]).attempts:
        if a.tcp is None:
            continue
        if id(a.tcp) not in seen:
            seen.add(id(a.tcp))
            ours.conns.append((a.stream, a.tcp))
        if a.kind == "tls" and a.hello is not None:
            f = ours.first_msg[a.stream] = _frame_at(a.tcp, a.hello.record_size)
            ours.sni[f] = a.name
        elif a.kind == "http" and a.request is not None and a.request.complete:
            data = a.tcp.client_payload
            end = data.find(b"\r\n\r\n")
            end = end + 4 if end >= 0 else data.find(b"\n\n") + 2
            f = ours.first_msg[a.stream] = _frame_at(a.tcp, end)
            ours.host[f] = a.name
    return ours


def _frame_at(conn, size: int) -> int:
    """The frame that brought the client's first ``size`` payload bytes to completion."""
    seen = 0
    frame = 0
    for frame in conn.client_payload_frames:
        rows = conn.segs[conn.segs["frame"] == frame]
        seen += int(rows["plen"][0]) if len(rows) else 0
        if seen >= size:
            break
    return frame


# ------------------------------------------------------------------ comparison


@dataclass
class Diff:
    frame: int
    what: str
    ours: object
    theirs: object
    kind: str | None = None  # a key of EXPLAINED, or None: a disagreement nobody explained

    def __str__(self) -> str:
        return f"frame {self.frame} {self.what}: ours {self.ours!r}, tshark {self.theirs!r}"


@dataclass
class Result:
    diffs: list[Diff] = field(default_factory=list)
    compared: dict[str, int] = field(default_factory=dict)  # field -> values compared equal or not

    def check(self, frame: int, what: str, ours, theirs, kind: str | None = None) -> None:
        self.compared[what] = self.compared.get(what, 0) + 1
        if ours != theirs:
            self.diffs.append(Diff(frame, what, ours, theirs, kind))

    def note(self, frame: int, what: str, ours, theirs, kind: str | None) -> None:
        self.diffs.append(Diff(frame, what, ours, theirs, kind))


def _first(t: dict, name: str, i: int = 0) -> str | None:
    v = t.get(name, [])
    return v[i] if len(v) > i else None


def _int(v: str | None) -> int | None:
    return None if v is None or v == "" else int(v, 0)


def _protocols(t: dict) -> list[str]:
    return (t["frame.protocols"] or [""])[0].split(":")


def _tunnelled(protos: list[str]) -> bool:
    """Two IP layers that are not an ICMP error's quote, or a known tunnel protocol."""
    ips = sum(p in ("ip", "ipv6") for p in protos)
    quoted = "icmp" in protos or "icmpv6" in protos
    return (ips > 1 and not quoted) or any(p in ("gre", "teredo", "vxlan", "gtp", "l2tp") for p in protos)


def compare(ours: Ours, theirs: dict[int, dict[str, list[str]]]) -> Result:
    from forensics.sources.decode import ST_FRAG, ST_NOT_IP, ST_OK, ip_to_str

    res = Result()
    rows = ours.rows
    reassembled_at = {}  # fragment frame -> the frame where tshark reassembled it
    for f, t in theirs.items():
        for x in t["ip.fragment"] + t["ipv6.fragment"]:
            reassembled_at[int(x)] = f
    for r in rows.tolist():
        r = dict(zip(rows.dtype.names, r))
        f = r["frame"]
        t = theirs.get(f)
        if t is None:
            res.note(f, "frame", "present", "absent", None)
            continue
        protos = _protocols(t)
        st = r["status"]
        if st == ST_NOT_IP:
            res.check(f, "not-ip", True, "ip" not in protos and "ipv6" not in protos)
            continue
        if st not in (ST_OK, ST_FRAG):
            res.note(f, "status", st, protos, None if "_ws.malformed" not in str(t) else None)
            continue
        _ip_fields(res, r, t, ip_to_str)
        if st == ST_FRAG:
            continue
        # where tshark dissected this packet's transport (the reassembling frame for a first fragment)
        tt, kind = t, None
        if r["frag"] == 1 and f in reassembled_at:
            tt, kind = theirs[reassembled_at[f]], "ip-fragment"
        if r["proto"] == 6:
            _tcp_fields(res, r, tt, kind)
        elif r["proto"] == 17:
            res.check(f, "udp.srcport", r["sport"], _int(_first(tt, "udp.srcport")), kind)
            res.check(f, "udp.dstport", r["dport"], _int(_first(tt, "udp.dstport")), kind)
            if f in ours.dns:
                _dns_fields(res, f, ours.dns[f], tt, kind)
        elif r["proto"] in (1, 58) and f in ours.icmp:
            _icmp_quote(res, f, ours.icmp[f], t)
    _dns_missed(res, ours, theirs)
    _segs(res, ours, theirs)
    _app(res, ours, theirs)
    return res


def _ip_fields(res: Result, r: dict, t: dict, ip_to_str) -> None:
    f = r["frame"]
    src = ip_to_str(r["src_hi"], r["src_lo"])
    dst = ip_to_str(r["dst_hi"], r["dst_lo"])
    if r["ipver"] == 4:
        res.check(f, "ip.src", src, _first(t, "ip.src"))
        res.check(f, "ip.dst", dst, _first(t, "ip.dst"))
        res.check(f, "ip.ttl", r["ttl"], _int(_first(t, "ip.ttl")))
        res.check(f, "ip.id", r["ipid"], _int(_first(t, "ip.id")))
    else:
        res.check(f, "ipv6.src", src, _first(t, "ipv6.src"))
        res.check(f, "ipv6.dst", dst, _first(t, "ipv6.dst"))
        res.check(f, "ipv6.hlim", r["ttl"], _int(_first(t, "ipv6.hlim")))


def _tcp_fields(res: Result, r: dict, t: dict, kind: str | None) -> None:
    f = r["frame"]
    res.check(f, "tcp.srcport", r["sport"], _int(_first(t, "tcp.srcport")), kind)
    res.check(f, "tcp.dstport", r["dport"], _int(_first(t, "tcp.dstport")), kind)
    res.check(f, "tcp.flags", r["flags"], _int(_first(t, "tcp.flags")), kind)
    res.check(f, "tcp.seq", r["seq"], _int(_first(t, "tcp.seq")), kind)
    if r["flags"] & 0x10 or _first(t, "tcp.ack") is not None:  # tshark hides ack without ACK
        res.check(f, "tcp.ack", r["ack"], _int(_first(t, "tcp.ack")), kind)
    res.check(f, "tcp.window_size_value", r["win"], _int(_first(t, "tcp.window_size_value")), kind)
    res.check(f, "tcp.len", r["plen"], _int(_first(t, "tcp.len")), kind)


def _dns_fields(res: Result, f: int, msg, t: dict, kind: str | None) -> None:
    if msg is None:
        res.note(f, "dns", "unparsed", t.get("dns.id"), None)
        return
    res.check(f, "dns.id", msg.txid, _int(_first(t, "dns.id")), kind)
    res.check(f, "dns.flags.response", int(msg.is_response), _int(_first(t, "dns.flags.response")), kind)
    q = _first(t, "dns.qry.name")
    # names are compared case-folded: the tool lower-cases them (0x20 randomisation)
    q = "." if q == "<Root>" else (q or "").lower()
    res.check(f, "dns.qry.name", msg.qname, q if msg.qdcount else "", kind)
    if not msg.is_response:
        return
    n = _int(_first(t, "dns.count.answers")) or 0
    names = [x.lower() if x != "<Root>" else "." for x in t["dns.resp.name"][:n]]
    types = [int(x) for x in t["dns.resp.type"][:n]]
    ttls = [int(x) for x in t["dns.resp.ttl"][:n]]
    mine = msg.answers
    from forensics.reassembly.dnswire import MAX_ANSWERS, qtype_text

    if kind == "ip-fragment":  # only the records inside the first fragment are ours
        names, types, ttls = names[:len(mine)], types[:len(mine)], ttls[:len(mine)]
    elif n > MAX_ANSWERS and len(mine) == MAX_ANSWERS:  # the tool reads the first MAX_ANSWERS
        res.note(f, "dns.count.answers", len(mine), n, "answers-capped")
        names, types, ttls = names[:MAX_ANSWERS], types[:MAX_ANSWERS], ttls[:MAX_ANSWERS]

    res.check(f, "dns.resp.name", [a[0] for a in mine], names, kind)
    res.check(f, "dns.resp.type", [a[1] for a in mine], [qtype_text(x) for x in types], kind)
    res.check(f, "dns.resp.ttl", [a[2] for a in mine], ttls, kind)
    for typ, fld in (("A", "dns.a"), ("AAAA", "dns.aaaa"), ("CNAME", "dns.cname")):
        vals = [a[3] for a in mine if a[1] == typ]
        if vals:
            res.check(f, fld, vals, [x.lower() for x in t[fld][:len(vals)]], kind)


def _dns_missed(res: Result, ours: Ours, theirs: dict) -> None:
    """DNS messages over UDP that tshark dissected and the tool did not."""
    for f, t in theirs.items():
        protos = _protocols(t)
        if "dns" in protos and "udp" in protos and f not in ours.dns:
            inner = "icmp" in protos or "icmpv6" in protos
            if inner:
                continue  # a quote (compared as one)
            if _tunnelled(protos):
                res.note(f, "dns.missed", None, _first(t, "dns.id"), "tunnel")
                continue
            if t["ip.fragment"] + t["ipv6.fragment"]:
                res.note(f, "dns.missed", None, _first(t, "dns.id"), "ip-fragment")  # read at the first
            else:
                res.note(f, "dns.missed", None, _first(t, "dns.id"), None)


def _icmp_quote(res: Result, f: int, err, t: dict) -> None:
    """The quoted packet's headers: tshark's second IP occurrence and its transport fields."""
    if err is None:
        res.note(f, "icmp.quote", None, t.get("ip.src"), None)
        return
    v6 = err.version == 6
    res.check(f, "quote.src", err.q_src, _first(t, "ipv6.src" if v6 else "ip.src", 1))
    res.check(f, "quote.dst", err.q_dst, _first(t, "ipv6.dst" if v6 else "ip.dst", 1))
    res.check(f, "quote.ttl", err.q_ttl, _int(_first(t, "ipv6.hlim" if v6 else "ip.ttl", 1)))
    if not v6:
        res.check(f, "quote.id", err.q_ipid, _int(_first(t, "ip.id", 1)))
    l4 = "tcp" if err.q_proto == 6 else "udp" if err.q_proto == 17 else None
    if l4:
        res.check(f, "quote.sport", err.q_sport, _int(_first(t, f"{l4}.srcport")))
        res.check(f, "quote.dport", err.q_dport, _int(_first(t, f"{l4}.dstport")))
    if err.q_seq is not None:
        res.check(f, "quote.seq", err.q_seq, _int(_first(t, "tcp.seq")))


def _segs(res: Result, ours: Ours, theirs: dict) -> None:
    """The rows each connection hands the detectors: fields, direction and tcp.stream."""
    for stream, conn in ours.conns:
        ends = (conn.client, conn.server)
        rt_theirs = [0, 0]
        for s in conn.segs.tolist():
            s = dict(zip(conn.segs.dtype.names, s))
            f = s["frame"]
            t = theirs[f]
            res.check(f, "seg.tcp.stream", stream, _int(_first(t, "tcp.stream")))
            src = _first(t, "ip.src") or _first(t, "ipv6.src")
            res.check(f, "seg.dir", (ends[s["dir"]].ip, ends[s["dir"]].port),
                      (src, _int(_first(t, "tcp.srcport"))))
            for ours_name, name in (("ttl", "ip.ttl" if conn.ipver == 4 else "ipv6.hlim"), ("flags", "tcp.flags"),
                                    ("seq", "tcp.seq"), ("win", "tcp.window_size_value"), ("plen", "tcp.len")):
                res.check(f, f"seg.{ours_name}", s[ours_name], _int(_first(t, name)))
            if conn.ipver == 4:
                res.check(f, "seg.ipid", s["ipid"], _int(_first(t, "ip.id")))
            if t["tcp.analysis.retransmission"] and s["plen"] > 0:
                rt_theirs[s["dir"]] += 1
        if not conn.detail_capped:
            mine = tuple(conn.retransmissions)
            if mine != tuple(rt_theirs):
                res.note(conn.segs["frame"][0] if len(conn.segs) else 0, f"retransmissions stream {stream}",
                         mine, tuple(rt_theirs), "retransmission")


def _app(res: Result, ours: Ours, theirs: dict) -> None:
    """SNI and Host per connection, and the frame where each shows: tshark's against the attempt's."""
    ends = {"tls.sni": {}, "http.host": {}}  # what -> stream -> our (frame, name)
    for f, name in ours.sni.items():
        ends["tls.sni"][_stream_of(ours, f)] = (f, name)
    for f, name in ours.host.items():
        ends["http.host"][_stream_of(ours, f)] = (f, name)
    firsts = {"tls.sni": {}, "http.host": {}}  # what -> stream -> tshark's (frame, name, has body)
    for f in sorted(theirs):
        t = theirs[f]
        protos = _protocols(t)
        for what, present, fld in (("tls.sni", "1" in t["tls.handshake.type"], "tls.handshake.extensions_server_name"),
                                   ("http.host", bool(t["http.request"]), "http.host")):
            if not present:
                continue
            name = (_first(t, fld) or "").lower()
            stream = _int(_first(t, "tcp.stream"))
            if _tunnelled(protos):
                res.note(f, what, None, name, "tunnel")
            elif "icmp" in protos or "icmpv6" in protos:
                res.note(f, what, None, name, "icmp-quote-app")
            elif "udp" in protos:
                res.note(f, what, None, name, "http-over-udp")
            elif stream in firsts[what]:
                res.note(f, what, None, name, "later-message")
            else:
                body = _int(_first(t, "http.content_length")) or 0
                firsts[what][stream] = (f, name, body)
    for what in ("tls.sni", "http.host"):
        for stream in sorted(set(firsts[what]) | set(ends[what]), key=lambda s: (s is None, s or 0)):
            tf, tname, body = firsts[what].get(stream, (None, None, 0))
            of, oname = ends[what].get(stream, (None, None))
            if what == "http.host" and tf is None and of is not None and _body_unfinished(ours, stream):
                res.note(of, what, oname, None, "http-body-unfinished")
                continue
            res.check(of or tf, what, oname, tname)
            if tf != of:
                # Wireshark shows an HTTP request where its body (Content-Length) ends; we, where its head ends
                kind = "http-body" if what == "http.host" and body and None not in (tf, of) and tf > of else None
                res.note(of or tf, f"{what} frame", of, tf, kind)


def _body_unfinished(ours: Ours, stream: int | None) -> bool:
    """The connection's client bytes fall short of its first request's head plus Content-Length."""
    conn = next((c for s, c in ours.conns if s == stream), None)
    if conn is None or b"\r\n\r\n" not in conn.client_payload:
        return False
    head = conn.client_payload.split(b"\r\n\r\n", 1)[0]
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:") and line.split(b":", 1)[1].strip().isdigit()), 0)
    return conn.payload_bytes[0] < len(head) + 4 + length


def _stream_of(ours: Ours, frame: int) -> int | None:
    for stream, f in ours.first_msg.items():
        if f == frame:
            return stream
    return None
