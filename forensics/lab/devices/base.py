"""What every wire device shares.

A wire device sits on one link of the lab, between two namespaces.  Side ``a`` of
a link is always the side towards the clients, side ``b`` the side towards the
servers.  For every frame crossing the link the wire calls
``device.on_frame(frame, from_side, now)``, which answers ``(forward, inject)``:
whether the real frame goes on, and a list of ``(to_side, raw_frame)`` forged
frames that are delivered at once (a link's delay applies to the real frames it
forwards, never to what a device injects).  ``forward`` may also be the bytes of
a rewritten frame, which goes on in the real frame's place, delay included.

A device *at hop k* (counted from client1, as traceroute counts) sits on the link
that enters router k's position: a packet it forges towards the client is
routed by the k-1 routers between it and the client, so it arrives with its TTL
lowered by k-1, exactly as if router k had sent it.
"""

from __future__ import annotations

import fnmatch
import random
import sys

from .. import packets as P


class Device:
    """Base class: forwards everything, injects nothing."""

    kind = "device"

    def __init__(self, params: dict, seed: int = 0):
        self.params = params
        self.rng = random.Random(seed)

    def on_frame(self, f: P.Frame, from_side: str, now: float):
        return True, []

    def log(self, msg: str) -> None:
        print(f"[{self.kind}] {msg}", file=sys.stderr, flush=True)


class Trigger:
    """What sets a device off: SNI globs, Host globs, keywords in a client payload.

    params: ``sni``: list of globs, ``host``: list of globs, ``keyword``: list of
    strings searched in any client payload (HTTP request line, headers, body);
    ``exclude``: globs of names (SNI or Host) that never trigger.
    ``match(frame)`` returns ``("sni"|"host"|"keyword", value)`` or None.
    """

    def __init__(self, params: dict):
        self.sni = [s.lower() for s in params.get("sni", [])]
        self.host = [s.lower() for s in params.get("host", [])]
        self.keyword = [k.encode() for k in params.get("keyword", [])]
        self.exclude = [s.lower() for s in params.get("exclude", [])]

    @staticmethod
    def _glob(name: str | None, globs: list[str]) -> bool:
        return bool(name) and any(fnmatch.fnmatch(name.lower(), g) for g in globs)

    def _wanted(self, name: str | None, globs: list[str]) -> bool:
        return self._glob(name, globs) and not self._glob(name, self.exclude)

    def match(self, f: P.Frame):
        if not f.payload:
            return None
        if self.sni:
            is_ch, sni, _ = P.tls_client_hello(f.payload)
            if is_ch and self._wanted(sni, self.sni):
                return ("sni", sni)
        if self.host:
            host = P.http_host(f.payload)
            if self._wanted(host, self.host):
                return ("host", host)
        for k in self.keyword:
            if k in f.payload:
                return ("keyword", k.decode())
        return None


def reverse_tcp(f: P.Frame, flags: int, seq: int, ack: int, ttl: int, ipid: int,
                payload: bytes = b"") -> bytes:
    """A forged segment from f's destination back to f's source."""
    return P.tcp_frame(f.dst_mac, f.src_mac, f.version, f.dst, f.src, f.dport, f.sport,
                       seq, ack, flags, payload, ttl=ttl, ipid=ipid)


def forward_tcp(f: P.Frame, flags: int, seq: int, ack: int, ttl: int, ipid: int) -> bytes:
    """A forged segment that continues in f's direction, as if its sender sent it."""
    return P.tcp_frame(f.src_mac, f.dst_mac, f.version, f.src, f.dst, f.sport, f.dport,
                       seq, ack, flags, b"", ttl=ttl, ipid=ipid)


def other(side: str) -> str:
    return "b" if side == "a" else "a"
