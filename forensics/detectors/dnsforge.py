"""Forged DNS answers, judged against the capture's own resolvers.

Detects: DNS responses the queried resolver did not send, or answers that are
provably false. Racing answers: two or more responses to one query that
disagree, where one departs from the resolver's baseline in this capture (the
IP TTL of its undisputed answers, its fastest round trip, its IP-ID counter)
while another fits it. Answers in special-purpose space (loopback, "this
network", private, CGNAT, link-local, benchmarking, documentation, multicast,
reserved) for a public name, unless the capture's clients reached servers in
that very space (the reachable set is a parameter: ``--reachable``). Another
resolver in the same capture answering the same name in a way CDN variety
cannot explain (an address versus NXDOMAIN, reachable versus special space).
Oddities no resolver produces: an answer from an address that was not asked.
Where the forged answer's IP TTL fits a common initial TTL and puts the sender
nearer than the resolver, it gives the hop.

Known false positives: split-horizon DNS that leaks private addresses of a
public name; a resolver behind an anycast address whose instances sit at
different distances; DNS64 or a local filtering resolver the user chose (which
is deliberate filtering, but not on the path).
"""

from __future__ import annotations

from operator import itemgetter

from ..model import Evidence, Finding
from .addrspace import in_any, public_name, special
from .base import Facts, doc_parts, ev, finding, query_text
from .controls import Controls, prefix_of
from .ttl import TTL_GAP_STRONG, place, too_early

NAME = "dns-forgery"

#: The signals this detector reports, and what each means.
SIGNALS = {
    'dns-race-forged': "answers to one query disagree and one departs from the resolver's baseline (IP TTL, round trip) or their TTLs show two senders",
    'dns-bogon': 'a public name answered only with special-purpose space no client in the capture reached',
    'dns-bogon-never': 'a public name answered with loopback, unspecified or this-network space',
    'dns-cross-resolver': 'another resolver answered the same name with an address where this one said NXDOMAIN, or the reverse',
    'resolver-silent': 'the resolver answered nothing at all in the capture',
    'resolver-answered-others': 'the resolver answered other queries; only this one went unanswered',
}



class DnsForgeryDetector:
    name = NAME
    detects, false_positives = doc_parts(__doc__)

    def run(self, f: Facts, controls: Controls) -> list[Finding]:
        if f.kind != "dns" or f.transport != "udp":
            return []
        controls.settle()  # the capped sets cut to their caps, once after the last add
        resp = f.features.get("responses", ())
        if not resp:
            res = controls.resolvers.get(f.server_ip)
            if res is None or not res.responses:
                return [finding(NAME, "resolver-silent", 1.0,
                                f"{f.server_ip} answered no query at all in this capture")]
            return [finding(NAME, "resolver-answered-others", 1.0,
                            f"{f.server_ip} answered {res.responses} other response(s) in this capture; only this "
                            f"query went unanswered: a query to another resolver would tell a name-specific drop "
                            f"from loss")]
        out = []
        res = controls.resolvers.get(f.server_ip)
        min_rtt = res.min_rtt if res else 0.0
        if len(resp) >= 2 and len({r[2] for r in resp}) >= 2:
            base_ttl = _base_ttl(res)
            # -- per response: does it fit the resolver?
            odd = []
            for r in resp:
                src, ttl, outcome, delay, ipid, frame, inp, flags, qmatch, addrs = r
                why = []
                if src != f.server_ip:
                    why.append(f"it came from {src}, not from the resolver asked ({f.server_ip})")
                if base_ttl is not None and abs(ttl - base_ttl) >= TTL_GAP_STRONG:
                    why.append(f"IP TTL {ttl} where the resolver's other answers have {base_ttl}")
                if too_early(delay, min_rtt):  # against the resolver's fastest undisputed answer
                    why.append(f"it came after {delay * 1000:.1f} ms, the resolver's fastest answer took {min_rtt * 1000:.1f} ms")
                odd.append(why)
            fits = [r for r, why in zip(resp, odd) if not why]
            departs = [(r, why) for r, why in zip(resp, odd) if why]
            # racing answers that disagree
            if departs and fits:
                bad = [r for r, _ in departs]
                good = fits[0]
                detail = (f"{len(resp)} answers raced: {_show(bad[0])} — {departs[0][1][0]}"
                          f"{'; ' + departs[0][1][1] if len(departs[0][1]) > 1 else ''}; "
                          f"the resolver's own answer {_show(good)} came after {good[3] * 1000:.1f} ms")
                out.append(finding(NAME, "dns-race-forged", 1.0 if len(departs[0][1]) >= 2 else 0.9, detail,
                                   [_query(f)] + [ev(r[6], r[5], "forged-answer", _show(r)) for r in bad[:3]]
                                   + [ev(good[6], good[5], "resolver-answer", _show(good))],
                                   hop=_hop(bad, good[1]), trigger="dns-qname"))
            else:
                ttls = sorted({r[1] for r in resp})
                if ttls[-1] - ttls[0] >= TTL_GAP_STRONG:
                    first, last = resp[0], resp[-1]
                    out.append(finding(NAME, "dns-race-forged", 0.8,
                                       f"{len(resp)} answers disagree and came with IP TTLs {'/'.join(map(str, ttls))}: "
                                       f"they had different senders; no undisputed answer of this resolver in the "
                                       f"capture says which one is its own (the first, {_show(first)}, is the usual forgery)",
                                       [_query(f)] + [ev(r[6], r[5], "answer", _show(r)) for r in resp[:3]],
                                       hop=_hop([first], last[1]), trigger="dns-qname"))
        # -- answers in space that cannot hold a public name's address
        if public_name(f.name):
            for r in resp:
                bad = _unreached(r[9], controls)
                if bad:
                    never = any(k == "never" for _, k in bad)
                    base_ttl = _base_ttl(res)
                    out.append(finding(NAME, "dns-bogon-never" if never else "dns-bogon", 1.0 if never else 0.6,
                                       f"the answer {', '.join(a for a, _ in bad)} (frame {r[5]}) is "
                                       f"{'loopback/unspecified space, never' if never else 'special-purpose space no client here reached, not'} "
                                       f"a public name's address",
                                       [_query(f), ev(r[6], r[5], "bogon-answer", ", ".join(a for a, _ in bad))],
                                       never=never, trigger="dns-qname", hop=_hop([r], base_ttl) if base_ttl else None))
                    break
        # -- another resolver disagrees in a way CDN variety cannot explain (not for a query whose name
        # the capture cut off: every unknown name would be "the same name")
        if not f.name:
            return out
        mine = resp[0][2]
        other = other_resolver(controls, f.name, f.features.get("qtype", ""), f.server_ip, mine)
        if other is not None:
            ip, o = other
            out.append(finding(NAME, "dns-cross-resolver", 0.8,
                               f"resolver {ip} answered {o} for the same name where {f.server_ip}'s first "
                               f"answer was {mine}", [_query(f), ev(resp[0][6], resp[0][5], "answer", mine)],
                               trigger="dns-qname"))
        return out


