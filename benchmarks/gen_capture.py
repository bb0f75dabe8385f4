#!/usr/bin/env python3
"""Generate large, realistic captures of connection attempts, with ground truth.

    python benchmarks/gen_capture.py --packets 1000000 --out benchmarks/data/1m.pcap
    python benchmarks/gen_capture.py --packets 1000000 --rotate-every 100000 --out-dir benchmarks/data/rot
    python benchmarks/gen_capture.py --synflood 2000000 --out benchmarks/data/flood.pcap

Output: a classic pcap (Ethernet, microsecond timestamps), plus, next to it,
``<stem>.truth.jsonl`` (one line per attempt, verdict names from the report
contract in docs/verdicts.md) and ``<stem>.meta.json`` (packet, byte and attempt
counts).  For ``--out-dir`` the files are ``DIR/part-00000.pcap`` ... (time order)
and the truth/meta are ``DIR.truth.jsonl`` / ``DIR.meta.json`` beside the folder.

Speed: no scapy.  Each packet is one ``struct`` pack of the IP+transport header
(with the checksums computed arithmetically: the ones'-complement sum of a byte
string is its big-endian integer value mod 0xFFFF, so payload residues are
computed once per template and cached) behind a prebuilt Ethernet header.  Flows
are generated one at a time in start-time order; every packet older than the next
flow start is final, so the buffer is time-sorted (numpy argsort) and flushed in
large chunks.  IPv4 IP-IDs that must be sequential per host (clients, servers in
"sequential" mode, resolvers) are assigned in that time-sorted flush, vectorised,
with an incremental header-checksum update (RFC 1624), so they really increase in
capture order.  All IPv4 header, TCP, UDP and ICMP checksums are correct.

Only documentation address ranges are used: clients 192.0.2.0/24 and
2001:db8:1::/64, servers 203.0.113.0/24 and 2001:db8:2::/64, resolvers (and the
one router that sends ICMP time-exceeded) 198.51.100.0/24 and 2001:db8:3::53.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import os
import random
import struct
import sys
import time
from dataclasses import dataclass, field

import numpy as np

EPOCH_US = 1795255200 * 1_000_000  # 2026-11-21T10:00:00Z

PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
REC = struct.Struct("<IIII")
# IPv4 header + TCP header + NOP NOP TS option (12 bytes): the common segment.
IP4TCPTS = struct.Struct("!BBHHHBBH4s4sHHIIBBHHHBBBBII")
IP4TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")
IP6TCPTS = struct.Struct("!IHBB16s16sHHIIBBHHHBBBBII")
IP6TCP = struct.Struct("!IHBB16s16sHHIIBBHHH")
IP4UDP = struct.Struct("!BBHHHBBH4s4sHHHH")
IP6UDP = struct.Struct("!IHBB16s16sHHHH")
IP4ICMP = struct.Struct("!BBHHHBBH4s4sBBHI")
IP4 = struct.Struct("!BBHHHBBH4s4s")
SYNOPTS = struct.Struct("!BBHBBBBIIBBBB")  # MSS, SACK_PERM, TS, NOP, WS (Linux order)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
M = 0xFFFF
DNS_RESOLVER_V4 = ["198.51.100.53", "198.51.100.54"]
DNS_RESOLVER_V6 = ["2001:db8:3::53"]
DEAD_RESOLVER = "198.51.100.99"  # answers DNS with ICMP port unreachable
LOOP_ROUTER = "198.51.100.254"  # sends ICMP time exceeded (a transient loop)
SINKHOLE_V4 = ["203.0.113.251", "203.0.113.252", "203.0.113.253"]
SINKHOLE_V6 = ["2001:db8:2::dead", "2001:db8:2::beef"]

RST_NAMES = [f"news{i}.blogs.example" for i in range(8)] + ["x.blogs.example"]
DROP_NAMES = [f"forbidden{i}.example" for i in range(8)] + ["y.blogs.example"]
DNS_NAMES = [f"tracker{i}.example" for i in range(8)] + ["z.blogs.example"]


def residue(b: bytes) -> int:
    """Ones'-complement sum of b (16-bit words, zero-padded) as a residue mod 0xFFFF."""
    if len(b) & 1:
        b += b"\0"
    return int.from_bytes(b, "big") % M


def fin_csum(r: int) -> int:
    r %= M
    return M - r if r else 0


def fin_csum_udp(r: int) -> int:
    r %= M
    return M - r if r else M


class Payload:
    """A payload with its checksum residue precomputed."""

    __slots__ = ("data", "res")

    def __init__(self, data: bytes):
        self.data = data
        self.res = residue(data)

    def __len__(self):
        return len(self.data)


EMPTY = Payload(b"")


# --------------------------------------------------------------------------- hosts
@dataclass
class Host:
    ip: str
    v6: bool
    addr: bytes
    res: int  # residue of the address
    mac: bytes
    hid: int  # index for per-host sequential IP-IDs (-1: none / preset)
    init_ttl: int = 64
    seen_ttl: int = 64
    ipid_mode: str = "seq"  # "seq" (sequential, post-pass), "zero" (0 with DF)
    rtt_us: int = 0
    port_next: int = 0
    isn_key: int = 0
    ts_base: int = 0
    flight: list = field(default_factory=list)  # TLS server flight segments (Payload)

    @property
    def df(self) -> bool:
        return self.ipid_mode == "zero"


