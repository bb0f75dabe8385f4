"""One TCP connection while it is live (``TcpState``) and when it is finished (``TcpConn``).

Direction comes from the handshake: the sender of a SYN without ACK is the
client; failing that, the receiver of a SYN-ACK; failing both (the handshake was
not captured), the side with the higher port is the client.
"""

from __future__ import annotations

import numpy as np

from ..compiled import segscan_module
from ..model import (C2S, S2C, SEG_ACK, SEG_DIR, SEG_DTYPE, SEG_FLAGS, SEG_FRAME, SEG_INPUT, SEG_IPID, SEG_PLEN,
                     SEG_SEQ, SEG_TS, SEG_TTL, SEG_WIN, IcmpError, SegRows, TcpConn, TcpOptions, new_endpoint,
                     new_marker, new_tcp_conn, new_tcp_options, round_to, seg_rows, seg_rows_raw, slot_reader,
                     state_filler, struct_of)
from ..sources.decode import TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_RST, TCP_SYN, ip_to_str
from ..sources.defrag import NO_FRAGMENTS, Fragments

MAX_DETAIL = 512
MAX_MARKS = 64
PAYLOAD_CAP = 16384
#: Bytes of the server's first payload kept: a ServerHello, an alert, an HTTP
#: head and the start of a block page all fit; certificates are not needed.
SERVER_KEEP = 4096
#: Payload segments kept per direction before the first payload is considered captured.
MAX_PIECES = 48
#: ICMP errors kept per connection (TTL-limited probing sends one per hop).
MAX_ICMP = 64
MARK_FLAGS = TCP_SYN | TCP_FIN | TCP_RST
#: Bytes of one kept row (a SEG_DTYPE record).
SEG_SIZE = SEG_DTYPE.itemsize
U32 = 0xFFFFFFFF
#: ``TcpState.fins`` bits: a FIN from the client, from the server, a reset.
CLOSED_FIN_C, CLOSED_FIN_S, CLOSED_RST = 1, 2, 4
CLOSED_FINS = CLOSED_FIN_C | CLOSED_FIN_S


def close_bits(flags: np.ndarray, is_client: np.ndarray) -> np.ndarray:
    """Per packet, the ``TcpState.fins`` bit it sets (0 for most)."""
    fin = (flags & TCP_FIN) != 0
    return (np.where(fin & is_client, CLOSED_FIN_C, 0) | np.where(fin & ~is_client, CLOSED_FIN_S, 0)
            | np.where((flags & TCP_RST) != 0, CLOSED_RST, 0)).astype(np.int64)


def first_seq(seq, flags):
    """Wireshark's base_seq of a direction whose first row has this seq and these flags:
    the SYN's own seq, else one before the first byte seen (ints or arrays of them)."""
    if isinstance(seq, np.ndarray):
        seq = seq.astype(np.int64)
        return np.where((flags & TCP_SYN) != 0, seq, (seq - 1) & U32)
    return seq if flags & TCP_SYN else (seq - 1) & U32


#: The decoded-row fields ``TcpState.start`` and ``TcpState.syn_row`` read, in their order.
START_FIELDS = ("src_hi", "src_lo", "sport", "dst_hi", "dst_lo", "dport", "flags", "ipver", "ts", "frame")
SYN_FIELDS = ("flags", "l4", "doff", "ttl", "ipid", "frame")


def row_fields(rows: np.ndarray, idx, names: tuple[str, ...]) -> zip:
    """The fields ``names`` of the rows at ``idx``, a tuple of Python values per row
    (a column at a time: one ``tolist`` per field, not a record look-up per row)."""
    return zip(*(rows[name][idx].tolist() for name in names))


