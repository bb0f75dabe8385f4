"""The benchmark capture generator writes what its ground truth says (benchmarks/gen_capture.py)."""

from __future__ import annotations

import argparse
import collections
import json
import struct

import pytest

scapy_all = pytest.importorskip("scapy.all")
from scapy.layers.dns import DNS  # noqa: E402
from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402

from conftest import load_benchmark  # noqa: E402


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    gen = load_benchmark("gen_capture")
    d = tmp_path_factory.mktemp("bench")
    out = d / "cap.pcap"
    # higher interference rates than the defaults so that 5k packets hold every kind
    rc = gen.main(["--packets", "5000", "--out", str(out), "--seed", "7", "--rst", "0.08",
                   "--forged-dns", "0.08", "--sni-drop", "0.08"])
    assert rc == 0
    pkts = scapy_all.rdpcap(str(out))
    truth = [json.loads(line) for line in (d / "cap.truth.jsonl").read_text().splitlines()]
    meta = json.loads((d / "cap.meta.json").read_text())
    return out, pkts, truth, meta


def _ip(p):
    return p[IP] if IP in p else p[IPv6]


def _ttl(p):
    return p[IP].ttl if IP in p else p[IPv6].hlim


def test_parses_and_counts_match_meta(capture):
    out, pkts, truth, meta = capture
    assert len(pkts) == meta["packets"] >= 5000
    assert out.stat().st_size == meta["bytes"]
    assert len(truth) == meta["attempts"]
    assert sum(meta["attempts_by_kind"].values()) == len(truth)
    # no layer scapy could not make sense of
    assert not any(p.haslayer(scapy_all.Raw) and IP not in p and IPv6 not in p for p in pkts)
    times = [float(p.time) for p in pkts]
    assert times == sorted(times)
    assert any(IPv6 in p for p in pkts) and any(ICMP in p for p in pkts)


def test_truth_counts_syn_flows_and_dns_queries(capture):
    _, pkts, truth, _ = capture
    syns, queries = set(), set()
    for p in pkts:
        if TCP in p and p[TCP].flags == "S":
            syns.add((_ip(p).src, p[TCP].sport, _ip(p).dst, p[TCP].dport))
        elif UDP in p and DNS in p and p[DNS].qr == 0 and ICMP not in p:
            queries.add((_ip(p).src, p[UDP].sport, p[DNS].id))
    assert len(truth) == len(syns) + len(queries)
    kinds = collections.Counter(t["kind"] for t in truth)
    assert kinds["dns"] == len(queries)
    assert kinds["tls"] + kinds["http"] + kinds["tcp"] == len(syns)
    verdicts = collections.Counter(t["verdict"] for t in truth)
    for v in ("ok", "injected-rst", "forged-dns", "sni-drop", "connection-refused"):
        assert verdicts[v] > 0, v


def _sni(payload: bytes) -> str | None:
    """The SNI of a ClientHello, parsed by hand (record, handshake, extensions)."""
    if len(payload) < 44 or payload[0] != 0x16 or payload[5] != 0x01:
        return None
    i = 9 + 2 + 32
    i += 1 + payload[i]  # session id
    i += 2 + struct.unpack_from("!H", payload, i)[0]  # cipher suites
    i += 1 + payload[i]  # compression
    end = i + 2 + struct.unpack_from("!H", payload, i)[0]
    i += 2
    while i + 4 <= end:
        typ, ln = struct.unpack_from("!HH", payload, i)
        if typ == 0:
            n = struct.unpack_from("!H", payload, i + 7)[0]
            return payload[i + 9:i + 9 + n].decode()
        i += 4 + ln
    return None


def test_client_hellos_carry_the_truths_sni(capture):
    _, pkts, truth, _ = capture
    first_payload = {}
    for p in pkts:
        if TCP in p and bytes(p[TCP].payload):
            k = (_ip(p).src, p[TCP].sport, _ip(p).dst, p[TCP].dport)
            first_payload.setdefault(k, bytes(p[TCP].payload))
    tls = [t for t in truth if t["kind"] == "tls"]
    http = [t for t in truth if t["kind"] == "http"]
    assert len(tls) > 50 and http
    for t in tls:
        k = (t["client"]["ip"], t["client"]["port"], t["server"]["ip"], t["server"]["port"])
        assert _sni(first_payload[k]) == t["name"]
    for t in http:
        k = (t["client"]["ip"], t["client"]["port"], t["server"]["ip"], t["server"]["port"])
        assert f"Host: {t['name']}\r\n".encode() in first_payload[k]
    # scapy's own TLS dissector agrees on a sample
    scapy_all.load_layer("tls")
    from scapy.layers.tls.record import TLS

    for t in tls[:20]:
        k = (t["client"]["ip"], t["client"]["port"], t["server"]["ip"], t["server"]["port"])
        rec = TLS(first_payload[k])
        ext = next(e for e in rec.msg[0].ext if e.type == 0)
        assert ext.servernames[0].servername.decode() == t["name"]


