# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The sequential part of the capture record walks, compiled (optional).

Each record's length gives the position of the next one, so the walk over a
chunk cannot be vectorised; in Python it costs about a microsecond and a half a
record, the largest single cost of reading a capture. ``pcapio`` uses these
functions when this module is built and ``FORENSICS_PURE_WALK`` is not set, and
its own Python loops otherwise: the answers are the same (batches, frame
numbers, statistics), which ``tests/test_walk_compiled.py`` checks.

These functions only walk and read the fixed header fields; every decision
about damage (what to warn, when to raise) stays in ``pcapio``: they stop, and
say why, where the Python code must take over. Two more byte walks live here for
the same reason: ``route``, which gives each record its part for ``-j N``, and
``merge_lines``, which copies the parts' lines into the report in order
(``forensics.report.AttemptStore``, whose Python lines give the same bytes).
And ``decode_rows``: ``decode.decode``'s columnar header decoding, a record at a
time instead of a numpy pass per field (the same rows, byte for byte:
tests/test_decode_compiled.py).
"""

import numpy as np

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy

#: Why ``pcap_offsets`` stopped: the batch is full, the chunk ends inside the
#: next record (or its header), or the next record claims an impossible length.
cdef enum:
    FULL = 0
    MORE = 1
    BAD = 2
WALK_FULL, WALK_MORE, WALK_BAD = FULL, MORE, BAD

#: The smallest pcap record (its header) and the smallest Enhanced Packet Block
#: (block header, the five fixed fields, trailer): no chunk holds more records
#: than its length divided by these, which sizes the output arrays.
cdef enum:
    PCAP_RECORD_HEADER = 16
    EPB_MIN = 32


cdef inline uint32_t _u32(const unsigned char[::1] d, Py_ssize_t i, bint big) noexcept nogil:
    if big:
        return ((<uint32_t>d[i] << 24) | (<uint32_t>d[i + 1] << 16)
                | (<uint32_t>d[i + 2] << 8) | <uint32_t>d[i + 3])
    return ((<uint32_t>d[i + 3] << 24) | (<uint32_t>d[i + 2] << 16)
            | (<uint32_t>d[i + 1] << 8) | <uint32_t>d[i])


def pcap_offsets(const unsigned char[::1] data, Py_ssize_t pos, bint big, Py_ssize_t max_records,
                 uint64_t max_caplen):
    """Walk classic pcap records from ``pos``: (offsets, pos after them, why, claimed length, headers).

    ``headers`` holds each record's four header words (seconds, fraction,
    captured and original length) as uint32, read in the file's byte order:
    what ``pcapio`` would otherwise gather with numpy. Stops after ``max_records`` records (``WALK_FULL``), at a record whose
    header or data the chunk does not hold whole (``WALK_MORE``, ``pos`` at that
    record), or at a record claiming more than ``max_caplen`` captured bytes
    (``WALK_BAD``, ``pos`` at it, its claim returned last; 0 otherwise).
    """
    cdef Py_ssize_t n = data.shape[0]
    cdef Py_ssize_t room = (n - pos) // PCAP_RECORD_HEADER if n > pos else 0
    cdef Py_ssize_t cap = min(max_records, room)
    out = np.empty(cap, dtype=np.int64)
    hdr = np.empty((cap, 4), dtype=np.uint32)
    cdef int64_t[::1] o = out
    cdef uint32_t[:, ::1] h = hdr
    cdef Py_ssize_t k = 0
    cdef Py_ssize_t end
    cdef uint32_t incl = 0
    cdef int why = FULL
    with nogil:
        # k < cap always holds when a record is stored: each takes at least 16 bytes
        while k < max_records:
            if pos + PCAP_RECORD_HEADER > n:
                why = MORE
                break
            incl = _u32(data, pos + 8, big)
            if incl > max_caplen:
                why = BAD
                break
            end = pos + PCAP_RECORD_HEADER + incl
            if end > n:
                why = MORE
                break
            o[k] = pos
            h[k, 0] = _u32(data, pos, big)
            h[k, 1] = _u32(data, pos + 4, big)
            h[k, 2] = incl
            h[k, 3] = _u32(data, pos + 12, big)
            k += 1
            pos = end
    return out[:k], pos, why, (incl if why == BAD else 0), hdr[:k]


def pcapng_epbs(const unsigned char[::1] data, Py_ssize_t pos, bint big, Py_ssize_t max_records,
                const double[::1] tsres, const int32_t[::1] links, int64_t frame, double last_ts,
                uint32_t max_block, double max_ts):
    """Walk a run of well-formed Enhanced Packet Blocks from ``pos``.

    ``tsres`` and ``links`` are the section's interfaces (tick length in
    seconds, link type). Stops, without consuming it, at the first block that
    is anything else (another type, a length out of range or disagreeing with
    its trailer, a block the chunk does not hold whole, an unknown interface)
    or after ``max_records`` packets; ``pcapio`` handles that block as it
    would have. Timestamps, frame numbers and the counts of truncated,
    out-of-range and backwards records follow ``pcapio._walk_pcapng`` exactly.

    Returns (pos, frame, last_ts, truncated, bad_ts, backwards, frames, ts,
    offsets, caplens, origlens, linktypes).
    """
    cdef Py_ssize_t n = data.shape[0]
    cdef Py_ssize_t room = (n - pos) // EPB_MIN if n > pos else 0
    cdef Py_ssize_t cap = min(max_records, room)
    cdef Py_ssize_t nif = tsres.shape[0]
    a_frame = np.empty(cap, dtype=np.int64)
    a_ts = np.empty(cap, dtype=np.float64)
    a_off = np.empty(cap, dtype=np.int64)
    a_cap = np.empty(cap, dtype=np.int32)
    a_orig = np.empty(cap, dtype=np.int64)
    a_link = np.empty(cap, dtype=np.int32)
    cdef int64_t[::1] o_frame = a_frame
    cdef double[::1] o_ts = a_ts
    cdef int64_t[::1] o_off = a_off
    cdef int32_t[::1] o_cap = a_cap
    cdef int64_t[::1] o_orig = a_orig
    cdef int32_t[::1] o_link = a_link
    cdef Py_ssize_t k = 0
    cdef uint32_t blen, iid, incl, orig
    cdef uint64_t ticks
    cdef double t
    cdef Py_ssize_t truncated = 0, bad_ts = 0, backwards = 0
    with nogil:
        while k < max_records:
            if pos + 12 > n or _u32(data, pos, big) != 6:
                break
            blen = _u32(data, pos + 4, big)
            if blen < EPB_MIN or blen % 4 or blen > max_block or pos + blen > n:
                break
            if _u32(data, pos + blen - 4, big) != blen:
                break
            iid = _u32(data, pos + 8, big)
            if iid >= nif:
                break
            ticks = (<uint64_t>_u32(data, pos + 12, big) << 32) | _u32(data, pos + 16, big)
            incl = _u32(data, pos + 20, big)
            orig = _u32(data, pos + 24, big)
            if incl > blen - 32:
                truncated += 1
                incl = blen - 32  # keep what fits in the block
            elif incl > orig:
                truncated += 1
            frame += 1
            # a correctly rounded conversion and one product, as Python's int * float
            t = (<double>ticks) * tsres[iid]
            if t > max_ts:
                bad_ts += 1
                t = last_ts if last_ts > 0.0 else 0.0
            elif t < last_ts:
                backwards += 1
            last_ts = t
            o_frame[k] = frame
            o_ts[k] = t
            o_off[k] = pos + 28
            o_cap[k] = <int32_t>incl
            o_orig[k] = orig
            o_link[k] = links[iid]
            k += 1
            pos += blen
    return (pos, frame, last_ts, truncated, bad_ts, backwards,
            a_frame[:k], a_ts[:k], a_off[:k], a_cap[:k], a_orig[:k], a_link[:k])


# ------------------------------------------------------------------ routing
# The partition of a record, for ``-j N``: each part reads every record but
# decodes only its own and the shared ones. The hash, the flow key and the DNS
# client are those of ``forensics.reassembly.engine`` (``_mix``, ``_canonical_keys``,
# ``Reassembler._mine_udp``), which ``tests/test_route.py`` checks record by record.

cdef uint64_t _M1 = 0x9E3779B97F4A7C15ULL
cdef uint64_t _M2 = 0xBF58476D1CE4E5B9ULL


cdef inline uint64_t _mix(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e) noexcept nogil:
    cdef uint64_t h = a * _M1 ^ b * _M2
    h = (h ^ (h >> 29)) * _M1 ^ c * _M2 ^ d
    h = (h ^ (h >> 31)) * _M2 ^ e
    h = (h ^ (h >> 32)) * _M1
    return h ^ (h >> 29)


cdef inline uint32_t _be16(const unsigned char[::1] d, Py_ssize_t i) noexcept nogil:
    return (<uint32_t>d[i] << 8) | d[i + 1]


cdef inline uint64_t _be64(const unsigned char[::1] d, Py_ssize_t i) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(8):
        v = (v << 8) | d[i + k]
    return v


def route(const unsigned char[::1] buf, const int64_t[:] off, const int32_t[:] caplen,
          const int32_t[:] linktype, uint64_t nparts):
    """The part (0 to ``nparts - 1``) each record belongs to, or -1: needed by every part.

    A record gets a part only when ``decode`` would find it a whole TCP or UDP
    packet (status OK) that is no IP fragment, read through Ethernet, Linux cooked
    (SLL, SLL2) or raw IP (the first three with up to two VLAN tags, then maybe a
    PPPoE session header, as ``decode`` unwraps them), IPv6 without extension
    headers. TCP goes by the hash of its connection's canonical key, UDP by its
    DNS client's address and port (the receiver of a response: the QR bit),
    exactly as the reassembler partitions them. Everything else (ICMP errors
    that every part matches against its flows, damaged headers, fragments,
    other encapsulations) is -1, and each part decodes it as before.
    """
    cdef Py_ssize_t n = buf.shape[0]
    cdef Py_ssize_t count = off.shape[0]
    out = np.full(count, -1, dtype=np.int16)
    cdef int16_t[::1] dest = out
    cdef Py_ssize_t i, o, end, l3, l4, ipend, ihl, tot, plen, doff, ulen, cpay
    cdef uint32_t et, ppp, proto, fo, sport, dport, cport
    cdef int32_t lt
    cdef int tags
    cdef uint64_t sh, sl, dh, dl, ah, al, bh, bl, ch, cl
    cdef uint32_t ap, bp
    cdef bint swap
    if nparts < 1:
        raise ValueError("nparts must be at least 1")
    with nogil:
        for i in range(count):
            o = off[i]
            end = o + caplen[i]
            if o < 0 or end > n or caplen[i] < 0:
                continue
            lt = linktype[i]
            # -- link: where the network header starts and its ethertype
            if lt == 1:
                if o + 14 > end:
                    continue
                l3 = o + 14
                et = _be16(buf, o + 12)
            elif lt == 113:
                if o + 16 > end:
                    continue
                l3 = o + 16
                et = _be16(buf, o + 14)
            elif lt == 276:
                if o + 20 > end:
                    continue
                l3 = o + 20
                et = _be16(buf, o)
            elif lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229:
                if o + 1 > end:
                    continue
                l3 = o
                et = 0x0800 if (buf[o] >> 4) == 4 else (0x86DD if (buf[o] >> 4) == 6 else 0)
            else:
                continue
            if lt == 1 or lt == 113 or lt == 276:
                tags = 0
                while (et == 0x8100 or et == 0x88A8 or et == 0x9100) and tags < 2:
                    if l3 + 4 > end:
                        break
                    et = _be16(buf, l3 + 2)
                    l3 += 4
                    tags += 1
                if et == 0x8864:  # a PPPoE session: 6 bytes, then PPP's protocol (IPv4 0x21, IPv6 0x57)
                    if l3 + 8 > end:
                        continue
                    ppp = _be16(buf, l3 + 6)
                    et = 0x0800 if ppp == 0x0021 else (0x86DD if ppp == 0x0057 else 0)
                    l3 += 8
            if l3 >= end:
                continue
            # -- network
            if et == 0x0800 and (buf[l3] >> 4) == 4:
                if l3 + 20 > end:
                    continue
                ihl = (buf[l3] & 0xF) * 4
                tot = _be16(buf, l3 + 2)
                if tot == 0:
                    tot = end - l3
                fo = _be16(buf, l3 + 6)
                if ihl < 20 or tot < ihl or (fo & 0x3FFF) != 0:
                    continue
                proto = buf[l3 + 9]
                sh = 0
                sl = (<uint64_t>0xFFFF << 32) | ((<uint64_t>_be16(buf, l3 + 12) << 16) | _be16(buf, l3 + 14))
                dh = 0
                dl = (<uint64_t>0xFFFF << 32) | ((<uint64_t>_be16(buf, l3 + 16) << 16) | _be16(buf, l3 + 18))
                l4 = l3 + ihl
                ipend = l3 + tot
            elif et == 0x86DD and (buf[l3] >> 4) == 6:
                if l3 + 40 > end:
                    continue
                plen = _be16(buf, l3 + 4)
                if plen == 0:
                    plen = end - l3 - 40
                proto = buf[l3 + 6]
                sh = _be64(buf, l3 + 8)
                sl = _be64(buf, l3 + 16)
                dh = _be64(buf, l3 + 24)
                dl = _be64(buf, l3 + 32)
                l4 = l3 + 40
                ipend = l3 + 40 + plen
            else:
                continue
            if ipend > end:
                ipend = end
            # -- transport
            if proto == 6:
                if l4 + 20 > ipend:
                    continue
                doff = (buf[l4 + 12] >> 4) * 4
                if doff < 20 or l4 + doff > ipend:
                    continue
                sport = _be16(buf, l4)
                dport = _be16(buf, l4 + 2)
                swap = sh > dh or (sh == dh and (sl > dl or (sl == dl and sport > dport)))
                if swap:
                    ah, al, ap, bh, bl, bp = dh, dl, dport, sh, sl, sport
                else:
                    ah, al, ap, bh, bl, bp = sh, sl, sport, dh, dl, dport
                dest[i] = <int16_t>(_mix(ah, al, bh, bl, (<uint64_t>ap << 16) | bp) % nparts)
            elif proto == 17:
                if l4 + 8 > ipend:
                    continue
                sport = _be16(buf, l4)
                dport = _be16(buf, l4 + 2)
                ulen = _be16(buf, l4 + 4)
                cpay = (ipend if ipend < l4 + ulen else l4 + ulen) - l4 - 8
                if cpay >= 3 and (buf[l4 + 10] & 0x80):  # a response: the client receives it
                    ch, cl, cport = dh, dl, dport
                else:
                    ch, cl, cport = sh, sl, sport
                dest[i] = <int16_t>(_mix(ch, cl, 0, 0, cport) % nparts)
    return out


# ------------------------------------------------------------ the report, in step
# ``-j N``'s report is written from the parts' files of lines, the i-th line from
# the part the numbering names (``forensics.report.AttemptStore``). Read line by
# line in Python, each line is an object made and joined: 0.17 s of a 1M-packet
# run's 0.25 s of writing its report, all of it after the workers are done.

def merge_lines(list bufs, int64_t[::1] pos, const int64_t[::1] fill, const int16_t[::1] order,
                Py_ssize_t start, bytes lead=None):
    """The whole lines of ``bufs`` (bytearrays) in ``order`` from its place ``start``: the
    line for ``order[i]`` is the one at ``pos[order[i]]`` in ``bufs[order[i]]`` (whose
    first ``fill`` bytes hold data), and ``pos`` moves past it. Stops at the end of
    ``order`` or at the first line its buffer does not hold whole (no newline before its
    fill): the caller reads more into that buffer and calls again. Gives (the lines as
    one bytes object, the place in ``order`` reached). With ``lead``, each line is written
    after it and without its newline (``lead_lines``)."""
    cdef Py_ssize_t nb = len(bufs)
    cdef Py_ssize_t n = order.shape[0]
    cdef Py_ssize_t i, stop, total = 0, p, k
    cdef Py_ssize_t nl = 0 if lead is None else len(lead) - 1  # what a line grows by
    cdef const char *hit
    cdef const char *ld = NULL if lead is None else PyBytes_AS_STRING(lead)
    cdef char *dst
    if pos.shape[0] != nb or fill.shape[0] != nb:
        raise ValueError("one position and one fill per buffer")
    if start < 0 or start > n:
        raise ValueError("start outside the order")
    for p in range(nb):
        if type(bufs[p]) is not bytearray:
            raise TypeError("the buffers must be bytearrays")
        if not 0 <= pos[p] <= fill[p] <= len(bufs[p]):
            raise ValueError("a buffer's position or fill is outside it")
    for i in range(start, n):
        if order[i] < 0 or order[i] >= nb:
            raise ValueError(f"order names buffer {order[i]} of {nb}")
    cdef const char **base = <const char **>malloc(nb * sizeof(char *))
    cdef Py_ssize_t *cur = <Py_ssize_t *>malloc(nb * sizeof(Py_ssize_t))
    cdef Py_ssize_t *ends = <Py_ssize_t *>malloc((n - start + 1) * sizeof(Py_ssize_t))
    if base == NULL or cur == NULL or ends == NULL:
        free(base)
        free(cur)
        free(ends)
        raise MemoryError()
    try:
        for p in range(nb):
            base[p] = PyByteArray_AS_STRING(bufs[p])
            cur[p] = pos[p]
        stop = n
        for i in range(start, n):  # where each line ends, and how much there is
            p = order[i]
            hit = <const char *>memchr(base[p] + cur[p], 10, fill[p] - cur[p])
            if hit == NULL:
                stop = i
                break
            ends[i - start] = hit - base[p] + 1
            total += ends[i - start] - cur[p] + nl
            cur[p] = ends[i - start]
        out = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(out)
        for p in range(nb):
            cur[p] = pos[p]
        for i in range(start, stop):
            p = order[i]
            k = ends[i - start] - cur[p]
            if ld != NULL:
                memcpy(dst, ld, nl + 1)
                dst += nl + 1
                k -= 1
            memcpy(dst, base[p] + cur[p], k)
            dst += k
            cur[p] = ends[i - start]
        for p in range(nb):
            pos[p] = cur[p]
    finally:
        free(base)
        free(cur)
        free(ends)
    return out, stop


def lead_lines(const unsigned char[::1] buf, Py_ssize_t start, Py_ssize_t end, bytes lead):
    """The lines of ``buf[start:end]`` (each ending in a newline), each written after ``lead``
    and without its newline: ``lead + buf[start:end - 1].replace(b"\\n", lead)`` in one pass,
    as the JSON report puts its attempts' lines one after another."""
    cdef Py_ssize_t nl = len(lead), lines = 0, at, k
    cdef const char *src
    cdef const char *hit
    cdef char *dst
    if not 0 <= start <= end <= buf.shape[0]:
        raise ValueError("start and end outside the buffer")
    if start == end:
        return b""
    src = <const char *>&buf[0]
    if src[end - 1] != 10:
        raise ValueError("the lines do not end in a newline")
    at = start
    while at < end:  # how many lines
        hit = <const char *>memchr(src + at, 10, end - at)
        lines += 1
        at = hit - src + 1
    out = PyBytes_FromStringAndSize(NULL, end - start + lines * (nl - 1))
    dst = PyBytes_AS_STRING(out)
    at = start
    while at < end:
        hit = <const char *>memchr(src + at, 10, end - at)
        k = hit - (src + at)
        memcpy(dst, PyBytes_AS_STRING(lead), nl)
        dst += nl
        memcpy(dst, src + at, k)
        dst += k
        at += k + 1
    return out


