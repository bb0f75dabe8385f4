"""HTTP/1.x request and response heads, parsed by hand and bounded.

Only the head matters to the detectors (method, Host, path; status, Location,
Server, <title>), and only the first payload of each direction is looked at.
A head with no end (no blank line in what was captured) is still parsed and
marked incomplete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ", b"PATCH ", b"TRACE ")
#: Heads longer than this are not HTTP any real server or middlebox accepts.
MAX_HEAD = 16384
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.I | re.S)


def looks_like_request(data: bytes) -> bool:
    return data.startswith(METHODS)


@dataclass(slots=True)
class Request:
    method: str
    path: str
    version: str
    host: str
    complete: bool


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    title: str | None
    body_bytes: int
    complete: bool


def _head(data: bytes) -> tuple[list[bytes], bytes, bool]:
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD)
    sep = 4
    if end < 0:
        end = data.find(b"\n\n", 0, MAX_HEAD)
        sep = 2
    complete = end >= 0
    head = data[:end] if complete else data[:MAX_HEAD]
    body = data[end + sep:] if complete else b""
    return head.replace(b"\r\n", b"\n").split(b"\n"), body, complete


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines[1:64]:
        k, sep, v = line.partition(b":")
        if sep:
            out.setdefault(k.strip().lower().decode("latin-1"), v.strip().decode("latin-1"))
    return out


def parse_request(data: bytes) -> Request | None:
    if not looks_like_request(data):
        return None
    lines, _body, complete = _head(data)
    parts = lines[0].decode("latin-1").split(" ")
    method = parts[0]
    path = parts[1] if len(parts) > 1 else ""
    version = parts[2] if len(parts) > 2 else ""
    host = _headers(lines).get("host", "").lower()  # as sent, port included (as Wireshark shows it)
    return Request(method, path, version, host, complete)


def parse_response(data: bytes) -> Response | None:
    if not data.startswith(b"HTTP/"):
        return None
    lines, body, complete = _head(data)
    parts = lines[0].decode("latin-1").split(" ", 2)
    try:
        status = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        status = 0
    reason = parts[2].strip() if len(parts) > 2 else ""
    m = _TITLE.search(body[:MAX_HEAD])
    title = m.group(1).decode("utf-8", "replace").strip()[:200] if m else None
    return Response(status, reason, _headers(lines), title, len(body), complete)
