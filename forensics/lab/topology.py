"""The lab's network: who is where, which addresses, which routes.

::

    c1 ──(hop1)── r1 ──(hop2)── r2 ──(hop3)── r3 ══(hop4, delay)══ r4 ── srv (one address per site)
    (client,          (ISP edge)                                      ├── dns (resolver)
     192.0.2.10)                                                      │
    c2 ────────── s1 ═══════════════(delay)═══════════════════════════╯
    (second client, 192.0.2.20, another ISP)

Every link is a pair of TAP devices joined by the user-space wire
(``forensics.lab.wire``); side ``a`` of a link faces the clients.  The routers
forward in the kernel, so TTLs drop and ICMP errors come back for real.  From
c1's capture r1 is hop 1, r2 hop 2, r3 hop 3, r4 hop 4 and the servers hop 5; a
wire device "at hop k" sits on the link ``HOP_LINK[k]`` and its forged packets
reach c1 with their TTL lowered by k-1.  The long-haul links (r3-r4, s1-r4)
carry the delay, so the servers and the resolver are ``DELAY_MS`` one way
beyond any device at hops 1-3, and a device there wins its race by about twice
that.

Only documentation ranges are used: 192.0.2.0/24 for clients and links,
203.0.113.0/24 for servers, 198.51.100.0/24 for what injectors forge,
2001:db8::/32 for IPv6.  No namespace has any link to the root namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DELAY_MS = 20

C1, C1_6 = "192.0.2.10", "2001:db8:1:1::10"
C2, C2_6 = "192.0.2.20", "2001:db8:2:1::20"
RESOLVER, RESOLVER_6 = "203.0.113.53", "2001:db8:53::53"
#: The lab's "public internet": where its servers and resolvers live (for ``--reachable``).
REACHABLE = ("203.0.113.0/24", "2001:db8:5::/64", "2001:db8:53::/64")
FORGED_POOL4 = ["198.51.100.66", "198.51.100.67"]
FORGED_POOL6 = ["2001:db8:bad::66", "2001:db8:bad::67"]

# site name -> last byte of its server address (v4 203.0.113.x, v6 2001:db8:5::x)
SITES = {
    "www.blogs.example": 10,   # the blog platform's home page
    "blogs.example": 10,
    "*.blogs.example": 11,     # every blog of the platform
    "*.diary.example": 12,     # another blog platform (the transit story)
    "www.diary.example": 12,
    "news.example": 20,
    "shop.example": 21,
    "video.example": 22,
    "*.video.example": 22,     # same server as video.example (controls for SNI/Host drops)
    "archive.example": 30,     # the address-block target
    "files.example": 40,       # uploads (PMTU)
    "search.example": 41,
}
SERVFAIL_NAMES = ["broken.example"]
#: Names answered with a pool of addresses (a CDN's), as many as given: 100 make an answer of
#: 1,629 bytes over IPv4 and 2,829 over IPv6, more than a 1,500-byte link carries in one
#: packet, so the resolver's kernel sends it in IP fragments.
POOL_NAMES = {"pool.example": 100}


def pool_addrs(name: str, v6: bool = False) -> list[str]:
    """The addresses of a pool name: 203.0.113.100 on (2001:db8:5::100 on), in the lab's server space."""
    return [f"2001:db8:5::{0x100 + i:x}" if v6 else f"203.0.113.{100 + i}" for i in range(POOL_NAMES[name])]


def site_addr(name: str, v6: bool = False) -> str:
    """The true address of a lab name."""
    last = SITES.get(name)
    if last is None:
        parent = "*." + name.split(".", 1)[1] if "." in name else ""
        last = SITES.get(parent)
    if last is None:
        raise KeyError(name)
    return f"2001:db8:5::{last:x}" if v6 else f"203.0.113.{last}"


def server_addrs() -> tuple[list[str], list[str]]:
    lasts = sorted(set(SITES.values()))
    return [f"203.0.113.{x}" for x in lasts], [f"2001:db8:5::{x:x}" for x in lasts]


@dataclass
class LinkSpec:
    name: str
    a: tuple[str, str]  # (node, ifname), client side
    b: tuple[str, str]  # (node, ifname), server side
    delay_ms: float = 0
    mtu: int = 1500
    devices: list = field(default_factory=list)


NODES = ["c1", "c2", "r1", "r2", "r3", "r4", "s1", "srv", "dns"]
ROUTERS = ["r1", "r2", "r3", "r4", "s1"]


