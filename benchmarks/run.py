#!/usr/bin/env python3
"""Time `forensics analyze` against scapy and tshark on one capture, and check its verdicts.

    python benchmarks/run.py benchmarks/data/1m.pcap [--scapy-prefix 20000] [--jobs N[,M]] [--pure]
                             [--repeat N] [--skip-tshark] [--skip-scapy] [--json-out summary.json]

In one run, on the same input (a pcap, or a folder of rotated pcaps):

* ``forensics analyze INPUT --format json -o OUT.json`` (``-j N`` with ``--jobs``), end to
  end as a child process (the script installed beside this interpreter: ``forensics_command``):
  wall time, and the child's own peak RSS from ``os.wait4``;
* scapy: ``PcapReader`` with full dissection, touching the same fields the analyser
  needs, on the first N packets only, **extrapolated** to the whole input (said so);
* tshark: ``tshark -n -r INPUT -T fields -e ...`` with the same fields, output to
  /dev/null; once with tshark's defaults, once "lean" (TCP sequence analysis off);
* then the verdict check: the analyser's attempts joined with the generator's ground
  truth (``<stem>.truth.jsonl``) on (kind, client ip/port, server ip/port).

``--repeat N`` runs all of that N times in rounds, the tools interleaved, and reports
each tool's median round and the median of the rounds' own ratios; every report the
analyser wrote (every round, every ``-j``) must be the same bytes.

Exit status: 0 analysis ran (whatever the verdicts), 2 the analysis failed or could not
run, 3 ``--min-accuracy`` given and not reached.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

TSHARK_FIELDS = [
    "frame.time_epoch", "ip.src", "ip.dst", "ip.ttl", "ip.id", "ipv6.src", "ipv6.dst",
    "ipv6.hlim", "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw",
    "tcp.window_size_value", "udp.srcport", "udp.dstport", "dns.id", "dns.qry.name",
    "dns.a", "dns.aaaa", "tls.handshake.type", "tls.handshake.extensions_server_name",
    "http.host", "icmp.type", "icmp.code",
]
TSHARK_LEAN = ["-o", "tcp.analyze_sequence_numbers:FALSE", "-o",
               "tcp.calculate_timestamps:FALSE", "-o", "tcp.desegment_tcp_streams:FALSE"]


# --------------------------------------------------------------------------- inputs
def pcap_files(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(os.path.join(path, f) for f in os.listdir(path)
                      if f.endswith((".pcap", ".pcapng", ".cap")))
    return [path]


def count_pcap(path: str) -> int:
    """Packets in a classic pcap, by walking record headers (no dissection)."""
    n = 0
    with open(path, "rb") as f:
        magic = f.read(24)[:4]
        end = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        hdr = struct.Struct(end + "IIII")
        buf = b""
        pos = 0
        while True:
            if len(buf) - pos < 16:
                more = f.read(16 << 20)
                if not more:
                    break
                buf = buf[pos:] + more
                pos = 0
                continue
            incl = hdr.unpack_from(buf, pos)[2]
            if len(buf) - pos < 16 + incl:
                more = f.read(16 << 20)
                if not more:
                    break
                buf = buf[pos:] + more
                pos = 0
                continue
            pos += 16 + incl
            n += 1
    return n


def side_files(path: str) -> tuple[str | None, str | None]:
    """The generator's truth and meta: <stem>.truth.jsonl (or <file>.truth.jsonl)."""
    p = path.rstrip("/")
    bases = [p[:-5], p] if p.endswith(".pcap") else [p]
    found = []
    for suffix in (".truth.jsonl", ".meta.json"):
        found.append(next((b + suffix for b in bases if os.path.exists(b + suffix)), None))
    return found[0], found[1]


# --------------------------------------------------------------------------- timing
def run_child(argv: list[str], stdout=None, stderr=None, env=None) -> dict:
    """Run argv, wait for it with wait4: wall seconds, its own peak RSS, exit code."""
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env)
    except FileNotFoundError as e:
        return {"ok": False, "rc": None, "seconds": 0.0, "rss_mb": 0.0, "error": str(e)}
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": p.returncode, "seconds": dt, "rss_mb": ru.ru_maxrss / 1024.0,
            "cpu_seconds": ru.ru_utime + ru.ru_stime}


