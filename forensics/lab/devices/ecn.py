"""ECN black hole: drops SYNs that ask for ECN (ECE and CWR set), lets plain SYNs pass.

Models old firewalls and load balancers that treat the ECN bits in a SYN as
malformed.  Parameters: ``also_synack`` (default false): drop SYN-ACKs that carry
ECE too (a box on the server side of the negotiation).
"""

from __future__ import annotations

from .. import packets as P
from .base import Device


class EcnBlackhole(Device):
    kind = "ecn-blackhole"

    def on_frame(self, f, from_side, now):
        if not f.is_tcp or not f.flags & P.SYN:
            return True, []
        if f.flags & P.ACK:
            if self.params.get("also_synack") and f.flags & P.ECE:
                return False, []
            return True, []
        if f.flags & (P.ECE | P.CWR) == (P.ECE | P.CWR):
            self.log(f"ECN SYN dropped {f.src}:{f.sport} -> {f.dst}:{f.dport}")
            return False, []
        return True, []
