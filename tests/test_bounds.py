"""No work is quadratic in the packets of one flow or the responses of one query.

Captures are built from byte templates in a temporary directory: one TCP
connection of 20k and of 200k packets (a ClientHello, then data and ACKs with a
retransmission every 50 segments), and one DNS query answered 1k and 10k times
(16 different answers from varying TTLs, as an injector racing a resolver would).
The analysis time of the big one over the small one is compared with the ratio
of their sizes: linear work gives about 10, quadratic about 100; the bound is
10 x 2.5, and each time is the best of two runs, so a loaded machine does not
make it flaky. Ratios, not absolute times.
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import captures as C  # noqa: E402

pytestmark = pytest.mark.timeout(240)

#: The time of ``factor`` times the input may grow by at most ``factor ** LINEAR_EXPONENT``:
#: linear work grows by ``factor``, quadratic work by ``factor ** 2``; the cut is their
#: geometric middle (31.6x for 10x), so machine noise on a short run (a CI run once
#: measured 25x for linear work) is not taken for a quadratic path, nor the reverse.
LINEAR_EXPONENT = 1.5
CLIENT, SERVER, RESOLVER = bytes([10, 0, 0, 1]), bytes([93, 184, 216, 34]), bytes([10, 0, 0, 53])


def _ipv4(src: bytes, dst: bytes, proto: int, ttl: int, ipid: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ipid & 0xFFFF, 0x4000, ttl, proto, 0,
                       src, dst) + payload


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags,
                       65535, 0, 0) + data


def one_flow(path: Path, packets: int) -> Path:
    t0 = C.T0_NS
    cs, ss = 1_000_000, 5_000_000
    hello = C.client_hello("bounds.example")
    recs = [
        (t0, _ipv4(CLIENT, SERVER, 6, 64, 1, _tcp(40000, 443, cs, 0, 0x02))),
        (t0 + 1_000_000, _ipv4(SERVER, CLIENT, 6, 52, 1, _tcp(443, 40000, ss, cs + 1, 0x12))),
        (t0 + 2_000_000, _ipv4(CLIENT, SERVER, 6, 64, 2, _tcp(40000, 443, cs + 1, ss + 1, 0x10))),
    ]
    seq = cs + 1
    chunk = b"\x17\x03\x03\x00\x5b" + b"x" * 91
    i = 0
    while len(recs) < packets:
        data = hello if i == 0 else chunk
        ts = t0 + (3 + i) * 1_000_000
        recs.append((ts, _ipv4(CLIENT, SERVER, 6, 64, 3 + i, _tcp(40000, 443, seq, ss + 1, 0x18, data))))
        if i % 50 == 49:  # the same segment again: a retransmission
            recs.append((ts + 100_000, _ipv4(CLIENT, SERVER, 6, 64, 3 + i, _tcp(40000, 443, seq, ss + 1, 0x18, data))))
        seq += len(data)
        recs.append((ts + 500_000, _ipv4(SERVER, CLIENT, 6, 52, 2 + i, _tcp(443, 40000, ss + 1, seq, 0x10))))
        i += 1
    return C.write_pcap(path, recs[:packets], C.DLT_RAW)


def one_query(path: Path, responses: int) -> Path:
    t0 = C.T0_NS
    query = C.dns_query("bounds.example", txid=0x4242)
    udp = lambda sp, dp, p: struct.pack("!HHHH", sp, dp, 8 + len(p), 0) + p  # noqa: E731
    answers = [C.dns_answer("bounds.example", txid=0x4242, addr=f"198.51.100.{k}", ttl=60 + k) for k in range(16)]
    recs = [(t0, _ipv4(CLIENT, RESOLVER, 17, 64, 1, udp(33333, 53, query)))]
    for k in range(responses):
        recs.append((t0 + (k + 1) * 1_000_000,
                     _ipv4(RESOLVER, CLIENT, 17, 40 + k % 30, k, udp(53, 33333, answers[k % 16]))))
    return C.write_pcap(path, recs, C.DLT_RAW)


def _best_time(path: Path, runs: int = 3) -> tuple[float, object]:
    import forensics

    best, report = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        report = forensics.analyze([str(path)])
        best = min(best, time.perf_counter() - t)
    return best, report


def _linear(small: float, big: float, factor: int, what: str) -> None:
    ratio = big / max(small, 1e-3)
    assert ratio <= factor ** LINEAR_EXPONENT, (
        f"{what}: {factor}x the input took {ratio:.1f}x the time ({small:.3f} s -> {big:.3f} s); "
        f"linear is about {factor}x")


def test_one_long_flow_is_linear(tmp_path):
    small = one_flow(tmp_path / "flow20k.pcap", 20_000)
    big = one_flow(tmp_path / "flow200k.pcap", 200_000)
    t_small, r_small = _best_time(small)
    t_big, r_big = _best_time(big)
    for r, n in ((r_small, 20_000), (r_big, 200_000)):
        assert len(r.attempts) == 1 and r.attempts[0].kind == "tls" and r.attempts[0].name == "bounds.example"
        assert sum(r.attempts[0].tcp.packets) == n
        assert len(r.attempts[0].tcp.segs) <= 512 + 64  # the per-flow row cap holds
    _linear(t_small, t_big, 10, "one TCP flow")


def test_one_query_with_many_responses_is_linear(tmp_path):
    small = one_query(tmp_path / "dns2k.pcap", 2_000)  # the small run lasts long enough to time
    big = one_query(tmp_path / "dns20k.pcap", 20_000)
    t_small, r_small = _best_time(small)
    t_big, r_big = _best_time(big)
    for r, n in ((r_small, 2_000), (r_big, 20_000)):
        dns = [a for a in r.attempts if a.kind == "dns"]
        assert len(dns) == 1 and len(dns[0].dns.responses) == n
    _linear(t_small, t_big, 10, "one DNS query's responses")


def test_first_payload_past_the_row_cap_is_still_judged(tmp_path):
    """A connection keeps its first ``MAX_DETAIL`` rows: a request sent after that many
    packets (here server window updates) has no row left. Its time must still be known:
    the outcome detector once failed on it (and was disabled for the rest of the run)."""
    from forensics.reassembly.tcp import MAX_DETAIL

    t0 = C.T0_NS
    cs, ss = 1_000_000, 5_000_000
    req = b"GET / HTTP/1.1\r\nHost: capped.example\r\n\r\n"
    recs = [(t0, _ipv4(CLIENT, SERVER, 6, 64, 1, _tcp(40000, 80, cs, 0, 0x02))),
            (t0 + 1_000_000, _ipv4(SERVER, CLIENT, 6, 52, 1, _tcp(80, 40000, ss, cs + 1, 0x12))),
            (t0 + 2_000_000, _ipv4(CLIENT, SERVER, 6, 64, 2, _tcp(40000, 80, cs + 1, ss + 1, 0x10)))]
    for k in range(MAX_DETAIL + 50):
        recs.append((t0 + (3 + k) * 1_000_000, _ipv4(SERVER, CLIENT, 6, 52, 2 + k, _tcp(80, 40000, ss + 1, cs + 1, 0x10))))
    first = t0 + 10_000_000_000
    for k in range(2):  # the request, and once more 1.5 s later; never answered
        recs.append((first + k * 1_500_000_000, _ipv4(CLIENT, SERVER, 6, 64, 3 + k, _tcp(40000, 80, cs + 1, ss + 1, 0x18, req))))
    import forensics

    rep = forensics.analyze([str(C.write_pcap(tmp_path / "capped.pcap", recs, C.DLT_RAW))])
    assert not [w for w in rep.warnings if "failed" in w], rep.warnings
    (a,), (v,) = rep.attempts, rep.verdicts
    assert a.tcp.detail_capped and a.tcp.client_payload_ts == pytest.approx(first / 1e9)
    assert a.name == "capped.example" and a.tcp.client_payload_sends == 2
    assert "no answer in 1.5 s" in v.summary
