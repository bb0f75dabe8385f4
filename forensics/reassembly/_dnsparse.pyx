# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The DNS parser of ``forensics.reassembly.dnswire`` in compiled code (optional).

Every DNS packet of a capture is parsed; ``dnswire.parse`` in Python (compiled as it is,
with ``dnswire.pxd``) costs 1 to 2 us a message, most of it in the objects of its
steps (a name's labels, a tuple a step, the remembered names' keys). This reads the same
fields in one pass over the bytes and makes only the objects it returns. It gives what
``dnswire._parse`` gives, message for message: the same rules for names (compression
pointers followed at most ``MAX_POINTERS`` times, 255 octets at most, obsolete label types
refused), the same answers read, the same texts. Where a name it would return holds a byte
that is not printable ASCII (its text then needs ``dnswire.label_text``'s escapes), it
answers ``dnswire._parse(msg)`` instead. ``tests/test_fuzz.py`` and
``tests/test_dnswire_fast.py`` compare the two.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdio cimport snprintf

cdef extern from "Python.h":
    object PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void *PyUnicode_DATA(object)

# the rules and the helpers, dnswire's own: taken on the first parse (dnswire imports this module
# as it ends, so this one cannot import dnswire as it starts)
cdef bint _bound = False
cdef Py_ssize_t MAX_NAME, MAX_POINTERS, MAX_ANSWERS
cdef long QR
cdef object _Message, _fallback, _ipv6, _qtype_text
cdef dict _QTYPES
cdef str _ROOT = "."


cdef int _bind() except -1:
    global _bound, MAX_NAME, MAX_POINTERS, MAX_ANSWERS, QR, _Message, _fallback, _ipv6, _qtype_text, _QTYPES
    from forensics.reassembly import dnswire

    MAX_NAME, MAX_POINTERS, MAX_ANSWERS, QR = dnswire.MAX_NAME, dnswire.MAX_POINTERS, dnswire.MAX_ANSWERS, dnswire.QR
    _Message, _fallback, _ipv6, _qtype_text = dnswire.DnsMessage, dnswire._parse, dnswire.ipv6_text, dnswire.qtype_text
    _QTYPES = dnswire.QTYPES
    _bound = True
    return 0

#: what ``_name`` answers besides a position: a name that breaks the rules, and one whose
#: text needs escapes (the message goes to Python then)
cdef enum:
    BAD = -1
    ESCAPES = -2
    # a name's text at most: 255 octets of wire form give at most 254 characters
    TEXT_MAX = 512


cdef Py_ssize_t _name(const unsigned char *m, Py_ssize_t n, Py_ssize_t pos, char *text,
                      Py_ssize_t *size) noexcept:
    """Read the name at ``pos``: where it ends in the message (after its first pointer if it has
    one), ``BAD``, or ``ESCAPES``; its text (lower case, labels joined by dots, "." for the root)
    into ``text`` and ``size`` unless ``text`` is NULL."""
    cdef Py_ssize_t total = 0, end = -1, jumps = 0, ln, i, k = 0
    cdef unsigned char c
    while True:
        if pos >= n:
            return BAD
        ln = m[pos]
        if ln == 0:
            pos += 1
            break
        if ln & 0xC0 == 0xC0:
            if pos + 1 >= n or jumps >= MAX_POINTERS:
                return BAD
            if end < 0:
                end = pos + 2
            pos = ((ln & 0x3F) << 8) | m[pos + 1]
            jumps += 1
            continue
        if ln & 0xC0:
            return BAD  # extended label types are obsolete
        pos += 1
        if pos + ln > n:
            return BAD
        total += ln + 1
        if total > MAX_NAME:
            return BAD
        if text != NULL:
            if k:
                text[k] = 46  # .
                k += 1
            for i in range(ln):
                c = m[pos + i]
                if c < 0x20 or c > 0x7E:
                    text = NULL  # escapes: Python writes this name
                    k = -1
                    break
                text[k] = <char>(c + 32 if 65 <= c <= 90 else c)
                k += 1
        pos += ln
    if k < 0:
        return ESCAPES
    if size != NULL:
        size[0] = k
    return end if end >= 0 else pos


cdef inline object _text(const char *text, Py_ssize_t k):
    return PyUnicode_DecodeASCII(text, k, NULL) if k else _ROOT


cdef object _hex(const unsigned char *p, Py_ssize_t k):
    """``bytes.hex()`` of ``k`` bytes at ``p``."""
    cdef Py_ssize_t i
    cdef const char *digits = b"0123456789abcdef"
    out = PyUnicode_New(2 * k, 127)
    cdef char *w = <char *>PyUnicode_DATA(out)
    for i in range(k):
        w[2 * i] = digits[p[i] >> 4]
        w[2 * i + 1] = digits[p[i] & 15]
    return out


def parse(object msg):
    """``dnswire.parse``: the message's ``DnsMessage``, or None when it is not one or its
    structure lies."""
    cdef bytes data = msg if type(msg) is bytes else bytes(msg)
    if not _bound:
        _bind()
    return _parse(<const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), data)


