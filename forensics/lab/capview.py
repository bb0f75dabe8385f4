"""A small, independent reading of a lab capture, for checking the lab's own recordings.

This is deliberately not the analyser: it reads packets with scapy's raw pcap
reader and the lab's own decoder, and exposes what the phenomenon checks need:
TCP connections (by SYN), their packets per direction, DNS queries and their
responses, ICMP errors.  ``attempts()`` lists the attempts a capture contains in
the truth's terms (kind, client, server, port, name) so that truth files can be
checked for completeness.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from . import packets as P


@dataclass
class Pkt:
    n: int  # 1-based frame number
    ts: float
    f: P.Frame


@dataclass
class Conn:
    client: str
    cport: int
    server: str
    sport: int
    pkts: list = field(default_factory=list)  # Pkt, both directions, in order

    def up(self):
        return [p for p in self.pkts if p.f.src == self.client]

    def down(self):
        return [p for p in self.pkts if p.f.src == self.server]

    def first_payload(self) -> bytes:
        return next((p.f.payload for p in self.up() if p.f.payload), b"")

    def kind_name(self) -> tuple[str, str]:
        data = self.first_payload()
        is_ch, sni, _ = P.tls_client_hello(data)
        if is_ch:
            return "tls", (sni or "").lower()
        host = P.http_host(data)
        if host is not None:
            for line in data.split(b"\r\n")[1:]:
                if line.lower().startswith(b"host:"):
                    return "http", line[5:].strip().decode("ascii", "replace").lower()
            return "http", ""
        return "tcp", ""

    def synack(self):
        return next((p for p in self.down() if p.f.flags & P.SYN and p.f.flags & P.ACK), None)

    def server_ttl(self):
        sa = self.synack()
        return sa.f.ttl if sa else None

    def resets_from_server(self):
        return [p for p in self.down() if p.f.flags & P.RST]

    def server_data(self):
        return [p for p in self.down() if p.f.payload]


@dataclass
class DnsQuery:
    pkt: Pkt
    txid: int
    qname: str
    qtype: int
    responses: list = field(default_factory=list)  # Pkt


def dns_rcode(payload: bytes) -> int:
    return payload[3] & 0x0F


def dns_addresses(payload: bytes) -> list[str]:
    """A/AAAA addresses of a response built like the lab's (compressed owner names)."""
    import socket

    q = P.dns_question(bytes([payload[0], payload[1], payload[2] & 0x7F]) + payload[3:])
    if not q:
        return []
    an = struct.unpack("!H", payload[6:8])[0]
    p, out = q[3], []
    for _ in range(an):
        if p + 12 > len(payload):
            break
        if payload[p] & 0xC0 == 0xC0:
            p += 2
        else:
            while payload[p]:
                p += 1 + payload[p]
            p += 1
        rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", payload[p : p + 10])
        rdata = payload[p + 10 : p + 10 + rdlen]
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28 and rdlen == 16:
            out.append(socket.inet_ntop(socket.AF_INET6, rdata))
        p += 10 + rdlen
    return out


class Capture:
    def __init__(self, path: str | Path):
        from scapy.utils import RawPcapReader

        self.path = Path(path)
        self.pkts: list[Pkt] = []
        for i, (raw, meta) in enumerate(RawPcapReader(str(path)), start=1):
            self.pkts.append(Pkt(i, meta.sec + meta.usec / 1e6, P.parse(raw)))
        self.conns: list[Conn] = []
        self.queries: list[DnsQuery] = []
        self.icmp: list[Pkt] = []
        self._index()

    def _index(self) -> None:
        open_conns: dict = {}
        pending: dict = {}
        for p in self.pkts:
            f = p.f
            if f.proto in (1, 58) and f.payload and f.payload[0] in ((3, 11) if f.proto == 1 else (1, 2, 3)):
                self.icmp.append(p)
            elif f.is_tcp:
                key = (f.src, f.sport, f.dst, f.dport)
                rkey = (f.dst, f.dport, f.src, f.sport)
                if f.flags & P.SYN and not f.flags & P.ACK:
                    c = open_conns.get(key)
                    if c is None or c.up()[0].f.seq != f.seq:
                        c = Conn(f.src, f.sport, f.dst, f.dport)
                        open_conns[key] = c
                        self.conns.append(c)
                    c.pkts.append(p)
                elif key in open_conns:
                    open_conns[key].pkts.append(p)
                elif rkey in open_conns:
                    open_conns[rkey].pkts.append(p)
            elif f.is_udp and (f.dport == 53 or f.sport == 53):
                if f.dport == 53:
                    q = P.dns_question(f.payload)
                    if q:
                        dq = DnsQuery(p, q[0], q[1], q[2])
                        self.queries.append(dq)
                        pending[(f.src, f.sport, q[0])] = dq
                else:
                    dq = pending.get((f.dst, f.dport, struct.unpack("!H", f.payload[:2])[0]))
                    if dq:
                        dq.responses.append(p)

    def attempts(self) -> list[tuple]:
        """(kind, client ip, server ip, server port, name) of every attempt, in order."""
        out = [(c.up()[0].ts, c.kind_name(), c) for c in self.conns]
        rows = [(ts, (kn[0], c.client, c.server, c.sport, kn[1])) for ts, kn, c in out]
        rows += [(q.pkt.ts, ("dns", q.pkt.f.src, q.pkt.f.dst, 53, q.qname)) for q in self.queries]
        return [r for _, r in sorted(rows, key=lambda x: x[0])]

    def conns_to(self, server: str, port: int | None = None, name: str | None = None) -> list[Conn]:
        return [c for c in self.conns if c.server == server and (port is None or c.sport == port)
                and (name is None or c.kind_name()[1] == name)]

    def queries_for(self, qname: str, qtype: int | None = None) -> list[DnsQuery]:
        return [q for q in self.queries if q.qname == qname and (qtype is None or q.qtype == qtype)]