def make_host(ip: str, hid: int, rng: random.Random) -> Host:
    a = ipaddress.ip_address(ip)
    addr = a.packed
    mac = b"\x02" + bytes([0x10 if a.version == 4 else 0x16]) + addr[-4:]
    return Host(ip=str(a), v6=a.version == 6, addr=addr, res=residue(addr), mac=mac, hid=hid)


GW_MAC = bytes.fromhex("020000fe0001")


# --------------------------------------------------------------------------- payloads
def tls_client_hello(sni: str, rng: random.Random) -> bytes:
    name = sni.encode()
    ext = b""
    sn = struct.pack("!BH", 0, len(name)) + name
    ext += struct.pack("!HHH", 0x0000, len(sn) + 2, len(sn)) + sn
    ext += bytes.fromhex("00170000ff01000100000a000a0008001d001700180019000b00020100")
    ext += bytes.fromhex("0010000e000c02683208687474702f312e31")  # ALPN h2, http/1.1
    ext += bytes.fromhex("000d0012001004030804040105030805050108060601")
    ext += bytes.fromhex("002b00050403040303")  # supported_versions
    ext += bytes.fromhex("002d00020101")
    ext += struct.pack("!HHHHH", 0x0033, 38, 36, 0x001D, 32) + rng.randbytes(32)  # key_share
    ciphers = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    body_wo_pad = 2 + 32 + 1 + 32 + 2 + len(ciphers) + 2 + 2 + len(ext)
    pad = 512 - 4 - body_wo_pad - 4  # pad the handshake to 512 bytes, as browsers do
    if pad > 0:
        ext += struct.pack("!HH", 0x0015, pad) + b"\0" * pad
    body = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
            + struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00"
            + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def tls_server_flight(rng: random.Random) -> bytes:
    """A TLS 1.3 server flight: ServerHello (plaintext, handshake type 2), the
    compatibility ChangeCipherSpec, then EncryptedExtensions/Certificate/
    CertificateVerify/Finished as encrypted application-data records."""
    exts = (bytes.fromhex("002b00020304")  # supported_versions: TLS 1.3
            + struct.pack("!HHHH", 0x0033, 36, 0x001D, 32) + rng.randbytes(32))
    sh = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\x13\x01\x00"
          + struct.pack("!H", len(exts)) + exts)
    hs = b"\x02" + len(sh).to_bytes(3, "big") + sh
    out = b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"
    n = rng.randint(1000, 2400)  # the encrypted certificate chain and the rest
    return out + b"\x17\x03\x03" + struct.pack("!H", n) + rng.randbytes(n)


def app_data_stream(rng: random.Random, n: int) -> bytes:
    out = b""
    while n > 0:
        k = min(n, 16384 + 17)
        out += b"\x17\x03\x03" + struct.pack("!H", k) + rng.randbytes(k)
        n -= k
    return out


def segments(data: bytes, mss: int) -> list[Payload]:
    return [Payload(data[i:i + mss]) for i in range(0, len(data), mss)]


def dns_question(name: str, qtype: int) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return q + struct.pack("!HH", qtype, 1)


# --------------------------------------------------------------------------- config
@dataclass
class Mix:
    tls: float = 0.33
    http: float = 0.07
    dns: float = 0.55
    refused: float = 0.03
    icmp: float = 0.02
    ipv6: float = 0.20
    dns_before_connect: float = 0.3  # a TLS/HTTP flow is preceded by its DNS lookup
    rst: float = 0.02  # of TLS+HTTP flows
    forged_dns: float = 0.02  # of standalone DNS queries
    sni_drop: float = 0.02  # of TLS flows


TLS_SEG = 1448  # MSS 1460 minus the 12-byte timestamp option


