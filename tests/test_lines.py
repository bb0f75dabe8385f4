"""The compiled writer of a TCP attempt's JSON pieces (``forensics._lines.tcp_pieces``) gives
the bytes the dicts give (``report.attempt_fragments`` without it).

For every TCP attempt of the samples (the lab's captures), a generated capture with injected
resets and dropped ClientHellos, a capture of values JSON must escape or cannot write in ASCII,
and the corpus: the same head, mid and tail, byte for byte. The writer declines what it does not
write (ICMP errors, IP fragments, cut payloads, text to escape), and the dicts write those.
"""

from __future__ import annotations

import pytest

from conftest import generated, handed_on, with_samples_and_corpus
from flows import Capture, Flow, client_hello, http_request, http_response

from forensics import report
from forensics.model import MAX_FRAMES_LISTED, TcpConn
from forensics.reassembly.attempts import from_tcp

pytestmark = pytest.mark.skipif(report._tcp_pieces is None, reason="the compiled line writer is not built "
                                                                   "(or FORENSICS_PURE is set)")


def _generated(tmp_path) -> str:
    return generated(tmp_path, 11, "--rst", "0.05", "--sni-drop", "0.05")


def _odd(tmp_path) -> str:
    """Names, paths and answers JSON must escape or cannot write in ASCII, over IPv4 and IPv6
    (documentation addresses)."""
    cap = Capture()
    for k, (client, server) in enumerate((("192.0.2.10", "203.0.113.7"), ("2001:db8::10", "2001:db8:2::7"))):
        port = 42000 + 10 * k
        Flow(cap, client, server, sport=port).tls_ok("bl\u00f6g.example")
        Flow(cap, client, server, sport=port + 1).tls_ok('we"ird.example')
        Flow(cap, client, server, sport=port + 2, dport=80).http_ok("plain.example", '/a"b\\c')
        Flow(cap, client, server, sport=port + 3, dport=80).exchange_ok(
            http_request("caf\u00e9.example", "/\u00e9t\u00e9"), http_response(200, body=b"<title>caf\xc3\xa9</title>"))
        Flow(cap, client, server, sport=port + 4, dport=80).exchange_ok(
            http_request("tab.example", "/x\ty"), http_response(404))
        Flow(cap, client, server, sport=port + 5, dport=80).http_ok("clean.example", "/page")
    return cap.write(tmp_path / "odd.pcap")


def _inputs(tmp_path) -> list[str]:
    return with_samples_and_corpus(_generated(tmp_path), _odd(tmp_path))


def test_the_writer_gives_what_the_dicts_give(tmp_path, monkeypatch):
    from forensics import _lines

    assert _lines.SLOTS, f"fields the writer reads not found at an offset: {_lines._missing}"
    writer = report._tcp_pieces
    seen = {"written": 0, "declined": 0, "tls": 0, "http": 0, "markers": 0, "ipv6": 0}
    attempts = []
    for path in _inputs(tmp_path):
        attempts += [a for c in handed_on(path, monkeypatch, TcpConn) for a in from_tcp(c)]
    try:
        for a in attempts:
            report._tcp_pieces = writer
            got = writer(a, a.duration_ms, MAX_FRAMES_LISTED)
            mine = report.attempt_fragments(a)
            report._tcp_pieces = None
            want = report.attempt_fragments(a)
            assert mine == want, a
            if got is None:
                seen["declined"] += 1
                continue
            assert got == want, a
            seen["written"] += 1
            seen["tls"] += a.hello is not None
            seen["http"] += a.request is not None
            seen["markers"] += len(a.tcp.markers) > 0
            seen["ipv6"] += ":" in a.client.ip
    finally:
        report._tcp_pieces = writer
    assert seen["written"] > 500 and seen["declined"] >= 6, seen
    assert seen["tls"] > 100 and seen["http"] > 100 and seen["markers"] > 100 and seen["ipv6"] > 10, seen


