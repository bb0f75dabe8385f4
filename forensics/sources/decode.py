"""Columnar decoding of link, IP and transport headers for a whole batch at once.

Hand-written with numpy gathers instead of scapy because it runs on every packet:
no Python object is built per packet here. Every field read is bounds-checked
against the record's captured length; a packet whose headers do not fit is
marked, counted and left out of later stages, never read past its end.

Link types decoded here: Ethernet, Linux cooked SLL and SLL2 (each with
802.1Q, 802.1ad/QinQ and PPPoE session headers after it), raw IP (DLT 12, 14, 101, 228, 229), BSD NULL and LOOP.
IPv6 extension headers are walked per packet (they are rare), with a bound.

``decode`` is written with numpy; the compiled record walk (``_walk.decode_rows``)
does the same in one pass per record when it is built (and ``FORENSICS_PURE_WALK``
is not set): the same rows, byte for byte, garbage read past a damaged header
included (tests/test_decode_compiled.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Link types this module decodes itself.
NATIVE_LINKTYPES = frozenset({0, 1, 12, 14, 101, 108, 113, 228, 229, 276})
#: IPv6 extension headers walked to reach the transport header.
IPV6_EXT = frozenset({0, 43, 44, 60, 51, 135, 139, 140})
#: A bound on the extension-header walk: no legitimate packet chains more.
IPV6_MAX_EXT = 8

# status codes per packet
ST_OK = 0
ST_NOT_IP = 1  # ARP, LLDP, ...: not ours, not an error
ST_BAD_IP = 2  # an IP header that does not fit or lies
ST_BAD_L4 = 3  # a transport header that does not fit or lies
ST_LINK = 4  # a link type not decoded here
ST_FRAG = 5  # a non-first IP fragment: no transport header to read

PKT_DTYPE = np.dtype([
    ("frame", np.int64), ("ts", np.float64), ("rec", np.int64),
    ("status", np.uint8), ("ipver", np.uint8), ("proto", np.uint8), ("ttl", np.uint8),
    ("ipid", np.int32), ("df", np.uint8), ("frag", np.uint8), ("tos", np.uint8),
    ("src_hi", np.uint64), ("src_lo", np.uint64), ("dst_hi", np.uint64), ("dst_lo", np.uint64),
    ("l3", np.int64), ("l4", np.int64), ("ipend", np.int64),
    ("sport", np.uint16), ("dport", np.uint16),
    ("seq", np.uint32), ("ack", np.uint32), ("flags", np.uint16), ("win", np.uint16),
    ("doff", np.uint8), ("pay", np.int64), ("plen", np.int32), ("caplen_pay", np.int32),
    ("itype", np.uint8), ("icode", np.uint8),
])

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR, TCP_NS = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100)
#: The three reserved bits above NS (``flags`` keeps them, as Wireshark's tcp.flags does).
TCP_RESERVED = 0xE00

V4_MAPPED_HI = np.uint64(0)
V4_MAPPED_TAG = np.uint64(0xFFFF << 32)


class _Gather:
    """Bounds-safe byte gathers from one buffer."""

    def __init__(self, buf: np.ndarray) -> None:
        self.buf = buf

    def u8(self, idx: np.ndarray) -> np.ndarray:
        if len(self.buf) == 0:
            return np.zeros(len(idx), np.uint32)
        # take(mode="clip") bounds the indices inside the gather: no clipped copy of them
        return np.take(self.buf, idx, mode="clip").astype(np.uint32)

    def u16(self, idx: np.ndarray) -> np.ndarray:
        return (self.u8(idx) << 8) | self.u8(idx + 1)

    def u32(self, idx: np.ndarray) -> np.ndarray:
        return (self.u16(idx) << 16) | self.u16(idx + 2)

    def u64(self, idx: np.ndarray) -> np.ndarray:
        if len(self.buf) == 0:
            return np.zeros(len(idx), np.uint64)
        cols = np.take(self.buf, idx[:, None] + np.arange(8), mode="clip")
        return np.ascontiguousarray(cols).view(">u8").ravel().astype(np.uint64)


def _link(g: _Gather, off: np.ndarray, end: np.ndarray, lt: np.ndarray):
    """Per packet: the offset of the network header and its ethertype (0 = unknown)."""
    n = len(off)
    l3 = np.full(n, -1, np.int64)
    et = np.zeros(n, np.uint32)
    status = np.full(n, ST_LINK, np.uint8)

    eth = lt == 1
    if eth.any():
        l3[eth], et[eth] = off[eth] + 14, g.u16(off[eth] + 12)
    sll = lt == 113
    if sll.any():
        l3[sll], et[sll] = off[sll] + 16, g.u16(off[sll] + 14)
    sll2 = lt == 276
    if sll2.any():
        l3[sll2], et[sll2] = off[sll2] + 20, g.u16(off[sll2])
    # an ethertype, whichever header gave it, may announce VLAN tags or PPPoE
    # (``tcpdump -i any`` on a VLAN device records SLL then 802.1Q)
    typed = np.flatnonzero(eth | sll | sll2)
    if len(typed):
        e, p = et[typed], l3[typed]
        for _ in range(2):  # 802.1Q, 802.1ad, QinQ: at most two tags
            tag = (e == 0x8100) | (e == 0x88A8) | (e == 0x9100)
            e = np.where(tag, g.u16(p + 2), e)
            p = np.where(tag, p + 4, p)
        pppoe = e == 0x8864
        if pppoe.any():
            proto = g.u16(p + 6)
            e = np.where(pppoe, np.where(proto == 0x0021, 0x0800, np.where(proto == 0x0057, 0x86DD, 0)), e)
            p = np.where(pppoe, p + 8, p)
        l3[typed], et[typed] = p, e
    raw = (lt == 101) | (lt == 12) | (lt == 14) | (lt == 228) | (lt == 229)
    if raw.any():
        v = g.u8(off[raw]) >> 4
        l3[raw] = off[raw]
        et[raw] = np.where(v == 4, 0x0800, np.where(v == 6, 0x86DD, 0))
    null = (lt == 0) | (lt == 108)
    if null.any():
        o = off[null]
        be = g.u32(o)
        le = (g.u8(o)) | (g.u8(o + 1) << 8) | (g.u8(o + 2) << 16) | (g.u8(o + 3) << 24)
        fam = np.where(lt[null] == 108, be, np.where(be < 256, be, le))
        et[null] = np.where(fam == 2, 0x0800, np.where((fam == 24) | (fam == 28) | (fam == 30) | (fam == 10), 0x86DD, 0))
        l3[null] = o + 4
    native = eth | sll | sll2 | raw | null
    status[native] = ST_NOT_IP
    ok = native & (l3 < end)
    status[native & ~ok] = ST_BAD_IP
    # MPLS carries IP that only tshark decodes: "link not decoded here", not "not IP"
    status[ok & ((et == 0x8847) | (et == 0x8848))] = ST_LINK
    et[~ok] = 0
    return l3, et, status


def _layout() -> tuple:
    """``PKT_DTYPE`` as ``_walk.PKT_LAYOUT`` describes its rows: name, offset, type; then the size."""
    return tuple((name, PKT_DTYPE.fields[name][1], PKT_DTYPE.fields[name][0].str) for name in PKT_DTYPE.names) + (
        ("itemsize", PKT_DTYPE.itemsize, ""),)


def _compiled_decode():
    """``_walk.decode_rows``, or None: the walk not built (or ``FORENSICS_PURE_WALK=1``: ``pcapio``
    says), or built from an older ``_walk.pyx``, or for other rows or status codes than these."""
    from .pcapio import _compiled_walk

    _walk = _compiled_walk()
    fn = getattr(_walk, "decode_rows", None)
    if fn is None or getattr(_walk, "PKT_LAYOUT", None) != _layout():
        return None
    if getattr(_walk, "DECODE_STATUS", None) != (ST_OK, ST_NOT_IP, ST_BAD_IP, ST_BAD_L4, ST_LINK, ST_FRAG,
                                                 IPV6_MAX_EXT):
        return None
    return fn


def decode(buf: np.ndarray, frame: np.ndarray, ts: np.ndarray, off: np.ndarray,
           caplen: np.ndarray, linktype: np.ndarray, origlen: np.ndarray | None = None) -> np.ndarray:
    """Decode a batch of records into a structured array of ``PKT_DTYPE``.

    ``origlen`` (the length on the wire) bounds what an IP header may claim: an
    IP total length beyond the frame is a lie, and the frame's length is used,
    as Wireshark does.
    """
    fn = compiled_decode
    if fn is not None:
        n = len(frame)
        out = np.zeros(n, PKT_DTYPE)
        if n:
            fn(np.ascontiguousarray(buf, np.uint8).reshape(-1), np.ascontiguousarray(frame, np.int64),
               np.ascontiguousarray(ts, np.float64), np.ascontiguousarray(off, np.int64),
               np.ascontiguousarray(caplen, np.int32), np.ascontiguousarray(linktype, np.int32),
               None if origlen is None else np.ascontiguousarray(origlen, np.int64), out.view(np.uint8))
        return out
    return decode_numpy(buf, frame, ts, off, caplen, linktype, origlen)


def decode_numpy(buf: np.ndarray, frame: np.ndarray, ts: np.ndarray, off: np.ndarray,
                 caplen: np.ndarray, linktype: np.ndarray, origlen: np.ndarray | None = None) -> np.ndarray:
    """``decode`` with numpy gathers, a column at a time (what ``_walk.decode_rows`` does per record)."""
    n = len(frame)
    out = np.zeros(n, PKT_DTYPE)
    out["frame"], out["ts"], out["rec"] = frame, ts, off
    if n == 0:
        return out
    g = _Gather(buf)
    end = off + caplen.astype(np.int64)
    # where the frame ends on the wire (past ``end`` when the capture cut it short)
    wire_end = end if origlen is None else np.maximum(off + origlen.astype(np.int64), end)
    l3, et, status = _link(g, off, end, linktype)
    out["l3"] = l3

    b0 = g.u8(l3)
    v4 = (et == 0x0800) & ((b0 >> 4) == 4)
    v6 = (et == 0x86DD) & ((b0 >> 4) == 6)
    status[((et == 0x0800) | (et == 0x86DD)) & ~(v4 | v6)] = ST_BAD_IP
    l4 = np.full(n, -1, np.int64)
    ipend = np.zeros(n, np.int64)
    claimed = np.zeros(n, np.int64)  # where the IP packet claims to end
    proto = np.zeros(n, np.uint32)

    if v4.any():
        o, e = l3[v4], end[v4]
        ihl = (g.u8(o) & 0xF).astype(np.int64) * 4
        tot = g.u16(o + 2).astype(np.int64)
        # a total length of 0 is what TSO-offloaded segments show: use the capture
        tot = np.where(tot == 0, e - o, tot)
        good = (ihl >= 20) & (o + 20 <= e) & (tot >= ihl)
        fo = g.u16(o + 6)
        out["ttl"][v4] = g.u8(o + 8)
        out["tos"][v4] = g.u8(o + 1)
        out["ipid"][v4] = g.u16(o + 4)
        out["df"][v4] = (fo >> 14) & 1
        off13 = fo & 0x1FFF
        mf = (fo >> 13) & 1
        out["frag"][v4] = np.where(off13 > 0, 2, np.where(mf == 1, 1, 0))
        proto[v4] = g.u8(o + 9)
        out["src_hi"][v4] = V4_MAPPED_HI
        out["src_lo"][v4] = V4_MAPPED_TAG | g.u32(o + 12).astype(np.uint64)
        out["dst_hi"][v4] = V4_MAPPED_HI
        out["dst_lo"][v4] = V4_MAPPED_TAG | g.u32(o + 16).astype(np.uint64)
        l4[v4] = np.where(good, o + ihl, -1)
        claimed[v4] = np.minimum(o + tot, wire_end[v4])
        ipend[v4] = np.minimum(o + tot, e)
        st = status[v4]
        st[:] = np.where(good, ST_OK, ST_BAD_IP)
        st[good & (off13 > 0)] = ST_FRAG
        status[v4] = st
        out["ipver"][v4] = 4
    if v6.any():
        o, e = l3[v6], end[v6]
        good = o + 40 <= e
        plen = g.u16(o + 4).astype(np.int64)
        plen = np.where(plen == 0, e - o - 40, plen)  # jumbograms / TSO
        out["ttl"][v6] = g.u8(o + 7)
        out["tos"][v6] = ((g.u8(o) & 0xF) << 4) | (g.u8(o + 1) >> 4)
        out["ipid"][v6] = -1
        nh = g.u8(o + 6)
        proto[v6] = nh
        out["src_hi"][v6] = g.u64(o + 8)
        out["src_lo"][v6] = g.u64(o + 16)
        out["dst_hi"][v6] = g.u64(o + 24)
        out["dst_lo"][v6] = g.u64(o + 32)
        l4[v6] = np.where(good, o + 40, -1)
        claimed[v6] = np.minimum(o + 40 + plen, wire_end[v6])
        ipend[v6] = np.minimum(o + 40 + plen, e)
        status[v6] = np.where(good, ST_OK, ST_BAD_IP)
        out["ipver"][v6] = 6
        ext = np.flatnonzero(v6 & (status == ST_OK) & np.isin(proto, list(IPV6_EXT)))
        for i in ext:  # rare: walk the chain per packet, bounded
            _walk_ipv6_ext(buf, i, l4, proto, status, out, int(ipend[i]))

    out["ipend"] = ipend
    ok = status == ST_OK
    tcp = ok & (proto == 6)
    udp = ok & (proto == 17)
    icmp = ok & (((proto == 1) & (out["ipver"] == 4)) | ((proto == 58) & (out["ipver"] == 6)))
    out["proto"] = proto
    out["l4"] = l4

    if tcp.any():
        o, e, c = l4[tcp], ipend[tcp], claimed[tcp]
        fits = o + 20 <= e
        doff = ((g.u8(o + 12) >> 4) * 4).astype(np.int64)
        good = fits & (doff >= 20) & (o + doff <= e)
        out["sport"][tcp] = g.u16(o)
        out["dport"][tcp] = g.u16(o + 2)
        out["seq"][tcp] = g.u32(o + 4)
        out["ack"][tcp] = g.u32(o + 8)
        # all 12 flag bits, the 3 reserved ones included, as Wireshark's tcp.flags:
        # a forged segment with reserved bits set is evidence
        out["flags"][tcp] = ((g.u8(o + 12) & 0xF) << 8) | g.u8(o + 13)
        out["win"][tcp] = g.u16(o + 14)
        out["doff"][tcp] = np.clip(doff, 0, 255)
        pay = o + doff
        out["pay"][tcp] = pay
        out["plen"][tcp] = np.where(good, np.maximum(c - pay, 0), 0)
        out["caplen_pay"][tcp] = np.where(good, np.maximum(e - pay, 0), 0)
        st = status[tcp]
        st[~good] = ST_BAD_L4
        status[tcp] = st
    if udp.any():
        o, e, c = l4[udp], ipend[udp], claimed[udp]
        good = o + 8 <= e
        out["sport"][udp] = g.u16(o)
        out["dport"][udp] = g.u16(o + 2)
        out["pay"][udp] = o + 8
        ulen = g.u16(o + 4).astype(np.int64)
        out["plen"][udp] = np.where(good, np.maximum(np.minimum(ulen, c - o) - 8, 0), 0)
        out["caplen_pay"][udp] = np.where(good, np.maximum(np.minimum(e, o + ulen) - o - 8, 0), 0)
        st = status[udp]
        st[~good] = ST_BAD_L4
        status[udp] = st
    if icmp.any():
        o, e = l4[icmp], ipend[icmp]
        good = o + 8 <= e
        out["itype"][icmp] = g.u8(o)
        out["icode"][icmp] = g.u8(o + 1)
        out["pay"][icmp] = o + 8
        out["caplen_pay"][icmp] = np.where(good, np.maximum(e - o - 8, 0), 0)
        st = status[icmp]
        st[~good] = ST_BAD_L4
        status[icmp] = st
    out["status"] = status
    return out


def _walk_ipv6_ext(buf: np.ndarray, i: int, l4: np.ndarray, proto: np.ndarray,
                   status: np.ndarray, out: np.ndarray, end: int) -> None:
    p = int(l4[i])
    nh = int(proto[i])
    for _ in range(IPV6_MAX_EXT):
        if nh not in IPV6_EXT:
            break
        if p + 8 > end:
            status[i] = ST_BAD_IP
            return
        if nh == 44:  # fragment header: fixed 8 bytes
            fo = (int(buf[p + 2]) << 8) | int(buf[p + 3])
            offset, more = fo >> 3, fo & 1
            out["frag"][i] = 2 if offset else (1 if more else 0)
            nh, p = int(buf[p]), p + 8
            if offset:
                status[i] = ST_FRAG
                proto[i] = nh
                l4[i] = p
                return
            continue
        if nh == 51:  # AH: length in 4-octet units, minus 2
            length = (int(buf[p + 1]) + 2) * 4
        else:
            length = (int(buf[p + 1]) + 1) * 8
        nh, p = int(buf[p]), p + length
    else:
        status[i] = ST_BAD_IP  # a chain longer than any real packet carries
        return
    if nh in IPV6_EXT or p > end:
        status[i] = ST_BAD_IP
        return
    proto[i] = nh
    l4[i] = p


#: ``_walk.decode_rows`` when it is built and agrees with this module, else None (``decode``
#: then runs ``decode_numpy``; tests set it to compare the two).
compiled_decode = _compiled_decode()


@lru_cache(maxsize=1 << 16)
def ip_to_str(hi: int, lo: int) -> str:
    """Text form of an address stored as two 64-bit halves (IPv4 as ::ffff:a.b.c.d)."""
    if hi == 0 and (lo >> 32) == 0xFFFF:
        v = lo & 0xFFFFFFFF
        return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"
    import ipaddress

    return str(ipaddress.IPv6Address((hi << 64) | lo))