def _ones_sum(b: bytes) -> int:
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_checksums_valid(capture):
    _, pkts, _, _ = capture
    n = 0
    for p in pkts:
        raw = bytes(p)
        if IP in p:
            hdr = raw[14:34]
            assert _ones_sum(hdr) == 0xFFFF
            n += 1
        if TCP in p or (UDP in p and ICMP not in p):
            # the transport checksum over the pseudo-header
            l4 = raw[34:] if IP in p else raw[54:]
            ip = _ip(p)
            proto = 6 if TCP in p else 17
            if IP in p:
                pseudo = (bytes(map(int, ip.src.split("."))) + bytes(map(int, ip.dst.split(".")))
                          + struct.pack("!HH", proto, len(l4)))
            else:
                import ipaddress

                pseudo = (ipaddress.ip_address(ip.src).packed + ipaddress.ip_address(ip.dst).packed
                          + struct.pack("!IxxxB", len(l4), proto))
            data = pseudo + l4 + (b"\0" if len(l4) % 2 else b"")
            assert _ones_sum(data) == 0xFFFF, p.summary()
    assert n > 1000


def test_client_ip_ids_increase_per_host(capture):
    _, pkts, _, _ = capture
    last = {}
    for p in pkts:
        if IP in p and p[IP].src.startswith("192.0.2.") and p[IP].ttl == 64:
            src = p[IP].src
            if src in last:
                assert p[IP].id == (last[src] + 1) & 0xFFFF
            last[src] = p[IP].id


def test_forged_dns_answer_precedes_the_real_one(capture):
    _, pkts, truth, _ = capture
    answers = collections.defaultdict(list)
    for p in pkts:
        if DNS in p and p[DNS].qr == 1 and ICMP not in p:
            answers[(_ip(p).dst, p[UDP].dport, p[DNS].id)].append(p)
    forged = [t for t in truth if t["verdict"] == "forged-dns"]
    assert forged
    for t in forged:
        first, real = answers[(t["client"]["ip"], t["client"]["port"], t["txid"])]
        assert float(first.time) < float(real.time)
        assert _ip(first).src == _ip(real).src == t["server"]["ip"]
        assert _ttl(first) != _ttl(real)
        assert first[DNS].an[0].rdata != real[DNS].an[0].rdata
    for t in truth:
        if t["kind"] == "dns" and t["verdict"] == "ok":
            assert len(answers[(t["client"]["ip"], t["client"]["port"], t["txid"])]) == 1


def test_injected_rst_ttl_differs_from_the_server(capture):
    _, pkts, truth, _ = capture
    by_flow = collections.defaultdict(list)
    for p in pkts:
        if TCP in p:
            ip = _ip(p)
            by_flow[frozenset([(ip.src, p[TCP].sport), (ip.dst, p[TCP].dport)])].append(p)
    rst = [t for t in truth if t["verdict"] == "injected-rst"]
    assert rst
    for t in rst:
        c, s = t["client"], t["server"]
        flow = by_flow[frozenset([(c["ip"], c["port"]), (s["ip"], s["port"])])]
        from_server = [p for p in flow if _ip(p).src == s["ip"]]
        synack = next(p for p in from_server if p[TCP].flags == "SA")
        resets = [p for p in from_server if p[TCP].flags & 0x04]
        data = [p for p in from_server if bytes(p[TCP].payload)]
        assert 1 <= len(resets) <= 3 and data
        assert all(_ttl(r) != _ttl(synack) for r in resets)
        assert max(float(r.time) for r in resets) < min(float(d.time) for d in data)  # the race
        assert all(_ttl(d) == _ttl(synack) for d in data)


