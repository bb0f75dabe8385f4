"""The value objects that travel between stages.

Reassembly produces facts (``TcpConn``, ``DnsTransaction``, ``Attempt``); detectors
produce ``Finding``s; the classifier produces one ``Verdict`` per attempt; the
``Report`` pairs them. All are small dataclasses with slots; none holds a scapy
or pyshark object.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from .compiled import slots_module

#: The per-packet record kept for each packet of a TCP connection (up to a cap).
SEG_DTYPE = np.dtype([
    ("frame", np.int64), ("ts", np.float64), ("dir", np.uint8), ("ttl", np.uint8),
    ("ipid", np.int32), ("df", np.uint8), ("flags", np.uint16), ("seq", np.uint32),
    ("ack", np.uint32), ("win", np.uint16), ("plen", np.int32), ("tos", np.uint8),
    ("input", np.int32),
])

#: Positions of SEG_DTYPE's fields in a row of ``segs.tolist()`` (``TcpConn.rows``).
(SEG_FRAME, SEG_TS, SEG_DIR, SEG_TTL, SEG_IPID, SEG_DF, SEG_FLAGS, SEG_SEQ, SEG_ACK, SEG_WIN, SEG_PLEN, SEG_TOS,
 SEG_INPUT) = (SEG_DTYPE.names.index(n) for n in ("frame", "ts", "dir", "ttl", "ipid", "df", "flags", "seq", "ack",
                                                  "win", "plen", "tos", "input"))

_STRUCT_CODES = {("i", 1): "b", ("i", 2): "h", ("i", 4): "i", ("i", 8): "q",
                 ("u", 1): "B", ("u", 2): "H", ("u", 4): "I", ("u", 8): "Q", ("f", 8): "d"}


def struct_of(dtype: np.dtype) -> struct.Struct:
    """A packed structured dtype of integers and float64s as a ``struct`` layout (native order, as
    numpy stores it): a record packed by it is a row of ``dtype``, byte for byte."""
    at, starts = 0, []
    for n in dtype.names:  # the fields in order, each right after the one before: no padding
        starts.append(at)
        at += dtype[n].itemsize
    assert [dtype.fields[n][1] for n in dtype.names] == starts and at == dtype.itemsize
    return struct.Struct("=" + "".join(_STRUCT_CODES[dtype[n].kind, dtype[n].itemsize] for n in dtype.names))


#: SEG_DTYPE as a ``struct`` layout (packed, native order, as numpy stores it).
_SEG_STRUCT = struct_of(SEG_DTYPE)


def seg_rows(segs: np.ndarray) -> list[tuple]:
    """``segs.tolist()``, four times faster: ``tolist`` converts field by field, ``struct`` row by row."""
    return list(_SEG_STRUCT.iter_unpack(segs.tobytes()))


def seg_rows_raw(raw: bytes | bytearray) -> list[tuple]:
    """``seg_rows`` of SEG_DTYPE records that are already bytes (no copy first)."""
    return list(_SEG_STRUCT.iter_unpack(raw))


class SegRows:
    """A connection's rows (``TcpConn.rows``): its SEG_DTYPE records as tuples (``seg_rows_raw``),
    made on first use. Most connections are judged from the frames of their rows and the
    client's SYNs alone, which ``finish_tcp`` reads from the records (``TcpConn.row_frames``,
    ``TcpConn.syn_rows``). A sequence of tuples: iterated, indexed, measured, equal to a list of
    the same rows."""

    __slots__ = ("raw", "_rows")

    def __init__(self, raw: bytes | bytearray, rows: list[tuple] | None = None) -> None:
        self.raw = raw  # the records (``segs`` is a view of them)
        self._rows = rows

    def _list(self) -> list[tuple]:
        rows = self._rows
        if rows is None:
            rows = self._rows = seg_rows_raw(self.raw)
        return rows

    def row(self, k: int) -> tuple:
        """Row ``k`` (from 0) alone, without making the others."""
        if self._rows is not None:
            return self._rows[k]
        if not 0 <= k < len(self):
            raise IndexError("SegRows.row: no such row")
        return _SEG_STRUCT.unpack_from(self.raw, k * _SEG_STRUCT.size)

    def __iter__(self):
        return iter(self._list())

    def __len__(self) -> int:
        return len(self.raw) // _SEG_STRUCT.size

    def __bool__(self) -> bool:
        return len(self.raw) > 0

    def __getitem__(self, k):
        return self._list()[k]

    def __eq__(self, other) -> bool:
        return self._list() == (other._list() if isinstance(other, SegRows) else other)

    __hash__ = None  # (as a list's)

    def __repr__(self) -> str:
        return repr(self._list())

    def __reduce__(self):
        return SegRows, (bytes(self.raw),)


C2S, S2C = 0, 1

#: Frames listed per attempt in the report (the full list stays in the model); also the
#: fragments of a datagram made whole that are handed on (``sources.defrag``).
MAX_FRAMES_LISTED = 64


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int

    def to_dict(self) -> dict:
        return {"ip": self.ip, "port": self.port}

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class FrameRef:
    """One packet of one input: ``frame`` is 1-based, as Wireshark numbers it."""

    input: int
    frame: int


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """What a SYN or SYN-ACK announced."""

    mss: int | None = None
    wscale: int | None = None
    sack_ok: bool = False
    timestamps: bool = False
    kinds: tuple[int, ...] = ()
    ece: bool = False
    cwr: bool = False
    ttl: int = 0
    ipid: int = -1
    frame: int = 0

    def to_dict(self) -> dict:
        return {"mss": self.mss, "wscale": self.wscale, "sack_ok": self.sack_ok,
                "timestamps": self.timestamps, "kinds": list(self.kinds),
                "ece": self.ece, "cwr": self.cwr, "ttl": self.ttl, "frame": self.frame}


@dataclass(frozen=True, slots=True)
class Marker:
    """A RST or FIN, placed relative to the client's first payload."""

    kind: str  # "rst" or "fin"
    frame: int
    input: int
    ts: float
    dir: int  # C2S or S2C
    flags: int
    seq: int
    ack: int
    ttl: int
    ipid: int
    win: int
    plen: int
    after_payload: bool
    since_payload_ms: float | None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "frame": self.frame, "from": "client" if self.dir == C2S else "server",
                "flags": flags_text(self.flags), "seq": self.seq, "ack": self.ack, "ttl": self.ttl,
                "ip_id": self.ipid, "window": self.win, "payload": self.plen,
                "after_client_payload": self.after_payload, "since_payload_ms": self.since_payload_ms}


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP/ICMPv6 error quoting a packet of an attempt."""

    input: int
    frame: int
    ts: float
    router: str
    version: int
    type: int
    code: int
    ttl: int  # the error's own TTL, as received
    mtu: int | None
    q_src: str
    q_dst: str
    q_proto: int
    q_sport: int
    q_dport: int
    q_ttl: int
    q_ipid: int
    q_seq: int | None

    @property
    def admin_prohibited(self) -> bool:
        if self.version == 4:
            return self.type == 3 and self.code in (9, 10, 13)
        return self.type == 1 and self.code == 1

    @property
    def frag_needed(self) -> bool:
        return (self.version == 4 and self.type == 3 and self.code == 4) or (self.version == 6 and self.type == 2)

    @property
    def time_exceeded(self) -> bool:
        return (self.version == 4 and self.type == 11) or (self.version == 6 and self.type == 3)

    @property
    def port_unreachable(self) -> bool:
        return (self.version == 4 and self.type == 3 and self.code == 3) or (self.version == 6 and self.type == 1 and self.code == 4)

    def describe(self) -> str:
        return icmp_text(self.version, self.type, self.code)

    def to_dict(self) -> dict:
        return {"frame": self.frame, "router": self.router, "type": self.type, "code": self.code,
                "what": self.describe(), "ttl": self.ttl, "mtu": self.mtu,
                "quoted": {"src": self.q_src, "dst": self.q_dst, "proto": self.q_proto,
                           "sport": self.q_sport, "dport": self.q_dport, "ttl": self.q_ttl,
                           "ip_id": self.q_ipid, "seq": self.q_seq}}


@dataclass(frozen=True, slots=True)
class TlsClientHello:
    sni: str
    versions: tuple[int, ...]  # offered: supported_versions, else the legacy version
    record_size: int  # bytes of the handshake records carrying the hello
    segments: int  # TCP segments it spanned
    extensions: tuple[int, ...]
    ciphers: int

    def to_dict(self) -> dict:
        return {"sni": self.sni, "versions": [tls_version_text(v) for v in self.versions],
                "size": self.record_size, "segments": self.segments,
                "extensions": list(self.extensions), "ciphers": self.ciphers}


@dataclass(frozen=True, slots=True)
class TlsServerReply:
    server_hello: bool
    version: int | None
    alerts: tuple[tuple[int, int], ...]  # (level, description)

    def to_dict(self) -> dict:
        return {"server_hello": self.server_hello,
                "version": tls_version_text(self.version) if self.version else None,
                "alerts": [{"level": lv, "description": d} for lv, d in self.alerts]}


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    host: str
    path: str
    version: str
    complete: bool  # the end of the headers was seen

    def to_dict(self) -> dict:
        return {"method": self.method, "host": self.host, "path": self.path,
                "version": self.version, "complete": self.complete}


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    title: str | None
    location: str | None
    body_bytes: int
    server: str | None
    frame: int = 0

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "title": self.title,
                "location": self.location, "body_bytes": self.body_bytes, "server": self.server,
                "frame": self.frame}


@dataclass(frozen=True, slots=True)
class TcpConn:
    """One TCP connection as reassembly saw it: facts only, no opinion."""

    input: int
    stream: tuple[int, int]  # (input, first frame): ranked into tcp.stream numbers by the analysis
    client: Endpoint
    server: Endpoint
    ipver: int
    direction_from: str  # "syn", "syn-ack" or "port" (how client/server were told apart)
    segs: np.ndarray  # SEG_DTYPE, in arrival order (up to a cap)
    packets: tuple[int, int]  # c2s, s2c counts (all, not capped)
    payload_bytes: tuple[int, int]
    syn: TcpOptions | None
    synack: TcpOptions | None
    syn_count: int
    client_payload: bytes
    client_payload_frames: tuple[int, ...]
    client_payload_sends: int  # how many times the first payload segment was sent
    server_payload: bytes
    server_payload_frames: tuple[int, ...]
    markers: tuple[Marker, ...]
    retransmissions: tuple[int, int]
    conflicts: tuple[int, int]  # segments whose bytes contradict bytes already sent at that place
    icmp: tuple[IcmpError, ...]
    history: str
    first_ts: float
    last_ts: float
    #: When the client's first payload was seen (None: it sent none). Kept apart from
    #: ``rows``, which may have lost that row to the row cap of a long connection.
    client_payload_ts: float | None
    detail_capped: bool
    #: ``segs`` as Python tuples (fields at the ``SEG_*`` positions), made when first read. A
    #: connection has a dozen rows or so, where a loop over tuples costs less than a few numpy calls.
    rows: SegRows = field(repr=False, compare=False)
    #: Payload the capture cut short (its snapshot length): bit 0 the client's, bit 1 the server's.
    payload_cut: int = 0
    #: The frames of the IP fragments some of its segments were made whole from (the segments are
    #: read at the frame of their last fragment; these are its packets too): the first 64.
    fragment_frames: tuple[int, ...] = ()
    #: the TTL (IPv6: hop limit) of each of those fragments (aligned with ``fragment_frames``)
    fragment_ttls: tuple[int, ...] = ()
    #: some of those fragments overlapped with different bytes (the bytes captured first were read)
    fragments_disagree: bool = False
    #: the frame of each of ``rows``, in their order
    row_frames: tuple[int, ...] = field(default=(), repr=False, compare=False)
    #: the client's SYNs (SYN without ACK) among ``rows``, in their order
    syn_rows: tuple[tuple, ...] = field(default=(), repr=False, compare=False)

    @property
    def handshake(self) -> bool:
        return self.syn is not None and self.synack is not None


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    name: str
    rtype: str
    ttl: int
    data: str

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.rtype, "ttl": self.ttl, "data": self.data}


#: The AA bit of a DNS message's flags (RFC 1035 4.1.1): the answer is the zone's own.
DNS_AA = 0x0400


def answer_addresses(answers) -> set[str]:
    """The addresses among DNS answers (``DnsAnswer``s): the data of the A and AAAA records."""
    return {a.data for a in answers if a.rtype == "A" or a.rtype == "AAAA"}


@dataclass(frozen=True, slots=True)
class DnsResponse:
    input: int
    frame: int
    ts: float
    src: Endpoint
    ttl: int
    ipid: int
    flags: int
    rcode: int
    answers: tuple[DnsAnswer, ...]
    authority: int
    additional: int
    qname_matches: bool
    #: why the capture holds only part of the message ("" : it holds it whole): ``CUT_SNAPLEN``
    #: (the snapshot length cut it) or ``CUT_FRAGMENTS`` (its datagram came in IP fragments
    #: not all captured: only the first was read); answers past the cut are missing
    cut: str = ""
    #: the frames of the IP fragments it came in, when IP reassembly made it whole (``frame`` is
    #: the last of them, where it is read); () when it came in one packet
    fragments: tuple[int, ...] = ()
    #: the TTL (IPv6: hop limit) of each of those fragments: one sender's fragments take one path
    fragment_ttls: tuple[int, ...] = ()
    #: some of those fragments overlapped with different bytes (the bytes captured first were read)
    fragments_disagree: bool = False

    @property
    def aa(self) -> bool:
        return bool(self.flags & DNS_AA)

    def addresses(self) -> frozenset[str]:
        return frozenset(answer_addresses(self.answers))

    def to_dict(self) -> dict:
        d = {"frame": self.frame, "time": iso_time(self.ts), "src": self.src.to_dict(),
             "ttl": self.ttl, "ip_id": self.ipid, "flags": _HEX4.get(self.flags) or hex4(self.flags),
             "rcode": rcode_text(self.rcode), "aa": self.aa,
             "answers": [a.to_dict() for a in self.answers]}
        if self.cut:
            d["cut"] = self.cut
        if self.fragments:
            d["fragments"] = list(self.fragments)
            d["fragment_ttls"] = list(self.fragment_ttls)
            if self.fragments_disagree:
                d["fragments_disagree"] = True
        return d


#: ``DnsResponse.cut``: the two reasons a message is not whole in the capture.
CUT_SNAPLEN = "snapshot length"
CUT_FRAGMENTS = "IP fragments"


@dataclass(frozen=True, slots=True)
class DnsTransaction:
    input: int
    client: Endpoint
    server: Endpoint
    transport: str
    txid: int
    qname: str
    qtype: str
    query_frames: tuple[int, ...]
    query_ts: float
    query_ttl: int
    responses: tuple[DnsResponse, ...]
    icmp: tuple[IcmpError, ...] = ()
    #: Seconds the input went on after the query's first copy, when it ended sooner
    #: than ``DNS_LINGER`` after it (the capture stopped while the query was pending);
    #: None when the engine watched the query for its whole linger.
    watched: float | None = None
    #: The frames of the IP fragments the query came in, when IP reassembly made it whole
    #: (its first copy's; ``query_frames[0]`` is the frame that completed it).
    query_fragments: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One thing a client tried to do: the unit every verdict is about."""

    id: str
    kind: str  # dns, tls, http, tcp
    transport: str
    client: Endpoint
    server: Endpoint
    name: str
    start: float
    end: float
    input: int
    frames: tuple[int, ...]
    history: str
    tcp: TcpConn | None = None
    dns: DnsTransaction | None = None
    hello: TlsClientHello | None = None
    tls_reply: TlsServerReply | None = None
    request: HttpRequest | None = None
    response: HttpResponse | None = None
    stream: int | None = None  # Wireshark's tcp.stream number, for TCP-borne attempts

    @property
    def duration_ms(self) -> float:
        return round_to((self.end - self.start) * 1000.0, 3)


