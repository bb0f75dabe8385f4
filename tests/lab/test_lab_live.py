"""Live: record a handful of scenarios in namespaces and check them from the packets.

Needs root and the lab's tools (skipped otherwise, with the reason).  Also checks
that nothing is left behind: no namespace with the lab's prefix, no process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from forensics.lab.netns import leftover_namespaces
from forensics.lab.runner import run_scenario
from forensics.lab.scenarios import all_scenarios
from forensics.lab.verify import verify

LIVE = ["transit-injector", "dns-injector-v6", "sni-drop", "pmtu-blackhole", "benign-failures", "front-box",
        "benign-closed-server", "option-stripping"]

pytestmark = pytest.mark.lab


def _lab_processes() -> set[str]:
    """PIDs and command lines of the kinds of process the lab starts."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    kinds = ("forensics.lab.wire", "forensics.lab.servers", "forensics.lab.clients", "tcpdump", "curl ", "dig ")
    return {line.strip() for line in out.splitlines() if any(k in line for k in kinds)}


@pytest.mark.parametrize("name", LIVE)
def test_live_recording_shows_its_phenomenon(live_lab, tmp_path, name):
    run_scenario(all_scenarios()[name], tmp_path / name)
    verify(name, tmp_path / name)
    assert not leftover_namespaces(f"fxlab-{os.getpid()}-")


