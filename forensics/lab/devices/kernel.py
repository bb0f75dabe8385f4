"""Kernel devices: firewall rules and MTUs in a router namespace, applied as real rules.

- ``ip-block``: the router at hop ``hop`` blocks traffic to ``addrs``:
  ``mode`` ``drop`` (silently) or ``prohibited`` (ICMP/ICMPv6 "administratively
  prohibited", sent by the router's own stack from its own address).
- ``pmtu-blackhole``: the link ``link`` gets MTU ``mtu`` on both ends, and both
  routers at its ends drop the ICMP "fragmentation needed" / ICMPv6 "packet too
  big" they would send about it: large DF packets vanish, small ones pass.

Each builder returns ``(commands, mtus)``: ``commands`` is a list of ``(node,
argv)`` run in the node's namespace, ``mtus`` maps ``(node, ifname)`` to an MTU.
Rules use iptables/ip6tables when installed, nft otherwise.
"""

from __future__ import annotations

import ipaddress


def _nft_base(chain: str, hook: str) -> list[list[str]]:
    return [["nft", "add", "table", "inet", "fxlab"],
            ["nft", "add", "chain", "inet", "fxlab", chain, f"{{ type filter hook {hook} priority 0; }}"]]


def ip_block(hop_router: str, addrs: list[str], mode: str, fw: str):
    cmds = []
    if fw == "nft":
        cmds += [(hop_router, c) for c in _nft_base("fxforward", "forward")]
    for a in addrs:
        v6 = ipaddress.ip_address(a).version == 6
        if fw == "nft":
            fam = "ip6" if v6 else "ip"
            verdict = (["reject", "with", "icmpv6" if v6 else "icmp", "type", "admin-prohibited"]
                       if mode == "prohibited" else ["drop"])
            cmds.append((hop_router, ["nft", "add", "rule", "inet", "fxlab", "fxforward", fam, "daddr", a] + verdict))
        else:
            tool = "ip6tables" if v6 else "iptables"
            target = (["REJECT", "--reject-with", "adm-prohibited" if v6 else "icmp-admin-prohibited"]
                      if mode == "prohibited" else ["DROP"])
            cmds.append((hop_router, [tool, "-A", "FORWARD", "-d", a, "-j"] + target))
    return cmds, {}


def pmtu_blackhole(link, mtu: int, fw: str):
    cmds, mtus = [], {}
    for node, ifname in (link.a, link.b):
        mtus[(node, ifname)] = mtu
        if fw == "nft":
            cmds += [(node, c) for c in _nft_base("fxoutput", "output")]
            cmds.append((node, ["nft", "add", "rule", "inet", "fxlab", "fxoutput", "icmp", "type",
                                "destination-unreachable", "icmp", "code", "frag-needed", "drop"]))
            cmds.append((node, ["nft", "add", "rule", "inet", "fxlab", "fxoutput", "icmpv6", "type", "packet-too-big",
                                "drop"]))
        else:
            cmds.append((node, ["iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed",
                                "-j", "DROP"]))
            cmds.append((node, ["ip6tables", "-A", "OUTPUT", "-p", "icmpv6", "--icmpv6-type", "packet-too-big",
                                "-j", "DROP"]))
    return cmds, mtus
