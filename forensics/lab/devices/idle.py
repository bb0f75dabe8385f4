"""Stateful firewall that forgets idle connections and resets them.

Models NATs and firewalls with short idle timers: it learns a connection from
its SYN; when a packet of a connection it does not know (or has forgotten after
``timeout_s`` of silence) arrives, it drops it and sends a RST to its sender
(``reset``: ``sender``, ``both`` or ``none`` for a silent drop).  Parameters:
``timeout_s`` (default 2.5), ``reset``, ``ttl`` / ``ipid`` of its resets (as for
the RST injector; default fixed TTL 64, IP-ID 0).
"""

from __future__ import annotations

from .. import packets as P
from .base import Device, forward_tcp, other, reverse_tcp


class IdleFirewall(Device):
    kind = "idle-firewall"

    def __init__(self, params, seed=0):
        super().__init__(params, seed)
        self.seen: dict = {}

    def on_frame(self, f, from_side, now):
        if not f.is_tcp:
            return True, []
        key = f.flow()
        timeout = float(self.params.get("timeout_s", 2.5))
        if f.flags & P.SYN and not f.flags & P.ACK:
            self.seen[key] = now
            return True, []
        last = self.seen.get(key)
        if last is not None and now - last <= timeout:
            self.seen[key] = now
            if f.flags & P.RST:
                self.seen.pop(key, None)
            return True, []
        self.seen.pop(key, None)
        if f.flags & P.RST:
            return False, []
        self.log(f"idle/unknown {f.src}:{f.sport} -> {f.dst}:{f.dport}, dropped")
        mode = self.params.get("reset", "sender")
        tm, im = self.params.get("ttl", {}), self.params.get("ipid", {})
        out = []
        end = f.seq + len(f.payload) + (1 if f.flags & P.FIN else 0)
        if mode in ("sender", "both"):
            out.append((from_side, reverse_tcp(f, P.RST, f.ack, 0, P.choose_ttl(tm, f.ttl, self.rng),
                                               P.choose_ipid(im, self.rng))))
        if mode == "both":
            out.append((other(from_side), forward_tcp(f, P.RST, end, 0, P.choose_ttl(tm, f.ttl, self.rng),
                                                      P.choose_ipid(im, self.rng))))
        return False, out
