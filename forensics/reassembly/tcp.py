"""One TCP connection while it is live (``TcpState``) and when it is finished (``TcpConn``).

Direction comes from the handshake: the sender of a SYN without ACK is the
client; failing that, the receiver of a SYN-ACK; failing both (the handshake was
not captured), the side with the higher port is the client.
"""

from __future__ import annotations

import numpy as np

from ..model import C2S, S2C, SEG_DTYPE, Endpoint, IcmpError, Marker, TcpConn, TcpOptions
from ..sources.decode import TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_RST, TCP_SYN, ip_to_str

MAX_DETAIL = 512
MAX_MARKS = 64
PAYLOAD_CAP = 16384
#: Payload segments kept per direction before the first payload is considered captured.
MAX_PIECES = 48
#: ICMP errors kept per connection (TTL-limited probing sends one per hop).
MAX_ICMP = 64
MARK_FLAGS = TCP_SYN | TCP_FIN | TCP_RST
U32 = 0xFFFFFFFF


def parse_tcp_options(buf: np.ndarray, l4: int, doff: int) -> tuple[int | None, int | None, bool, bool, tuple[int, ...]]:
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
    """A live connection: counters, capped packet rows, the first payload bytes."""

    __slots__ = ("input", "stream", "c_key", "s_key", "ipver", "direction_from", "base_seq",
                 "chunks", "n_detail", "n_marks", "capped", "packets", "pbytes", "syn", "synack",
                 "syn_count", "pieces", "piece_bytes", "icmp", "first_ts", "last_ts", "want_all")

    @classmethod
    def start(cls, input_idx: int, stream: int, first: np.void) -> "TcpState":
        self = cls()
        src = (int(first["src_hi"]), int(first["src_lo"]), int(first["sport"]))
        dst = (int(first["dst_hi"]), int(first["dst_lo"]), int(first["dport"]))
        flags = int(first["flags"])
        if flags & TCP_SYN and not flags & TCP_ACK:
            self.c_key, self.s_key, self.direction_from = src, dst, "syn"
        elif flags & TCP_SYN:
            self.c_key, self.s_key, self.direction_from = dst, src, "syn-ack"
        elif src[2] < dst[2]:
            self.c_key, self.s_key, self.direction_from = dst, src, "port"
        else:
            self.c_key, self.s_key, self.direction_from = src, dst, "port"
        self.input = input_idx
        self.stream = stream
        self.ipver = int(first["ipver"])
        self.base_seq: list[int | None] = [None, None]
        self.chunks: list[np.ndarray] = []
        self.n_detail = self.n_marks = 0
        self.capped = False
        self.packets = [0, 0]
        self.pbytes = [0, 0]
        self.syn: TcpOptions | None = None
        self.synack: TcpOptions | None = None
        self.syn_count = 0
        self.pieces: list[list[tuple[int, int, bytes, float]]] = [[], []]
        self.piece_bytes = [0, 0]
        self.icmp: list[IcmpError] = []
        self.first_ts = float(first["ts"])
        self.last_ts = self.first_ts
        # DNS over TCP: every message matters, not only the first payload
        self.want_all = 53 in (src[2], dst[2])
        return self

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
                base = int(first["seq"]) if first["flags"] & TCP_SYN else (int(first["seq"]) - 1) & U32
        return base is not None and int(syn["seq"]) != base

    def absorb(self, input_idx: int, rows: np.ndarray, buf: np.ndarray) -> None:
        n = len(rows)
        if n == 0:
            return
        dirs = self._dirs(rows)
        flags = rows["flags"]
        plen = rows["plen"]
        c2s = dirs == C2S
        nc = int(c2s.sum())
        self.packets[0] += nc
        self.packets[1] += n - nc
        self.pbytes[0] += int(plen[c2s].sum())
        self.pbytes[1] += int(plen[~c2s].sum())
        for d in (C2S, S2C):
            if self.base_seq[d] is None:
                idx = np.flatnonzero(dirs == d)
                if len(idx):
                    r = rows[idx[0]]
                    self.base_seq[d] = int(r["seq"]) if r["flags"] & TCP_SYN else (int(r["seq"]) - 1) & U32
        self.last_ts = max(self.last_ts, float(rows["ts"][-1]))
        seg = np.empty(n, SEG_DTYPE)
        for name in ("frame", "ts", "ttl", "ipid", "df", "flags", "seq", "ack", "win", "plen", "tos"):
            seg[name] = rows[name]
        seg["dir"] = dirs
        seg["input"] = input_idx
        self._keep(seg)
        syn_idx = np.flatnonzero(flags & TCP_SYN)
        for i in syn_idx:
            self._syn(rows[i], int(dirs[i]), buf)
        has_pay = np.flatnonzero((rows["caplen_pay"] > 0))
        for i in has_pay:
            d = int(dirs[i])
            if not self.want_all and (self.piece_bytes[d] >= PAYLOAD_CAP or len(self.pieces[d]) >= MAX_PIECES):
                continue
            if self.want_all and self.piece_bytes[d] >= PAYLOAD_CAP * 4:
                continue
            r = rows[i]
            p = int(r["pay"])
            data = buf[p:p + int(r["caplen_pay"])].tobytes()
            self.pieces[d].append((int(r["seq"]), int(r["frame"]), data, float(r["ts"])))
            self.piece_bytes[d] += len(data)

    def _keep(self, seg: np.ndarray) -> None:
        room = MAX_DETAIL - self.n_detail
        if room >= len(seg):
            self.chunks.append(seg)
            self.n_detail += len(seg)
            return
        if room > 0:
            self.chunks.append(seg[:room])
            self.n_detail += room
            seg = seg[room:]
        self.capped = True
        marks = seg[(seg["flags"] & MARK_FLAGS) != 0][: max(MAX_MARKS - self.n_marks, 0)]
        if len(marks):
            self.chunks.append(marks)
            self.n_marks += len(marks)

    def _syn(self, r: np.void, d: int, buf: np.ndarray) -> None:
        f = int(r["flags"])
        if d == C2S and not f & TCP_ACK:
            self.syn_count += 1
            if self.syn is not None:
                return
        elif d == S2C and f & TCP_ACK:
            if self.synack is not None:
                return
        else:
            return
        mss, ws, sack, tsopt, kinds = parse_tcp_options(buf, int(r["l4"]), int(r["doff"]))
        opts = TcpOptions(mss, ws, sack, tsopt, kinds, bool(f & TCP_ECE), bool(f & TCP_CWR),
                          int(r["ttl"]), int(r["ipid"]), int(r["frame"]))
        if d == C2S:
            self.syn = opts
        else:
            self.synack = opts

    def add_icmp(self, err: IcmpError) -> None:
        if len(self.icmp) < MAX_ICMP:
            self.icmp.append(err)


