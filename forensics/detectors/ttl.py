"""TTL and IP-ID arithmetic shared by the detectors.

Hops are numbered as traceroute numbers them, from the capture point: a packet
sent by the device at hop k arrives with its TTL lowered by k - 1.
"""

from __future__ import annotations

#: Initial TTLs (IPv4 TTL / IPv6 hop limit) that stacks actually use: 32 (old
#: Windows 9x, some embedded stacks), 64 (Linux, BSD, macOS, most routers and
#: middleboxes), 128 (Windows), 255 (Cisco IOS, Solaris, many network devices).
INITIAL_TTLS = (32, 64, 128, 255)

#: Two TTLs of one sender along one path differ by at most this much without a
#: route change: one hop of slack for load-balanced (ECMP) paths of unequal length.
TTL_SLACK = 1

#: A difference of this many hops between a packet and its supposed sender's
#: other packets means another sender (a single route change rarely moves a
#: path by two hops inside one connection, and then it moves all later packets).
TTL_GAP_STRONG = 2

#: IP-IDs of a sender with a counter (per-connection or global) advance by small
#: steps between its packets; a busy host's global counter advances by its
#: packet rate times the gap. Within one connection a step beyond this, or
#: backwards, is outside the sender's progression.
IPID_MAX_STEP = 2048


def initial_ttl(observed: int) -> int:
    """The nearest common initial TTL at or above ``observed``."""
    for t in INITIAL_TTLS:
        if observed <= t:
            return t
    return 255


def hop_of(observed: int) -> int:
    """The hop number of the sender, assuming it used the nearest common initial TTL."""
    return initial_ttl(observed) - observed + 1


def mirrored_hop(trigger_ttl: int, observed: int) -> int | None:
    """If a device copied the trigger packet's TTL into its reply, the hop it sits at.

    The trigger, seen with TTL t at the capture point, reaches hop k with
    t - (k - 1); a reply sent with that TTL comes back with t - 2(k - 1).
    """
    d = trigger_ttl - observed
    if d < 0 or d % 2:
        return None
    return d // 2 + 1


def ipid_step(a: int, b: int) -> int:
    """How far IP-ID ``b`` is ahead of ``a``, modulo 2^16 (0..65535)."""
    return (b - a) & 0xFFFF


def sequential_ipids(ids: list[int]) -> bool:
    """True if these IP-IDs (in arrival order, zeros removed) look like one counter."""
    if len(ids) < 2:
        return False
    return all(0 < ipid_step(a, b) <= IPID_MAX_STEP for a, b in zip(ids, ids[1:]))
