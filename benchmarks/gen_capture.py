#!/usr/bin/env python3
"""Generate large, realistic captures of connection attempts, with ground truth.

    python benchmarks/gen_capture.py --packets 1000000 --out benchmarks/data/1m.pcap
    python benchmarks/gen_capture.py --packets 1000000 --rotate-every 100000 \
        --out-dir benchmarks/data/rot
    python benchmarks/gen_capture.py --synflood 2000000 --out benchmarks/data/flood.pcap

Output: a classic pcap (Ethernet, microsecond timestamps), plus, next to it,
``<stem>.truth.jsonl`` (one line per attempt, verdict names from the report contract,
docs/verdicts.md) and ``<stem>.meta.json`` (packet, byte and attempt counts).  With
``--out-dir`` the files are ``DIR/part-00000.pcap`` ... (time order) and the truth and
meta are ``DIR.truth.jsonl`` / ``DIR.meta.json`` beside the folder.

How it is fast (no scapy, no Python object per packet):

* flows are drawn in batches of a few thousand, and every step of a flow type (SYN,
  SYN-ACK, ClientHello, each server segment, ...) is emitted for the whole batch at
  once as numpy columns (time, hosts, ports, seq/ack, flags, TTL, IP-ID, payload id);
* payloads are a registry of byte strings with their checksum residues precomputed
  (ClientHello, GET and page per name; DNS question/answer per name and type; TLS
  records in a few variants), so a packet only references one;
* the ones'-complement sum of bytes is their big-endian value mod 0xFFFF, so every
  IPv4 header, TCP, UDP and ICMP checksum is computed arithmetically on the columns:
  **all checksums are correct**;
* packets older than the next batch's first flow are final: they are time-sorted
  (argsort), IPv4 IP-IDs that are sequential per host (clients, servers in
  sequential mode, resolvers) are assigned in that order, and the headers are laid
  out by numpy structured arrays, joined with the payloads and written in chunks.

Only documentation address ranges appear: clients 192.0.2.0/24 and 2001:db8:1::/64,
servers 203.0.113.0/24 and 2001:db8:2::/64, resolvers (and the one router that sends
ICMP time-exceeded) 198.51.100.0/24 and 2001:db8:3::53.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import struct
import sys
import time
from dataclasses import dataclass

import numpy as np

EPOCH_US = 1795255200 * 1_000_000  # 2026-11-21T10:00:00Z
PCAP_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
M = 0xFFFF
TLS_SEG = 1448  # MSS 1460 minus the 12-byte timestamp option
GW_MAC = np.frombuffer(bytes.fromhex("020000fe0001"), dtype=np.uint8)

RESOLVERS = [("198.51.100.53", 64, 12_000), ("198.51.100.54", 128, 25_000),
             ("2001:db8:3::53", 64, 15_000)]
DEAD_RESOLVER = "198.51.100.99"  # answers DNS with ICMP port unreachable
LOOP_ROUTER = "198.51.100.254"  # sends ICMP time exceeded (a transient routing loop)
SINKHOLE_V4 = ["203.0.113.251", "203.0.113.252", "203.0.113.253"]
SINKHOLE_V6 = ["2001:db8:2::dead", "2001:db8:2::beef"]
RST_NAMES = [f"news{i}.blogs.example" for i in range(8)] + ["x.blogs.example"]
DROP_NAMES = [f"forbidden{i}.example" for i in range(8)] + ["y.blogs.example"]
DNS_NAMES = [f"tracker{i}.example" for i in range(8)] + ["z.blogs.example"]
#: Site names served by the ordinary servers (``--sites``).
N_SITES = 5000
#: IPv6 servers (``--v6-servers``): 100 in 2001:db8:2::/64, more in 2001:db8:2:1::/64; the IPv4
#: ones are 200 of 203.0.113.0/24.
N_V6_SERVERS = 100

# packet shapes: how the bytes after the Ethernet header are laid out
T4, T4TS, T4SYN, T6, T6TS, T6SYN, U4, U6, RAW = range(9)


def residue(b: bytes) -> int:
    """Ones'-complement sum of b (16-bit words, zero-padded), as a residue mod 0xFFFF."""
    if len(b) & 1:
        b += b"\0"
    return int.from_bytes(b, "big") % M


def fin_csum(r: int) -> int:
    r %= M
    return M - r if r else 0


# --------------------------------------------------------------------------- payloads
def tls_client_hello(sni: str, rng: random.Random) -> bytes:
    """A browser-like ClientHello (TLS 1.3 capable), padded to 512 bytes, with the SNI."""
    name = sni.encode()
    sn = struct.pack("!BH", 0, len(name)) + name
    ext = struct.pack("!HHH", 0x0000, len(sn) + 2, len(sn)) + sn
    ext += bytes.fromhex("00170000ff01000100000a000a0008001d001700180019000b00020100")
    ext += bytes.fromhex("0010000e000c02683208687474702f312e31")  # ALPN h2, http/1.1
    ext += bytes.fromhex("000d0012001004030804040105030805050108060601")
    ext += bytes.fromhex("002b00050403040303")  # supported_versions 1.3, 1.2
    ext += bytes.fromhex("002d00020101")
    ext += struct.pack("!HHHHH", 0x0033, 38, 36, 0x001D, 32) + rng.randbytes(32)
    ciphers = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    pad = 512 - 4 - (2 + 32 + 1 + 32 + 2 + len(ciphers) + 2 + 2 + len(ext)) - 4
    if pad > 0:
        ext += struct.pack("!HH", 0x0015, pad) + b"\0" * pad
    body = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
            + struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00"
            + struct.pack("!H", len(ext)) + ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def tls_server_flight(rng: random.Random) -> bytes:
    """TLS 1.3 server flight: ServerHello (plaintext, handshake type 2), the compatibility
    ChangeCipherSpec, then the encrypted extensions/certificate/verify/finished."""
    exts = (bytes.fromhex("002b00020304")
            + struct.pack("!HHHH", 0x0033, 36, 0x001D, 32) + rng.randbytes(32))
    sh = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\x13\x01\x00"
          + struct.pack("!H", len(exts)) + exts)
    hs = b"\x02" + len(sh).to_bytes(3, "big") + sh
    out = b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"
    n = rng.randint(800, 2000)
    return out + b"\x17\x03\x03" + struct.pack("!H", n) + rng.randbytes(n)


def app_data(rng: random.Random, n: int) -> bytes:
    out = b""
    while n > 0:
        k = min(n, 16384 + 17)
        out += b"\x17\x03\x03" + struct.pack("!H", k) + rng.randbytes(k)
        n -= k
    return out


def dns_question(name: str, qtype: int) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return q + struct.pack("!HH", qtype, 1)


def dns_answer_rr(qtype: int, ttl: int, addr: bytes) -> bytes:
    return struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(addr)) + addr


def fnv(name: str) -> int:
    h = 2166136261
    for ch in name.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


