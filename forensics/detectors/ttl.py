"""TTL, IP-ID and timing arithmetic shared by the detectors.

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


#: A reply can come from its supposed sender no sooner than one round trip after
#: the packet it answers; path jitter inside one exchange rarely halves the round
#: trip, so anything faster than this share of it came from nearer.
EARLY_FRACTION = 0.5
#: Below this round trip (a LAN) timing cannot separate a sender from a box beside it.
MIN_RTT_FOR_TIMING = 0.002

#: How much each independent sign says a packet was not sent by its supposed sender.
WEIGHT = {"unreachable-trigger": 0.9, "race": 0.9, "ttl-gap": 0.85, "early": 0.75, "ipid": 0.5, "burst": 0.5,
          "shape": 0.3, "ttl-gap-weak": 0.25}


def too_early(delay: float | None, rtt: float | None) -> bool:
    """True if a reply ``delay`` after its trigger is too fast to have crossed the round trip ``rtt``."""
    return delay is not None and rtt is not None and rtt >= MIN_RTT_FOR_TIMING and delay < EARLY_FRACTION * rtt


def combine(signs) -> float:
    """Confidence from independent signs: 1 - the product of (1 - weight)."""
    left = 1.0
    for k in signs:
        left *= 1.0 - WEIGHT[k]
    return round(1.0 - left, 2)


def place(ttls, server_ttl: int | None):
    """(hop tuple for the report or None, why not) for packets of one sender seen with ``ttls``."""
    if max(ttls) - min(ttls) > TTL_SLACK:
        return None, f"the TTLs vary ({min(ttls)}..{max(ttls)}), so TTL does not place their sender"
    t = ttls[0]
    h = hop_of(t)
    server = hop_of(server_ttl) if server_ttl else None
    if server is not None and h > server:
        return None, (f"TTL {t} would put the sender beyond the server (hop {h} > {server}): it did not start "
                      f"from a common initial TTL, so it cannot be placed")
    return (h, h, h, server, "ttl"), ""


def placed_text(hop, ttl: int) -> str:
    """The summary's words for a placement made by ``place``."""
    h, _, _, server, _ = hop
    return (f"; TTL {ttl} (initial {initial_ttl(ttl)}) places the sender at hop {h}"
            + (f", the server at hop {server}" if server else ""))
