# cython: language_level=3, boundscheck=False, wraparound=False
"""The DNS lane's JSON pieces, written by compiled code (optional).

``forensics.dnslane.DnsLane.take`` writes a common DNS transaction's line as four
pieces (head, verdict piece, mid, tail: ``forensics.report``). Made through dicts
(``to_dict``) and orjson, they cost about 6 us a transaction, a tenth of a DNS
attempt's whole cost. ``pieces`` writes the same bytes from the values, into one
buffer, in about a fifth of that.

It writes only what it is sure to write as ``report._encode_bytes`` would: text of
printable ASCII without a quote or a backslash (anything else needs escaping),
integers of 64 bits, floats where orjson and ``repr`` write the same digits (zero,
or from 1e-4 to 1e16). For anything else it answers None, and the lane makes the
pieces the general way. ``tests/test_dnslane.py`` checks that both ways give the
same bytes, transaction by transaction, on every capture it reads.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, strlen


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object, Py_ssize_t *) except NULL
    bint PyUnicode_IS_ASCII(object)
    char *PyOS_double_to_string(double, char, int, int, int *) except NULL
    void PyMem_Free(void *)
    int Py_DTSF_ADD_DOT_0


#: The floats written here: zero, and those from 1e-4 to 1e16, where orjson and Python
#: write the same shortest digits (outside it, orjson writes ``1e-5`` where Python
#: writes ``1e-05``, and ``pieces`` leaves the line to the general encoder).
cdef double FLOAT_LOW = 1e-4
cdef double FLOAT_HIGH = 1e16


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


cdef int _text(Buf *b, object s) except -1:
    """A JSON string: 0, or 1 where ``s`` is not plain text (nothing written that counts)."""
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
    _room(b, n + 2)
    b.p[b.n] = 0x22
    memcpy(b.p + b.n + 1, c, n)
    b.p[b.n + n + 1] = 0x22
    b.n += n + 2
    return 0


cdef int _int(Buf *b, object v) except -1:
    """A JSON integer: 0, or 1 where ``v`` is not an int of 64 bits (a bool is not one)."""
    cdef long long x
    cdef unsigned long long u
    cdef char tmp[24]
    cdef int k = 24
    if type(v) is not int:
        return 1
    try:
        x = v
    except OverflowError:
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
    if type(v) is not float:
        return 1
    x = v
    if x != 0.0 and not (FLOAT_LOW <= (x if x > 0 else -x) < FLOAT_HIGH):
        return 1
    s = PyOS_double_to_string(x, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    try:
        _raw(b, s, len(s))
    finally:
        PyMem_Free(s)
    return 0


cdef int _ints(Buf *b, object seq) except -1:
    """A JSON array of integers from a list or tuple: 0, or 1."""
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


def pieces(bytes verdict_head, bytes rule, object summary, object query_detail, object response_detail,
           object inp, object client_ip, object client_port, object server_ip, object server_port,
           object name, object start, object duration_ms, object history, object frames, object frames_total,
           object txid, object qtype, object query_frames, object query_ttl,
           object r_input, object r_frame, object r_time, object r_ip, object r_port, object r_ttl,
           object r_ipid, object r_flags, object r_rcode, bint r_aa, object answers):
    """(head, verdict piece, mid, tail) of a DNS lane transaction's line, as
    ``DnsLane.take`` would make them through dicts and ``report._encode_bytes``; None
    where a value is not one this writes (the caller then makes them that way).

    ``verdict_head``: the verdict's members before its summary, encoded (with their
    comma); ``rule``: the rule's name, encoded; ``answers``: the response's
    ``DnsAnswer`` records."""
    cdef Buf b
    cdef Py_ssize_t h, p, m, i
    b.p = NULL
    b.n = 0
    b.cap = 0
    try:
        # head
        _c(&b, b'"kind":"dns","transport":"udp","client":')
        if _endpoint(&b, client_ip, client_port):
            return None
        _c(&b, b',"server":')
        if _endpoint(&b, server_ip, server_port):
            return None
        _c(&b, b',"name":')
        if _text(&b, name):
            return None
        _c(&b, b',"start":')
        if _text(&b, start):
            return None
        _c(&b, b',"duration_ms":')
        if _float(&b, duration_ms):
            return None
        h = b.n
        # the verdict's piece
        _lit(&b, verdict_head)
        if _text(&b, summary):
            return None
        _c(&b, b',"evidence":[{"input":')
        if _int(&b, inp):
            return None
        _c(&b, b',"packet":')
        if _int(&b, query_frames[0] if type(query_frames) is tuple and len(query_frames) else None):
            return None
        _c(&b, b',"signal":"query","detail":')
        if _text(&b, query_detail):
            return None
        _c(&b, b'},{"input":')
        if _int(&b, r_input):
            return None
        _c(&b, b',"packet":')
        if _int(&b, r_frame):
            return None
        _c(&b, b',"signal":"response","detail":')
        if _text(&b, response_detail):
            return None
        _c(&b, b'}],"input":')
        if _int(&b, inp):
            return None
        _c(&b, b',"rule":')
        _lit(&b, rule)
        p = b.n
        # mid
        _c(&b, b'"history":')
        if _text(&b, history):
            return None
        _c(&b, b',"frames":')
        if _ints(&b, frames):
            return None
        _c(&b, b',"frames_total":')
        if _int(&b, frames_total):
            return None
        m = b.n
        # tail
        _c(&b, b'"dns":{"id":')
        if _int(&b, txid):
            return None
        _c(&b, b',"qname":')
        if _text(&b, name):
            return None
        _c(&b, b',"qtype":')
        if _text(&b, qtype):
            return None
        _c(&b, b',"query_frames":')
        if _ints(&b, query_frames):
            return None
        _c(&b, b',"query_ttl":')
        if _int(&b, query_ttl):
            return None
        _c(&b, b',"responses":[{"frame":')
        if _int(&b, r_frame):
            return None
        _c(&b, b',"time":')
        if _text(&b, r_time):
            return None
        _c(&b, b',"src":')
        if _endpoint(&b, r_ip, r_port):
            return None
        _c(&b, b',"ttl":')
        if _int(&b, r_ttl):
            return None
        _c(&b, b',"ip_id":')
        if _int(&b, r_ipid):
            return None
        _c(&b, b',"flags":')
        if _text(&b, r_flags):
            return None
        _c(&b, b',"rcode":')
        if _text(&b, r_rcode):
            return None
        if r_aa:
            _c(&b, b',"aa":true,"answers":[')
        else:
            _c(&b, b',"aa":false,"answers":[')
        if type(answers) is not tuple:
            return None
        for i in range(len(answers)):
            a = answers[i]
            _c(&b, b',{"name":' if i else b'{"name":')
            if _text(&b, a.name):
                return None
            _c(&b, b',"type":')
            if _text(&b, a.rtype):
                return None
            _c(&b, b',"ttl":')
            if _int(&b, a.ttl):
                return None
            _c(&b, b',"data":')
            if _text(&b, a.data):
                return None
            _c(&b, b"}")
        _c(&b, b']}],"icmp":[]}')
        return (PyBytes_FromStringAndSize(b.p, h), PyBytes_FromStringAndSize(b.p + h, p - h),
                PyBytes_FromStringAndSize(b.p + p, m - p), PyBytes_FromStringAndSize(b.p + m, b.n - m))
    finally:
        free(b.p)