def other_resolver(controls: Controls, name: str, qtype: str, server_ip: str, mine: str) -> tuple[str, str] | None:
    """The first resolver, in address order, other than ``server_ip`` that answered ``name``
    and ``qtype`` in a way CDN variety cannot explain, where ``server_ip`` first answered
    ``mine``: an address where it said NXDOMAIN, or the reverse. Its address and its
    outcome; None without one."""
    mine_nx = mine == "NXDOMAIN"
    # the resolvers in address order; of each, the smallest outcome that disagrees
    for ip, nx, other in controls.names.get((name, qtype), ()):
        o = other if mine_nx else "NXDOMAIN" if nx else None
        if o is not None and ip != server_ip:
            return ip, o
    return None


def _unreached(addrs: tuple, controls: Controls) -> list[tuple[str, str]]:
    """``addrs`` (an answer's addresses) with the kind of special-purpose space of each, where
    every one is in such space and neither in the space given as reachable nor in a prefix a
    client here reached; empty otherwise (also where ``addrs`` is)."""
    bad = []
    for a in addrs:
        k = special(a)
        if not k or in_any(a, controls.reachable) or prefix_of(a) in controls.reached:
            return []
        bad.append((a, k))
    return bad


def asks(f: Facts) -> bool | tuple:
    """What ``run`` reads of the controls for ``f``: False when it finds nothing whatever
    they hold; a key for ``stands`` when the only findings it can make are a resolver that
    disagrees (``other_resolver``) and an answer only in special-purpose space that a client
    may yet have reached (``_unreached``); True when its findings depend on the controls in
    other ways (no response, responses that disagree). The pipeline judges the first two
    kinds in its first stage, before the controls are complete, and asks ``stands`` once
    they are. Every check in ``run`` has its case here."""
    if f.kind != "dns" or f.transport != "udp":
        return False
    resp = f.features.get("responses", ())
    if not resp:
        return True  # resolver-silent, resolver-answered-others
    if len(resp) >= 2 and len({r[2] for r in resp}) >= 2:
        return True  # racing answers
    return key_of(f.name, f.features.get("qtype", ""), f.server_ip, resp[0][2], [r[9] for r in resp])


def key_of(name: str, qtype: str, server_ip: str, first: str, answers) -> tuple | bool:
    """``asks`` for a query of ``name`` and ``qtype`` to ``server_ip`` whose responses agree:
    ``first`` is the first one's outcome, ``answers`` each one's sorted addresses."""
    bogons = ()
    if public_name(name):  # the answers that are only special-purpose space
        bogons = tuple([a for a in answers if a and all([special(x) for x in a])])
    other = (name, qtype, server_ip, first) if name else None
    return (other, bogons) if other is not None or bogons else False


def stands(controls: Controls, key: tuple) -> bool:
    """Whether ``run`` finds nothing, against ``controls``, for the attempt ``asks`` gave
    ``key`` for."""
    other, bogons = key
    if bogons:
        controls.settle()  # (``reached`` cut to its cap)
        for addrs in bogons:
            if _unreached(addrs, controls):
                return False
    return other is None or other_resolver(controls, *other) is None


def _base_ttl(res) -> int | None:
    """The IP TTL of most of the resolver's undisputed answers, the first seen of equal counts
    (Counter.most_common(1), without its heap); None without any. Looked up only where a
    finding needs it: most answers raise none."""
    return max(res.undisputed_ttls.items(), key=itemgetter(1))[0] if res and res.undisputed_ttls else None


def _query(f: Facts) -> Evidence:
    """The evidence line of the query itself (built only for a finding: most answers raise none)."""
    return ev(f.input, f.features.get("query_frame", 0), "query", query_text(f.features.get("qtype", ""), f.name))


def _show(r) -> str:
    return f"{r[2]} (frame {r[5]}, IP TTL {r[1]}, +{r[3] * 1000:.1f} ms)"


def _hop(bad, resolver_ttl):
    return place([r[1] for r in bad], resolver_ttl)[0]
