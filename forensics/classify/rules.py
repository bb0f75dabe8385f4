"""The verdict rules: ordered data, first match wins.

Each rule names the signals it needs (``all_of``), the signals that forbid it
(``none_of``), the verdict, the trigger and the confidence it gives, and how
its summary is written (``summary`` lists the signals whose details make the
sentence). Rule ids are stable: reports cite them, and ``RULES_VERSION``
changes whenever a rule is added, removed or reordered.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES_VERSION = "2026.11.23-1"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    verdict: str
    all_of: tuple[str, ...]
    none_of: tuple[str, ...] = ()
    trigger: str = "none"
    confidence: float = 0.9
    summary: tuple[str, ...] = ()
    doc: str = ""
    # signals that raise confidence when present, each by its strength times boost_step, up to cap
    boost: tuple[str, ...] = ()
    boost_step: float = 0.0
    cap: float = 0.99


#: Signals that say something went wrong; an "ok" rule must not see any of them.
TROUBLE = ("syn-rst", "syn-unanswered", "payload-unanswered", "dns-unanswered", "dns-error",
           "dns-disagreeing-answers", "dns-answers-cut", "server-side-after-reset", "conflicting-server-data",
           "ecn-syn-unanswered", "data-answered-by-reset",
           "rst-forged", "rst-suspect", "rst-idle", "blockpage-forged", "dns-race-forged", "dns-bogon", "dns-bogon-never",
           "dns-cross-resolver", "hello-dropped", "request-dropped", "payload-dropped", "big-segments-lost",
           "syn-dropped", "icmp-prohibited")

_R = Rule
RULES: tuple[Rule, ...] = (
    # ---- deliberate: forged packets (the packets prove another sender)
    _R("deliberate.rst", "injected-rst", ("rst-forged",), (), "*", 1.0, ("rst-forged", "trigger-refined"),
       "Resets from the server's side that the server did not send: at least two independent signals "
       "(the race, a TTL gap of 2+ hops, arriving sooner than the round trip allows, an IP-ID outside the "
       "server's sequence, a burst). Confidence combines them."),
    _R("deliberate.blockpage", "injected-blockpage", ("blockpage-forged",), (), "*", 1.0,
       ("blockpage-forged", "trigger-refined"),
       "An HTTP response the server did not send: TTL/IP-ID unlike the server's, faster than the round trip, "
       "or contradicted by the server's real response; a block page's shape adds to it."),
    _R("deliberate.dns-race", "forged-dns", ("dns-race-forged",), (), "dns-qname", 1.0, ("dns-race-forged", "dns-bogon"),
       "Two or more answers to one query disagree and one of them departs from the resolver's baseline "
       "in this capture (IP TTL, round trip) while another fits it."),
    _R("deliberate.dns-bogon-race", "forged-dns", ("dns-disagreeing-answers", "dns-bogon"), (), "dns-qname", 0.9,
       ("dns-bogon", "dns-disagreeing-answers"),
       "Answers to one query disagree and one of them is special-purpose space for a public name: the "
       "impossible one was forged."),
    _R("deliberate.dns-never", "forged-dns", ("dns-bogon-never",), (), "dns-qname", 0.95, ("dns-bogon-never",),
       "A public name answered with loopback or unspecified space: no real answer looks like that."),
    _R("deliberate.dns-bogon-cross", "forged-dns", ("dns-bogon", "dns-cross-resolver"), (), "dns-qname", 0.9,
       ("dns-bogon", "dns-cross-resolver"),
       "A public name answered with special-purpose space, and another resolver in the capture answered it "
       "differently."),
    # ---- middlebox faults that look like censorship: judged before the name-based drops
    _R("fault.idle", "idle-timeout-reset", ("rst-idle",), (), "idle", 0.85, ("rst-idle",),
       "A reset from nearer than the server hit the first packet after the connection sat idle, after the "
       "exchange had worked: a stateful device forgot the connection."),
    _R("fault.pmtu", "pmtu-blackhole", ("big-segments-lost",), (), "size", 0.85, ("big-segments-lost",),
       "Full-size segments vanish while smaller ones of the same flow arrive, and no ICMP "
       "\"fragmentation needed\" comes back."),
    _R("fault.option-stripping", "option-stripping", ("wscale-stripped",), ("exchange-complete",), "none", 0.85,
       ("wscale-stripped", "payload-acked-unanswered"),
       "The SYN-ACK reached the client without the window scale the client offered, yet the server's windows "
       "only make sense scaled (read unscaled, its window's right edge moves back by half its offer or more): "
       "the option was removed on the path, the client sends into windows 2^k times too small, and the "
       "exchange did not complete. The box changes no TTL: the capture cannot place it."),
    _R("fault.tls-size", "tls-intolerance", ("hello-dropped", "control-smaller-hello-ok"), ("control-other-name-ok",),
       "size", 0.8, ("hello-dropped", "control-smaller-hello-ok", "control-same-name-ok"),
       "A big ClientHello vanished where smaller ones to the same server passed, and no other name passed "
       "with a hello of this size."),
    _R("fault.tls-size-same-name", "tls-intolerance", ("hello-dropped", "control-smaller-hello-ok", "control-same-name-ok"),
       (), "size", 0.85, ("hello-dropped", "control-smaller-hello-ok", "control-same-name-ok"),
       "A big ClientHello vanished where the same name with a smaller hello passed at the same server."),
    _R("fault.ecn-in-flow", "ecn-blackhole", ("ecn-syn-unanswered",), (), "ecn", 0.85, ("ecn-syn-unanswered",),
       "SYNs asking for ECN went unanswered and the same connection's plain SYN was answered."),
    _R("fault.ecn", "ecn-blackhole", ("control-plain-syn-ok",), (), "ecn", 0.8, ("syn-unanswered", "control-plain-syn-ok"),
       "SYNs asking for ECN went unanswered while plain SYNs to the same server were answered."),
    # ---- deliberate: silent drops, with their controls
    _R("deliberate.sni-drop", "sni-drop", ("hello-dropped", "control-other-name-ok"), ("control-same-name-ok",),
       "sni", 0.85, ("hello-dropped", "control-other-name-ok", "control-name-ok-elsewhere"),
       "The ClientHello vanished after a completed handshake, and other names completed at the same server."),
    _R("deliberate.host-drop", "host-drop", ("request-dropped", "control-other-name-ok"), ("control-same-name-ok",),
       "*", 0.85, ("request-dropped", "control-other-name-ok", "control-name-ok-elsewhere", "trigger-refined"),
       "The HTTP request vanished after a completed handshake, and other Hosts completed at the same server."),
    _R("deliberate.sni-drop-filtered", "sni-drop", ("hello-dropped", "control-name-filtered"),
       ("control-same-name-ok", "control-smaller-hello-ok"), "sni", 0.75, ("hello-dropped", "control-name-filtered", "control-name-ok-elsewhere"),
       "The ClientHello vanished after a completed handshake, and the same name met forged packets elsewhere in "
       "the capture."),
    _R("deliberate.host-drop-filtered", "host-drop", ("request-dropped", "control-name-filtered"),
       ("control-same-name-ok",), "host", 0.75,
       ("request-dropped", "control-name-filtered", "control-name-ok-elsewhere"),
       "The HTTP request vanished after a completed handshake, and the same name met forged packets elsewhere "
       "in the capture."),
    _R("deliberate.sni-drop-elsewhere", "sni-drop", ("hello-dropped", "control-name-ok-elsewhere"),
       ("control-same-name-ok", "control-smaller-hello-ok"), "sni", 0.7,
       ("hello-dropped", "control-name-ok-elsewhere"),
       "The ClientHello vanished after a completed handshake, and the same name completed at the same server "
       "from another vantage point of the folder (a capture sharing no client with this one). A box on this "
       "path that drops every hello looks the same: the confidence says so."),
    _R("deliberate.host-drop-elsewhere", "host-drop", ("request-dropped", "control-name-ok-elsewhere"),
       ("control-same-name-ok",), "*", 0.7, ("request-dropped", "control-name-ok-elsewhere", "trigger-refined"),
       "The HTTP request vanished after a completed handshake, and the same Host completed at the same server "
       "from another vantage point of the folder. A box on this path that drops every request looks the same: "
       "the confidence says so."),
    _R("deliberate.ip-icmp", "ip-block", ("icmp-prohibited",), (), "ip", 0.9, ("icmp-prohibited",),
       "A router answered the SYN with ICMP \"administratively prohibited\"."),
    _R("deliberate.ip-drop", "ip-block", ("syn-dropped", "control-other-addresses-ok"), (), "ip", 0.6,
       ("syn-dropped", "control-other-addresses-ok"),
       "Retransmitted SYNs to one address went unanswered while other addresses answered. A server that is "
       "down looks the same: the confidence says so."),
    # ---- the endpoints
    _R("endpoint.refused", "connection-refused", ("syn-rst",), ("exchange-complete",), "none", 0.85,
       ("syn-rst",), "The server's side answered the SYN with a reset and no SYN-ACK ever came: the port "
       "is closed. (A forged reset that races a real SYN-ACK is caught by the injection rules first.)"),
    _R("endpoint.server-reset", "server-reset", ("rst-from-server", "data-answered-by-reset"), (), "none", 0.8,
       ("data-answered-by-reset", "rst-from-server"),
       "The server's side answered the client's data with a reset whose TTL and IP-ID fit the server's own "
       "packets: the server itself reset the connection (also after a completed exchange)."),
    _R("endpoint.server-reset-early", "server-reset", ("rst-from-server",), ("exchange-complete",), "none", 0.8,
       ("rst-from-server",), "The reset's TTL and IP-ID fit the server's own packets."),
    _R("endpoint.server-timeout", "server-timeout", ("payload-acked-unanswered",), ("rst-suspect", "rst-forged"),
       "none", 0.8,
       ("payload-acked-unanswered",), "The server acknowledged the request and never answered."),
    _R("endpoint.dns-error", "dns-failure", ("dns-error",), ("dns-answered",), "none", 0.8,
       ("dns-error",), "The resolver answered every copy of the query with an error rcode."),
    _R("endpoint.dns-icmp", "dns-failure", ("dns-icmp-error",), ("dns-answered",), "none", 0.8,
       ("dns-icmp-error",), "The query was answered by an ICMP error (port or host unreachable) from the resolver."),
    _R("endpoint.dns-silent", "dns-failure", ("dns-unanswered", "resolver-silent"), (), "none", 0.6,
       ("dns-unanswered", "resolver-silent"),
       "The query went unanswered and the resolver answered nothing else in the capture either."),
    # ---- ok
    _R("ok.exchange", "ok", ("exchange-complete",), TROUBLE, "none", 0.95, ("exchange-complete", "wscale-stripped"),
       "The exchange completed: a ServerHello, an HTTP response, or data both ways. A window scale removed "
       "on the path is named in the summary: this exchange fitted in the windows, bigger ones will not."),
    _R("ok.dns-unread", "ok", ("dns-answered", "dns-response-cut"), TROUBLE, "none", 0.6,
       ("dns-answered", "dns-response-cut"),
       "The resolver answered and nothing raced it, but the capture holds only part of the response: its "
       "answers, where a lone forged answer would show (special-purpose space, other resolvers disagreeing), "
       "were not captured. Its header and its IP TTL were: a lower confidence, and the summary says what would "
       "settle it."),
    _R("ok.dns", "ok", ("dns-answered",), TROUBLE, "none", 0.95, ("dns-answered",),
       "The resolver answered (an address, or NXDOMAIN) and nothing else raced it."),
    # ---- failed, and the packets do not say why
    _R("inconclusive.missing-control", "inconclusive", ("control-missing",), (), "unknown", 0.0,
       ("hello-dropped", "request-dropped", "payload-dropped", "syn-dropped", "rst-suspect",
        "control-other-name-ok-elsewhere", "control-missing"),
       "Something failed in a way a filter could cause, but the capture has no control attempt to tell (other "
       "names that completed only at another vantage point of the folder are no control for this path)."),
    _R("fallback.inconclusive", "inconclusive", (), (), "unknown", 0.0, ("*",),
       "Nothing above matched: the summary says what the packets show and what is missing."),
)