def tail(path: str, n: int = 6) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).strip()
    except OSError:
        return ""


def forensics_command() -> list[str]:
    """The ``forensics`` console script that pip installed beside this interpreter, else the one
    on PATH, else the CLI through this interpreter. Beside the interpreter comes first: on PATH a
    version manager's shim may stand in front of it (pyenv's is a bash script that took 0.05 to
    0.13 s of every run here), and that is the environment's time, not the analyser's; tshark
    too is run as its own binary."""
    beside = os.path.join(os.path.dirname(sys.executable), "forensics")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    exe = shutil.which("forensics")
    return [exe] if exe else [sys.executable, "-c", "from forensics.cli import main; main()"]


def time_forensics(path: str, out_json: str, jobs: int | None, workdir: str,
                   command: str | None = None, pure: bool = False) -> dict:
    if command:
        base = shlex.split(command)
    else:
        base = forensics_command()
    argv = base + ["analyze", path, "--format", "json", "-o", out_json]
    if jobs:
        argv += ["-j", str(jobs)]
    # Each run writes its report to a path where there is none, as the first round's does: over
    # the last round's report, the run also freed that one's 200 MB (1M file) as it replaced it,
    # 0.035 s written back to 0.09 s still in the page cache here, a cost of this script using
    # one path for every round, not of the analysis.
    try:
        os.unlink(out_json)
    except FileNotFoundError:
        pass
    err = os.path.join(workdir, "forensics.stderr")
    with open(err, "wb") as e, open(os.path.join(workdir, "forensics.stdout"), "wb") as o:
        # pure: the analysis modules run from their .py files even where the install compiled them
        env = {**os.environ, "FORENSICS_PURE": "1"} if pure else None
        r = run_child(argv, stdout=o, stderr=e, env=env)
    r["argv"] = argv
    r["stderr_tail"] = tail(err)
    # exit 0/1 = analysis done (1: something deliberate found); anything else failed
    r["ok"] = r.get("rc") in (0, 1) and os.path.exists(out_json)
    if jobs and not r["ok"] and ("-j" in r["stderr_tail"] or "no such option" in
                                 r["stderr_tail"].lower()):
        r["note"] = "forensics analyze does not know -j yet"
    return r


def time_tshark(files: list[str], lean: bool) -> dict:
    exe = shutil.which("tshark")
    if not exe:
        return {"ok": False, "error": "tshark not found"}
    tot = {"ok": True, "seconds": 0.0, "rss_mb": 0.0, "cpu_seconds": 0.0, "rc": 0}
    for f in files:
        argv = [exe, "-n", "-r", f, "-T", "fields", "-E", "separator=,"]
        if lean:
            argv += TSHARK_LEAN
        for fld in TSHARK_FIELDS:
            argv += ["-e", fld]
        with open(os.devnull, "wb") as null:
            r = run_child(argv, stdout=null, stderr=subprocess.DEVNULL)
        tot["seconds"] += r["seconds"]
        tot["cpu_seconds"] += r["cpu_seconds"]
        tot["rss_mb"] = max(tot["rss_mb"], r["rss_mb"])
        if r["rc"] != 0:
            tot["ok"], tot["rc"] = False, r["rc"]
    tot["argv"] = argv
    return tot


def time_scapy(files: list[str], prefix: int, workdir: str) -> dict:
    res = os.path.join(workdir, "scapy.json")
    argv = [sys.executable, os.path.abspath(__file__), "--scapy-worker", str(prefix), res] + files
    r = run_child(argv, stderr=open(os.path.join(workdir, "scapy.stderr"), "wb"))
    if r["rc"] != 0 or not os.path.exists(res):
        r["ok"] = False
        r["error"] = tail(os.path.join(workdir, "scapy.stderr"))
        return r
    with open(res) as f:
        w = json.load(f)
    r.update(w)
    r["ok"] = True
    return r


