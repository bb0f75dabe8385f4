"""The DNS lane (``forensics.dnslane``) gives what the general path gives.

For every DNS transaction the lane takes in the samples, a generated capture with forged
answers and the corpus: the same JSON pieces byte for byte, the same verdict and the same
key for ``dnsforge.stands``, the same controls, and the same facts rebuilt for stage 2. And
the reports are the same with the lane closed.
"""

from __future__ import annotations

import pytest

from captures import DLT_RAW, T0_NS, pcap_offsets, write_pcap
from conftest import ROOT, assert_same_reports_without, generated, handed_on, reworded, with_samples_and_corpus
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from forensics import dnslane
from forensics.classify.engine import Judge
from forensics.model import DnsTransaction, Verdict
from forensics.reassembly.attempts import from_dns
from forensics.report import attempt_fragments, verdict_piece


def _generated(tmp_path) -> str:
    return generated(tmp_path, 5, "--forged-dns", "0.1", "--rst", "0.05")


def _rotated(tmp_path, generated: str) -> str:
    """``generated`` cut in three files in a folder, as ``tcpdump -C`` would: some queries
    are answered in the next file."""
    data = open(generated, "rb").read()
    offs = pcap_offsets(data) + [len(data)]
    folder = tmp_path / "rotated"
    folder.mkdir()
    cuts = [0, len(offs) // 3, 2 * len(offs) // 3, len(offs) - 1]
    for k in range(3):
        (folder / f"part{k}.pcap").write_bytes(data[:24] + data[offs[cuts[k]]:offs[cuts[k + 1]]])
    return str(folder)


def _odd_names(tmp_path) -> str:
    """Queries whose names JSON must escape or cannot write in ASCII, a CNAME chain, AAAA
    answers, NXDOMAIN, a query asked twice, over IPv4 and IPv6 (documentation addresses)."""
    names = [b"bl\xc3\xb6g.example", b'we"ird\\name.example', b"\xff\xfe.example", b"tab\tname.example",
             b"cname.example", b"v6.example", b"gone.example", b"again.example"]
    recs, t = [], T0_NS
    for k, qname in enumerate(names):
        v6 = qname == b"v6.example"
        c, r = ("2001:db8::10", "2001:db8::53") if v6 else ("192.0.2.10", "198.51.100.53")
        ip = (lambda s, d, ttl: IPv6(src=s, dst=d, hlim=ttl)) if v6 else (lambda s, d, ttl: IP(src=s, dst=d, ttl=ttl))
        qtype = "AAAA" if v6 else "A"
        q = DNS(id=100 + k, rd=1, qd=DNSQR(qname=qname, qtype=qtype))
        if qname == b"cname.example":
            an = DNSRR(rrname=qname, type="CNAME", ttl=60, rdata=b"edge.example") / DNSRR(
                rrname=b"edge.example", type="A", ttl=60, rdata="203.0.113.9")
        elif v6:
            an = DNSRR(rrname=qname, type="AAAA", ttl=60, rdata="2001:db8:2::9")
        else:
            an = DNSRR(rrname=qname, type="A", ttl=60, rdata="203.0.113.%d" % (10 + k))
        gone = qname == b"gone.example"
        a = DNS(id=100 + k, qr=1, rd=1, ra=1, rcode=3 if gone else 0, qd=DNSQR(qname=qname, qtype=qtype),
                an=[] if gone else an)
        for _ in range(2 if qname == b"again.example" else 1):
            recs.append((t, bytes(ip(c, r, 64) / UDP(sport=40000 + k, dport=53) / q)))
            t += 400_000_000
        recs.append((t + 21_000_000, bytes(ip(r, c, 57) / UDP(sport=53, dport=40000 + k) / a)))
        t += 50_000_000
    return str(write_pcap(tmp_path / "odd-names.pcap", recs, DLT_RAW))


def _inputs(tmp_path) -> list[str]:
    generated = _generated(tmp_path)
    return with_samples_and_corpus(generated, _rotated(tmp_path, generated), _odd_names(tmp_path))


@pytest.mark.parametrize("writer", ["record", "pieces", "dicts", "record, a memo of 3"])
def test_the_lane_gives_what_the_general_path_gives(tmp_path, monkeypatch, writer):
    """Each way of writing the lane's record: the compiled writer of the whole record
    (``_lines.dns_record``, the transaction packed), which leaves what it cannot write to the
    others; the compiled writer of the pieces (``_lines.dns_pieces``, the transaction pickled);
    and the dicts alone. And with the memo of outcomes and keys started again every three.
    (``_compare_on_inputs`` checks each transaction the lane takes against the general path.)"""
    cap = dnslane.MAX_KEY_MEMO
    if writer == "record, a memo of 3":
        writer, dnslane.MAX_KEY_MEMO = "record", 3
    try:
        seen, written = _with_writer(tmp_path, monkeypatch, writer)
    finally:
        small = dnslane.MAX_KEY_MEMO < 1000
        dnslane.MAX_KEY_MEMO = cap
    # the inputs hold both kinds, and answers whose verdict stage 2 checks
    assert seen["taken"] > 1000 and seen["left"] > 100 and seen["keyed"] > 1000 and seen["nxdomain"] > 5, seen
    assert seen["answered in the next file"] and seen["not ASCII"], seen
    # names asked again of the same resolver, with the same answer: their key came from the memo
    assert seen["remembered"] > (0 if small else 20), seen
    if writer != "dicts":  # most written by it; names it must not write (escapes, not ASCII) left
        assert written["written"] > 1000 and written["declined"] >= 3, written


def _with_writer(tmp_path, monkeypatch, writer) -> tuple[dict, dict]:
    """``_compare_on_inputs`` with the lane writing through ``writer``: what it saw, and how many
    records the compiled writer wrote and declined."""
    written = {"written": 0, "declined": 0}
    record, pieces = dnslane._record, dnslane._pieces
    if writer != "dicts" and (pieces is None or (writer == "record" and record is None)):
        pytest.skip("the compiled line writer is not built")
    counted_one = record if writer == "record" else pieces

    def counted(*args):
        got = counted_one(*args)
        written["written" if got is not None else "declined"] += 1
        return got

    # set by hand, around the lane's calls only: ``handed_on`` undoes the test's monkeypatches
    mine = {"record": (counted, pieces), "pieces": (None, counted), "dicts": (None, None)}[writer]
    try:
        seen = _compare_on_inputs(tmp_path, monkeypatch, *mine)
    finally:
        dnslane._record, dnslane._pieces = record, pieces
    return seen, written


def _compare_on_inputs(tmp_path, monkeypatch, record, pieces) -> dict:
    """Every transaction the lane takes in ``_inputs``, against the general path; what was seen."""
    seen = {"taken": 0, "left": 0, "keyed": 0, "nxdomain": 0, "answered in the next file": 0, "not ASCII": 0,
            "remembered": 0}
    for path in _inputs(tmp_path):
        general, laned = Judge([]), Judge([])
        items = handed_on(path, monkeypatch, DnsTransaction)
        dnslane._record, dnslane._pieces = record, pieces
        lane = dnslane.DnsLane(laned)
        assert lane.open and lane._record is record and lane._pieces is pieces
        for t in items:
            if not lane.takes(t):
                seen["left"] += 1
                continue
            seen["taken"] += 1
            seen["nxdomain"] += t.responses[0].rcode == 3
            seen["answered in the next file"] += t.responses[0].input != t.input
            a = from_dns(t)
            facts = general.local(a)
            got = general.early(facts)
            assert got is not None, (path, t)
            v, key = got
            remembered = len(lane._keys)
            start, frame, head, piece, mid, tail, lane_key, raw = lane.take(t)
            seen["remembered"] += len(lane._keys) == remembered
            assert len(lane._keys) <= dnslane.MAX_KEY_MEMO
            assert (head, mid, tail) == attempt_fragments(a), (path, t)
            assert piece == verdict_piece(v, a.input), (path, t)
            seen["not ASCII"] += not t.qname.isascii()
            assert isinstance(lane.verdict, Verdict) and lane.verdict.verdict == v.verdict
            assert (start, frame) == (a.start, a.frames[0])
            assert lane_key == (key or None), (path, t)
            if lane_key is not None:
                seen["keyed"] += 1
                assert dnslane.transaction(raw) == t
                r = t.responses[0]
                mine = (t.input, t.client.ip, t.client.port, t.server.ip, t.server.port, t.txid, t.qname, t.qtype,
                        t.query_frames, t.query_ts, t.query_ttl, t.watched, r.input, r.frame, r.ts, r.ttl, r.ipid,
                        r.flags, r.rcode, tuple([(a.name, a.rtype, a.ttl, a.data) for a in r.answers]),
                        r.authority, r.additional, r.qname_matches)
                # the same builtins, packed or pickled: the same values of the same types
                assert raw == mine and list(map(type, raw)) == list(map(type, mine)), (path, t)
                assert dnslane.facts_of(Judge([]), raw) == facts
            else:
                assert raw is None
        # the controls fed by the lane (the transactions it took) equal those of the general path
        assert laned.controls == general.controls, path
    return seen


def _same_name_answered_apart(tmp_path) -> str:
    """One name asked again and again, answered in every way the lane's memo must tell apart:
    NXDOMAIN, NOERROR without an address (the same empty answer, another rcode), an address,
    another address, the same address from another resolver, and an AAAA query (documentation
    addresses)."""
    recs, t = [], T0_NS
    name = b"again.example"
    plan = [("198.51.100.53", "A", 3, None), ("198.51.100.53", "A", 0, None),
            ("198.51.100.53", "A", 0, "203.0.113.5"), ("198.51.100.53", "A", 0, "203.0.113.6"),
            ("198.51.100.54", "A", 0, "203.0.113.5"), ("198.51.100.53", "AAAA", 0, None),
            ("198.51.100.53", "A", 3, None), ("198.51.100.53", "A", 0, "203.0.113.5")]
    for k, (resolver, qtype, rcode, addr) in enumerate(plan):
        q = DNS(id=200 + k, rd=1, qd=DNSQR(qname=name, qtype=qtype))
        an = DNSRR(rrname=name, type="A", ttl=60, rdata=addr) if addr else []
        a = DNS(id=200 + k, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name, qtype=qtype), an=an)
        recs.append((t, bytes(IP(src="192.0.2.10", dst=resolver, ttl=64) / UDP(sport=41000 + k, dport=53) / q)))
        recs.append((t + 21_000_000, bytes(IP(src=resolver, dst="192.0.2.10", ttl=57)
                                           / UDP(sport=53, dport=41000 + k) / a)))
        t += 50_000_000
    return str(write_pcap(tmp_path / "same-name.pcap", recs, DLT_RAW))


