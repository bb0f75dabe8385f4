"""The DNS lane: the common DNS query over UDP, judged and encoded without the general
path's objects.

Most DNS transactions of a capture are alike: a query, one response from the server asked,
NOERROR or NXDOMAIN, whole. For such a transaction the general path makes an ``Attempt``,
runs every local detector (only ``outcome`` has something to say: ``dns-answered``), makes
its ``Facts`` and features, feeds the controls, finds the early verdict through the rules,
builds a ``Verdict`` and encodes it: about a third of a benchmark run's time went there.
``DnsLane.take`` gives the same results straight from the transaction: the line's pieces
(``report.attempt_fragments`` and ``report.verdict_piece``, written by ``forensics._lines``
where it is built and every value is one it writes, through dicts otherwise), the verdict, the key that
``dnsforge.stands`` checks once the controls are complete (``dnsforge.key_of``), and what
``Controls.add`` would have added (``Controls.add_lone_answer``).

Where the verdict does not stand (another resolver disagrees; an answer in special-purpose
space no client reached), stage 2 needs the facts: the lane keeps the transaction as
builtins (``raw``), and ``facts_of`` makes them through the general path, from a
transaction equal to the one the engine handed on.

The verdict comes from the rules, once: ``DnsLane`` asks ``apply_rules`` what a lone
``dns-answered`` finding gives, and stays closed (everything goes the general way) unless
the verdict's summary and evidence are that finding's own, as the lane writes them.
``tests/test_dnslane.py`` checks, for every transaction the lane takes in the samples, a
generated capture (whole and cut in rotated files), a capture of odd names and the corpus,
that both paths give the same bytes, keys, controls and rebuilt facts.
"""

from __future__ import annotations

import pickle
import struct

from .classify.engine import Judge, _sentence, apply_rules
from .compiled import lines_module
from .detectors import BUILTIN, outcome
from .detectors.outcome import answered_detail, response_detail
from .detectors.base import Facts, ev, finding, query_text
from .detectors.dnsforge import key_of
from .detectors.features import _outcome
from .model import (_HEX4, DNS_AA, MAX_FRAMES_LISTED, DnsAnswer, DnsResponse, DnsTransaction, answer_addresses,
                    endpoint_fields, hex4, iso_time, new_dns_answer, new_dns_response, round_to, new_dns_transaction,
                    new_endpoint, rcode_text, slot_reader)
from .reassembly.attempts import from_dns
from .report import (CUT1, CUT2, LANE_DNS, LANE_DNS_PACKED, _encode_bytes, fragments_of, line_record,
                     read_line_record, verdict_fields)

#: the compiled writer of the line's pieces, or None (``compiled.lines_module``)
_pieces = getattr(lines_module(), "dns_pieces", None)

#: The fixed part of a transaction packed by the compiled writer (``unpack``), little-endian:
#: thirteen int64 (input, client port, server port, id, query TTL, the response's input, frame,
#: IP TTL, IP-ID, flags, rcode, authority and additional counts), three doubles (the query's
#: time, the response's, ``watched`` or 0.0), a byte of bits (1: the response's question is
#: the query's; 2: ``watched`` is given) and two uint32 (how many query frames and answers).
#: Then the query frames (int64 each); the client's address, the server's, the name and the
#: type, each a uint32 length and its ASCII; then each answer: name, type, TTL (int64), data.
PACKED_HEAD = struct.Struct("<13q3dBII")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")


def _record_writer():
    """``_lines.dns_record`` where it is built and packs as ``unpack`` reads; else None."""
    mod = lines_module()
    if mod is None or getattr(mod, "PACKED_FORMAT", None) != PACKED_HEAD.format \
            or getattr(mod, "LANE_DNS_PACKED", None) != LANE_DNS_PACKED:
        return None
    return getattr(mod, "dns_record", None)


#: the compiled writer of the lane's whole spill record, or None
_record = _record_writer()

# the lane writes the findings of these detectors for a DNS transaction over UDP: outcome's,
# and none of the others' (each of them looks at TCP only)
assert [d.name for d in BUILTIN] == ["outcome", "rst", "blockpage", "silence", "options"], \
    "the DNS lane must learn what the new detector says of a DNS query over UDP"