def scapy_worker(prefix: int, res_path: str, files: list[str]) -> None:
    """Child process: dissect the first `prefix` packets with scapy, touching fields."""
    from scapy.all import load_layer  # noqa: F401  (imports all the layers)
    load_layer("tls")
    load_layer("http")
    from scapy.layers.dns import DNS
    from scapy.layers.http import HTTPRequest
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.utils import PcapReader

    n = nbytes = names = snis = hosts = 0
    sink = 0
    t0 = time.perf_counter()
    for path in files:
        with PcapReader(path) as rd:
            for p in rd:
                n += 1
                nbytes += len(p) + 16
                sink ^= hash(float(p.time))
                if IP in p:
                    ip = p[IP]
                    sink ^= hash((ip.src, ip.dst, ip.ttl, ip.id))
                elif IPv6 in p:
                    ip = p[IPv6]
                    sink ^= hash((ip.src, ip.dst, ip.hlim))
                if TCP in p:
                    t = p[TCP]
                    sink ^= hash((t.sport, t.dport, int(t.flags), t.seq, t.ack, t.window))
                    if TLSClientHello in p:
                        ch = p[TLSClientHello]
                        for e in ch.ext or []:
                            for sn in getattr(e, "servernames", None) or []:
                                sink ^= hash(sn.servername)
                                snis += 1
                    elif HTTPRequest in p:
                        sink ^= hash(p[HTTPRequest].Host)
                        hosts += 1
                elif UDP in p:
                    u = p[UDP]
                    sink ^= hash((u.sport, u.dport))
                    if DNS in p:
                        d = p[DNS]
                        sink ^= d.id
                        if d.qd:
                            sink ^= hash(d.qd[0].qname)
                            names += 1
                elif ICMP in p:
                    sink ^= hash((p[ICMP].type, p[ICMP].code))
                if n >= prefix:
                    break
        if n >= prefix:
            break
    dt = time.perf_counter() - t0
    with open(res_path, "w") as f:
        json.dump({"packets": n, "bytes": nbytes, "loop_seconds": dt, "dns_qnames": names,
                   "snis": snis, "http_hosts": hosts}, f)


