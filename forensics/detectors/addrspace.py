"""Special-purpose address space (IANA registries, RFC 6890) and private names."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

#: Answers here can never be a public name's real address: "this network",
#: loopback and the unspecified address are what DNS censors answer with.
NEVER_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "::/128", "::1/128"))

#: Special-purpose space: private (RFC 1918, ULA), CGNAT, link-local,
#: benchmarking (198.18/15), documentation, multicast, reserved and broadcast.
SPECIAL = NEVER_PUBLIC + tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24",
    "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "fc00::/7", "fe80::/10", "ff00::/8", "2001:db8::/32", "100::/64", "::ffff:0:0/96"))

#: Suffixes of names that are private by convention: they may rightly resolve into private space.
PRIVATE_SUFFIXES = (".local", ".lan", ".home", ".internal", ".intranet", ".corp", ".home.arpa", ".localhost",
                    ".in-addr.arpa", ".ip6.arpa", ".localdomain", ".private")


@lru_cache(maxsize=65536)
def special(addr: str) -> str:
    """'' for global unicast; 'never' for loopback/unspecified/this-network; else 'special'."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return ""
    if any(ip in n for n in NEVER_PUBLIC if n.version == ip.version):
        return "never"
    if any(ip in n for n in SPECIAL if n.version == ip.version):
        return "special"
    return ""


def public_name(name: str) -> bool:
    n = name.rstrip(".").lower()
    return "." in n and not n.endswith(PRIVATE_SUFFIXES)


@lru_cache(maxsize=4096)
def _nets(cidrs: tuple[str, ...]):
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def in_any(addr: str, cidrs) -> bool:
    """Whether ``addr`` is in one of ``cidrs`` (a tuple: the controls' ``reachable``)."""
    if not cidrs:
        return False
    return _in_any(addr, tuple(cidrs))


# (the forged-DNS check asks this of every answer address of every query, against the same
# ranges: parsing the address each time cost 6 us a call, a cached answer 0.1 us)
@lru_cache(maxsize=65536)
def _in_any(addr: str, cidrs: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in _nets(cidrs))
