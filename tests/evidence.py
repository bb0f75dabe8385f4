"""Read back every frame an attempt's evidence cites and check it shows what the evidence says.

Each evidence signal has a predicate over the frame as scapy dissects it; a
"TTL N" / "IP TTL N" / "IP-ID N" in the detail must be the frame's own value. A
signal with no predicate here fails the check, so new evidence gets one.
"""

from __future__ import annotations

import re
from functools import lru_cache

from scapy.layers.dns import DNS
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.utils import rdpcap


@lru_cache(maxsize=32)
def _frames(path: str):
    return rdpcap(path)


def _ip(p):
    return p[IP] if IP in p else (p[IPv6] if IPv6 in p else None)


def _ttl(p):
    ip = _ip(p)
    return ip.ttl if IP in p else ip.hlim


def _flags(p) -> str:
    return str(p[TCP].flags) if TCP in p else ""


def _payload(p) -> int:
    return len(bytes(p[TCP].payload)) if TCP in p else 0


def _from(p, addr: str) -> bool:
    ip = _ip(p)
    return ip is not None and ip.src == addr


def _dns_resp(p) -> bool:
    return DNS in p and p[DNS].qr == 1


PREDICATES = {
    "rst": lambda p, a: "R" in _flags(p),
    "burst": lambda p, a: "R" in _flags(p),
    "ttl-mismatch": lambda p, a: _from(p, a["server"]["ip"]) or _from(p, a["client"]["ip"]),
    "race": lambda p, a: (_from(p, a["server"]["ip"]) or _from(p, a["client"]["ip"])) and "R" not in _flags(p),
    "after-reset": lambda p, a: _from(p, a["server"]["ip"]) and "R" not in _flags(p),
    "trigger": lambda p, a: _from(p, a["client"]["ip"]),
    "payload": lambda p, a: _from(p, a["client"]["ip"]) and _payload(p) > 0,
    "after-idle": lambda p, a: _from(p, a["client"]["ip"]) and _payload(p) > 0,
    "syn": lambda p, a: _from(p, a["client"]["ip"]) and "S" in _flags(p) and "A" not in _flags(p),
    "syn-ack": lambda p, a: _from(p, a["server"]["ip"]) and "S" in _flags(p) and "A" in _flags(p),
    "ipid": lambda p, a: IP in p,
    "query": lambda p, a: DNS in p and p[DNS].qr == 0 and _from(p, a["client"]["ip"]),
    "forged-answer": lambda p, a: _dns_resp(p),
    "resolver-answer": lambda p, a: _dns_resp(p),
    "answer": lambda p, a: _dns_resp(p),
    "response": lambda p, a: _dns_resp(p),
    "bogon-answer": lambda p, a: _dns_resp(p),
    "forged-response": lambda p, a: _from(p, a["server"]["ip"]) and bytes(p[TCP].payload).startswith(b"HTTP/"),
    "blockpage": lambda p, a: _from(p, a["server"]["ip"]) and _payload(p) > 0,
    "icmp-prohibited": lambda p, a: (ICMP in p and p[ICMP].type == 3 and p[ICMP].code in (9, 10, 13))
    or (ICMPv6DestUnreach in p and p[ICMPv6DestUnreach].code == 1),
}

_NUM = {"ttl": re.compile(r"(?<!IP-ID )(?:IP )?TTL (\d+)"), "ipid": re.compile(r"IP-ID (\d+)")}


def check_evidence(cap, attempt: dict) -> None:
    frames = _frames(str(cap))
    for e in attempt["evidence"]:
        n = e["packet"]
        assert 1 <= n <= len(frames), (attempt["id"], e, "frame out of range")
        p = frames[n - 1]
        pred = PREDICATES.get(e["signal"])
        assert pred is not None, f"no check for evidence signal {e['signal']!r}: add one"
        assert pred(p, attempt), (attempt["id"], e, p.summary())
        m = _NUM["ttl"].search(e["detail"])
        if m and e["signal"] not in ("ttl-mismatch", "trigger"):
            assert _ttl(p) == int(m.group(1)), (attempt["id"], e, _ttl(p))
        if e["signal"] == "ttl-mismatch":
            assert _ttl(p) == int(re.search(r"TTL (\d+)", e["detail"]).group(1)), (attempt["id"], e, _ttl(p))
        m = _NUM["ipid"].search(e["detail"])
        if m and IP in p:
            assert p[IP].id == int(m.group(1)), (attempt["id"], e, p[IP].id)