def test_the_writer_declines_what_it_would_not_write_as_the_encoder_does(tmp_path, monkeypatch):
    """A value the writer cannot be sure to write as orjson and the standard encoder would (text
    to escape or not ASCII, a bool or an int beyond 64 bits where an int goes, a float whose
    notation the two may part on), and the shapes it leaves to the dicts: None from it, and the
    dicts' bytes from ``attempt_fragments``."""
    import dataclasses

    a = next(a for c in handed_on(_odd(tmp_path), monkeypatch, TcpConn) for a in from_tcp(c)
             if a.request is not None and a.request.host == "clean.example" and ":" not in a.client.ip)
    c, q = a.tcp, a.request
    marker = c.markers[0]
    assert report._tcp_pieces(a, a.duration_ms, MAX_FRAMES_LISTED) is not None
    changed = [
        dataclasses.replace(a, name="bl\u00f6g.example"),
        dataclasses.replace(a, history="Q\x01"),
        dataclasses.replace(a, request=dataclasses.replace(q, path="/\\")),
        dataclasses.replace(a, tcp=dataclasses.replace(c, packets=(True, 2))),
        dataclasses.replace(a, tcp=dataclasses.replace(c, packets=(1 << 64, 2))),
        dataclasses.replace(a, tcp=dataclasses.replace(c, markers=(dataclasses.replace(marker, since_payload_ms=1e-5),))),
        dataclasses.replace(a, tcp=dataclasses.replace(c, markers=(dataclasses.replace(marker, since_payload_ms=float("inf")),))),
        dataclasses.replace(a, tcp=dataclasses.replace(c, payload_cut=1)),
        dataclasses.replace(a, tcp=dataclasses.replace(c, fragment_frames=(3,), fragment_ttls=(64,))),
    ]
    # a record of another type than the writer reads by its slots' offsets: a subclass here
    from forensics.model import Endpoint

    class Other(Endpoint):
        pass

    changed.append(dataclasses.replace(a, client=Other(a.client.ip, a.client.port)))
    for b in changed:
        assert report._tcp_pieces(b, b.duration_ms, MAX_FRAMES_LISTED) is None, b
        got = report.attempt_fragments(b)
        monkeypatch.setattr(report, "_tcp_pieces", None)
        assert got == report.attempt_fragments(b)
        monkeypatch.undo()
    # and what it writes: one marker's float, a bool, None
    b = dataclasses.replace(a, tcp=dataclasses.replace(c, markers=(dataclasses.replace(marker, since_payload_ms=2.5),)))
    head, mid, tail = report._tcp_pieces(b, b.duration_ms, MAX_FRAMES_LISTED)
    assert b'"since_payload_ms":2.5}' in tail and b'"complete":true' in tail and (b'"synack":null' in tail) == (c.synack is None)
    monkeypatch.setattr(report, "_tcp_pieces", None)
    assert (head, mid, tail) == report.attempt_fragments(b)


def test_floats_are_written_as_the_encoder_writes_them():
    """A float by the writers (``_lines.float_text``): orjson's bytes and ``repr``'s text, from the
    thousandths where a value is one (``round_to(x, 3)``, most of a report's) and by Python's
    shortest repr otherwise; None where orjson's notation and ``repr``'s may part (below 1e-4,
    from 1e16, not finite)."""
    import math
    import random

    import orjson

    from forensics._lines import float_text
    from forensics.model import round_to

    rng = random.Random(37)
    values = [0.0, -0.0, 0.001, -0.001, 0.5, 16.0, 1e-4, 0.000999, 1099511627775.999, 1099511627776.0, 2.0 ** 40 - 0.5,
              123.456, -15.701, 1e15 + 0.5, 9.999999999999998e15]
    for e in range(-5, 17):
        for _ in range(3000):
            x = rng.random() * 10.0 ** e * rng.choice((1, -1))
            values += [x, round_to(x, 3), round(x, 3), float(int(x)), round_to(x, 6), math.nextafter(round_to(x, 3), 0)]
    written = 0
    for v in values:
        got = float_text(v)
        if got is None:
            assert v != 0.0 and not 1e-4 <= abs(v) < 1e16, v
            continue
        written += 1
        assert got == orjson.dumps(v) and got.decode() == repr(v), (v, got)
    for v in (1e-5, -9.9e-05, 1e16, float("inf"), float("-inf"), float("nan")):
        assert float_text(v) is None, v
    assert float_text(1) is None and float_text(True) is None and written > 300_000


def test_times_are_written_as_iso_time_writes_them():
    """A time by the writers (``_lines.iso_text``): ``model.iso_time``'s text, quoted, from 1970 to
    the end of 9999, across leap days, the ends of years and microseconds rounded half to even;
    None elsewhere (and for what is not a float)."""
    import random

    from forensics._lines import iso_text
    from forensics.model import iso_time

    rng = random.Random(37)
    values = [0.0, 0.4999995, 0.0000005, 0.0000015, 59.9999995, 86399.9999996, 951782400.0, 951868799.999999,
              1795255200.000044, 4107542400.0, 253402300799.999999, 253402300799.9999995]
    values += [rng.uniform(0, 253402300800.0) for _ in range(100_000)]
    values += [rng.uniform(1.7e9, 1.9e9) for _ in range(100_000)]
    values += [round(rng.uniform(0, 4e9)) + k / 2_000_000 for k in range(-3, 4) for _ in range(2_000)]
    written = 0
    for v in values:
        got = iso_text(v)
        if got is None:
            assert round(v * 1_000_000) >= 253402300800 * 1_000_000, v
            continue
        written += 1
        assert got == b'"' + iso_time(v).encode() + b'"', (v, got)
    for v in (-0.5, 253402300800.0, float("nan"), float("inf"), 17, True, None):
        assert iso_text(v) is None, v
    assert written > 200_000
