# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The JSON pieces of the common attempts' lines, written by compiled code (optional).

An attempt's line is written as pieces (head, verdict piece, mid, tail:
``forensics.report``). Made through dicts (``to_dict``) and orjson, they cost about
6 us a DNS transaction on the lane (``forensics.dnslane``) and 12 us a TCP attempt
(``report.attempt_fragments``): a tenth of an attempt's whole cost. ``dns_pieces``
and ``tcp_pieces`` write the same bytes from the records' values, into one buffer,
in a fifth to a quarter of that.

They write only what they are sure to write as ``report._encode_bytes`` would: text
of printable ASCII without a quote or a backslash (anything else needs escaping),
integers of 64 bits, floats where orjson and ``repr`` write the same digits (zero,
or from 1e-4 to 1e16), None, booleans, and lists of those; and only the common
shapes (no ICMP error, IP fragment or cut payload in a TCP attempt, no DNS over
TCP). For anything else they answer None, and the caller makes the pieces through
dicts. They read the records' fields at their slots' offsets (below), checking each
record's exact type first. ``tests/test_dnslane.py`` and ``tests/test_lines.py`` check
that both ways give the same bytes, attempt by attempt, on every capture they read.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport llrint, llround
from libc.stdlib cimport free, malloc, realloc
from libc.stdio cimport snprintf
from libc.string cimport memcpy, strlen


cdef extern from *:
    """
    #include "structmember.h"
    /* the offset of a slot (a member descriptor holding an object), or -1 */
    static Py_ssize_t forensics_slot_offset(PyObject *d) {
        PyMemberDef *m;
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type))
            return -1;
        m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || m->offset <= 0)
            return -1;
        return m->offset;
    }
    /* the object in the slot at ``off`` of ``o`` (a new reference); AttributeError where it is empty */
    static PyObject *forensics_slot(PyObject *o, Py_ssize_t off) {
        PyObject *v = *(PyObject **)((char *)o + off);
        if (v == NULL) {
            PyErr_SetString(PyExc_AttributeError, "a record's field is not set");
            return NULL;
        }
        Py_INCREF(v);
        return v;
    }
    """
    Py_ssize_t forensics_slot_offset(object d)
    object _slot "forensics_slot"(object o, Py_ssize_t off)


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object, Py_ssize_t *) except NULL
    bint PyUnicode_IS_ASCII(object)
    char *PyOS_double_to_string(double, char, int, int, int *) except NULL
    long long PyLong_AsLongLongAndOverflow(object, int *) except? -1
    void PyMem_Free(void *)
    int Py_DTSF_ADD_DOT_0


#: The floats written here: zero, and those from 1e-4 to 1e16, where orjson and Python
#: write the same shortest digits (outside it, orjson writes ``1e-5`` where Python
#: writes ``1e-05``, and the writers leave the line to the dicts).
cdef double FLOAT_LOW = 1e-4
cdef double FLOAT_HIGH = 1e16


#: The floats written from their thousandths (``_float``): from a thousandth to 2**40, where
#: two doubles are less than a thousandth apart.
cdef double MILLI_LOW = 1e-3
cdef double MILLI_HIGH = 1099511627776.0


# ------------------------------------------------------- the records' slots
# The records are frozen dataclasses with slots: each field is a member descriptor of a fixed
# offset in the object. Read there, a field costs a pointer read instead of a generic attribute
# look-up (28 % of ``tcp_pieces``' instructions when it read them by name). Each writer checks
# the exact type of a record before it reads it so; where an offset cannot be found (a field
# renamed, a record without slots), ``SLOTS`` is False and the writers leave every line to the
# dicts.

from forensics.model import (C2S, Attempt, DnsAnswer, Endpoint, HttpRequest, HttpResponse, Marker, TcpConn,
                             TcpOptions, TlsClientHello, TlsServerReply, flags_text, tls_version_text)

cdef long _C2S = C2S

_missing = []


cdef Py_ssize_t _offset(object cls, str name) except -2:
    cdef Py_ssize_t k = forensics_slot_offset(vars(cls).get(name))
    if k < 0:
        _missing.append(f"{cls.__name__}.{name}")
    return k


cdef Py_ssize_t AN_NAME = _offset(DnsAnswer, "name")
cdef Py_ssize_t AN_RTYPE = _offset(DnsAnswer, "rtype")
cdef Py_ssize_t AN_TTL = _offset(DnsAnswer, "ttl")
cdef Py_ssize_t AN_DATA = _offset(DnsAnswer, "data")
cdef Py_ssize_t MK_DIR = _offset(Marker, "dir")
cdef Py_ssize_t MK_FLAGS = _offset(Marker, "flags")
cdef Py_ssize_t HE_SNI = _offset(TlsClientHello, "sni")
cdef Py_ssize_t HE_VERSIONS = _offset(TlsClientHello, "versions")
cdef Py_ssize_t RE_SERVER_HELLO = _offset(TlsServerReply, "server_hello")
cdef Py_ssize_t RE_VERSION = _offset(TlsServerReply, "version")
cdef Py_ssize_t RE_ALERTS = _offset(TlsServerReply, "alerts")
cdef Py_ssize_t TC_ICMP = _offset(TcpConn, "icmp")
cdef Py_ssize_t TC_PAYLOAD_CUT = _offset(TcpConn, "payload_cut")
cdef Py_ssize_t TC_FRAGMENT_FRAMES = _offset(TcpConn, "fragment_frames")
cdef Py_ssize_t TC_MARKERS = _offset(TcpConn, "markers")
cdef Py_ssize_t TC_DETAIL_CAPPED = _offset(TcpConn, "detail_capped")
cdef Py_ssize_t AT_FRAMES = _offset(Attempt, "frames")
cdef Py_ssize_t AT_HISTORY = _offset(Attempt, "history")
cdef Py_ssize_t AT_TCP = _offset(Attempt, "tcp")
cdef Py_ssize_t AT_DNS = _offset(Attempt, "dns")
cdef Py_ssize_t AT_HELLO = _offset(Attempt, "hello")
cdef Py_ssize_t AT_TLS_REPLY = _offset(Attempt, "tls_reply")
cdef Py_ssize_t AT_REQUEST = _offset(Attempt, "request")
cdef Py_ssize_t AT_RESPONSE = _offset(Attempt, "response")
cdef Py_ssize_t EP_IP = _offset(Endpoint, "ip")
cdef Py_ssize_t EP_PORT = _offset(Endpoint, "port")