def parse_tcp_options(buf: np.ndarray | memoryview, l4: int, doff: int) -> tuple[int | None, int | None, bool, bool, tuple[int, ...]]:
    """MSS, window scale, SACK-permitted, timestamps and the option kinds, in order."""
    data = buf[l4 + 20:l4 + doff].tobytes()
    mss = wscale = None
    sack = tstamp = False
    kinds: list[int] = []
    i = 0
    while i < len(data) and len(kinds) < 40:
        kind = data[i]
        if kind == 0:
            kinds.append(0)
            break
        if kind == 1:
            kinds.append(1)
            i += 1
            continue
        if i + 1 >= len(data):
            break
        ln = data[i + 1]
        if ln < 2 or i + ln > len(data):
            break  # an option running past the header: stop, keep what was read
        kinds.append(kind)
        if kind == 2 and ln == 4:
            mss = (data[i + 2] << 8) | data[i + 3]
        elif kind == 3 and ln == 3:
            wscale = data[i + 2]
        elif kind == 4:
            sack = True
        elif kind == 8:
            tstamp = True
        i += ln
    return mss, wscale, sack, tstamp, tuple(kinds)


class TcpState:
    """A live connection: counters, capped packet rows, the first payload bytes.

    The rows are kept as raw SEG_DTYPE records (``chunks``, a bytes object per batch):
    a bytes slice costs a fraction of a small numpy array to make and to hold, and
    ``finish_tcp`` joins them and reads them as tuples in one go.
    """

    __slots__ = ("input", "stream", "c_key", "s_key", "ipver", "direction_from", "base_seq",
                 "chunks", "n_detail", "n_marks", "capped", "packets", "pbytes", "syn", "synack",
                 "syn_count", "pieces", "piece_bytes", "icmp", "first_ts", "last_ts", "want_all", "fins",
                 "cut", "fragments", "fragments_disagree")

    @staticmethod
    def start(input_idx: int, first: tuple) -> "TcpState":
        """A connection whose first packet has these fields (``START_FIELDS``, from ``row_fields``)."""
        src_hi, src_lo, sport, dst_hi, dst_lo, dport, flags, ipver, ts, frame = first
        src = (src_hi, src_lo, sport)
        dst = (dst_hi, dst_lo, dport)
        if flags & TCP_SYN and not flags & TCP_ACK:
            c_key, s_key, how = src, dst, "syn"
        elif flags & TCP_SYN:
            c_key, s_key, how = dst, src, "syn-ack"
        elif src[2] < dst[2]:
            c_key, s_key, how = dst, src, "port"
        else:
            c_key, s_key, how = src, dst, "port"
        # (input, stream, c_key, s_key, ipver, direction_from, base_seq, chunks, n_detail, n_marks, capped,
        # packets, pbytes, syn, synack, syn_count, pieces, piece_bytes, icmp, first_ts, last_ts, want_all,
        # fins, cut, fragments, fragments_disagree), each slot in ``__slots__``' order:
        # - stream: provisional, where the connection's first packet is; the analysis ranks these at
        #   the end, as Wireshark numbers tcp.stream
        # - pieces, piece_bytes, icmp, fragments: made on first use (most flows of a SYN flood never
        #   carry payload or ICMP; few have IP fragments); fragments: frame -> TTL
        # - want_all: DNS over TCP, where every message matters, not only the first payload
        # - fins: the close_bits seen so far; cut: the directions whose payload the capture cut
        #   short (1 the client's, 2 the server's)
        return _new_state(input_idx, (input_idx, frame), c_key, s_key, ipver, how, [None, None], [], 0, 0, False,
                          [0, 0], [0, 0], None, None, 0, None, None, None, ts, ts, 53 in (src[2], dst[2]), 0, 0,
                          None, False)

    @property
    def closed(self) -> bool:
        """A reset either way, or a FIN each way."""
        return bool(self.fins & CLOSED_RST) or (self.fins & CLOSED_FINS) == CLOSED_FINS

    def _dirs(self, rows: np.ndarray) -> np.ndarray:
        c = self.c_key
        is_c = (rows["src_hi"] == c[0]) & (rows["src_lo"] == c[1]) & (rows["sport"] == c[2])
        return np.where(is_c, C2S, S2C).astype(np.uint8)

    def is_new_connection(self, syn: np.void, before: np.ndarray) -> bool:
        """Wireshark's port-reuse rule: a SYN whose seq is not this direction's first."""
        d = int(self._dirs(syn.reshape(1))[0]) if isinstance(syn, np.void) else 0
        base = self.base_seq[d]
        if base is None and len(before):
            dirs = self._dirs(before)
            idx = np.flatnonzero(dirs == d)
            if len(idx):
                first = before[idx[0]]
                base = first_seq(int(first["seq"]), int(first["flags"]))
        return base is not None and int(syn["seq"]) != base

    def absorb(self, input_idx: int, rows: np.ndarray, buf: np.ndarray | memoryview) -> None:
        """Take rows of this connection one group at a time (the careful path)."""
        if len(rows) == 0:
            return
        dirs = self._dirs(rows)
        plen = rows["plen"].astype(np.int64)
        c2s = dirs == C2S
        self.fins |= int(np.bitwise_or.reduce(close_bits(rows["flags"], c2s)))
        nc = int(c2s.sum())
        self.count(nc, len(rows) - nc, int(plen[c2s].sum()), int(plen[~c2s].sum()), float(rows["ts"].max()))
        seg = np.empty(len(rows), SEG_DTYPE)
        for name in ("frame", "ts", "ttl", "ipid", "df", "flags", "seq", "ack", "win", "plen", "tos"):
            seg[name] = rows[name]
        seg["dir"] = dirs
        seg["input"] = input_idx
        self.set_bases(seg)
        self._keep(seg.tobytes(), len(seg))
        syns = np.flatnonzero(rows["flags"] & TCP_SYN)
        for d, fields in zip(dirs[syns].tolist(), row_fields(rows, syns, SYN_FIELDS)):
            self.syn_row(d, *fields, buf)
        cut = rows["caplen_pay"] < rows["plen"]
        if cut.any():
            for d in set(dirs[cut].tolist()):
                self.cut |= 1 << d
        for i in np.flatnonzero(rows["caplen_pay"] > 0).tolist():
            d = int(dirs[i])
            if self.wants(d):
                self.piece(rows[i], d, buf)

    def count(self, nc: int, ns: int, bc: int, bs: int, last_ts: float) -> None:
        self.packets[0] += nc
        self.packets[1] += ns
        self.pbytes[0] += bc
        self.pbytes[1] += bs
        if last_ts > self.last_ts:
            self.last_ts = last_ts

    def set_bases(self, seg: np.ndarray) -> None:
        """The first sequence number seen in each direction (Wireshark's base_seq)."""
        for d in (C2S, S2C):
            if self.base_seq[d] is None:
                idx = np.flatnonzero(seg["dir"] == d)
                if len(idx):
                    r = seg[idx[0]]
                    self.base_seq[d] = first_seq(int(r["seq"]), int(r["flags"]))

    def wants(self, d: int) -> bool:
        """Whether payload bytes in direction ``d`` are still worth keeping."""
        if self.pieces is None:
            return True
        if self.want_all:
            return self.piece_bytes[d] < PAYLOAD_CAP * 4
        cap = PAYLOAD_CAP if d == C2S else SERVER_KEEP
        return self.piece_bytes[d] < cap and len(self.pieces[d]) < MAX_PIECES

    def piece(self, r: np.void, d: int, buf: np.ndarray | memoryview) -> None:
        p = int(r["pay"])
        self.add_piece(d, int(r["seq"]), int(r["frame"]), buf[p:p + int(r["caplen_pay"])].tobytes(), float(r["ts"]))

    def add_piece(self, d: int, seq: int, frame: int, data: bytes, ts: float) -> None:
        if self.pieces is None:
            self.pieces, self.piece_bytes = [[], []], [0, 0]
        self.pieces[d].append((seq, frame, data, ts))
        self.piece_bytes[d] += len(data)

    def _keep(self, raw: bytes, n: int) -> None:
        """Keep ``n`` rows (SEG_DTYPE records as bytes) within the caps: the first
        ``MAX_DETAIL``, then only SYN/FIN/RST rows, ``MAX_MARKS`` of them."""
        room = MAX_DETAIL - self.n_detail
        if room >= n:
            self.chunks.append(raw)
            self.n_detail += n
            return
        if room > 0:
            self.chunks.append(raw[:room * SEG_SIZE])
            self.n_detail += room
            raw = raw[room * SEG_SIZE:]
        self.capped = True
        left = MAX_MARKS - self.n_marks
        if left > 0:
            seg = np.frombuffer(raw, SEG_DTYPE)
            marks = seg[(seg["flags"] & MARK_FLAGS) != 0][:left]
            if len(marks):
                self.chunks.append(marks.tobytes())
                self.n_marks += len(marks)

    def syn_row(self, d: int, f: int, l4: int, doff: int, ttl: int, ipid: int, frame: int,
                buf: np.ndarray | memoryview) -> None:
        """A row with SYN set, in direction ``d``: keep the options of the first SYN and SYN-ACK."""
        if d == C2S and not f & TCP_ACK:
            self.syn_count += 1
            if self.syn is not None:
                return
        elif d == S2C and f & TCP_ACK:
            if self.synack is not None:
                return
        else:
            return
        mss, ws, sack, tsopt, kinds = parse_tcp_options(buf, l4, doff)
        opts = new_tcp_options(mss, ws, sack, tsopt, kinds, bool(f & TCP_ECE), bool(f & TCP_CWR), ttl, ipid, frame)
        if d == C2S:
            self.syn = opts
        else:
            self.synack = opts

    def add_icmp(self, err: IcmpError) -> None:
        if self.icmp is None:
            self.icmp = []
        if len(self.icmp) < MAX_ICMP:
            self.icmp.append(err)


