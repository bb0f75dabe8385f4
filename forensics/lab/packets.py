"""Minimal frame parsing and building for the lab's wire and devices.

The wire forwards every frame of the lab through Python, so parsing stays cheap
(struct, no scapy).  Only what the devices need is decoded: Ethernet, IPv4/IPv6
(no extension headers), TCP and UDP, plus helpers that read a TLS ClientHello's
SNI, an HTTP request's Host and a DNS query's name, and that build forged TCP
segments and UDP datagrams with correct checksums.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
from dataclasses import dataclass

ETH_IP4 = 0x0800
ETH_IP6 = 0x86DD
TCP, UDP = 6, 17

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


@dataclass
class Frame:
    """A decoded frame. ``raw`` is the whole Ethernet frame."""

    raw: bytes
    dst_mac: bytes
    src_mac: bytes
    version: int = 0  # 4, 6 or 0 (not IP)
    src: str = ""
    dst: str = ""
    ttl: int = 0
    ipid: int = 0
    proto: int = 0
    tos: int = 0
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    payload: bytes = b""
    ip_len: int = 0  # bytes of the IP packet (header + data)

    @property
    def is_tcp(self) -> bool:
        return self.proto == TCP

    @property
    def is_udp(self) -> bool:
        return self.proto == UDP

    def flow(self) -> tuple:
        """Direction-independent key of the 5-tuple."""
        a, b = (self.src, self.sport), (self.dst, self.dport)
        return (self.proto,) + (a + b if a <= b else b + a)


def parse(raw: bytes) -> Frame:
    f = Frame(raw=raw, dst_mac=raw[0:6], src_mac=raw[6:12])
    if len(raw) < 14:
        return f
    etype = struct.unpack("!H", raw[12:14])[0]
    ip = raw[14:]
    if etype == ETH_IP4 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        tot = struct.unpack("!H", ip[2:4])[0]
        frag = struct.unpack("!H", ip[6:8])[0]
        f.version, f.tos, f.ipid, f.ttl, f.proto = 4, ip[1], struct.unpack("!H", ip[4:6])[0], ip[8], ip[9]
        f.src, f.dst = socket.inet_ntop(socket.AF_INET, ip[12:16]), socket.inet_ntop(socket.AF_INET, ip[16:20])
        f.ip_len = tot
        l4 = ip[ihl:tot] if frag & 0x1FFF == 0 else b""
    elif etype == ETH_IP6 and len(ip) >= 40:
        plen = struct.unpack("!H", ip[4:6])[0]
        f.version, f.tos, f.proto, f.ttl = 6, ((ip[0] & 0x0F) << 4) | (ip[1] >> 4), ip[6], ip[7]
        f.src, f.dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
        f.ip_len = 40 + plen
        l4 = ip[40 : 40 + plen]
    else:
        return f
    if f.proto == TCP and len(l4) >= 20:
        f.sport, f.dport, f.seq, f.ack, off, f.flags = struct.unpack("!HHIIBB", l4[:14])
        f.payload = l4[(off >> 4) * 4 :]
    elif f.proto == UDP and len(l4) >= 8:
        f.sport, f.dport = struct.unpack("!HH", l4[:4])
        f.payload = l4[8:]
    elif f.proto in (1, 58):
        f.payload = l4  # the whole ICMP / ICMPv6 message
    return f


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071); 0 over data that includes a correct checksum."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def l4_checksum(src: bytes, dst: bytes, proto: int, l4: bytes) -> int:
    """The TCP/UDP checksum of ``l4`` (its checksum field zero) between the packed
    addresses ``src`` and ``dst`` (4 bytes: IPv4's pseudo-header, 16: IPv6's)."""
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(l4), proto)
    return checksum(pseudo + l4)


def _ip_and_l4(version, src, dst, proto, l4, ttl, ipid) -> bytes:
    """Wrap an L4 segment (checksum field zero) in IP; fills in both checksums."""
    fam = socket.AF_INET if version == 4 else socket.AF_INET6
    s, d = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)
    off = 16 if proto == TCP else 6
    c = l4_checksum(s, d, proto, l4)
    if proto == UDP and c == 0:
        c = 0xFFFF
    l4 = l4[:off] + struct.pack("!H", c) + l4[off + 2 :]
    if version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ipid & 0xFFFF, 0x4000, ttl, proto, 0, s, d)
        hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
        return hdr + l4
    return struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, ttl, s, d) + l4


def tcp_frame(src_mac, dst_mac, version, src, dst, sport, dport, seq, ack, flags,
              payload=b"", ttl=64, ipid=0, window=8192) -> bytes:
    l4 = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                     window, 0, 0) + payload
    etype = ETH_IP4 if version == 4 else ETH_IP6
    return dst_mac + src_mac + struct.pack("!H", etype) + _ip_and_l4(version, src, dst, TCP, l4, ttl, ipid)


def udp_frame(src_mac, dst_mac, version, src, dst, sport, dport, payload, ttl=64, ipid=0) -> bytes:
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    etype = ETH_IP4 if version == 4 else ETH_IP6
    return dst_mac + src_mac + struct.pack("!H", etype) + _ip_and_l4(version, src, dst, UDP, l4, ttl, ipid)


# --- application-layer peeks ------------------------------------------------------

def tls_client_hello(payload: bytes) -> tuple[bool, str | None, int]:
    """(is a ClientHello start, SNI or None, TLS record length + 5)."""
    if len(payload) < 6 or payload[0] != 0x16 or payload[1] != 3 or payload[5] != 1:
        return False, None, 0
    rec_len = struct.unpack("!H", payload[3:5])[0] + 5
    try:
        p = 5 + 4 + 2 + 32  # record hdr, handshake hdr, version, random
        p += 1 + payload[p]  # session id
        p += 2 + struct.unpack("!H", payload[p : p + 2])[0]  # cipher suites
        p += 1 + payload[p]  # compression
        end = p + 2 + struct.unpack("!H", payload[p : p + 2])[0]
        p += 2
        while p + 4 <= min(end, len(payload)):
            etype, elen = struct.unpack("!HH", payload[p : p + 4])
            if etype == 0 and p + 4 + elen <= len(payload):
                body = payload[p + 4 : p + 4 + elen]
                nlen = struct.unpack("!H", body[3:5])[0]
                return True, body[5 : 5 + nlen].decode("ascii", "replace"), rec_len
            p += 4 + elen
    except (IndexError, struct.error):
        pass
    return True, None, rec_len


def http_host(payload: bytes) -> str | None:
    """The Host header of an HTTP request that starts this payload, else None."""
    if payload[:8].split(b" ")[0] not in (b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"DELETE"):
        return None
    for line in payload.split(b"\r\n")[1:]:
        if line.lower().startswith(b"host:"):
            return line[5:].strip().split(b":")[0].decode("ascii", "replace")
        if not line:
            break
    return ""


def dns_question(payload: bytes) -> tuple[int, str, int, int] | None:
    """(transaction id, qname, qtype, end offset of the question) for a DNS query."""
    if len(payload) < 12 or payload[2] & 0x80:
        return None
    txid, _flags, qd = struct.unpack("!HHH", payload[:6])
    if qd != 1:
        return None
    labels, p = [], 12
    try:
        while payload[p]:
            n = payload[p]
            labels.append(payload[p + 1 : p + 1 + n].decode("ascii", "replace"))
            p += 1 + n
        qtype = struct.unpack("!H", payload[p + 1 : p + 3])[0]
    except (IndexError, struct.error):
        return None
    return txid, ".".join(labels).lower(), qtype, p + 5


def dns_answer(query: bytes, qend: int, qtype: int, addrs: list[str], ttl: int, rcode: int = 0) -> bytes:
    """A response to ``query`` (recursion available) carrying ``addrs`` as A/AAAA."""
    txid = query[:2]
    rd = query[2] & 0x01
    flags = struct.pack("!BB", 0x80 | rd, 0x80 | rcode)  # QR, RD copied; RA
    body = query[12:qend]
    answers = b""
    for a in addrs:
        fam = socket.AF_INET if qtype == 1 else socket.AF_INET6
        rdata = socket.inet_pton(fam, a)
        answers += struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(rdata)) + rdata
    return txid + flags + struct.pack("!HHHH", 1, len(addrs), 0, 0) + body + answers


def choose_ttl(mode: dict, trigger_ttl: int, rng: random.Random) -> int:
    """IP TTL of a forged packet: fixed initial value, copy of the trigger's, or random."""
    m = mode.get("mode", "fixed")
    if m == "copy":
        return trigger_ttl
    if m == "random":
        return rng.randint(mode.get("low", 32), mode.get("high", 255))
    return int(mode.get("value", 64))


def choose_ipid(mode: dict, rng: random.Random) -> int:
    """IP-ID of a forged IPv4 packet: zero, random, or fixed."""
    m = mode.get("mode", "zero")
    if m == "random":
        return rng.randint(1, 0xFFFF)
    if m == "fixed":
        return int(mode.get("value", 0x3412))
    return 0


def in_net(addr: str, nets: list[str]) -> bool:
    a = ipaddress.ip_address(addr)
    return any(a in ipaddress.ip_network(n) for n in nets)