@dataclass(frozen=True, slots=True)
class Evidence:
    input: int
    packet: int
    signal: str
    detail: str

    def to_dict(self) -> dict:
        return {"input": self.input, "packet": self.packet, "signal": self.signal, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Finding:
    """A signal a detector saw, with its strength (0..1) and the frames that show it."""

    detector: str
    signal: str
    strength: float
    detail: str
    evidence: tuple[Evidence, ...] = ()
    data: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self.data:
            if k == key:
                return v
        return default


@dataclass(frozen=True, slots=True)
class Hop:
    from_capture: int
    low: int
    high: int
    server_hops: int | None
    method: str = "ttl"

    def to_dict(self) -> dict:
        return {"from_capture": self.from_capture, "low": self.low, "high": self.high,
                "server_hops": self.server_hops, "method": self.method}


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str
    cls: str
    trigger: str
    confidence: float
    summary: str
    rule: str
    hop: Hop | None = None
    evidence: tuple[Evidence, ...] = ()


# ---------------------------------------------------------------- text helpers

_FLAG_LETTERS = ((0x02, "S"), (0x10, "A"), (0x08, "P"), (0x01, "F"), (0x04, "R"),
                 (0x20, "U"), (0x40, "E"), (0x80, "C"), (0x100, "N"))


#: The bits ``_FLAG_LETTERS`` name: the text depends on these alone.
_FLAG_BITS = 0x1FF
#: The text of each value of those bits met so far (at most 512).
_FLAGS_TEXT: dict[int, str] = {}


def flags_text(flags: int) -> str:
    flags &= _FLAG_BITS
    text = _FLAGS_TEXT.get(flags)
    if text is None:
        text = _FLAGS_TEXT[flags] = "".join([ch for bit, ch in _FLAG_LETTERS if flags & bit]) or "."
    return text


#: ``hex4``'s texts: a capture's DNS responses carry a handful of flag values.
_HEX4: dict[int, str] = {}


def hex4(v: int) -> str:
    """``v`` as ``0x`` and at least four hex digits (a DNS header's flags)."""
    text = f"0x{v:04x}"
    if 0 <= v <= 0xFFFF:
        _HEX4[v] = text
    return text


#: ``round_to``'s powers of ten, by digits.
_TENS = (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0)
#: ``round_to`` takes its shortcut below this (2**40): the product ``x * 10**digits`` is then
#: off by at most 2**40 * 2**-53 = 2**-13 from the exact one, and every half (k + 0.5) is a
#: float, so the product cannot round across a half: a product that is not itself a half
#: rounds to the integer the exact value rounds to. The shortcut also keeps ``_TIE_MARGIN``
#: clear of a half, well over 2**-13, so that no case rests on that last step alone.
_FAST_LIMIT = 1099511627776.0
_TIE_MARGIN = 0.4998


def round_to(x: float, digits: int) -> float:
    """``round(x, digits)`` for ``digits`` 0 to 6, the same float in every case, about five times
    faster: the builtin rounds through a correctly rounded decimal string, about 3,400
    instructions a call, and the report rounds every delay and duration. Where the scaled
    value is not clear of a half (or is huge, or not finite) the builtin decides."""
    scale = _TENS[digits]
    t = x * scale
    if -_FAST_LIMIT < t < _FAST_LIMIT:
        k = t + 0.5
        k -= k % 1.0  # the integer nearest t, or one that fails the check below (a float: in C when compiled)
        if -_TIE_MARGIN < t - k < _TIE_MARGIN:
            # k / 10**digits: both exact, so the division is correctly rounded, as the
            # builtin's reading of its decimal string is; 0 keeps the sign of x (-0.0)
            return k / scale if k else x * 0.0
    return round(x, digits)


def iso_time(ts: float) -> str:
    micros = int(round(ts * 1_000_000))
    sec, us = divmod(micros, 1_000_000)
    # (str of the microseconds above a million, less its 1: "%06d" without the formatting machinery)
    return f"{_iso_second(sec)}.{str(us + 1_000_000)[1:]}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(sec: int) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(sec, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


_TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def tls_version_text(v: int | None) -> str:
    if v is None:
        return ""
    if (v & 0x0F0F) == 0x0A0A:
        return "GREASE"
    text = _TLS_VERSIONS.get(v)  # (a default argument would be formatted on every call)
    return text if text is not None else f"0x{v:04x}"


_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def rcode_text(rcode: int) -> str:
    text = _RCODES.get(rcode)
    return text if text is not None else f"RCODE{rcode}"


_ICMP4_UNREACHABLE = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable",
                      3: "port unreachable", 4: "fragmentation needed", 9: "network administratively prohibited",
                      10: "host administratively prohibited", 13: "communication administratively prohibited"}
