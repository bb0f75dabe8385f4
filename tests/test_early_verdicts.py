"""Verdicts given in the first stage (``Judge.early``) are the ones stage 2 gives.

The first stage gives an attempt its verdict when the cross-attempt detectors cannot
change it whatever the controls hold, or could only through the checks of
``dnsforge.stands``, which stage 2 asks against the complete controls. These tests hold
that promise two ways: over many attempts and controls made at random (every early
verdict that ``stands`` keeps is the one ``Judge.verdict`` gives, and the checks do turn
some down), and on real captures (the samples, the corpus, a generated capture with
interference), whose reports are the same byte for byte with early verdicts off.
"""

from __future__ import annotations

import random

import pytest

from conftest import ROOT, generated, with_samples_and_corpus

import forensics
from forensics import pipeline
from forensics.classify.engine import Judge
from forensics.detectors import crosscheck, dnsforge
from forensics.detectors.base import Facts, finding
from forensics.render import render_to_string

NAMES = ("blog.example.com", "news.example.org", "printer.local", "")
RESOLVERS = ("198.51.100.53", "198.51.100.9", "2001:db8:3::53")
# answers in several prefixes of documentation space (special-purpose), loopback (never a
# public name's address), and NXDOMAIN
ANSWERS = (("203.0.113.5",), ("203.0.113.5", "203.0.113.6"), ("198.51.100.80",), ("127.0.0.1",),
           ("2001:db8:2::15",), ())
TCP_SIGNALS = ("exchange-complete", "rst-forged", "hello-dropped", "syn-dropped", "server-reset",
               "blockpage-forged", "rst-suspect")


def _dns(rng: random.Random, input_idx: int) -> Facts:
    name = rng.choice(NAMES)
    resolver = rng.choice(RESOLVERS)
    resp = []
    for k in range(rng.choice((0, 1, 1, 1, 1, 2))):
        addrs = rng.choice(ANSWERS)
        outcome = ",".join(addrs) if addrs else "NXDOMAIN"
        src = resolver if rng.random() < 0.9 else rng.choice(RESOLVERS)
        resp.append((src, rng.choice((57, 57, 57, 250)), outcome, 0.02 + 0.01 * k, -1, 2 + k, input_idx, 0x8180,
                     True, addrs))
    return Facts("dns", "udp", input_idx, "192.0.2.10", resolver, 53, name, 0.0, 0.03, (),
                 {"qtype": rng.choice(("A", "AAAA")), "query_frame": 1, "responses": tuple(resp)})


def _tcp(rng: random.Random, input_idx: int) -> Facts:
    server = rng.choice(("203.0.113.7", "203.0.113.8", "198.51.100.80", "2001:db8:2::15"))
    found = tuple(finding("test", s, 1.0, s) for s in rng.sample(TCP_SIGNALS, rng.choice((1, 1, 2))))
    return Facts(rng.choice(("tls", "http")), "tcp", input_idx, "192.0.2.10", server, 443, rng.choice(NAMES[:2]),
                 0.0, 1.0, found, {"syn": True, "synack": rng.random() < 0.8, "hello_size": 517})


@pytest.mark.parametrize("seed", range(12))
def test_early_verdicts_that_stand_are_the_verdicts_of_stage_two(seed):
    rng = random.Random(seed)
    judge = Judge([], ("198.51.100.0/24",) if seed % 3 == 0 else ())
    facts = [(_dns if rng.random() < 0.6 else _tcp)(rng, rng.choice((0, 0, 1))) for _ in range(150)]
    early = []
    for f in facts:
        judge.controls.add(f)  # what ``Judge.local`` does after the local detectors
        early.append(judge.early(f))
    kinds = {"late": 0, "early": 0, "kept": 0, "turned down": 0}
    for f, got in zip(facts, early):
        want = judge.verdict(f)
        if got is None:
            kinds["late"] += 1
            continue
        v, key = got
        kinds["early"] += 1
        if judge.stands(f.input, key):
            kinds["kept"] += 1
            assert v == want, (f, key)
        else:
            kinds["turned down"] += 1
    assert kinds["early"] and kinds["late"] and kinds["kept"], kinds


