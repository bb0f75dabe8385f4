"""The capture's own controls: what other attempts saw at the same server, for
the same name, from the same resolver.

Memory is bounded by the number of distinct servers, names and resolvers (each
set is capped), never by the number of attempts, so the controls can be built
while attempts stream past and merged across parallel workers.
"""

from __future__ import annotations

import heapq
import ipaddress
import os
from collections import Counter
from functools import lru_cache
from dataclasses import dataclass, field

from .base import Facts

#: Paths remembered per (server, port, Host) and outcome: enough to name a control.
MAX_NAMES = 32
#: Names remembered per server port and outcome. The set answers "did this very name
#: complete here?", so it must hold every name a busy server serves (a CDN address
#: serves hundreds); past the cap the smallest are kept and the answer may be "no".
MAX_NAMES_PER_PORT = 2048
#: Names a control finding lists (three) plus the attempt's own, which is left out.
NAMES_SHOWN = 4
#: Resolvers remembered per name for the cross-resolver comparison.
MAX_RESOLVERS = 16
#: Prefixes remembered as reached, and names met by forged packets: membership sets
#: (a few MB at most), past the cap the smallest are kept.
MAX_PREFIXES = 65536
#: (server, port, host) keys whose paths are remembered.
MAX_PATH_KEYS = 4096
#: Distinct client addresses remembered per input, to tell vantage points apart. A
#: capture taken on one host or in one office holds a handful; past this many it was
#: taken where many clients pass (a border, a LAN span) and is one vantage point with
#: every other input of its folder (which is how the controls judged before).
MAX_VANTAGE_CLIENTS = 64
#: Clients remembered per completed (server, port, name); past it the name counts as
#: completed from every vantage point, the cautious answer.
MAX_NAME_CLIENTS = 8
#: Local signals that prove packets were forged on the path.
FORGED = frozenset({"rst-forged", "blockpage-forged"})
#: Local signals that say a connection was interfered with (its path is a failing path).
INTERFERENCE = frozenset({"rst-forged", "blockpage-forged", "payload-dropped", "hello-dropped", "request-dropped"})
#: The signals of an attempt whose only finding is a completed exchange (``Controls.add_exchange``).
_EXCHANGE = frozenset({"exchange-complete"})


@dataclass(slots=True)
class ServerStats:
    """What the attempts at one server address showed. Only what a cross detector reads is
    kept: a border capture meets servers by the hundred thousand, and each field is paid for
    by every one of them."""

    attempts: int = 0
    synack: int = 0  # attempts whose SYN got a SYN-ACK
    plain_syn_answered: int = 0  # SYN-ACK to a SYN without ECN
    completed: int = 0
    hello_ok_max: int = 0  # largest ClientHello that got a ServerHello
    # port -> {name whose exchange completed there: the clients that completed it (None:
    # more than MAX_NAME_CLIENTS)}, per port (a capped set of (port, name) pairs kept the
    # smallest, so port 80's names crowded out every name of port 443); None until a name
    # completes here (most servers of a scan or a flood never see one)
    ok_names: dict | None = None

    def names_at(self, port: int) -> dict:
        """The names that completed at ``port``, with their clients (empty: none)."""
        return self.ok_names.get(port, _NO_NAMES) if self.ok_names else _NO_NAMES

    def names_to_fill(self, port: int) -> dict:
        """The names completed at ``port``, to add to (made on first use)."""
        if self.ok_names is None:
            self.ok_names = {}
        return self.ok_names.setdefault(port, {})

    def merge(self, o: "ServerStats") -> None:
        self.attempts += o.attempts
        self.synack += o.synack
        self.plain_syn_answered += o.plain_syn_answered
        self.completed += o.completed
        self.hello_ok_max = max(self.hello_ok_max, o.hello_ok_max)
        if o.ok_names:
            for port, names in o.ok_names.items():
                mine = self.names_to_fill(port)
                for name, who in names.items():
                    if _room_for(mine, name, MAX_NAMES_PER_PORT):
                        mine[name] = _union_capped(mine.get(name, _NOBODY), who, MAX_NAME_CLIENTS)