# -- decode: the columnar header decoding of ``decode.decode``, one pass per record

#: One row of ``decode.PKT_DTYPE`` (packed, as that dtype is); ``PKT_LAYOUT`` gives
#: its fields' names, offsets and types, which ``decode`` compares with the dtype
#: before it lets this module fill rows.
cdef packed struct Row:
    int64_t frame
    double ts
    int64_t rec
    uint8_t status
    uint8_t ipver
    uint8_t proto
    uint8_t ttl
    int32_t ipid
    uint8_t df
    uint8_t frag
    uint8_t tos
    uint64_t src_hi
    uint64_t src_lo
    uint64_t dst_hi
    uint64_t dst_lo
    int64_t l3
    int64_t l4
    int64_t ipend
    uint16_t sport
    uint16_t dport
    uint32_t seq
    uint32_t ack
    uint16_t flags
    uint16_t win
    uint8_t doff
    int64_t pay
    int32_t plen
    int32_t caplen_pay
    uint8_t itype
    uint8_t icode


cdef Row _ROW
cdef char *_AT = <char *>&_ROW
PKT_LAYOUT = (
    ("frame", <char *>&_ROW.frame - _AT, "<i8"), ("ts", <char *>&_ROW.ts - _AT, "<f8"),
    ("rec", <char *>&_ROW.rec - _AT, "<i8"), ("status", <char *>&_ROW.status - _AT, "|u1"),
    ("ipver", <char *>&_ROW.ipver - _AT, "|u1"), ("proto", <char *>&_ROW.proto - _AT, "|u1"),
    ("ttl", <char *>&_ROW.ttl - _AT, "|u1"), ("ipid", <char *>&_ROW.ipid - _AT, "<i4"),
    ("df", <char *>&_ROW.df - _AT, "|u1"), ("frag", <char *>&_ROW.frag - _AT, "|u1"),
    ("tos", <char *>&_ROW.tos - _AT, "|u1"), ("src_hi", <char *>&_ROW.src_hi - _AT, "<u8"),
    ("src_lo", <char *>&_ROW.src_lo - _AT, "<u8"), ("dst_hi", <char *>&_ROW.dst_hi - _AT, "<u8"),
    ("dst_lo", <char *>&_ROW.dst_lo - _AT, "<u8"), ("l3", <char *>&_ROW.l3 - _AT, "<i8"),
    ("l4", <char *>&_ROW.l4 - _AT, "<i8"), ("ipend", <char *>&_ROW.ipend - _AT, "<i8"),
    ("sport", <char *>&_ROW.sport - _AT, "<u2"), ("dport", <char *>&_ROW.dport - _AT, "<u2"),
    ("seq", <char *>&_ROW.seq - _AT, "<u4"), ("ack", <char *>&_ROW.ack - _AT, "<u4"),
    ("flags", <char *>&_ROW.flags - _AT, "<u2"), ("win", <char *>&_ROW.win - _AT, "<u2"),
    ("doff", <char *>&_ROW.doff - _AT, "|u1"), ("pay", <char *>&_ROW.pay - _AT, "<i8"),
    ("plen", <char *>&_ROW.plen - _AT, "<i4"), ("caplen_pay", <char *>&_ROW.caplen_pay - _AT, "<i4"),
    ("itype", <char *>&_ROW.itype - _AT, "|u1"), ("icode", <char *>&_ROW.icode - _AT, "|u1"),
    ("itemsize", sizeof(Row), ""),
)