# --------------------------------------------------------------------------- verdicts
def norm_ip(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def key_of(a: dict) -> tuple:
    c, s = a.get("client") or {}, a.get("server") or {}
    return (a.get("kind"), norm_ip(str(c.get("ip"))), int(c.get("port") or 0),
            norm_ip(str(s.get("ip"))), int(s.get("port") or 0))


class _JsonStream:
    """Incremental reading of one large JSON document, value by value, so that a report
    with millions of attempts is never held whole (only what the check needs is kept)."""

    def __init__(self, f, chunk=16 << 20):
        self.f, self.chunk = f, chunk
        self.buf, self.pos, self.eof = "", 0, False
        self.dec = json.JSONDecoder()

    def _fill(self) -> bool:
        more = self.f.read(self.chunk)
        if not more:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + more
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            at = self.buf[self.pos:self.pos + 40]
            raise ValueError(f"expected {ch!r} in the report at {at!r}")
        self.pos += 1

    def value(self):
        self.peek()
        while True:
            try:
                v, end = self.dec.raw_decode(self.buf, self.pos)
                # a number at the very end of the buffer may be cut: make sure it is whole
                if end == len(self.buf) and not self.eof and self._fill():
                    continue
                self.pos = end
                return v
            except json.JSONDecodeError:
                if not self._fill():
                    raise


def iter_attempts(path: str):
    """Attempts from a report: the contract's JSON envelope, a bare list, or JSON lines."""
    with open(path) as f:
        st = _JsonStream(f)
        first = st.peek()
        if first == "[":
            st.expect("[")
            while st.peek() != "]":
                yield st.value()
                if st.peek() == ",":
                    st.expect(",")
            return
        if first != "{":
            raise ValueError("not a JSON report")
        # an envelope, or JSON lines (one attempt object per line)
        st.expect("{")
        head_key = st.value() if st.peek() == '"' else None
        if head_key is None:
            return
        envelope = True
        while True:
            st.expect(":")
            if head_key == "attempts" and envelope:
                st.expect("[")
                while st.peek() != "]":
                    yield st.value()
                    if st.peek() == ",":
                        st.expect(",")
                st.expect("]")
            else:
                v = st.value()
                if head_key == "kind" and isinstance(v, str):
                    break  # JSON lines: the first object was an attempt
            nxt = st.peek()
            if nxt == "}":
                return
            st.expect(",")
            head_key = st.value()
    # JSON lines
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def load_attempts(path: str) -> list[dict]:
    return list(iter_attempts(path))


def check_verdicts(truth_path: str, out_json: str) -> dict:
    found: dict[tuple, list[dict]] = collections.defaultdict(list)
    for a in iter_attempts(out_json):  # keep only what the check needs
        found[key_of(a)].append({"name": a.get("name"), "verdict": a.get("verdict")})
    per = collections.OrderedDict()
    matched = 0
    with open(truth_path) as f:
        for line in f:
            t = json.loads(line)
            exp = t["verdict"]
            accept = set(t.get("accept") or [exp])
            row = per.setdefault(exp, {"expected": 0, "right": 0, "wrong": 0, "missing": 0,
                                       "confusions": collections.Counter()})
            row["expected"] += 1
            cands = found.get(key_of(t))
            if not cands:
                row["missing"] += 1
                continue
            matched += 1
            a = cands[0]
            if len(cands) > 1:  # same 5-tuple twice: prefer the same name
                a = next((x for x in cands if x.get("name") == t.get("name")), a)
            if a.get("verdict") in accept:
                row["right"] += 1
            else:
                row["wrong"] += 1
                row["confusions"][a.get("verdict")] += 1
    n_found = sum(len(v) for v in found.values())
    tot = sum(r["expected"] for r in per.values())
    right = sum(r["right"] for r in per.values())
    for r in per.values():
        r["confusions"] = dict(r["confusions"].most_common(4))
    return {"per_verdict": per, "truth": tot, "right": right,
            "accuracy": right / tot if tot else 0.0, "attempts_reported": n_found,
            "not_in_truth": n_found - matched}


# --------------------------------------------------------------------------- report
def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                     for i, (c, w) in enumerate(zip(cols, widths)))


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--scapy-worker"]:
        scapy_worker(int(argv[1]), argv[2], argv[3:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="a pcap, or a folder of (rotated) pcaps")
    ap.add_argument("--scapy-prefix", type=int, default=20000, metavar="N",
                    help="packets scapy dissects before extrapolating (default 20000)")
    ap.add_argument("--jobs", "-j", type=_jobs_list, default=[None], metavar="N[,M...]",
                    help="pass -j N to forensics analyze; N,M,...: time each (the first is the reference)")
    ap.add_argument("--pure", action="store_true",
                    help="also time forensics with FORENSICS_PURE=1 (its analysis modules run from source, "
                         "not compiled), in the same rounds")
    ap.add_argument("--skip-tshark", action="store_true")
    ap.add_argument("--skip-tshark-lean", action="store_true",
                    help="only time tshark with its defaults")
    ap.add_argument("--skip-scapy", action="store_true")
    ap.add_argument("--skip-forensics", action="store_true")
    ap.add_argument("--forensics", metavar="CMD",
                    help="command that runs the analyser (default: `forensics` on PATH)")
    ap.add_argument("--truth", help="ground truth (default: <stem>.truth.jsonl)")
    ap.add_argument("--keep", metavar="DIR", help="keep the analyser's output in DIR")
    ap.add_argument("--json-out", help="write a machine-readable summary here")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="time every tool N times, interleaved; report medians (default 1)")
    ap.add_argument("--min-accuracy", type=float,
                    help="exit 3 if the verdict accuracy is below this (0..1)")
    a = ap.parse_args(argv)

    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    files = pcap_files(a.input)
    if not files:
        print(f"run.py: no capture at {a.input}", file=sys.stderr)
        return 2
    truth, meta_path = side_files(a.input)
    truth = a.truth or truth
    meta = json.load(open(meta_path)) if meta_path else {}
    nbytes = sum(os.path.getsize(f) for f in files)
    packets = meta.get("packets") or sum(count_pcap(f) for f in files)
    workdir = a.keep or tempfile.mkdtemp(prefix="forensics-bench-")
    os.makedirs(workdir, exist_ok=True)
    try:
        return _measure(a, files, truth, meta, nbytes, packets, workdir)
    finally:  # also when interrupted: the analyser's output can be gigabytes
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _jobs_list(text: str) -> list[int]:
    try:
        jobs = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or a list of numbers: {text!r}") from None
    if not jobs or min(jobs) < 1:
        raise argparse.ArgumentTypeError("-j must be at least 1")
    return jobs