#: ``ServerStats.names_at`` of a port where no name completed (never written to).
_NO_NAMES: dict = {}


@dataclass(slots=True)
class ResolverStats:
    responses: int = 0
    undisputed_ttls: Counter = field(default_factory=Counter)  # IP TTLs of lone responses
    min_rtt: float = 0.0  # fastest lone response (0: none)

    def merge(self, o: "ResolverStats") -> None:
        self.responses += o.responses
        self.undisputed_ttls.update(o.undisputed_ttls)
        self.min_rtt = _min0f(self.min_rtt, o.min_rtt)


@dataclass(slots=True)
class Controls:
    servers: dict = field(default_factory=dict)  # server ip -> ServerStats
    resolvers: dict = field(default_factory=dict)  # resolver ip -> ResolverStats
    # (qname, qtype) -> the resolvers that gave it a lone response: (ip, whether one said
    # NXDOMAIN, the smallest other outcome or None) sorted by ip, the MAX_RESOLVERS smallest
    # (``_with_answer``). Only whether an outcome is NXDOMAIN is compared; the other
    # outcome is what a finding quotes.
    names: dict = field(default_factory=dict)
    # network prefixes (/24, /48) of servers the clients completed an exchange with: reachable here
    reached: set = field(default_factory=set)
    # address space that counts as reachable beyond the global unicast space (a parameter)
    reachable: tuple = ()
    # (server ip, port, host) -> (paths that worked, paths that were interfered with)
    paths: dict = field(default_factory=dict)
    # names whose connections met forged packets (proven on the path) somewhere in the capture
    filtered_names: set = field(default_factory=set)
    # input -> its distinct client addresses (None: more than MAX_VANTAGE_CLIENTS)
    clients: dict = field(default_factory=dict)
    # input -> the client addresses of its vantage point (``vantage``), made by ``settle``
    _vantage: dict = field(default_factory=dict, repr=False, compare=False)
    # whether an add or merge came since the last ``settle``
    _loose: bool = field(default=False, repr=False, compare=False)
    # what ``names_done`` (by server ip, port, vantage) and ``answering_servers`` (-1: not yet)
    # found, made on demand after ``settle`` and forgotten at the next
    _names_done: dict = field(default_factory=dict, repr=False, compare=False)
    _answering: int = field(default=-1, repr=False, compare=False)

    def server(self, ip: str) -> ServerStats:
        s = self.servers.get(ip)
        if s is None:
            s = self.servers[ip] = ServerStats()
        return s

    def add(self, f: Facts) -> None:
        self._loose = True
        self._add_client(f.input, f.client_ip)
        x = f.features
        if f.kind == "dns" and f.transport == "udp":
            self._add_dns(f)
            return
        if f.transport != "tcp":
            return
        self._add_tcp(f.kind, f.client_ip, f.server_ip, f.server_port, f.name, f.signals(), bool(x.get("synack")),
                      bool(x.get("ecn_answered")), x.get("path"), x.get("hello_size", 0))

    def add_exchange(self, input_idx: int, kind: str, client_ip: str, server_ip: str, server_port: int, name: str,
                     ecn_answered: bool, hello_size: int, path: str | None = None) -> None:
        """What ``add`` does with the facts of a TCP attempt whose only finding is
        ``exchange-complete``, after a SYN-ACK (``features`` gives ``ecn_answered``,
        ``hello_size`` and an HTTP request's ``path``), without the facts: the TLS lane's way
        in (``forensics.tlslane``)."""
        self._loose = True
        self._add_client(input_idx, client_ip)
        self._add_tcp(kind, client_ip, server_ip, server_port, name, _EXCHANGE, True, ecn_answered, path, hello_size)

    def _add_tcp(self, kind: str, client_ip: str, server_ip: str, server_port: int, name: str, sig,
                 synack: bool, ecn_answered: bool, path: str | None, hello_size: int) -> None:
        """A TCP attempt to ``server_ip`` whose findings' signals are ``sig``: the server's
        counts, the paths and names that passed or met forged packets, the prefixes reached."""
        s = self.server(server_ip)
        s.attempts += 1
        if synack:
            s.synack += 1
            if not ecn_answered:
                s.plain_syn_answered += 1
        if path is not None:
            key = (server_ip, server_port, name)
            if _room_for(self.paths, key, MAX_PATH_KEYS):
                ok, bad = self.paths.setdefault(key, (set(), set()))
                if "exchange-complete" in sig and not (sig & INTERFERENCE):
                    _add_capped(ok, {path})
                elif sig & INTERFERENCE:
                    _add_capped(bad, {path})
        if name and sig & FORGED:
            _add_capped(self.filtered_names, (name.split(":")[0].lower(),), MAX_PREFIXES)
        if "exchange-complete" in sig:
            s.completed += 1
            _add_capped(self.reached, (prefix_of(server_ip),), MAX_PREFIXES)
            if name:
                names = s.names_to_fill(server_port)
                if _room_for(names, name, MAX_NAMES_PER_PORT):
                    names[name] = _union_capped(names.get(name, _NOBODY), (client_ip,), MAX_NAME_CLIENTS)
            if hello_size and kind == "tls":
                s.hello_ok_max = max(s.hello_ok_max, hello_size)

    def _add_client(self, input_idx: int, ip: str) -> None:
        seen = self.clients.get(input_idx, _NOBODY)
        if seen is not None and ip not in seen:
            self.clients[input_idx] = _union_capped(seen, (ip,), MAX_VANTAGE_CLIENTS)

    def _add_dns(self, f: Facts) -> None:
        resp = f.features.get("responses", ())
        if len(resp) == 1 and resp[0][0] == f.server_ip:
            _, ttl, outcome, delay, *_ = resp[0]
            self._add_lone(f.server_ip, ttl, delay, f.name, f.features.get("qtype", ""), outcome)
            return
        resolvers = self.resolvers
        for src, *_ in resp:
            r = resolvers.get(src)
            if r is None:
                r = resolvers[src] = ResolverStats()
            r.responses += 1

    def add_lone_answer(self, input_idx: int, client_ip: str, server_ip: str, ttl: int, delay: float,
                        name: str, qtype: str, outcome: str) -> None:
        """What ``add`` does with the facts of a DNS query over UDP whose only response came
        from the server asked (IP TTL ``ttl``, ``delay`` s after the query, ``outcome`` as
        ``features`` gives it), without the facts: the DNS lane's way in (``forensics.dnslane``)."""
        self._loose = True
        self._add_client(input_idx, client_ip)
        self._add_lone(server_ip, ttl, delay, name, qtype, outcome)

    def _add_lone(self, server_ip: str, ttl: int, delay: float, name: str, qtype: str, outcome: str) -> None:
        """A lone response of ``server_ip`` to a query: its resolver's undisputed baseline, and
        the name's answer to compare with other resolvers'."""
        r = self.resolvers.get(server_ip)
        if r is None:
            r = self.resolvers[server_ip] = ResolverStats()
        r.responses += 1
        r.undisputed_ttls[ttl] += 1
        r.min_rtt = _min0f(r.min_rtt, delay)
        if name:  # (a name the capture cut off is unknown: unknown names are not one name)
            key = (name, qtype)
            by = self.names.get(key, ())
            nx = outcome == "NXDOMAIN"
            new = _with_answer(by, server_ip, nx, None if nx else outcome)
            if new is not by:
                self.names[key] = new

    def merge(self, o: "Controls") -> None:
        self._loose = True
        for inp, who in o.clients.items():
            self.clients[inp] = _union_capped(self.clients.get(inp, _NOBODY), who, MAX_VANTAGE_CLIENTS)
        for ip, st in o.servers.items():
            self.server(ip).merge(st)
        for ip, st in o.resolvers.items():
            mine = self.resolvers.get(ip)
            if mine is None:
                self.resolvers[ip] = mine = ResolverStats()
            mine.merge(st)
        _add_capped(self.filtered_names, o.filtered_names, MAX_PREFIXES)
        _add_capped(self.reached, o.reached, MAX_PREFIXES)
        for key, (ok, bad) in o.paths.items():
            if _room_for(self.paths, key, MAX_PATH_KEYS):
                mine_ok, mine_bad = self.paths.setdefault(key, (set(), set()))
                _add_capped(mine_ok, ok)
                _add_capped(mine_bad, bad)
        names = self.names
        for key, by in o.names.items():
            mine = names.get(key, ())
            for ip, nx, other in by:
                mine = _with_answer(mine, ip, nx, other)
            names[key] = mine

    def settle(self) -> None:
        """Make the controls ready to read, once after the last add or merge: every
        capped set cut to its cap (``_add_capped``), so what the detectors read is the
        same however the attempts came in and were merged; the vantage points found."""
        if not self._loose:
            return
        _settle(self.paths, MAX_PATH_KEYS)
        for ok, bad in self.paths.values():
            _settle(ok, MAX_NAMES)
            _settle(bad, MAX_NAMES)
        _settle(self.filtered_names, MAX_PREFIXES)
        _settle(self.reached, MAX_PREFIXES)
        for st in self.servers.values():
            if st.ok_names:
                for names in st.ok_names.values():
                    _settle(names, MAX_NAMES_PER_PORT)
        self._vantage = _vantage_points(self.clients)
        self._names_done = {}
        self._answering = -1
        self._loose = False

    def names_done(self, server_ip: str, port: int, mine: frozenset | None) -> tuple[tuple, tuple]:
        """The first ``NAMES_SHOWN`` names, in name order, that completed an exchange at
        ``server_ip``:``port`` from the vantage point of clients ``mine``, and the first
        ones from elsewhere.

        Found once per server, port and vantage point rather than once per attempt that
        asks: a busy server holds up to MAX_NAMES_PER_PORT names, and every failed
        attempt at it asks (sorting 2048 names each time made the check grow with the
        capture until the cap was reached)."""
        self.settle()
        key = (server_ip, port, mine)
        got = self._names_done.get(key)
        if got is None:
            st = self.servers.get(server_ip)
            done = st.names_at(port) if st is not None else _NO_NAMES
            here, far = [], []
            for n, who in done.items():
                (here if from_here(who, mine) else far).append(n)
            got = self._names_done[key] = (tuple(heapq.nsmallest(NAMES_SHOWN, here)),
                                           tuple(heapq.nsmallest(NAMES_SHOWN, far)))
        return got

    def vantage(self, input_idx: int) -> frozenset | None:
        """The client addresses of the vantage point ``input_idx`` was captured at: its
        own clients and those of every input of the case that shares one of them,
        directly or through others (rotated files of one capture; the two ends of one
        session). None where that cannot be told (an input with more clients than
        MAX_VANTAGE_CLIENTS makes the whole case one vantage point)."""
        self.settle()
        return self._vantage.get(input_idx)

    def answering_servers(self) -> int:
        """How many server addresses answered at least one SYN (counted once after ``settle``:
        every unanswered SYN asks, and a border capture has servers by the hundred thousand)."""
        self.settle()
        if self._answering < 0:
            self._answering = sum(1 for s in self.servers.values() if s.synack)
        return self._answering