def test_live_failure_and_signal_cleanup(live_lab, tmp_path):
    """A run killed with SIGTERM in the middle removes its namespaces and processes."""
    before = _lab_processes()
    proc = subprocess.Popen([sys.executable, "-m", "forensics", "lab", "run", "ip-block-drop", "--out",
                             str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    prefix = f"fxlab-{proc.pid}-"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not leftover_namespaces(prefix):
            time.sleep(0.1)
        assert leftover_namespaces(prefix), "the run never created its namespaces"
        time.sleep(2.5)  # inside the client steps
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert leftover_namespaces(prefix) == []
    time.sleep(0.5)
    assert _lab_processes() <= before, f"left running: {_lab_processes() - before}"
    assert b"Traceback" not in proc.stderr.read()


TRACE = r"""
import socket, sys
out = []
for ttl in range(1, 6):
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    icmp.settimeout(1.0)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    udp.sendto(b"probe", ("203.0.113.20", 33434 + ttl))
    try:
        data, (src, _) = icmp.recvfrom(2048)
        out.append(f"{src}/{data[20]}")
    except socket.timeout:
        out.append("*")
print(" ".join(out))
"""


def test_live_ttl_expires_at_each_router(live_lab, tmp_path):
    """Kernel forwarding for real: TTL-limited probes get time-exceeded from r1..r4, then port unreachable."""
    from forensics.lab.netns import check_environment
    from forensics.lab.runner import Build
    from forensics.lab.scenario import Scenario

    build = Build(Scenario("trace", "trace", []), str(tmp_path), check_environment())
    try:
        build.up()
        res = build.lab.exec("c1", [sys.executable, "-c", TRACE], timeout=15)
    finally:
        build.lab.close()
    assert res.stdout.split() == ["192.0.2.1/11", "192.0.2.130/11", "192.0.2.134/11", "192.0.2.138/11",
                                  "203.0.113.20/3"]


def _root_state() -> tuple[str, str, str]:
    ip = ["ip", "-o"]
    return tuple(subprocess.run(ip + args, capture_output=True, text=True).stdout
                 for args in (["link", "show"], ["route", "show"], ["-6", "route", "show"]))


# packets *from* the lab's hosts, sent out by the root namespace's interfaces: the
# machine itself may live in 192.0.2.0/24 (as the one this was written on does), and
# answers to other programs' traffic come in, so neither is evidence of a leak
LAB_SOURCES = ("src host 192.0.2.10 or src host 192.0.2.20 or src net 203.0.113.0/24 or src net 198.51.100.0/24 "
               "or src net 2001:db8::/32")


def test_live_nothing_leaves_the_namespaces(live_lab, tmp_path):
    """While a scenario runs, the root namespace gets no interface, no route, and sees no packet from the lab."""
    before, during = _root_state(), []
    pcap = tmp_path / "root.pcap"
    sniff = subprocess.Popen(["timeout", "-s", "INT", "60", "tcpdump", "-i", "any", "-Q", "out", "-U",
                              "--immediate-mode", "-n",
                              "-w", str(pcap), LAB_SOURCES],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while len(lines) < 3 and not any("listening" in line for line in lines):
            lines.append(sniff.stderr.readline())
        assert "listening" in lines[-1], lines
        run_scenario(all_scenarios()["dns-injector"], tmp_path / "s", on_ready=lambda: during.append(_root_state()))
    finally:
        sniff.send_signal(signal.SIGINT)
        sniff.wait(timeout=10)
    from scapy.utils import RawPcapReader

    leaked = list(RawPcapReader(str(pcap)))
    assert leaked == [], f"{len(leaked)} lab packet(s) seen in the root namespace"
    assert during == [before], "the root namespace's interfaces or routes changed while the lab ran"


def test_live_kernel_devices_with_nft_only(live_lab, tmp_path, monkeypatch):
    """Without iptables the kernel devices fall back to nft rules, with the same result."""
    import shutil

    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t, *a, **k: None if t in ("iptables", "ip6tables") else real(t))
    for name in ("ip-block-prohibited", "pmtu-blackhole"):
        run_scenario(all_scenarios()[name], tmp_path / name)
        verify(name, tmp_path / name)


def test_live_capture_piped_into_analyze(live_lab, tmp_path):
    """``tcpdump -U -w - | forensics analyze -`` on the client while a scenario runs: the
    capture taken live gives the verdicts of the file tcpdump wrote beside it."""
    import json

    from forensics.lab.netns import check_environment
    from forensics.lab.runner import LIFETIME_S, Build, make_cert
    from forensics.lab.scenario import CAPTURES

    build = Build(all_scenarios()["transit-injector"], str(tmp_path), check_environment())
    files, live_json = tmp_path / "files", tmp_path / "live.json"
    files.mkdir()
    try:
        build.up()
        build.servers(*make_cert(str(tmp_path)))
        caps = build.capture(files)
        node, ifname = CAPTURES["client"]
        live = build.lab.spawn(node, ["timeout", "-s", "INT", str(LIFETIME_S), "tcpdump", "-i", ifname, "-U",
                                      "--immediate-mode", "-s", "0", "-n", "-w", "-"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
        import select

        assert select.select([live.stderr], [], [], 10)[0], "tcpdump said nothing in 10 s"
        line = live.stderr.readline()  # tcpdump says so once it captures
        assert b"listening on" in line, line
        fx = build.lab.spawn(None, [sys.executable, "-m", "forensics", "analyze", "-", "--format", "json",
                                    "-o", str(live_json)], stdin=live.stdout, stderr=subprocess.PIPE)
        live.stdout.close()  # forensics holds the pipe now: its end comes when tcpdump's does
        build.steps()
        time.sleep(1.0)
        for p in caps + [live]:
            build.lab.stop(p, sig=signal.SIGINT, timeout=3)
        fx.wait(timeout=60)
        err = fx.stderr.read().decode()
    finally:
        build.lab.close()
        build.close_log()
    assert fx.returncode == 1, err  # deliberate interference found, live
    assert "Traceback" not in err
    from_file = subprocess.run([sys.executable, "-m", "forensics", "analyze", str(files / "client.pcap"),
                                "--format", "json"], capture_output=True, text=True, timeout=120)
    assert from_file.returncode == 1, from_file.stderr

    def key(rep):
        return sorted((a["kind"], a["server"]["ip"], a["server"]["port"], a["name"], a["verdict"])
                      for a in rep["attempts"])

    piped = json.loads(live_json.read_text())
    assert piped["inputs"][0]["path"] == "-" and piped["inputs"][0]["packets"] > 0
    assert key(piped) == key(json.loads(from_file.stdout))
    assert "injected-rst" in {a["verdict"] for a in piped["attempts"]}
