"""The capture's controls at scale: caps must never hide the control that exists."""

from __future__ import annotations

from forensics.detectors.base import Facts, finding
from forensics.detectors.controls import (MAX_NAME_CLIENTS, MAX_NAMES, MAX_VANTAGE_CLIENTS, Controls, ControlSet,
                                         cases_of)
from forensics.detectors.crosscheck import CrossCheckDetector

SERVER = "203.0.113.7"


def _facts(kind: str, port: int, name: str, signal: str, input_idx: int = 0, client: str = "192.0.2.10") -> Facts:
    f = finding("test", signal, 1.0, signal)
    return Facts(kind, "tcp", input_idx, client, SERVER, port, name, 0.0, 1.0, (f,),
                 {"syn": True, "synack": True})


def _signals(c: Controls, f: Facts) -> set[str]:
    return {x.signal for x in CrossCheckDetector().run(f, c)}


def test_names_of_another_port_do_not_crowd_out_the_control_on_this_port():
    # more completed names on port 80 than a capped set holds, all sorting before
    # the one name that completed on port 443 (the regression: (port, name) pairs
    # kept smallest first, so every port-443 name was dropped)
    c = Controls()
    for k in range(MAX_NAMES * 3):
        c.add(_facts("http", 80, f"a{k:03}.example", "exchange-complete"))
    c.add(_facts("tls", 443, "zz-control.example", "exchange-complete"))
    dropped = _facts("tls", 443, "blocked.example", "hello-dropped")
    sig = _signals(c, dropped)
    assert "control-other-name-ok" in sig and "control-missing" not in sig


def test_the_same_name_is_found_among_many_names_of_a_busy_server():
    c = Controls()
    for k in range(MAX_NAMES * 10):
        c.add(_facts("tls", 443, f"site{k:04}.example", "exchange-complete"))
    late = f"site{MAX_NAMES * 10 - 1:04}.example"  # the largest name: beyond a small cap
    sig = _signals(c, _facts("tls", 443, late, "hello-dropped"))
    assert "control-same-name-ok" in sig


def test_merged_controls_equal_one_process_whatever_the_split():
    names = [f"n{k:04}.example" for k in range(3000)]
    one = Controls()
    for n in names:
        one.add(_facts("tls", 443, n, "exchange-complete"))
    a, b = Controls(), Controls()
    for k, n in enumerate(reversed(names)):
        (a if k % 3 else b).add(_facts("tls", 443, n, "exchange-complete"))
    merged = Controls()
    merged.merge(a)
    merged.merge(b)
    assert merged.servers[SERVER].ok_names == one.servers[SERVER].ok_names


def test_one_folder_is_one_case():
    files = ["/caps/office-a/1.pcap", "/caps/office-b/1.pcap", "/caps/office-a/2.pcap", "/caps/office-b/x/1.pcap"]
    assert cases_of(files) == (0, 1, 0, 2)
    assert cases_of(["a.pcap", "./b.pcap"]) == (0, 0)  # both in the working folder


def test_a_name_that_completes_in_another_case_is_no_control():
    # input 0 (office A) saw the name completing on the server; input 1 (office B)
    # saw other names complete and this one dropped; input 2 is office B's next file
    c = ControlSet(cases=(0, 1, 1))
    c.add(_facts("tls", 443, "blocked.example", "exchange-complete", 0))
    c.add(_facts("tls", 443, "other.example", "exchange-complete", 2))
    dropped = _facts("tls", 443, "blocked.example", "hello-dropped", 1)
    c.add(dropped)
    sig = _signals(c.of(1), dropped)
    assert "control-other-name-ok" in sig and "control-same-name-ok" not in sig
    # all in one case, office A's success is a control of B's failure
    one = ControlSet()
    for f in (_facts("tls", 443, "blocked.example", "exchange-complete", 0),
              _facts("tls", 443, "other.example", "exchange-complete", 2), dropped):
        one.add(f)
    assert "control-same-name-ok" in _signals(one.of(1), dropped)


def test_merged_cases_equal_one_pass():
    facts = [_facts("tls", 443, f"n{k}.example", "exchange-complete", k % 3) for k in range(30)]
    whole = ControlSet(cases=(0, 1, 0))
    for f in facts:
        whole.add(f)
    a, b = ControlSet(cases=(0, 1, 0)), ControlSet(cases=(0, 1, 0))
    for f in facts[:17]:
        a.add(f)
    for f in facts[17:]:
        b.add(f)
    merged = ControlSet(cases=(0, 1, 0))
    merged.merge(a)
    merged.merge(b)
    assert sorted(merged.by_case) == sorted(whole.by_case) == [0, 1]
    for case in (0, 1):
        assert merged.by_case[case].servers[SERVER].ok_names == whole.by_case[case].servers[SERVER].ok_names