def from_here(who: frozenset | None, mine: frozenset | None) -> bool:
    """Whether a completion by the clients ``who`` (None: many) counts as from the vantage
    point of clients ``mine`` (None: cannot be told): unless both are known and share none."""
    return who is None or mine is None or not who.isdisjoint(mine)


def cases_of(files: list[str]) -> tuple[int, ...]:
    """The case of each input: the inputs of one folder are one case.

    Controls say what *this* path does to other names, sizes and resolvers, so they
    must come from the same vantage point and time: the rotated files of one capture,
    or the client and server sides of one session, kept together in a folder. Captures
    in other folders (another office, another day, another lab scene) are not each
    other's controls: a name that completes there says nothing of this path.
    """
    seen: dict[str, int] = {}
    return tuple(seen.setdefault(os.path.dirname(os.path.abspath(f)), len(seen)) for f in files)


@dataclass(slots=True)
class ControlSet:
    """The controls of every case (``cases_of``): each attempt is added to, and judged
    against, the controls of its own input's case only."""

    cases: tuple[int, ...] = ()  # input index -> case; inputs beyond it are case 0
    reachable: tuple = ()
    by_case: dict = field(default_factory=dict)  # case -> Controls

    def of(self, input_idx: int) -> Controls:
        """The controls of ``input_idx``'s case (in one call where the case has them already: the
        lanes ask for each attempt they take)."""
        cases = self.cases
        case = cases[input_idx] if input_idx < len(cases) else 0
        c = self.by_case.get(case)
        return c if c is not None else self._case(case)

    def _case(self, case: int) -> Controls:
        c = self.by_case.get(case)
        if c is None:
            c = self.by_case[case] = Controls(reachable=self.reachable)
        return c

    def add(self, f: Facts) -> None:
        self.of(f.input).add(f)

    def add_lone_answer(self, input_idx: int, client_ip: str, server_ip: str, ttl: int, delay: float,
                        name: str, qtype: str, outcome: str) -> None:
        """``Controls.add_lone_answer`` in the controls of ``input_idx``'s case. (Its arguments
        spelled out: passed on as ``*args``, compiled, they cost 0.6 us a call, half the call.)"""
        self.of(input_idx).add_lone_answer(input_idx, client_ip, server_ip, ttl, delay, name, qtype, outcome)

    def add_exchange(self, input_idx: int, kind: str, client_ip: str, server_ip: str, server_port: int, name: str,
                     ecn_answered: bool, hello_size: int, path: str | None = None) -> None:
        """``Controls.add_exchange`` in the controls of ``input_idx``'s case."""
        self.of(input_idx).add_exchange(input_idx, kind, client_ip, server_ip, server_port, name, ecn_answered,
                                            hello_size, path)

    def merge(self, o: "ControlSet") -> None:
        for case in sorted(o.by_case):
            self._case(case).merge(o.by_case[case])

    def loosen(self) -> None:
        """Every case's controls to be settled again before they are read, as a merge leaves
        them: what a set taken as the base of a merge (``pipeline.merge_control_sets``'s
        ``adopt``) needs to read as the merged copy would."""
        for c in self.by_case.values():
            c._loose = True


