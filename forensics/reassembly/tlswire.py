"""TLS ClientHello and server-reply parsing, by hand and bounded.

Why not scapy's TLS layer: it needs the whole record, raises on lengths that
lie (which is what broken middleboxes and fuzzers produce), and costs a
millisecond per hello. This reads only the fields the detectors use: SNI,
offered versions, extensions, size; ServerHello version; alerts. Every length is
checked against what was captured; a lie ends the parse with what was read.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dnswire import label_text

EXT_SNI = 0
EXT_SUPPORTED_VERSIONS = 43


@dataclass(slots=True)
class Hello:
    sni: str
    versions: tuple[int, ...]
    extensions: tuple[int, ...]
    ciphers: int
    record_size: int
    complete: bool


def looks_like_client_hello(data: bytes) -> bool:
    return len(data) >= 6 and data[0] == 0x16 and data[1] == 0x03 and data[5] == 0x01


def _handshake_bytes(data: bytes) -> tuple[bytes, int]:
    """Concatenate the handshake-record bodies at the start of the stream, up to
    the record that completes the first handshake message (the ClientHello):
    the client's later handshake records (a ClientKeyExchange, a Finished) are
    not part of its size."""
    if len(data) >= 9 and data[0] == 0x16:  # the usual case: the whole message in the first record, no copy needed
        ln = (data[3] << 8) | data[4]
        first = data[5:5 + ln]
        if len(first) >= 4 and len(first) >= 4 + ((first[1] << 16) | (first[2] << 8) | first[3]):
            return first, 5 + ln
    out = bytearray()
    pos = 0
    size = 0
    while pos + 5 <= len(data) and data[pos] == 0x16 and len(out) < 1 << 16:
        ln = (data[pos + 3] << 8) | data[pos + 4]
        out += data[pos + 5:pos + 5 + ln]
        size += 5 + ln
        pos += 5 + ln
        if len(out) >= 4 and len(out) >= 4 + ((out[1] << 16) | (out[2] << 8) | out[3]):
            break
    return bytes(out), size


def parse_client_hello(data: bytes) -> Hello | None:
    if not looks_like_client_hello(data):
        return None
    if type(data) is not bytes:  # (a bytearray or a memoryview: the compiled build reads bytes)
        data = bytes(data)
    hs, record_size = _handshake_bytes(data)
    if len(hs) < 4 or hs[0] != 1:
        return None
    body_len = (hs[1] << 16) | (hs[2] << 8) | hs[3]
    body = hs[4:4 + body_len]
    complete = len(body) >= body_len
    # the legacy version, unless the capture cut the hello before it (then no version is known)
    legacy = ((body[0] << 8) | body[1],) if len(body) >= 2 else ()
    pos = 2 + 32
    if pos >= len(body):
        return Hello("", legacy, (), 0, record_size, False)
    pos += 1 + body[pos]  # session id
    if pos + 2 > len(body):
        return Hello("", legacy, (), 0, record_size, False)
    clen = (body[pos] << 8) | body[pos + 1]
    ciphers = clen // 2
    pos += 2 + clen
    if pos >= len(body):
        return Hello("", legacy, (), ciphers, record_size, False)
    pos += 1 + body[pos]  # compression methods
    sni = ""
    versions: tuple[int, ...] = ()
    exts: list[int] = []
    if pos + 2 <= len(body):
        end = min(len(body), pos + 2 + ((body[pos] << 8) | body[pos + 1]))
        pos += 2
        while pos + 4 <= end and len(exts) < 128:
            etype = (body[pos] << 8) | body[pos + 1]
            elen = (body[pos + 2] << 8) | body[pos + 3]
            exts.append(etype)
            if etype == EXT_SNI:
                sni = _sni(body[pos + 4:pos + 4 + elen])
            elif etype == EXT_SUPPORTED_VERSIONS and elen and pos + 4 < len(body):
                ext = body[pos + 4:pos + 4 + elen]
                n = min(ext[0], len(ext) - 1)
                versions = tuple([(ext[1 + i] << 8) | ext[2 + i] for i in range(0, n - 1, 2)])
            pos += 4 + elen
    return Hello(sni, versions or legacy, tuple(exts), ciphers, record_size, complete)


def _sni(ext: bytes) -> str:
    if len(ext) < 5:
        return ""
    pos = 2
    end = min(len(ext), 2 + ((ext[0] << 8) | ext[1]))
    while pos + 3 <= end:
        ntype = ext[pos]
        ln = (ext[pos + 1] << 8) | ext[pos + 2]
        if ntype == 0:
            if pos + 3 + ln > end:
                return ""  # a name running past its list: a lie or a cut, not a name
            return label_text(ext[pos + 3:pos + 3 + ln]).lower()
        pos += 3 + ln
    return ""


@dataclass(slots=True)
class ServerReply:
    server_hello: bool
    version: int | None
    alerts: tuple[tuple[int, int], ...]


def parse_server_reply(data: bytes) -> ServerReply | None:
    """The server's first TLS records: a ServerHello (and its version) or alerts."""
    if len(data) < 5 or data[0] not in (0x15, 0x16, 0x14, 0x17) or data[1] != 0x03:
        return None
    if type(data) is not bytes:
        data = bytes(data)
    pos = 0
    hello = False
    version: int | None = None
    alerts: list[tuple[int, int]] = []
    for _ in range(16):
        if pos + 5 > len(data):
            break
        ctype = data[pos]
        ln = (data[pos + 3] << 8) | data[pos + 4]
        body = data[pos + 5:pos + 5 + ln]
        if ctype == 0x16 and len(body) >= 6 and body[0] == 2 and not hello:
            hello = True
            version = (body[4] << 8) | body[5]
            version = _selected_version(body) or version
        elif ctype == 0x15 and len(body) >= 2:
            alerts.append((body[0], body[1]))
        pos += 5 + ln
    return ServerReply(hello, version, tuple(alerts))


def _selected_version(body: bytes) -> int | None:
    """supported_versions in a ServerHello (TLS 1.3 announces itself there)."""
    pos = 4 + 2 + 32
    if pos >= len(body):
        return None
    pos += 1 + body[pos] + 2 + 1
    if pos + 2 > len(body):
        return None
    end = min(len(body), pos + 2 + ((body[pos] << 8) | body[pos + 1]))
    pos += 2
    while pos + 4 <= end:
        etype = (body[pos] << 8) | body[pos + 1]
        elen = (body[pos + 2] << 8) | body[pos + 3]
        if etype == EXT_SUPPORTED_VERSIONS and elen == 2 and pos + 6 <= len(body):
            return (body[pos + 4] << 8) | body[pos + 5]
        pos += 4 + elen
    return None
