"""The verdict rules: ordered data, first match wins.

Each rule names the signals it needs (``all_of``), the signals that forbid it
(``none_of``), the verdict, the trigger and the confidence it gives, and how
its summary is written (``summary`` lists the signals whose details make the
sentence). Rule ids are stable: reports cite them, and ``RULES_VERSION``
changes whenever a rule is added, removed or reordered.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES_VERSION = "2026.11.21-2"


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
           "dns-disagreeing-answers", "server-side-after-reset", "conflicting-server-data",
           "ecn-syn-unanswered", "data-answered-by-reset")

RULES: tuple[Rule, ...] = (
    Rule("endpoint.refused", "connection-refused", ("syn-rst",), ("exchange-complete",), "none", 0.85,
         ("syn-rst",), "The server's side answered the SYN with a reset and no SYN-ACK ever came: the port "
         "is closed. (A forged reset that races a real SYN-ACK is caught by the injection rules first.)"),
    Rule("endpoint.dns-error", "dns-failure", ("dns-error",), ("dns-answered",), "none", 0.8,
         ("dns-error",), "The resolver answered every copy of the query with an error rcode."),
    Rule("ok.exchange", "ok", ("exchange-complete",), TROUBLE, "none", 0.95, ("exchange-complete",),
         "The exchange completed: a ServerHello, an HTTP response, or data both ways."),
    Rule("ok.dns", "ok", ("dns-answered",), TROUBLE, "none", 0.95, ("dns-answered",),
         "The resolver answered (an address, or NXDOMAIN) and nothing else raced it."),
    Rule("fallback.inconclusive", "inconclusive", (), (), "unknown", 0.0, ("*",),
         "Nothing above matched: the summary says what the packets show and what is missing."),
)
