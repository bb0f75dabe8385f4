"""What the capture's controls hold per distinct server and per distinct name.

The controls (``forensics.detectors.controls``) are the one part of the analysis
that grows with what a capture holds rather than with its live flows: a border
capture meets servers and names by the hundred thousand. This measures their
cost with ``tracemalloc``, from the ``Facts`` of real attempts of a capture
(``Judge.local`` on its attempts): one completed TCP exchange with a name and
one DNS query with a lone answer are taken as templates and added again and
again under new server addresses and names, as a border capture would bring
them. It prints bytes per item for each of three shapes:

- ``servers``: N servers, each completing an exchange for the same name;
- ``servers+names``: N servers, each completing an exchange for a name of its own;
- ``dns names``: N names, each answered once by the same resolver.

Usage: ``python benchmarks/controls_memory.py CAPTURE [--n 50000]``. The capture
needs at least one completed TLS or HTTP exchange and one answered DNS query
(the benchmark's captures, or most of ``pcaps/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tracemalloc


def templates(capture: str):
    from forensics import api
    from forensics.classify.engine import Judge

    rep = api.analyze(capture, keep_attempts=True, jobs=1)
    judge = Judge([], ())
    tcp = dns = None
    for a in rep.attempts:
        f = judge.local(a)
        if tcp is None and f.transport == "tcp" and f.name and "exchange-complete" in f.signals():
            tcp = f
        if dns is None and f.kind == "dns" and f.name and len(f.features.get("responses", ())) == 1:
            dns = f
        if tcp is not None and dns is not None:
            return tcp, dns
    raise SystemExit(f"{capture}: needs a completed TCP exchange with a name and a DNS query with one answer")


def per_item(template, n: int, server: bool, name: bool) -> float:
    """Bytes the controls grow by for each of ``n`` clones of ``template`` with a new server
    address (``server``) and/or a new name (``name``)."""
    from forensics.detectors.controls import Controls

    # the clones are made first, outside the measurement: in a run their strings come from the packets
    clones = [dataclasses.replace(template,
                                  server_ip=f"2001:db8:{k >> 16:x}:{k & 0xffff:x}::1" if server else template.server_ip,
                                  name=f"n{k}.example.com" if name else template.name)
              for k in range(n)]
    gc.collect()
    c = Controls()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for f in clones:
        c.add(f)
    c.settle()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    # strings the controls keep alive (the addresses and names) belong to the clones, made
    # before: they are counted here, as the controls alone would hold them once the attempts go
    kept = sum(sys.getsizeof(f.server_ip) for f in clones) if server else 0
    kept += sum(sys.getsizeof(f.name) for f in clones) if name else 0
    return (grown + kept) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--n", type=int, default=50_000, help="distinct servers or names per shape")
    args = ap.parse_args(argv)
    tcp, dns = templates(args.capture)
    print(f"templates: {tcp.kind} at {tcp.server_ip}:{tcp.server_port} ({tcp.name}); "
          f"dns to {dns.server_ip} ({dns.name})")
    for label, tpl, server, name in (("servers", tcp, True, False), ("servers+names", tcp, True, True),
                                     ("dns names", dns, False, True)):
        print(f"{label:14s} {per_item(tpl, args.n, server, name):8.0f} bytes each ({args.n} distinct)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
