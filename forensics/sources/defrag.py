"""IP reassembly: the fragments of an IPv4 or IPv6 datagram made whole again, as Wireshark does.

A DNS answer too big for the path (DNSSEC, long TXT or many addresses over
EDNS), a UDP datagram of any kind, or a TCP segment sent without DF comes in
fragments; only the first carries the transport header, and what the
datagram says is in all of them. The decoder (``decode``) marks every
fragment (``frag``: 1 the first, 2 the others); ``Reassembler.feed`` takes
a decoded batch, holds the fragments' bytes by datagram (IPv4: source,
destination, protocol, IP-ID; IPv6: source, destination, fragment
identification), and as soon as a datagram is whole, adds it to the batch as one
packet of the frame whose fragment completed it (Wireshark shows the
reassembled datagram there too), decoded like any other. The fragments' own rows
are marked ``ST_FRAG`` (``mark``), a first fragment too short for its transport
header included: the analysis reads the datagram once, whole.

A datagram still missing a piece ``FRAG_TIMEOUT`` of capture time after its first
fragment came (lost, or not captured), or still open when its input ends, is given
up: its first fragment, if it came, goes on as the packet cut short it is
(``frag`` 1; DNS marks its message cut), and a warning counts them. Fragments
that overlap with different bytes (a forged fragment racing the real one, or a
broken stack) are counted in a warning too; the bytes captured first are kept
(Linux drops such a datagram; kept, it can be shown).

Fragments with the key of a datagram made whole less than ``FRAG_TIMEOUT`` before
start a new datagram (identifications are reused: Wireshark does the same); if
they never make one, they were copies of the last one, left out, or, with other
bytes, forged fragments that lost the race, counted as a disagreement (not as
fragments missing). A new datagram of that key that loses a fragment is taken for
the latter.

Memory is bounded: at most ``MAX_DATAGRAMS`` open at once (the oldest is given
up first) and as many remembered whole, and a datagram is at most 65,535 bytes
(larger claims are damage).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model import MAX_FRAMES_LISTED
from ..records import take
from .decode import PKT_DTYPE, ST_BAD_L4, ST_FRAG, ST_OK, decode

#: Capture seconds a datagram may wait for its missing fragments. A sender emits a
#: datagram's fragments back to back and they take one path, so they arrive within
#: milliseconds of one another; 5 s is far beyond that, and well below how long the
#: analysis keeps a closed connection or a DNS query open (15 s, 30 s), so a first
#: fragment given up late still joins its flow.
FRAG_TIMEOUT = 5.0
#: Datagrams open at once before the oldest is given up (bounds memory on a capture
#: full of stray fragments: at most 64 KB each).
MAX_DATAGRAMS = 4096
#: The largest datagram IP can carry (its total length field; IPv6 jumbograms are
#: never fragmented).
MAX_DATAGRAM = 65535
#: Fragment frames handed on per datagram made whole (``Reassembler.made``): a 64 KB datagram may
#: come in 8,192 fragments of 8 bytes; the report lists no more frames of an attempt anyway.
MAX_LISTED_FRAGMENTS = MAX_FRAMES_LISTED
#: Raw IP: the link type the reassembled datagrams are decoded with.
LINKTYPE_RAW = 101
#: IPv6 extension headers that may come before the fragment header (the
#: "unfragmentable part"): hop-by-hop, routing, destination options.
_V6_BEFORE_FRAG = frozenset({0, 43, 60})


@dataclass(slots=True)
class _Datagram:
    first_ts: float
    header: bytes | None = None  # the IP header of the fragment at offset 0 (its unfragmentable part, IPv6)
    first: bytes | None = None  # that whole fragment, as captured: what goes on if the datagram is given up
    first_row: np.ndarray | None = None  # its decoded row
    total: int | None = None  # the datagram's payload length, known from its last fragment
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> bytes
    conflict: bool = False
    cut: bool = False  # a fragment the capture cut short: the datagram cannot be made whole
    prev: bytes | None = None  # the payload of a datagram of the same key made whole just before
    ttls: dict[int, int] = field(default_factory=dict)  # the frame of each of its fragments -> its TTL (IPv6: hop limit)


@dataclass(frozen=True, slots=True)
class Fragments:
    """The fragments a datagram was made whole from: what the evidence shows of them.

    One sender's fragments leave it together and take one path: they arrive with one TTL.
    Fragments that differ in TTL, or that overlap with other bytes, did not all come from
    that sender by that path (an attacker's fragment planted ahead of the real one, as in
    DNS cache poisoning by fragmentation), or a broken stack sent them."""

    frames: tuple[int, ...]  # in frame order, the first ``MAX_LISTED_FRAGMENTS``
    ttls: tuple[int, ...]  # the TTL of each of those frames
    disagree: bool  # some overlapped with different bytes (the bytes captured first were kept)

    @staticmethod
    def of(ttls: dict[int, int], disagree: bool) -> "Fragments":
        """From fragments' frame -> TTL: the first ``MAX_LISTED_FRAGMENTS`` frames in frame order."""
        if not ttls:
            return NO_FRAGMENTS
        frames = tuple(sorted(ttls))[:MAX_LISTED_FRAGMENTS]
        return Fragments(frames, tuple([ttls[f] for f in frames]), bool(disagree))