_ICMP6_UNREACHABLE = {0: "no route", 1: "administratively prohibited", 3: "address unreachable",
                      4: "port unreachable", 5: "source address failed policy", 6: "reject route"}


def icmp_text(version: int, t: int, c: int) -> str:
    if version == 4:
        if t == 3:
            text = _ICMP4_UNREACHABLE.get(c)
            return text if text is not None else f"destination unreachable (code {c})"
        if t == 11:
            return "time exceeded in transit" if c == 0 else "fragment reassembly time exceeded"
        return f"ICMP type {t} code {c}"
    if t == 1:
        text = _ICMP6_UNREACHABLE.get(c)
        return text if text is not None else f"destination unreachable (code {c})"
    if t == 2:
        return "packet too big"
    if t == 3:
        return "hop limit exceeded in transit" if c == 0 else "fragment reassembly time exceeded"
    return f"ICMPv6 type {t} code {c}"


def classes() -> dict[str, str]:
    """The contract's verdicts and the class each belongs to."""
    return dict(VERDICT_CLASS)


VERDICT_CLASS: dict[str, str] = {
    "ok": "ok",
    "injected-rst": "deliberate", "forged-dns": "deliberate", "injected-blockpage": "deliberate",
    "sni-drop": "deliberate", "host-drop": "deliberate", "ip-block": "deliberate",
    "pmtu-blackhole": "middlebox-fault", "ecn-blackhole": "middlebox-fault",
    "idle-timeout-reset": "middlebox-fault", "tls-intolerance": "middlebox-fault",
    "option-stripping": "middlebox-fault",
    "connection-refused": "endpoint", "server-reset": "endpoint", "server-timeout": "endpoint",
    "dns-failure": "endpoint",
    "inconclusive": "inconclusive",
}