def parse_many(const unsigned char[::1] buf, list starts, list sizes):
    """``[parse(buf[s:s + n]) for s, n in zip(starts, sizes)]``, without a slice or a call each:
    the messages of a batch at their places in its buffer."""
    cdef Py_ssize_t k, count = len(starts), start, size, total = buf.shape[0]
    cdef const unsigned char *base = &buf[0] if total else NULL
    if len(sizes) != count:
        raise ValueError("parse_many: one size per start")
    if not _bound:
        _bind()
    out = [None] * count
    for k in range(count):
        start = starts[k]
        size = sizes[k]
        if start < 0 or size < 0 or start + size > total:
            raise ValueError("parse_many: a message outside the buffer")
        out[k] = _parse(base + start, size, None)
    return out


cdef object _parse(const unsigned char *m, Py_ssize_t n, object data):
    """The parse of the ``n`` bytes at ``m`` (``data``: those bytes as an object, or None)."""
    cdef Py_ssize_t txid, flags, qd, an, ns, ar, pos, qtype = 0, e, k, i, rtype, rdlen, dk
    cdef unsigned long ttl
    cdef char text[TEXT_MAX]
    cdef char rtext[TEXT_MAX]
    cdef char a4[16]
    cdef int w
    if n < 12:
        return None
    txid = (m[0] << 8) | m[1]
    flags = (m[2] << 8) | m[3]
    qd = (m[4] << 8) | m[5]
    an = (m[6] << 8) | m[7]
    ns = (m[8] << 8) | m[9]
    ar = (m[10] << 8) | m[11]
    pos = 12
    qname = ""
    if qd:
        e = _name(m, n, pos, text, &k)
        if e == ESCAPES:
            return _escaped(m, n, data)
        if e < 0 or e + 4 > n:
            return None
        qname = _text(text, k)
        pos = e
        qtype = (m[pos] << 8) | m[pos + 1]
        pos += 4
        for i in range(min(qd, 8) - 1):  # skip further questions
            e = _name(m, n, pos, NULL, NULL)
            if e < 0:
                break
            pos = e + 4
    answers = []
    if flags & QR and qd <= 8:
        for i in range(min(an, MAX_ANSWERS)):
            e = _name(m, n, pos, text, &k)
            if e == ESCAPES:
                return _escaped(m, n, data)
            if e < 0 or e + 10 > n:
                break
            pos = e
            rtype = (m[pos] << 8) | m[pos + 1]
            ttl = (<unsigned long>m[pos + 4] << 24) | (m[pos + 5] << 16) | (m[pos + 6] << 8) | m[pos + 7]
            rdlen = (m[pos + 8] << 8) | m[pos + 9]
            pos += 10
            if pos + rdlen > n:
                break
            if rtype == 1 and rdlen == 4:
                w = snprintf(a4, 16, "%d.%d.%d.%d", m[pos], m[pos + 1], m[pos + 2], m[pos + 3])
                data_text = PyUnicode_DecodeASCII(a4, w, NULL)
            elif rtype == 28 and rdlen == 16:
                data_text = _ipv6(PyBytes_FromStringAndSize(<const char *>m + pos, 16))
            elif rtype == 2 or rtype == 5 or rtype == 12:
                e = _name(m, n, pos, rtext, &dk)
                if e == ESCAPES:
                    return _escaped(m, n, data)
                data_text = _text(rtext, dk) if e >= 0 else _hex(m + pos, rdlen)
            else:
                data_text = _hex(m + pos, rdlen)
            rname = _QTYPES.get(rtype)
            answers.append((_text(text, k), rname if rname is not None else _qtype_text(rtype), ttl, data_text))
            pos += rdlen
    return _Message(txid, flags, qd, an, ns, ar, qname, qtype, answers)


cdef object _escaped(const unsigned char *m, Py_ssize_t n, object data):
    """A message with a name to escape: Python's parse of it."""
    return _fallback(data if data is not None else PyBytes_FromStringAndSize(<const char *>m, n))