def add_pieces(states: list, groups, dirs, seqs, frames, pays, caps, tss, buf) -> None:
    """Each payload row ``k`` of a batch (columns, in capture order), of connection
    ``states[groups[k]]`` in direction ``dirs[k]``: kept as a piece where the connection
    ``wants`` it, its bytes ``buf[pays[k]:pays[k] + caps[k]]`` (``_segscan.add_pieces`` in
    compiled code, where built)."""
    cols = zip(groups.tolist(), dirs.tolist(), seqs.tolist(), frames.tolist(), pays.tolist(), caps.tolist(),
               tss.tolist())
    for g, d, seq, frame, pay, cap, ts in cols:
        st = states[g]
        if st.wants(d):
            st.add_piece(d, seq, frame, buf[pay:pay + cap].tobytes(), ts)


def absorb_groups(states: list, nc, sizes, bc, bs, last, gbits, base_c, base_s, raw: bytes, at) -> None:
    """For each group ``g`` of a batch whose connection ``states[g]`` is not None (columns, one
    entry a group): its counts (``nc[g]`` of its ``sizes[g]`` rows from the client, ``bc[g]`` and
    ``bs[g]`` payload bytes each way, its latest time ``last[g]``), its close bits, each
    direction's first sequence number where it has none yet (``base_c``, ``base_s``: -1 for
    none) and its rows, ``raw[at[g]:at[g + 1]]`` (``_segscan.absorb_groups`` in compiled code)."""
    nc, sizes, bc, bs, last, gbits = nc.tolist(), sizes.tolist(), bc.tolist(), bs.tolist(), last.tolist(), gbits.tolist()
    base_c, base_s, at = base_c.tolist(), base_s.tolist(), at.tolist()
    for g, st in enumerate(states):
        if st is None:
            continue
        st.count(nc[g], sizes[g] - nc[g], bc[g], bs[g], last[g])
        st.fins |= gbits[g]
        if st.base_seq[C2S] is None and base_c[g] >= 0:
            st.base_seq[C2S] = base_c[g]
        if st.base_seq[S2C] is None and base_s[g] >= 0:
            st.base_seq[S2C] = base_s[g]
        st._keep(raw[at[g]:at[g + 1]], sizes[g])