#: the fields ``takes`` and ``take`` read, each record's in one call (``model.slot_reader``)
_TXN_CHECK = slot_reader(DnsTransaction, "icmp", "query_fragments", "responses", "server")
_RESPONSE_CHECK = slot_reader(DnsResponse, "src", "cut", "fragments", "rcode")
_TXN = slot_reader(DnsTransaction, "responses", "client", "server", "query_ts", "query_frames", "qname", "qtype",
                   "input", "txid", "query_ttl", "watched")
_RESPONSE = slot_reader(DnsResponse, "ts", "rcode", "ttl", "frame", "input", "src", "ipid", "flags", "answers",
                        "authority", "additional", "qname_matches")
_ANSWER = slot_reader(DnsAnswer, "name", "rtype", "ttl", "data")

#: Entries of ``DnsLane``'s memo of outcomes and pickled keys, after which it starts again: on
#: the benchmark's 1M file 26,654 distinct ones among 93,926 lane transactions. Each holds the
#: 5-tuple with its name and addresses, the outcome, the key's bytes and the dict's slot, about
#: 650 bytes: full, some 21 MB (the 10M file's peak RSS rose from 378 to 399 MB with it).
MAX_KEY_MEMO = 1 << 15

_SIGNAL = "dns-answered"
#: the summary ``_lines.dns_pieces`` writes for a response 15.7 ms after its query, NOERROR
_ANSWERED = "1 response(s), first after 15.7 ms (NOERROR)."
_NO_ICMP: list = []


