"""On-path RST injector: sees copies of the traffic, forges resets that race the real packets.

Models the reset injectors of national firewalls and office UTMs.  Parameters:

- ``sni`` / ``host`` / ``keyword``: what triggers it (see ``Trigger``).
- ``direction``: ``client``, ``server`` or ``both``: whom the forged resets go to.
- ``pattern``: ``single`` (one RST), ``rst-rstack`` (one RST, then RST+ACK with the
  sequence offsets in ``offsets``, default 0, 1460, 4380), ``repeat`` (``count``
  identical RST+ACK).
- ``ttl``: ``{"mode": "fixed", "value": 64}``, ``{"mode": "copy"}`` (the trigger's TTL
  as the device saw it) or ``{"mode": "random", "low": 32, "high": 255}``.
- ``ipid``: ``{"mode": "zero"}``, ``{"mode": "random"}``, ``{"mode": "fixed", "value": n}``.
- ``inpath``: when true the device also drops the trigger and the rest of the
  client's packets of that connection (an in-path firewall that resets);
  default false (pure on-path: the real packets go on and the server answers).

It fires once per connection.
"""

from __future__ import annotations

from .. import packets as P
from .base import Device, Trigger, forward_tcp, other, reverse_tcp


class RstInjector(Device):
    kind = "rst-injector"

    def __init__(self, params, seed=0):
        super().__init__(params, seed)
        self.trigger = Trigger(params)
        self.fired: set = set()

    def _resets(self, seq, ack):
        p = self.params
        pattern = p.get("pattern", "single")
        if pattern == "single":
            return [(P.RST, seq, 0)]
        if pattern == "rst-rstack":
            return [(P.RST, seq, 0)] + [(P.RST | P.ACK, seq + o, ack) for o in p.get("offsets", [0, 1460, 4380])]
        return [(P.RST | P.ACK, seq, ack)] * int(p.get("count", 3))

    def on_frame(self, f, from_side, now):
        if not f.is_tcp or from_side != "a":
            return True, []
        key = f.flow()
        if key in self.fired:
            return not self.params.get("inpath", False), []
        hit = self.trigger.match(f)
        if not hit:
            return True, []
        self.fired.add(key)
        self.log(f"{hit[0]}={hit[1]} {f.src}:{f.sport} -> {f.dst}:{f.dport}")
        end = f.seq + len(f.payload)
        ttl_mode, ipid_mode = self.params.get("ttl", {}), self.params.get("ipid", {})
        out = []
        direction = self.params.get("direction", "both")
        if direction in ("client", "both"):
            for flags, seq, ack in self._resets(f.ack, end):
                ttl, ipid = P.choose_ttl(ttl_mode, f.ttl, self.rng), P.choose_ipid(ipid_mode, self.rng)
                out.append((from_side, reverse_tcp(f, flags, seq, ack, ttl, ipid)))
        if direction in ("server", "both"):
            # an in-path device dropped the payload, so the server still expects f.seq
            start = f.seq if self.params.get("inpath") else end
            for flags, seq, ack in self._resets(start, f.ack):
                ttl, ipid = P.choose_ttl(ttl_mode, f.ttl, self.rng), P.choose_ipid(ipid_mode, self.rng)
                out.append((other(from_side), forward_tcp(f, flags, seq, ack, ttl, ipid)))
        forward = not self.params.get("inpath", False)
        if forward:
            # the real trigger goes first, then the forged resets towards the server
            return True, out
        return False, out
