"""The TLS lane: the common TLS connection judged without running the detectors and the rules.

Most TLS connections of a capture are alike: a handshake, a ClientHello, a ServerHello, no
reset, no ICMP error, nothing contradicting. For such a connection the general path runs the
five local detectors (only ``outcome`` has something to say: ``exchange-complete``), asks
the rules for the early verdict and encodes that verdict. ``TlsLane.take`` makes the same
verdict's piece from a template made once from the rules' own verdict, and feeds the controls
what ``Judge.local`` would (``Controls.add_exchange``), without the findings, the ``Facts``
and the ``Verdict``. Where its verdict is given early the general path spills no facts, so
the lane needs none.

``TlsLane.take`` says where that holds: each of its checks is the condition under which one
detector finds nothing, or ``outcome`` only the completed exchange; the names of the
functions they stand for are beside them. The attempt's other pieces (``attempt_fragments``)
are the general path's.

The verdict comes from the rules, once: ``TlsLane`` asks ``apply_rules`` what a lone
``exchange-complete`` finding of a TLS attempt gives, and stays closed (everything goes the
general way) unless its summary and evidence are that finding's own, it places no hop, and
neither cross-attempt detector reads the controls for it. ``tests/test_tlslane.py`` checks,
for every attempt the lane takes in the lab's captures (``pcaps/``), a generated capture, a
capture of ECN and retransmitted SYNs and the corpus, that the general path finds only the
completed exchange and gives the same piece and the same controls, and that the reports are
the same with the lane closed.
"""

from __future__ import annotations

from .classify.engine import Judge, _sentence, apply_rules
from .detectors import BUILTIN, crosscheck, dnsforge, outcome
from .detectors.base import Facts, ev, finding
from .detectors.features import asks_ecn, client_syns, ecn_answered
from .model import S2C, SEG_FLAGS, Attempt
from .report import _encode_bytes, verdict_fields

# the lane stands for these detectors' findings on a TCP attempt, in this order
assert [d.name for d in BUILTIN] == ["outcome", "rst", "blockpage", "silence", "options"], \
    "the TLS lane must learn what the new detector says of a TLS connection"

_SIGNAL = "exchange-complete"
_ANSWER = outcome.SERVER_HELLO_ANSWERED


class TlsLane:
    """Takes the common TLS attempts off the detectors and the rules for one ``Judge``
    (whose controls it feeds); ``open`` is False where the rules do not let it."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.controls = judge.controls
        evidence = (ev(7, 11, "answer", _ANSWER),)
        f = finding(outcome.NAME, _SIGNAL, 1.0, _ANSWER, evidence)
        facts = Facts("tls", "tcp", 7, "", "", 443, "", 0.0, 0.0, (f,), {})
        v = apply_rules(facts, [f])
        self.verdict = v
        # ``verdict_piece`` of this verdict for an answer in frame 11 of input 7: the numbers become fields
        d = verdict_fields(v)
        d["input"] = 7
        d["rule"] = v.rule
        text = _encode_bytes(d)[1:-1]
        marks = b'"input":7,"packet":11,', b'"input":7,"rule":'
        self._template = (text.replace(b"%", b"%%").replace(marks[0], b'"input":%d,"packet":%d,')
                          .replace(marks[1], b'"input":%d,"rule":'))
        # the piece is written from that template: the verdict's summary and evidence must be the
        # finding's, each number in one place, and the early verdict must be the verdict (neither
        # cross-attempt detector reads the controls)
        self.open = (v.summary == _sentence(_ANSWER) and v.evidence == evidence and v.hop is None
                     and text.count(marks[0]) == 1 and text.count(marks[1]) == 1
                     and not crosscheck.asks(facts) and dnsforge.asks(facts) is False)

    def take(self, a: Attempt) -> bytes | None:
        """For a TLS attempt on which the local detectors find only that the server answered
        with a ServerHello (and no detector has failed: the general path leaves a failed one
        out): its verdict's piece, as ``verdict_piece`` writes it, the controls fed as
        ``Judge.local`` feeds them. None for any other attempt, the controls untouched."""
        c = a.tcp
        if a.kind != "tls" or c is None or self.judge._broken:
            return None
        reply = a.tls_reply
        if reply is None or not reply.server_hello or not c.server_payload_frames:
            return None  # outcome._completed: no answer to show
        syn, synack = c.syn, c.synack
        if synack is None or c.icmp or c.conflicts[S2C]:
            return None  # outcome._tcp (an unanswered SYN), silence (ICMP), outcome._contradictions
        if not (syn is None or syn.wscale is None or synack.wscale is not None):
            return None  # options: a window scale the SYN-ACK did not echo
        if c.client_payload and not c.payload_bytes[S2C]:
            return None  # silence: a payload the server's side did not answer
        for m in c.markers:  # (every row with a RST is a marker: ``finish_tcp``)
            if m.kind == "rst":
                return None  # rst, outcome._contradictions, silence: resets
        syns = client_syns(c.rows)
        ecn = [asks_ecn(r[SEG_FLAGS]) for r in syns]
        if len(syns) > 1 and ecn[0] and not all(ecn):
            return None  # outcome._contradictions: an ECN SYN unanswered, a plain one answered
        # (blockpage reads HTTP attempts only.) The controls get what ``features`` would give them.
        inp = a.input
        self.controls.add_exchange(inp, a.kind, a.client.ip, a.server.ip, a.server.port, a.name,
                                   any(ecn) and ecn_answered(syns, synack.frame), a.hello.record_size)
        return self._template % (inp, c.server_payload_frames[0], inp)