# the status codes of ``decode`` (its ST_*), and what its IPv6 walk knows
cdef enum:
    ST_OK = 0
    ST_NOT_IP = 1
    ST_BAD_IP = 2
    ST_BAD_L4 = 3
    ST_LINK = 4
    ST_FRAG = 5
    IPV6_MAX_EXT = 8
DECODE_STATUS = (ST_OK, ST_NOT_IP, ST_BAD_IP, ST_BAD_L4, ST_LINK, ST_FRAG, IPV6_MAX_EXT)

cdef uint64_t _V4_TAG = (<uint64_t>0xFFFF) << 32


cdef inline uint32_t _g8(const unsigned char *b, Py_ssize_t n, int64_t i) noexcept nogil:
    # numpy's take(mode="clip"): an index outside the buffer reads its nearest end
    if n == 0:
        return 0
    if i < 0:
        i = 0
    elif i >= n:
        i = n - 1
    return b[i]


cdef inline uint32_t _g16(const unsigned char *b, Py_ssize_t n, int64_t i) noexcept nogil:
    return (_g8(b, n, i) << 8) | _g8(b, n, i + 1)


cdef inline uint32_t _g32(const unsigned char *b, Py_ssize_t n, int64_t i) noexcept nogil:
    return (_g16(b, n, i) << 16) | _g16(b, n, i + 2)