def test_sni_drop_retransmits_and_has_a_control(capture):
    _, pkts, truth, _ = capture
    chs = collections.Counter()
    server_data = set()
    for p in pkts:
        if TCP in p and bytes(p[TCP].payload):
            ip = _ip(p)
            if p[TCP].dport == 443:
                chs[(ip.src, p[TCP].sport)] += 1 if bytes(p[TCP].payload)[:1] == b"\x16" else 0
            if p[TCP].sport == 443:
                server_data.add((ip.dst, p[TCP].dport))
    ok_names = collections.defaultdict(set)
    for t in truth:
        if t["kind"] == "tls" and t["verdict"] == "ok":
            ok_names[t["server"]["ip"]].add(t["name"])
    drops = [t for t in truth if t["verdict"] == "sni-drop"]
    assert drops
    for t in drops:
        k = (t["client"]["ip"], t["client"]["port"])
        assert 4 <= chs[k] <= 6  # the ClientHello and its 3 to 5 retransmissions
        assert k not in server_data
        assert ok_names[t["server"]["ip"]] - {t["name"]}  # a control name passes


def test_rotation_splits_the_same_stream(tmp_path):
    gen = load_benchmark("gen_capture")
    assert gen.main(["--packets", "3000", "--out", str(tmp_path / "one.pcap"), "--seed", "3"]) == 0
    assert gen.main(["--packets", "3000", "--rotate-every", "1000", "--out-dir",
                     str(tmp_path / "rot"), "--seed", "3"]) == 0
    parts = sorted((tmp_path / "rot").glob("part-*.pcap"))
    assert len(parts) >= 3
    whole = (tmp_path / "one.pcap").read_bytes()
    joined = whole[:24] + b"".join(p.read_bytes()[24:] for p in parts)
    assert joined == whole
    assert (tmp_path / "rot.truth.jsonl").read_text() == (tmp_path / "one.truth.jsonl").read_text()


def test_synflood_distinct_sources(tmp_path):
    gen = load_benchmark("gen_capture")
    out = tmp_path / "flood.pcap"
    assert gen.main(["--synflood", "3000", "--out", str(out)]) == 0
    pkts = scapy_all.rdpcap(str(out))
    syns = [(_ip(p).src, p[TCP].sport) for p in pkts if p[TCP].flags == "S"]
    assert len(syns) == len(set(syns)) == 3000
    rsts = [p for p in pkts if p[TCP].flags & 0x04]
    assert 0 < len(rsts) < 3000 * 0.2
    meta = json.loads((tmp_path / "flood.meta.json").read_text())
    assert meta["packets"] == len(pkts)


def test_runner_joins_verdicts_with_the_truth(capture, tmp_path):
    """benchmarks/run.py's verdict check: right, wrong (with confusions), missing, accept."""
    out, _, truth, _ = capture
    run = load_benchmark("run")
    attempts = [json.loads(json.dumps(t)) for t in truth]
    rst = [a for a in attempts if a["verdict"] == "injected-rst"]
    rst[0]["verdict"] = "server-reset"
    for a in attempts:
        if ":" in a["client"]["ip"]:  # the analyser may print IPv6 in another (valid) form
            a["client"]["ip"] = a["client"]["ip"].replace("2001:db8:1::", "2001:0db8:0001:0:0::")
    dropped = attempts.pop()
    report = tmp_path / "out.json"
    report.write_text(json.dumps({"schema": "forensics.report/1", "attempts": attempts}))
    r = run.check_verdicts(str(out.with_suffix("")) + ".truth.jsonl", str(report))
    assert r["truth"] == len(truth)
    assert r["right"] == len(truth) - 2
    row = r["per_verdict"]["injected-rst"]
    assert row["wrong"] == 1 and row["confusions"] == {"server-reset": 1}
    assert r["per_verdict"][dropped["verdict"]]["missing"] == 1
    assert r["not_in_truth"] == 0
    assert run.count_pcap(str(out)) == json.loads(
        (out.parent / "cap.meta.json").read_text())["packets"]


def test_runner_times_the_script_beside_its_interpreter(tmp_path, monkeypatch):
    """run.py runs the ``forensics`` script installed beside its interpreter before one found on PATH
    (a version manager's shim there would be timed with the analyser); without either, the CLI
    through the interpreter."""
    run = load_benchmark("run")
    env_bin, path_bin = tmp_path / "venv" / "bin", tmp_path / "shims"
    env_bin.mkdir(parents=True)
    path_bin.mkdir()
    shim = path_bin / "forensics"
    shim.write_text("#!/bin/sh\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", str(path_bin))
    monkeypatch.setattr(run.sys, "executable", str(env_bin / "python3"))
    assert run.forensics_command() == [str(shim)]
    script = env_bin / "forensics"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert run.forensics_command() == [str(script)]
    script.unlink()
    shim.unlink()
    assert run.forensics_command()[:2] == [str(env_bin / "python3"), "-c"]