def test_the_memo_tells_apart_what_the_key_and_outcome_depend_on(tmp_path, monkeypatch):
    """The lane's memo of outcomes and keys gives each transaction what the general path gives
    it, where one name is answered in turn with each thing its key depends on changed."""
    items = handed_on(_same_name_answered_apart(tmp_path), monkeypatch, DnsTransaction)
    assert len(items) == 8
    general, laned = Judge([]), Judge([])
    lane = dnslane.DnsLane(laned)
    keys = []
    for t in items:
        assert lane.takes(t)
        v, key = general.early(general.local(from_dns(t)))
        got = lane.take(t)
        assert got[6] == (key or None), t
        keys.append(got[6])
    assert laned.controls == general.controls
    assert len(lane._keys) == 6 and keys[6] == keys[0] and keys[7] == keys[2]  # the last two remembered
    assert len(set(map(repr, keys))) == 6


def test_the_writer_is_left_when_the_summary_is_worded_otherwise(monkeypatch):
    """The compiled writer words the lane's summary as ``answered_detail`` does today: reworded,
    the lane writes through its dicts."""
    if dnslane._pieces is None:
        pytest.skip("the compiled line writer is not built")
    assert dnslane.DnsLane(Judge([]))._pieces is dnslane._pieces
    monkeypatch.setattr(dnslane, "answered_detail", lambda count, delay, rcodes: f"{count} answer(s)")
    assert dnslane.DnsLane(Judge([]))._pieces is None