def syn_rows(states: list, groups, dirs, flags, l4, doff, ttl, ipid, frame, buf) -> None:
    """``TcpState.syn_row`` of each SYN row ``k`` of a batch (columns), for the connection
    ``states[groups[k]]`` (``_segscan.syn_rows`` in compiled code)."""
    for g, d, f, a, o, t, i, fr in zip(groups.tolist(), dirs.tolist(), flags.tolist(), l4.tolist(), doff.tolist(),
                                       ttl.tolist(), ipid.tolist(), frame.tolist()):
        states[g].syn_row(d, f, a, o, t, i, fr, buf)


#: the compiled loops over a connection's rows (``forensics.reassembly._segscan``), or None: not
#: built, or ``FORENSICS_PURE=1``
_SEGSCAN = segscan_module()


def _compiled_loops() -> tuple:
    """``add_pieces``, ``absorb_groups`` and ``syn_rows`` by ``_segscan``'s, each handed the
    columns as the typed arrays it reads and this module's caps (read at each call); Nones where
    it is not built (or built from an older ``_segscan.pyx``)."""
    mod = _SEGSCAN
    if mod is None or not all(hasattr(mod, n) for n in ("add_pieces", "absorb_groups", "syn_rows")):
        return None, None, None
    i64, arr = np.int64, np.ascontiguousarray

    def add_compiled(states: list, groups, dirs, seqs, frames, pays, caps, tss, buf) -> None:
        mod.add_pieces(states, arr(groups, i64), arr(dirs, np.uint8), arr(seqs, np.uint32), arr(frames, i64),
                       arr(pays, i64), arr(caps, np.int32), arr(tss, np.float64), buf, PAYLOAD_CAP, SERVER_KEEP,
                       PAYLOAD_CAP * 4, MAX_PIECES)

    def absorb_compiled(states: list, nc, sizes, bc, bs, last, gbits, base_c, base_s, raw: bytes, at) -> None:
        mod.absorb_groups(states, arr(nc, i64), arr(sizes, i64), arr(bc, i64), arr(bs, i64), arr(last, np.float64),
                          arr(gbits, i64), arr(base_c, i64), arr(base_s, i64), raw, arr(at, i64), MAX_DETAIL)

    def syns_compiled(states: list, groups, dirs, flags, l4, doff, ttl, ipid, frame, buf) -> None:
        mod.syn_rows(states, arr(groups, i64), arr(dirs, np.uint8), arr(flags, np.uint16), arr(l4, i64),
                     arr(doff, np.uint8), arr(ttl, np.uint8), arr(ipid, np.int32), arr(frame, i64), buf)

    return add_compiled, absorb_compiled, syns_compiled


