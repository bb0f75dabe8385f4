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
say why, where the Python code must take over.
"""

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

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