def _reassemble(pieces: list[tuple[int, int, bytes, float]], start: int | None) -> tuple[bytes, tuple[int, ...], int]:
    """Contiguous bytes from the stream's start; the frames that gave them; sends of the first."""
    if not pieces:
        return b"", (), 0
    if start is None:
        start = pieces[0][0]
    ordered = sorted(((p[0] - start) & U32, i, p) for i, p in enumerate(pieces))
    out = bytearray()
    frames: list[int] = []
    first_sends = 0
    for rel, _, (seq, frame, data, _ts) in ordered:
        if rel >= 1 << 31:
            continue  # before the start: a keep-alive probe or an old segment
        if rel == 0:
            first_sends += 1
        if rel > len(out):
            break  # a gap: stop at what is contiguous
        if rel + len(data) <= len(out):
            continue  # a retransmission of bytes already placed
        out += data[len(out) - rel:]
        frames.append(frame)
        if len(out) >= PAYLOAD_CAP:
            break
    return bytes(out), tuple(frames), first_sends


_LETTERS = {"syn": "S", "synack": "H", "ack": "A", "data": "D", "fin": "F", "rst": "R",
            "retrans": "T", "zero": "W", "multi": "Q"}


def history(segs: np.ndarray, retrans: np.ndarray) -> str:
    """A Zeek-style history: upper case for the client, lower for the server.

    Each letter is noted once per direction, except T (retransmission) and W
    (zero window), which are noted at their 1st, 10th, 100th ... occurrence.
    """
    out: list[str] = []
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for row, rt in zip(segs.tolist(), retrans.tolist()):
        f, d, plen, win = row[6], row[2], row[10], row[9]
        letters = []
        if f & TCP_SYN and f & (TCP_FIN | TCP_RST):
            letters.append("Q")
        elif f & TCP_SYN:
            letters.append("H" if f & TCP_ACK else "S")
        if f & TCP_FIN:
            letters.append("F")
        if f & TCP_RST:
            letters.append("R")
        if plen > 0:
            letters.append("T" if rt else "D")
        elif f & TCP_ACK and not f & (TCP_SYN | TCP_FIN | TCP_RST):
            letters.append("A")
        if win == 0 and not f & (TCP_SYN | TCP_RST):
            letters.append("W")
        for ch in letters:
            ch = ch if d == C2S else ch.lower()
            if ch.upper() in ("T", "W"):
                c = counts.get(ch, 0) + 1
                counts[ch] = c
                if c in (1, 10, 100, 1000, 10000):
                    out.append(ch)
            elif ch not in seen:
                seen.add(ch)
                out.append(ch)
    return "".join(out)


