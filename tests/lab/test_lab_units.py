"""The lab's pieces without root: frames, devices, truth, the CLI's errors."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from forensics.lab import packets as P
from forensics.lab.devices import WIRE_DEVICES
from forensics.lab.scenario import Scenario, https, lookup, truth
from forensics.lab.scenarios import all_scenarios

MAC_C, MAC_S = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"


def frame(pkt) -> P.Frame:
    return P.parse(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt))


def client_hello(sni: str, pad: int = 0) -> bytes:
    name = sni.encode()
    ext = b"\x00\x00" + (len(name) + 5).to_bytes(2, "big") + (len(name) + 3).to_bytes(2, "big") + b"\x00" \
        + len(name).to_bytes(2, "big") + name
    if pad:
        ext += b"\x00\x15" + pad.to_bytes(2, "big") + b"\x00" * pad
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(ext).to_bytes(2, "big") + ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def test_forged_segments_have_valid_checksums():
    for version, src, dst in ((4, "203.0.113.5", "192.0.2.10"), (6, "2001:db8:5::5", "2001:db8:1:1::10")):
        raw = P.tcp_frame(MAC_S, MAC_C, version, src, dst, 443, 40000, 1000, 2000, P.RST | P.ACK, ttl=61, ipid=7)
        pkt = Ether(raw)
        ip = pkt[IP] if version == 4 else pkt[IPv6]
        tcp = pkt[TCP]
        assert tcp.flags == "RA" and tcp.seq == 1000 and tcp.ack == 2000
        claimed = tcp.chksum
        del tcp.chksum
        if version == 4:
            assert ip.ttl == 61 and ip.id == 7
            ipc = ip.chksum
            del ip.chksum
            assert Ether(bytes(pkt))[IP].chksum == ipc
        assert Ether(bytes(pkt))[TCP].chksum == claimed



@pytest.mark.parametrize("version", [4, 6])
def test_option_stripper_leaves_nops_and_a_valid_checksum(version):
    src, dst = ("203.0.113.20", "192.0.2.10") if version == 4 else ("2001:db8:5::14", "2001:db8:1:1::10")
    ip = IP(src=src, dst=dst) if version == 4 else IPv6(src=src, dst=dst)
    opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 2)), ("NOP", None), ("WScale", 10)]
    synack = frame(ip / TCP(sport=80, dport=40000, flags="SA", seq=5, ack=9, window=65160, options=opts))
    dev = WIRE_DEVICES["option-stripper"]({"strip": ["wscale"]})
    out, inject = dev.on_frame(synack, "b", 0.0)
    assert inject == [] and isinstance(out, bytes) and len(out) == len(synack.raw)
    pkt = Ether(out)
    kinds = [o[0] for o in pkt[TCP].options]
    assert "WScale" not in kinds and kinds[-4:] == ["NOP"] * 4 and "Timestamp" in kinds and "MSS" in kinds
    claimed = pkt[TCP].chksum
    del pkt[TCP].chksum
    assert Ether(bytes(pkt))[TCP].chksum == claimed
    # towards the servers, or past the handshake, frames go on untouched
    assert dev.on_frame(synack, "a", 0.0) == (True, [])
    data = frame(ip / TCP(sport=80, dport=40000, flags="A", seq=6, ack=9, options=[("NOP", None), ("WScale", 3)]))
    assert dev.on_frame(data, "b", 0.0) == (True, [])

def test_client_hello_and_host_peeks():
    assert P.tls_client_hello(client_hello("a.blogs.example"))[:2] == (True, "a.blogs.example")
    assert P.http_host(b"GET / HTTP/1.1\r\nHost: news.example:8081\r\n\r\n") == "news.example"
    assert P.http_host(b"\x16\x03\x01") is None


def _seen(dev, pkt, side="a"):
    return dev.on_frame(frame(pkt), side, 0.0)


def test_rst_injector_pattern_ttl_and_ipid():
    dev = WIRE_DEVICES["rst-injector"]({"sni": ["*.blogs.example"], "exclude": ["www.blogs.example"],
                                        "direction": "client", "pattern": "rst-rstack",
                                        "ttl": {"mode": "fixed", "value": 128}, "ipid": {"mode": "fixed", "value": 9}})
    trig = IP(src="192.0.2.10", dst="203.0.113.11", ttl=62) / TCP(sport=40000, dport=443, flags="PA", seq=100,
                                                                   ack=5000) / client_hello("a.blogs.example")
    fwd, out = _seen(dev, trig)
    assert fwd and len(out) == 4 and all(side == "a" for side, _ in out)
    pkts = [Ether(raw) for _, raw in out]
    assert [p[TCP].seq - 5000 for p in pkts] == [0, 0, 1460, 4380]
    assert [str(p[TCP].flags) for p in pkts] == ["R", "RA", "RA", "RA"]
    assert all(p[IP].ttl == 128 and p[IP].id == 9 and p[IP].src == "203.0.113.11" for p in pkts)
    assert _seen(dev, trig)[1] == []  # once per connection
    home = (IP(src="192.0.2.10", dst="203.0.113.10") / TCP(sport=40001, dport=443, flags="PA")
            / client_hello("www.blogs.example"))
    assert _seen(dev, home) == (True, [])


def test_rst_injector_copy_ttl_and_inpath():
    dev = WIRE_DEVICES["rst-injector"]({"keyword": ["forbidden"], "direction": "both", "pattern": "repeat",
                                        "count": 3, "ttl": {"mode": "copy"}, "inpath": True})
    trig = (IP(src="192.0.2.10", dst="203.0.113.41", ttl=63) / TCP(sport=40000, dport=80, flags="PA", seq=10, ack=20)
            / b"GET /forbidden HTTP/1.1\r\nHost: x\r\n\r\n")
    fwd, out = _seen(dev, trig)
    assert not fwd and len(out) == 6
    to_server = [Ether(raw) for side, raw in out if side == "b"]
    assert all(p[IP].ttl == 63 and p[TCP].seq == 10 for p in to_server)  # in-path: the server still expects seq 10


def test_dns_injector_forges_from_the_pool():
    dev = WIRE_DEVICES["dns-injector"]({"names": ["*.diary.example"], "pool4": ["198.51.100.66"],
                                        "answer_ttl": {"mode": "fixed", "value": 3600}, "ttl": {"value": 64}})
    q = (IP(src="192.0.2.10", dst="203.0.113.53") / UDP(sport=5555, dport=53)
         / DNS(id=77, rd=1, qd=[DNSQR(qname="www.diary.example", qtype="A")]))
    fwd, out = _seen(dev, q)
    assert fwd and len(out) == 1
    ans = Ether(out[0][1])
    assert ans[IP].src == "203.0.113.53" and ans[UDP].dport == 5555 and ans[DNS].id == 77
    assert ans[DNS].an[0].rdata == "198.51.100.66" and ans[DNS].an[0].ttl == 3600


def test_in_path_devices():
    dropper = WIRE_DEVICES["dropper"]({"host": ["video.example"]})
    req = (IP(src="192.0.2.10", dst="203.0.113.22") / TCP(sport=4000, dport=80, flags="PA")
           / b"GET / HTTP/1.1\r\nHost: video.example\r\n\r\n")
    assert _seen(dropper, req) == (False, [])
    assert _seen(dropper, IP(src="192.0.2.10", dst="203.0.113.22") / TCP(sport=4000, dport=80, flags="A"))[0] is False
    ecn = WIRE_DEVICES["ecn-blackhole"]({})
    assert _seen(ecn, IP() / TCP(flags="SEC"))[0] is False and _seen(ecn, IP() / TCP(flags="S"))[0] is True
    big = WIRE_DEVICES["tls-size-breaker"]({})
    ch = client_hello("news.example", pad=2000)
    assert _seen(big, IP(src="192.0.2.10") / TCP(sport=1, dport=443, flags="A") / ch[:1448])[0] is False
    assert _seen(big, IP(src="192.0.2.10") / TCP(sport=2, dport=443, flags="PA") / client_hello("n.example"))[0] is True
    idle = WIRE_DEVICES["idle-firewall"]({"timeout_s": 2})
    syn = frame(IP(src="192.0.2.10", dst="203.0.113.20") / TCP(sport=5, dport=80, flags="S", seq=1))
    data = frame(IP(src="192.0.2.10", dst="203.0.113.20") / TCP(sport=5, dport=80, flags="PA", seq=2, ack=9) / b"x")
    assert idle.on_frame(syn, "a", 0.0)[0] and idle.on_frame(data, "a", 1.0)[0]
    fwd, out = idle.on_frame(data, "a", 4.0)
    assert not fwd and Ether(out[0][1])[TCP].flags == "R" and Ether(out[0][1])[TCP].seq == 9


def test_truth_join_key_and_hops():
    s = Scenario("t", "d", [lookup("c1", "news.example"), https("c1", "news.example"),
                            https("c1", "news.example")], captures=["client", "r1-up"])
    s.steps[2].attempts[0].expect = type(s.steps[2].attempts[0].expect)("injected-rst", "sni", 3)
    t = truth(s)
    tls = [a for a in t["attempts"] if a["kind"] == "tls"]
    assert [(a["capture"], a["seq"]) for a in tls] == [("client.pcap", 0), ("r1-up.pcap", 0),
                                                       ("client.pcap", 1), ("r1-up.pcap", 1)]
    assert [a.get("hop") for a in tls[2:]] == [{"from_capture": 3}, {"from_capture": 2}]
    assert tls[2]["class"] == "deliberate" and tls[0]["class"] == "ok"


def test_scenarios_cover_the_issue():
    names = set(all_scenarios())
    assert len(names) >= 14
    assert {"office-filter", "transit-injector", "rst-injector-v6", "dns-injector-v6"} <= names
    addrs = str([s.wire for s in all_scenarios().values()])
    assert "10." not in addrs and "172.16" not in addrs


def test_lab_list_and_errors(monkeypatch):
    import forensics.cli as fcli

    getattr(fcli, "_register_subcommands", lambda: None)()
    cli = fcli.cli
    runner = CliRunner()
    res = runner.invoke(cli, ["lab", "list"])
    assert res.exit_code == 0 and "transit-injector" in res.output
    res = runner.invoke(cli, ["lab", "run", "no-such-scenario"])
    assert res.exit_code == 2 and "unknown scenario" in res.output
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    res = runner.invoke(cli, ["lab", "run", "sni-drop", "--out", "/nonexistent/x"])
    assert res.exit_code == 3 and "root" in res.output and "Traceback" not in res.output


def test_missing_tool_is_exit_3(monkeypatch):
    import shutil

    import forensics.cli as fcli

    getattr(fcli, "_register_subcommands", lambda: None)()
    cli = fcli.cli
    real = shutil.which
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "tcpdump" else real(t))
    res = CliRunner().invoke(cli, ["lab", "run", "sni-drop"])
    assert res.exit_code == 3 and "tcpdump" in res.output


def test_wire_check_catches_bad_checksums_and_giants(tmp_path):
    from scapy.utils import wrpcap

    from forensics.lab.verify import check_wire

    good = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.10", dst="203.0.113.20") / TCP(sport=1, dport=80) / b"x"
    wrpcap(str(tmp_path / "client.pcap"), [good])
    check_wire(tmp_path)
    bad = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.10", dst="203.0.113.20") / TCP(sport=1, dport=80, chksum=0x1234) / b"x"
    wrpcap(str(tmp_path / "client.pcap"), [good, bad])
    with pytest.raises(AssertionError, match="checksum"):
        check_wire(tmp_path)
    giant = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.10", dst="203.0.113.20") / TCP(sport=1, dport=80) / (b"x" * 3000)
    wrpcap(str(tmp_path / "client.pcap"), [giant])
    with pytest.raises(AssertionError, match="giant"):
        check_wire(tmp_path)