TRIGGERS = ("sni", "host", "url", "dns-qname", "ip", "keyword", "size", "ecn", "idle", "none", "unknown")


@dataclass(slots=True)
class InputInfo:
    path: str
    packets: int = 0
    link_types: list[str] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    warnings: list[str] = field(default_factory=list)
    format: str = ""
    bytes: int = 0
    decoded: dict[str, int] = field(default_factory=dict)
    #: where the capture's time ended, by ``sources.Clock`` (robust to a wild last
    #: timestamp, unlike ``last_ts``, the last record's own time); not in the report
    end_ts: float | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "packets": self.packets, "link_types": self.link_types,
                "first_ts": iso_time(self.first_ts) if self.first_ts is not None else None,
                "last_ts": iso_time(self.last_ts) if self.last_ts is not None else None,
                "warnings": list(self.warnings), "format": self.format, "bytes": self.bytes,
                "decoded": dict(self.decoded)}


def slot_filler(cls):
    """A constructor of the frozen slots dataclass ``cls`` taking every field, in order,
    positionally: the same object as ``cls(...)``, made about twice (4 fields) to four
    times (28 fields) faster.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
    (its own ``__setattr__`` refuses): 3.2 us for the 28 fields of a ``TcpConn``, and
    these constructors were a tenth of a 1M-packet run. This fills the slots of a plain
    class with the same ``__slots__`` (a store to a slot is one of the interpreter's
    fastest) and then gives the object its class, which Python allows between classes
    of one layout: 0.8 us there. The object is frozen from then on, as any other. Only
    for classes whose ``__init__`` does nothing else (checked).

    Where ``forensics._slots`` is built, its ``filler`` makes the constructor instead: a
    built-in function that allocates the object of ``cls`` and puts each argument in its
    slot (0.1 us to 0.2 us). It takes the fields positionally only."""
    fields = dataclasses.fields(cls)
    assert cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__
    assert all(f.init for f in fields) and not hasattr(cls, "__post_init__")
    assert cls.__bases__ == (object,), "a base class's slots would not be in the plain class"
    names = [f.name for f in fields]
    return _compiled_filler(cls, names) or python_filler(cls, names)