def test_the_compiled_writer_declines_what_it_would_not_write_as_the_encoder_does():
    """``_lines.dns_pieces`` answers None for a value it cannot be sure to write as orjson and the
    standard encoder would: text to escape or not ASCII, a bool or an int beyond 64 bits
    where an int goes, a float whose notation the two may differ on."""
    pieces = dnslane._pieces
    if pieces is None:
        pytest.skip("the compiled line writer is not built")
    lane = dnslane.DnsLane(Judge([]))

    from forensics.model import DnsAnswer as Answer

    class Other:  # an answer of another type than the one the writer reads by its slots' offsets
        def __init__(self, name, rtype, ttl, data):
            self.name, self.rtype, self.ttl, self.data = name, rtype, ttl, data

    base = dict(delay=0.015701, qdetail="A a.example", rdetail="192.0.2.1", inp=0, cip="192.0.2.10", cport=40000,
                sip="198.51.100.53", sport=53, name="a.example", start=1795255200.000044,
                duration=15.701, history="Qr", frames=[1, 29], total=2, txid=7, qtype="A", qframes=(1,),
                qttl=64, rinp=0, rframe=29, rtime=1795255200.015745, rip="198.51.100.53", rport=53,
                rttl=57, ipid=-1, flags="0x8180", rcode="NOERROR", aa=False,
                answers=(Answer("a.example", "A", 300, "192.0.2.1"),))

    def call(**change):
        v = {**base, **change}
        return pieces(lane._vhead, lane._rule, *v.values())

    head, piece, mid, tail = call()
    assert b'"summary":"1 response(s), first after 15.7 ms (NOERROR).","evidence"' in piece, piece
    assert b'"ip_id":-1' in tail and b'"duration_ms":15.701' in head and piece.endswith(b',"rule":' + lane._rule)
    assert call(duration=0.0)[0].endswith(b'"duration_ms":0.0') and call(duration=16.0)[0].endswith(b":16.0")
    assert call(aa=True)[3].count(b'"aa":true') == 1
    for change in (dict(name='we"ird.example'), dict(name="back\\slash"), dict(name="tab\there"),
                   dict(name="bl\u00f6g.example"), dict(qdetail="A \x7f"), dict(txid=True), dict(txid=1 << 64),
                   dict(rttl=None), dict(duration=1e-5), dict(duration=1e16), dict(duration=float("nan")),
                   dict(duration=15), dict(frames=[1, "2"]), dict(answers=[]), dict(start=-1.0), dict(rtime=1e12),
                   dict(delay=float("nan")), dict(delay=1), dict(rcode='NO"ERROR'),
                   dict(answers=(Answer("a.example", "A", 300, "caf\u00e9"),)),
                   dict(answers=(Other("a.example", "A", 300, "192.0.2.1"),))):
        assert call(**change) is None, change