def _add_capped(dst: set, src, cap: int = MAX_NAMES) -> None:
    """Keep the ``cap`` smallest: the same set whatever order the items come
    in, so that parts merged from parallel workers equal one process's.

    The set may hold up to twice ``cap`` between cuts (``_cut``: one sort per ``cap``
    insertions, where finding the largest on every insertion past the cap cost a
    walk of the whole set each); ``Controls.settle`` cuts it to ``cap`` before any
    detector reads it."""
    for x in src:
        if len(dst) < 2 * cap or x in dst:
            dst.add(x)
        elif x < _cut(dst, cap):
            dst.add(x)


#: No client yet (distinct from None, which means too many to keep).
_NOBODY: frozenset = frozenset()


#: The one-client sets made so far, shared: most names complete from one client, and a set
#: of its own for each (216 bytes) was a third of what a server with one name cost. Cleared
#: when full (sets already handed out stay valid; only the sharing restarts).
_ONE_CLIENT: dict = {}
MAX_SHARED_CLIENT_SETS = 65536


def _union_capped(have: frozenset | None, more, cap: int) -> frozenset | None:
    """``have`` with ``more`` added, or None once past ``cap`` (or if either already is):
    the same whatever order the clients come in. ``have`` itself where ``more`` adds none."""
    if have is None or more is None:
        return None
    if have.issuperset(more):
        return have
    if not have and len(more) == 1:
        (ip,) = more
        one = _ONE_CLIENT.get(ip)
        if one is None:
            if len(_ONE_CLIENT) >= MAX_SHARED_CLIENT_SETS:
                _ONE_CLIENT.clear()
            one = _ONE_CLIENT[ip] = frozenset((ip,))
        return one if cap >= 1 else None
    u = have.union(more)
    return u if len(u) <= cap else None


