"""Reading pcap and pcapng containers into columnar batches of records.

Written by hand rather than with scapy's PcapReader because this is the hot
path: scapy builds a Python object per packet (about 10^4 packets/s), while a
record walk over a bytes buffer plus numpy gathers reaches 10^5-10^6 packets/s.
scapy stays the dissector of record for payloads (see ``reassembly``) and the
tests check this reader against scapy and tshark.

The file is read in chunks (``CHUNK_BYTES``) into a buffer, so memory does not
grow with the file's size; a gzip-compressed capture is read the same way
through ``gzip``. A record that straddles two chunks is carried over.

Damage is reported, never raised past the first bytes: a record whose length is
impossible stops the walk (nothing after it can be trusted to be aligned), a
truncated last record is counted, and the caller receives ``Warning`` texts with
counts. Only a file whose header is not a capture raises ``InputError``.

The walk from record to record is compiled when ``_walk.pyx`` is built (an
optional extension: see ``setup.py``); the Python walk here gives the same
answers and is used otherwise.
"""

from __future__ import annotations

import gzip
import os
import select
import signal
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import InputError


def _compiled_walk():
    """The compiled record walks (``_walk.pyx``), or None: not built, or ``FORENSICS_PURE_WALK=1``."""
    if os.environ.get("FORENSICS_PURE_WALK", "") not in ("", "0"):
        return None
    try:
        from . import _walk
    except ImportError:
        return None
    return _walk


#: The compiled walks, or None to walk in Python; both give the same batches and
#: statistics (tests/test_walk_compiled.py sets this to compare them).
compiled_walk = _compiled_walk()
#: Why a pcap walk over one chunk stopped (the codes of ``_walk.pcap_offsets``).
WALK_FULL, WALK_MORE, WALK_BAD = 0, 1, 2

#: Bytes read per chunk. Large enough that per-chunk overhead is negligible,
#: small enough that memory stays bounded on multi-gigabyte captures (a batch
#: keeps its chunk alive while it is decoded and reassembled; 32 MB chunks cost
#: 200 MB more peak RSS on the 1M-packet benchmark than 8 MB ones, for no speed).
CHUNK_BYTES = 8 * 1024 * 1024
#: Records per batch handed to the decoder.
BATCH_RECORDS = 200_000
#: The largest snapshot length any capture tool writes (tcpdump/Wireshark use
#: 262144); a record claiming more than this is corruption, not a packet.
MAX_CAPLEN = 262_144
#: pcapng blocks larger than this are treated as corrupt (no legitimate block
#: carries more than one maximal packet plus options).
MAX_BLOCK = MAX_CAPLEN + 65_536
#: The last second of the year 9999: a pcapng timestamp past it (a huge count of
#: ticks, or a coarse if_tsresol) is corruption and cannot even be printed.
MAX_TS = 253_402_300_799.0

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"

LINKTYPE_NAMES = {
    0: "null", 1: "ethernet", 12: "raw", 14: "raw", 101: "raw", 108: "loop",
    113: "linux-sll", 276: "linux-sll2", 228: "ipv4", 229: "ipv6",
    9: "ppp", 50: "ppp-hdlc", 104: "cisco-hdlc", 105: "ieee802.11",
    127: "radiotap", 192: "ppi", 147: "user0", 239: "nflog",
}


def linktype_name(linktype: int) -> str:
    return LINKTYPE_NAMES.get(linktype, f"linktype-{linktype}")


@dataclass(slots=True)
class RawBatch:
    """A batch of records: one buffer, and per record its place and metadata.

    ``buf`` is a numpy uint8 view of the chunk the records live in; ``off`` is
    the offset of each record's first captured byte within it.
    """

    buf: np.ndarray
    frame: np.ndarray  # int64, 1-based frame number in the input
    ts: np.ndarray  # float64 seconds since the epoch
    off: np.ndarray  # int64
    caplen: np.ndarray  # int32
    origlen: np.ndarray  # int64: a record may claim up to 4 GB on the wire
    linktype: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(slots=True)
