"""A load balancer that answers the handshake and the close itself: one connection, two senders.

Models the front ends many large sites put before their servers (SYN proxies and
load balancers: F5 BIG-IP, NetScaler, cloud load balancers): the SYN-ACK and the
FINs come from the front box's own stack, the data from the server behind it on a
longer path, so one connection's packets from the server's address carry two TTLs
and two IP-ID counters.  Nothing is forged: the front box's close continues the
server's sequence numbers, where an injector's packets and the real server's
contradict each other.  It rewrites, in the real packets' places, the TTL (to
``ttl`` as it leaves this hop, default 255: such boxes start from 255) and the
IP-ID (its own counter) of the server's SYN-ACKs and FINs to ports ``ports``
(default 80 and 443) going to the clients.
"""

from __future__ import annotations

import struct

from .. import packets as P
from .base import Device


class FrontBox(Device):
    kind = "front-box"

    def __init__(self, params, seed=0):
        super().__init__(params, seed)
        self.ports = set(params.get("ports", [80, 443]))
        self.ttl = int(params.get("ttl", 255))
        self.ipid = self.rng.randrange(1, 0x10000)

    def on_frame(self, f, from_side, now):
        if from_side != "b" or not f.is_tcp or f.sport not in self.ports or not f.flags & (P.SYN | P.FIN):
            return True, []
        return self.rewrite(f), []

    def rewrite(self, f: P.Frame) -> bytes:
        """``f`` as the front box sends it: its TTL and, over IPv4, its next IP-ID."""
        raw = bytearray(f.raw)
        if f.version == 4:
            self.ipid = (self.ipid + 1) & 0xFFFF or 1
            raw[18:20] = struct.pack("!H", self.ipid)
            raw[22] = self.ttl
            ihl = (raw[14] & 0x0F) * 4
            raw[24:26] = b"\0\0"
            raw[24:26] = struct.pack("!H", P.checksum(bytes(raw[14:14 + ihl])))
        else:
            raw[21] = self.ttl  # the hop limit (no header checksum in IPv6)
        return bytes(raw)