#: What a packet that came whole (no fragments) has of ``Fragments``.
NO_FRAGMENTS = Fragments((), (), False)


@dataclass(slots=True)
class DefragStats:
    reassembled: int = 0  # datagrams made whole
    given_up: int = 0  # datagrams given up (a fragment missing or cut short)
    given_up_fragments: int = 0
    conflicts: int = 0  # datagrams whose fragments overlapped with different bytes
    bad: int = 0  # fragments whose claims do not fit (offset past 64 KB, a last fragment contradicting another)


class Reassembler:
    """The fragments of one input's datagrams, batch by batch (``feed``), and at its end (``close``)."""

    def __init__(self) -> None:
        self.open: dict[tuple, _Datagram] = {}
        # datagrams made whole in the last FRAG_TIMEOUT: key -> (time, payload), to tell what fragments
        # of the same key that never make a datagram were: copies, or (other bytes) a forgery
        self.done: dict[tuple, tuple[float, bytes]] = {}
        self.stats = DefragStats()
        #: the datagrams made whole since ``take_made`` was last called: the frame each is read at
        #: -> the frames of all its fragments (the evidence lists them, as Wireshark's
        #: "[2 IPv4 Fragments: #6, #7]" does), with their TTLs and whether they disagreed
        self.made: dict[int, Fragments] = {}

    def take_made(self) -> dict[int, Fragments] | None:
        """``made``, emptied (None when empty)."""
        if not self.made:
            return None
        made, self.made = self.made, {}
        return made

    # ------------------------------------------------------------------ batches
    def feed(self, rows: np.ndarray, buf: np.ndarray, now: float | None,
             idx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` (decoded from ``buf``) with the datagrams made whole (or given up) by this batch
        added, in frame order, and the buffer they are read from. ``idx``: the rows' fragments, as
        ``mark`` found them (found and marked here when not given)."""
        if idx is None:
            idx = mark(rows)
        if not len(idx) and not self.open:
            return rows, buf
        out: list[tuple[bytes, np.ndarray]] = []  # (packet bytes, the row of the frame it is shown at)
        for i in idx.tolist():
            self._add(rows[i], buf, out)
        if now is not None:
            for key in [k for k, d in self.open.items() if now - d.first_ts > FRAG_TIMEOUT]:
                self._give_up(key, out)
            while self.done and now - next(iter(self.done.values()))[0] > FRAG_TIMEOUT:
                del self.done[next(iter(self.done))]
        return _merge(rows, buf, out)

    def close(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The input ended: give every open datagram up; the rows of their first fragments, if any."""
        out: list[tuple[bytes, np.ndarray]] = []
        for key in list(self.open):
            self._give_up(key, out)
        if not out:
            return None
        return _merge(np.zeros(0, PKT_DTYPE), np.zeros(0, np.uint8), out)

    # ------------------------------------------------------------------ fragments
    def _add(self, row: np.ndarray, buf: np.ndarray, out: list) -> None:
        l3, end = int(row["l3"]), int(row["ipend"])
        if row["ipver"] == 4:
            ihl = (int(buf[l3]) & 0xF) * 4
            fo = (int(buf[l3 + 6]) << 8) | int(buf[l3 + 7])
            offset, more = (fo & 0x1FFF) * 8, bool(fo & 0x2000)
            tot = (int(buf[l3 + 2]) << 8) | int(buf[l3 + 3])
            start, claimed_end = l3 + ihl, l3 + tot
            key = (4, int(row["src_hi"]), int(row["src_lo"]), int(row["dst_hi"]), int(row["dst_lo"]),
                   int(buf[l3 + 9]), int(row["ipid"]))
            header = bytes(buf[l3:start])
        else:
            got = _v6_fragment(buf, l3, end)
            if got is None:
                self.stats.bad += 1
                return
            ident, offset, more, start, header = got
            plen = (int(buf[l3 + 4]) << 8) | int(buf[l3 + 5])
            claimed_end = l3 + 40 + plen
            key = (6, int(row["src_hi"]), int(row["src_lo"]), int(row["dst_hi"]), int(row["dst_lo"]), ident)
        data = bytes(buf[start:min(end, claimed_end)])
        cut = end < claimed_end  # the capture's snapshot length cut this fragment
        if offset + len(data) > MAX_DATAGRAM or (more and len(data) % 8 and not cut):
            self.stats.bad += 1
            return
        d = self.open.get(key)
        if d is None:
            if len(self.open) >= MAX_DATAGRAMS:
                self._give_up(next(iter(self.open)), out)  # the oldest
            d = self.open[key] = _Datagram(float(row["ts"]))
            late = self.done.get(key)
            if late is not None:  # the key's last datagram was made whole just before
                d.prev = late[1]
        d.cut |= cut
        d.ttls[int(row["frame"])] = int(row["ttl"])
        if offset == 0 and d.first is None:  # (a second one is a piece like any other)
            d.header = header
            d.first = bytes(buf[l3:end])  # as raw IP: its link header is not needed
            d.first_row = row.copy()
        if not more:
            total = offset + len(data)
            if d.total is not None and d.total != total:
                d.conflict = True
            d.total = total if d.total is None else min(d.total, total)
        old = d.pieces.get(offset)
        if old is not None and old != data:
            d.conflict = True
        if old is None or len(data) > len(old):
            d.pieces[offset] = data if old is None else old + data[len(old):]
        if d.header is not None and d.total is not None and not d.cut:
            whole = _join(d)
            if whole is not None:
                payload, conflict = whole
                del self.open[key]
                if len(self.done) >= MAX_DATAGRAMS:
                    del self.done[next(iter(self.done))]
                self.done[key] = (float(row["ts"]), payload)
                self.stats.reassembled += 1
                self.stats.conflicts += conflict or d.conflict
                out.append((_packet(key[0], d.header, payload), row))
                self.made[int(row["frame"])] = Fragments.of(d.ttls, conflict or d.conflict)

    def _give_up(self, key: tuple, out: list) -> None:
        d = self.open.pop(key)
        if d.prev is not None:  # fragments of a datagram already whole, come again: copies or forgeries
            self.stats.conflicts += any(d.prev[o:o + len(p)] != p for o, p in d.pieces.items())
            return
        self.stats.given_up += 1
        self.stats.given_up_fragments += len(d.pieces)
        self.stats.conflicts += d.conflict
        if d.first is not None:
            out.append((d.first, d.first_row))


def mark(rows: np.ndarray) -> np.ndarray:
    """The rows that are IP fragments, marked ``ST_FRAG`` (the datagram is read once, whole, or from
    its first fragment if given up). A first fragment too short for its transport header (the
    decoder's ``ST_BAD_L4``) is one too: splitting the TCP header across fragments is an old way to
    slip past filters that read only the first (RFC 1858), and its datagram is read whole."""
    st = rows["status"]
    idx = np.flatnonzero((rows["frag"] != 0) & ((st == ST_OK) | (st == ST_FRAG) | (st == ST_BAD_L4)))
    st[idx] = ST_FRAG
    return idx


def _join(d: _Datagram) -> tuple[bytes, bool] | None:
    """The payload from offset 0 to ``total`` if the pieces cover it (and whether overlapping pieces
    disagree), else None."""
    parts, pos, conflict = [], 0, False
    for off in sorted(d.pieces):
        piece = d.pieces[off]
        if off > pos:
            return None  # a hole
        if off < pos:  # overlaps what is already there: the bytes first there are kept
            over = piece[:pos - off]
            conflict |= over != b"".join(parts)[off:off + len(over)]
            piece = piece[pos - off:]
        parts.append(piece)
        pos += len(piece)
        if pos >= d.total:
            break
    if pos < d.total:
        return None
    return b"".join(parts)[:d.total], conflict


def _packet(version: int, header: bytes, payload: bytes) -> bytes:
    """The whole datagram: the first fragment's header, not fragmented any more, and all the payload."""
    if version == 4:
        h = bytearray(header)
        h[2:4] = (len(h) + len(payload)).to_bytes(2, "big")
        h[6] = h[6] & 0x40  # keep DF; MF and the offset are gone
        h[7] = 0  # (the header checksum is left as it was: the decoder does not read it)
        return bytes(h) + payload
    h = bytearray(header)  # the fixed header with the fragment header's next header in it
    h[4:6] = (len(h) - 40 + len(payload)).to_bytes(2, "big")
    return bytes(h) + payload


def _v6_fragment(buf: np.ndarray, l3: int, end: int):
    """(identification, offset, more, where the fragmentable part starts, the header to rebuild the
    datagram with: the fixed header and the unfragmentable extension headers, the last of them
    naming what follows the fragment header) of an IPv6 fragment; None if its chain lies."""
    nh = int(buf[l3 + 6])
    p = l3 + 40
    prev = l3 + 6  # where the "next header" byte that names the current header is
    for _ in range(8):
        if p + 8 > end:
            return None
        if nh == 44:
            fo = (int(buf[p + 2]) << 8) | int(buf[p + 3])
            ident = int.from_bytes(bytes(buf[p + 4:p + 8]), "big")
            header = bytearray(buf[l3:p])
            header[prev - l3] = int(buf[p])  # what the fragments carry, named where the fragment header was
            return ident, fo & 0xFFF8, bool(fo & 1), p + 8, bytes(header)
        if nh not in _V6_BEFORE_FRAG:
            return None
        prev = p
        nh, p = int(buf[p]), p + (int(buf[p + 1]) + 1) * 8
    return None


def _merge(rows: np.ndarray, buf: np.ndarray, out: list) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` and the packets of ``out`` decoded, in frame order, over one buffer."""
    if not out:
        return rows, buf
    base = len(buf)
    sizes = np.array([len(p) for p, _ in out], np.int64)
    offs = base + np.concatenate(([0], np.cumsum(sizes)[:-1]))
    whole = np.concatenate([buf, np.frombuffer(b"".join(p for p, _ in out), np.uint8)])
    at = [r for _, r in out]
    frames = np.array([int(r["frame"]) for r in at], np.int64)
    ts = np.array([float(r["ts"]) for r in at], np.float64)
    # datagrams and given-up first fragments alike start at their IP header
    new = decode(whole, frames, ts, offs, sizes.astype(np.int32), np.full(len(out), LINKTYPE_RAW, np.int32))
    merged = np.concatenate([rows, new])
    order = np.argsort(merged["frame"], kind="stable")
    return take(merged, order), whole