class ReadStats:
    """What the reader saw of one input, for the report's ``inputs`` entry."""

    format: str = ""
    records: int = 0
    bytes_read: int = 0
    linktypes: set[int] = field(default_factory=set)
    skipped_blocks: int = 0
    truncated_records: int = 0
    oversize_records: int = 0
    bad_interface: int = 0
    backwards_ts: int = 0
    bad_ts: int = 0
    stopped_at: int | None = None
    stop_reason: str = ""
    trailing_bytes: int = 0
    interrupted: bool = False  # standard input: reading stopped by Ctrl-C (SIGINT)

    def warnings(self) -> list[str]:
        out = []
        if self.interrupted:
            out.append(f"reading standard input was stopped by an interrupt (Ctrl-C) after {self.records} "
                       f"records; connections still open then were judged as they stood")
        if self.stopped_at is not None:
            out.append(f"stopped reading at byte {self.stopped_at}: {self.stop_reason}; "
                       f"{self.trailing_bytes} bytes after it were skipped")
        elif self.trailing_bytes:
            out.append(f"the last record is truncated: {self.trailing_bytes} bytes at the end were skipped")
        if self.truncated_records:
            out.append(f"{self.truncated_records} records claim more captured bytes than their "
                       f"original length or the snapshot length; their captured bytes were used")
        if self.oversize_records:
            out.append(f"{self.oversize_records} records longer than {MAX_CAPLEN} bytes were skipped")
        if self.bad_interface:
            out.append(f"{self.bad_interface} pcapng packets name an interface that was never "
                       f"described; they were skipped")
        if self.skipped_blocks:
            out.append(f"{self.skipped_blocks} pcapng blocks of unknown or unused types were skipped")
        if self.bad_ts:
            out.append(f"{self.bad_ts} records have a timestamp after the year 9999; the timestamp of the "
                       f"record before them was used")
        if self.backwards_ts:
            out.append(f"{self.backwards_ts} records have a timestamp earlier than the record before them")
        return out


class _ChunkStream:
    """Reads a file in chunks, keeping a carried-over tail between them."""

    def __init__(self, fh: BinaryIO, first: bytes) -> None:
        self._fh = fh
        self.data = first  # current chunk (bytes)
        self.base = 0  # file offset of data[0]
        self.eof = False

    def refill(self, keep_from: int) -> bool:
        """Drop data before ``keep_from`` and append the next chunk. False at EOF."""
        if self.eof:
            return False
        # the kept tail and the next chunk read into one new buffer: no concatenation
        # copy, and half the fresh pages (a new one each time: batches of the chunk
        # before may still be read)
        tail = len(self.data) - keep_from
        buf = bytearray(tail + CHUNK_BYTES)
        buf[:tail] = memoryview(self.data)[keep_from:]
        readinto = getattr(self._fh, "readinto", None)
        if readinto is not None:
            with memoryview(buf) as view:
                got = readinto(view[tail:])
        else:  # the gzip reader has only read
            more = self._fh.read(CHUNK_BYTES)
            got = len(more)
            buf[tail:tail + got] = more
        if not got:
            self.eof = True
            return False
        if got < CHUNK_BYTES:
            del buf[tail + got:]
        self.base += keep_from
        self.data = buf
        return True