_add, _absorb, _syns = _compiled_loops()
#: ``add_pieces``, ``absorb_groups`` and ``syn_rows``, compiled where they are built
keep_pieces = _add or add_pieces
take_groups = _absorb or absorb_groups
take_syns = _syns or syn_rows


#: ``TcpState``'s constructor, every slot given positionally (compiled where ``forensics._slots`` is built)
_new_state = state_filler(TcpState, list(TcpState.__slots__))


def _reassemble(pieces: list[tuple[int, int, bytes, float]], start: int | None,
                cap: int = PAYLOAD_CAP) -> tuple[bytes, tuple[int, ...], int, int]:
    """Contiguous bytes from the stream's start; the frames that gave them; sends of the first."""
    if not pieces:
        return b"", (), 0, 0
    if start is None:
        start = pieces[0][0]
    if len(pieces) == 1:  # the usual first payload: one segment, at the start or not
        seq, frame, data, _ts = pieces[0]
        if seq != start:
            return b"", (), 0, 0
        if data:
            return data[:cap], (frame,), 1, 0
    else:
        # the usual first payload of several segments: in order, each starting where the
        # last one ended, none empty; the loop below would take them all, as they come
        expect = start
        for seq, _frame, data, _ts in pieces:
            if seq != expect or not data:
                break
            expect = (expect + len(data)) & U32
        else:
            out = b"".join([p[2] for p in pieces])
            if len(out) - len(pieces[-1][2]) < cap:  # the cap falls in the last segment, or later
                return out[:cap], tuple([p[1] for p in pieces]), 1, 0
    ordered = sorted(((p[0] - start) & U32, i, p) for i, p in enumerate(pieces))
    out = bytearray()
    frames: list[int] = []
    first_sends = 0
    conflicts = 0  # segments whose bytes differ from bytes already placed at the same place
    for rel, _, (seq, frame, data, _ts) in ordered:
        if rel >= 1 << 31:
            continue  # before the start: a keep-alive probe or an old segment
        if rel == 0:
            first_sends += 1
        if rel > len(out):
            break  # a gap: stop at what is contiguous
        overlap = min(len(out), rel + len(data)) - rel
        if overlap > 0 and out[rel:rel + overlap] != data[:overlap]:
            conflicts += 1
        if rel + len(data) <= len(out):
            continue  # a retransmission of bytes already placed
        out += data[len(out) - rel:]
        frames.append(frame)
        if len(out) >= cap:
            break
    return bytes(out[:cap]), tuple(frames), first_sends, conflicts