# -- vantage points: the inputs of a folder that share no client address

A, B = "192.0.2.10", "192.0.2.20"  # two offices' hosts (in one /24, as in the lab)


def _office_case(*extra: Facts) -> tuple[Controls, Facts]:
    """Office B (input 1) completes blocked.example; office A (input 0) completes another
    name at the same server and sees blocked.example dropped."""
    c = Controls()
    for f in (_facts("http", 80, "blocked.example", "exchange-complete", 1, B),
              _facts("http", 80, "other.example", "exchange-complete", 0, A), *extra):
        c.add(f)
    dropped = _facts("http", 80, "blocked.example", "request-dropped", 0, A)
    c.add(dropped)
    return c, dropped


def test_a_name_that_completes_only_at_another_vantage_point_is_no_same_name_control():
    c, dropped = _office_case()
    sig = _signals(c, dropped)
    assert "control-same-name-ok" not in sig
    assert {"control-name-ok-elsewhere", "control-other-name-ok"} <= sig
    assert c.vantage(0) == {A} and c.vantage(1) == {B}


def test_other_names_that_complete_only_at_another_vantage_point_are_no_control_here():
    """Office A's request for blocked.example vanished; only office B completed other names
    at that server: the server is up, but nothing says this path delivers any name to it."""
    c = Controls()
    for f in (_facts("http", 80, "other.example", "exchange-complete", 1, B),
              _facts("http", 80, "third.example", "exchange-complete", 1, B)):
        c.add(f)
    dropped = _facts("http", 80, "blocked.example", "request-dropped", 0, A)
    c.add(dropped)
    found = {x.signal: x for x in CrossCheckDetector().run(dropped, c)}
    assert "control-other-name-ok" not in found
    assert found["control-other-name-ok-elsewhere"].get("names") == ("other.example", "third.example")
    assert "from this vantage point" in found["control-missing"].detail
    from forensics.classify.engine import apply_rules
    v = apply_rules(dropped, list(dropped.findings) + list(found.values()))
    assert (v.verdict, v.rule) == ("inconclusive", "inconclusive.missing-control")
    # the same other name completed from office A too: a control from this path
    c.add(_facts("http", 80, "other.example", "exchange-complete", 2, A))
    found = {x.signal: x for x in CrossCheckDetector().run(dropped, c)}
    assert found["control-other-name-ok"].get("names") == ("other.example",)
    assert not {"control-other-name-ok-elsewhere", "control-missing"} & set(found)
    assert apply_rules(dropped, list(dropped.findings) + list(found.values())).verdict == "host-drop"


def test_files_that_share_a_client_are_one_vantage_point():
    # input 2 is office A's next rotated file: its success from A is a same-name control
    c, dropped = _office_case(_facts("http", 80, "blocked.example", "exchange-complete", 2, A))
    sig = _signals(c, dropped)
    assert "control-same-name-ok" in sig and "control-name-ok-elsewhere" not in sig
    # and a file that shares a client with each of two others joins them (transitively)
    c, dropped = _office_case(_facts("tls", 443, "x.example", "exchange-complete", 2, A),
                              _facts("tls", 443, "y.example", "exchange-complete", 2, B))
    assert c.vantage(0) == c.vantage(1) == c.vantage(2) == {A, B}
    assert "control-same-name-ok" in _signals(c, dropped)


def test_a_capture_of_many_clients_makes_the_folder_one_vantage_point():
    crowd = [_facts("tls", 443, "x.example", "exchange-complete", 2, f"198.51.100.{k}")
             for k in range(MAX_VANTAGE_CLIENTS + 1)]
    c, dropped = _office_case(*crowd)
    assert c.vantage(0) is None
    assert "control-same-name-ok" in _signals(c, dropped)
    # one client fewer: the crowd is a vantage point of its own, and A and B still differ
    c, dropped = _office_case(*crowd[1:])
    assert c.vantage(0) == {A}
    assert "control-name-ok-elsewhere" in _signals(c, dropped)