def test_the_record_writer_packs_what_it_reads_back_and_declines_the_rest():
    """``_lines.dns_record``: the record's header, pieces and key as ``report.line_record`` lays
    them out, the transaction packed as ``dnslane.unpack`` reads it (and only where there is
    a key); None for a value the packing would not give back as it was; a packed
    transaction cut short is an error, not a wrong transaction."""
    record = dnslane._record
    if record is None:
        pytest.skip("the compiled line writer is not built")
    lane = dnslane.DnsLane(Judge([]))

    from forensics.model import DnsAnswer as Answer
    from forensics.report import LANE_DNS_PACKED, read_line_record

    answers = (Answer("a.example", "CNAME", 60, "b.example"), Answer("b.example", "A", 300, "192.0.2.1"))
    base = dict(delay=0.015701, qdetail="A a.example", rdetail="192.0.2.1", inp=3, cip="192.0.2.10", cport=40000,
                sip="198.51.100.53", sport=53, name="a.example", start=1795255200.000044,
                duration=15.701, history="QQr", frames=[1, 2, 29], total=3, txid=7, qtype="A", qframes=(1, 2),
                qttl=64, rinp=4, rframe=29, rtime=1795255200.015745, rip="198.51.100.53", rport=53,
                rttl=57, ipid=-1, rflags="0x8180", rcode_text="NOERROR", aa=False, answers=answers,
                watched=None, flags=0x8180, rcode=0, authority=1, additional=2, qmatch=True)

    def call(key=b"K", **change):
        v = {**base, **change}
        return record(9, key, lane._vhead, lane._rule, *v.values())

    code, lane_byte, head, piece, mid, tail, key, facts = read_line_record(call())
    assert (code, lane_byte, key) == (9, LANE_DNS_PACKED, b"K")
    assert (head, piece, mid, tail) == dnslane._pieces(lane._vhead, lane._rule, *list(base.values())[:-6])
    assert dnslane.unpack(facts) == (3, "192.0.2.10", 40000, "198.51.100.53", 53, 7, "a.example", "A", (1, 2),
                                     1795255200.000044, 64, None, 4, 29, 1795255200.015745, 57, -1, 0x8180, 0,
                                     (("a.example", "CNAME", 60, "b.example"), ("b.example", "A", 300, "192.0.2.1")),
                                     1, 2, True)
    got = dnslane.unpack(read_line_record(call(watched=0.25, qmatch=False, answers=()))[7])
    assert (got[11], got[19], got[22]) == (0.25, (), False)
    assert read_line_record(call(key=b""))[6:] == (b"", b"")  # no key: the verdict stands, no facts kept
    for change in (dict(qmatch=1), dict(watched=1), dict(qframes=[1, 2]), dict(flags=1 << 64), dict(rcode=None),
                   dict(authority=True), dict(answers=(Answer("a.example", "A", 1 << 70, "192.0.2.1"),))):
        assert call(**change) is None, change
    for cut in (1, 8, len(facts) - 1):
        with pytest.raises(ValueError):
            dnslane.unpack(facts[:-cut])
    assert dnslane.raw_of(LANE_DNS_PACKED, b"") is None
    with pytest.raises(ValueError):
        dnslane.raw_of(0, facts)