class Payloads:
    """Registry of payload byte strings with their lengths and checksum residues."""

    def __init__(self):
        self.data: list[bytes] = [b""]
        self.lens: list[int] = [0]
        self.res: list[int] = [0]
        self._np = None

    def add(self, b: bytes) -> int:
        self.data.append(b)
        self.lens.append(len(b))
        self.res.append(residue(b))
        self._np = None
        return len(self.data) - 1

    def segments(self, b: bytes, mss: int = TLS_SEG) -> list[int]:
        return [self.add(b[i:i + mss]) for i in range(0, len(b), mss)]

    def arrays(self):
        if self._np is None:
            self._np = (np.array(self.lens, dtype=np.int64), np.array(self.res, dtype=np.int64),
                        np.array(self.data, dtype=object))
        return self._np


def seg_table(segs: list[list[int]], P: Payloads):
    """Per variant: number of segments, and (padded) payload ids, lengths, offsets."""
    k = max(len(s) for s in segs)
    n = np.array([len(s) for s in segs])
    pid = np.zeros((len(segs), k), dtype=np.int64)
    for i, s in enumerate(segs):
        pid[i, :len(s)] = s
    ln = np.array(P.lens, dtype=np.int64)[pid] * (np.arange(k) < n[:, None])
    off = np.concatenate([np.zeros((len(segs), 1), dtype=np.int64), np.cumsum(ln, 1)], 1)
    return n, pid, ln, off


# --------------------------------------------------------------------------- config
@dataclass
class Mix:
    tls: float = 0.33
    http: float = 0.07
    dns: float = 0.55
    refused: float = 0.03
    icmp: float = 0.02
    ipv6: float = 0.20
    dns_before_connect: float = 0.3  # an ok TLS/HTTP flow is preceded by its DNS lookup
    rst: float = 0.02  # of TLS+HTTP flows
    forged_dns: float = 0.02  # of standalone DNS queries
    sni_drop: float = 0.02  # of TLS flows


COLS = ("ts", "shape", "src", "dst", "fromc", "sport", "dport", "seq", "ack", "flags", "win",
        "ttl", "ipid", "hid", "df", "tsval", "tsecr", "pid", "dnsid", "dnsfl", "ancount")