class _GzipStream:
    """A gzip reader that keeps what decompressed before damage or a cut.

    ``gzip.GzipFile.read`` raises on a truncated or corrupt stream and loses the
    bytes it had decompressed in that call; a capture cut or damaged in the
    middle of its gzip stream should still give the packets before the damage.
    This feeds the decompressor small pieces (so an error loses at most one
    piece's output), bounds the output per call (no memory blow-up on a
    decompression bomb), follows concatenated members, and records the first
    error in ``error``.
    """

    RAW_CHUNK = 1 << 20
    PIECE = 1 << 14

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = memoryview(b"")  # compressed bytes not yet fed
        self._started = False  # the current member has received input
        self._buf = bytearray()
        self._eof = False
        self._piece = self.PIECE
        self.error: str | None = None

    def read(self, n: int) -> bytes:
        while len(self._buf) < n and not self._eof:
            if self._d.eof:  # a member ended: another may follow
                rest = bytes(self._d.unused_data) + bytes(self._pending)
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._started = False
                self._pending = memoryview(rest)
            if not len(self._pending):
                more = self._raw.read(self.RAW_CHUNK)
                if not more:
                    self._eof = True
                    if self._started:
                        self.error = "the compressed stream ends early"
                    break
                self._pending = memoryview(more)
            if not self._started and not bytes(self._pending[:self.PIECE]).strip(b"\0"):
                self._eof = True  # zero padding after the last member (tape and dd tails)
                break
            self._started = True
            piece = self._pending[:self._piece]
            saved = self._d.copy()
            try:
                out = self._d.decompress(piece, max(n - len(self._buf), 1 << 16))
            except zlib.error as exc:
                if self._piece > 64:  # go back and approach the damage in small steps
                    self._d = saved
                    self._piece = 64
                    continue
                self.error = f"the compressed stream is damaged ({exc})"
                self._eof = True
                break
            used = len(piece) - len(self._d.unconsumed_tail)
            self._pending = self._pending[used:]
            self._buf += out
            if self._d.eof:
                self._started = False
                # unused_data is the rest of this piece: hand it back
                back = len(self._d.unused_data)
                if back:
                    self._pending = memoryview(bytes(self._d.unused_data) + bytes(self._pending))
                    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def close(self) -> None:
        self._raw.close()


#: The path that means standard input: a live capture piped in (``tcpdump -w - | forensics analyze -``).
STDIN = "-"
#: A live stream's chunk is handed on this long after its first byte arrived, full or
#: not: a capture that trickles in still moves (progress, flows finished), while one
#: piped in at full speed fills whole chunks (CHUNK_BYTES) and costs no more per packet.
LIVE_CHUNK_WAIT = 1.0
#: After Ctrl-C, what the capturing program flushes on its own interrupt (tcpdump writes
#: out its buffer when the terminal's SIGINT reaches it too) is still read for this long.
LIVE_STOP_GRACE = 0.5


class _Interrupted(Exception):
    """Raised by the SIGINT handler into a blocking read of standard input."""


class _LiveStream:
    """Standard input, read as it arrives (a pipe from ``tcpdump -U -w -``, or a redirect).

    ``read(n)`` waits for the first bytes, then takes what else arrives within
    ``LIVE_CHUNK_WAIT``, up to ``n``. The first Ctrl-C (SIGINT) ends the input: what
    arrives within ``LIVE_STOP_GRACE`` is still read, then the stream reports its end,
    so that everything read so far is judged and reported; a second Ctrl-C interrupts
    the run. The handler is in place only while the stream is open, in the main thread.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pushed = b""
        self._waiting = False
        self.interrupted = False
        self._stop_at = 0.0
        self._eof = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            except (ValueError, OSError):
                self._previous = None

    def _on_sigint(self, signum, frame) -> None:
        self.interrupted = True
        self._stop_at = time.monotonic() + LIVE_STOP_GRACE
        self._restore()  # a second Ctrl-C is the default one: the run stops
        if self._waiting:
            raise _Interrupted

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def push_back(self, data: bytes) -> None:
        self._pushed = data + self._pushed

    def _ready(self, timeout: float | None) -> bool:
        self._waiting = True
        try:
            return bool(select.select([self._fd], [], [], timeout)[0])
        except _Interrupted:
            return False
        finally:
            self._waiting = False

    def read(self, n: int) -> bytes:
        out = bytearray(self._pushed[:n])
        self._pushed = self._pushed[n:]
        first_at = time.monotonic() if out else None
        while len(out) < n and not self._eof:
            now = time.monotonic()
            if self.interrupted:
                deadline: float | None = self._stop_at
            elif first_at is None:
                deadline = None  # nothing yet: wait for the capture, however long
            else:
                deadline = first_at + LIVE_CHUNK_WAIT
            if deadline is not None and deadline <= now:
                if self.interrupted and not out:
                    self._eof = True
                break
            if not self._ready(None if deadline is None else deadline - now):
                continue  # the wait ran out, or Ctrl-C came: the top of the loop decides
            more = os.read(self._fd, n - len(out))
            if not more:
                self._eof = True
                break
            out += more
            if first_at is None:
                first_at = time.monotonic()
        return bytes(out)

    def close(self) -> None:
        self._restore()


def _open(path: str) -> tuple[BinaryIO, _LiveStream | None, bool]:
    """The stream to read (gzip undone), standard input's live stream or None, and whether gzip."""
    if path == STDIN:
        live = _LiveStream(0)
        try:
            head = live.read(2)
            while 0 < len(head) < 2:
                more = live.read(2 - len(head))
                if not more:
                    break
                head += more
        except OSError as exc:
            live.close()
            raise InputError(f"{path}: cannot read standard input: {exc.strerror or exc}") from None
        live.push_back(head)
        if head == GZIP_MAGIC:
            return _GzipStream(live), live, True  # type: ignore[arg-type,return-value]
        return live, live, False  # type: ignore[return-value]
    try:
        fh: BinaryIO = open(path, "rb")
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        head = fh.read(2)
    except OSError as exc:
        fh.close()
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    fh.seek(0)
    if head == GZIP_MAGIC:
        return _GzipStream(fh), None, True  # type: ignore[return-value]
    return fh, None, False


