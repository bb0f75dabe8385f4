"""Streaming reassembly: decoded batches in, finished connections and DNS transactions out.

Per batch, packets are grouped by flow with one numpy sort; Python code then
runs once per flow and batch, and per packet only for the few packets whose
bytes matter (SYN options, the first payloads, DNS messages, ICMP quotes).

Memory follows live flows: each flow keeps at most ``MAX_DETAIL`` packet rows
(plus its SYN/FIN/RST rows up to ``MAX_MARKS``) and ``PAYLOAD_CAP`` bytes of its
first payload per direction; a flow idle for ``IDLE_TIMEOUT`` seconds of capture
time, or the oldest one when more than ``max_flows`` are live, is finished and
handed on (``evicted`` counts the latter). A closed connection (a reset, or a FIN
each way) is finished sooner, ``CLOSED_LINGER`` seconds after its last packet, so
that memory follows the connections that are still open.

Partitions: ``Reassembler(part=k, nparts=n)`` keeps only the flows whose hash
falls in partition ``k`` (TCP: the connection's address pair; DNS: the client's
address and port; ICMP errors: the flow they quote). ``n`` reassemblers fed the
same batches see every flow exactly once and behave, flow by flow, as one
reassembler would, which is how ``-j N`` splits the work.

A new TCP connection starts where Wireshark starts a new ``tcp.stream``: a SYN
without ACK whose sequence number differs from the first one seen in its
direction (port reuse).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from ..model import (C2S, CUT_FRAGMENTS, CUT_SNAPLEN, S2C, SEG_DTYPE, DnsResponse, Endpoint, IcmpError,
                     new_dns_answer, new_dns_response, new_dns_transaction, new_endpoint, slot_maker,
                     slot_reader)
from ..records import take
from ..sources.decode import (ST_OK, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, V4_MAPPED_HI, V4_MAPPED_TAG,
                              ip_to_str)
from ..sources.defrag import MAX_LISTED_FRAGMENTS, NO_FRAGMENTS, Fragments
from . import dnswire
from .tcp import (START_FIELDS, SYN_FIELDS, TcpState, close_bits, finish_tcp, first_seq, keep_pieces, row_fields,
                  take_groups, take_syns)

#: A connection with no packet for this long (capture time) is finished. Long
#: enough that keep-alive gaps do not split one connection in two.
IDLE_TIMEOUT = 600.0
#: A DNS query is finished this long after it was sent: resolvers give up after
#: a few seconds, and injected and real answers race within one or two.
DNS_LINGER = 30.0
#: A closed connection (RST, or FIN both ways) is finished this long after its
#: last packet: racing resets and retransmissions still join it, but it does not
#: stay in memory for ``IDLE_TIMEOUT`` (Zeek's tcp_close_delay is 5 s).
CLOSED_LINGER = 15.0
#: Live connections tracked at once before the oldest are finished early.
MAX_LIVE_FLOWS = 250_000
#: Ports that carry DNS (mDNS and LLMNR use the same wire format). Messages sent to a
#: multicast or broadcast address are left out (``EngineStats.dns_multicast``): such a
#: query asks the link, not a resolver; any host may answer from its own address, and
#: silence is how mDNS and LLMNR say "no such name", so an unanswered one is no failure.
DNS_PORTS = (53, 5353, 5355)
#: Connections and DNS transactions done that are finished and handed on together
#: (``emit``): each step after reassembly (finishing, the attempt, the detectors, the JSON
#: pieces) then runs over a few dozen of them in turn rather than alternating with the
#: per-packet work for each (likely kinder to the CPU's caches: the machine measured on has
#: no hardware counters to show it). Measured on the benchmark (session 29): 16 to 64 gave the
#: same times, a sixth to a quarter less than 1; 256 and more gave some of it back. The memory
#: held is a few dozen finished connections.
FINISH_BATCH = 64
#: Flows finished between two progress reports at the end of the inputs.
FLUSH_TICK = 1024
#: Distinct DNS endpoints remembered for reuse (the memory is cleared when full).
MAX_ENDPOINTS = 16384

KEY_DTYPE = np.dtype([("ah", np.uint64), ("al", np.uint64), ("bh", np.uint64), ("bl", np.uint64),
                      ("ap", np.uint16), ("bp", np.uint16)])

_LOW32 = np.uint64(0xFFFFFFFF)
#: the client key of a group not on the fast path (``_feed_tcp``)
_NO_KEY = (0, 0, 0)


def _group_destination(rows: np.ndarray) -> np.ndarray:
    """Per row: is its destination a multicast address (IPv4 224.0.0.0/4, RFC 5771; IPv6
    ff00::/8, RFC 4291) or the IPv4 limited broadcast? (IPv4 is stored as ::ffff:a.b.c.d.)"""
    hi, lo = rows["dst_hi"], rows["dst_lo"]
    v4 = (hi == V4_MAPPED_HI) & ((lo & ~_LOW32) == V4_MAPPED_TAG)
    a4 = lo & _LOW32
    return np.where(v4, ((a4 >> np.uint64(28)) == 0xE) | (a4 == 0xFFFFFFFF), (hi >> np.uint64(56)) == 0xFF)


ICMP4_ERRORS = (3, 4, 5, 11, 12)
ICMP6_ERRORS = (1, 2, 3, 4)


#: what ``_feed_dns`` reads of a message, in one call (``model.slot_reader``)
_MESSAGE = slot_reader(dnswire.DnsMessage, "txid", "flags", "qname", "qtype", "answers", "nscount", "arcount")


@dataclass(slots=True)
class _DnsPending:
    input: int
    client: Endpoint
    server: Endpoint
    txid: int
    qname: str
    qtype: str
    # query_frames, responses, icmp: empty, then a tuple of one, then a list from the rare
    # second item on (a query asked again, a racing answer, an ICMP error): ``_grown``. A list
    # each from the start would be three more objects for every pending query, which the
    # collector counts and walks (tens of thousands are pending, kept ``DNS_LINGER`` for a late
    # answer); the list past one keeps a query with thousands of responses linear
    query_frames: tuple[int, ...] | list[int]
    query_ts: float
    query_ttl: int
    responses: tuple[DnsResponse, ...] | list[DnsResponse] = ()
    icmp: tuple[IcmpError, ...] | list[IcmpError] = ()
    fragments: tuple[int, ...] = ()  # the IP fragments of the query's first copy, when it came in them


def _grown(items: tuple | list, item: object) -> tuple | list:
    """A pending query's ``items`` with ``item`` added (``_DnsPending``): a tuple of one from
    none, a list from one, appended to in place after that."""
    if type(items) is list:
        items.append(item)
        return items
    return [*items, item] if items else (item,)


#: ``_DnsPending(...)``, every field given positionally (``model.slot_maker``)
_new_pending = slot_maker(_DnsPending)
#: what ``_finish_dns`` reads of a pending query, in one call
_PENDING = slot_reader(_DnsPending, "input", "client", "server", "txid", "qname", "qtype", "query_frames", "query_ts",
                       "query_ttl", "responses", "icmp", "fragments")


@dataclass(slots=True)
class EngineStats:
    tcp_packets: int = 0
    udp_packets: int = 0
    dns_packets: int = 0
    icmp_errors: int = 0
    icmp_unmatched: int = 0
    dns_unparsed: int = 0
    dns_orphan_responses: int = 0
    dns_multicast: int = 0
    evicted: int = 0
    other: int = 0
    #: TCP and DNS packets whose payload the capture cut short (its snapshot length)
    payload_cut: int = 0
    #: DNS messages of datagrams whose IP fragments were not all captured (only the first is read)
    dns_fragmented: int = 0


class Reassembler:
    """Feed decoded batches; finished items go to ``emit``, in the order they complete, a few
    dozen at a time."""

    def __init__(self, emit: Callable[[list], None], max_flows: int = MAX_LIVE_FLOWS,
                 part: int = 0, nparts: int = 1) -> None:
        """``emit(items)`` gets the finished ``TcpConn``s and ``DnsTransaction``s in the order
        they were done, ``FINISH_BATCH`` at a time (and what is left at the end of ``flush``),
        in a new list each time."""
        self.emit = emit
        self.batch = FINISH_BATCH  # read here: the tests set it
        # connections (their state, finished when handed on) and DNS transactions done, in order
        self._done: list = []
        self.max_flows = max_flows
        self.part = part
        self.nparts = nparts
        # each partition holds its share of the cap
        self._cap = max(1, -(-max_flows // nparts))
        self.flows: OrderedDict[bytes, TcpState] = OrderedDict()  # by _key_bytes
        # closed connections, by the time of their last packet (oldest first)
        self.closing: OrderedDict[bytes, TcpState] = OrderedDict()
        # pending queries by (client address hi, lo, client port, txid): the integers a
        # response carries, so matching one makes no address text
        self.dns: OrderedDict[tuple, _DnsPending] = OrderedDict()
        # (client address hi, lo, client port) -> the key of its latest pending query, for ICMP
        # quotes (the tuple ``_endpoints`` keys the client's Endpoint by, shared)
        self.dns_by_client: dict[tuple[int, int, int], tuple] = {}
        self._endpoints: dict[tuple[int, int, int], Endpoint] = {}
        self.stats = EngineStats()
        self.next_stream = 0
        # per input, the time of its latest record so far: where its capture ends, at the end
        self._input_end: dict[int, float] = {}

    # ------------------------------------------------------------------ batches
    def feed(self, input_idx: int, rows: np.ndarray, buf: np.ndarray, now: float | None = None,
             made: dict[int, Fragments] | None = None) -> None:
        """Take one decoded batch. ``now`` is the time the capture has reached by its end
        (``sources.Clock``, over every record of the batch; the latest row's when not given):
        when the rows are one part's share, the flows of this part still expire when they
        would have in one process. ``made``: the frames of the batch's datagrams that IP
        reassembly made whole -> their fragments."""
        ok = rows["status"] == ST_OK
        proto = rows["proto"]
        # the payloads are read as bytes out of a memoryview: a slice of it and its bytes cost
        # a third of a numpy slice's (0.11 against 0.35 us, a TCP payload or DNS message each)
        view = memoryview(buf)
        t = take(rows, ok & (proto == 6))
        if len(t) and self.nparts > 1:
            t = take(t, self._mine(_canonical_keys(t)))
        if len(t):
            self._feed_tcp(input_idx, t, view)
            if made is not None:
                self._tcp_fragments(t, made)
        udp = ok & (proto == 17)
        dnsmask = udp & (np.isin(rows["sport"], DNS_PORTS) | np.isin(rows["dport"], DNS_PORTS))
        if self.nparts > 1:
            udp &= self._mine_udp(rows, buf, udp)
            dnsmask &= udp
        self.stats.udp_packets += int(udp.sum())
        dns = np.flatnonzero(dnsmask)
        if len(dns):
            d = take(rows, dns)
            group = _group_destination(d)
            if group.any():
                self.stats.dns_multicast += int(group.sum())
                d = take(d, ~group)
            self._feed_dns(input_idx, d, view, made)
        icmp = np.flatnonzero(ok & (((proto == 1) & np.isin(rows["itype"], ICMP4_ERRORS) & (rows["ipver"] == 4))
                                    | ((proto == 58) & np.isin(rows["itype"], ICMP6_ERRORS) & (rows["ipver"] == 6))))
        for i in icmp:
            self._icmp(input_idx, rows[i], buf)
        if now is None and len(rows):
            now = float(rows["ts"].max())
        if now is not None:
            if now > self._input_end.get(input_idx, -np.inf):
                self._input_end[input_idx] = now
            self._expire(now)

    def end_input(self, input_idx: int, end: float | None) -> None:
        """Where input ``input_idx`` ended (``InputInfo.end_ts``), once it is read: what
        the DNS queries still pending at its end are measured against."""
        if end is not None:
            self._input_end[input_idx] = end

    # --------------------------------------------------------------- partitions
    def _mine(self, keys: np.ndarray) -> np.ndarray:
        """Which canonical TCP keys fall in this partition."""
        return (_mix(keys["ah"], keys["al"], keys["bh"], keys["bl"],
                     (keys["ap"].astype(np.uint64) << np.uint64(16)) | keys["bp"].astype(np.uint64))
                % np.uint64(self.nparts)) == np.uint64(self.part)

    def _mine_udp(self, rows: np.ndarray, buf: np.ndarray, udp: np.ndarray) -> np.ndarray:
        """UDP rows of this partition, by the DNS client's address and port.

        The client is the sender of a query and the receiver of a response (the
        QR bit); a row too short to say is placed by its sender.
        """
        resp = np.zeros(len(rows), bool)
        has = udp & (rows["caplen_pay"] >= 3)
        idx = np.flatnonzero(has)
        if len(idx):
            resp[idx] = (buf[rows["pay"][idx] + 2] & 0x80) != 0
        hi = np.where(resp, rows["dst_hi"], rows["src_hi"])
        lo = np.where(resp, rows["dst_lo"], rows["src_lo"])
        port = np.where(resp, rows["dport"], rows["sport"]).astype(np.uint64)
        return (_mix(hi, lo, np.zeros_like(hi), np.zeros_like(hi), port) % np.uint64(self.nparts)) == np.uint64(self.part)

    def _owns_quote(self, err: IcmpError | None) -> bool:
        if self.nparts == 1:
            return True
        if err is None or err.q_proto not in (6, 17):
            return self.part == 0
        a = _addr_key(err.q_src)
        if err.q_proto == 17:
            h = _mix_int(a[0], a[1], 0, 0, err.q_sport)
        else:
            b = _addr_key(err.q_dst)
            x, y = (a + (err.q_sport,)), (b + (err.q_dport,))
            if x > y:
                x, y = y, x
            h = _mix_int(x[0], x[1], y[0], y[1], (x[2] << 16) | y[2])
        return h % self.nparts == self.part

    def _tcp_fragments(self, t: np.ndarray, made: dict[int, Fragments]) -> None:
        """Give the connections of segments made whole from IP fragments the frames of those fragments."""
        for i in np.flatnonzero(np.isin(t["frame"], np.fromiter(made, np.int64, len(made)))).tolist():
            st = self.flows.get(_key_bytes(_canonical_keys(t[i:i + 1]))[0])
            if st is None:
                continue
            got = made[int(t["frame"][i])]
            if st.fragments is None:
                st.fragments = {}
            room = MAX_LISTED_FRAGMENTS - len(st.fragments)  # (the report lists 64 frames of an attempt)
            st.fragments.update(list(zip(got.frames, got.ttls))[:room])
            st.fragments_disagree |= got.disagree

    def _feed_tcp(self, input_idx: int, t: np.ndarray, buf: memoryview) -> None:
        self.stats.tcp_packets += len(t)
        t, starts = _group_by_flow(t)
        cut = np.flatnonzero(t["caplen_pay"] < t["plen"])  # payload the snapshot length cut off
        self.stats.payload_cut += len(cut)
        n, G = len(t), len(starts)
        bounds = np.append(starts, n)
        sizes = np.diff(bounds)
        rowgroup = np.repeat(np.arange(G), sizes)
        flags = t["flags"]
        pure = (flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN
        # a group needs the careful path when a SYN in it may start a new connection
        odd_syn = pure & ((t["seq"] != t["seq"][starts][rowgroup]) | ~pure[starts][rowgroup])
        any_pure = np.add.reduceat(pure.astype(np.int32), starts) > 0
        any_odd = np.add.reduceat(odd_syn.astype(np.int32), starts) > 0
        keys = _key_bytes(_canonical_keys(take(t, starts)))
        firsts = list(row_fields(t, starts, START_FIELDS))
        flows = self.flows
        live, to_end, new_flow = flows.get, flows.move_to_end, self._new_flow  # (bound once: see _feed_dns)
        states: list[TcpState | None] = [None] * G
        # the client's address and port of each group taken on the fast path ((0, 0, 0): the careful one)
        ckeys: list[tuple] = [_NO_KEY] * G
        for g, (key, odd, pure) in enumerate(zip(keys, any_odd.tolist(), any_pure.tolist())):
            st = live(key)
            fresh = st is None
            if fresh:
                st = new_flow(key, input_idx, firsts[g])
            else:
                to_end(key)
            if odd or (pure and not fresh):
                self._add_tcp(key, st, input_idx, t[int(starts[g]):int(bounds[g + 1])], buf)
                continue
            states[g] = st
            ckeys[g] = st.c_key
        fast = np.array([s is not None for s in states], bool)
        ck = np.array(ckeys, np.uint64).reshape(G, 3)
        chi, clo, cpt = ck[:, 0], ck[:, 1], ck[:, 2].astype(np.uint16)
        if fast.any():
            self._absorb_fast(input_idx, t, buf, starts, bounds, rowgroup, states, fast, chi, clo, cpt, cut)
        closing = self.closing
        for key in keys:
            st = flows.get(key)
            if st is None:
                continue
            if st.closed:
                closing[key] = st
                closing.move_to_end(key)
            elif key in closing:
                del closing[key]
        while len(flows) > self._cap:
            key, old = flows.popitem(last=False)
            closing.pop(key, None)
            self.stats.evicted += 1
            self._finished(old)

    def _absorb_fast(self, input_idx, t, buf, starts, bounds, rowgroup, states, fast, chi, clo, cpt, cut) -> None:
        """Absorb whole groups at once: counters and first rows by reduceat, rows by one gather."""
        n = len(t)
        is_c = (t["src_hi"] == chi[rowgroup]) & (t["src_lo"] == clo[rowgroup]) & (t["sport"] == cpt[rowgroup])
        dirs = np.where(is_c, C2S, S2C).astype(np.uint8)
        seg = np.empty(n, SEG_DTYPE)
        for name in ("frame", "ts", "ttl", "ipid", "df", "flags", "seq", "ack", "win", "plen", "tos"):
            seg[name] = t[name]
        seg["dir"] = dirs
        seg["input"] = input_idx
        # each group gets its own copy of its rows (a view would keep the whole batch alive),
        # as a slice of the batch's raw records: a structured copy goes field by field
        raw = seg.tobytes()
        plen = t["plen"].astype(np.int64)
        nc = np.add.reduceat(is_c.astype(np.int64), starts)
        bc = np.add.reduceat(np.where(is_c, plen, 0), starts)
        bs = np.add.reduceat(np.where(is_c, 0, plen), starts)
        last = np.maximum.reduceat(t["ts"], starts)
        gbits = np.bitwise_or.reduceat(close_bits(t["flags"], is_c), starts)
        # each direction's first row in each group (n: none), and the base_seq it gives
        pos = np.arange(n)
        bases = first_seq(t["seq"], t["flags"])
        firsts = []
        for side in (is_c, ~is_c):
            i = np.minimum.reduceat(np.where(side, pos, n), starts)
            firsts.append(np.where(i < n, bases[np.minimum(i, n - 1)], -1))
        take_groups(states, nc, np.diff(bounds), bc, bs, last, gbits, firsts[0], firsts[1], raw,
                    bounds * SEG_DTYPE.itemsize)
        for g, d in zip(rowgroup[cut].tolist(), dirs[cut].tolist()):  # rows whose payload was cut
            st = states[g]
            if st is not None:
                st.cut |= 1 << d
        fast_row = fast[rowgroup]
        syns = np.flatnonzero(fast_row & ((t["flags"] & TCP_SYN) != 0))
        if len(syns):
            take_syns(states, rowgroup[syns], dirs[syns], *[t[name][syns] for name in SYN_FIELDS], buf)
        idx = np.flatnonzero(fast_row & (t["caplen_pay"] > 0))
        if len(idx):
            keep_pieces(states, rowgroup[idx], dirs[idx], t["seq"][idx], t["frame"][idx], t["pay"][idx],
                        t["caplen_pay"][idx], t["ts"][idx], buf)

    def _new_flow(self, key: bytes, input_idx: int, first: tuple) -> TcpState:
        state = TcpState.start(input_idx, first)
        self.flows[key] = state
        return state

    def _add_tcp(self, key: bytes, state: TcpState, input_idx: int, grp: np.ndarray, buf: memoryview) -> None:
        flags = grp["flags"]
        pure_syn = np.flatnonzero((flags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN)
        start = 0
        for i in pure_syn:
            i = int(i)
            if state.is_new_connection(grp[i], grp[start:i]):
                if i > start:
                    state.absorb(input_idx, grp[start:i], buf)
                self._finished(state)
                del self.flows[key]
                self.closing.pop(key, None)
                state = self._new_flow(key, input_idx, next(row_fields(grp, [i], START_FIELDS)))
                start = i
        state.absorb(input_idx, grp[start:], buf)

    # ---------------------------------------------------------------------- DNS
    def _feed_dns(self, input_idx: int, d: np.ndarray, buf: memoryview,
                  made: dict[int, Fragments] | None = None) -> None:
        self.stats.dns_packets += len(d)
        snapped = d["caplen_pay"] < d["plen"]
        first_fragment = d["frag"] == 1  # a datagram given up by IP reassembly: a fragment is missing
        self.stats.payload_cut += int(np.count_nonzero(snapped))
        self.stats.dns_fragmented += int(np.count_nonzero(first_fragment))
        why = np.where(first_fragment, 2, np.where(snapped, 1, 0))
        # the dicts' look-ups and the query's handler bound once: compiled, a method called by
        # its name is looked up on each call (four to six of them a message)
        qtype_of = dnswire.QTYPES.get
        known = self._endpoints.get
        endpoint = self._endpoint
        pending = self.dns.get
        dns_query = self._dns_query
        opcode, qr = dnswire.OPCODE_MASK, dnswire.QR
        pays, caps = d["pay"].tolist(), d["caplen_pay"].tolist()
        cols = zip(dnswire.fast_parse_many(buf, pays, caps), pays, caps, d["src_hi"].tolist(), d["src_lo"].tolist(),
                   d["sport"].tolist(), d["dst_hi"].tolist(), d["dst_lo"].tolist(), d["dport"].tolist(),
                   d["frame"].tolist(), d["ts"].tolist(), d["ttl"].tolist(), d["ipid"].tolist(),
                   why.tolist())
        cuts = ("", CUT_SNAPLEN, CUT_FRAGMENTS)
        fragments_of = (made or {}).get
        for msg, p, cap, sh, sl, sp, dh, dl, dp, frame, ts, ttl, ipid, w in cols:
            cut = cuts[w]
            if msg is None and cut:  # only part of it is here: the header still says who answers what
                msg = dnswire.parse_header(buf[p:p + cap].tobytes())
            if msg is None:
                self.stats.dns_unparsed += 1
                continue
            txid, flags, qname, qtype, found, nscount, arcount = _MESSAGE(msg)
            if flags & opcode:  # only standard queries (opcode 0)
                continue
            at = (sh, sl, sp)
            src = known(at) or endpoint(at)
            if not flags & qr:
                to = (dh, dl, dp)
                dns_query(input_idx, frame, ts, ttl, (sh, sl, sp, txid), at, src, known(to) or endpoint(to),
                          txid, qname,
                          # no question (cut off by the capture, or none asked): no type either
                          (qtype_of(qtype) or dnswire.qtype_text(qtype)) if qname else "",
                          fragments_of(frame, NO_FRAGMENTS).frames)
                continue
            pend = pending((dh, dl, dp, txid))
            if pend is None:
                self.stats.dns_orphan_responses += 1
                continue
            answers = tuple([new_dns_answer(*a) for a in found]) if found else ()
            # DnsResponse(input, frame, ts, src, ttl, ipid, flags, rcode, answers, authority, additional,
            # qname_matches, cut, fragments, fragment_ttls, fragments_disagree)
            frags = fragments_of(frame, NO_FRAGMENTS)
            pend.responses = _grown(pend.responses, new_dns_response(
                input_idx, frame, ts, src, ttl, ipid, flags, flags & 0xF, answers, nscount, arcount,
                qname == pend.qname or (cut and not qname), cut, frags.frames, frags.ttls, frags.disagree))

    def _endpoint(self, key: tuple[int, int, int]) -> Endpoint:
        """The one ``Endpoint`` of an address and port, ``key`` (its two address halves
        and the port; resolvers recur in every transaction, clients in a query and its
        response): a dict look-up instead of building one, and less memory while queries are
        pending. (``_feed_dns`` looks in ``_endpoints`` itself and calls this on a miss.)"""
        e = self._endpoints.get(key)
        if e is None:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                self._endpoints.clear()
            e = self._endpoints[key] = new_endpoint(ip_to_str(key[0], key[1]), key[2])
        return e

    def _dns_query(self, input_idx: int, frame: int, ts: float, ttl: int, key: tuple, at: tuple, client: Endpoint,
                   server: Endpoint, txid: int, qname: str, qtype: str, fragments: tuple[int, ...] = ()) -> None:
        """A query ``key`` (the client's address halves, port and the query's id) from
        ``client``, whose address halves and port are ``at`` (``_endpoints``' key, shared)."""
        pend = self.dns.get(key)
        if (pend is not None and pend.qname == qname and pend.qtype == qtype
                and (pend.server is server or pend.server == server)):  # (most endpoints are ``_endpoint``'s one)
            pend.query_frames = _grown(pend.query_frames, frame)  # the client asked again
            return
        if pend is not None:
            self._finish_dns(key)
        self.dns[key] = _new_pending(input_idx, client, server, txid, qname, qtype, (frame,), ts, ttl, (), (),
                                     fragments)
        self.dns_by_client[at] = key

    def _finish_dns(self, key: tuple, at_end: bool = False) -> None:
        """Emit a query's transaction; ``at_end``: its input ended while it was pending."""
        (inp, client, server, txid, qname, qtype, frames, qts, qttl, responses, icmp,
         fragments) = _PENDING(self.dns.pop(key))
        by_client = self.dns_by_client
        who = key[:3]  # (the client's address halves and port)
        if by_client.get(who) == key:
            del by_client[who]
        watched = None
        if at_end:
            end = self._input_end.get(inp)
            if end is not None and end - qts < DNS_LINGER:
                # the clock (sources.Clock) may stop short of the last records' own times
                # when they come after a pause: the query was watched no time at all then
                watched = max(end - qts, 0.0)
        # DnsTransaction(input, client, server, transport, txid, qname, qtype, query_frames, query_ts,
        # query_ttl, responses, icmp, watched, query_fragments)
        self._finished(new_dns_transaction(inp, client, server, "udp", txid, qname, qtype, tuple(frames), qts,
                                           qttl, tuple(responses), tuple(icmp), watched, fragments))

    # --------------------------------------------------------------------- ICMP
    def _icmp(self, input_idx: int, row: np.void, buf: np.ndarray) -> None:
        err = parse_icmp_quote(input_idx, row, buf)
        if not self._owns_quote(err):
            return
        self.stats.icmp_errors += 1
        if err is None:
            self.stats.icmp_unmatched += 1
            return
        if err.q_proto == 6:
            a = _addr_key(err.q_src) + (err.q_sport,)
            b = _addr_key(err.q_dst) + (err.q_dport,)
            key = _key_bytes(np.array([(a[0], a[1], b[0], b[1], a[2], b[2]) if a <= b else
                                       (b[0], b[1], a[0], a[1], b[2], a[2])], KEY_DTYPE))[0]
            state = self.flows.get(key)
            if state is not None:
                state.add_icmp(err)
                return
        elif err.q_proto == 17:
            key = self.dns_by_client.get(_addr_key(err.q_src) + (err.q_sport,))
            pend = self.dns.get(key) if key is not None else None
            if pend is not None and pend.server.port == err.q_dport:
                pend.icmp = _grown(pend.icmp, err)
                return
        self.stats.icmp_unmatched += 1

    # ------------------------------------------------------------------- expiry
    def _expire(self, now: float) -> None:
        flows = self.flows
        closing = self.closing
        while closing:
            key, state = next(iter(closing.items()))
            if state.last_ts >= now - CLOSED_LINGER:
                break
            del closing[key]
            if flows.get(key) is state:
                del flows[key]
                self._finished(state)
        while flows:
            key, state = next(iter(flows.items()))
            if state.last_ts >= now - IDLE_TIMEOUT:
                break
            del flows[key]
            closing.pop(key, None)
            self._finished(state)
        dns = self.dns
        while dns:
            key, pend = next(iter(dns.items()))
            if pend.query_ts >= now - DNS_LINGER:
                break
            self._finish_dns(key)

    def _finished(self, item: object) -> None:
        done = self._done
        done.append(item)
        if len(done) >= self.batch:
            self._release()

    def _release(self) -> None:
        """Finish the connections done so far, then hand on everything done, in order."""
        done, self._done = self._done, []
        items = [finish_tcp(x) if type(x) is TcpState else x for x in done]
        del done
        self.emit(items)

    def live(self) -> int:
        """Connections and DNS queries still open."""
        return len(self.flows) + len(self.dns)

    def flush(self, tick: Callable[[int, int], None] | None = None) -> None:
        """Finish everything still open (end of all inputs); ``tick(done, total)`` now and then."""
        total, done = self.live(), 0

        def finished() -> None:
            nonlocal done
            done += 1
            if tick is not None and not done % FLUSH_TICK:
                tick(done, total)

        for state in self.flows.values():
            self._finished(state)
            finished()
        self.flows.clear()
        self.closing.clear()
        for key in list(self.dns):
            self._finish_dns(key, at_end=True)
            finished()
        self._release()
        if tick is not None:
            tick(total, total)


_KEY_VOID = np.dtype((np.void, KEY_DTYPE.itemsize))


def _key_bytes(keys: np.ndarray) -> list[bytes]:
    """Flow keys as 36-byte strings: a dict key a fifth the size of a tuple of six ints."""
    return np.ascontiguousarray(keys).view(_KEY_VOID).tolist()


def _canonical_keys(t: np.ndarray) -> np.ndarray:
    """The flow key of each packet, the same in both directions."""
    a0, a1, a2 = t["src_hi"], t["src_lo"], t["sport"]
    b0, b1, b2 = t["dst_hi"], t["dst_lo"], t["dport"]
    swap = (a0 > b0) | ((a0 == b0) & ((a1 > b1) | ((a1 == b1) & (a2 > b2))))
    keys = np.empty(len(t), KEY_DTYPE)
    keys["ah"] = np.where(swap, b0, a0)
    keys["al"] = np.where(swap, b1, a1)
    keys["bh"] = np.where(swap, a0, b0)
    keys["bl"] = np.where(swap, a1, b1)
    keys["ap"] = np.where(swap, b2, a2)
    keys["bp"] = np.where(swap, a2, b2)
    return keys


_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)


def _mix(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, e: np.ndarray) -> np.ndarray:
    """A 64-bit hash of five uint64 columns (the partition of a flow)."""
    s29, s31, s32 = np.uint64(29), np.uint64(31), np.uint64(32)
    with np.errstate(over="ignore"):
        h = a * _M1 ^ b * _M2
        h = (h ^ (h >> s29)) * _M1 ^ c * _M2 ^ d
        h = (h ^ (h >> s31)) * _M2 ^ e
        h = (h ^ (h >> s32)) * _M1
        return h ^ (h >> s29)


_U64 = (1 << 64) - 1
_I1, _I2 = int(_M1), int(_M2)


def _mix_int(a: int, b: int, c: int, d: int, e: int) -> int:
    """``_mix`` of one row, in Python integers (an ICMP quote at a time: no arrays of one)."""
    h = (a * _I1 ^ b * _I2) & _U64
    h = ((h ^ (h >> 29)) * _I1 ^ c * _I2 ^ d) & _U64
    h = ((h ^ (h >> 31)) * _I2 ^ e) & _U64
    h = ((h ^ (h >> 32)) * _I1) & _U64
    return h ^ (h >> 29)


def _group_by_flow(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by flow (stable, so arrival order holds within a flow) and group starts.

    Groups by a 64-bit mix of the key (one integer sort), then checks that every
    row of a group has the group's exact key; on a collision it falls back to
    sorting the full keys.
    """
    keys = _canonical_keys(t)
    with np.errstate(over="ignore"):
        h = keys["ah"] * _M1 ^ keys["al"] * _M2
        h = (h ^ (h >> np.uint64(29))) * _M1 ^ keys["bh"] * _M2 ^ keys["bl"]
        h = (h ^ (h >> np.uint64(31))) * _M2 ^ (keys["ap"].astype(np.uint64) << np.uint64(16)) ^ keys["bp"].astype(np.uint64)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    starts = np.flatnonzero(np.concatenate(([True], hs[1:] != hs[:-1])))
    ks = take(keys, order)
    gid = np.cumsum(np.concatenate(([False], hs[1:] != hs[:-1])))
    if not np.array_equal(ks, take(ks, starts[gid])):
        _, inv = np.unique(keys, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        inv = inv[order]
        starts = np.flatnonzero(np.concatenate(([True], inv[1:] != inv[:-1])))
    return take(t, order), starts


@lru_cache(maxsize=1 << 12)
def _addr_key(ip: str) -> tuple[int, int]:
    """The two 64-bit halves ``decode`` gives the address ``ip`` (IPv4 v4-mapped)."""
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
        qproto, qttl, qid = data[6], data[7], -1
        # the text the flows' own addresses get (a v4-mapped address reads as IPv4 there too)
        qsrc = ip_to_str(int.from_bytes(data[8:16], "big"), int.from_bytes(data[16:24], "big"))
        qdst = ip_to_str(int.from_bytes(data[24:32], "big"), int.from_bytes(data[32:40], "big"))
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
