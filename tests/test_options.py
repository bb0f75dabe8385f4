"""A window scale removed from the SYN-ACK on the path (``option-stripping``).

The lab's recording (``pcaps/option-stripping``: a box at hop 2 overwrites the
servers' SYN-ACK window scale with NOPs) is judged, and its evidence read back with
scapy; scapy-built connections then try the arithmetic's edges, where nothing was
stripped: a server that does not scale and whose window fills, one that announced
its scale, a closed window, a client that offered no scale.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from captures import DLT_EN10MB, ETH_DST, ETH_SRC, write_pcap
from conftest import ROOT, analyze_json

SAMPLE = ROOT / "pcaps" / "option-stripping"
C, S = "192.0.2.10", "203.0.113.20"


@pytest.fixture(scope="module")
def sample_report() -> dict:
    if not (SAMPLE / "client.pcap").exists():
        pytest.skip("pcaps/option-stripping is not in this checkout")
    return analyze_json(SAMPLE)


def _frame(pcap: Path, n: int):
    return rdpcap(str(pcap))[n - 1]


def test_the_crawling_uploads_are_option_stripping_and_their_evidence_holds(sample_report):
    found = [x for x in sample_report["attempts"] if x["verdict"] == "option-stripping"]
    assert sorted(":" in a["server"]["ip"] for a in found) == [False, True]  # IPv4 and IPv6
    pcap = SAMPLE / "client.pcap"
    for a in found:
        assert (a["class"], a["trigger"], a["rule"]) == ("middlebox-fault", "none", "fault.option-stripping")
        assert "hop" not in a  # the box changes no TTL: nothing places it
        ev = {e["signal"]: e for e in a["evidence"]}
        syn, synack, shrunk = (_frame(pcap, ev[k]["packet"]) for k in ("syn", "syn-ack", "window-shrunk"))
        assert syn[TCP].flags == "S" and any(o[0] == "WScale" for o in syn[TCP].options)
        sa_opts = synack[TCP].options
        assert synack[TCP].flags == "SA" and not any(o[0] == "WScale" for o in sa_opts)
        assert sum(1 for o in sa_opts if o[0] == "NOP") >= 4  # the overwritten option's footprint
        # read unscaled, the right edge moved back by more than half the SYN-ACK's offer
        edge0 = synack[TCP].ack + synack[TCP].window
        edge = shrunk[TCP].ack + shrunk[TCP].window
        assert shrunk[TCP].sport == a["server"]["port"] and edge0 - edge > synack[TCP].window / 2
        assert f"window {shrunk[TCP].window}" in ev["window-shrunk"]["detail"]


def test_the_exchanges_that_fit_stay_ok_and_name_the_stripping(sample_report):
    attempts = sample_report["attempts"]
    c1 = [x for x in attempts if x["input"] == 0 and x["kind"] != "dns"]
    c2 = [x for x in attempts if x["input"] == 1]
    ok1 = [x for x in c1 if x["verdict"] == "ok"]
    assert len(ok1) == len(c1) - 2 >= 4
    assert all("window scale" in x["summary"] for x in ok1)
    assert c2 and all(x["verdict"] == "ok" and "window scale" not in x["summary"] for x in c2)


def _conn(tmp_path: Path, synack_ws: int | None, server_windows: list[int], client_ws: int | None = 7,
          segments: int = 12) -> dict:
    """A connection whose client uploads ``segments`` full segments and gets no answer; the
    server ACKs them one by one with the given raw windows (the last repeated)."""
    t, isn_c, isn_s, out = 0, 1000, 9000, []

    def put(pkt):
        nonlocal t
        out.append((1_700_000_000_000_000_000 + t, bytes(Ether(src=ETH_SRC, dst=ETH_DST) / pkt)))
        t += 2_000_000

    syn_opts = [("MSS", 1460), ("SAckOK", b""), ("NOP", None)] + ([("WScale", client_ws)] if client_ws is not None else [])
    sa_opts = [("MSS", 1460), ("SAckOK", b"")] + ([("NOP", None), ("WScale", synack_ws)] if synack_ws is not None else [])
    put(IP(src=C, dst=S, ttl=64) / TCP(sport=40000, dport=80, flags="S", seq=isn_c, window=64240, options=syn_opts))
    put(IP(src=S, dst=C, ttl=60) / TCP(sport=80, dport=40000, flags="SA", seq=isn_s, ack=isn_c + 1, window=65160,
                                       options=sa_opts))
    put(IP(src=C, dst=S, ttl=64) / TCP(sport=40000, dport=80, flags="A", seq=isn_c + 1, ack=isn_s + 1, window=64240))
    body = b"POST /up HTTP/1.1\r\nHost: a.example\r\nContent-Length: 90000\r\n\r\n".ljust(1448, b"u")
    for i in range(segments):
        seq = isn_c + 1 + i * 1448
        put(IP(src=C, dst=S, ttl=64) / TCP(sport=40000, dport=80, flags="PA", seq=seq, ack=isn_s + 1,
                                           window=64240) / body)
        win = server_windows[min(i, len(server_windows) - 1)]
        put(IP(src=S, dst=C, ttl=60) / TCP(sport=80, dport=40000, flags="A", seq=isn_s + 1, ack=seq + 1448,
                                           window=win))
    t += 5_000_000_000  # the client waits 5 s for an answer, then gives up
    put(IP(src=C, dst=S, ttl=64) / TCP(sport=40000, dport=80, flags="R", seq=isn_c + 1 + segments * 1448))
    path = tmp_path / "conn.pcap"
    write_pcap(path, out, DLT_EN10MB)
    (a,) = analyze_json(path)["attempts"]
    return a


def test_a_server_that_scales_unannounced_is_caught(tmp_path):
    a = _conn(tmp_path, None, [64, 66, 70])
    assert (a["verdict"], a["rule"]) == ("option-stripping", "fault.option-stripping")
    assert "scaled by 2^" in a["summary"]


@pytest.mark.parametrize("case, synack_ws, windows, client_ws", [
    # no scale on either side, its buffer filling as the application reads nothing: the right edge stays
    ("filling", None, [65160 - 1448 * k for k in range(1, 13)], 7),
    ("announced", 7, [509, 509, 509], 7),  # the scale was announced: windows are scaled
    ("closed", None, [0], 7),  # a closed window says the buffer is full, not how windows count
    ("not-offered", None, [64, 66, 70], None),  # the client offered no scale: the server cannot scale
    ("small-shrink", None, [65160 - 1448 - 20000], 7),  # took back less than half its offer
    ("beyond-any-scale", None, [1], 7),  # 1 << 14 (RFC 7323's largest scale) still falls short of the offer
])
def test_nothing_is_called_stripped_where_nothing_was(tmp_path, case, synack_ws, windows, client_ws):
    a = _conn(tmp_path, synack_ws, windows, client_ws)
    assert a["verdict"] != "option-stripping" and "window scale" not in a["summary"], (case, a["summary"])