def read_batches(path: str, stats: ReadStats) -> Iterator[RawBatch]:
    """Yield the records of one capture file as batches; fill ``stats`` as it goes."""
    fh, live, gz = _open(path)
    try:
        try:
            first = fh.read(CHUNK_BYTES)
            while 0 < len(first) < 28:  # a short read: headers must be whole to be judged
                more = fh.read(CHUNK_BYTES)
                if not more:
                    break
                first += more
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"{path}: cannot read{' (gzip)' if gz else ''}: {exc}") from None
        gz_error = getattr(fh, "error", None)
        if len(first) < 4:
            if gz_error:
                raise InputError(f"{path}: cannot read (gzip): {gz_error}")
            raise InputError(f"{path}: not a capture file (only {len(first)} bytes)")
        stream = _ChunkStream(fh, first)
        magic = first[:4]
        if magic in PCAP_MAGICS:
            stats.format = "pcap" + (".gz" if gz else "")
            yield from _walk_pcap(path, stream, stats)
        elif magic == PCAPNG_SHB:
            stats.format = "pcapng" + (".gz" if gz else "")
            yield from _walk_pcapng(path, stream, stats)
        else:
            raise InputError(f"{path}: not a pcap or pcapng capture (magic {magic.hex()})")
        gz_error = getattr(fh, "error", None)
        if gz_error and stats.stopped_at is None:
            stats.stopped_at = stats.bytes_read
            stats.stop_reason = gz_error
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # a compressed stream that breaks in the middle: keep what was read
        stats.stopped_at = stats.bytes_read
        stats.stop_reason = f"the compressed stream is damaged ({exc})"
    finally:
        stats.interrupted = live is not None and live.interrupted
        fh.close()


def zlib_error():
    import zlib

    return zlib.error


def _batch(buf: bytes, frames, ts, offs, caplens, origlens, links) -> RawBatch:
    return RawBatch(
        buf=np.frombuffer(buf, dtype=np.uint8),
        frame=np.asarray(frames, dtype=np.int64),
        ts=np.asarray(ts, dtype=np.float64),
        off=np.asarray(offs, dtype=np.int64),
        caplen=np.asarray(caplens, dtype=np.int32),
        origlen=np.asarray(origlens, dtype=np.int64),
        linktype=np.asarray(links, dtype=np.int32),
    )