class DnsLane:
    """Takes the common DNS transactions off the general path for one ``Judge`` (whose
    controls it feeds); ``open`` is False where the rules do not let it."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.controls = judge.controls
        evidence = (ev(0, 1, "query", "q"), ev(0, 2, "response", "r"))
        f = finding(outcome.NAME, _SIGNAL, 1.0, "x", evidence)
        v = apply_rules(Facts("dns", "udp", 0, "", "", 53, "", 0.0, 0.0, (f,), {}), [f])
        self.verdict = v
        # the lane writes the summary and the evidence from the finding, as ``apply_rules`` did here
        self.open = v.summary == _sentence("x") and v.evidence == evidence and v.hop is None
        # the verdict's members, in ``verdict_fields``' order: ``take`` fills in the summary and evidence
        self._fields = verdict_fields(v)
        # for the compiled writer: the verdict's members before its summary, and the rule, encoded
        enc = _encode_bytes(self._fields)[1:-1]
        self._vhead = enc[:enc.index(b'"summary":') + len(b'"summary":')]
        self._rule = _encode_bytes(v.rule)
        # the compiled writer words the summary as ``answered_detail`` did when it was written:
        # should that wording change, the lane writes through its dicts until the writer follows
        worded = _sentence(answered_detail(1, 0.0157, "NOERROR")) == _ANSWERED
        self._pieces = _pieces if worded else None
        self._record = _record if worded else None
        # (name, type, server, rcode, sorted addresses) -> (outcome, pickled key or b""): both are
        # a matter of those five alone, and they repeat (a name asked of one resolver, given one answer)
        self._keys: dict[tuple, tuple[str, bytes]] = {}

    def takes(self, t: DnsTransaction) -> bool:
        """Whether ``t`` is a query answered once, whole, by the server asked, with NOERROR
        or NXDOMAIN (and no detector has failed: the general path leaves a failed one out)."""
        icmp, query_fragments, responses, server = _TXN_CHECK(t)
        if icmp or query_fragments or len(responses) != 1 or self.judge._broken:
            return False
        src, cut, fragments, rcode = _RESPONSE_CHECK(responses[0])
        return (src is server or src == server) and not cut and not fragments and (rcode == 0 or rcode == 3)

    def record(self, t: DnsTransaction, code: int) -> tuple[float, int, int, bytes]:
        """For a transaction the lane ``takes``: (start, input, first frame, spill record),
        having fed the controls. The record (``report.line_record``) holds the verdict's
        ``code``, the line's pieces, and where the controls could still change the verdict, the
        pickled key ``dnsforge.stands`` is asked with and the transaction (``raw_of``): packed
        where the compiled writer makes the record, as pickled builtins otherwise."""
        responses, client, server, qts, qframes, name, qtype, inp, txid, qttl, watched = _TXN(t)
        r = responses[0]
        rts, rcode, rttl, rframe, rinp, src, ipid, flags, answers, authority, additional, qmatch = _RESPONSE(r)
        cip, cport = endpoint_fields(client)
        sip, sport = endpoint_fields(server)
        addrs = tuple(sorted(answer_addresses(answers)))  # (r.addresses(), from the answers read above)
        asked = (name, qtype, sip, rcode, addrs)
        known = self._keys.get(asked)
        if known is None:
            result = _outcome(addrs, rcode)
            key = key_of(name, qtype, sip, result, (addrs,)) or None
            known = result, b"" if key is None else pickle.dumps(key, 5)
            if len(self._keys) >= MAX_KEY_MEMO:
                self._keys.clear()
            self._keys[asked] = known
        result, keyed = known
        self.controls.add_lone_answer(inp, cip, sip, rttl, round_to(rts - qts, 6), name, qtype, result)
        frames = sorted([*qframes, rframe])
        listed = frames[:MAX_FRAMES_LISTED]
        qdetail, rdetail = query_text(qtype, name), response_detail(addrs, rcode)
        duration = round_to(max(rts - qts, 0.0) * 1000.0, 3)
        history = "Q" * min(len(qframes), 9) + "r"
        if self._record is not None:
            src_ip, src_port = endpoint_fields(src)
            rec = self._record(code, keyed, self._vhead, self._rule, rts - qts, qdetail, rdetail, inp, cip, cport,
                               sip, sport, name, qts, duration, history, listed, len(frames), txid,
                               qtype, qframes, qttl, rinp, rframe, rts, src_ip, src_port,
                               rttl, ipid, _HEX4.get(flags) or hex4(flags), rcode_text(rcode),
                               bool(flags & DNS_AA), answers, watched, flags, rcode, authority, additional, qmatch)
            if rec is not None:
                return qts, inp, frames[0], rec
        got = None
        if self._record is None and self._pieces is not None:  # (what the record writer declined: the dicts)
            src_ip, src_port = endpoint_fields(src)
            got = self._pieces(self._vhead, self._rule, rts - qts, qdetail, rdetail, inp, cip, cport,
                               sip, sport, name, qts, duration, history, listed, len(frames), txid,
                               qtype, qframes, qttl, rinp, rframe, rts, src_ip, src_port,
                               rttl, ipid, _HEX4.get(flags) or hex4(flags), rcode_text(rcode),
                               bool(flags & DNS_AA), answers)
        if got is not None:
            head, piece, mid, tail = got
        else:  # a value the compiled writer leaves to the encoder (or it is not built)
            d = self._fields.copy()
            d["summary"] = _sentence(answered_detail(1, rts - qts, rcode_text(rcode)))
            d["evidence"] = [{"input": inp, "packet": qframes[0], "signal": "query", "detail": qdetail},
                             {"input": r.input, "packet": r.frame, "signal": "response", "detail": rdetail}]
            d["input"] = inp  # (``verdict_piece``'s two members after the verdict's)
            d["rule"] = self.verdict.rule
            piece = _encode_bytes(d)[1:-1]
            head, mid, tail = fragments_of({
                "kind": "dns", "transport": "udp", "client": client.to_dict(), "server": server.to_dict(),
                "name": name, "start": iso_time(qts), "duration_ms": duration, CUT1: 0,
                "history": history, "frames": listed, "frames_total": len(frames), CUT2: 0,
                "dns": {"id": t.txid, "qname": name, "qtype": qtype, "query_frames": list(qframes),
                        "query_ttl": t.query_ttl, "responses": [r.to_dict()], "icmp": _NO_ICMP}})
        raw = b""
        if keyed:
            raw = pickle.dumps((inp, cip, cport, sip, sport, txid, name, qtype, qframes, qts, qttl, watched, rinp,
                                rframe, rts, rttl, ipid, flags, rcode, tuple([_ANSWER(a) for a in answers]),
                                authority, additional, qmatch), 5)
        return qts, inp, frames[0], line_record(code, LANE_DNS, head, piece, mid, tail, keyed, raw)

    def take(self, t: DnsTransaction) -> tuple:
        """``record``, read back: (start, first frame, head, verdict piece, mid, tail, key,
        raw); ``key`` None where the verdict stands whatever the controls hold, ``raw`` then
        None too, else the transaction as builtins (``facts_of``)."""
        start, _, frame, rec = self.record(t, 0)
        _, lane, head, piece, mid, tail, key, facts = read_line_record(rec)
        return start, frame, head, piece, mid, tail, pickle.loads(key) if key else None, raw_of(lane, facts)


def raw_of(lane: int, facts: bytes) -> tuple | None:
    """The transaction as builtins (``transaction``) from a lane record's facts: packed
    (``LANE_DNS_PACKED``) or pickled (``LANE_DNS``); None where there are none."""
    if not facts:
        return None
    if lane == LANE_DNS_PACKED:
        return unpack(facts)
    if lane == LANE_DNS:
        return pickle.loads(facts)
    raise ValueError(f"a spill record's lane is {lane}, not the DNS lane's")


def _text_at(data: bytes, at: int) -> tuple[str, int]:
    """The packed text at ``at`` (a uint32 length and ASCII), and where it ends."""
    n = _U32.unpack_from(data, at)[0]
    end = at + 4 + n
    if end > len(data):
        raise ValueError(_NOT_WHOLE)
    return data[at + 4:end].decode("ascii"), end


_NOT_WHOLE = "a DNS lane record's transaction is not whole: the spill file was changed"


def unpack(data: bytes) -> tuple:
    """The transaction as builtins from its bytes packed by ``_lines.dns_record`` (``PACKED_HEAD``);
    ValueError where they are not a whole one."""
    try:
        return _unpack(data)
    except (struct.error, UnicodeDecodeError):
        raise ValueError(_NOT_WHOLE) from None


def _unpack(data: bytes) -> tuple:
    (inp, cport, sport, txid, qttl, rinp, rframe, rttl, ipid, flags, rcode, authority, additional, qts, rts,
     watched, bits, nq, na) = PACKED_HEAD.unpack_from(data, 0)
    at = PACKED_HEAD.size
    qframes = struct.unpack_from(f"<{nq}q", data, at)
    at += 8 * nq
    cip, at = _text_at(data, at)
    sip, at = _text_at(data, at)
    name, at = _text_at(data, at)
    qtype, at = _text_at(data, at)
    got = []
    for _ in range(na):
        aname, at = _text_at(data, at)
        rtype, at = _text_at(data, at)
        ttl = _I64.unpack_from(data, at)[0]
        adata, at = _text_at(data, at + 8)
        got.append((aname, rtype, ttl, adata))
    if at != len(data):
        raise ValueError(_NOT_WHOLE)
    answers = tuple(got)
    return (inp, cip, cport, sip, sport, txid, name, qtype, qframes, qts, qttl, watched if bits & 2 else None,
            rinp, rframe, rts, rttl, ipid, flags, rcode, answers, authority, additional, bool(bits & 1))


def transaction(raw: tuple) -> DnsTransaction:
    """The transaction ``DnsLane.record`` kept as ``raw`` (``raw_of``)."""
    (inp, cip, cport, sip, sport, txid, name, qtype, qframes, qts, qttl, watched, rinp, rframe, rts, rttl, ipid,
     flags, rcode, answers, authority, additional, qmatch) = raw
    server = new_endpoint(sip, sport)
    # DnsResponse(input, frame, ts, src, ttl, ipid, flags, rcode, answers, authority, additional,
    # qname_matches, cut, fragments, fragment_ttls, fragments_disagree)
    resp = new_dns_response(rinp, rframe, rts, server, rttl, ipid, flags, rcode,
                            tuple([new_dns_answer(*a) for a in answers]), authority, additional, qmatch,
                            "", (), (), False)
    # DnsTransaction(input, client, server, transport, txid, qname, qtype, query_frames, query_ts,
    # query_ttl, responses, icmp, watched, query_fragments)
    return new_dns_transaction(inp, new_endpoint(cip, cport), server, "udp", txid, name, qtype, qframes, qts,
                               qttl, (resp,), (), watched, ())


def facts_of(judge: Judge, raw: tuple) -> Facts:
    """The facts the general path gives the transaction ``raw`` (the controls untouched)."""
    return judge.facts(from_dns(transaction(raw)))