def _run_forensics(a, jobs: int | None, out_json: str, workdir: str, pure: bool = False) -> dict:
    r = time_forensics(a.input, out_json, jobs, workdir, a.forensics, pure)
    if not r["ok"]:
        print(f"  FAILED (exit {r.get('rc')}): {r.get('note') or ''}\n  "
              + (r.get("stderr_tail") or r.get("error") or "").replace("\n", "\n  "))
    return r


def _run_scapy(a, files: list[str], packets: int, workdir: str) -> dict:
    r = time_scapy(files, a.scapy_prefix, workdir)
    if r.get("ok") and r["packets"]:
        r["prefix_packets"] = r["packets"]
        r["prefix_seconds"] = r["seconds"]
        # the child's fixed cost (interpreter, scapy import) once, plus the per-packet
        # loop time scaled from the prefix to the whole input
        r["startup_seconds"] = r["seconds"] - r["loop_seconds"]
        r["seconds"] = r["startup_seconds"] + r["loop_seconds"] * packets / r["packets"]
        r["extrapolated"] = True
        print(f"  scapy saw {r['snis']} SNIs, {r['http_hosts']} HTTP Hosts, "
              f"{r['dns_qnames']} DNS qnames in its first {r['packets']:,} packets")
    return r


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def combine_runs(runs: list[dict]) -> dict:
    """One tool's rounds as one result: the median wall and CPU seconds (the figure the
    table and the ratios use), every round's seconds, the largest peak RSS. A round that
    failed makes the result failed (a median must not hide a crash)."""
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[-1])
    if not all(r.get("ok") for r in runs):
        out["ok"] = False
        return out
    secs = [r["seconds"] for r in runs]
    out["runs_seconds"] = secs
    out["seconds"] = statistics.median(secs)
    out["cpu_seconds"] = statistics.median([r.get("cpu_seconds") or 0.0 for r in runs])
    out["rss_mb"] = max(r.get("rss_mb") or 0.0 for r in runs)
    return out


def paired_ratio(tool: dict, ref: dict) -> float | None:
    """The median over rounds of (the tool's seconds / forensics' seconds in the same
    round): each ratio compares two runs made minutes apart, not a fast hour's run with
    a slow hour's."""
    a, b = tool.get("runs_seconds"), ref.get("runs_seconds")
    if a and b and len(a) == len(b):
        return statistics.median([x / y for x, y in zip(a, b) if y])
    return tool["seconds"] / ref["seconds"] if ref.get("seconds") else None