def slot_maker(cls):
    """``cls`` itself, called with every field positionally, for a slots dataclass whose
    ``__init__`` only sets its fields (checked); where ``forensics._slots`` is built, its
    compiled filler instead (``slot_filler``'s, for a class that need not be frozen): the
    same object, without the dataclass's ``__init__`` run as Python."""
    fields = dataclasses.fields(cls)
    assert "__slots__" in cls.__dict__ and all(f.init for f in fields) and not hasattr(cls, "__post_init__")
    return _compiled_filler(cls, [f.name for f in fields]) or cls


def state_filler(cls, names: list[str]):
    """A constructor of ``cls``, a plain class with ``__slots__`` and nothing else to set up
    (a live flow's state, not a record), taking the slots ``names`` (all of them, in order)
    positionally: ``_slots``' compiled filler where built, ``python_filler``'s otherwise."""
    assert cls.__bases__ == (object,) and sorted(names) == sorted(cls.__slots__) and "__init__" not in cls.__dict__
    return _compiled_filler(cls, names) or python_filler(cls, names)


def _compiled_filler(cls, names: list[str]):
    """``forensics._slots``' constructor of ``cls`` from its fields ``names`` (the same objects as
    the Python ones), or None: the extension not built, or a class it cannot be sure of."""
    fast = slots_module()
    return fast.filler(cls, names, f"new_{cls.__name__}") if fast is not None else None


