"""A box that breaks TLS handshakes bigger than one segment, whatever the name.

Models buggy DPI/load balancers that cannot reassemble a ClientHello split over
several TCP segments (seen when post-quantum key shares made ClientHellos grow
past 1500 bytes): when the first client payload of a connection is the start of
a ClientHello whose TLS record does not fit in that segment, the box drops it and
every later client packet of the connection.  Parameters: ``ports`` (default
[443]), ``max_record`` (default: whatever fits in the segment).
"""

from __future__ import annotations

from .. import packets as P
from .base import Device


class TlsSizeBreaker(Device):
    kind = "tls-size-breaker"

    def __init__(self, params, seed=0):
        super().__init__(params, seed)
        self.black: set = set()
        self.judged: set = set()

    def on_frame(self, f, from_side, now):
        if not f.is_tcp or from_side != "a":
            return True, []
        key = f.flow()
        if key in self.black:
            return False, []
        if not f.payload or key in self.judged or f.dport not in self.params.get("ports", [443]):
            return True, []
        self.judged.add(key)
        is_ch, sni, rec_len = P.tls_client_hello(f.payload)
        limit = self.params.get("max_record")
        too_big = rec_len > (int(limit) if limit else len(f.payload))
        if is_ch and too_big:
            self.log(f"ClientHello of {rec_len} bytes ({sni}) in a {len(f.payload)}-byte segment: dropped")
            self.black.add(key)
            return False, []
        return True, []
