"""Streaming reassembly: decoded batches in, finished connections and DNS transactions out.

Per batch, packets are grouped by flow with one numpy sort; Python code then
runs once per flow and batch, and per packet only for the few packets whose
bytes matter (SYN options, the first payloads, DNS messages, ICMP quotes).

Memory follows live flows: each flow keeps at most ``MAX_DETAIL`` packet rows
(plus its SYN/FIN/RST rows up to ``MAX_MARKS``) and ``PAYLOAD_CAP`` bytes of its
first payload per direction; a flow idle for ``IDLE_TIMEOUT`` seconds of capture
time, or the oldest one when more than ``max_flows`` are live, is finished and
handed on (``evicted`` counts the latter).

A new TCP connection starts where Wireshark starts a new ``tcp.stream``: a SYN
without ACK whose sequence number differs from the first one seen in its
direction (port reuse).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..model import C2S, S2C, SEG_DTYPE, DnsAnswer, DnsResponse, DnsTransaction, Endpoint, IcmpError
from ..sources.decode import ST_OK, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, ip_to_str
from . import dnswire
from .tcp import TcpState, finish_tcp

#: A connection with no packet for this long (capture time) is finished. Long
#: enough that keep-alive gaps do not split one connection in two.
IDLE_TIMEOUT = 600.0
#: A DNS query is finished this long after it was sent: resolvers give up after
#: a few seconds, and injected and real answers race within one or two.
DNS_LINGER = 30.0
#: Live connections tracked at once before the oldest are finished early.
MAX_LIVE_FLOWS = 250_000
#: Ports that carry DNS (mDNS and LLMNR use the same wire format).
DNS_PORTS = (53, 5353, 5355)

KEY_DTYPE = np.dtype([("ah", np.uint64), ("al", np.uint64), ("bh", np.uint64), ("bl", np.uint64),
                      ("ap", np.uint16), ("bp", np.uint16)])

ICMP4_ERRORS = (3, 4, 5, 11, 12)
ICMP6_ERRORS = (1, 2, 3, 4)


@dataclass(slots=True)
class _DnsPending:
    input: int
    client: Endpoint
    server: Endpoint
    txid: int
    qname: str
    qtype: str
    query_frames: list[int]
    query_ts: float
    query_ttl: int
    responses: list[DnsResponse] = field(default_factory=list)
    icmp: list[IcmpError] = field(default_factory=list)


@dataclass(slots=True)
class EngineStats:
    tcp_packets: int = 0
    udp_packets: int = 0
    dns_packets: int = 0
    icmp_errors: int = 0
    icmp_unmatched: int = 0
    dns_unparsed: int = 0
    dns_orphan_responses: int = 0
    evicted: int = 0
    other: int = 0


class Reassembler:
    """Feed decoded batches; finished items go to ``emit`` as they complete."""

    def __init__(self, emit: Callable[[object], None], max_flows: int = MAX_LIVE_FLOWS) -> None:
        self.emit = emit
        self.max_flows = max_flows
        self.flows: OrderedDict[tuple, TcpState] = OrderedDict()
        self.dns: OrderedDict[tuple, _DnsPending] = OrderedDict()
        self.stats = EngineStats()
        self.next_stream = 0

    # ------------------------------------------------------------------ batches
    def feed(self, input_idx: int, rows: np.ndarray, buf: np.ndarray) -> None:
        ok = rows["status"] == ST_OK
        proto = rows["proto"]
        tcp = np.flatnonzero(ok & (proto == 6))
        if len(tcp):
            self._feed_tcp(input_idx, rows[tcp], buf)
        udp = ok & (proto == 17)
        dnsmask = udp & (np.isin(rows["sport"], DNS_PORTS) | np.isin(rows["dport"], DNS_PORTS))
        self.stats.udp_packets += int(udp.sum())
        dns = np.flatnonzero(dnsmask)
        if len(dns):
            self._feed_dns(input_idx, rows[dns], buf)
        icmp = np.flatnonzero(ok & (((proto == 1) & np.isin(rows["itype"], ICMP4_ERRORS) & (rows["ipver"] == 4))
                                    | ((proto == 58) & np.isin(rows["itype"], ICMP6_ERRORS) & (rows["ipver"] == 6))))
        for i in icmp:
            self._icmp(input_idx, rows[i], buf)
        if len(rows):
            self._expire(float(rows["ts"].max()))

    def _feed_tcp(self, input_idx: int, t: np.ndarray, buf: np.ndarray) -> None:
        self.stats.tcp_packets += len(t)
        a = (t["src_hi"], t["src_lo"], t["sport"])
        b = (t["dst_hi"], t["dst_lo"], t["dport"])
        swap = (a[0] > b[0]) | ((a[0] == b[0]) & ((a[1] > b[1]) | ((a[1] == b[1]) & (a[2] > b[2]))))
        keys = np.empty(len(t), KEY_DTYPE)
        keys["ah"] = np.where(swap, b[0], a[0])
        keys["al"] = np.where(swap, b[1], a[1])
        keys["ap"] = np.where(swap, b[2], a[2])
        keys["bh"] = np.where(swap, a[0], b[0])
        keys["bl"] = np.where(swap, a[1], b[1])
        keys["bp"] = np.where(swap, a[2], b[2])
        uniq, inv = np.unique(keys, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
        flows = self.flows
        for gi, key in enumerate(uniq.tolist()):
            grp = t[order[bounds[gi]:bounds[gi + 1]]]
            state = flows.get(key)
            if state is None:
                state = self._new_flow(key, input_idx, grp[0])
            else:
                flows.move_to_end(key)
            self._add_tcp(key, state, input_idx, grp, buf)
        while len(flows) > self.max_flows:
            _, old = flows.popitem(last=False)
            self.stats.evicted += 1
            self.emit(finish_tcp(old))

    def _new_flow(self, key: tuple, input_idx: int, first: np.void) -> TcpState:
        # provisional stream key: where the connection's first packet is; the
        # analysis ranks these at the end, as Wireshark numbers tcp.stream
        state = TcpState.start(input_idx, (input_idx, int(first["frame"])), first)
        self.flows[key] = state
        return state

    def _add_tcp(self, key: tuple, state: TcpState, input_idx: int, grp: np.ndarray, buf: np.ndarray) -> None:
        flags = grp["flags"]
        pure_syn = np.flatnonzero((flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN)
        start = 0
        for i in pure_syn:
            i = int(i)
            if state.is_new_connection(grp[i], grp[start:i]):
                if i > start:
                    state.absorb(input_idx, grp[start:i], buf)
                self.emit(finish_tcp(state))
                del self.flows[key]
                state = self._new_flow(key, input_idx, grp[i])
                start = i
        state.absorb(input_idx, grp[start:], buf)

    # ---------------------------------------------------------------------- DNS
    def _feed_dns(self, input_idx: int, d: np.ndarray, buf: np.ndarray) -> None:
        self.stats.dns_packets += len(d)
        for row in d:
            p = int(row["pay"])
            msg = dnswire.parse(buf[p:p + int(row["caplen_pay"])].tobytes())
            if msg is None or msg.opcode != 0:
                self.stats.dns_unparsed += msg is None
                continue
            src = Endpoint(ip_to_str(int(row["src_hi"]), int(row["src_lo"])), int(row["sport"]))
            dst = Endpoint(ip_to_str(int(row["dst_hi"]), int(row["dst_lo"])), int(row["dport"]))
            if not msg.is_response:
                self._dns_query(input_idx, row, src, dst, msg.txid, msg.qname, dnswire.qtype_text(msg.qtype))
            else:
                self._dns_response(input_idx, row, src, dst, msg)

    def _dns_query(self, input_idx: int, row: np.void, client: Endpoint, server: Endpoint,
                   txid: int, qname: str, qtype: str) -> None:
        key = (client.ip, client.port, txid)
        pend = self.dns.get(key)
        if pend is not None and pend.qname == qname and pend.qtype == qtype and pend.server == server:
            pend.query_frames.append(int(row["frame"]))  # the client asked again
            return
        if pend is not None:
            self._finish_dns(key)
        self.dns[key] = _DnsPending(input_idx, client, server, txid, qname, qtype,
                                    [int(row["frame"])], float(row["ts"]), int(row["ttl"]))

    def _dns_response(self, input_idx: int, row: np.void, src: Endpoint, dst: Endpoint,
                      msg: dnswire.DnsMessage) -> None:
        pend = self.dns.get((dst.ip, dst.port, msg.txid))
        if pend is None:
            self.stats.dns_orphan_responses += 1
            return
        pend.responses.append(DnsResponse(
            input=input_idx, frame=int(row["frame"]), ts=float(row["ts"]), src=src,
            ttl=int(row["ttl"]), ipid=int(row["ipid"]), flags=msg.flags, rcode=msg.rcode,
            answers=tuple(DnsAnswer(*a) for a in msg.answers), authority=msg.nscount,
            additional=msg.arcount, qname_matches=msg.qname == pend.qname))

    def _finish_dns(self, key: tuple) -> None:
        p = self.dns.pop(key)
        self.emit(DnsTransaction(
            input=p.input, client=p.client, server=p.server, transport="udp", txid=p.txid,
            qname=p.qname, qtype=p.qtype, query_frames=tuple(p.query_frames), query_ts=p.query_ts,
            query_ttl=p.query_ttl, responses=tuple(p.responses), icmp=tuple(p.icmp)))

    # --------------------------------------------------------------------- ICMP
    def _icmp(self, input_idx: int, row: np.void, buf: np.ndarray) -> None:
        self.stats.icmp_errors += 1
        err = parse_icmp_quote(input_idx, row, buf)
        if err is None:
            self.stats.icmp_unmatched += 1
            return
        if err.q_proto == 6:
            a = _addr_key(err.q_src) + (err.q_sport,)
            b = _addr_key(err.q_dst) + (err.q_dport,)
            key = (a[0], a[1], b[0], b[1], a[2], b[2]) if a <= b else (b[0], b[1], a[0], a[1], b[2], a[2])
            state = self.flows.get(key)
            if state is not None:
                state.add_icmp(err)
                return
        elif err.q_proto == 17:
            for pend in reversed(self.dns.values()):
                if pend.client.ip == err.q_src and pend.client.port == err.q_sport and pend.server.port == err.q_dport:
                    pend.icmp.append(err)
                    return
        self.stats.icmp_unmatched += 1

    # ------------------------------------------------------------------- expiry
    def _expire(self, now: float) -> None:
        flows = self.flows
        while flows:
            key, state = next(iter(flows.items()))
            if state.last_ts >= now - IDLE_TIMEOUT:
                break
            del flows[key]
            self.emit(finish_tcp(state))
        dns = self.dns
        while dns:
            key, pend = next(iter(dns.items()))
            if pend.query_ts >= now - DNS_LINGER:
                break
            self._finish_dns(key)

    def flush(self) -> None:
        """Finish everything still open (end of all inputs)."""
        for state in self.flows.values():
            self.emit(finish_tcp(state))
        self.flows.clear()
        for key in list(self.dns):
            self._finish_dns(key)


def _addr_key(ip: str) -> tuple[int, int]:
    import ipaddress

    a = ipaddress.ip_address(ip)
    if a.version == 4:
        return (0, (0xFFFF << 32) | int(a))
    v = int(a)
    return (v >> 64, v & 0xFFFFFFFFFFFFFFFF)


def parse_icmp_quote(input_idx: int, row: np.void, buf: np.ndarray) -> IcmpError | None:
    """The header fields of the packet an ICMP error quotes (None if it quotes nothing usable)."""
    q = int(row["pay"])
    end = int(row["ipend"])
    ver = int(row["ipver"])
    data = buf[q:end].tobytes()
    mtu = None
    itype, icode = int(row["itype"]), int(row["icode"])
    l4 = int(row["l4"])
    if ver == 4 and itype == 3 and icode == 4:
        mtu = (int(buf[l4 + 6]) << 8) | int(buf[l4 + 7])
    elif ver == 6 and itype == 2:
        mtu = int.from_bytes(buf[l4 + 4:l4 + 8].tobytes(), "big")
    if len(data) < 20:
        return None
    qv = data[0] >> 4
    if qv == 4:
        ihl = (data[0] & 0xF) * 4
        if ihl < 20 or len(data) < ihl + 4:
            return None
        qproto, qttl = data[9], data[8]
        qid = (data[4] << 8) | data[5]
        qsrc = ".".join(str(x) for x in data[12:16])
        qdst = ".".join(str(x) for x in data[16:20])
        l4q = ihl
    elif qv == 6:
        if len(data) < 44:
            return None
        import ipaddress

        qproto, qttl, qid = data[6], data[7], -1
        qsrc = str(ipaddress.IPv6Address(data[8:24]))
        qdst = str(ipaddress.IPv6Address(data[24:40]))
        l4q = 40
    else:
        return None
    sport = (data[l4q] << 8) | data[l4q + 1]
    dport = (data[l4q + 2] << 8) | data[l4q + 3]
    qseq = int.from_bytes(data[l4q + 4:l4q + 8], "big") if qproto == 6 and len(data) >= l4q + 8 else None
    return IcmpError(
        input=input_idx, frame=int(row["frame"]), ts=float(row["ts"]),
        router=ip_to_str(int(row["src_hi"]), int(row["src_lo"])), version=ver, type=itype, code=icode,
        ttl=int(row["ttl"]), mtu=mtu, q_src=qsrc, q_dst=qdst, q_proto=qproto, q_sport=sport,
        q_dport=dport, q_ttl=qttl, q_ipid=qid, q_seq=qseq)


__all__ = ["Reassembler", "EngineStats", "C2S", "S2C", "TCP_FIN", "TCP_RST"]