def test_the_lane_leaves_what_it_does_not_write(tmp_path, monkeypatch):
    """Racing answers, no answer, an ICMP error, answers cut by the snapshot length or sent
    in IP fragments, an error rcode: the general path's."""
    lane = dnslane.DnsLane(Judge([]))
    left = [t for path in (str(ROOT / "pcaps"), _generated(tmp_path))
            for t in handed_on(path, monkeypatch, DnsTransaction) if not lane.takes(t)]
    assert any(len(t.responses) >= 2 for t in left) and any(t.responses and t.responses[0].fragments for t in left)
    for t in left:
        r = t.responses
        assert (len(r) != 1 or r[0].src != t.server or r[0].cut or r[0].fragments or r[0].rcode not in (0, 3)
                or t.icmp or t.query_fragments)


def test_the_lane_stays_closed_when_the_rules_word_the_verdict_otherwise(monkeypatch):
    assert dnslane.DnsLane(Judge([])).open
    monkeypatch.setattr(dnslane, "apply_rules", reworded(dnslane.apply_rules))
    assert not dnslane.DnsLane(Judge([])).open


@pytest.mark.parametrize("jobs", [1, 2])
def test_reports_are_the_same_with_the_lane_closed(tmp_path, monkeypatch, jobs):
    inputs = _inputs(tmp_path)
    assert_same_reports_without("DNS_LANE", inputs[:2] if jobs == 2 else inputs, monkeypatch, jobs)