def test_runner_repeat_takes_medians_and_paired_ratios():
    """--repeat: each tool's median round, the largest RSS, a failed round fails the tool, and
    the ratio is the median of the rounds' own ratios (a slow spell hits both tools of a round)."""
    run = load_benchmark("run")
    fx = [{"ok": True, "seconds": s, "cpu_seconds": s, "rss_mb": m} for s, m in ((10, 300), (20, 310), (11, 305))]
    ts = [{"ok": True, "seconds": s, "cpu_seconds": s, "rss_mb": 400} for s in (30, 60, 33)]
    f, t = run.combine_runs(fx), run.combine_runs(ts)
    assert f["seconds"] == 11 and f["runs_seconds"] == [10, 20, 11] and f["rss_mb"] == 310
    assert t["seconds"] == 33
    assert run.paired_ratio(t, f) == 3.0  # every round 3x; the medians' ratio would also say 3
    skewed = run.combine_runs([{"ok": True, "seconds": s, "rss_mb": 1} for s in (30, 40, 50)])
    assert run.paired_ratio(skewed, f) == 3.0  # rounds 3.0, 2.0 and 4.55: their median
    assert skewed["seconds"] / f["seconds"] == 40 / 11  # not what the ratio of the medians says
    broken = run.combine_runs(fx[:2] + [{"ok": False, "rc": 2, "seconds": 1.0}])
    assert broken["ok"] is False
    assert run._jobs_list("1,2") == [1, 2]
    for bad in ("0", "1,x", "-2"):
        with pytest.raises(argparse.ArgumentTypeError):
            run._jobs_list(bad)
    one = run.combine_runs(fx[:1])
    assert one is fx[0] and run.paired_ratio(run.combine_runs(ts[:1]), one) == 3.0


def test_a_borders_variety_of_servers_and_names_is_judged_right(tmp_path):
    """--sites and --v6-servers spread the attempts over many names and servers (what the
    controls grow with); the truth still holds for every attempt."""
    from forensics import api

    gen = load_benchmark("gen_capture")
    out = tmp_path / "border.pcap"
    assert gen.main(["--packets", "6000", "--sites", "3000", "--v6-servers", "5000", "--ipv6", "0.9",
                     "--out", str(out), "--seed", "5"]) == 0
    report = tmp_path / "border.json"
    rep = api.analyze(str(out))
    from forensics.render import render
    with open(report, "w", encoding="utf-8") as fh:
        render(rep, "json", fh)
    servers = {a["server"]["ip"] for a in rep.iter_attempt_dicts() if a["transport"] == "tcp"}
    assert sum(s.startswith("2001:db8:2:1:") for s in servers) > 100  # past the first 100, their own /64
    r = load_benchmark("run").check_verdicts(str(tmp_path / "border.truth.jsonl"), str(report))
    assert r["truth"] > 500 and r["right"] == r["truth"] and r["not_in_truth"] == 0
    meta = json.loads((tmp_path / "border.meta.json").read_text())
    assert (meta["sites"], meta["v6_servers"]) == (3000, 5000)


def test_stages_times_each_layer_and_the_budgets(capture, tmp_path, capsys):
    """benchmarks/stages.py: every layer sees the whole input (the packets the generator wrote,
    the attempts a one-process analysis reports), and the budgets are the targets' fractions of
    run.py's baselines."""
    from forensics import analyze

    out, _, _, meta = capture
    stages = load_benchmark("stages")
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"results": {
        "tshark -T fields (lean: no seq analysis)": {"ok": True, "seconds": 10.0},
        "tshark -T fields (defaults)": {"ok": True, "seconds": 99.0},
        "scapy (extrapolated from 20,000 packets)": {"ok": True, "seconds": 250.0}}}))
    figures = tmp_path / "stages.json"
    assert stages.main([str(out), "--repeat", "1", "--against", str(run_json), "--json-out", str(figures)]) == 0
    printed = capsys.readouterr().out
    got = json.loads(figures.read_text())
    layers = got["layers"]
    assert list(layers) == list(stages.LAYERS)
    assert layers["read"]["packets"] == layers["reassemble"]["packets"] == meta["packets"]
    attempts = analyze(str(out)).summary()["attempts"]
    assert layers["first stage"]["attempts"] == layers["whole"]["attempts"] == attempts
    assert layers["whole"]["seconds"] >= layers["first stage"]["seconds"] > 0
    assert [(b["baseline"].split(" (")[0], b["budget"]) for b in got["budgets"]] == [
        ("tshark -T fields", 2.0), ("scapy", 5.0)]  # lean tshark / 5, scapy / 50: not tshark's defaults
    assert "budget for the target against tshark -T fields (lean" in printed
    assert stages.main([str(tmp_path / "absent.pcap")]) == 2