#: ``_segscan.reassemble_usual`` (``_reassemble``'s answer for the usual first payloads, None for
#: the others), or None where it is not built
_usual = getattr(_SEGSCAN, "reassemble_usual", None)


def reassemble(pieces: list[tuple[int, int, bytes, float]], start: int | None,
               cap: int = PAYLOAD_CAP) -> tuple[bytes, tuple[int, ...], int, int]:
    """``_reassemble``, its usual cases in compiled code where built."""
    if _usual is not None:
        got = _usual(pieces, start, cap)
        if got is not None:
            return got
    return _reassemble(pieces, start, cap)


_LOG_LETTERS = ("T", "W", "t", "w")
_NOTED_AT = (1, 10, 100, 1000, 10000)
#: The flags the history letters depend on.
_LETTER_FLAGS = TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST


def _letters(f: int, payload: bool, zero_window: bool, rt: bool, d: int) -> tuple[str, ...]:
    """The history letters of one row (lower case from the server)."""
    out = ""
    if f & TCP_SYN and f & (TCP_FIN | TCP_RST):
        out += "Q"
    elif f & TCP_SYN:
        out += "H" if f & TCP_ACK else "S"
    if f & TCP_FIN:
        out += "F"
    if f & TCP_RST:
        out += "R"
    if payload:
        out += "T" if rt else "D"
    elif f & TCP_ACK and not f & (TCP_SYN | TCP_FIN | TCP_RST):
        out += "A"
    if zero_window and not f & (TCP_SYN | TCP_RST):
        out += "W"
    return tuple(out.lower() if d else out)



#: Bits of a row's letter code besides its flags (``f & _LETTER_FLAGS``, below 32).
_CODE_PAYLOAD, _CODE_ZERO_WINDOW, _CODE_RT, _CODE_S2C = 32, 64, 128, 256
#: The letters of each row code, and whether any of them is counted (T, W): one list
#: index per row instead of a call, the code built from bits the walk has at hand.
_ROW_LETTERS = [(lt, any(ch in _LOG_LETTERS for ch in lt)) for lt in
                (_letters(code & _LETTER_FLAGS, bool(code & _CODE_PAYLOAD), bool(code & _CODE_ZERO_WINDOW),
                          bool(code & _CODE_RT), 1 if code & _CODE_S2C else 0) for code in range(512))]

#: A keep-alive probe (RFC 9293 3.8.4) repeats the last byte already sent, one byte at
#: most (BSD-derived and Windows stacks send one "garbage" byte, Linux none) at the
#: sequence number just below the next one; Wireshark calls it "TCP Keep-Alive", not a
#: retransmission, and so does the count here.
KEEPALIVE_MAX_LEN = 1


