# cython: language_level=3, boundscheck=False, wraparound=False
"""The TCP path's loops over rows in compiled code (optional): a connection's rows scanned where they lie,
as bytes (``tcp.finish_tcp``), and a batch's rows absorbed by their connections (``engine._absorb_fast``).

``TcpState`` keeps a connection's rows as SEG_DTYPE records in bytes. ``finish_tcp`` made a
tuple of thirteen Python values of each (``model.seg_rows_raw``) and scanned those
(``tcp._scan``): 800,000 tuples on the benchmark's 1M file, where most connections go the
TLS lane's way and need no row as a tuple, only the frames and the client's SYNs.
``Scanner.scan`` reads the records in place and gives what ``_scan`` gives, with the frames
of all the rows and the client's SYN rows besides; the rows as tuples are made only if asked
for (``model.SegRows``). The letters of the history come from ``tcp``'s own table, given
to the scanner once, so the rules are written in one place.

``add_pieces`` keeps a batch's payload rows as their connections' pieces (``tcp.add_pieces``:
``TcpState.wants`` and ``add_piece`` for each, 339,000 rows on the 1M file) without the
interpreter's calls per row; ``absorb_groups`` gives each connection of a batch its counts and
rows (``tcp.absorb_groups``: ``TcpState.count`` and ``_keep``), and ``syn_rows`` hands each SYN
row to its connection (``tcp.syn_rows``), from the batch's columns as typed arrays.
``reassemble_usual`` gives ``tcp._reassemble``'s answer for the usual first payloads (in order,
touching: 99 % of them on the benchmark), None for the others, which ``_reassemble`` works out.

``SEG_FORMAT`` is the record layout this code reads (``struct``'s notation); ``tcp`` uses the
scanner only if it is ``model``'s. ``tests/test_segscan.py`` compares each with its Python
twin in ``tcp`` on generated rows and on every connection of real captures.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING
from libc.string cimport memcpy
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t

#: the records read here: SEG_DTYPE's fields, packed, native order
SEG_FORMAT = "=qdBBiBHIIHiBi"
DEF SEG_SIZE = 44
# each field's offset in a record
DEF O_FRAME = 0
DEF O_TS = 8
DEF O_DIR = 16
DEF O_TTL = 17
DEF O_IPID = 18
DEF O_DF = 22
DEF O_FLAGS = 23
DEF O_SEQ = 25
DEF O_ACK = 29
DEF O_WIN = 33
DEF O_PLEN = 35
DEF O_TOS = 39
DEF O_INPUT = 40
DEF NCODES = 512
DEF MAX_LETTERS = 16  # of one row (five at most: the SYN's, F, R, the payload's, W)
DEF MAX_HIST = 1152  # each of 128 letters noted once, or counted and noted at 8 counts at most


cdef inline int64_t _i64(const char *p) noexcept nogil:
    cdef int64_t v
    memcpy(&v, p, 8)
    return v


cdef inline double _f64(const char *p) noexcept nogil:
    cdef double v
    memcpy(&v, p, 8)
    return v


cdef inline int32_t _i32(const char *p) noexcept nogil:
    cdef int32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint32_t _u32(const char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint16_t _u16(const char *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef tuple _row(const char *p):
    """The record at ``p`` as ``struct`` unpacks it with ``SEG_FORMAT``."""
    cdef const unsigned char *u = <const unsigned char *>p
    return (_i64(p + O_FRAME), _f64(p + O_TS), u[O_DIR], u[O_TTL], _i32(p + O_IPID), u[O_DF],
            _u16(p + O_FLAGS), _u32(p + O_SEQ), _u32(p + O_ACK), _u16(p + O_WIN), _i32(p + O_PLEN),
            u[O_TOS], _i32(p + O_INPUT))


cdef class Scanner:
    """``tcp.scan_records`` over a connection's records as bytes. Built once, from ``tcp``'s table
    of each row code's letters, its constants, and the maker of the rows' sequence (``rows_of``)."""

    cdef unsigned char letters[NCODES][MAX_LETTERS]
    cdef int nletters[NCODES]
    cdef bint counted[NCODES]
    cdef bint logged[128]  # the letters counted (T, W) rather than noted once
    cdef long noted[8]
    cdef int nnoted
    cdef long syn, ack, fin_rst, mark, letter_flags, keepalive
    cdef int code_s2c, code_payload, code_rt, code_zero_window
    cdef object rows_of

    def __init__(self, list table, log_letters, noted_at, long syn, long ack, long fin, long rst,
                 long letter_flags, long keepalive, int code_s2c, int code_payload, int code_rt,
                 int code_zero_window, rows_of):
        cdef Py_ssize_t i, j
        if len(table) != NCODES:
            raise ValueError("Scanner: a table of 512 row codes is needed")
        for i in range(NCODES):
            letters, counted = table[i]
            text = "".join(letters).encode("ascii")
            if len(text) > MAX_LETTERS or any(x >= 128 for x in text):
                raise ValueError("Scanner: a row's letters are more than 16, or not ASCII")
            self.nletters[i] = len(text)
            for j in range(len(text)):
                self.letters[i][j] = text[j]
            self.counted[i] = bool(counted)
        for i in range(128):
            self.logged[i] = False
        for ch in log_letters:
            self.logged[ord(ch)] = True
        if len(noted_at) > 8:
            raise ValueError("Scanner: at most 8 counts noted")
        self.nnoted = len(noted_at)
        for i, c in enumerate(noted_at):
            self.noted[i] = c
        if (letter_flags | code_s2c | code_payload | code_rt | code_zero_window) >= NCODES:
            raise ValueError("Scanner: a row code past the table")
        self.syn, self.ack, self.fin_rst = syn, ack, fin | rst
        self.mark = syn | fin | rst
        self.letter_flags, self.keepalive = letter_flags, keepalive
        self.code_s2c, self.code_payload, self.code_rt = code_s2c, code_payload, code_rt
        self.code_zero_window = code_zero_window
        self.rows_of = rows_of

    def scan(self, raw, list base):
        """``(nrt, history, c_start, s_start, first_pay_ts, ends)`` as ``tcp._scan`` gives them for
        the records ``raw`` (bytes or bytearray) and the directions' first sequence numbers
        ``base`` (two, each an int or None), then the frames of all the records (a tuple), the
        client's SYNs (SYN without ACK, the rows as tuples, a tuple) and ``rows_of(raw)`` (the
        rows, made when asked for: ``model.SegRows``): ``tcp.scan_records``."""
        cdef const char *data
        cdef const char *p
        cdef Py_ssize_t size, n, k, j
        cdef long long high[2]
        cdef bint has_high[2]
        cdef long long start[2]
        cdef bint has_start[2]
        cdef long nrt[2]
        cdef long long c_start = 0, s_start = 0, rel, end
        cdef bint has_c = False, has_s = False, has_pay = False
        cdef double first_pay_ts = 0.0
        cdef char hist[MAX_HIST]
        cdef Py_ssize_t nh = 0
        cdef bint seen[128]
        cdef long counts[128]
        cdef bint done[NCODES]
        cdef long f, c
        cdef unsigned int d
        cdef long long seq
        cdef int32_t plen
        cdef Py_ssize_t code
        cdef unsigned char ch
        cdef bint noted
        cdef int i
        if type(raw) is bytearray:
            data = PyByteArray_AS_STRING(raw)
        elif type(raw) is bytes:
            data = PyBytes_AS_STRING(raw)
        else:
            raise TypeError("Scanner.scan: the records must be bytes or a bytearray")
        size = len(raw)
        if size % SEG_SIZE:
            raise ValueError("Scanner.scan: the records' length is not a multiple of a record's")
        if len(base) != 2:
            raise ValueError("Scanner.scan: two first sequence numbers are needed")
        n = size // SEG_SIZE
        for j in range(2):
            has_high[j] = False
            high[j] = 0
            nrt[j] = 0
            b = base[j]
            has_start[j] = b is not None
            start[j] = b if b is not None else 0
        for j in range(128):
            seen[j] = False
            counts[j] = 0
        for j in range(NCODES):
            done[j] = False
        ends = []
        syns = []
        frames = [None] * n
        for k in range(n):
            p = data + k * SEG_SIZE
            frames[k] = _i64(p + O_FRAME)
            f = _u16(p + O_FLAGS)
            d = (<const unsigned char *>p)[O_DIR]
            plen = _i32(p + O_PLEN)
            seq = _u32(p + O_SEQ)
            code = (f & self.letter_flags) | (self.code_s2c if d else 0)
            if d == 0 and (f & (self.syn | self.ack)) == self.syn:
                syns.append(_row(p))
            if f & self.mark:
                if f & self.syn:
                    if d == 0:
                        if not f & self.ack and not has_c:
                            c_start = (seq + 1) & 0xFFFFFFFF
                            has_c = True
                    elif f & self.ack and not has_high[1]:
                        # (``_scan``: the last SYN-ACK before the server's first data)
                        s_start = (seq + 1) & 0xFFFFFFFF
                        has_s = True
                if f & self.fin_rst:
                    ends.append(_row(p))
            if plen > 0:
                if d > 1:
                    raise IndexError("list index out of range")  # (``_scan``'s lists of two)
                code |= self.code_payload
                if not has_pay and d == 0:
                    first_pay_ts = _f64(p + O_TS)
                    has_pay = True
                if not has_start[d]:
                    start[d] = seq - 1
                    has_start[d] = True
                rel = (seq - start[d]) & 0xFFFFFFFF
                if rel >= (1 << 31):
                    rel -= (1 << 32)
                end = rel + plen
                if not has_high[d] or end > high[d]:
                    high[d] = end
                    has_high[d] = True
                elif not (plen <= self.keepalive and end == high[d] and not f & self.mark):
                    code |= self.code_rt
                    nrt[d] += 1
            if _u16(p + O_WIN) == 0:
                code |= self.code_zero_window
            if done[code]:
                continue
            for j in range(self.nletters[code]):
                ch = self.letters[code][j]
                if self.logged[ch]:
                    counts[ch] += 1
                    c = counts[ch]
                    noted = False
                    for i in range(self.nnoted):
                        if self.noted[i] == c:
                            noted = True
                            break
                    if noted and nh < MAX_HIST:
                        hist[nh] = ch
                        nh += 1
                elif not seen[ch]:
                    seen[ch] = True
                    if nh < MAX_HIST:
                        hist[nh] = ch
                        nh += 1
            if not self.counted[code]:
                done[code] = True
        return ([nrt[0], nrt[1]], hist[:nh].decode("ascii"), c_start if has_c else None,
                s_start if has_s else None, first_pay_ts if has_pay else None, ends, tuple(frames),
                tuple(syns), self.rows_of(raw))

    def row(self, raw, Py_ssize_t k):
        """Record ``k`` of ``raw`` as a tuple (``struct``'s, with ``SEG_FORMAT``)."""
        cdef const char *data
        if type(raw) is bytearray:
            data = PyByteArray_AS_STRING(raw)
        elif type(raw) is bytes:
            data = PyBytes_AS_STRING(raw)
        else:
            raise TypeError("Scanner.row: the records must be bytes or a bytearray")
        if k < 0 or (k + 1) * SEG_SIZE > len(raw):
            raise IndexError("Scanner.row: no such record")
        return _row(data + k * SEG_SIZE)


def add_pieces(list states, const long long[::1] groups, const unsigned char[::1] dirs,
               const unsigned int[::1] seqs, const long long[::1] frames, const long long[::1] pays,
               const int[::1] caps, const double[::1] tss, const unsigned char[::1] buf,
               Py_ssize_t client_cap, Py_ssize_t server_cap, Py_ssize_t all_cap, Py_ssize_t max_pieces):
    """``tcp.add_pieces`` in compiled code: each payload row ``k`` of a batch (in capture order),
    of the connection ``states[groups[k]]``, in direction ``dirs[k]``, kept as a piece where
    ``TcpState.wants`` it (``TcpState.add_piece``), its bytes ``buf[pays[k]:pays[k] + caps[k]]``.
    The caps are ``tcp``'s: the client's and the server's first payload, DNS over TCP's, the
    pieces a direction."""
    cdef Py_ssize_t n = groups.shape[0], k, d, at, ln, have
    cdef bint want
    if not (dirs.shape[0] == seqs.shape[0] == frames.shape[0] == pays.shape[0] == caps.shape[0]
            == tss.shape[0] == n):
        raise ValueError("add_pieces: the columns differ in length")
    for k in range(n):
        if not 0 <= groups[k] < len(states):
            raise IndexError("add_pieces: a row of no connection")
        st = states[groups[k]]
        d = dirs[k]
        if d > 1:
            raise IndexError("add_pieces: a direction that is neither")
        pieces = st.pieces
        if pieces is None:
            pieces = [[], []]
            st.pieces = pieces
            st.piece_bytes = [0, 0]
            want = True
        else:
            have = st.piece_bytes[d]
            if st.want_all:
                want = have < all_cap
            else:
                want = have < (client_cap if d == 0 else server_cap) and len(pieces[d]) < max_pieces
        if not want:
            continue
        at = pays[k]
        ln = caps[k]
        if at < 0 or ln < 0:
            raise ValueError("add_pieces: a payload before its batch")
        at = min(at, buf.shape[0])  # (cut at the batch's end, as a slice of it is)
        ln = min(ln, buf.shape[0] - at)
        data = PyBytes_FromStringAndSize(<const char *>&buf[0] + at, ln) if ln else b""
        (<list?>pieces[d]).append((seqs[k], frames[k], data, tss[k]))
        sizes = st.piece_bytes
        sizes[d] = sizes[d] + ln


def absorb_groups(list states, const long long[::1] nc, const long long[::1] sizes, const long long[::1] bc,
                  const long long[::1] bs, const double[::1] last, const long long[::1] gbits,
                  const long long[::1] base_c, const long long[::1] base_s, bytes raw, const long long[::1] at,
                  Py_ssize_t max_detail):
    """``tcp.absorb_groups`` in compiled code: for each group ``g`` of a batch whose connection
    ``states[g]`` is not None, what ``TcpState.count`` counts (``nc[g]`` of ``sizes[g]`` rows
    from the client, ``bc[g]`` and ``bs[g]`` payload bytes each way, the latest time ``last[g]``),
    its close bits, each direction's first sequence number where it has none yet (``base_c``,
    ``base_s``: -1 for none), and its rows ``raw[at[g]:at[g + 1]]`` (``TcpState._keep``; called
    itself where the rows pass ``max_detail``)."""
    cdef Py_ssize_t n = len(states), g, rows, room, a, e
    cdef const char *data = PyBytes_AS_STRING(raw)
    if not (nc.shape[0] == sizes.shape[0] == bc.shape[0] == bs.shape[0] == last.shape[0] == gbits.shape[0]
            == base_c.shape[0] == base_s.shape[0] == n and at.shape[0] == n + 1):
        raise ValueError("absorb_groups: the columns differ in length")
    for g in range(n):
        st = states[g]
        if st is None:
            continue
        rows = sizes[g]
        packets = st.packets
        packets[0] = packets[0] + nc[g]
        packets[1] = packets[1] + (rows - nc[g])
        pbytes = st.pbytes
        pbytes[0] = pbytes[0] + bc[g]
        pbytes[1] = pbytes[1] + bs[g]
        if last[g] > st.last_ts:
            st.last_ts = last[g]
        st.fins = st.fins | gbits[g]
        base = st.base_seq
        if base[0] is None and base_c[g] >= 0:
            base[0] = base_c[g]
        if base[1] is None and base_s[g] >= 0:
            base[1] = base_s[g]
        a = at[g]
        e = at[g + 1]
        if a < 0 or e < a or e > len(raw):
            raise ValueError("absorb_groups: a group's rows outside the records")
        chunk = PyBytes_FromStringAndSize(data + a, e - a)
        room = max_detail - <Py_ssize_t>st.n_detail
        if room >= rows:
            (<list?>st.chunks).append(chunk)
            st.n_detail = st.n_detail + rows
        else:
            st._keep(chunk, rows)


def syn_rows(list states, const long long[::1] groups, const unsigned char[::1] dirs,
             const unsigned short[::1] flags, const long long[::1] l4, const unsigned char[::1] doff,
             const unsigned char[::1] ttl, const int[::1] ipid, const long long[::1] frame, buf):
    """``tcp.syn_rows`` in compiled code: ``TcpState.syn_row`` of each SYN row ``k`` of a batch,
    for the connection ``states[groups[k]]``."""
    cdef Py_ssize_t n = groups.shape[0], k
    if not (dirs.shape[0] == flags.shape[0] == l4.shape[0] == doff.shape[0] == ttl.shape[0] == ipid.shape[0]
            == frame.shape[0] == n):
        raise ValueError("syn_rows: the columns differ in length")
    for k in range(n):
        if not 0 <= groups[k] < len(states):
            raise IndexError("syn_rows: a row of no connection")
        states[groups[k]].syn_row(dirs[k], flags[k], l4[k], doff[k], ttl[k], ipid[k], frame[k], buf)


def reassemble_usual(list pieces, object start, Py_ssize_t cap):
    """``tcp._reassemble(pieces, start, cap)`` where the pieces are the usual first payload: none,
    one segment, or segments in order, each starting where the last one ended, none empty, the
    cap falling in the last one or later. None for any other pieces (``_reassemble`` then works
    them out)."""
    cdef Py_ssize_t n = len(pieces), k, total = 0, ln
    cdef long long s, expect, seq
    cdef tuple p
    if n == 0:
        return b"", (), 0, 0
    for k in range(n):
        q = pieces[k]
        if type(q) is not tuple or len(<tuple>q) != 4:
            return None  # (``_reassemble`` reads it, or tells what is wrong with it)
    p = <tuple>pieces[0]
    s = p[0] if start is None else start
    if n == 1:
        if <long long>p[0] != s:
            return b"", (), 0, 0
        data = p[2]
        if len(data):
            return data[:cap], (p[1],), 1, 0
        return None
    expect = s
    for k in range(n):
        p = <tuple>pieces[k]
        seq = p[0]
        ln = len(p[2])
        if seq != expect or not ln:
            return None
        expect = (expect + ln) & 0xFFFFFFFF
        total += ln
    if total - ln >= cap:  # (the cap falls before the last segment: _reassemble's own way)
        return None
    out = b"".join([(<tuple>q)[2] for q in pieces])
    return out[:cap], tuple([(<tuple>q)[1] for q in pieces]), 1, 0
