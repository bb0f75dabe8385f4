"""In-path dropper on SNI or Host: the ClientHello or request vanishes, later packets too.

Models DPI boxes that blackhole a connection once they have seen a forbidden name.
Parameters:

- ``sni`` / ``host`` / ``keyword``: trigger (see ``Trigger``).
- ``both_ways``: also drop the server's packets of that connection (default true).
- ``hold_s``: how long the connection stays blackholed after its last packet
  (default 60 s, i.e. for the whole scenario).
"""

from __future__ import annotations

from .base import Device, Trigger


class Dropper(Device):
    kind = "dropper"

    def __init__(self, params, seed=0):
        super().__init__(params, seed)
        self.trigger = Trigger(params)
        self.black: dict = {}

    def on_frame(self, f, from_side, now):
        if not f.is_tcp:
            return True, []
        key = f.flow()
        until = self.black.get(key)
        if until is not None and now < until:
            if from_side == "a" or self.params.get("both_ways", True):
                self.black[key] = now + float(self.params.get("hold_s", 60))
                return False, []
            return True, []
        if from_side == "a":
            hit = self.trigger.match(f)
            if hit:
                self.log(f"{hit[0]}={hit[1]} {f.src}:{f.sport} -> {f.dst}:{f.dport}")
                self.black[key] = now + float(self.params.get("hold_s", 60))
                return False, []
        return True, []