def _walk_pcap(path: str, st: _ChunkStream, stats: ReadStats) -> Iterator[RawBatch]:
    data = st.data
    if len(data) < 24:
        raise InputError(f"{path}: truncated pcap header ({len(data)} of 24 bytes)")
    endian, tsres = PCAP_MAGICS[data[:4]]
    _vmaj, _vmin, _tz, _sig, snaplen, linktype = struct.unpack_from(endian + "HHiIII", data, 4)
    linktype &= 0x0FFFFFFF  # upper bits carry FCS length flags
    stats.linktypes.add(linktype)
    limit = snaplen if 0 < snaplen < MAX_CAPLEN else MAX_CAPLEN  # a record longer than it: the header lies
    walk = compiled_walk.pcap_offsets if compiled_walk is not None else _pcap_offsets
    hdr_dtype = np.dtype(endian + "u4")
    pos = 24
    frame = 0
    last_ts = -1.0
    while True:
        data = st.data
        # the walk itself is the only sequential part: each record's length gives the next one
        offs, pos, why, incl, words = walk(data, pos, endian == ">", BATCH_RECORDS, MAX_CAPLEN)
        need_more = why == WALK_MORE
        if why == WALK_BAD:
            stats.stopped_at = st.base + pos
            stats.stop_reason = f"record {frame + len(offs) + 1} claims {incl} captured bytes, which is impossible"
        if len(offs):
            # every record header at once: seconds, fraction, captured and original length
            at = np.asarray(offs, dtype=np.int64)
            if words is None:  # the Python walk: gather the 16 bytes at each offset
                raw = np.frombuffer(data, dtype=np.uint8)
                words = raw[at[:, None] + np.arange(16)].view(hdr_dtype).reshape(len(offs), 4)
            hdr = words.astype(np.int64)
            tss = hdr[:, 0] + hdr[:, 1] * tsres
            caps, origs = hdr[:, 2], hdr[:, 3]
            stats.backwards_ts += int(np.count_nonzero(tss[1:] < tss[:-1])) + int(tss[0] < last_ts)
            last_ts = float(tss[-1])
            stats.truncated_records += int(np.count_nonzero((caps > origs) | (caps > limit)))
            frames = np.arange(frame + 1, frame + 1 + len(offs), dtype=np.int64)
            frame += len(offs)
            stats.records += len(offs)
            yield _batch(data, frames, tss, at + 16, caps, origs, np.full(len(offs), linktype, np.int32))
        if stats.stopped_at is not None:
            stats.trailing_bytes = _remaining(st, pos)
            stats.bytes_read = st.base + pos
            return
        if need_more:
            if not st.refill(pos):
                stats.trailing_bytes = len(st.data) - pos
                stats.bytes_read = st.base + pos
                return
            pos = 0


_U32 = {False: struct.Struct("<I").unpack_from, True: struct.Struct(">I").unpack_from}


def _pcap_offsets(data: bytes, pos: int, big: bool, max_records: int,
                  max_caplen: int) -> tuple[list[int], int, int, int, None]:
    """The Python walk over classic pcap records; same answers as ``_walk.pcap_offsets``.

    It leaves the record headers to be gathered with numpy (None in their place).
    """
    incl_at = _U32[big]
    n = len(data)
    offs: list[int] = []
    while len(offs) < max_records:
        if pos + 16 > n:
            return offs, pos, WALK_MORE, 0, None
        (incl,) = incl_at(data, pos + 8)
        if incl > max_caplen:
            return offs, pos, WALK_BAD, incl, None
        end = pos + 16 + incl
        if end > n:
            return offs, pos, WALK_MORE, 0, None
        offs.append(pos)
        pos = end
    return offs, pos, WALK_FULL, 0, None


def _remaining(st: _ChunkStream, pos: int) -> int:
    rest = len(st.data) - pos
    while st.refill(len(st.data)):
        rest += len(st.data)
        st.data = b""
    return rest


class _Iface:
    __slots__ = ("linktype", "tsres", "snaplen")

    def __init__(self, linktype: int, tsres: float, snaplen: int) -> None:
        self.linktype = linktype
        self.tsres = tsres
        self.snaplen = snaplen