# --------------------------------------------------------------------------- generator
class Generator:
    def __init__(self, writer, truth_file, seed: int, mix: Mix, flows_per_sec: float,
                 sites: int = N_SITES, v6_servers: int = N_V6_SERVERS):
        self.n_sites, self.n_v6 = sites, v6_servers
        self.w = writer
        self.truth_f = truth_file
        self.mix = mix
        self.rate = flows_per_sec
        self.py = random.Random(seed)
        self.rng = np.random.default_rng(seed)
        self.P = Payloads()
        self.pending: dict[str, list[np.ndarray]] = {c: [] for c in COLS}
        self.count = 0
        self.rows: list[tuple] = []
        self.attempts = 0
        self.kinds: dict[str, int] = {}
        self.verdicts: dict[str, int] = {}
        self._hosts()
        self._payloads()

    # ---------------------------------------------------------------- hosts
    def _hosts(self):
        py = self.py
        ips, ttl, hid, df, rtt = [], [], [], [], []
        self.nhid = 0

        def add(ip, seen_ttl=64, seq_ids=True, zero_df=False, rtt_us=0):
            a = ipaddress.ip_address(ip)
            ips.append(a)
            ttl.append(seen_ttl)
            if seq_ids and a.version == 4 and not zero_df:
                hid.append(self.nhid)
                self.nhid += 1
            else:
                hid.append(-1)
            df.append(zero_df)
            rtt.append(rtt_us)
            return len(ips) - 1

        self.c4 = np.array([add(f"192.0.2.{i}") for i in range(10, 250)])
        self.c6 = np.array([add(f"2001:db8:1::{0x1000 + i:x}") for i in range(60)])
        s4, s6 = [], []
        for i in range(1, 201):
            init = 64 if py.random() < 0.7 else 128
            s4.append(add(f"203.0.113.{i}", init - py.randint(10, 14), True, py.random() < 0.3,
                          py.randint(20_000, 80_000)))
        for i in range(1, self.n_v6 + 1):
            init = 64 if py.random() < 0.7 else 128
            # past the first 100, a /64 of their own (clear of the flood targets and the sinkholes)
            ip = f"2001:db8:2::{i:x}" if i <= 100 else f"2001:db8:2:1::{i >> 16:x}:{i & 0xffff:x}"
            s6.append(add(ip, init - py.randint(10, 14), False, False,
                          py.randint(20_000, 80_000)))
        self.s4, self.s6 = np.array(s4), np.array(s6)
        self.res4 = np.array([add(ip, t - 7, True, False, r) for ip, t, r in RESOLVERS[:2]])
        self.res6 = add(RESOLVERS[2][0], RESOLVERS[2][1] - 7, False, False, RESOLVERS[2][2])
        self.dead = add(DEAD_RESOLVER, 57, True, False, 14_000)
        self.router = add(LOOP_ROUTER, 250, False)
        self.flood_dst = [add("203.0.113.80", 52, False, True, 30_000),
                          add("203.0.113.81", 52, False, True, 30_000)]
        self.flood_dst6 = [add("2001:db8:2::80", 52, False, False, 30_000),
                           add("2001:db8:2::81", 52, False, False, 30_000)]
        self._set_hosts(ips, ttl, hid, df, rtt)
        self.ipid_next = self.rng.integers(0, 65536, self.nhid).astype(np.int64)
        self.port_next = self.rng.integers(32768, 61000, len(self.h_ip)).astype(np.int64)

    def _set_hosts(self, ips, ttl, hid, df, rtt):
        self.h_ip = [str(a) for a in ips]
        self.h_v6 = np.array([a.version == 6 for a in ips])
        packed = [a.packed.rjust(16, b"\0") for a in ips]
        self.h_addr16 = np.frombuffer(b"".join(packed), dtype=np.uint8).reshape(-1, 16).copy()
        self.h_addr32 = np.array([int.from_bytes(p[12:], "big") for p in packed], dtype=np.uint32)
        self.h_res = np.array([residue(a.packed) for a in ips], dtype=np.int64)
        self.h_mac = np.zeros((len(ips), 6), dtype=np.uint8)
        self.h_mac[:, 0] = 2
        self.h_mac[:, 1] = np.where(self.h_v6, 0x16, 0x10)
        self.h_mac[:, 2:] = self.h_addr16[:, 12:]
        self.h_ttl = np.array(ttl, dtype=np.int64)
        self.h_hid = np.array(hid, dtype=np.int64)
        self.h_df = np.array(df)
        self.h_rtt = np.array(rtt, dtype=np.int64)
        self.h_tsb = self.rng.integers(0, 2**32, len(ips)).astype(np.int64)

    def add_flood_hosts(self, ips: list[str], a16: np.ndarray):
        """Append hosts given their text forms and 16-byte (v4: right-aligned) addresses."""
        n0 = len(self.h_ip)
        self.h_ip += ips
        v6 = np.array([":" in a for a in ips])
        self.h_v6 = np.concatenate([self.h_v6, v6])
        self.h_addr16 = np.concatenate([self.h_addr16, a16])
        self.h_addr32 = np.concatenate([self.h_addr32, (a16[:, 12:].astype(np.uint32) << np.array(
            [24, 16, 8, 0], dtype=np.uint32)).sum(1).astype(np.uint32)])
        w = a16.reshape(-1, 8, 2).astype(np.int64)
        self.h_res = np.concatenate([self.h_res, ((w[:, :, 0] << 8) | w[:, :, 1]).sum(1) % M])
        mac = np.zeros((len(ips), 6), dtype=np.uint8)
        mac[:, 0], mac[:, 1], mac[:, 2:] = 2, np.where(v6, 0x16, 0x10), a16[:, 12:]
        self.h_mac = np.concatenate([self.h_mac, mac])
        z = np.zeros(len(ips), dtype=np.int64)
        self.h_ttl = np.concatenate([self.h_ttl, z + 64])
        self.h_hid = np.concatenate([self.h_hid, z - 1])
        self.h_df = np.concatenate([self.h_df, z.astype(bool)])
        self.h_rtt = np.concatenate([self.h_rtt, z])
        self.h_tsb = np.concatenate([self.h_tsb, z])
        return np.arange(n0, n0 + len(ips))

    # ---------------------------------------------------------------- payloads
    def _payloads(self):
        py, P = self.py, self.P
        self.names = [f"site{i}.example" for i in range(self.n_sites)] + RST_NAMES + DROP_NAMES \
            + DNS_NAMES
        self.i_rst = np.arange(self.n_sites, self.n_sites + len(RST_NAMES))
        self.i_drop = self.i_rst[-1] + 1 + np.arange(len(DROP_NAMES))
        self.i_dnsblk = self.i_drop[-1] + 1 + np.arange(len(DNS_NAMES))
        nn = len(self.names)
        h = np.array([fnv(n) for n in self.names], dtype=np.int64)
        self.name_srv4 = self.s4[h % len(self.s4)]
        self.name_srv6 = self.s6[h % len(self.s6)]
        self.ch_pid = np.array([P.add(tls_client_hello(n, py)) for n in self.names])
        self.get_pid = np.array([P.add(f"GET / HTTP/1.1\r\nHost: {n}\r\nUser-Agent: curl/8.5.0"
                                       f"\r\nAccept: */*\r\n\r\n".encode()) for n in self.names])
        pages = []
        for n in self.names:
            body = (f"<!doctype html><html><head><title>{n}</title></head><body>"
                    + "<p>lorem ipsum dolor sit amet</p>" * py.randint(3, 30)
                    + "</body></html>").encode()
            pages.append(P.segments(f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                                    .encode() + body))
        self.page = seg_table(pages, P)
        self.flight = seg_table([P.segments(tls_server_flight(py)) for _ in range(16)], P)
        self.srv_flight = self.rng.integers(0, 16, len(self.h_ip))
        self.app = seg_table([P.segments(app_data(py, py.randint(100, TLS_SEG + 400)))
                              for _ in range(24)], P)
        self.cfin = np.array([P.add(b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35"
                                    + py.randbytes(53)) for _ in range(8)])
        self.tickets = np.array([P.add(b"\x17\x03\x03\x00\xea" + py.randbytes(0xEA))
                                 for _ in range(8)])
        self.creq = np.array([P.add(b"\x17\x03\x03" + struct.pack("!H", n) + py.randbytes(n))
                              for n in (py.randint(250, 600) for _ in range(8))])
        # DNS: per name and type (A=0, AAAA=1): question, answer, forged answer
        self.q_pid = np.zeros((nn, 2), dtype=np.int64)
        self.a_pid = np.zeros((nn, 2), dtype=np.int64)
        self.f_pid = np.zeros((nn, 2), dtype=np.int64)
        self.qd_bytes: dict[tuple, bytes] = {}
        for i, n in enumerate(self.names):
            for j, qt in enumerate((1, 28)):
                q = dns_question(n, qt)
                self.qd_bytes[(i, j)] = q
                srv = self.name_srv6[i] if qt == 28 else self.name_srv4[i]
                addr = ipaddress.ip_address(self.h_ip[srv]).packed
                self.q_pid[i, j] = P.add(q)
                self.a_pid[i, j] = P.add(q + dns_answer_rr(qt, 300, addr))
                if i >= self.n_sites:
                    fake = ipaddress.ip_address(py.choice(SINKHOLE_V6 if qt == 28 else SINKHOLE_V4))
                    self.f_pid[i, j] = P.add(q + dns_answer_rr(qt, py.choice([60, 600]),
                                                               fake.packed))

    # ---------------------------------------------------------------- emission
    def emit(self, ts, shape, src, dst, fromc, sport, dport, seq=0, ack=0, flags=0, win=0,
             ttl=None, ipid=0, hid=None, df=True, tsval=0, tsecr=0, pid=0, dnsid=0, dnsfl=0,
             ancount=0):
        """Append one packet per flow of the batch (all arguments arrays or scalars).
        ttl None: the sender's TTL; hid None: the sender's own sequential IP-ID."""
        ts = np.asarray(ts, dtype=np.int64)
        n = ts.shape[0]
        if n == 0:
            return
        src = np.asarray(src)
        if ttl is None:
            ttl = self.h_ttl[src]
        if hid is None:
            hid = self.h_hid[src]
        vals = (ts, shape, src, dst, fromc, sport, dport, seq, ack, flags, win, ttl, ipid, hid,
                df, tsval, tsecr, pid, dnsid, dnsfl, ancount)
        pend = self.pending
        for c, v in zip(COLS, vals):
            if isinstance(v, np.ndarray) and v.ndim:
                pend[c].append(v if v.dtype == np.int64 else v.astype(np.int64))
            else:
                pend[c].append(np.full(n, v, dtype=np.int64))
        self.count += n

    def row(self, ts, shape, src, dst, fromc, sport, dport, seq=0, ack=0, flags=0, win=0,
            ttl=None, ipid=0, hid=None, df=True, tsval=0, tsecr=0, pid=0, dnsid=0, dnsfl=0,
            ancount=0):
        """One packet (scalars), collected and emitted with the batch (see emit)."""
        if ttl is None:
            ttl = int(self.h_ttl[src])
        if hid is None:
            hid = int(self.h_hid[src])
        self.rows.append((ts, shape, src, dst, fromc, sport, dport, seq, ack, flags, win, ttl,
                          ipid, hid, int(df), tsval, tsecr, pid, dnsid, dnsfl, ancount))

    def emit_rows(self):
        if self.rows:
            cols = np.array(self.rows, dtype=np.int64).T
            self.rows = []
            self.emit(*cols)

    def truth(self, kind, c, cport, s, sport, name_idx, verdict, t, extra=None):
        """Truth lines for a batch of attempts (arrays), in generation order."""
        ip = self.h_ip
        names = self.names
        cl, cpl, sl, spl, tl = (np.asarray(x).tolist() for x in (c, cport, s, sport, t))
        nms = ([""] * len(cl) if name_idx is None
               else [names[i] for i in np.asarray(name_idx).tolist()])
        if extra is None:
            ext = [""] * len(cl)
        elif isinstance(extra, str):
            ext = ["," + extra] * len(cl)
        else:
            ext = ["," + x for x in extra]
        fmt = ('{"kind":"%s","client":{"ip":"%%s","port":%%d},"server":{"ip":"%%s","port":%%d},'
               '"name":"%%s","verdict":"%s","start":%%d%%s}\n' % (kind, verdict))
        out = [fmt % (ip[a], b, ip[d], e, f, g + EPOCH_US, x)
               for a, b, d, e, f, g, x in zip(cl, cpl, sl, spl, nms, tl, ext)]
        self.truth_f.write("".join(out))
        self.attempts += len(cl)
        self.kinds[kind] = self.kinds.get(kind, 0) + len(cl)
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + len(cl)

    def ports(self, c: np.ndarray) -> np.ndarray:
        """Ephemeral ports, sequential per client host (32768-60999)."""
        order = np.argsort(c, kind="stable")
        cs = c[order]
        first = np.r_[True, cs[1:] != cs[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(cs)), 0))
        rank = np.empty(len(c), dtype=np.int64)
        rank[order] = np.arange(len(cs)) - start
        p = 32768 + (self.port_next[c] - 32768 + rank) % (61000 - 32768)
        np.add.at(self.port_next, c, 1)
        self.port_next = 32768 + (self.port_next - 32768) % (61000 - 32768)
        return p

    def U(self, lo, hi, n):
        return self.rng.integers(lo, hi + 1, n)

    # ---------------------------------------------------------------- flows
    def tcp_flows(self, t, c, s, name, v6, tls: bool, fate: str):
        """A batch of TLS (tls=True) or HTTP connections; fate ok | rst | drop."""
        n = len(t)
        if n == 0:
            return
        U, e = self.U, self.emit
        kind = "tls" if tls else "http"
        sport = self.ports(c)
        dport = 443 if tls else 80
        rtt = self.h_rtt[s] + U(-1000, 1000, n)
        ci = self.rng.integers(0, 2**32, n)
        si = self.rng.integers(0, 2**32, n)
        ctb, stb = self.h_tsb[c], self.h_tsb[s]

        def T(x):
            return (ctb + x // 1000) & 0xFFFFFFFF

        def S(x):
            return (stb + x // 1000) & 0xFFFFFFFF

        verdict = {"ok": "ok", "rst": "injected-rst", "drop": "sni-drop"}[fate]
        trig = {"ok": None, "rst": '"trigger":"%s"' % ("sni" if tls else "host"),
                "drop": '"trigger":"sni"'}[fate]
        self.truth(kind, c, sport, s, np.full(n, dport), name, verdict, t, trig)
        sh_syn, sh_ts, sh_bare = T4SYN + 3 * v6, T4TS + 3 * v6, T4 + 3 * v6
        # handshake
        e(t, sh_syn, c, s, 1, sport, dport, ci, 0, SYN, 64240, tsval=T(t))
        t1 = t + rtt
        e(t1, sh_syn, s, c, 0, sport, dport, si, ci + 1, SYN | ACK, 65160, tsval=S(t1),
          tsecr=T(t))
        t2 = t1 + U(30, 200, n)
        e(t2, sh_ts, c, s, 1, sport, dport, ci + 1, si + 1, ACK, 502, tsval=T(t2), tsecr=S(t1))
        t3 = t2 + U(100, 1500, n)
        req = self.ch_pid[name] if tls else self.get_pid[name]
        rlen = self.P.arrays()[0][req]
        cseq = ci + 1 + rlen
        e(t3, sh_ts, c, s, 1, sport, dport, ci + 1, si + 1, PSH | ACK, 502, tsval=T(t3),
          tsecr=S(t1), pid=req)
        if fate == "drop":
            nrt = U(3, 5, n)  # retransmissions, RTO doubling from 200 ms + RTT
            rto = 200_000 + rtt
            tr = t3.copy()
            for k in range(5):
                m = nrt > k
                tr = np.where(m, tr + rto, tr)
                rto = rto * 2
                e(tr[m], sh_ts[m], c[m], s[m], 1, sport[m], dport, ci[m] + 1, si[m] + 1,
                  PSH | ACK, 502, tsval=T(tr)[m], tsecr=S(t1)[m], pid=req[m])
            tq = tr + U(200_000, 2_000_000, n)
            m = self.rng.random(n) < 0.5
            e(tq[m], sh_ts[m], c[m], s[m], 1, sport[m], dport, ci[m] + 1, si[m] + 1, RST | ACK, 0,
              tsval=T(tq)[m], tsecr=S(t1)[m])
            m = ~m
            e(tq[m], sh_ts[m], c[m], s[m], 1, sport[m], dport, cseq[m], si[m] + 1, FIN | ACK, 502,
              tsval=T(tq)[m], tsecr=S(t1)[m])
            # the control: another name to the same server, a little later, passes
            tc = t3 + U(50_000, 400_000, n)
            other = self.rng.integers(0, self.n_sites, n)
            o = np.argsort(tc)
            self.tcp_flows(tc[o], c[o], s[o], other[o], v6[o], True, "ok")
            return
        t4 = t3 + rtt + U(100, 3000, n)
        if tls:
            nseg, spid, slen, soff = (a[self.srv_flight[s]] for a in self.flight)
        else:
            nseg, spid, slen, soff = (a[name] for a in self.page)
        K = spid.shape[1]
        if fate == "rst":
            inj_ttl = 64 - (U(3, 5, n) - 1)
            nr = U(1, 3, n)
            ti = t3 + U(800, 5000, n)
            for k in range(3):
                m = nr > k
                rstack = self.rng.random(n) < 0.5
                ipid = np.where(self.rng.random(n) < 0.5, 0, self.rng.integers(0, 65536, n))
                e(ti[m], sh_bare[m], s[m], c[m], 0, sport[m], dport, si[m] + 1 + k * TLS_SEG,
                  np.where(rstack, cseq, 0)[m], np.where(rstack, RST | ACK, RST)[m],
                  np.where(rstack, self.U(200, 60000, n), 0)[m], ttl=inj_ttl[m], ipid=ipid[m],
                  hid=-1, df=0)
                ti = ti + U(50, 600, n)
            # the real server's data still arrives; the client's stack has dropped the
            # connection and answers each segment with a reset
            tt = t4.copy()
            for k in range(K):
                m = nseg > k
                fl = np.where(nseg - 1 == k, PSH | ACK, ACK)
                e(tt[m], sh_ts[m], s[m], c[m], 0, sport[m], dport, (si + 1 + soff[:, k])[m],
                  cseq[m], fl[m], 509, tsval=S(tt)[m], tsecr=T(t3)[m], pid=spid[m, k])
                tx = tt + U(20, 120, n)
                e(tx[m], sh_bare[m], c[m], s[m], 1, sport[m], dport, cseq[m], 0, RST, 0)
                tt = tt + U(10, 80, n)
            return
        # ok: the server's answer
        tt = t4.copy()
        for k in range(K):
            m = nseg > k
            fl = np.where(nseg - 1 == k, PSH | ACK, ACK)
            e(tt[m], sh_ts[m], s[m], c[m], 0, sport[m], dport, (si + 1 + soff[:, k])[m], cseq[m],
              fl[m], 509, tsval=S(t4)[m], tsecr=T(t3)[m], pid=spid[m, k])
            tt = np.where(m, tt + U(10, 80, n), tt)
        sseq = si + 1 + soff[np.arange(n), nseg]
        ta = tt + U(30, 300, n)
        e(ta, sh_ts, c, s, 1, sport, dport, cseq, sseq, ACK, 501, tsval=T(ta), tsecr=S(t4))
        if tls:
            fin = self.cfin[self.rng.integers(0, 8, n)]
            ta = ta + U(200, 2000, n)
            e(ta, sh_ts, c, s, 1, sport, dport, cseq, sseq, PSH | ACK, 501, tsval=T(ta),
              tsecr=S(t4), pid=fin)
            cseq = cseq + 64
            tb = ta + rtt + U(100, 2000, n)
            tk = self.tickets[self.rng.integers(0, 8, n)]
            e(tb, sh_ts, s, c, 0, sport, dport, sseq, cseq, PSH | ACK, 509, tsval=S(tb),
              tsecr=T(ta), pid=tk)
            sseq = sseq + 0xEA + 5
            tq = tb + U(100, 2000, n)
            rq = self.creq[self.rng.integers(0, 8, n)]
            e(tq, sh_ts, c, s, 1, sport, dport, cseq, sseq, PSH | ACK, 501, tsval=T(tq),
              tsecr=S(tb), pid=rq)
            cseq = cseq + self.P.arrays()[0][rq]
            tr = tq + rtt + U(500, 20_000, n)
            av = self.rng.integers(0, len(self.app[0]), n)
            nseg, apid, alen, aoff = (a[av] for a in self.app)
            for k in range(apid.shape[1]):
                m = nseg > k
                e(tr[m], sh_ts[m], s[m], c[m], 0, sport[m], dport, (sseq + aoff[:, k])[m],
                  cseq[m], np.where(nseg - 1 == k, PSH | ACK, ACK)[m], 509, tsval=S(tr)[m],
                  tsecr=T(tq)[m], pid=apid[m, k])
                tr = np.where(m, tr + U(10, 200, n), tr)
            sseq = sseq + aoff[np.arange(n), nseg]
            ta = tr + U(30, 300, n)
            e(ta, sh_ts, c, s, 1, sport, dport, cseq, sseq, ACK, 501, tsval=T(ta), tsecr=S(tr))
            tf = ta + U(1000, 50_000, n)
            e(tf, sh_ts, c, s, 1, sport, dport, cseq, sseq, FIN | ACK, 501, tsval=T(tf),
              tsecr=S(tr))
            tg = tf + rtt
            e(tg, sh_ts, s, c, 0, sport, dport, sseq, cseq + 1, FIN | ACK, 509, tsval=S(tg),
              tsecr=T(tf))
            th = tg + U(30, 200, n)
            e(th, sh_ts, c, s, 1, sport, dport, cseq + 1, sseq + 1, ACK, 501, tsval=T(th),
              tsecr=S(tg))
        else:  # HTTP, Connection: close: the server closes
            tg = tt + U(10, 200, n)
            e(tg, sh_ts, s, c, 0, sport, dport, sseq, cseq, FIN | ACK, 509, tsval=S(tg),
              tsecr=T(t3))
            th = tg + U(500, 5000, n)
            e(th, sh_ts, c, s, 1, sport, dport, cseq, sseq + 1, FIN | ACK, 501, tsval=T(th),
              tsecr=S(tg))
            e(th + rtt, sh_ts, s, c, 0, sport, dport, sseq + 1, cseq + 1, ACK, 509,
              tsval=S(th + rtt), tsecr=T(th))

    def refused_flows(self, t, c, s, v6):
        n = len(t)
        if n == 0:
            return
        sport = self.ports(c)
        dport = np.array([8443, 22, 8080, 3389])[self.rng.integers(0, 4, n)]
        ci = self.rng.integers(0, 2**32, n)
        self.truth("tcp", c, sport, s, dport, None, "connection-refused", t)
        self.emit(t, T4SYN + 3 * v6, c, s, 1, sport, dport, ci, 0, SYN, 64240,
                  tsval=(self.h_tsb[c] + t // 1000) & 0xFFFFFFFF)
        self.emit(t + self.h_rtt[s] + self.U(-500, 500, n), T4 + 3 * v6, s, c, 0, sport, dport,
                  0, ci + 1, RST | ACK, 0)

    def dns_flows(self, t, c, r, name, aaaa, fate: str):
        """A batch of DNS transactions (fate ok | forged); returns the answer times."""
        n = len(t)
        if n == 0:
            return t
        cport = self.ports(c)
        txid = self.rng.integers(0, 65536, n)
        qt = np.where(aaaa, 1, 0)
        verdict = "forged-dns" if fate == "forged" else "ok"
        tx, ql = txid.tolist(), qt.tolist()
        trig = ',"trigger":"dns-qname"' if fate == "forged" else ""
        self.truth("dns", c, cport, r, np.full(n, 53), name, verdict, t,
                   ['"txid":%d,"qtype":"%s"%s' % (a, "AAAA" if b else "A", trig)
                    for a, b in zip(tx, ql)])
        v6 = self.h_v6[c].astype(np.int64)
        sh = U4 + v6
        self.emit(t, sh, c, r, 1, cport, 53, dnsid=txid, dnsfl=0x0100, pid=self.q_pid[name, qt],
                  df=0)
        if fate == "forged":
            tf = t + self.U(1000, 6000, n)
            self.emit(tf, sh, r, c, 0, cport, 53, dnsid=txid, dnsfl=0x8180, ancount=1,
                      pid=self.f_pid[name, qt], ttl=64 - (self.U(3, 5, n) - 1),
                      ipid=self.rng.integers(0, 65536, n), hid=-1, df=0)
        ta = t + self.h_rtt[r] + self.U(0, 8000, n)
        self.emit(ta, sh, r, c, 0, cport, 53, dnsid=txid, dnsfl=0x8180, ancount=1,
                  pid=self.a_pid[name, qt], df=0)
        return ta

    def icmp_flow(self, t: int, c: int, name: int, unreach: bool):
        """A DNS query answered by ICMP port unreachable (a dead resolver: dns-failure), or
        one that expires in a routing loop (ICMP time exceeded) and is retried: ok."""
        py = self.py
        r = self.dead if unreach else int(self.res4[0])
        cport = int(self.port_next[c])  # the next ephemeral port, as ports() would
        self.port_next[c] = 32768 if cport >= 60999 else cport + 1
        txid = py.getrandbits(16)
        q = self.qd_bytes[(name, 0)]
        verdict = "dns-failure" if unreach else "ok"
        self.truth("dns", [c], [cport], [r], [53], [name], verdict, [t],
                   '"txid":%d,"qtype":"A"' % txid)
        a = t
        self.row(a, U4, c, r, 1, cport, 53, dnsid=txid, dnsfl=0x0100, pid=int(self.q_pid[name, 0]),
                  df=0)
        # the quoted datagram, as the ICMP sender saw it (IP-ID 0 in the quote)
        dns = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + q
        src, dst = self.h_addr16[c, 12:].tobytes(), self.h_addr16[r, 12:].tobytes()
        ulen = 8 + len(dns)
        ucs = fin_csum(cport + 53 + ulen + residue(dns) + residue(src + dst) + 17 + ulen) or M
        ttl_q = 64 if unreach else 1
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, ttl_q, 17, 0, src, dst)
        iph = iph[:10] + struct.pack("!H", fin_csum(residue(iph))) + iph[12:]
        quoted = iph + struct.pack("!HHHH", cport, 53, ulen, ucs) + dns
        sender = r if unreach else self.router
        typ, code = (3, 3) if unreach else (11, 0)
        icmp = struct.pack("!BBHI", typ, code, fin_csum((typ << 8) + code + residue(quoted)),
                           0) + quoted
        s_ip = self.h_addr16[sender, 12:].tobytes()
        ttl = int(self.h_ttl[sender])
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(icmp), py.getrandbits(16), 0,
                          ttl, 1, 0, s_ip, src)
        iph = iph[:10] + struct.pack("!H", fin_csum(residue(iph))) + iph[12:]
        te = t + (int(self.h_rtt[r]) if unreach else 9000)
        self.row(te, RAW, sender, c, 0, 0, 0, pid=self.P.add(iph + icmp), hid=-1)
        if not unreach:
            t2 = t + 1_000_000
            self.row(t2, U4, c, r, 1, cport, 53, dnsid=txid, dnsfl=0x0100,
                      pid=int(self.q_pid[name, 0]), df=0)
            self.row(t2 + int(self.h_rtt[r]), U4, r, c, 0, cport, 53, dnsid=txid, dnsfl=0x8180,
                      ancount=1, pid=int(self.a_pid[name, 0]), df=0)

    # ---------------------------------------------------------------- batches
    def batch(self, t0: int, n: int) -> int:
        """n attempts starting after t0 (Poisson); returns the last start time."""
        rng, mx = self.rng, self.mix
        t = t0 + np.cumsum(rng.exponential(1e6 / self.rate, n).astype(np.int64) + 1)
        x = rng.random(n)
        v6 = rng.random(n) < mx.ipv6
        c = np.where(v6, self.c6[rng.integers(0, len(self.c6), n)],
                     self.c4[rng.integers(0, len(self.c4), n)])
        y = rng.random(n)
        site = rng.integers(0, self.n_sites, n)
        edges = np.cumsum([mx.tls, mx.http, mx.dns, mx.refused])
        kind = np.searchsorted(edges, x, side="right")  # 0 tls 1 http 2 dns 3 refused 4 icmp
        for k, tls in ((0, True), (1, False)):
            sel = kind == k
            rst = sel & (y < mx.rst)
            drop = sel & ~rst & (y < mx.rst + mx.sni_drop) if tls else np.zeros(n, bool)
            ok = sel & ~rst & ~drop
            for m, fate, pool in ((rst, "rst", self.i_rst), (drop, "drop", self.i_drop)):
                nm = pool[rng.integers(0, len(pool), m.sum())]
                srv = np.where(v6[m], self.name_srv6[nm], self.name_srv4[nm])
                self.tcp_flows(t[m], c[m], srv, nm, v6[m], tls, fate)
            nm = site[ok]
            srv = np.where(v6[ok], self.name_srv6[nm], self.name_srv4[nm])
            to = t[ok]
            pre = rng.random(len(to)) < mx.dns_before_connect
            if pre.any():
                cc = c[ok][pre]
                r = np.where(self.h_v6[cc], self.res6, self.res4[(rng.random(len(cc)) < 0.3) * 1])
                to = to.copy()
                to[pre] = self.dns_flows(to[pre], cc, r, nm[pre], v6[ok][pre], "ok") + 500
            self.tcp_flows(to, c[ok], srv, nm, v6[ok], tls, "ok")
        sel = kind == 2
        forged = sel & (y < mx.forged_dns)
        for m, fate, names in ((forged, "forged", self.i_dnsblk[rng.integers(0, 9, n)]),
                               (sel & ~forged, "ok", site)):
            cc = c[m]
            r = np.where(self.h_v6[cc], self.res6, self.res4[(rng.random(len(cc)) < 0.3) * 1])
            self.dns_flows(t[m], cc, r, names[m], rng.random(len(cc)) < 0.35, fate)
        m = kind == 3
        srv = np.where(v6[m], self.s6[rng.integers(0, len(self.s6), n)][m],
                       self.s4[rng.integers(0, len(self.s4), n)][m])
        self.refused_flows(t[m], c[m], srv, v6[m].astype(np.int64))
        for i in np.nonzero(kind == 4)[0].tolist():
            cl = int(self.c4[rng.integers(0, len(self.c4))])
            self.icmp_flow(int(t[i]), cl, int(site[i]), bool(rng.random() < 0.5))
        self.emit_rows()
        return int(t[-1])

    def flood(self, nflows: int, rate: float, t0: int = 0):
        """Spoofed SYNs from distinct (source, port) to two servers; 10 % draw a RST."""
        rng = self.rng
        n6 = int(nflows * 0.2)
        n4 = nflows - n6
        combo = rng.choice(254 * 64512, size=n4, replace=False)
        v4 = np.zeros((254, 16), dtype=np.uint8)
        v4[:, 12:15] = (192, 0, 2)
        v4[:, 15] = np.arange(1, 255)
        v4hosts = self.add_flood_hosts([f"192.0.2.{i}" for i in range(1, 255)], v4)
        # random interface ids with no zero group, so the text form needs no "::"
        iid = np.unique(rng.integers(1, 2**63, int(n6 * 1.01) + 10, dtype=np.uint64)
                        | np.uint64(0x0001000100010001))[:n6]
        rng.shuffle(iid)
        a16 = np.zeros((len(iid), 16), dtype=np.uint8)
        a16[:, :8] = np.frombuffer(bytes.fromhex("20010db800010000"), dtype=np.uint8)
        a16[:, 8:] = iid.astype(">u8").view(np.uint8).reshape(-1, 8)
        g = iid.astype(np.uint64)
        txt = ["2001:db8:1:0:%x:%x:%x:%x" % (x >> 48, (x >> 32) & M, (x >> 16) & M, x & M)
               for x in g.tolist()]
        v6hosts = self.add_flood_hosts(txt, a16)
        src = np.concatenate([v4hosts[combo % 254], v6hosts])
        sport = np.concatenate([1024 + combo // 254, rng.integers(1024, 65536, n6)])
        perm = rng.permutation(nflows)
        src, sport = src[perm], sport[perm]
        ts = t0 + np.cumsum(rng.exponential(1e6 / rate, nflows).astype(np.int64) + 1)
        self.flood_plan = (ts, src, sport)

    def flood_batch(self, lo: int, hi: int):
        ts, src, sport = self.flood_plan
        sel = slice(np.searchsorted(ts, lo), np.searchsorted(ts, hi))
        t, c, sp = ts[sel], src[sel], sport[sel]
        n = len(t)
        if n == 0:
            return
        rng = self.rng
        ref = rng.random(n) < 0.1
        v6 = self.h_v6[c].astype(np.int64)
        seq = rng.integers(0, 2**32, n)
        dst = np.where(v6 == 1, np.where(ref, self.flood_dst6[1], self.flood_dst6[0]),
                       np.where(ref, self.flood_dst[1], self.flood_dst[0]))
        dport = np.where(ref, 8080, 80)
        for m, verdict, extra in (
                (~ref, "inconclusive", '"accept":["inconclusive","server-timeout","ip-block"]'),
                (ref, "connection-refused", None)):
            self.truth("tcp", c[m], sp[m], dst[m], dport[m], None, verdict, t[m], extra)
        self.emit(t, T4 + 3 * v6, c, dst, 1, sp, dport, seq, 0, SYN, 512,
                  ttl=rng.integers(40, 65, n), ipid=rng.integers(0, 65536, n), hid=-1, df=0)
        m = ref
        self.emit(t[m] + 30_000, (T4 + 3 * v6)[m], dst[m], c[m], 0, sp[m], 8080, 0, seq[m] + 1,
                  RST | ACK, 0, ipid=0, hid=-1, df=1)

    def run(self, packets: int, synflood: int, flood_rate: float):
        t = 0
        if synflood:
            self.flood(synflood, flood_rate)
            flood_end = int(self.flood_plan[0][-1]) + 1
        per_flow = 7.0  # packets per attempt, refined as we go
        while True:
            left = packets - self.count
            if left > 0:
                n = int(min(20_000, max(50, left / per_flow)))
                c0 = self.count
                t_next = self.batch(t, n)
                per_flow = max(2.0, (self.count - c0) / n)
            elif synflood and t < flood_end:
                t_next = min(flood_end, t + 2_000_000)
            else:
                break
            if synflood:
                self.flood_batch(t, t_next)
            t = t_next
            self.flush(t)
        self.flush(None)

    # ---------------------------------------------------------------- output
    def flush(self, upto):
        """Write every packet with timestamp < upto (all if None), time-sorted."""
        if not self.pending["ts"]:
            return
        cols = {k: np.concatenate(v) for k, v in self.pending.items()}
        ts = cols["ts"]
        if upto is None:
            done = np.ones(len(ts), bool)
        else:
            done = ts < upto
        keep = ~done
        self.pending = {k: ([v[keep]] if keep.any() else []) for k, v in cols.items()}
        idx = np.nonzero(done)[0]
        order = idx[np.argsort(ts[idx], kind="stable")]
        for lo in range(0, len(order), 250_000):
            sl = order[lo:lo + 250_000]
            self.write_chunk({k: v[sl] for k, v in cols.items()})

    def assign_ipids(self, col):
        hid = col["hid"]
        m = hid >= 0
        if not m.any():
            return
        hh = hid[m]
        o = np.argsort(hh, kind="stable")
        hs = hh[o]
        first = np.r_[True, hs[1:] != hs[:-1]]
        start = np.maximum.accumulate(np.where(first, np.arange(len(hs)), 0))
        rank = np.empty(len(hs), dtype=np.int64)
        rank[o] = np.arange(len(hs)) - start
        col["ipid"][m] = (self.ipid_next[hh] + rank) & M
        np.add.at(self.ipid_next, hh, 1)
        self.ipid_next &= M

    def write_chunk(self, col):
        self.assign_ipids(col)
        plen, pres, pobj = self.P.arrays()
        n = len(col["ts"])
        shape = col["shape"]
        heads = np.empty(n, dtype=object)
        lens = np.zeros(n, dtype=np.int64)
        for sh in np.unique(shape).tolist():
            ix = np.nonzero(shape == sh)[0]
            b, L, reclen = self.headers(sh, {k: v[ix] for k, v in col.items()}, plen, pres)
            heads[ix] = [b[i:i + L] for i in range(0, len(b), L)]
            lens[ix] = reclen
        parts = np.empty(2 * n, dtype=object)
        parts[0::2] = heads
        parts[1::2] = pobj[col["pid"]]
        self.w.write(b"".join(parts.tolist()), lens)

    def headers(self, sh, c, plen, pres):
        """Record header + Ethernet + IP + transport headers for packets of one shape."""
        n = len(c["ts"])
        v6 = sh in (T6, T6TS, T6SYN, U6)
        tcp = sh in (T4, T4TS, T4SYN, T6, T6TS, T6SYN)
        tcp_hl = {T4: 20, T6: 20, T4TS: 32, T6TS: 32, T4SYN: 40, T6SYN: 40}.get(sh, 0)
        fields = [("sec", "<u4"), ("usec", "<u4"), ("incl", "<u4"), ("orig", "<u4"),
                  ("dmac", "u1", 6), ("smac", "u1", 6), ("etype", ">u2")]
        if sh != RAW:
            if v6:
                fields += [("vtf", ">u4"), ("plen", ">u2"), ("nh", "u1"), ("hlim", "u1"),
                           ("src", "u1", 16), ("dst", "u1", 16)]
            else:
                fields += [("vihl", "u1"), ("tos", "u1"), ("tlen", ">u2"), ("id", ">u2"),
                           ("ff", ">u2"), ("ttl", "u1"), ("proto", "u1"), ("ipsum", ">u2"),
                           ("src", ">u4"), ("dst", ">u4")]
        if tcp:
            fields += [("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"),
                       ("off", "u1"), ("flags", "u1"), ("win", ">u2"), ("l4sum", ">u2"),
                       ("urg", ">u2")]
            if tcp_hl == 32:
                fields += [("o1", ">u2"), ("o2", ">u2"), ("tsval", ">u4"), ("tsecr", ">u4")]
            elif tcp_hl == 40:
                fields += [("omss", ">u4"), ("osack", ">u2"), ("ots", ">u2"), ("tsval", ">u4"),
                           ("tsecr", ">u4"), ("ows", ">u4")]
        elif sh in (U4, U6):
            fields += [("sport", ">u2"), ("dport", ">u2"), ("ulen", ">u2"), ("l4sum", ">u2"),
                       ("dnsid", ">u2"), ("dnsfl", ">u2"), ("qd", ">u2"), ("an", ">u2"),
                       ("ns", ">u2"), ("ar", ">u2")]
        h = np.zeros(n, dtype=fields)
        src, dst, fromc = c["src"], c["dst"], c["fromc"].astype(bool)
        pl, pr = plen[c["pid"]], pres[c["pid"]]
        l4len = (tcp_hl + pl if tcp else 20 + pl if sh in (U4, U6) else pl)
        l3len = l4len + (40 if v6 else 20) * (sh != RAW)
        ts = c["ts"] + EPOCH_US
        h["sec"], h["usec"] = ts // 1_000_000, ts % 1_000_000
        h["incl"] = h["orig"] = 14 + l3len
        cl = np.where(fromc, src, dst)
        mac = self.h_mac[cl]
        h["dmac"] = np.where(fromc[:, None], GW_MAC, mac)
        h["smac"] = np.where(fromc[:, None], mac, GW_MAC)
        h["etype"] = 0x86DD if v6 else 0x0800
        if sh == RAW:
            return h.tobytes(), h.dtype.itemsize, h["incl"] + 16
        proto = 6 if tcp else 17
        pseudo = self.h_res[src] + self.h_res[dst] + proto + l4len
        if v6:
            h["vtf"], h["plen"], h["nh"], h["hlim"] = 0x60000000, l4len, proto, c["ttl"]
            h["src"], h["dst"] = self.h_addr16[src], self.h_addr16[dst]
        else:
            ff = np.where(c["df"] != 0, 0x4000, 0)
            h["vihl"], h["tlen"], h["id"], h["ff"] = 0x45, l3len, c["ipid"], ff
            h["ttl"], h["proto"] = c["ttl"], proto
            h["src"], h["dst"] = self.h_addr32[src], self.h_addr32[dst]
            r = (0x4500 + l3len + c["ipid"] + ff + (c["ttl"] << 8) + proto + self.h_res[src]
                 + self.h_res[dst]) % M
            h["ipsum"] = np.where(r == 0, 0, M - r)
        sp = np.where(fromc, c["sport"], c["dport"])
        dp = np.where(fromc, c["dport"], c["sport"])
        h["sport"], h["dport"] = sp, dp
        if tcp:
            seq, ack = c["seq"] & 0xFFFFFFFF, c["ack"] & 0xFFFFFFFF
            tsv, tse = c["tsval"] & 0xFFFFFFFF, c["tsecr"] & 0xFFFFFFFF
            h["seq"], h["ack"], h["off"] = seq, ack, tcp_hl << 2
            h["flags"], h["win"] = c["flags"], c["win"]
            r = (sp + dp + (seq >> 16) + (seq & M) + (ack >> 16) + (ack & M)
                 + (tcp_hl << 10) + c["flags"] + c["win"] + pr + pseudo)
            tsr = (tsv >> 16) + (tsv & M) + (tse >> 16) + (tse & M)
            if tcp_hl == 32:
                h["o1"], h["o2"], h["tsval"], h["tsecr"] = 0x0101, 0x080A, tsv, tse
                r = r + 0x0101 + 0x080A + tsr
            elif tcp_hl == 40:
                mss = 1440 if v6 else 1460
                h["omss"], h["osack"], h["ots"] = (0x0204 << 16) | mss, 0x0402, 0x080A
                h["tsval"], h["tsecr"], h["ows"] = tsv, tse, 0x01030307
                r = r + 0x0204 + mss + 0x0402 + 0x080A + tsr + 0x0103 + 0x0307
            r %= M
            h["l4sum"] = np.where(r == 0, 0, M - r)
        else:
            h["ulen"], h["dnsid"], h["dnsfl"] = l4len, c["dnsid"], c["dnsfl"]
            h["qd"], h["an"] = 1, c["ancount"]
            r = (sp + dp + l4len + c["dnsid"] + c["dnsfl"] + 1 + c["ancount"] + pr + pseudo) % M
            h["l4sum"] = np.where(r == 0, M, M - r)
        return h.tobytes(), h.dtype.itemsize, h["incl"] + 16


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

    def write(self, chunk: bytes, lens: np.ndarray):
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
                    help="target packet count (attempts are completed, so slightly more); "
                         "default 1000000, or 0 with --synflood")
    ap.add_argument("--out", help="output pcap")
    ap.add_argument("--out-dir", help="with --rotate-every: folder of rotated files")
    ap.add_argument("--rotate-every", type=int, help="packets per rotated file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--flows-per-sec", type=float, default=2000.0,
                    help="attempt start rate, which sets the concurrency (default 2000/s)")
    ap.add_argument("--synflood", type=int, default=0, metavar="FLOWS",
                    help="add FLOWS spoofed SYNs from distinct (address, port) pairs")
    ap.add_argument("--flood-rate", type=float, default=100_000.0, help="SYNs per second")
    ap.add_argument("--sites", type=int, default=N_SITES,
                    help=f"distinct site names (default {N_SITES}): what the controls hold grows with them")
    ap.add_argument("--v6-servers", type=int, default=N_V6_SERVERS,
                    help=f"IPv6 servers the site names are spread over (default {N_V6_SERVERS}; "
                         f"at most 2**32-1), as a border capture meets servers by the hundred thousand")
    for f in Mix.__dataclass_fields__:
        ap.add_argument("--" + f.replace("_", "-"), type=float, default=getattr(Mix, f),
                        help=f"fraction (default {getattr(Mix, f)})")
    a = ap.parse_args(argv)
    if bool(a.out_dir) != bool(a.rotate_every):
        ap.error("--out-dir and --rotate-every go together")
    if not a.out and not a.out_dir:
        ap.error("--out (or --out-dir with --rotate-every) is required")
    if a.sites < 1 or not 1 <= a.v6_servers < 2 ** 32:
        ap.error("--sites must be at least 1 and --v6-servers between 1 and 2**32-1")
    packets = a.packets if a.packets is not None else (0 if a.synflood else 1_000_000)
    mix = Mix(**{f: getattr(a, f) for f in Mix.__dataclass_fields__})
    if abs(mix.tls + mix.http + mix.dns + mix.refused + mix.icmp - 1.0) > 1e-6:
        ap.error("--tls --http --dns --refused --icmp must sum to 1")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    truth_path, meta_path = side_paths(a.out, a.out_dir)
    t0 = time.perf_counter()
    w = Writer(None if a.out_dir else a.out, a.out_dir, a.rotate_every)
    with open(truth_path, "w", buffering=8 << 20) as tf:
        g = Generator(w, tf, a.seed, mix, a.flows_per_sec, a.sites, a.v6_servers)
        g.run(packets, a.synflood, a.flood_rate)
    w.close()
    dt = time.perf_counter() - t0
    meta = {"generator": "benchmarks/gen_capture.py", "seed": a.seed,
            "packets": w.packets, "bytes": w.bytes, "files": w.files,
            "attempts": g.attempts, "attempts_by_kind": g.kinds,
            "attempts_by_verdict": g.verdicts, "synflood": a.synflood,
            "mix": mix.__dict__, "flows_per_sec": a.flows_per_sec, "sites": a.sites,
            "v6_servers": a.v6_servers, "truth": truth_path,
            "generation_seconds": round(dt, 3),
            "checksums": "IPv4 header, TCP, UDP and ICMP checksums all correct"}
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1)
    print(f"{w.packets} packets, {w.bytes / 1e6:.1f} MB, {g.attempts} attempts in {dt:.1f} s "
          f"({w.packets / dt:,.0f} packets/s) -> {a.out or a.out_dir}, {truth_path}, "
          f"{meta_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