def test_a_name_completed_by_many_clients_counts_as_completed_here():
    many = [_facts("http", 80, "blocked.example", "exchange-complete", 1, f"198.51.100.{k}")
            for k in range(MAX_NAME_CLIENTS)]  # with B: one more than the cap
    c, dropped = _office_case(*many)
    assert c.servers[SERVER].ok_names[80]["blocked.example"] is None
    assert "control-same-name-ok" in _signals(c, dropped)
    c, dropped = _office_case(*many[1:])
    assert "control-name-ok-elsewhere" in _signals(c, dropped)


def test_vantage_points_merged_from_parts_equal_one_pass():
    facts = ([_facts("tls", 443, f"n{k}.example", "exchange-complete", k % 3, f"198.51.100.{k % 5}")
              for k in range(40)]
             + [_facts("tls", 443, "n1.example", "exchange-complete", 3, f"203.0.113.{k}")
                for k in range(MAX_VANTAGE_CLIENTS + 3)])
    whole = Controls()
    for f in facts:
        whole.add(f)
    for split in (7, 23, 41):
        a, b = Controls(), Controls()
        for k, f in enumerate(reversed(facts)):
            (a if k % split else b).add(f)
        merged = Controls()
        merged.merge(a)
        merged.merge(b)
        assert merged.clients == whole.clients
        assert merged.servers[SERVER].ok_names == whole.servers[SERVER].ok_names
        assert [merged.vantage(i) for i in range(4)] == [whole.vantage(i) for i in range(4)]


def _exact_capped(items, cap):
    """The caps' meaning, plainly: the ``cap`` smallest of everything given."""
    return set(sorted(set(items))[:cap])


def test_capped_sets_hold_the_smallest_whatever_the_order_and_the_cuts():
    import random

    from forensics.detectors.controls import _add_capped, _room_for, _settle

    rng = random.Random(5)
    for cap in (1, 3, 16, 100):
        items = [rng.randrange(10 * cap) for _ in range(25 * cap)]
        want = _exact_capped(items, cap)
        for order in (items, sorted(items), sorted(items, reverse=True)):
            s: set = set()
            d: dict = {}
            for x in order:
                _add_capped(s, (x,), cap)
                if _room_for(d, x, cap):
                    d[x] = d.get(x, 0) + 1
            _settle(s, cap)
            _settle(d, cap)
            assert s == want and set(d) == want
            # each key kept has every one of its occurrences: none was dropped and taken again
            assert d == {k: items.count(k) for k in want}


def test_paths_past_the_cap_keep_the_smallest_keys_through_add():
    # descending keys: every key is a new smallest, the worst order for the cuts
    from forensics.detectors import controls as mod

    c = Controls()
    n = mod.MAX_PATH_KEYS * 3
    for k in range(n, 0, -1):  # descending: every key is a new smallest
        f = _facts("http", 80, f"h{k:06}.example", "exchange-complete")
        f.features["path"] = "/"
        c.add(f)
    c.settle()
    assert len(c.paths) == mod.MAX_PATH_KEYS
    assert min(c.paths) == (SERVER, 80, "h000001.example")


def test_controls_read_between_adds_follow_the_adds():
    """What the checks read once per server (the names done, sorted and split by vantage
    point; how many servers answered) follows adds that come after a first read."""
    c = Controls()
    c.add(_facts("tls", 443, "b.example", "exchange-complete"))
    c.add(_facts("tls", 443, "d.example", "exchange-complete", input_idx=1, client="192.0.2.99"))
    mine = c.vantage(0)
    assert c.names_done(SERVER, 443, mine) == (("b.example",), ("d.example",))
    assert c.answering_servers() == 1
    c.add(_facts("tls", 443, "a.example", "exchange-complete"))
    other = Facts("tls", "tcp", 0, "192.0.2.10", "203.0.113.8", 443, "x.example", 0.0, 1.0,
                  (finding("test", "exchange-complete", 1.0, ""),), {"syn": True, "synack": True})
    c.add(other)
    assert c.names_done(SERVER, 443, mine) == (("a.example", "b.example"), ("d.example",))
    assert c.answering_servers() == 2
    assert c.names_done("203.0.113.9", 443, mine) == ((), ())  # a server never seen


def test_other_names_listed_are_the_first_three_in_name_order_without_the_name_itself():
    c = Controls()
    for n in ("c.example", "a.example", "e.example", "b.example", "d.example"):
        c.add(_facts("tls", 443, n, "exchange-complete"))
    f = _facts("tls", 443, "b.example", "rst-forged")
    (other,) = [x for x in CrossCheckDetector().run(f, c) if x.signal == "control-other-name-ok"]
    assert dict(other.data)["names"] == ("a.example", "c.example", "d.example")