cdef inline uint64_t _g64(const unsigned char *b, Py_ssize_t n, int64_t i) noexcept nogil:
    return ((<uint64_t>_g32(b, n, i)) << 32) | _g32(b, n, i + 4)


cdef inline bint _v6_ext(uint32_t nh) noexcept nogil:
    return nh == 0 or nh == 43 or nh == 44 or nh == 60 or nh == 51 or nh == 135 or nh == 139 or nh == 140


cdef inline int64_t _min64(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


cdef inline int64_t _max64(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


def decode_rows(const unsigned char[::1] buf, const int64_t[::1] frame, const double[::1] ts,
                const int64_t[::1] off, const int32_t[::1] caplen, const int32_t[::1] linktype,
                origlen, unsigned char[::1] out):
    """Fill ``out`` (the bytes of a zeroed ``PKT_DTYPE`` array as long as ``frame``) as
    ``decode.decode`` does with numpy: the same fields, the same status, the same bytes
    read where a header runs past its record (numpy's clipped gathers), and ``origlen``
    (int64 or None) bounding what an IP header may claim."""
    cdef Py_ssize_t n = frame.shape[0], nb = buf.shape[0], i
    cdef const int64_t[::1] orig
    cdef bint have_orig = origlen is not None
    cdef const unsigned char *b = &buf[0] if nb else NULL
    cdef Row *rows
    cdef Row *r
    cdef int64_t o, end, wire_end, l3, p, e, c, tot, ihl, plen, doff, pay, ulen, length
    cdef uint32_t et, lt, v, be, le, fam, b0, fo, off13, mf, proto, nh, frag_off, k
    cdef int tags, step
    cdef bint good
    if off.shape[0] != n or ts.shape[0] != n or caplen.shape[0] != n or linktype.shape[0] != n:
        raise ValueError("decode_rows: the columns differ in length")
    if out.shape[0] != n * <Py_ssize_t>sizeof(Row):
        raise ValueError("decode_rows: out is not one row per record")
    if have_orig:
        orig = origlen
        if orig.shape[0] != n:
            raise ValueError("decode_rows: the columns differ in length")
    if n == 0:
        return
    rows = <Row *>&out[0]
    with nogil:
        for i in range(n):
            r = &rows[i]
            r.frame = frame[i]
            r.ts = ts[i]
            o = off[i]
            r.rec = o
            end = o + caplen[i]
            wire_end = end
            if have_orig:
                wire_end = _max64(o + orig[i], end)
            # -- link (``_link``): the network header's offset and ethertype
            lt = <uint32_t>linktype[i]
            l3 = -1
            et = 0
            r.status = ST_LINK
            if lt == 1 or lt == 113 or lt == 276:
                if lt == 1:
                    l3, et = o + 14, _g16(b, nb, o + 12)
                elif lt == 113:
                    l3, et = o + 16, _g16(b, nb, o + 14)
                else:
                    l3, et = o + 20, _g16(b, nb, o)
                for tags in range(2):
                    if et == 0x8100 or et == 0x88A8 or et == 0x9100:
                        et = _g16(b, nb, l3 + 2)
                        l3 += 4
                if et == 0x8864:
                    proto = _g16(b, nb, l3 + 6)
                    et = 0x0800 if proto == 0x0021 else (0x86DD if proto == 0x0057 else 0)
                    l3 += 8
                r.status = ST_NOT_IP
            elif lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229:
                v = _g8(b, nb, o) >> 4
                l3 = o
                et = 0x0800 if v == 4 else (0x86DD if v == 6 else 0)
                r.status = ST_NOT_IP
            elif lt == 0 or lt == 108:
                be = _g32(b, nb, o)
                le = _g8(b, nb, o) | (_g8(b, nb, o + 1) << 8) | (_g8(b, nb, o + 2) << 16) | (_g8(b, nb, o + 3) << 24)
                fam = be if (lt == 108 or be < 256) else le
                et = 0x0800 if fam == 2 else (0x86DD if (fam == 24 or fam == 28 or fam == 30 or fam == 10) else 0)
                l3 = o + 4
                r.status = ST_NOT_IP
            if r.status == ST_NOT_IP:
                if l3 < end:
                    if et == 0x8847 or et == 0x8848:
                        r.status = ST_LINK
                else:
                    r.status = ST_BAD_IP
                    et = 0
            else:
                et = 0
            r.l3 = l3
            # -- IP
            b0 = _g8(b, nb, l3) >> 4
            proto = 0
            c = 0
            r.l4 = -1
            if et == 0x0800 and b0 == 4:
                e = end
                ihl = <int64_t>(_g8(b, nb, l3) & 0xF) * 4
                tot = _g16(b, nb, l3 + 2)
                if tot == 0:
                    tot = e - l3
                good = ihl >= 20 and l3 + 20 <= e and tot >= ihl
                fo = _g16(b, nb, l3 + 6)
                r.ttl = _g8(b, nb, l3 + 8)
                r.tos = _g8(b, nb, l3 + 1)
                r.ipid = <int32_t>_g16(b, nb, l3 + 4)
                r.df = (fo >> 14) & 1
                off13 = fo & 0x1FFF
                mf = (fo >> 13) & 1
                r.frag = 2 if off13 > 0 else (1 if mf == 1 else 0)
                proto = _g8(b, nb, l3 + 9)
                r.src_hi = 0
                r.src_lo = _V4_TAG | _g32(b, nb, l3 + 12)
                r.dst_hi = 0
                r.dst_lo = _V4_TAG | _g32(b, nb, l3 + 16)
                r.l4 = l3 + ihl if good else -1
                c = _min64(l3 + tot, wire_end)
                r.ipend = _min64(l3 + tot, e)
                if not good:
                    r.status = ST_BAD_IP
                elif off13 > 0:
                    r.status = ST_FRAG
                else:
                    r.status = ST_OK
                r.ipver = 4
            elif et == 0x86DD and b0 == 6:
                e = end
                good = l3 + 40 <= e
                plen = _g16(b, nb, l3 + 4)
                if plen == 0:
                    plen = e - l3 - 40
                r.ttl = _g8(b, nb, l3 + 7)
                r.tos = ((_g8(b, nb, l3) & 0xF) << 4) | (_g8(b, nb, l3 + 1) >> 4)
                r.ipid = -1
                proto = _g8(b, nb, l3 + 6)
                r.src_hi = _g64(b, nb, l3 + 8)
                r.src_lo = _g64(b, nb, l3 + 16)
                r.dst_hi = _g64(b, nb, l3 + 24)
                r.dst_lo = _g64(b, nb, l3 + 32)
                r.l4 = l3 + 40 if good else -1
                c = _min64(l3 + 40 + plen, wire_end)
                r.ipend = _min64(l3 + 40 + plen, e)
                r.status = ST_OK if good else ST_BAD_IP
                r.ipver = 6
                if good and _v6_ext(proto):
                    # ``_walk_ipv6_ext``: the chain walked, bounded, inside the IP packet
                    p = r.l4
                    nh = proto
                    e = r.ipend
                    step = 0
                    while True:
                        if step == IPV6_MAX_EXT:
                            r.status = ST_BAD_IP
                            break
                        step += 1
                        if not _v6_ext(nh):
                            break
                        if p + 8 > e:
                            r.status = ST_BAD_IP
                            break
                        if nh == 44:
                            frag_off = (<uint32_t>b[p + 2] << 8) | b[p + 3]
                            r.frag = 2 if (frag_off >> 3) else (1 if (frag_off & 1) else 0)
                            nh, p = b[p], p + 8
                            if frag_off >> 3:
                                r.status = ST_FRAG
                                proto = nh
                                r.l4 = p
                                break
                            continue
                        if nh == 51:
                            length = (<int64_t>b[p + 1] + 2) * 4
                        else:
                            length = (<int64_t>b[p + 1] + 1) * 8
                        nh, p = b[p], p + length
                    if r.status == ST_OK:
                        if _v6_ext(nh) or p > e:
                            r.status = ST_BAD_IP
                        else:
                            proto = nh
                            r.l4 = p
            elif et == 0x0800 or et == 0x86DD:
                r.status = ST_BAD_IP
            r.proto = <uint8_t>proto
            if r.status != ST_OK:
                continue
            # -- transport
            p = r.l4
            e = r.ipend
            if proto == 6:
                k = _g8(b, nb, p + 12)
                doff = <int64_t>(k >> 4) * 4
                good = p + 20 <= e and doff >= 20 and p + doff <= e
                r.sport = _g16(b, nb, p)
                r.dport = _g16(b, nb, p + 2)
                r.seq = _g32(b, nb, p + 4)
                r.ack = _g32(b, nb, p + 8)
                r.flags = ((k & 0xF) << 8) | _g8(b, nb, p + 13)
                r.win = _g16(b, nb, p + 14)
                r.doff = <uint8_t>doff
                pay = p + doff
                r.pay = pay
                if good:
                    r.plen = <int32_t>_max64(c - pay, 0)
                    r.caplen_pay = <int32_t>_max64(e - pay, 0)
                else:
                    r.status = ST_BAD_L4
            elif proto == 17:
                good = p + 8 <= e
                r.sport = _g16(b, nb, p)
                r.dport = _g16(b, nb, p + 2)
                r.pay = p + 8
                ulen = _g16(b, nb, p + 4)
                if good:
                    r.plen = <int32_t>_max64(_min64(ulen, c - p) - 8, 0)
                    r.caplen_pay = <int32_t>_max64(_min64(e, p + ulen) - p - 8, 0)
                else:
                    r.status = ST_BAD_L4
            elif (proto == 1 and r.ipver == 4) or (proto == 58 and r.ipver == 6):
                good = p + 8 <= e
                r.itype = _g8(b, nb, p)
                r.icode = _g8(b, nb, p + 1)
                r.pay = p + 8
                if good:
                    r.caplen_pay = <int32_t>_max64(e - p - 8, 0)
                else:
                    r.status = ST_BAD_L4