def _idb_tsres(opts: bytes, endian: str) -> float:
    """The if_tsresol option of an Interface Description Block (default 10^-6)."""
    i = 0
    while i + 4 <= len(opts):
        code, length = struct.unpack_from(endian + "HH", opts, i)
        if code == 0:
            break
        if code == 9 and length >= 1 and i + 4 < len(opts):
            v = opts[i + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        i += 4 + ((length + 3) & ~3)
    return 1e-6


#: The smallest total length of each block type with fixed fields we read.
_MIN_BLOCK = {0x0A0D0D0A: 28, 1: 20, 2: 32, 3: 16, 6: 32}
#: Block types Wireshark shows as frames of their own without a packet in them
#: (custom blocks, systemd journal entries): they take a frame number, so the
#: numbers of the packets after them match Wireshark's.
_FRAME_BLOCKS = frozenset({0x00000BAD, 0x40000BAD, 9})
#: Block types that carry nothing for the analysis and are expected.
_QUIET_BLOCKS = frozenset({0x0A0D0D0A, 4, 5, 10})


#: The dtypes of a batch's columns (frame, ts, off, caplen, origlen, linktype), as in ``_batch``.
_COLUMN_DTYPES = (np.int64, np.float64, np.int64, np.int32, np.int64, np.int32)


def _join_runs(runs: list[tuple]) -> tuple[np.ndarray, ...]:
    """One batch's columns from its runs (lists from the Python walk, arrays from the compiled one)."""
    return tuple(np.concatenate([np.asarray(r[i], dtype=dt) for r in runs])
                 for i, dt in enumerate(_COLUMN_DTYPES))


def _walk_pcapng(path: str, st: _ChunkStream, stats: ReadStats) -> Iterator[RawBatch]:
    endian = "<"
    u32 = struct.Struct("<I").unpack_from
    ifaces: list[_Iface] = []
    epbs = compiled_walk.pcapng_epbs if compiled_walk is not None else None
    iface_cols: tuple[np.ndarray, np.ndarray] | None = None  # ifaces as the compiled walk takes them
    pos = 0
    frame = 0
    last_ts = -1.0
    first_block = True
    while True:
        data = st.data
        n = len(data)
        frames: list[int] = []
        tss: list[float] = []
        offs: list[int] = []
        caps: list[int] = []
        origs: list[int] = []
        links: list[int] = []
        cols = (frames, tss, offs, caps, origs, links)
        runs: list[tuple] = []  # the columns in file order, when the compiled walk took part
        done = 0  # records in runs
        need_more = False
        while len(frames) + done < BATCH_RECORDS:
            if pos + 12 > n:
                need_more = True
                break
            btype = u32(data, pos)[0]
            if btype == 6 and epbs is not None and ifaces and not first_block:
                # a run of Enhanced Packet Blocks, compiled; it stops before any block it would
                # not take as is, which the code below handles
                if iface_cols is None:
                    iface_cols = (np.array([i.tsres for i in ifaces], dtype=np.float64),
                                  np.array([i.linktype for i in ifaces], dtype=np.int32))
                pos, frame, last_ts, trunc, bad_ts, back, *run = epbs(
                    data, pos, endian == ">", BATCH_RECORDS - len(frames) - done, *iface_cols,
                    frame, last_ts, MAX_BLOCK, MAX_TS)
                if len(run[0]):
                    stats.truncated_records += trunc
                    stats.bad_ts += bad_ts
                    stats.backwards_ts += back
                    if frames:
                        runs.append(tuple(list(c) for c in cols))
                        for c in cols:
                            c.clear()
                    runs.append(run)
                    done += len(run[0])
                    continue
            if btype == 0x0A0D0D0A:
                bom = data[pos + 8:pos + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    if first_block:
                        raise InputError(f"{path}: pcapng section header with an unknown byte-order magic")
                    stats.stopped_at, stats.stop_reason = st.base + pos, "a section header with an unknown byte-order magic"
                    break
                u32 = struct.Struct(endian + "I").unpack_from
                ifaces = []  # interface ids restart in each section
                iface_cols = None
            elif first_block:
                raise InputError(f"{path}: pcapng file does not start with a section header")
            blen = u32(data, pos + 4)[0]
            if blen < _MIN_BLOCK.get(btype, 12) or blen % 4 or blen > MAX_BLOCK:
                if first_block:
                    raise InputError(f"{path}: pcapng section header has an impossible length {blen}")
                stats.stopped_at = st.base + pos
                stats.stop_reason = f"a block of type 0x{btype:x} claims length {blen}, which is impossible"
                break
            if pos + blen > n:
                need_more = True
                break
            trailer = u32(data, pos + blen - 4)[0]
            if trailer != blen:
                if first_block:
                    raise InputError(f"{path}: pcapng section header lengths disagree ({blen} and {trailer})")
                stats.stopped_at = st.base + pos
                stats.stop_reason = (f"a block of type 0x{btype:x} has two different lengths "
                                     f"({blen} and {trailer})")
                break
            first_block = False
            body = pos + 8
            if btype == 6 or btype == 2:  # Enhanced Packet Block, or the obsolete Packet Block
                # same layout after the interface id (32 bits in an EPB, 16 + drop count in a PB)
                if btype == 6:
                    iid, tsh, tsl, incl, orig = struct.unpack_from(endian + "IIIII", data, body)
                else:
                    iid, _drops, tsh, tsl, incl, orig = struct.unpack_from(endian + "HHIIII", data, body)
                if iid >= len(ifaces):
                    stats.bad_interface += 1
                else:
                    if incl > blen - 32:
                        stats.truncated_records += 1
                        incl = blen - 32  # keep what fits in the block
                    elif incl > orig:
                        stats.truncated_records += 1
                    itf = ifaces[iid]
                    frame += 1
                    t = ((tsh << 32) | tsl) * itf.tsres
                    if t > MAX_TS:
                        stats.bad_ts += 1
                        t = max(last_ts, 0.0)
                    elif t < last_ts:
                        stats.backwards_ts += 1
                    last_ts = t
                    frames.append(frame)
                    tss.append(t)
                    offs.append(body + 20)
                    caps.append(incl)
                    origs.append(orig)
                    links.append(itf.linktype)
            elif btype == 3:  # Simple Packet Block: interface 0, no timestamp
                if not ifaces:
                    stats.bad_interface += 1
                else:
                    orig = u32(data, body)[0]
                    incl = min(orig, blen - 16, ifaces[0].snaplen or MAX_CAPLEN)
                    frame += 1
                    frames.append(frame)
                    tss.append(last_ts if last_ts > 0 else 0.0)
                    offs.append(body + 4)
                    caps.append(incl)
                    origs.append(orig)
                    links.append(ifaces[0].linktype)
            elif btype == 1:  # Interface Description Block
                lt, _res, snap = struct.unpack_from(endian + "HHI", data, body)
                ifaces.append(_Iface(lt, _idb_tsres(data[body + 8:pos + blen - 4], endian), snap))
                iface_cols = None
                stats.linktypes.add(lt)
            elif btype in _FRAME_BLOCKS:
                frame += 1
            elif btype not in _QUIET_BLOCKS:
                # name resolution (4), statistics (5), decryption secrets (10) are fine to skip
                stats.skipped_blocks += 1
            pos += blen
        if runs:
            if frames:
                runs.append(cols)
            cols = _join_runs(runs)
        if len(cols[0]):
            stats.records += len(cols[0])
            yield _batch(data, *cols)
        if stats.stopped_at is not None:
            stats.trailing_bytes = _remaining(st, pos)
            stats.bytes_read = st.base + pos
            return
        if need_more:
            if not st.refill(pos):
                stats.trailing_bytes = len(st.data) - pos
                stats.bytes_read = st.base + pos
                if first_block:
                    raise InputError(f"{path}: truncated pcapng section header")
                return
            pos = 0


def file_size(path: str) -> int:
    """The size of a capture file; 0 for standard input (not known before it ends)."""
    if path == STDIN:
        return 0
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
