"""tshark as an oracle: what Wireshark's dissectors say about a capture."""

from __future__ import annotations

import shutil
import subprocess

TSHARK = shutil.which("tshark")


def tshark_fields(path: str, fields: list[str], dfilter: str | None = None) -> list[list[str]]:
    cmd = [TSHARK, "-n", "-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    if dfilter:
        cmd += ["-Y", dfilter]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def facts(path: str) -> dict:
    """tcp.stream count, DNS query (id, client port) pairs (unicast queries), SNI and Host per stream."""
    streams = {int(r[0]) for r in tshark_fields(path, ["tcp.stream"], "tcp && !icmp && !icmpv6") if r[0]}
    dns = set()
    # queries to a multicast group or the broadcast address ask the link (mDNS, LLMNR), not a resolver
    for r in tshark_fields(path, ["dns.id", "udp.srcport", "tcp.srcport"],
                           "dns.flags.response == 0 && !icmp && !icmpv6 && !(ip.dst == 224.0.0.0/4) "
                           "&& !(ip.dst == 255.255.255.255) && !(ipv6.dst == ff00::/8)"):
        if r[0]:
            dns.add((int(r[0], 0), int(r[1] or r[2])))
    sni = {}
    for r in tshark_fields(path, ["tcp.stream", "tls.handshake.extensions_server_name"],
                           "tls.handshake.type == 1"):
        if r[0] and int(r[0]) not in sni:
            sni[int(r[0])] = r[1].lower()
    host = {}
    for r in tshark_fields(path, ["tcp.stream", "http.host"], "http.request"):
        if r[0] and int(r[0]) not in host:
            host[int(r[0])] = r[1].lower()
    return {"streams": streams, "dns": dns, "sni": sni, "host": host}