def slot_reader(cls, *names: str):
    """The fields ``names`` (two or more) of an object, as a tuple: ``operator.attrgetter(*names)``.
    Where ``forensics._slots`` is built, a built-in function reads them in the slots of an object
    of ``cls`` exactly, in one call where compiled code would make one attribute look-up (through
    the class's descriptors) a field; of an object of another class, it asks ``getattr``."""
    assert len(names) >= 2, "attrgetter gives one field itself, not in a tuple"
    fast = slots_module()
    got = fast.reader(cls, names, f"read_{cls.__name__}") if fast is not None else None
    return got if got is not None else attrgetter(*names)


def python_filler(cls, names: list[str]):
    """``slot_filler``'s constructor in Python (``names``: the fields, in order)."""
    plain = type(f"_{cls.__name__}Slots", (), {"__slots__": cls.__dict__["__slots__"]})
    env = {"_new": object.__new__, "_plain": plain, "_cls": cls}
    body = "".join(f"    o.{n} = {n}\n" for n in names)
    exec(f"def make({', '.join(names)}):\n    o = _new(_plain)\n{body}    o.__class__ = _cls\n    return o\n", env)
    make = env["make"]
    make.__qualname__ = make.__name__ = f"new_{cls.__name__}"
    return make


#: The constructors of the records made once or more per attempt, every field positionally.
new_endpoint = slot_filler(Endpoint)
new_tcp_options = slot_filler(TcpOptions)
new_marker = slot_filler(Marker)
new_tcp_conn = slot_filler(TcpConn)
new_dns_answer = slot_filler(DnsAnswer)
new_dns_response = slot_filler(DnsResponse)
new_dns_transaction = slot_filler(DnsTransaction)
new_attempt = slot_filler(Attempt)
new_tls_client_hello = slot_filler(TlsClientHello)
new_tls_server_reply = slot_filler(TlsServerReply)
new_http_request = slot_filler(HttpRequest)
new_http_response = slot_filler(HttpResponse)
new_evidence = slot_filler(Evidence)
new_finding = slot_filler(Finding)
new_verdict = slot_filler(Verdict)


#: an ``Endpoint``'s address and port, as a tuple, in one call (``slot_reader``)
endpoint_fields = slot_reader(Endpoint, "ip", "port")