def _scan(rows: list[tuple], base: list[int | None]):
    """One pass over a connection's rows: retransmissions per direction, the history,
    and what ``finish_tcp`` needs besides (where each side's SYN puts the stream's
    start, the client's first payload time, the FIN and RST rows).

    A keep-alive probe (one byte just below the next sequence number, no SYN/FIN/RST)
    is not counted as a retransmission, nor noted as one (T) in the history.

    The history is Zeek's: upper case for the client, lower for the server; each
    letter noted once per direction, except T (retransmitted data) and W (zero
    window), noted at their 1st, 10th, 100th ... occurrence.
    """
    high: list[int | None] = [None, None]
    starts = list(base)
    nrt = [0, 0]
    hist: list[str] = []
    seen: set[str] = set()
    counts: dict[str, int] = {}
    done: set[int] = set()  # codes whose letters are all noted once and already seen
    c_start = s_start = None
    first_pay_ts = None
    ends = []  # the FIN and RST rows
    # the row's members by local names (the compiled build reads a member of a tuple by a C index)
    i_flags, i_dir, i_plen, i_seq, i_ts, i_win = SEG_FLAGS, SEG_DIR, SEG_PLEN, SEG_SEQ, SEG_TS, SEG_WIN
    # ... and the flags and codes it tests (C integers there, as the members are)
    syn, ack, fin_rst, mark, letter_flags = TCP_SYN, TCP_ACK, TCP_FIN | TCP_RST, MARK_FLAGS, _LETTER_FLAGS
    c2s, s2c, keepalive = C2S, S2C, KEEPALIVE_MAX_LEN
    code_s2c, code_payload, code_rt, code_zero_window = _CODE_S2C, _CODE_PAYLOAD, _CODE_RT, _CODE_ZERO_WINDOW
    for r in rows:
        f, d, plen = r[i_flags], r[i_dir], r[i_plen]
        code = (f & letter_flags) | (code_s2c if d else 0)
        if f & mark:
            if f & syn:
                if d == c2s:
                    if not f & ack and c_start is None:
                        c_start = (r[i_seq] + 1) & U32
                elif f & ack and high[s2c] is None:
                    # the last SYN-ACK before the server's first data: a server (or a SYN
                    # proxy) that answered a retransmitted SYN with a new ISN sends its
                    # data after the one in effect
                    s_start = (r[i_seq] + 1) & U32
            if f & fin_rst:
                ends.append(r)
        if plen > 0:
            code |= code_payload
            if first_pay_ts is None and d == c2s:
                first_pay_ts = r[i_ts]
            start = starts[d]
            if start is None:
                start = starts[d] = r[i_seq] - 1
            rel = (r[i_seq] - start) & U32
            if rel >= 1 << 31:
                rel -= 1 << 32
            end = rel + plen
            h = high[d]
            if h is None or end > h:
                high[d] = end
            elif not (plen <= keepalive and end == h and not f & mark):
                code |= code_rt
                nrt[d] += 1
        if r[i_win] == 0:
            code |= code_zero_window
        if code in done:
            continue
        letters, counted = _ROW_LETTERS[code]
        for ch in letters:
            if ch in _LOG_LETTERS:
                c = counts.get(ch, 0) + 1
                counts[ch] = c
                if c in _NOTED_AT:
                    hist.append(ch)
            elif ch not in seen:
                seen.add(ch)
                hist.append(ch)
        if not counted:
            done.add(code)
    return nrt, "".join(hist), c_start, s_start, first_pay_ts, ends


def scan_records(raw: bytes | bytearray, base: list[int | None]) -> tuple:
    """``_scan`` of a connection's records as bytes (SEG_DTYPE), then the frames of all its rows
    (a tuple), the client's SYN rows (SYN without ACK, a tuple) and its rows (a ``SegRows``,
    made on first use where the scan is compiled: ``_segscan``)."""
    rows = seg_rows_raw(raw)
    syn = TCP_SYN | TCP_ACK
    return (*_scan(rows, base), tuple([r[SEG_FRAME] for r in rows]),
            tuple([r for r in rows if r[SEG_DIR] == C2S and r[SEG_FLAGS] & syn == TCP_SYN]), SegRows(raw, rows))


def _compiled_scan():
    """``scan_records`` in compiled code (``_segscan.Scanner``, given this module's table of each
    row code's letters), or None: not built, ``FORENSICS_PURE=1``, or built for another layout."""
    mod = _SEGSCAN
    if mod is None or getattr(mod, "SEG_FORMAT", None) != struct_of(SEG_DTYPE).format:
        return None
    return mod.Scanner(_ROW_LETTERS, _LOG_LETTERS, _NOTED_AT, TCP_SYN, TCP_ACK, TCP_FIN, TCP_RST, _LETTER_FLAGS,
                       KEEPALIVE_MAX_LEN, _CODE_S2C, _CODE_PAYLOAD, _CODE_RT, _CODE_ZERO_WINDOW, SegRows).scan


#: ``scan_records``, compiled where it is built
scan_rows = _compiled_scan() or scan_records


def _walk(rows: list[tuple], base: list[int | None]) -> tuple[list[int], str]:
    """Retransmissions per direction and the history of a connection's rows (see ``_scan``)."""
    return _scan(rows, base)[:2]


def history(segs: np.ndarray, base: list[int | None] | None = None) -> str:
    """The Zeek-style history of a connection's rows."""
    return _walk(seg_rows(segs), base or [None, None])[1]


