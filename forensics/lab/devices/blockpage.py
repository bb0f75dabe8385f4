"""On-path HTTP block-page injector: a forged response plus FIN, racing the real one.

Models the transparent-proxy-less block pages of ISPs: on a request whose Host
(or keyword) matches it sends the client an HTTP response (403 or 302 redirect)
with the FIN flag, using the server's sequence numbers, while the real request
still reaches the server.  Parameters:

- ``host`` / ``keyword``: trigger (see ``Trigger``).
- ``status``: 403 (page) or 302 (redirect to ``location``).
- ``body``: the page text.
- ``ttl`` / ``ipid``: as for the RST injector.
- ``fin_separate``: send the FIN as its own segment after the page (default false:
  one segment with PSH+ACK+FIN).
"""

from __future__ import annotations

from .. import packets as P
from .base import Device, Trigger, reverse_tcp


class BlockpageInjector(Device):
    kind = "blockpage-injector"

    def __init__(self, params, seed=0):
        super().__init__(params, seed)
        self.trigger = Trigger(params)
        self.fired: set = set()

    def page(self) -> bytes:
        p = self.params
        body = p.get("body", "<html><body><h1>Access denied</h1>This site is blocked.</body></html>").encode()
        if int(p.get("status", 403)) == 302:
            head = f"HTTP/1.1 302 Found\r\nLocation: {p.get('location', 'http://blocked.example/')}\r\n"
        else:
            head = "HTTP/1.1 403 Forbidden\r\n"
        head += f"Content-Type: text/html\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        return head.encode() + body

    def on_frame(self, f, from_side, now):
        if not f.is_tcp or from_side != "a" or f.flow() in self.fired:
            return True, []
        hit = self.trigger.match(f)
        if not hit:
            return True, []
        self.fired.add(f.flow())
        self.log(f"{hit[0]}={hit[1]} {f.src}:{f.sport} -> {f.dst}:{f.dport}")
        page, end = self.page(), f.seq + len(f.payload)
        tm, im = self.params.get("ttl", {}), self.params.get("ipid", {})
        out = []
        if self.params.get("fin_separate"):
            out.append((from_side, reverse_tcp(f, P.PSH | P.ACK, f.ack, end, P.choose_ttl(tm, f.ttl, self.rng),
                                               P.choose_ipid(im, self.rng), page)))
            out.append((from_side, reverse_tcp(f, P.FIN | P.ACK, f.ack + len(page), end,
                                               P.choose_ttl(tm, f.ttl, self.rng), P.choose_ipid(im, self.rng))))
        else:
            out.append((from_side, reverse_tcp(f, P.PSH | P.ACK | P.FIN, f.ack, end,
                                               P.choose_ttl(tm, f.ttl, self.rng), P.choose_ipid(im, self.rng), page)))
        return True, out