def _with_answer(by: tuple, ip: str, nx: bool, other: str | None) -> tuple:
    """``by`` (``Controls.names`` of one name) with resolver ``ip`` having answered NXDOMAIN
    (``nx``) or ``other``; ``by`` itself if that adds nothing. The ``MAX_RESOLVERS`` smallest
    addresses are kept, each with all it answered, whatever order the answers come in."""
    for k, (rip, rnx, rother) in enumerate(by):
        if rip == ip:
            if other is not None and (rother is None or other < rother):
                rother = other
            elif rnx or not nx:
                return by
            return by[:k] + ((ip, rnx or nx, rother),) + by[k + 1:]
        if rip > ip:
            return (by[:k] + ((ip, nx, other),) + by[k:])[:MAX_RESOLVERS]
    return by + ((ip, nx, other),) if len(by) < MAX_RESOLVERS else by


def _vantage_points(clients: dict) -> dict:
    """input -> the client addresses of its vantage point (``Controls.vantage``)."""
    if any(who is None for who in clients.values()):
        return {}
    parent = {i: i for i in clients}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i in sorted(clients):
        for ip in clients[i]:
            j = first.setdefault(ip, i)
            a, b = root(i), root(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    union: dict[int, frozenset] = {}
    for i in clients:
        r = root(i)
        union[r] = union.get(r, _NOBODY) | clients[i]
    return {i: union[root(i)] for i in clients}


def _room_for(by: dict, key, cap: int = MAX_RESOLVERS) -> bool:
    """Whether ``key`` may have an entry in ``by`` (at most ``cap``, the smallest
    keys kept: the same whatever order they come in), making room if so. Like
    ``_add_capped``, ``by`` holds up to twice ``cap`` keys between cuts."""
    if key in by or len(by) < 2 * cap:
        return True
    return key < _cut(by, cap)


def _cut(c: set | dict, cap: int):
    """Cut ``c`` to its ``cap`` smallest keys; the largest kept. A key larger than
    that can never be among the smallest again (keys are only added), so it is
    refused; a smaller one is taken and the container grows to twice ``cap``
    again before the next cut. The kept keys are the ``cap`` smallest ever given,
    each with everything added under it: the same as cutting on every insertion."""
    keys = sorted(c)
    drop = c.pop if isinstance(c, dict) else c.discard
    for k in keys[cap:]:
        drop(k)
    return keys[cap - 1]


def _settle(c: set | dict, cap: int) -> None:
    if len(c) > cap:
        _cut(c, cap)


@lru_cache(maxsize=65536)
def prefix_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) holding ``ip``: one site's worth of addresses."""
    if ":" not in ip:
        head = ip.rsplit(".", 1)[0]
        return f"{head}.0/24"
    net = ipaddress.ip_network(f"{ip}/48", strict=False)
    return str(net)


def _min0f(a: float, b: float) -> float:
    if not a:
        return b
    if not b:
        return a
    return min(a, b)
