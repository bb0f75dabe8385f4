"""Run a scenario: build the lab, start servers and captures, run the clients, tear down.

``run_scenario(scenario, out_dir)`` writes ``out_dir/<capture>.pcap`` and
``out_dir/truth.json`` and returns a small result dict (step outcomes, timings).
Everything it creates lives in namespaces named ``fxlab-<pid>-<n>-*`` and is
removed before it returns, also when it fails or is interrupted.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from ..errors import CaptureError, UsageError
from . import topology as T
from .devices.kernel import ip_block, pmtu_blackhole
from .netns import Lab, check_environment, run
from .scenario import CAPTURES, Scenario, truth

LIFETIME_S = 120  # bound on every helper process of one scenario
PY = sys.executable


def _wait_line(proc: subprocess.Popen, stream, marker: str, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    buf = ""
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise CaptureError(f"{what} exited early: {buf.strip()[-200:]}")
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            line = stream.readline()
            buf += line
            if marker in line:
                return
    raise CaptureError(f"{what} did not start within {timeout:.0f} s")


def make_cert(directory: str) -> tuple[str, str]:
    """A self-signed EC certificate for every lab name (the lab's own)."""
    cert, key = os.path.join(directory, "lab.crt"), os.path.join(directory, "lab.key")
    if not os.path.exists(cert):
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=lab.example",
             "-addext", "subjectAltName=DNS:*.example,DNS:*.blogs.example,DNS:*.diary.example,DNS:*.video.example"],
            timeout=20)
    return cert, key


class Build:
    """The running lab of one scenario."""

    def __init__(self, scenario: Scenario, workdir: str, fw: str):
        self.s, self.workdir, self.fw = scenario, workdir, fw
        self.lab = Lab()
        self.links = {link.name: link for link in T.links()}

    def close_log(self) -> None:
        if getattr(self, "wire_log", None):
            self.wire_log.close()

    def kernel_devices(self):
        cmds, mtus = [], {}
        for dev in self.s.kernel:
            if dev[0] == "ip-block":
                c, m = ip_block(T.HOP_ROUTER[dev[1]], dev[2], dev[3], self.fw)
            elif dev[0] == "pmtu":
                c, m = pmtu_blackhole(self.links[dev[1]], dev[2], self.fw)
            else:
                raise CaptureError(f"unknown kernel device {dev[0]}")
            cmds += c
            mtus.update(m)
        return cmds, mtus

    def up(self) -> None:
        lab = self.lab
        for node in T.NODES:
            lab.add_ns(node)
            sysctls = T.SYSCTL_ALL + (T.SYSCTL_ROUTER if node in T.ROUTERS else [])
            lab.sysctl(node, sysctls)
        # devices' "random" choices are seeded per scenario: recordings are repeatable
        spec = {"lifetime_s": LIFETIME_S, "seed": zlib.crc32(self.s.name.encode()) & 0xFFFF, "links": []}
        for link in self.links.values():
            devices = [{"kind": kind, "params": params} for (ln, kind, params) in self.s.wire if ln == link.name]
            spec["links"].append({"name": link.name, "a": [lab.ns(link.a[0]), link.a[1]],
                                  "b": [lab.ns(link.b[0]), link.b[1]], "delay_ms": link.delay_ms,
                                  "devices": devices})
        spec_path = os.path.join(self.workdir, "wire.json")
        with open(spec_path, "w") as fh:
            json.dump(spec, fh)
        self.wire_log = open(os.path.join(self.workdir, "wire.log"), "w")  # noqa: SIM115 (closed by close_log)
        wire = lab.spawn(None, [PY, "-m", "forensics.lab.wire", spec_path],
                         stdout=subprocess.PIPE, stderr=self.wire_log, text=True)
        _wait_line(wire, wire.stdout, "READY", 10, "the wire")
        cmds, mtus = self.kernel_devices()
        for node in T.NODES:
            lab.batch(node, T.node_commands(node, mtus))
        for node, argv in cmds:
            lab.exec(node, argv)

    def servers(self, cert: str, key: str) -> None:
        for node, argv in (("srv", ["web", cert, key]), ("dns", ["dns"])):
            p = self.lab.spawn(node, [PY, "-m", "forensics.lab.servers"] + argv + ["--lifetime", str(LIFETIME_S)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            _wait_line(p, p.stdout, "READY", 10, f"the {argv[0]} server")

    def capture(self, out_dir: Path) -> list:
        procs = []
        for name in self.s.captures:
            node, ifname = CAPTURES[name]
            # `timeout` bounds tcpdump's life even if this process is killed outright;
            # it passes our SIGINT on to tcpdump, which then completes the file
            p = self.lab.spawn(node, ["timeout", "-s", "INT", str(LIFETIME_S), "tcpdump", "-i", ifname, "-U",
                                      "--immediate-mode", "-s", "0", "-n", "-w", str(out_dir / f"{name}.pcap")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _wait_line(p, p.stderr, "listening on", 10, f"tcpdump on {node}/{ifname}")
            procs.append(p)
        return procs

    def steps(self, verbose: bool = False) -> list[dict]:
        results = []
        for i, step in enumerate(self.s.steps):
            if step.sysctl:
                self.lab.sysctl(step.node, step.sysctl)
            argv = [PY, "-m", "forensics.lab.clients"] + step.argv if step.python else step.argv
            t0 = time.monotonic()
            try:
                res = self.lab.exec(step.node, argv, timeout=step.timeout, check=False)
                rc, out = res.returncode, (res.stdout.strip().splitlines() or [""])[-1][:80]
            except CaptureError:
                rc, out = -1, "timeout"
            results.append({"step": i, "node": step.node, "argv": " ".join(step.argv)[:100], "rc": rc,
                            "out": out, "s": round(time.monotonic() - t0, 2)})
            if verbose:
                r = results[-1]
                print(f"    {step.node} rc={rc} {r['s']:5.2f}s {r['argv']} -> {out}", file=sys.stderr)
            time.sleep(0.25)  # keep attempts apart, and let late packets arrive
        return results


def run_scenario(scenario: Scenario, out_dir: str | Path, verbose: bool = False, on_ready=None) -> dict:
    """Record one scenario; ``on_ready`` (for tests) is called once the lab is up."""
    fw = check_environment()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from exc
    for old in out.glob("*.pcap"):
        old.unlink()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fxlab-") as work:
        build = Build(scenario, work, fw)
        try:
            build.up()
            build.servers(*make_cert(work))
            caps = build.capture(out)
            if on_ready:
                on_ready()
            time.sleep(0.2)
            results = build.steps(verbose)
            time.sleep(2 * T.DELAY_MS / 1000 + 0.5)
            for p in caps:
                build.lab.stop(p, sig=2, timeout=3)
        finally:
            build.lab.close()
            build.close_log()
            if verbose and os.path.exists(os.path.join(work, "wire.log")):
                sys.stderr.write(open(os.path.join(work, "wire.log")).read())
    with open(out / "truth.json", "w") as fh:
        json.dump(truth(scenario), fh, indent=1)
        fh.write("\n")
    return {"scenario": scenario.name, "seconds": round(time.monotonic() - t0, 1), "steps": results}
