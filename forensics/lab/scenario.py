"""Scenarios: what a scenario is made of, the client steps, and the truth they imply.

A ``Scenario`` names the devices it puts on the path, the capture points, and an
ordered list of ``Step``s; each step is one real client run (dig, curl, openssl or
a Python client) that makes known attempts, each with the verdict the scenario's
definition gives it.  The truth file is written from these definitions, never
from the analyser.

Capture points: ``client`` (c1's interface, ``client.pcap``), ``client2`` (c2's,
``client2.pcap``), ``r1-up`` (r1's upstream interface, the ISP's border,
``r1-up.pcap``).  c1's attempts appear in ``client`` and ``r1-up``; c2's in
``client2``.  Hops in the truth are counted from the capture point: a device at
hop k from c1 is at hop k-1 from ``r1-up``.

Truth join key: an attempt is identified by ``(capture, kind, client.ip,
server.ip, server.port, name, seq)`` where ``seq`` is the 0-based ordinal of the
attempt among those with the same first six fields, in time order.  Client ports
are ephemeral and written as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import VERDICT_CLASS
from . import clients as C
from .topology import C1, C1_6, C2, C2_6, RESOLVER, RESOLVER_6, site_addr

# the contract's verdict -> class table, from the one place it lives
CLASS = VERDICT_CLASS

CAPTURES = {"client": ("c1", "eth0"), "client2": ("c2", "eth0"), "r1-up": ("r1", "up0")}
CAPTURES_OF = {"c1": ["client", "r1-up"], "c2": ["client2"]}


@dataclass(frozen=True)
class Expect:
    """The verdict an attempt gets; ``hop`` counted from the client's capture, None
    when the interference cannot be placed from the capture by design.  The
    pseudo-trigger ``ecn-syn`` means trigger ``ecn`` on a connection that never
    opens (so the attempt is of kind ``tcp``)."""

    verdict: str = "ok"
    trigger: str = "none"
    hop: int | None = None


OK = Expect()


# verdicts under which the client never gets to send a payload: the attempt is
# then of kind "tcp" with no name, whatever the client meant to send
NO_PAYLOAD = {"ip-block", "connection-refused"}


@dataclass
class Attempt:
    kind: str
    client: str
    server: str
    port: int
    name: str
    expect: Expect

    def __post_init__(self):
        if self.kind in ("tls", "http") and (self.expect.verdict in NO_PAYLOAD or self.expect.trigger == "ecn-syn"):
            self.kind, self.name = "tcp", ""
        if self.expect.trigger == "ecn-syn":
            self.expect = Expect(self.expect.verdict, "ecn", self.expect.hop)


@dataclass
class Step:
    node: str
    argv: list[str]
    attempts: list[Attempt]
    timeout: float = 6.0
    sysctl: list[str] = field(default_factory=list)  # set in the node before the step
    python: bool = False  # argv is a forensics.lab.clients command line


@dataclass
class Scenario:
    name: str
    description: str
    steps: list[Step]
    wire: list[tuple[str, str, dict]] = field(default_factory=list)  # (link, device kind, params)
    kernel: list[tuple] = field(default_factory=list)  # ("ip-block", hop, addrs, mode) | ("pmtu", link, mtu)
    captures: list[str] = field(default_factory=lambda: ["client"])


def _client_ip(node: str, v6: bool) -> str:
    return {("c1", False): C1, ("c1", True): C1_6, ("c2", False): C2, ("c2", True): C2_6}[(node, v6)]


def lookup(node: str, name: str, qtype: str = "A", v6: bool = False, expect: Expect = OK) -> Step:
    """dig: one query to the lab's resolver (over IPv6 when v6)."""
    resolver = RESOLVER_6 if v6 else RESOLVER
    argv = C.argv_dig(resolver, name, qtype)
    return Step(node, argv, [Attempt("dns", _client_ip(node, v6), resolver, 53, name, expect)], timeout=5)


def https(node: str, name: str, v6: bool = False, expect: Expect = OK, tool: str = "curl",
          port: int = 443, ip: str | None = None) -> Step:
    """One TLS connection with SNI ``name`` (curl, openssl s_client, or python ssl)."""
    ip = ip or site_addr(name, v6)
    if tool == "openssl":
        argv, py = C.argv_openssl(name, ip, port), False
    elif tool in ("python", "python-big"):
        argv, py = ["tls", name, ip, str(port)] + (["--big"] if tool == "python-big" else []), True
    else:
        argv, py = C.argv_curl(f"https://{name}:{port}/", name, ip, port), False
    return Step(node, argv, [Attempt("tls", _client_ip(node, v6), ip, port, name, expect)], python=py)


def http(node: str, name: str, path: str = "/", v6: bool = False, expect: Expect = OK,
         port: int = 80, ip: str | None = None) -> Step:
    """One HTTP request with curl; the attempt's name is the Host header as sent
    (``name:port`` off port 80)."""
    ip = ip or site_addr(name, v6)
    argv = C.argv_curl(f"http://{name}:{port}{path}", name, ip, port)
    host = name if port == 80 else f"{name}:{port}"  # the Host header as curl sends it
    return Step(node, argv, [Attempt("http", _client_ip(node, v6), ip, port, host, expect)])


def py(node: str, mode: str, name: str, args: list[str], kind: str = "http", v6: bool = False,
       expect: Expect = OK, port: int = 80, timeout: float = 8.0, sysctl: list[str] | None = None) -> Step:
    """A Python socket client (``forensics.lab.clients``) making one attempt."""
    ip = site_addr(name, v6)
    return Step(node, [mode, ip, str(port), name] + args,
                [Attempt(kind, _client_ip(node, v6), ip, port, name, expect)],
                timeout=timeout, python=True, sysctl=sysctl or [])


def truth(scenario: Scenario) -> dict:
    """The scenario's truth.json, in the report's own attempt shape."""
    attempts, counts = [], {}
    for step in scenario.steps:
        for capture in CAPTURES_OF[step.node]:
            if capture not in scenario.captures:
                continue
            for a in step.attempts:
                key = (capture, a.kind, a.client, a.server, a.port, a.name)
                seq = counts.get(key, 0)
                counts[key] = seq + 1
                entry = {
                    "capture": f"{capture}.pcap", "kind": a.kind,
                    "client": {"ip": a.client, "port": 0}, "server": {"ip": a.server, "port": a.port},
                    "name": a.name, "seq": seq, "verdict": a.expect.verdict,
                    "class": CLASS[a.expect.verdict], "trigger": a.expect.trigger,
                }
                hop = a.expect.hop
                if hop is not None and capture == "r1-up":
                    hop = hop - 1 if hop > 1 else None
                if hop is not None:
                    entry["hop"] = {"from_capture": hop}
                attempts.append(entry)
    return {"scenario": scenario.name, "description": scenario.description,
            "join_key": ["capture", "kind", "client.ip", "server.ip", "server.port", "name", "seq"],
            "attempts": attempts}
