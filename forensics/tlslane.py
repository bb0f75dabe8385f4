"""The TLS lane: the common TLS connection (and HTTP exchange) judged without running the
detectors and the rules.

Most TLS connections of a capture are alike: a handshake, a ClientHello, a ServerHello, no
reset, no ICMP error, nothing contradicting. For such a connection the general path runs the
five local detectors (only ``outcome`` has something to say: ``exchange-complete``), asks
the rules for the early verdict and encodes that verdict. The same holds for an HTTP request
answered with a status line where ``blockpage`` finds nothing in the response: the lane runs
that detector itself (what it finds is a matter of the response's packets and bytes, not of a
few fields), and keeps a template for each answer ("HTTP 200", "HTTP 301"), made on its first
need. ``TlsLane.take`` makes the same
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
from .detectors.features import asks_ecn, ecn_answered
from .model import S2C, SEG_FLAGS, Attempt, TcpConn, endpoint_fields, slot_reader
from .report import _encode_bytes, verdict_fields

# the lane stands for these detectors' findings on a TCP attempt, in this order
assert [d.name for d in BUILTIN] == ["outcome", "rst", "blockpage", "silence", "options"], \
    "the TLS lane must learn what the new detector says of a TLS connection"

#: what ``take`` reads of an attempt and its connection, each in one call (``model.slot_reader``)
_ATTEMPT = slot_reader(Attempt, "tcp", "kind", "tls_reply", "response", "input", "client", "server", "name", "hello",
                       "request")
_CONN = slot_reader(TcpConn, "server_payload_frames", "syn", "synack", "icmp", "conflicts", "client_payload",
                    "payload_bytes", "markers", "syn_rows")

_SIGNAL = "exchange-complete"
_ANSWER = outcome.SERVER_HELLO_ANSWERED
_BLOCKPAGE = next(d for d in BUILTIN if d.name == "blockpage")
_UNSEEN = object()  # (an answer not met yet)
#: HTTP answers ("HTTP 200") whose templates are kept; a capture's others go the general way
#: (servers answer with a few dozen status codes; a table that a capture of garbage could grow
#: without end would be a leak)
MAX_HTTP_ANSWERS = 256


class TlsLane:
    """Takes the common TLS attempts and HTTP exchanges off the detectors and the rules for
    one ``Judge`` (whose controls it feeds); ``open`` is False where the rules do not let it
    for TLS (HTTP answers are asked about one by one)."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.controls = judge.controls
        self.verdict = None
        self._template = self._template_of("tls", _ANSWER)
        self.open = self._template is not None
        # HTTP attempts: a template per answer ("the server answered HTTP 200"), made on first
        # need; None where the rules word that answer's verdict otherwise (the general path)
        self._http: dict[str, bytes | None] = {}

    def _template_of(self, kind: str, answer: str) -> bytes | None:
        """``verdict_piece``'s text, for an attempt of ``kind`` whose only finding is the completed
        exchange with ``answer`` (evidence in frame 11 of input 7, the numbers made fields), or
        None where the lane cannot write it so. The first one made (TLS's) is ``self.verdict``;
        the others must give the same verdict by the same rule (``record_tls`` spills its code)."""
        evidence = (ev(7, 11, "answer", answer),)
        f = finding(outcome.NAME, _SIGNAL, 1.0, answer, evidence)
        facts = Facts(kind, "tcp", 7, "", "", 443, "", 0.0, 0.0, (f,), {})
        v = apply_rules(facts, [f])
        d = verdict_fields(v)
        d["input"] = 7
        d["rule"] = v.rule
        text = _encode_bytes(d)[1:-1]
        marks = b'"input":7,"packet":11,', b'"input":7,"rule":'
        # the piece is written from the template: the verdict's summary and evidence must be the
        # finding's, each number in one place, and the early verdict must be the verdict (neither
        # cross-attempt detector reads the controls)
        if not (v.summary == _sentence(answer) and v.evidence == evidence and v.hop is None
                and text.count(marks[0]) == 1 and text.count(marks[1]) == 1
                and not crosscheck.asks(facts) and dnsforge.asks(facts) is False):
            return None
        if self.verdict is None:
            self.verdict = v
        elif (v.verdict, v.rule) != (self.verdict.verdict, self.verdict.rule):
            return None
        return (text.replace(b"%", b"%%").replace(marks[0], b'"input":%d,"packet":%d,')
                .replace(marks[1], b'"input":%d,"rule":'))

    def take(self, a: Attempt) -> bytes | None:
        """For a TLS attempt on which the local detectors find only that the server answered
        with a ServerHello, or an HTTP attempt on which they find only that it answered with a
        status line (and no detector has failed: the general path leaves a failed one out): its
        verdict's piece, as ``verdict_piece`` writes it, the controls fed as ``Judge.local``
        feeds them. None for any other attempt, the controls untouched."""
        c, kind, reply, response, inp, client, server, name, hello, request = _ATTEMPT(a)
        if c is None or self.judge._broken:
            return None
        (server_payload_frames, syn, synack, icmp, conflicts, client_payload, payload_bytes, markers,
         syns) = _CONN(c)
        if not server_payload_frames:
            return None  # outcome._completed: no answer to show
        if kind == "tls":
            if reply is None or not reply.server_hello:
                return None  # outcome._completed
            template = self._template
        elif kind == "http":
            if response is None or not response.status:
                return None  # outcome._completed
            answer = f"the server answered HTTP {response.status}"  # (outcome._completed's words)
            template = self._http.get(answer, _UNSEEN)
            if template is _UNSEEN:
                template = self._template_of("http", answer)
                if len(self._http) < MAX_HTTP_ANSWERS:
                    self._http[answer] = template
            if template is None:
                return None
        else:
            return None
        if synack is None or icmp or conflicts[S2C]:
            return None  # outcome._tcp (an unanswered SYN), silence (ICMP), outcome._contradictions
        if not (syn is None or syn.wscale is None or synack.wscale is not None):
            return None  # options: a window scale the SYN-ACK did not echo
        if client_payload and not payload_bytes[S2C]:
            return None  # silence: a payload the server's side did not answer
        for m in markers:  # (every row with a RST is a marker: ``finish_tcp``)
            if m.kind == "rst":
                return None  # rst, outcome._contradictions, silence: resets
        ecn = [asks_ecn(r[SEG_FLAGS]) for r in syns]
        if len(syns) > 1 and ecn[0] and not all(ecn):
            return None  # outcome._contradictions: an ECN SYN unanswered, a plain one answered
        if kind == "http":
            try:  # the detector itself: what it finds of a response is not a few fields' matter
                if _BLOCKPAGE.run(a):
                    return None
            except Exception:
                return None  # (the general path runs it again, and leaves it out from then on)
        # The controls get what ``features`` would give them (its hello size and request path).
        sip, sport = endpoint_fields(server)
        self.controls.add_exchange(inp, kind, client.ip, sip, sport, name,
                                   any(ecn) and ecn_answered(syns, synack.frame),
                                   hello.record_size if hello is not None else 0,
                                   request.path if request is not None else None)
        return template % (inp, server_payload_frames[0], inp)