# -- DNS names: each resolver's answers to a name, compared across resolvers

def _dns(name: str, resolver: str, outcome: str, client: str = "192.0.2.10", input_idx: int = 0) -> Facts:
    resp = ((resolver, 57, outcome, 0.02, -1, 2, input_idx, 0x8180, True, ()),)
    return Facts("dns", "udp", input_idx, client, resolver, 53, name, 0.0, 0.02, (),
                 {"qtype": "A", "query_frame": 1, "responses": resp})


def _cross_resolver(c: Controls, f: Facts):
    from forensics.detectors.dnsforge import DnsForgeryDetector

    return [x for x in DnsForgeryDetector().run(f, c) if x.signal == "dns-cross-resolver"]


def test_names_kept_per_resolver_are_the_same_whatever_the_order_and_the_split():
    import random

    from forensics.detectors.controls import MAX_RESOLVERS

    rng = random.Random(7)
    # more resolvers than the cap, each answering a few outcomes, NXDOMAIN among them
    facts = [_dns("n.example.com", f"198.51.100.{r}", rng.choice(["NXDOMAIN", "203.0.113.5", "203.0.113.9",
                                                                 "203.0.113.1,203.0.113.2"]))
             for r in range(MAX_RESOLVERS + 9) for _ in range(4)]
    want = None
    for trial in range(6):
        rng.shuffle(facts)
        parts = [Controls() for _ in range(1 + trial % 3)]
        for k, f in enumerate(facts):
            parts[k % len(parts)].add(f)
        merged = Controls()
        for p in parts:
            merged.merge(p)
        got = merged.names[("n.example.com", "A")]
        want = want or got
        assert got == want
    assert len(want) == MAX_RESOLVERS
    assert [ip for ip, _, _ in want] == sorted(f"198.51.100.{r}" for r in range(MAX_RESOLVERS + 9))[:MAX_RESOLVERS]
    # what is kept of each resolver: whether it said NXDOMAIN, and its smallest other outcome
    for ip, nx, other in want:
        said = {f.features["responses"][0][2] for f in facts if f.server_ip == ip}
        assert nx == ("NXDOMAIN" in said)
        assert other == min((o for o in said if o != "NXDOMAIN"), default=None)


def test_another_resolver_disagreeing_is_named_by_address_then_outcome():
    c = Controls()
    asked = _dns("blocked.example.com", "198.51.100.53", "NXDOMAIN")
    for f in (_dns("blocked.example.com", "198.51.100.9", "203.0.113.80"),
              _dns("blocked.example.com", "198.51.100.9", "203.0.113.7"),
              _dns("blocked.example.com", "198.51.100.200", "203.0.113.1"),
              _dns("blocked.example.com", "198.51.100.60", "NXDOMAIN"), asked):
        c.add(f)
    found = _cross_resolver(c, asked)
    # 198.51.100.200 sorts before .60 and .9: the first address in text order, its smallest outcome
    assert len(found) == 1 and found[0].detail.startswith("resolver 198.51.100.200 answered 203.0.113.1 ")
    # the reverse: an address here, NXDOMAIN from another resolver
    ok = _dns("blocked.example.com", "198.51.100.9", "203.0.113.7")
    found = _cross_resolver(c, ok)
    assert len(found) == 1 and found[0].detail.startswith("resolver 198.51.100.53 answered NXDOMAIN ")
    # only the resolver itself said otherwise: nothing to compare
    c2 = Controls()
    lone = _dns("x.example.com", "198.51.100.53", "NXDOMAIN")
    for f in (_dns("x.example.com", "198.51.100.53", "203.0.113.7"), lone):
        c2.add(f)
    assert _cross_resolver(c2, lone) == []


def test_names_completed_by_one_client_share_its_set():
    c = Controls()
    for k in range(5):
        c.add(_facts("tls", 443, f"s{k}.example", "exchange-complete", 0, A))
    sets = list(c.servers[SERVER].ok_names[443].values())
    assert all(s == frozenset({A}) for s in sets) and len({id(s) for s in sets}) == 1
    c.add(_facts("tls", 443, "s0.example", "exchange-complete", 0, B))  # a second client: a set of its own
    assert c.servers[SERVER].ok_names[443]["s0.example"] == frozenset({A, B})
    assert c.servers[SERVER].ok_names[443]["s1.example"] == frozenset({A})
