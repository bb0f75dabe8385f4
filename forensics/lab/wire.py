"""The user-space wire: every link of the lab is a pair of TAP devices joined here.

This kernel has no ``netem`` qdisc, so links are made in user space: for each
link the wire opens one TAP device inside each of the two namespaces and copies
Ethernet frames between them, optionally after a fixed one-way delay, and lets
the link's devices (``forensics.lab.devices``) drop frames, rewrite them or inject forged ones.
Because the TAP devices have no offloads, the kernel segments and checksums
everything before it reaches the wire, so captures show wire-size segments.

TAP devices are not persistent: when this process exits (normally, killed, or
crashed) they vanish with it, and nothing of the lab touches the root namespace.

Run as ``python -m forensics.lab.wire SPEC.json``; the spec::

    {"lifetime_s": 300, "seed": 1,
     "links": [{"name": "r3-r4", "a": ["fxlab-1-r3", "up0"], "b": ["fxlab-1-r4", "dn0"],
                "delay_ms": 20, "devices": [{"kind": "rst-injector", "params": {...}}]}]}

It prints ``READY`` on stdout once every TAP device exists, and stops on SIGTERM,
SIGINT or after ``lifetime_s`` seconds, whichever comes first.
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import json
import os
import select
import signal
import struct
import sys
import time

from . import packets as P
from .devices import WIRE_DEVICES

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
CLONE_NEWNET = 0x40000000
MAX_FRAME = 65535

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def open_tap(netns: str, ifname: str) -> int:
    """Create TAP ``ifname`` inside ``netns`` and return its fd (non-blocking)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TAP | IFF_NO_PI))
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
    return fd


class Link:
    def __init__(self, spec: dict, seed: int):
        self.name = spec["name"]
        self.fd = {"a": open_tap(*spec["a"]), "b": open_tap(*spec["b"])}
        self.side_of = {v: k for k, v in self.fd.items()}
        self.delay = float(spec.get("delay_ms", 0)) / 1000.0
        self.devices = [WIRE_DEVICES[d["kind"]](d.get("params", {}), seed + i)
                        for i, d in enumerate(spec.get("devices", []))]


class Wire:
    def __init__(self, spec: dict):
        seed = int(spec.get("seed", 1))
        self.links = [Link(s, seed + 100 * i) for i, s in enumerate(spec["links"])]
        self.by_fd = {fd: link for link in self.links for fd in link.fd.values()}
        self.queue: list = []  # (due, n, fd, frame)
        self.n = 0
        self.stop = False

    def _write(self, fd: int, frame: bytes) -> None:
        try:
            os.write(fd, frame)
        except OSError:
            pass  # the namespace side is down or gone: a lost frame, like on a wire

    def _send(self, link: Link, to_side: str, frame: bytes, now: float) -> None:
        fd = link.fd[to_side]
        if link.delay <= 0:
            self._write(fd, frame)
        else:
            self.n += 1
            heapq.heappush(self.queue, (now + link.delay, self.n, fd, frame))

    def handle(self, fd: int, raw: bytes, now: float) -> None:
        link = self.by_fd[fd]
        side = link.side_of[fd]
        to = "b" if side == "a" else "a"
        forward, injected = True, []
        if link.devices:
            frame = P.parse(raw)
            if frame.version:
                for dev in link.devices:
                    try:
                        fwd, inj = dev.on_frame(frame, side, now)
                    except Exception as exc:  # one broken device must not stop the wire
                        print(f"[wire] {dev.kind} failed: {exc!r}", file=sys.stderr, flush=True)
                        continue
                    injected.extend(inj)
                    if not fwd:
                        forward = False
                        break
                    if isinstance(fwd, bytes):  # rewritten: it goes on in the real frame's place
                        raw, frame = fwd, P.parse(fwd)
        if forward:
            self._send(link, to, raw, now)
        for to_side, forged in injected:
            self._write(link.fd[to_side], forged)

    def run(self, lifetime: float) -> None:
        end = time.monotonic() + lifetime
        fds = list(self.by_fd)
        while not self.stop:
            now = time.monotonic()
            if now >= end:
                break
            while self.queue and self.queue[0][0] <= now:
                _, _, fd, frame = heapq.heappop(self.queue)
                self._write(fd, frame)
            timeout = min(end - now, 0.5)
            if self.queue:
                timeout = max(0.0, min(timeout, self.queue[0][0] - now))
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            for fd in ready:
                for _ in range(64):  # bounded burst per fd
                    try:
                        raw = os.read(fd, MAX_FRAME)
                    except (BlockingIOError, OSError):
                        break
                    if not raw:
                        break
                    self.handle(fd, raw, time.monotonic())


def main(argv: list[str]) -> int:
    with open(argv[0]) as fh:
        spec = json.load(fh)
    wire = Wire(spec)

    def _stop(signum, frame):
        wire.stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print("READY", flush=True)
    wire.run(float(spec.get("lifetime_s", 300)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