def retransmissions(segs: np.ndarray, base: list[int | None]) -> np.ndarray:
    """Per row: a payload segment whose bytes were all sent before in its direction."""
    out = np.zeros(len(segs), bool)
    for d in (C2S, S2C):
        idx = np.flatnonzero((segs["dir"] == d) & (segs["plen"] > 0))
        if len(idx) < 2:
            continue
        b = base[d] if base[d] is not None else int(segs["seq"][idx[0]])
        rel = (segs["seq"][idx].astype(np.int64) - b) & U32
        rel = np.where(rel >= 1 << 31, rel - (1 << 32), rel)
        end = rel + segs["plen"][idx]
        prev = np.maximum.accumulate(np.concatenate(([np.iinfo(np.int64).min], end[:-1])))
        out[idx] = end <= prev
    return out


def finish_tcp(s: TcpState) -> TcpConn:
    segs = np.concatenate(s.chunks) if s.chunks else np.empty(0, SEG_DTYPE)
    c_start = None
    syn_rows = segs[(segs["dir"] == C2S) & ((segs["flags"] & (TCP_SYN | TCP_ACK)) == TCP_SYN)]
    if len(syn_rows):
        c_start = (int(syn_rows["seq"][0]) + 1) & U32
    sa_rows = segs[(segs["dir"] == S2C) & ((segs["flags"] & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK))]
    s_start = (int(sa_rows["seq"][0]) + 1) & U32 if len(sa_rows) else None
    cpay, cframes, csends = _reassemble(s.pieces[C2S], c_start)
    spay, sframes, _ = _reassemble(s.pieces[S2C], s_start)
    rt = retransmissions(segs, s.base_seq)
    first_pay_ts = None
    cp = np.flatnonzero((segs["dir"] == C2S) & (segs["plen"] > 0))
    if len(cp):
        first_pay_ts = float(segs["ts"][cp[0]])
    markers = []
    for r in segs[(segs["flags"] & (TCP_FIN | TCP_RST)) != 0]:
        f = int(r["flags"])
        ts = float(r["ts"])
        after = first_pay_ts is not None and ts >= first_pay_ts
        markers.append(Marker(
            kind="rst" if f & TCP_RST else "fin", frame=int(r["frame"]), input=int(r["input"]), ts=ts,
            dir=int(r["dir"]), flags=f, seq=int(r["seq"]), ack=int(r["ack"]), ttl=int(r["ttl"]),
            ipid=int(r["ipid"]), win=int(r["win"]), plen=int(r["plen"]), after_payload=after,
            since_payload_ms=round((ts - first_pay_ts) * 1000, 3) if after else None))
    c, sv = s.c_key, s.s_key
    return TcpConn(
        input=s.input, stream=s.stream,
        client=Endpoint(ip_to_str(c[0], c[1]), c[2]), server=Endpoint(ip_to_str(sv[0], sv[1]), sv[2]),
        ipver=s.ipver, direction_from=s.direction_from, segs=segs,
        packets=(s.packets[0], s.packets[1]), payload_bytes=(s.pbytes[0], s.pbytes[1]),
        syn=s.syn, synack=s.synack, syn_count=s.syn_count,
        client_payload=cpay, client_payload_frames=cframes, client_payload_sends=max(csends, 1 if cpay else 0),
        server_payload=spay, server_payload_frames=sframes, markers=tuple(markers),
        retransmissions=(int(rt[segs["dir"] == C2S].sum()), int(rt[segs["dir"] == S2C].sum())),
        icmp=tuple(s.icmp), history=history(segs, rt), first_ts=s.first_ts, last_ts=s.last_ts,
        detail_capped=s.capped)