def test_the_checks_turn_early_verdicts_down():
    """An answer only in special-purpose space stands once a client reached its prefix, and not
    before; a resolver that disagrees turns the verdict down."""
    judge = Judge([])
    answered = (finding("outcome", "dns-answered", 1.0, "1 response(s)"),)
    asked = Facts("dns", "udp", 0, "192.0.2.10", "198.51.100.53", 53, "blog.example.com", 0.0, 0.02, answered,
                  {"qtype": "A", "query_frame": 1,
                   "responses": (("198.51.100.53", 57, "203.0.113.5", 0.02, -1, 2, 0, 0x8180, True,
                                  ("203.0.113.5",)),)})
    judge.controls.add(asked)
    v, key = judge.early(asked)
    assert v.verdict == "ok" and key is not None and not judge.stands(0, key)
    late = judge.verdict(asked)
    assert late != v and "special-purpose space no client here reached" in late.summary
    judge.controls.add(Facts("tls", "tcp", 0, "192.0.2.10", "203.0.113.9", 443, "blog.example.com", 0.0, 1.0,
                             (finding("test", "exchange-complete", 1.0, ""),), {"syn": True, "synack": True}))
    assert judge.stands(0, key) and judge.verdict(asked) == v
    other = Facts("dns", "udp", 0, "192.0.2.10", "198.51.100.9", 53, "blog.example.com", 0.0, 0.02, (),
                  {"qtype": "A", "query_frame": 1,
                   "responses": (("198.51.100.9", 57, "NXDOMAIN", 0.02, -1, 4, 0, 0x8183, True, ()),)})
    judge.controls.add(other)
    assert not judge.stands(0, key)
    late = judge.verdict(asked)
    assert late != v and "resolver 198.51.100.9 answered NXDOMAIN" in late.summary


def test_what_the_cross_checks_ask_for():
    reset = Facts("tls", "tcp", 0, "192.0.2.10", "203.0.113.7", 443, "a.example", 0.0, 1.0,
                  (finding("test", "rst-forged", 1.0, ""),), {})
    done = Facts("tls", "tcp", 0, "192.0.2.10", "203.0.113.7", 443, "a.example", 0.0, 1.0,
                 (finding("test", "exchange-complete", 1.0, ""),), {})
    assert crosscheck.asks(reset) and not crosscheck.asks(done)
    assert Judge([]).early(reset) is None
    assert Judge([]).early(done)[1] is None  # nothing left to ask
    silent = Facts("dns", "udp", 0, "192.0.2.10", "198.51.100.53", 53, "a.example", 0.0, 1.0, (),
                   {"responses": ()})
    assert dnsforge.asks(silent) is True and Judge([]).early(silent) is None


def _generated(tmp_path) -> str:
    return generated(tmp_path, 11, "--rst", "0.08", "--forged-dns", "0.08", "--sni-drop", "0.08")


def _json(paths, jobs: int = 1) -> str:
    return render_to_string(forensics.analyze(paths, keep_attempts=False, jobs=jobs), "json")


def test_reports_are_the_same_with_early_verdicts_off(tmp_path, monkeypatch):
    generated = _generated(tmp_path)
    for path in with_samples_and_corpus(generated):
        with_early = _json([path])
        monkeypatch.setattr(pipeline, "EARLY_VERDICTS", False)
        without = _json([path])
        monkeypatch.setattr(pipeline, "EARLY_VERDICTS", True)
        assert with_early == without, path
        if path == generated:  # the capture holds what the checks of stage 2 are for
            assert '"verdict":"forged-dns"' in with_early and '"verdict":"injected-rst"' in with_early
    assert _json([generated], jobs=2) == _json([generated])


def test_reports_are_the_same_when_stage_two_turns_every_checked_verdict_down(tmp_path, monkeypatch):
    """Where ``stands`` refuses an early verdict, stage 2 judges again from the facts and the
    JSON pieces of the spill record: refusing every verdict that has a question left (the DNS
    answers of the samples and the generated capture) must give the same report, as judging
    them again gives the verdicts that stood."""
    generated = _generated(tmp_path)
    asked = []

    def refuse(self, input_idx, key):
        asked.append(key)
        return key is None

    for path in (str(ROOT / "pcaps"), generated):
        with_early = _json([path])
        monkeypatch.setattr(Judge, "stands", refuse)
        refused = _json([path])
        monkeypatch.undo()
        assert with_early == refused, path
    assert sum(k is not None for k in asked) > 100


def test_reports_are_the_same_whatever_the_number_of_connections_finished_together(tmp_path, monkeypatch):
    """The engine hands finished connections and DNS transactions on ``FINISH_BATCH`` at a
    time, and the first stage runs each step over them in turn: one at a time, a batch that
    cuts a connection's attempts from the next, and the default must give the same report."""
    from forensics.reassembly import engine

    generated = _generated(tmp_path)
    for path in (str(ROOT / "pcaps"), generated):
        reports = []
        for batch in (1, 7, engine.FINISH_BATCH):
            monkeypatch.setattr(engine, "FINISH_BATCH", batch)
            reports.append(_json([path]))
        assert reports[0] == reports[1] == reports[2], path
    assert _json([generated], jobs=2) == reports[0]
