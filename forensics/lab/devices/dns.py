"""On-path DNS injector: answers queries for listed names before the real resolver can.

Models the DNS poisoning of national firewalls: it sees a copy of the query and
sends a forged answer from the resolver's address; the real query goes on and the
real answer still arrives, later.  Parameters:

- ``names``: globs of query names that trigger it (``*.blogs.example``).
- ``pool4`` / ``pool6``: addresses the forged A / AAAA answers pick from (one per
  answer, chosen by the name's hash so a name always gets the same lie).
- ``answer_ttl``: the DNS TTL of the forged record (``{"mode": "fixed", "value":
  60}`` or ``{"mode": "random", "low": 60, "high": 300}``).
- ``ttl`` / ``ipid``: IP TTL and IP-ID behaviour, as for the RST injector.
- ``count``: how many identical forged answers it sends (default 1).
"""

from __future__ import annotations

import fnmatch
import zlib

from .. import packets as P
from .base import Device


class DnsInjector(Device):
    kind = "dns-injector"

    def on_frame(self, f, from_side, now):
        if not f.is_udp or f.dport != 53 or from_side != "a":
            return True, []
        q = P.dns_question(f.payload)
        if not q:
            return True, []
        _txid, qname, qtype, qend = q
        if qtype not in (1, 28) or not any(fnmatch.fnmatch(qname, g) for g in self.params.get("names", [])):
            return True, []
        pool = self.params.get("pool4" if qtype == 1 else "pool6", [])
        if not pool:
            return True, []
        addr = pool[zlib.crc32(qname.encode()) % len(pool)]
        at = self.params.get("answer_ttl", {"mode": "fixed", "value": 60})
        if at.get("mode") == "random":
            rttl = self.rng.randint(at.get("low", 60), at.get("high", 300))
        else:
            rttl = int(at.get("value", 60))
        body = P.dns_answer(f.payload, qend, qtype, [addr], rttl)
        out = []
        for _ in range(int(self.params.get("count", 1))):
            ttl = P.choose_ttl(self.params.get("ttl", {}), f.ttl, self.rng)
            ipid = P.choose_ipid(self.params.get("ipid", {}), self.rng)
            out.append((from_side, P.udp_frame(f.dst_mac, f.src_mac, f.version, f.dst, f.src,
                                               f.dport, f.sport, body, ttl=ttl, ipid=ipid)))
        self.log(f"{qname} type {qtype} -> {addr}")
        return True, out