def _measure(a, files: list[str], truth: str | None, meta: dict, nbytes: int, packets: int,
             workdir: str) -> int:
    """Time the tools one after the other, print the table and check the verdicts."""
    out_json = os.path.join(workdir, "analyze.json")
    print(f"input: {a.input} ({len(files)} file{'s' * (len(files) > 1)}, {packets:,} packets, "
          f"{nbytes / 1e6:.1f} MB)")
    results: dict[str, dict] = {}
    # one round times each tool once; --repeat N runs N rounds, the tools interleaved, so
    # that every tool meets the same spells of a busy machine (see ``combine_runs``)
    tools: list[tuple[str, object]] = []
    if not a.skip_forensics:
        for jobs in a.jobs:
            label = "forensics analyze" + (f" -j {jobs}" if jobs else "")
            tools.append((label, lambda jobs=jobs: _run_forensics(a, jobs, out_json, workdir)))
            if a.pure:
                tools.append((label + " (FORENSICS_PURE=1)",
                              lambda jobs=jobs: _run_forensics(a, jobs, out_json, workdir, pure=True)))
    if not a.skip_scapy:
        label = f"scapy (extrapolated from {min(a.scapy_prefix, packets):,} packets)"
        tools.append((label, lambda: _run_scapy(a, files, packets, workdir)))
    if not a.skip_tshark:
        for lean in ([False] if a.skip_tshark_lean else [False, True]):
            label = "tshark -T fields" + (" (lean: no seq analysis)" if lean else " (defaults)")
            tools.append((label, lambda lean=lean: time_tshark(files, lean)))
    runs: dict[str, list[dict]] = {label: [] for label, _ in tools}
    report_digests: list[str] = []
    for k in range(a.repeat):
        for label, run in tools:
            print(f"timing {label}" + (f" (round {k + 1} of {a.repeat})" if a.repeat > 1 else "")
                  + " ...", flush=True)
            r = run()
            runs[label].append(r)
            if label.startswith("forensics") and r.get("ok"):
                report_digests.append(file_digest(out_json))
    for label, rs in runs.items():
        results[label] = combine_runs(rs)

    ref = next((r for k, r in results.items() if k.startswith("forensics") and r.get("ok")), None)
    widths = [44, 9, 12, 8, 9, 10]
    print()
    print(fmt_row(["tool", "seconds", "packets/s", "MB/s", "peak RSS", "x forensics"], widths))
    for k, r in results.items():
        if not r.get("ok"):
            print(fmt_row([k, "failed", "-", "-", "-", "-"], widths))
            continue
        s = r["seconds"]
        r["packets_per_s"] = packets / s if s else 0.0
        r["mb_per_s"] = nbytes / 1e6 / s if s else 0.0
        ratio = paired_ratio(r, ref) if ref else None
        r["ratio_vs_forensics"] = ratio
        print(fmt_row([k, f"{s:.2f}", f"{r['packets_per_s']:,.0f}", f"{r['mb_per_s']:.1f}",
                       f"{r['rss_mb']:.0f} MB", f"{ratio:.2f}" if ratio else "-"], widths))
        if r.get("runs_seconds"):
            print("    rounds: " + ", ".join(f"{x:.2f}" for x in r["runs_seconds"]) + " s")
        if k.startswith("forensics") and r is not ref and ratio:
            print(f"    {1 / ratio:.2f}x the packets/s of the first forensics row")
    print("(x forensics = that tool's time / forensics' time: above 1 means forensics is faster;"
          " scapy's RSS is for its prefix only)")
    if a.repeat > 1:
        print(f"({a.repeat} rounds, the tools interleaved: seconds are medians, x forensics the median of"
              f" the rounds' own ratios, RSS the largest)")
    if len(report_digests) > 1:
        print(f"(the analyser's {len(report_digests)} reports, every round and every -j: "
              f"{'identical, byte for byte' if len(set(report_digests)) == 1 else 'NOT identical'})")

    verdicts = None
    an = next((r for k, r in results.items() if k.startswith("forensics")), None)
    if an and an.get("ok"):
        if truth:
            verdicts = check_verdicts(truth, out_json)
            print(f"\nverdicts vs ground truth ({truth}):")
            w2 = [20, 9, 7, 7, 8]
            print(fmt_row(["truth verdict", "expected", "right", "wrong", "missing"], w2)
                  + "  top confusions")
            for v, row in verdicts["per_verdict"].items():
                conf = ", ".join(f"{k}:{n}" for k, n in row["confusions"].items())
                print(fmt_row([v, row["expected"], row["right"], row["wrong"], row["missing"]],
                              w2) + "  " + conf)
            print(f"accuracy {verdicts['accuracy']:.4f} ({verdicts['right']}/{verdicts['truth']})"
                  f"; attempts reported {verdicts['attempts_reported']}, not in truth "
                  f"{verdicts['not_in_truth']}")
        else:
            print("\n(no ground truth next to the input: verdicts not checked)")

    summary = {"input": a.input, "files": len(files), "packets": packets, "bytes": nbytes, "rounds": a.repeat,
               "reports_identical": len(set(report_digests)) <= 1,
               "meta": meta, "results": results, "verdicts": verdicts,
               "workdir": workdir if a.keep else None}
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(summary, f, indent=1, default=str)
    if an is not None and not an.get("ok"):
        return 2
    if a.min_accuracy is not None and (verdicts is None or verdicts["accuracy"] < a.min_accuracy):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