# --------------------------------------------------------------------------- emitter
class Capture:
    """Collects packets of flows generated in start order; flushes time-sorted chunks."""

    def __init__(self, writer, seed: int, mix: Mix, flows_per_sec: float):
        self.w = writer
        self.rng = random.Random(seed)
        self.mix = mix
        self.rate = flows_per_sec
        self.ts: list[int] = []
        self.recs: list[bytes] = []
        self.hid: list[int] = []
        self.truth: list[str] = []
        self.count = 0  # packets generated
        self.kinds: dict[str, int] = {}
        self.verdicts: dict[str, int] = {}
        self.nhosts = 0
        self.ipid_next: np.ndarray | None = None
        self._hosts()

    # ---- hosts
    def _host(self, ip: str, seq_ids: bool) -> Host:
        h = make_host(ip, -1, self.rng)
        if seq_ids and not h.v6:
            h.hid = self.nhosts
            self.nhosts += 1
        return h

    def _hosts(self):
        rng = self.rng
        self.clients4 = [self._host(f"192.0.2.{i}", True) for i in range(10, 250)]
        self.clients6 = [self._host(f"2001:db8:1::{0x1000 + i:x}", False) for i in range(60)]
        for c in self.clients4 + self.clients6:
            c.port_next = rng.randint(32768, 60999)
            c.ts_base = rng.getrandbits(32)
        self.servers4, self.servers6 = [], []
        for i in range(1, 201):
            self.servers4.append(self._host(f"203.0.113.{i}", True))
        for i in range(1, 101):
            self.servers6.append(self._host(f"2001:db8:2::{i:x}", False))
        flights = [segments(tls_server_flight(rng), TLS_SEG) for _ in range(16)]
        for s in self.servers4 + self.servers6:
            s.init_ttl = 64 if rng.random() < 0.7 else 128
            hops = rng.randint(10, 14)
            s.seen_ttl = s.init_ttl - hops
            if not s.v6 and rng.random() < 0.3:
                s.ipid_mode = "zero"
                s.hid = -1
            s.rtt_us = rng.randint(20_000, 80_000)
            s.ts_base = rng.getrandbits(32)
            s.flight = rng.choice(flights)
        self.resolvers4 = [self._host(ip, True) for ip in DNS_RESOLVER_V4]
        self.resolvers6 = [self._host(ip, False) for ip in DNS_RESOLVER_V6]
        for r, (ttl, rtt) in zip(self.resolvers4 + self.resolvers6,
                                 [(64, 12_000), (128, 25_000), (64, 15_000)]):
            r.init_ttl, r.seen_ttl, r.rtt_us = ttl, ttl - 7, rtt
        self.dead = self._host(DEAD_RESOLVER, True)
        self.dead.seen_ttl, self.dead.rtt_us = 57, 14_000
        self.router = self._host(LOOP_ROUTER, True)
        self.router.seen_ttl = 250
        self.ipid_next = np.array([rng.getrandbits(16) for _ in range(self.nhosts)],
                                  dtype=np.int64)
        # server responses: 1 to 3 segments of TLS application data (a few variants)
        self.app_streams = [segments(app_data_stream(rng, rng.randint(150, 2 * TLS_SEG + 600)),
                                     TLS_SEG) for _ in range(24)]
        self.names = [f"site{i}.example" for i in range(5000)]

    def server_for(self, name: str, v6: bool) -> Host:
        pool = self.servers6 if v6 else self.servers4
        return pool[hash_name(name) % len(pool)]

    def port(self, c: Host) -> int:
        p = c.port_next
        c.port_next = 32768 if p >= 60999 else p + 1
        return p

    # ---- packet builders (t in microseconds since EPOCH)
    def _add(self, t: int, eth: bytes, l3: bytes, payload: bytes, hid: int):
        n = 14 + len(l3) + len(payload)
        t += EPOCH_US
        self.ts.append(t)
        self.recs.append(REC.pack(t // 1_000_000, t % 1_000_000, n, n) + eth + l3 + payload)
        self.hid.append(hid)
        self.count += 1

    def tcp(self, t, c: Host, s: Host, from_client: bool, sport, dport, flags, seq, ack,
            pl: Payload = EMPTY, win=502, tsval=None, tsecr=0, ttl=None, ipid=None,
            df=None, syn_opts=False):
        """One TCP segment between client c and server s (sport/dport from the client's
        view).  ipid None = the sender's own IP-ID behaviour; ttl None = its seen TTL."""
        if from_client:
            src, dst, sp, dp = c, s, sport, dport
            eth = c.mac_eth_out
        else:
            src, dst, sp, dp = s, c, dport, sport
            eth = c.mac_eth_in
        if ttl is None:
            ttl = src.seen_ttl
        plen = len(pl.data)
        if syn_opts:
            mss = 1460 if not c.v6 else 1440
            opts = SYNOPTS.pack(2, 4, mss, 4, 2, 8, 10, tsval, tsecr, 1, 3, 3, 7)
            ores = residue(opts)
            hl = 40
        elif tsval is not None:
            ores = 0x0101 + 0x080A + (tsval >> 16) + (tsval & M) + (tsecr >> 16) + (tsecr & M)
            hl = 32
        else:
            ores = 0
            hl = 20
        seq &= 0xFFFFFFFF
        ack &= 0xFFFFFFFF
        offfl = (hl << 10) | flags  # (hl/4)<<12
        tlen = hl + plen
        r = (sp + dp + (seq >> 16) + (seq & M) + (ack >> 16) + (ack & M) + offfl + win
             + ores + pl.res + src.res + dst.res + 6 + tlen)
        csum = fin_csum(r)
        if c.v6:
            if hl == 32:
                l3 = IP6TCPTS.pack(0x60000000, tlen, 6, ttl, src.addr, dst.addr, sp, dp, seq,
                                   ack, hl << 2, flags, win, csum, 0, 1, 1, 8, 10, tsval, tsecr)
            else:
                l3 = IP6TCP.pack(0x60000000, tlen, 6, ttl, src.addr, dst.addr, sp, dp, seq,
                                 ack, hl << 2, flags, win, csum, 0)
                if syn_opts:
                    l3 += opts
            self._add(t, eth, l3, pl.data, -1)
            return
        if df is None:
            df = True
        if ipid is None:
            hid = src.hid
            ipid = 0
        else:
            hid = -1
        ff = 0x4000 if df else 0
        total = 20 + tlen
        ipc = fin_csum(0x4500 + total + ipid + ff + (ttl << 8) + 6 + src.res + dst.res)
        if hl == 32:
            l3 = IP4TCPTS.pack(0x45, 0, total, ipid, ff, ttl, 6, ipc, src.addr, dst.addr, sp, dp,
                               seq, ack, hl << 2, flags, win, csum, 0, 1, 1, 8, 10, tsval, tsecr)
        else:
            l3 = IP4TCP.pack(0x45, 0, total, ipid, ff, ttl, 6, ipc, src.addr, dst.addr, sp, dp,
                             seq, ack, hl << 2, flags, win, csum, 0)
            if syn_opts:
                l3 += opts
        self._add(t, eth, l3, pl.data, hid)

    def udp(self, t, c: Host, r: Host, from_client: bool, cport, rport, data: bytes,
            ttl=None, ipid=None, df=False):
        if from_client:
            src, dst, sp, dp, eth = c, r, cport, rport, c.mac_eth_out
        else:
            src, dst, sp, dp, eth = r, c, rport, cport, c.mac_eth_in
        if ttl is None:
            ttl = src.seen_ttl
        ulen = 8 + len(data)
        csum = fin_csum_udp(sp + dp + ulen + residue(data) + src.res + dst.res + 17 + ulen)
        if c.v6:
            l3 = IP6UDP.pack(0x60000000, ulen, 17, ttl, src.addr, dst.addr, sp, dp, ulen, csum)
            self._add(t, eth, l3, data, -1)
            return l3 + data
        if ipid is None:
            hid, ipid = src.hid, 0
        else:
            hid = -1
        ff = 0x4000 if df else 0
        total = 20 + ulen
        ipc = fin_csum(0x4500 + total + ipid + ff + (ttl << 8) + 17 + src.res + dst.res)
        l3 = IP4UDP.pack(0x45, 0, total, ipid, ff, ttl, 17, ipc, src.addr, dst.addr, sp, dp,
                         ulen, csum)
        self._add(t, eth, l3, data, hid)
        return l3 + data

    def icmp4(self, t, c: Host, src: Host, typ: int, code: int, quoted: bytes, ipid: int):
        quoted = quoted[:548]
        total = 28 + len(quoted)
        csum = fin_csum((typ << 8) + code + residue(quoted))
        ipc = fin_csum(0x45C0 + total + ipid + (src.seen_ttl << 8) + 1 + src.res + c.res)
        l3 = IP4ICMP.pack(0x45, 0xC0, total, ipid, 0, src.seen_ttl, 1, ipc, src.addr, c.addr,
                          typ, code, csum, 0)
        self._add(t, c.mac_eth_in, l3, quoted, -1)

    # ---- truth
    def attempt(self, kind, c: Host, cport, s: Host, sport, name, verdict, t, **extra):
        d = {"kind": kind, "client": {"ip": c.ip, "port": cport},
             "server": {"ip": s.ip, "port": sport}, "name": name, "verdict": verdict,
             "start": t + EPOCH_US}
        d.update(extra)
        self.truth.append(json.dumps(d, separators=(",", ":")))
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1

    # ---- flows
    def client(self, v6: bool) -> Host:
        return self.rng.choice(self.clients6 if v6 else self.clients4)

    def tcp_flow(self, t, kind, c: Host, s: Host, name, fate):
        """TLS (kind 'tls') or HTTP (kind 'http') connection; fate: ok | rst | drop."""
        rng = self.rng
        sport = self.port(c)
        dport = 443 if kind == "tls" else 80
        rtt = s.rtt_us + rng.randint(-1000, 1000)
        ci, si = rng.getrandbits(32), rng.getrandbits(32)
        ctsb, stsb = c.ts_base, s.ts_base
        T = lambda x: (ctsb + x // 1000) & 0xFFFFFFFF  # noqa: E731  1 kHz TS clock
        S = lambda x: (stsb + x // 1000) & 0xFFFFFFFF  # noqa: E731
        verdict = {"ok": "ok", "rst": "injected-rst", "drop": "sni-drop"}[fate]
        trigger = {"ok": None, "rst": "sni" if kind == "tls" else "host",
                   "drop": "sni"}[fate]
        extra = {"trigger": trigger} if trigger else {}
        self.attempt(kind, c, sport, s, dport, name, verdict, t, **extra)
        tc = self.tcp
        # handshake
        tc(t, c, s, True, sport, dport, SYN, ci, 0, win=64240, tsval=T(t), syn_opts=True)
        t1 = t + rtt
        tc(t1, c, s, False, sport, dport, SYN | ACK, si, ci + 1, win=65160, tsval=S(t1),
           tsecr=T(t), syn_opts=True)
        t2 = t1 + rng.randint(30, 200)
        tc(t2, c, s, True, sport, dport, ACK, ci + 1, si + 1, tsval=T(t2), tsecr=S(t1))
        t3 = t2 + rng.randint(100, 1500)
        if kind == "tls":
            req = Payload(tls_client_hello(name, rng))
        else:
            req = Payload(f"GET / HTTP/1.1\r\nHost: {name}\r\nUser-Agent: curl/8.5.0\r\n"
                          f"Accept: */*\r\n\r\n".encode())
        cseq = ci + 1 + len(req)
        tc(t3, c, s, True, sport, dport, PSH | ACK, ci + 1, si + 1, req, tsval=T(t3),
           tsecr=S(t1))
        if fate == "drop":
            rto = 200_000 + rtt
            tr = t3
            for _ in range(rng.randint(3, 5)):
                tr += rto
                rto *= 2
                tc(tr, c, s, True, sport, dport, PSH | ACK, ci + 1, si + 1, req, tsval=T(tr),
                   tsecr=S(t1))
            tr += rng.randint(200_000, 2_000_000)
            if rng.random() < 0.5:
                tc(tr, c, s, True, sport, dport, RST | ACK, ci + 1, si + 1, tsval=T(tr),
                   tsecr=S(t1), win=0)
            else:
                tc(tr, c, s, True, sport, dport, FIN | ACK, cseq, si + 1, tsval=T(tr),
                   tsecr=S(t1))
            # the control: another name to the same server, a little later, succeeds
            other = self.names[rng.randrange(len(self.names))]
            self.nctl += 1
            heapq.heappush(self.control, (t3 + rng.randint(50_000, 400_000), self.nctl,
                                          "tls", c, s, other))
            return
        # the server answers the request one RTT later
        t4 = t3 + rtt + rng.randint(100, 3000)
        if kind == "tls":
            resp = s.flight
        else:
            body = (f"<!doctype html><html><head><title>{name}</title></head><body>"
                    + "<p>lorem ipsum dolor sit amet</p>" * rng.randint(5, 60)
                    + "</body></html>").encode()
            resp = segments(f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                            f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body, TLS_SEG)
        if fate == "rst":
            inj_ttl = 64 - (rng.randint(3, 5) - 1)
            ti = t3 + rng.randint(800, 5000)
            for k in range(rng.randint(1, 3)):
                ipid = 0 if rng.random() < 0.5 else rng.getrandbits(16)
                fl = RST | ACK if rng.random() < 0.5 else RST
                tc(ti, c, s, False, sport, dport, fl, si + 1 + k * TLS_SEG,
                   cseq if fl & ACK else 0,
                   win=0 if fl == RST else rng.randint(200, 60000), ttl=inj_ttl, ipid=ipid,
                   df=False)
                ti += rng.randint(50, 600)
            # the real server's flight still arrives; the client's stack has torn the
            # connection down and answers each segment with a reset
            sseq = si + 1
            tt = t4
            for seg in resp:
                tc(tt, c, s, False, sport, dport, ACK | (PSH if seg is resp[-1] else 0), sseq,
                   cseq, seg, tsval=S(tt), tsecr=T(t3))
                tc(tt + rng.randint(20, 120), c, s, True, sport, dport, RST, cseq, 0, win=0)
                sseq += len(seg)
                tt += rng.randint(10, 80)
            return
        sseq = si + 1
        tt = t4
        for seg in resp:
            tc(tt, c, s, False, sport, dport, ACK | (PSH if seg is resp[-1] else 0), sseq, cseq,
               seg, tsval=S(t4), tsecr=T(t3))
            sseq += len(seg)
            tt += rng.randint(10, 80)
        ta = tt + rng.randint(30, 300)
        tc(ta, c, s, True, sport, dport, ACK, cseq, sseq, tsval=T(ta), tsecr=S(t4))
        if kind == "tls":
            fin = Payload(b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35" + rng.randbytes(53))
            ta += rng.randint(200, 2000)
            tc(ta, c, s, True, sport, dport, PSH | ACK, cseq, sseq, fin, tsval=T(ta),
               tsecr=S(t4))
            cseq += len(fin)
            tb = ta + rtt + rng.randint(100, 2000)
            sfin = Payload(b"\x17\x03\x03\x00\xea" + rng.randbytes(0xEA))  # session tickets
            tc(tb, c, s, False, sport, dport, PSH | ACK, sseq, cseq, sfin, tsval=S(tb),
               tsecr=T(ta))
            sseq += len(sfin)
            tq = tb + rng.randint(100, 2000)
            n = rng.randint(250, 600)
            rq = Payload(b"\x17\x03\x03" + struct.pack("!H", n) + rng.randbytes(n))
            tc(tq, c, s, True, sport, dport, PSH | ACK, cseq, sseq, rq, tsval=T(tq), tsecr=S(tb))
            cseq += len(rq)
            tr = tq + rtt + rng.randint(500, 20_000)
            for blob in self.app_streams[rng.randrange(len(self.app_streams))]:
                tc(tr, c, s, False, sport, dport, ACK, sseq, cseq, blob, tsval=S(tr),
                   tsecr=T(tq))
                sseq += len(blob)
                tr += rng.randint(10, 200)
            ta = tr + rng.randint(30, 300)
            tc(ta, c, s, True, sport, dport, ACK, cseq, sseq, tsval=T(ta), tsecr=S(tr))
        # close: the client closes (TLS) or the server does (HTTP, Connection: close)
        tf = ta + rng.randint(1000, 50_000)
        if kind == "tls":
            tc(tf, c, s, True, sport, dport, FIN | ACK, cseq, sseq, tsval=T(tf), tsecr=S(tr))
            tg = tf + rtt
            tc(tg, c, s, False, sport, dport, FIN | ACK, sseq, cseq + 1, tsval=S(tg),
               tsecr=T(tf))
            tc(tg + rng.randint(30, 200), c, s, True, sport, dport, ACK, cseq + 1, sseq + 1,
               tsval=T(tg), tsecr=S(tg))
        else:
            tg = tt + rng.randint(10, 200)
            tc(tg, c, s, False, sport, dport, FIN | ACK, sseq, cseq, tsval=S(tg), tsecr=T(t3))
            th = tg + rng.randint(500, 5000)
            tc(th, c, s, True, sport, dport, FIN | ACK, cseq, sseq + 1, tsval=T(th),
               tsecr=S(tg))
            tc(th + rtt, c, s, False, sport, dport, ACK, sseq + 1, cseq + 1, tsval=S(th + rtt),
               tsecr=T(th))

    def refused_flow(self, t, c: Host, s: Host):
        rng = self.rng
        sport, dport = self.port(c), rng.choice([8443, 22, 8080, 3389])
        ci = rng.getrandbits(32)
        self.attempt("tcp", c, sport, s, dport, "", "connection-refused", t)
        self.tcp(t, c, s, True, sport, dport, SYN, ci, 0, win=64240,
                 tsval=(c.ts_base + t // 1000) & 0xFFFFFFFF, syn_opts=True)
        self.tcp(t + s.rtt_us + rng.randint(-500, 500), c, s, False, sport, dport, RST | ACK, 0,
                 ci + 1, win=0)

    def dns_query(self, t, c: Host, r: Host, name, qtype, fate="ok") -> int:
        """One DNS transaction; returns the time the (real) answer arrived."""
        rng = self.rng
        cport = self.port(c)
        txid = rng.getrandbits(16)
        q = dns_question(name, qtype)
        query = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + q
        verdict = {"ok": "ok", "forged": "forged-dns", "unreach": "dns-failure",
                   "loop": "ok"}[fate]
        extra = {"txid": txid, "qtype": "AAAA" if qtype == 28 else "A"}
        if fate == "forged":
            extra["trigger"] = "dns-qname"
        self.attempt("dns", c, cport, r, 53, name, verdict, t, **extra)
        sent = self.udp(t, c, r, True, cport, 53, query)
        if fate == "unreach":
            self.icmp4(t + r.rtt_us, c, r, 3, 3, sent, rng.getrandbits(16))
            return t + r.rtt_us
        if fate == "loop":
            # the first try loops and expires at hop 6; the stub retries 1 s later, same query
            q1 = bytearray(sent)
            q1[8] = 1  # as it arrived at the router: TTL 1, header checksum to match
            q1[10:12] = b"\0\0"
            q1[10:12] = struct.pack("!H", fin_csum(residue(bytes(q1[:20]))))
            self.icmp4(t + 9000, c, self.router, 11, 0, bytes(q1), rng.getrandbits(16))
            t += 1_000_000
            self.udp(t, c, r, True, cport, 53, query)
        if qtype == 28:
            addr = self.server_for(name, True).addr
        else:
            addr = self.server_for(name, False).addr
        if fate == "forged":
            fake = ipaddress.ip_address(rng.choice(SINKHOLE_V6 if qtype == 28 else SINKHOLE_V4))
            ans = (struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + q
                   + struct.pack("!HHHIH", 0xC00C, qtype, 1, rng.choice([60, 300, 600]),
                                 len(fake.packed)) + fake.packed)
            self.udp(t + rng.randint(1000, 6000), c, r, False, cport, 53, ans,
                     ttl=64 - (rng.randint(3, 5) - 1), ipid=rng.getrandbits(16), df=False)
        ta = t + r.rtt_us + rng.randint(0, 8000)
        ans = (struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + q
               + struct.pack("!HHHIH", 0xC00C, qtype, 1, 300, len(addr)) + addr)
        self.udp(ta, c, r, False, cport, 53, ans)
        return ta

    def resolver(self, c: Host) -> Host:
        return self.resolvers6[0] if c.v6 else self.resolvers4[self.rng.random() < 0.3]

    def one_flow(self, t):
        rng, mx = self.rng, self.mix
        x = rng.random()
        v6 = rng.random() < mx.ipv6
        c = self.client(v6)
        if x < mx.tls + mx.http:
            kind = "tls" if x < mx.tls else "http"
            y = rng.random()
            if y < mx.rst:
                fate, name = "rst", rng.choice(RST_NAMES)
            elif kind == "tls" and y < mx.rst + mx.sni_drop:
                fate, name = "drop", rng.choice(DROP_NAMES)
            else:
                fate, name = "ok", self.names[rng.randrange(len(self.names))]
            s = self.server_for(name, v6)
            if fate == "ok" and rng.random() < mx.dns_before_connect:
                t = self.dns_query(t, c, self.resolver(c), name, 28 if v6 else 1) + 500
            self.tcp_flow(t, kind, c, s, name, fate)
            return
        x -= mx.tls + mx.http
        if x < mx.dns:
            if rng.random() < mx.forged_dns:
                fate, name = "forged", rng.choice(DNS_NAMES)
            else:
                fate, name = "ok", self.names[rng.randrange(len(self.names))]
            self.dns_query(t, c, self.resolver(c), name, 28 if rng.random() < 0.35 else 1, fate)
            return
        x -= mx.dns
        if x < mx.refused:
            pool = self.servers6 if v6 else self.servers4
            self.refused_flow(t, c, pool[rng.randrange(len(pool))])
            return
        # ICMP errors (IPv4): a dead resolver, or a transient routing loop
        c = self.client(False)
        name = self.names[rng.randrange(len(self.names))]
        if rng.random() < 0.5:
            self.dns_query(t, c, self.dead, name, 1, "unreach")
        else:
            self.dns_query(t, c, self.resolvers4[0], name, 1, "loop")

    # ---- driving
    def run(self, packets: int, synflood: int = 0, flood_rate: float = 100_000.0):
        rng = self.rng
        for h in self.clients4 + self.clients6:
            h.mac_eth_out = GW_MAC + h.mac + (b"\x86\xdd" if h.v6 else b"\x08\x00")
            h.mac_eth_in = h.mac + GW_MAC + (b"\x86\xdd" if h.v6 else b"\x08\x00")
        self.control: list = []
        self.nctl = 0
        t = 0
        mean_gap = 1e6 / self.rate
        flood_left = synflood
        flood_gap = 1e6 / flood_rate
        tflood = 0.0
        self.flood_init()
        next_flush = 20_000
        while self.count < packets or flood_left > 0:
            if self.count < packets:
                t += int(rng.expovariate(1.0) * mean_gap) + 1
            else:
                t = int(tflood) + 1
            while flood_left > 0 and tflood <= t:
                self.flood_syn(int(tflood))
                tflood += flood_gap * rng.expovariate(1.0)
                flood_left -= 1
            while self.control and self.control[0][0] <= t:
                tc_, _, kind, c, s, name = heapq.heappop(self.control)
                self.tcp_flow(tc_, kind, c, s, name, "ok")
            if self.count < packets:
                self.one_flow(t)
            if self.count >= next_flush:
                self.flush(t)
                next_flush = self.count + 200_000
        while self.control:
            tc_, _, kind, c, s, name = heapq.heappop(self.control)
            self.tcp_flow(tc_, kind, c, s, name, "ok")
        self.flush(None)

    def flood_init(self):
        self.flood_targets = [make_host("203.0.113.80", -1, self.rng),
                              make_host("203.0.113.81", -1, self.rng)]
        for s in self.flood_targets:
            s.seen_ttl, s.ipid_mode, s.rtt_us = 52, "zero", 30_000
        self.flood_seen: set = set()
        self.flood_cache: dict = {}

    def flood_syn(self, t):
        """One spoofed SYN from a distinct (source address, port); 10 % draw a RST."""
        rng = self.rng
        while True:
            if rng.random() < 0.8:
                key = (4, rng.randrange(1, 255), rng.randrange(1024, 65536))
            else:
                key = (6, rng.getrandbits(64), rng.randrange(1024, 65536))
            if key not in self.flood_seen:
                break
        self.flood_seen.add(key)
        if key[0] == 4:
            ip = f"192.0.2.{key[1]}"
        else:
            ip = str(ipaddress.IPv6Address((0x20010DB8_00010000 << 64) | key[1]))
        c = self.flood_cache.get(ip)
        if c is None:
            c = make_host(ip, -1, rng)
            c.seen_ttl = rng.randint(40, 64)
            c.mac_eth_out = GW_MAC + c.mac + (b"\x86\xdd" if c.v6 else b"\x08\x00")
            c.mac_eth_in = c.mac + GW_MAC + (b"\x86\xdd" if c.v6 else b"\x08\x00")
            if not c.v6:
                self.flood_cache[ip] = c
        refused = rng.random() < 0.1
        s = self.flood_targets[refused]
        dport = 8080 if refused else 80
        seq = rng.getrandbits(32)
        self.attempt("tcp", c, key[2], s, dport, "",
                     "connection-refused" if refused else "inconclusive", t,
                     **({} if refused else {"accept": ["inconclusive", "server-timeout",
                                                       "ip-block"]}))
        self.tcp(t, c, s, True, key[2], dport, SYN, seq, 0, win=512, ipid=rng.getrandbits(16),
                 df=False)
        if refused:
            self.tcp(t + 30_000, c, s, False, key[2], dport, RST | ACK, 0, seq + 1, win=0,
                     ipid=0, df=True)

    def flush(self, upto):
        """Write every packet with timestamp < upto (all of them if None), time-sorted,
        assigning the per-host sequential IPv4 IP-IDs in that order."""
        if not self.ts:
            return
        ts = np.asarray(self.ts, dtype=np.int64)
        if upto is None:
            sel = np.arange(len(ts))
        else:
            sel = np.nonzero(ts < upto + EPOCH_US)[0]
        if len(sel) == 0:
            return
        order = sel[np.argsort(ts[sel], kind="stable")]
        recs, hids = self.recs, np.asarray(self.hid, dtype=np.int64)
        chunk = bytearray(b"".join([recs[i] for i in order]))
        lens = np.fromiter((len(recs[i]) for i in order), dtype=np.int64, count=len(order))
        h = hids[order]
        starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
        m = h >= 0
        if m.any():
            hh = h[m]
            ip_off = starts[m] + 16 + 14
            # rank of each packet within its host, in time order
            o = np.argsort(hh, kind="stable")
            hs = hh[o]
            first = np.concatenate(([True], hs[1:] != hs[:-1]))
            grp_start = np.maximum.accumulate(np.where(first, np.arange(len(hs)), 0))
            rank = np.empty(len(hs), dtype=np.int64)
            rank[o] = np.arange(len(hs)) - grp_start
            ids = (self.ipid_next[hh] + rank) & M
            np.add.at(self.ipid_next, hh, 1)
            self.ipid_next &= M
            buf = np.frombuffer(chunk, dtype=np.uint8)
            old = (buf[ip_off + 10].astype(np.int64) << 8) | buf[ip_off + 11]
            s = (M - old) + ids  # the header was summed with ID 0: add the ID (RFC 1624)
            s = (s & M) + (s >> 16)
            s = (s & M) + (s >> 16)
            new = M - s
            new = np.where(new == M, 0, new)  # keep the 0x0000 form like fin_csum
            buf[ip_off + 4] = ids >> 8
            buf[ip_off + 5] = ids & 0xFF
            buf[ip_off + 10] = new >> 8
            buf[ip_off + 11] = new & 0xFF
        self.w.write(chunk, lens)
        if upto is None:
            self.ts, self.recs, self.hid = [], [], []
        else:
            keep = np.nonzero(ts >= upto + EPOCH_US)[0]
            self.ts = [self.ts[i] for i in keep]
            self.recs = [self.recs[i] for i in keep]
            self.hid = [self.hid[i] for i in keep]


def hash_name(name: str) -> int:
    h = 2166136261
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


# --------------------------------------------------------------------------- writers
class Writer:
    """Writes time-sorted record chunks to one pcap, or rotates every N packets."""

    def __init__(self, out: str | None, out_dir: str | None, rotate_every: int | None):
        self.rotate = rotate_every
        self.out_dir = out_dir
        self.packets = 0
        self.bytes = 0
        self.files: list[str] = []
        self.f = None
        self.in_file = 0
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        else:
            self._open(out)

    def _open(self, path):
        if self.f:
            self.f.close()
        self.f = open(path, "wb", buffering=8 << 20)
        self.f.write(PCAP_GLOBAL)
        self.bytes += len(PCAP_GLOBAL)
        self.files.append(path)
        self.in_file = 0

    def write(self, chunk: bytearray, lens: np.ndarray):
        n = len(lens)
        if not self.rotate:
            self.f.write(chunk)
            self.packets += n
            self.bytes += len(chunk)
            return
        mv = memoryview(chunk)
        ends = np.cumsum(lens)
        i, off = 0, 0
        while i < n:
            if self.f is None or self.in_file >= self.rotate:
                self._open(os.path.join(self.out_dir, f"part-{len(self.files):05d}.pcap"))
            take = min(self.rotate - self.in_file, n - i)
            end = int(ends[i + take - 1])
            self.f.write(mv[off:end])
            self.bytes += end - off
            off = end
            i += take
            self.in_file += take
            self.packets += take

    def close(self):
        if self.f:
            self.f.close()


def side_paths(out: str | None, out_dir: str | None) -> tuple[str, str]:
    base = out_dir.rstrip("/") if out_dir else (out[:-5] if out.endswith(".pcap") else out)
    return base + ".truth.jsonl", base + ".meta.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=None,
                    help="target packet count (flows are completed, so slightly more); "
                         "default 1000000, or 0 with --synflood")
    ap.add_argument("--out", help="output pcap")
    ap.add_argument("--out-dir", help="with --rotate-every: folder of rotated files")
    ap.add_argument("--rotate-every", type=int, help="packets per rotated file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flows-per-sec", type=float, default=2000.0,
                    help="attempt start rate (sets concurrency); default 2000/s")
    ap.add_argument("--synflood", type=int, default=0, metavar="FLOWS",
                    help="add FLOWS spoofed SYNs from distinct (address, port)")
    ap.add_argument("--flood-rate", type=float, default=100_000.0, help="SYNs per second")
    for f in ("tls", "http", "dns", "refused", "icmp", "ipv6", "rst", "forged_dns",
              "sni_drop", "dns_before_connect"):
        ap.add_argument("--" + f.replace("_", "-"), type=float, default=getattr(Mix, f),
                        help=f"fraction (default {getattr(Mix, f)})")
    a = ap.parse_args(argv)
    if bool(a.out_dir) != bool(a.rotate_every):
        ap.error("--out-dir and --rotate-every go together")
    if not a.out and not a.out_dir:
        ap.error("--out (or --out-dir with --rotate-every) is required")
    packets = a.packets if a.packets is not None else (0 if a.synflood else 1_000_000)
    mix = Mix(**{f: getattr(a, f) for f in Mix.__dataclass_fields__})
    if abs(mix.tls + mix.http + mix.dns + mix.refused + mix.icmp - 1.0) > 1e-6:
        ap.error("--tls --http --dns --refused --icmp must sum to 1")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    truth_path, meta_path = side_paths(a.out, a.out_dir)
    t0 = time.perf_counter()
    w = Writer(None if a.out_dir else a.out, a.out_dir, a.rotate_every)
    cap = Capture(w, a.seed, mix, a.flows_per_sec)
    cap.run(packets, a.synflood, a.flood_rate)
    w.close()
    with open(truth_path, "w") as f:
        for i in range(0, len(cap.truth), 100_000):
            f.write("\n".join(cap.truth[i:i + 100_000]) + "\n")
    dt = time.perf_counter() - t0
    meta = {"generator": "benchmarks/gen_capture.py", "seed": a.seed,
            "packets": w.packets, "bytes": w.bytes, "files": w.files,
            "attempts": len(cap.truth), "attempts_by_kind": cap.kinds,
            "attempts_by_verdict": cap.verdicts, "synflood": a.synflood,
            "mix": mix.__dict__, "flows_per_sec": a.flows_per_sec,
            "truth": truth_path, "generation_seconds": round(dt, 3),
            "checksums": "IPv4 header, TCP, UDP and ICMP checksums all computed"}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{w.packets} packets, {w.bytes / 1e6:.1f} MB, {len(cap.truth)} attempts in "
          f"{dt:.1f} s ({w.packets / dt:,.0f} packets/s) -> "
          f"{a.out or a.out_dir}, {truth_path}, {meta_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