cdef struct Buf:
    char *p
    Py_ssize_t n
    Py_ssize_t cap


cdef int _room(Buf *b, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap
    cdef char *p
    if b.n + more <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 1024
    while cap < b.n + more:
        cap *= 2
    p = <char *>realloc(b.p, cap)
    if p == NULL:
        raise MemoryError()
    b.p = p
    b.cap = cap
    return 0


cdef int _raw(Buf *b, const char *s, Py_ssize_t n) except -1:
    _room(b, n)
    memcpy(b.p + b.n, s, n)
    b.n += n
    return 0


cdef int _lit(Buf *b, bytes s) except -1:
    return _raw(b, s, len(s))


cdef inline int _c(Buf *b, const char *s) except -1:
    return _raw(b, s, strlen(s))


cdef int _plain(Buf *b, object s) except -1:
    """Text that JSON writes as it is (printable ASCII, no quote, no backslash), unquoted: 0,
    or 1 where ``s`` is not such text (nothing written)."""
    cdef Py_ssize_t n, i
    cdef const char *c
    cdef unsigned char ch
    if type(s) is not str or not PyUnicode_IS_ASCII(s):
        return 1
    c = PyUnicode_AsUTF8AndSize(s, &n)
    for i in range(n):
        ch = <unsigned char>c[i]
        if ch < 0x20 or ch >= 0x7F or ch == 0x22 or ch == 0x5C:
            return 1
    return _raw(b, c, n)


cdef int _text(Buf *b, object s) except -1:
    """A JSON string: 0, or 1 where ``s`` is not plain text (what was written then does not count)."""
    _c(b, b'"')
    if _plain(b, s):
        return 1
    _c(b, b'"')
    return 0


cdef int _answered(Buf *b, object delay, object rcode) except -1:
    """The DNS lane's summary as a JSON string, ``classify.engine._sentence`` of
    ``outcome.answered_detail(1, delay, rcode)``: 0, or 1 (``delay`` not a float of a
    reasonable size, ``rcode`` not plain text)."""
    cdef double x
    cdef char tmp[48]
    cdef int n
    if type(delay) is not float:
        return 1
    x = <double>delay * 1000.0  # (the product ``delay * 1000`` is, formatted as "%.1f" is: exactly)
    if not (-1e15 < x < 1e15):
        return 1
    n = snprintf(tmp, 48, "%.1f", x)
    if n <= 0 or n >= 48:
        return 1
    _c(b, b'"1 response(s), first after ')
    _raw(b, tmp, n)
    _c(b, b" ms (")
    if _plain(b, rcode):
        return 1
    _c(b, b')."')
    return 0


cdef int _int(Buf *b, object v) except -1:
    """A JSON integer: 0, or 1 where ``v`` is not an int of 64 bits (a bool is not one)."""
    cdef long long x
    cdef unsigned long long u
    cdef char tmp[24]
    cdef int k = 24
    cdef int over = 0
    if type(v) is not int:
        return 1
    x = PyLong_AsLongLongAndOverflow(v, &over)
    if over:
        return 1
    if x < 0:
        u = <unsigned long long>(-(x + 1)) + 1
    else:
        u = <unsigned long long>x
    while True:
        k -= 1
        tmp[k] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            break
    if x < 0:
        k -= 1
        tmp[k] = 45
    return _raw(b, tmp + k, 24 - k)


cdef int _float(Buf *b, object v) except -1:
    """A JSON number from a float: 0, or 1 where orjson and ``repr`` may write it apart."""
    cdef double x
    cdef char *s
    cdef double ax
    cdef long long m
    cdef char tmp[32]
    cdef char ip[24]
    cdef int n, ni, frac
    if type(v) is not float:
        return 1
    x = v
    ax = x if x > 0 else -x
    if x != 0.0 and not (FLOAT_LOW <= ax < FLOAT_HIGH):
        return 1
    if MILLI_LOW <= ax < MILLI_HIGH:
        # most floats of a report are rounded to the millisecond's thousandth (``round_to(x, 3)``):
        # when ``ax`` is the double nearest to m / 1000 (the division is correctly rounded), the
        # digits of m / 1000, trailing zeros dropped, are ``repr``'s shortest: below 2**40 two
        # doubles are less than a thousandth apart, so no shorter decimal gives ``ax`` back
        m = llround(ax * 1000.0)
        if <double>m / 1000.0 == ax:
            frac = <int>(m % 1000)
            m //= 1000
            ni = 0
            while True:  # the integer's digits, last first
                ip[ni] = <char>(48 + m % 10)
                m //= 10
                ni += 1
                if m == 0:
                    break
            n = 0
            if x < 0:
                tmp[n] = 45
                n += 1
            while ni:
                ni -= 1
                tmp[n] = ip[ni]
                n += 1
            tmp[n] = 46
            tmp[n + 1] = <char>(48 + frac // 100)
            n += 2
            if frac % 100:
                tmp[n] = <char>(48 + (frac // 10) % 10)
                n += 1
                if frac % 10:
                    tmp[n] = <char>(48 + frac % 10)
                    n += 1
            return _raw(b, tmp, n)
    s = PyOS_double_to_string(x, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        _raw(b, s, len(s))
    finally:
        PyMem_Free(s)
    return 0


#: The times written here: from 1970 to the end of 9999 (``datetime``'s range, where its
#: ``strftime`` writes four digits of year); ``model.iso_time`` writes the others.
cdef double ISO_HIGH = 253402300800.0


cdef inline void _two(char *p, long v) noexcept:
    p[0] = <char>(48 + v // 10)
    p[1] = <char>(48 + v % 10)


cdef int _iso(Buf *b, object v) except -1:
    """``model.iso_time(v)`` as a JSON string: 0, or 1 where ``v`` is not a float of the years
    1970 to 9999."""
    cdef double x
    cdef long long micros, sec, days, z, era, doe, yoe, y, doy, mp, d, m, us
    cdef long rest
    cdef char t[29]
    cdef int k
    if type(v) is not float:
        return 1
    x = v
    if not (0.0 <= x < ISO_HIGH):
        return 1
    micros = llrint(x * 1000000.0)  # (round-half-even, as ``round`` does)
    sec = micros // 1000000
    us = micros % 1000000
    if sec >= <long long>ISO_HIGH:
        return 1
    days = sec // 86400
    rest = <long>(sec % 86400)
    # the civil date of a day count since 1970-01-01 (H. Hinnant's days_from_civil, inverted)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    t[0] = 34
    _two(t + 1, <long>(y // 100))
    _two(t + 3, <long>(y % 100))
    t[5] = 45
    _two(t + 6, <long>m)
    t[8] = 45
    _two(t + 9, <long>d)
    t[11] = 84
    _two(t + 12, rest // 3600)
    t[14] = 58
    _two(t + 15, (rest // 60) % 60)
    t[17] = 58
    _two(t + 18, rest % 60)
    t[20] = 46
    for k in range(6):
        t[26 - k] = <char>(48 + us % 10)
        us //= 10
    t[27] = 90
    t[28] = 34
    return _raw(b, t, 29)


def iso_text(object v):
    """A time as the writers write it (bytes, quoted), or None where they leave it to
    ``model.iso_time``: for tests."""
    cdef Buf b
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        if _iso(&b, v):
            return None
        return PyBytes_FromStringAndSize(b.p, b.n)
    finally:
        free(b.p)


cdef int _value(Buf *b, object v) except -1:
    """Any of the values written here: None, a bool, an int, a float, text, or a list or
    tuple of them. 0, or 1 where it is not one of them."""
    cdef Py_ssize_t i, n
    t = type(v)
    if v is None:
        _c(b, b"null")
    elif t is bool:
        _c(b, b"true" if v else b"false")
    elif t is int:
        return _int(b, v)
    elif t is str:
        return _text(b, v)
    elif t is float:
        return _float(b, v)
    elif t is list or t is tuple:
        n = len(v)
        _c(b, b"[")
        for i in range(n):
            if i:
                _c(b, b",")
            if _value(b, v[i]):
                return 1
        _c(b, b"]")
    else:
        return 1
    return 0


cdef int _ints(Buf *b, object seq) except -1:
    """A JSON array of integers from a list or tuple (the DNS lane's frames): 0, or 1 where
    ``seq`` holds anything else."""
    cdef Py_ssize_t i, n
    if type(seq) is not list and type(seq) is not tuple:
        return 1
    n = len(seq)
    _c(b, b"[")
    for i in range(n):
        if i:
            _c(b, b",")
        if _int(b, seq[i]):
            return 1
    _c(b, b"]")
    return 0


cdef int _endpoint(Buf *b, object ip, object port) except -1:
    _c(b, b'{"ip":')
    if _text(b, ip):
        return 1
    _c(b, b',"port":')
    if _int(b, port):
        return 1
    _c(b, b"}")
    return 0


cdef int _dns_line(Buf *b, Py_ssize_t *marks, object verdict_head, object rule, object delay,
                   object query_detail, object response_detail, object inp, object client_ip, object client_port,
                   object server_ip, object server_port,
                   object name, object start, object duration_ms, object history, object frames, object frames_total,
                   object txid, object qtype, object query_frames, object query_ttl,
                   object r_input, object r_frame, object r_time, object r_ip, object r_port, object r_ttl,
                   object r_ipid, object r_flags, object r_rcode, bint r_aa, object answers) except -1:
    """The pieces of a DNS lane transaction's line (``dns_pieces``) written one after the other
    into ``b``: 0, with where the verdict piece, mid and tail begin in ``marks``; or 1 where a
    value is not one this writes."""
    cdef Py_ssize_t i
    # head
    _c(b, b'"kind":"dns","transport":"udp","client":')
    if _endpoint(b, client_ip, client_port):
        return 1
    _c(b, b',"server":')
    if _endpoint(b, server_ip, server_port):
        return 1
    _c(b, b',"name":')
    if _text(b, name):
        return 1
    _c(b, b',"start":')
    if _iso(b, start):
        return 1
    _c(b, b',"duration_ms":')
    if _float(b, duration_ms):
        return 1
    marks[0] = b.n
    # the verdict's piece
    _lit(b, verdict_head)
    if _answered(b, delay, r_rcode):
        return 1
    _c(b, b',"evidence":[{"input":')
    if _int(b, inp):
        return 1
    _c(b, b',"packet":')
    if _int(b, query_frames[0] if type(query_frames) is tuple and len(query_frames) else None):
        return 1
    _c(b, b',"signal":"query","detail":')
    if _text(b, query_detail):
        return 1
    _c(b, b'},{"input":')
    if _int(b, r_input):
        return 1
    _c(b, b',"packet":')
    if _int(b, r_frame):
        return 1
    _c(b, b',"signal":"response","detail":')
    if _text(b, response_detail):
        return 1
    _c(b, b'}],"input":')
    if _int(b, inp):
        return 1
    _c(b, b',"rule":')
    _lit(b, rule)
    marks[1] = b.n
    # mid
    _c(b, b'"history":')
    if _text(b, history):
        return 1
    _c(b, b',"frames":')
    if _ints(b, frames):
        return 1
    _c(b, b',"frames_total":')
    if _int(b, frames_total):
        return 1
    marks[2] = b.n
    # tail
    _c(b, b'"dns":{"id":')
    if _int(b, txid):
        return 1
    _c(b, b',"qname":')
    if _text(b, name):
        return 1
    _c(b, b',"qtype":')
    if _text(b, qtype):
        return 1
    _c(b, b',"query_frames":')
    if _ints(b, query_frames):
        return 1
    _c(b, b',"query_ttl":')
    if _int(b, query_ttl):
        return 1
    _c(b, b',"responses":[{"frame":')
    if _int(b, r_frame):
        return 1
    _c(b, b',"time":')
    if _iso(b, r_time):
        return 1
    _c(b, b',"src":')
    if _endpoint(b, r_ip, r_port):
        return 1
    _c(b, b',"ttl":')
    if _int(b, r_ttl):
        return 1
    _c(b, b',"ip_id":')
    if _int(b, r_ipid):
        return 1
    _c(b, b',"flags":')
    if _text(b, r_flags):
        return 1
    _c(b, b',"rcode":')
    if _text(b, r_rcode):
        return 1
    if r_aa:
        _c(b, b',"aa":true,"answers":[')
    else:
        _c(b, b',"aa":false,"answers":[')
    if type(answers) is not tuple:
        return 1
    for i in range(len(answers)):
        a = answers[i]
        if type(a) is not DnsAnswer:
            return 1
        _c(b, b',{"name":' if i else b'{"name":')
        if _text(b, _slot(a, AN_NAME)):
            return 1
        _c(b, b',"type":')
        if _text(b, _slot(a, AN_RTYPE)):
            return 1
        _c(b, b',"ttl":')
        if _int(b, _slot(a, AN_TTL)):
            return 1
        _c(b, b',"data":')
        if _text(b, _slot(a, AN_DATA)):
            return 1
        _c(b, b"}")
    _c(b, b']}],"icmp":[]}')
    return 0


def dns_pieces(bytes verdict_head, bytes rule, object delay, object query_detail, object response_detail,
               object inp, object client_ip, object client_port, object server_ip, object server_port,
               object name, object start, object duration_ms, object history, object frames, object frames_total,
               object txid, object qtype, object query_frames, object query_ttl,
               object r_input, object r_frame, object r_time, object r_ip, object r_port, object r_ttl,
               object r_ipid, object r_flags, object r_rcode, bint r_aa, object answers):
    """(head, verdict piece, mid, tail) of a DNS lane transaction's line, as
    ``DnsLane.take`` would make them through dicts and ``report._encode_bytes``; None
    where a value is not one this writes (the caller then makes them that way).

    ``verdict_head``: the verdict's members before its summary, encoded (with their
    comma); ``rule``: the rule's name, encoded; ``delay``: the response's, in seconds (the
    summary says it); ``start`` and ``r_time``: the query's and
    the response's times (floats, written as ``model.iso_time`` writes them); ``answers``:
    the response's ``DnsAnswer`` records."""
    cdef Buf b
    cdef Py_ssize_t marks[3]
    cdef Py_ssize_t h, p, m
    if not _SLOTS:
        return None
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        if _dns_line(&b, marks, verdict_head, rule, delay, query_detail, response_detail, inp, client_ip,
                     client_port, server_ip, server_port, name, start, duration_ms, history, frames,
                     frames_total, txid, qtype, query_frames, query_ttl, r_input, r_frame, r_time, r_ip,
                     r_port, r_ttl, r_ipid, r_flags, r_rcode, r_aa, answers):
            return None
        h, p, m = marks[0], marks[1], marks[2]
        return (PyBytes_FromStringAndSize(b.p, h), PyBytes_FromStringAndSize(b.p + h, p - h),
                PyBytes_FromStringAndSize(b.p + p, m - p), PyBytes_FromStringAndSize(b.p + m, b.n - m))
    finally:
        free(b.p)


# ---------------------------------------------- the DNS lane's whole spill record
cdef int _le(Buf *b, unsigned long long u, int n) except -1:
    """``u``'s ``n`` low bytes, little-endian."""
    cdef int i
    _room(b, n)
    for i in range(n):
        b.p[b.n + i] = <char>(u & 0xFF)
        u >>= 8
    b.n += n
    return 0


cdef int _q(Buf *b, object v) except -1:
    """An int of 64 bits as 8 bytes: 0, or 1 where ``v`` is not one (a bool is not one)."""
    cdef int over = 0
    cdef long long x
    if type(v) is not int:
        return 1
    x = PyLong_AsLongLongAndOverflow(v, &over)
    if over:
        return 1
    return _le(b, <unsigned long long>x, 8)


cdef int _d(Buf *b, object v) except -1:
    """A float as its 8 bytes (IEEE 754): 0, or 1 where ``v`` is not a float."""
    cdef double x
    cdef unsigned long long u
    if type(v) is not float:
        return 1
    x = v
    memcpy(&u, &x, 8)
    return _le(b, u, 8)


cdef int _s(Buf *b, object s) except -1:
    """ASCII text as its length (4 bytes) and bytes: 0, or 1 where ``s`` is not ASCII text."""
    cdef Py_ssize_t n
    cdef const char *c
    if type(s) is not str or not PyUnicode_IS_ASCII(s):
        return 1
    c = PyUnicode_AsUTF8AndSize(s, &n)
    if n > 0xFFFFFFFF:
        return 1
    _le(b, <unsigned long long>n, 4)
    return _raw(b, c, n)


cdef int _packed(Buf *b, object inp, object client_ip, object client_port, object server_ip,
                 object server_port, object txid, object name, object qtype, object query_frames,
                 object start, object query_ttl, object watched, object r_input, object r_frame, object r_time,
                 object r_ttl, object r_ipid, object flags, object rcode, object answers, object authority,
                 object additional, object qname_matches) except -1:
    """The lane's transaction packed as ``spillrec.unpack_raw`` reads it: 0, or 1 where a value
    is not of the type that packing keeps."""
    cdef Py_ssize_t i, nq, na
    if type(query_frames) is not tuple or type(answers) is not tuple:
        return 1
    if not (watched is None or type(watched) is float) or type(qname_matches) is not bool:
        return 1
    nq = len(query_frames)
    na = len(answers)
    if (_q(b, inp) or _q(b, client_port) or _q(b, server_port) or _q(b, txid) or _q(b, query_ttl)
            or _q(b, r_input) or _q(b, r_frame) or _q(b, r_ttl) or _q(b, r_ipid) or _q(b, flags)
            or _q(b, rcode) or _q(b, authority) or _q(b, additional)):
        return 1
    if _d(b, start) or _d(b, r_time) or _d(b, 0.0 if watched is None else watched):
        return 1
    _le(b, (1 if qname_matches else 0) | (0 if watched is None else 2), 1)
    _le(b, <unsigned long long>nq, 4)
    _le(b, <unsigned long long>na, 4)
    for i in range(nq):
        if _q(b, query_frames[i]):
            return 1
    if _s(b, client_ip) or _s(b, server_ip) or _s(b, name) or _s(b, qtype):
        return 1
    for i in range(na):
        a = answers[i]
        if type(a) is not DnsAnswer:
            return 1
        if _s(b, _slot(a, AN_NAME)) or _s(b, _slot(a, AN_RTYPE)) or _q(b, _slot(a, AN_TTL)) \
                or _s(b, _slot(a, AN_DATA)):
            return 1
    return 0


cdef inline void _put_u32(char *w, Py_ssize_t x) noexcept:
    w[0] = <char>(x & 0xFF)
    w[1] = <char>((x >> 8) & 0xFF)
    w[2] = <char>((x >> 16) & 0xFF)
    w[3] = <char>((x >> 24) & 0xFF)


def dns_record(int code, bytes key, bytes verdict_head, bytes rule, object delay, object query_detail,
               object response_detail, object inp, object client_ip, object client_port, object server_ip,
               object server_port, object name, object start, object duration_ms, object history,
               object frames, object frames_total, object txid, object qtype, object query_frames,
               object query_ttl, object r_input, object r_frame, object r_time, object r_ip, object r_port,
               object r_ttl, object r_ipid, object r_flags, object r_rcode, bint r_aa, object answers,
               object watched, object flags, object rcode, object authority, object additional,
               object qname_matches):
    """The whole spill record of a DNS lane transaction (``spillrec.line_record``, its lane
    ``LANE_DNS_PACKED``): the line's pieces as ``dns_pieces`` writes them, ``key`` (the pickled
    key, or empty), and where there is a key, the transaction packed (``spillrec.unpack_raw``)
    in place of its pickled builtins. None where ``dns_pieces`` would give None or a value
    does not pack (the caller then makes the record its own way). The arguments after
    ``answers``: what the packed transaction holds besides (``flags`` and ``rcode`` as ints)."""
    cdef Buf b
    cdef Py_ssize_t marks[3]
    cdef Py_ssize_t k, f, nk
    if not _SLOTS or not (-32768 <= code < 32768):
        return None
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        _room(&b, LINE_HEAD)
        b.n = LINE_HEAD
        if _dns_line(&b, marks, verdict_head, rule, delay, query_detail, response_detail, inp, client_ip,
                     client_port, server_ip, server_port, name, start, duration_ms, history, frames,
                     frames_total, txid, qtype, query_frames, query_ttl, r_input, r_frame, r_time, r_ip,
                     r_port, r_ttl, r_ipid, r_flags, r_rcode, r_aa, answers):
            return None
        k = b.n
        nk = len(key)
        _raw(&b, PyBytes_AS_STRING(key), nk)
        f = b.n
        if nk and _packed(&b, inp, client_ip, client_port, server_ip, server_port, txid, name, qtype,
                          query_frames, start, query_ttl, watched, r_input, r_frame, r_time, r_ttl, r_ipid,
                          flags, rcode, answers, authority, additional, qname_matches):
            return None
        b.p[0] = <char>LINE_MAGIC
        b.p[1] = <char>LANE_DNS_PACKED
        b.p[2] = <char>(code & 0xFF)
        b.p[3] = <char>((code >> 8) & 0xFF)
        _put_u32(b.p + 4, marks[0] - LINE_HEAD)
        _put_u32(b.p + 8, marks[1] - marks[0])
        _put_u32(b.p + 12, marks[2] - marks[1])
        _put_u32(b.p + 16, k - marks[2])
        _put_u32(b.p + 20, nk)
        _put_u32(b.p + 24, b.n - f)
        return PyBytes_FromStringAndSize(b.p, b.n)
    finally:
        free(b.p)


# ------------------------------------------------------------------ TCP attempts
cdef enum:
    # what a member's field holds (``_Members``), and so how it is written
    M_VALUE = 0  # a value ``_value`` writes
    M_PAIR = 1  # a (client, server) pair of ints: ``{"client":..,"server":..}``
    M_OPTIONS = 2  # ``TcpOptions`` or None
    M_ENDPOINT = 3  # an ``Endpoint``
    M_TIME = 4  # a time, as ``model.iso_time`` writes it


cdef class _Members:
    """Members of a record's JSON written one after the other, each a key (with what comes
    before it) and the field whose value follows it (``M_VALUE``, or the kind given third):
    the field's slot offset found once."""
    cdef tuple keys
    cdef Py_ssize_t offs[16]
    cdef int kinds[16]
    cdef Py_ssize_t n

    def __init__(self, cls, entries):
        if len(entries) > 16:
            raise ValueError("at most 16 members")
        self.n = len(entries)
        self.keys = tuple([e[0] for e in entries])
        for i, e in enumerate(entries):
            self.offs[i] = _offset(cls, e[1])
            self.kinds[i] = e[2] if len(e) > 2 else M_VALUE


cdef int _members(Buf *b, object o, _Members ms) except -1:
    """The members ``ms`` of ``o`` (whose exact type the caller checked): 0, or 1."""
    cdef Py_ssize_t i
    cdef int kind, bad
    for i in range(ms.n):
        _lit(b, <bytes>ms.keys[i])
        v = _slot(o, ms.offs[i])
        kind = ms.kinds[i]
        if kind == M_PAIR:
            bad = _pair(b, v)
        elif kind == M_OPTIONS:
            bad = _options(b, v)
        elif kind == M_ENDPOINT:
            bad = type(v) is not Endpoint or _endpoint(b, _slot(v, EP_IP), _slot(v, EP_PORT))
        elif kind == M_TIME:
            bad = _iso(b, v)
        else:
            bad = _value(b, v)
        if bad:
            return 1
    return 0


cdef _Members OPTIONS = _Members(TcpOptions, [
    (b'{"mss":', "mss"), (b',"wscale":', "wscale"), (b',"sack_ok":', "sack_ok"), (b',"timestamps":', "timestamps"),
    (b',"kinds":', "kinds"), (b',"ece":', "ece"), (b',"cwr":', "cwr"), (b',"ttl":', "ttl"), (b',"frame":', "frame")])
cdef _Members MARKER_HEAD = _Members(Marker, [(b'{"kind":', "kind"), (b',"frame":', "frame")])
cdef _Members MARKER_REST = _Members(Marker, [
    (b',"seq":', "seq"), (b',"ack":', "ack"), (b',"ttl":', "ttl"), (b',"ip_id":', "ipid"), (b',"window":', "win"),
    (b',"payload":', "plen"), (b',"after_client_payload":', "after_payload"),
    (b',"since_payload_ms":', "since_payload_ms")])
cdef _Members HELLO_REST = _Members(TlsClientHello, [
    (b',"size":', "record_size"), (b',"segments":', "segments"), (b',"extensions":', "extensions"),
    (b',"ciphers":', "ciphers")])
cdef _Members REQUEST = _Members(HttpRequest, [
    (b'{"method":', "method"), (b',"host":', "host"), (b',"path":', "path"), (b',"version":', "version"),
    (b',"complete":', "complete")])
cdef _Members RESPONSE = _Members(HttpResponse, [
    (b'{"status":', "status"), (b',"reason":', "reason"), (b',"title":', "title"), (b',"location":', "location"),
    (b',"body_bytes":', "body_bytes"), (b',"server":', "server"), (b',"frame":', "frame")])

cdef _Members CONNECTION = _Members(TcpConn, [
    (b'"tcp":{"packets":', "packets", M_PAIR), (b',"payload_bytes":', "payload_bytes", M_PAIR),
    (b',"direction_from":', "direction_from"), (b',"syn":', "syn", M_OPTIONS), (b',"synack":', "synack", M_OPTIONS),
    (b',"syn_sent":', "syn_count"), (b',"first_payload_sends":', "client_payload_sends"),
    (b',"retransmissions":', "retransmissions", M_PAIR), (b',"conflicting_segments":', "conflicts", M_PAIR)])
cdef _Members ATTEMPT_HEAD = _Members(Attempt, [
    (b'"kind":', "kind"), (b',"transport":', "transport"), (b',"client":', "client", M_ENDPOINT),
    (b',"server":', "server", M_ENDPOINT), (b',"name":', "name"), (b',"start":', "start", M_TIME)])


#: Whether every field the writers read was found at its offset (else they write nothing).
SLOTS = not _missing
cdef bint _SLOTS = SLOTS


cdef int _pair(Buf *b, object two) except -1:
    """``{"client":two[0],"server":two[1]}``"""
    if type(two) is not tuple or len(two) != 2:
        return 1
    _c(b, b'{"client":')
    if _int(b, two[0]):
        return 1
    _c(b, b',"server":')
    if _int(b, two[1]):
        return 1
    _c(b, b"}")
    return 0


cdef int _options(Buf *b, object o) except -1:
    """``TcpOptions.to_dict()``, or null."""
    if o is None:
        _c(b, b"null")
        return 0
    if type(o) is not TcpOptions or _members(b, o, OPTIONS):
        return 1
    _c(b, b"}")
    return 0


cdef int _marker(Buf *b, object m) except -1:
    """``Marker.to_dict()``."""
    if type(m) is not Marker or _members(b, m, MARKER_HEAD):
        return 1
    _c(b, b',"from":"client","flags":' if _slot(m, MK_DIR) == _C2S else b',"from":"server","flags":')
    if _value(b, flags_text(_slot(m, MK_FLAGS))) or _members(b, m, MARKER_REST):
        return 1
    _c(b, b"}")
    return 0


cdef int _hello(Buf *b, object h) except -1:
    """``TlsClientHello.to_dict()``."""
    if type(h) is not TlsClientHello:
        return 1
    _c(b, b'{"sni":')
    if _value(b, _slot(h, HE_SNI)):
        return 1
    _c(b, b',"versions":')
    if _value(b, [tls_version_text(v) for v in _slot(h, HE_VERSIONS)]) or _members(b, h, HELLO_REST):
        return 1
    _c(b, b"}")
    return 0


cdef int _reply(Buf *b, object r) except -1:
    """``TlsServerReply.to_dict()``, or null."""
    cdef Py_ssize_t i
    if r is None:
        _c(b, b"null")
        return 0
    if type(r) is not TlsServerReply:
        return 1
    _c(b, b'{"server_hello":')
    if _value(b, _slot(r, RE_SERVER_HELLO)):
        return 1
    _c(b, b',"version":')
    if _value(b, tls_version_text(_slot(r, RE_VERSION)) if _slot(r, RE_VERSION) else None):
        return 1
    _c(b, b',"alerts":[')
    alerts = _slot(r, RE_ALERTS)
    if type(alerts) is not tuple:
        return 1
    for i in range(len(alerts)):
        al = alerts[i]
        if type(al) is not tuple or len(al) != 2:
            return 1
        _c(b, b',{"level":' if i else b'{"level":')
        if _value(b, al[0]):
            return 1
        _c(b, b',"description":')
        if _value(b, al[1]):
            return 1
        _c(b, b"}")
    _c(b, b"]}")
    return 0


cdef int _request(Buf *b, object q) except -1:
    """``HttpRequest.to_dict()``."""
    if type(q) is not HttpRequest or _members(b, q, REQUEST):
        return 1
    _c(b, b"}")
    return 0


cdef int _response(Buf *b, object r) except -1:
    """``HttpResponse.to_dict()``, or null."""
    if r is None:
        _c(b, b"null")
        return 0
    if type(r) is not HttpResponse or _members(b, r, RESPONSE):
        return 1
    _c(b, b"}")
    return 0


cdef int _tcp_tail(Buf *b, object a, object c) except -1:
    """The members of ``report.attempt_tail`` of a TCP attempt ``a`` whose connection is ``c``."""
    if type(a) is not Attempt or type(c) is not TcpConn:
        return 1
    cdef Py_ssize_t i, n
    if _slot(c, TC_ICMP) or _slot(c, TC_PAYLOAD_CUT) or _slot(c, TC_FRAGMENT_FRAMES) or _slot(a, AT_DNS) is not None:
        return 1  # (rare shapes: the dicts write them)
    if _members(b, c, CONNECTION):
        return 1
    _c(b, b',"resets_and_fins":[')
    markers = _slot(c, TC_MARKERS)
    if type(markers) is not tuple:
        return 1
    n = min(len(markers), 32)  # (as many as ``_tail_into`` lists)
    for i in range(n):
        if i:
            _c(b, b",")
        if _marker(b, markers[i]):
            return 1
    _c(b, b'],"icmp":[],"rows_capped":')
    if _value(b, _slot(c, TC_DETAIL_CAPPED)):
        return 1
    _c(b, b"}")
    hello = _slot(a, AT_HELLO)
    if hello is not None:
        _c(b, b',"tls":{"client_hello":')
        if _hello(b, hello):
            return 1
        _c(b, b',"server":')
        if _reply(b, _slot(a, AT_TLS_REPLY)):
            return 1
        _c(b, b"}")
    request = _slot(a, AT_REQUEST)
    if request is not None:
        _c(b, b',"http":{"request":')
        if _request(b, request):
            return 1
        _c(b, b',"response":')
        if _response(b, _slot(a, AT_RESPONSE)):
            return 1
        _c(b, b"}")
    return 0


def tcp_pieces(object a, object duration_ms, Py_ssize_t max_frames):
    """(head, mid, tail) of a TCP attempt ``a``'s line, as ``report.attempt_fragments``
    makes them through dicts; None where a value or a shape is not one this writes.
    ``duration_ms``: ``a.duration_ms``; ``max_frames``: the frames listed
    (``MAX_FRAMES_LISTED``)."""
    cdef Buf b
    cdef Py_ssize_t h, m
    if not _SLOTS or type(a) is not Attempt:
        return None
    c = _slot(a, AT_TCP)
    if c is None:
        return None
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        if _members(&b, a, ATTEMPT_HEAD):
            return None
        _c(&b, b',"duration_ms":')
        if _value(&b, duration_ms):
            return None
        h = b.n
        _c(&b, b'"history":')
        if _value(&b, _slot(a, AT_HISTORY)):
            return None
        frames = _slot(a, AT_FRAMES)
        if type(frames) is not tuple:
            return None
        _c(&b, b',"frames":')
        if _value(&b, frames[:max_frames]):
            return None
        _c(&b, b',"frames_total":')
        if _value(&b, len(frames)):
            return None
        m = b.n
        if _tcp_tail(&b, a, c):
            return None
        return (PyBytes_FromStringAndSize(b.p, h), PyBytes_FromStringAndSize(b.p + h, m - h),
                PyBytes_FromStringAndSize(b.p + m, b.n - m))
    finally:
        free(b.p)


def float_text(object v):
    """A float as the writers write it (bytes), or None where they leave it to the encoder: for tests."""
    cdef Buf b
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        if _float(&b, v):
            return None
        return PyBytes_FromStringAndSize(b.p, b.n)
    finally:
        free(b.p)


# ------------------------------------------------------------ stage 2's lines
# A line record (``pipeline.line_record``): this header, little-endian: a first byte, the DNS
# lane's flag, the verdict's code (int16), and six lengths (uint32): head, verdict piece, mid,
# tail, pickled key, pickled facts. ``pipeline`` takes ``spilled_lines`` only where its own
# header is this one.
LINE_FORMAT = "<BBhIIIIII"
LINE_MAGIC = 0x4C
#: the lane byte of a DNS lane record whose facts are its transaction packed (``dns_record``),
#: and the fixed part of that packing (``spillrec.PACKED_HEAD``)
LANE_DNS_PACKED = 2
PACKED_FORMAT = "<13q3dBII"
cdef Py_ssize_t LINE_HEAD = 28


cdef inline Py_ssize_t _u32(const unsigned char *p) noexcept:
    return <Py_ssize_t>(p[0] | (p[1] << 8) | (p[2] << 16) | (<unsigned int>p[3] << 24))


cdef inline int _digits(long long x) noexcept:
    """The characters of ``x`` written in decimal (``x`` >= 0)."""
    cdef int d = 1
    while x >= 10:
        x //= 10
        d += 1
    return d


cdef char *_put_ll(char *w, long long x, int d) noexcept:
    """``x`` (>= 0, ``d`` digits) written at ``w``; where it ends."""
    cdef int i
    for i in range(d - 1, -1, -1):
        w[i] = <char>(48 + x % 10)
        x //= 10
    return w + d


cdef inline char *_put(char *w, const char *s, Py_ssize_t n) noexcept:
    memcpy(w, s, n)
    return w + n


def spilled_lines(list bufs, list ats, list lens, list inputs, list positions, list ranks,
                  short[::1] codes, object stands, object loads):
    """``pipeline._spilled_lines``, the same list in compiled code: the lines of a block's line
    records whose verdict stands (runs of them joined, as bytes), and the places (ints) of
    the records whose line the caller makes. A first pass asks ``stands`` (in the records'
    order) and measures each line; a second writes each run into a bytes of its size."""
    cdef Py_ssize_t n = len(bufs), k, j, at, ln, nh, npc, nm, nt, nk, nf, run
    cdef const unsigned char *p
    cdef const char *c
    cdef char *w
    cdef long long pos, rank
    cdef int dp, dr
    cdef Py_ssize_t *size
    if len(ats) != n or len(lens) != n or len(inputs) != n or len(positions) != n or len(ranks) != n \
            or codes.shape[0] < n:
        raise ValueError("spilled_lines: the block's lists differ in length")
    size = <Py_ssize_t *>malloc((n + 1) * sizeof(Py_ssize_t))
    if size == NULL:
        raise MemoryError()
    try:
        for k in range(n):  # each line's size, -1 where the caller makes it
            size[k] = -1
            buf = bufs[k]
            at = ats[k]
            ln = lens[k]
            if type(buf) is not bytes:
                raise TypeError("spilled_lines: a range is not bytes")
            if at < 0 or ln < 0 or at + ln > PyBytes_GET_SIZE(buf):
                raise ValueError("spilled_lines: a record lies outside its range")
            p = <const unsigned char *>PyBytes_AS_STRING(buf) + at
            if ln < LINE_HEAD or p[0] != LINE_MAGIC:
                continue
            nh = _u32(p + 4)
            npc = _u32(p + 8)
            nm = _u32(p + 12)
            nt = _u32(p + 16)
            nk = _u32(p + 20)
            nf = _u32(p + 24)
            if LINE_HEAD + nh + npc + nm + nt + nk + nf != ln:
                continue
            pos = positions[k]
            rank = ranks[k]
            if pos < 0:
                raise ValueError("spilled_lines: a negative position")
            if nk and not stands(inputs[k], loads(PyBytes_FromStringAndSize(
                    <const char *>p + LINE_HEAD + nh + npc + nm + nt, nk))):
                continue
            # {"id":"a<pos+1>",<head>,<piece>,<mid>[,"stream":<rank>][,<tail>]}\n  (report.line_of)
            size[k] = (8 + _digits(pos + 1) + 2 + nh + 1 + npc + 1 + nm + (10 + _digits(rank) if rank >= 0 else 0)
                       + (1 + nt if nt else 0) + 2)
        out = []
        k = 0
        while k < n:
            if size[k] < 0:
                out.append(k)
                k += 1
                continue
            run = 0
            j = k
            while j < n and size[j] >= 0:
                run += size[j]
                j += 1
            seg = PyBytes_FromStringAndSize(NULL, run)
            w = PyBytes_AS_STRING(seg)
            while k < j:
                p = <const unsigned char *>PyBytes_AS_STRING(bufs[k]) + <Py_ssize_t>ats[k]
                c = <const char *>p + LINE_HEAD
                nh = _u32(p + 4)
                npc = _u32(p + 8)
                nm = _u32(p + 12)
                nt = _u32(p + 16)
                pos = positions[k]
                rank = ranks[k]
                w = _put(w, b'{"id":"a', 8)
                w = _put_ll(w, pos + 1, _digits(pos + 1))
                w = _put(w, b'",', 2)
                w = _put(w, c, nh)
                w[0] = 44  # ,
                w = _put(w + 1, c + nh, npc)
                w[0] = 44
                w = _put(w + 1, c + nh + npc, nm)
                if rank >= 0:
                    w = _put(w, b',"stream":', 10)
                    w = _put_ll(w, rank, _digits(rank))
                if nt:
                    w[0] = 44
                    w = _put(w + 1, c + nh + npc + nm, nt)
                w = _put(w, b'}\n', 2)
                codes[k] = <short>(p[2] | (p[3] << 8))
                k += 1
            if w != PyBytes_AS_STRING(seg) + run:
                raise AssertionError("spilled_lines: a line's size was measured wrong")
            out.append(seg)
        return out
    finally:
        free(size)