def links() -> list[LinkSpec]:
    return [
        LinkSpec("c1-r1", ("c1", "eth0"), ("r1", "dn0")),
        LinkSpec("r1-r2", ("r1", "up0"), ("r2", "dn0")),
        LinkSpec("r2-r3", ("r2", "up0"), ("r3", "dn0")),
        LinkSpec("r3-r4", ("r3", "up0"), ("r4", "dn0"), delay_ms=DELAY_MS),
        LinkSpec("r4-srv", ("r4", "srv0"), ("srv", "eth0")),
        LinkSpec("r4-dns", ("r4", "dns0"), ("dns", "eth0")),
        LinkSpec("c2-s1", ("c2", "eth0"), ("s1", "dn0")),
        LinkSpec("s1-r4", ("s1", "up0"), ("r4", "dn1"), delay_ms=DELAY_MS),
    ]


# the link a wire device "at hop k" (from c1) sits on
HOP_LINK = {1: "c1-r1", 2: "r1-r2", 3: "r2-r3", 4: "r3-r4"}
# the router that is hop k from c1 (for kernel devices)
HOP_ROUTER = {1: "r1", 2: "r2", 3: "r3", 4: "r4"}

# per node: (ifname, v4/len, v6/len) and routes (ip -batch lines, "route ..." without "ip")
ADDRS = {
    "c1": [("eth0", "192.0.2.10/28", "2001:db8:1:1::10/64")],
    "r1": [("dn0", "192.0.2.1/28", "2001:db8:1:1::1/64"), ("up0", "192.0.2.129/30", "2001:db8:1:12::1/64")],
    "r2": [("dn0", "192.0.2.130/30", "2001:db8:1:12::2/64"), ("up0", "192.0.2.133/30", "2001:db8:1:23::1/64")],
    "r3": [("dn0", "192.0.2.134/30", "2001:db8:1:23::2/64"), ("up0", "192.0.2.137/30", "2001:db8:1:34::1/64")],
    "r4": [("dn0", "192.0.2.138/30", "2001:db8:1:34::2/64"), ("dn1", "192.0.2.142/30", "2001:db8:2:54::2/64"),
           ("srv0", "203.0.113.1/26", "2001:db8:5::1/64"), ("dns0", "203.0.113.49/28", "2001:db8:53::1/64")],
    "srv": [("eth0", None, None)],  # the site addresses, added below
    "dns": [("eth0", "203.0.113.53/28", "2001:db8:53::53/64")],
    "c2": [("eth0", "192.0.2.20/28", "2001:db8:2:1::20/64")],
    "s1": [("dn0", "192.0.2.17/28", "2001:db8:2:1::1/64"), ("up0", "192.0.2.141/30", "2001:db8:2:54::1/64")],
}

ROUTES = {
    "c1": ["route add default via 192.0.2.1", "route add default via 2001:db8:1:1::1"],
    "r1": ["route add default via 192.0.2.130", "route add default via 2001:db8:1:12::2"],
    "r2": ["route add default via 192.0.2.134", "route add 192.0.2.0/24 via 192.0.2.129",
           "route add default via 2001:db8:1:23::2", "route add 2001:db8:1::/48 via 2001:db8:1:12::1"],
    "r3": ["route add default via 192.0.2.138", "route add 192.0.2.0/24 via 192.0.2.133",
           "route add default via 2001:db8:1:34::2", "route add 2001:db8:1::/48 via 2001:db8:1:23::1"],
    "r4": ["route add 192.0.2.0/24 via 192.0.2.137", "route add 192.0.2.16/28 via 192.0.2.141",
           "route add 2001:db8:1::/48 via 2001:db8:1:34::1", "route add 2001:db8:2::/48 via 2001:db8:2:54::1"],
    "srv": ["route add default via 203.0.113.1", "route add default via 2001:db8:5::1"],
    "dns": ["route add default via 203.0.113.49", "route add default via 2001:db8:53::1"],
    "c2": ["route add default via 192.0.2.17", "route add default via 2001:db8:2:1::1"],
    "s1": ["route add default via 192.0.2.142", "route add default via 2001:db8:2:54::2"],
}

# r4 has no default route: anything not in the lab gets "network unreachable" there.

SYSCTL_ALL = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
              "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
              "net.ipv6.conf.default.router_solicitations=0"]
SYSCTL_ROUTER = ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]


def node_commands(node: str, mtus: dict[tuple[str, str], int]) -> list[str]:
    """``ip -batch`` lines that configure one node's interfaces and routes."""
    cmds = []
    for ifname, v4, v6 in ADDRS[node]:
        mtu = mtus.get((node, ifname), 1500)
        cmds.append(f"link set dev {ifname} mtu {mtu} up")
        if node == "srv":
            a4, a6 = server_addrs()
            cmds += [f"addr add {a}/26 dev {ifname}" for a in a4]
            cmds += [f"addr add {a}/64 dev {ifname} nodad" for a in a6]
        else:
            cmds += [f"addr add {v4} dev {ifname}", f"addr add {v6} dev {ifname} nodad"]
    return cmds + ROUTES[node]
