"""Small TCP/DNS flows built with scapy, for the detectors' unit tests.

Never sent anywhere: written to a pcap in a temp dir and analysed. Every Ether()
has explicit MACs (this machine's own network is a documentation range).
"""

from __future__ import annotations

import struct

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

MAC_C, MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"
T0 = 1_790_000_000.0


def client_hello(sni: str, pad: int = 0) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    exts = sni_ext
    if pad:
        exts += struct.pack("!HH", 21, pad) + b"\0" * pad
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_hello() -> bytes:
    body = b"\x03\x03" + b"\x22" * 32 + b"\x00" + b"\x13\x01" + b"\x00" + b"\x00\x00"
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


def http_request(host: str, path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\r\n".encode()


def http_response(status: int = 200, body: bytes = b"<html><title>hi</title>" + b"x" * 2000, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


class Capture:
    """Packets with times, written once."""

    def __init__(self) -> None:
        self.pkts = []
        self.t = T0

    def add(self, pkt, dt: float) -> int:
        self.t += dt
        pkt.time = self.t
        self.pkts.append(pkt)
        return len(self.pkts)  # its frame number

    def write(self, path) -> str:
        wrpcap(str(path), self.pkts)
        return str(path)


class Flow:
    """One TCP connection from a client (TTL 64 at the capture) to a server."""

    def __init__(self, cap: Capture, client="192.0.2.10", server="203.0.113.7", sport=40000, dport=443,
                 server_ttl=60, rtt=0.040, server_ipid=5000, client_ipid=100):
        self.cap, self.c, self.s, self.sport, self.dport = cap, client, server, sport, dport
        self.sttl, self.rtt, self.sid, self.cid = server_ttl, rtt, server_ipid, client_ipid
        self.cseq, self.sseq = 1000, 900000
        self.v6 = ":" in client

    def _ip(self, src, dst, ttl, ipid, tos=0):
        if self.v6:
            return IPv6(src=src, dst=dst, hlim=ttl, tc=tos)
        return IP(src=src, dst=dst, ttl=ttl, id=ipid, flags="DF", tos=tos)

    def c2s(self, flags, payload=b"", dt=0.0001, seq=None, ttl=64, ecn=False):
        self.cid += 1
        p = Ether(src=MAC_C, dst=MAC_S) / self._ip(self.c, self.s, ttl, self.cid) / TCP(
            sport=self.sport, dport=self.dport, flags=flags, seq=self.cseq if seq is None else seq,
            ack=self.sseq if "A" in flags else 0, window=502, options=[("MSS", 1460)] if flags.startswith("S") else [])
        if payload:
            p = p / payload
        f = self.cap.add(p, dt)
        if seq is None:
            self.cseq += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        return f

    def s2c(self, flags, payload=b"", dt=None, ttl=None, ipid=None, seq=None, ack=None, window=502):
        if ipid is None:
            self.sid += 1
            ipid = self.sid
        p = Ether(src=MAC_S, dst=MAC_C) / self._ip(self.s, self.c, self.sttl if ttl is None else ttl, ipid) / TCP(
            sport=self.dport, dport=self.sport, flags=flags, seq=self.sseq if seq is None else seq,
            ack=(self.cseq if ack is None else ack) if "A" in flags else 0, window=window,
            options=[("MSS", 1460)] if flags.startswith("S") else [])
        if payload:
            p = p / payload
        f = self.cap.add(p, self.rtt if dt is None else dt)
        if seq is None:
            self.sseq += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        return f

    def handshake(self):
        self.c2s("S", dt=0.001)
        self.s2c("SA", ipid=0)
        self.c2s("A")

    def resend(self, payload, times: int, first_rto=0.2):
        """The client sends ``payload`` and retransmits it ``times - 1`` times (no answer)."""
        seq = self.cseq
        frames = [self.c2s("PA", payload)]
        rto = first_rto
        for _ in range(times - 1):
            frames.append(self.c2s("PA", payload, dt=rto, seq=seq))
            rto *= 2
        return frames

    def exchange_ok(self, request: bytes, answer: bytes):
        """Handshake, one request and its answer, then a clean close from the client."""
        self.handshake()
        self.c2s("PA", request)
        self.s2c("PA", answer)
        self.c2s("A")
        self.c2s("FA")
        self.s2c("FA", dt=0.001)
        self.c2s("A")

    def tls_ok(self, sni: str, pad: int = 0):
        self.exchange_ok(client_hello(sni, pad), server_hello())

    def http_ok(self, host: str, path: str = "/"):
        self.exchange_ok(http_request(host, path), http_response())


def dns_exchange(cap: Capture, name: str, answers, *, client="192.0.2.10", resolver="198.51.100.53",
                 sport=50000, txid=1, dt=0.5, rtt=0.030, resolver_ttl=58, ipid=7000, rcode=0):
    """A query and its responses; ``answers`` is a list of (address, delay after query, ip ttl, ip id)."""
    q = Ether(src=MAC_C, dst=MAC_S) / IP(src=client, dst=resolver, ttl=64, id=txid) / UDP(sport=sport, dport=53) / DNS(
        id=txid, rd=1, qd=DNSQR(qname=name, qtype="A"))
    cap.add(q, dt)
    t_q = cap.t
    if answers is None:
        answers = [(None, rtt, resolver_ttl, ipid)]
    last = t_q
    for addr, delay, ttl, pid in answers:
        an = DNSRR(rrname=name, type="A", ttl=300, rdata=addr) if addr else None
        r = Ether(src=MAC_S, dst=MAC_C) / IP(src=resolver, dst=client, ttl=ttl, id=pid) / UDP(sport=53, dport=sport) / DNS(
            id=txid, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name, qtype="A"), an=an)
        cap.add(r, t_q + delay - last)
        last = t_q + delay


def icmp_prohibited(cap: Capture, flow: Flow, syn_frame_pkt, router="192.0.2.130", ttl=63):
    inner = syn_frame_pkt[IP]
    p = Ether(src=MAC_S, dst=MAC_C) / IP(src=router, dst=flow.c, ttl=ttl, id=1) / ICMP(type=3, code=13) / bytes(inner)[:28]
    return cap.add(p, 0.001)