#: Address texts remembered (servers and busy clients recur in many connections);
#: the memory is cleared when full.
MAX_IP_TEXTS = 16384
_IP_TEXT: dict[tuple[int, int], str] = {}


def _ip_text(hi: int, lo: int) -> str:
    """``ip_to_str``, remembered: ``finish_tcp`` looks in ``_IP_TEXT`` first."""
    if len(_IP_TEXT) >= MAX_IP_TEXTS:
        _IP_TEXT.clear()
    text = _IP_TEXT[(hi, lo)] = ip_to_str(hi, lo)
    return text


def finish_tcp(s: TcpState) -> TcpConn:
    (chunks, base_seq, pieces, capped, want_all, fragments, fragments_disagree, c, sv, input_idx, stream, ipver,
     direction_from, packets, pbytes, syn, synack, syn_count, icmp, first_ts, last_ts, cut) = _STATE(s)
    raw = bytearray().join(chunks)
    segs = np.frombuffer(raw, SEG_DTYPE)
    nrt, hist, c_start, s_start, first_pay_ts, ends, frames, syns, rows = scan_rows(raw, base_seq)
    pieces = pieces or ([], [])
    if capped and pieces[C2S]:
        # the first payload's row may be past the row cap: its first segment kept its time
        first_pay_ts = pieces[C2S][0][3] if first_pay_ts is None else min(first_pay_ts, pieces[C2S][0][3])
    cpay, cframes, csends, cconf = reassemble(pieces[C2S], c_start)
    spay, sframes, _, sconf = reassemble(pieces[S2C], s_start, PAYLOAD_CAP if want_all else SERVER_KEEP)
    markers = []
    for r in ends:
        f, ts = r[SEG_FLAGS], r[SEG_TS]
        after = first_pay_ts is not None and ts >= first_pay_ts
        # Marker(kind, frame, input, ts, dir, flags, seq, ack, ttl, ipid, win, plen, after_payload,
        # since_payload_ms)
        markers.append(new_marker("rst" if f & TCP_RST else "fin", r[SEG_FRAME], r[SEG_INPUT], ts, r[SEG_DIR], f,
                                  r[SEG_SEQ], r[SEG_ACK], r[SEG_TTL], r[SEG_IPID], r[SEG_WIN], r[SEG_PLEN], after,
                                  round_to((ts - first_pay_ts) * 1000, 3) if after else None))
    frags = Fragments.of(fragments, fragments_disagree) if fragments else NO_FRAGMENTS
    client = new_endpoint(_IP_TEXT.get((c[0], c[1])) or _ip_text(c[0], c[1]), c[2])
    server = new_endpoint(_IP_TEXT.get((sv[0], sv[1])) or _ip_text(sv[0], sv[1]), sv[2])
    # TcpConn(input, stream, client, server, ipver, direction_from, segs, packets, payload_bytes, syn, synack,
    # syn_count, client_payload, client_payload_frames, client_payload_sends, server_payload,
    # server_payload_frames, markers, retransmissions, conflicts, icmp, history, first_ts, last_ts,
    # client_payload_ts, detail_capped, rows, payload_cut, fragment_frames, fragment_ttls, fragments_disagree,
    # row_frames, syn_rows)
    return new_tcp_conn(
        input_idx, stream, client, server,
        ipver, direction_from, segs, (packets[0], packets[1]), (pbytes[0], pbytes[1]),
        syn, synack, syn_count, cpay, cframes, max(csends, 1 if cpay else 0), spay, sframes,
        tuple(markers), (nrt[0], nrt[1]), (cconf, sconf), tuple(icmp or ()), hist, first_ts,
        last_ts, first_pay_ts, capped, rows, cut, frags.frames, frags.ttls, frags.disagree, frames, syns)


#: what ``finish_tcp`` reads of a connection's state, in one call (``model.slot_reader``)
_STATE = slot_reader(TcpState, "chunks", "base_seq", "pieces", "capped", "want_all", "fragments",
                     "fragments_disagree", "c_key", "s_key", "input", "stream", "ipver", "direction_from",
                     "packets", "pbytes", "syn", "synack", "syn_count", "icmp", "first_ts", "last_ts", "cut")
