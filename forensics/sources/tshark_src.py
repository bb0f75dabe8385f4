"""Packets of link types the tool does not decode itself, through tshark.

``decode`` reads Ethernet, Linux cooked, raw IP and BSD loopback headers
itself; anything else (radiotap 127, IEEE 802.11 105, PPP 9, PPP-HDLC 50,
NFLOG 239, PPI 192, MPLS inside Ethernet, ...) is marked ``ST_LINK``. This
module hands those packets to tshark, which knows every link layer, and asks
only one thing back: where in the frame the first IPv4/IPv6 header starts.
The IP packet from there on is then decoded as raw IP (link type 101) by the
same columnar decoder, into the same columns, keeping the record's frame
number and timestamp. So the rest of the pipeline never learns that tshark was
involved, and tshark runs once per batch, not once per packet.

Why PDML and not pyshark: pyshark drives the same tshark and parses its JSON
into Python objects per packet, which costs tens of milliseconds a packet; the
PDML stream is read line by line here and only the ``<proto name="ip">`` lines
matter (their ``pos`` is the offset in the frame). The offset is checked against
the frame's own bytes (IP version nibble, IPv4 header length) so a header that
tshark found in reassembled or decompressed data, which is not a slice of the
frame, is not taken for one.

Without tshark the packets stay ``ST_LINK``; the caller counts them and warns
with what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

#: Packets handed to one tshark run (bounds its memory and our wait per run).
RUN_PACKETS = 50_000
#: Seconds allowed per run, plus a little per packet.
RUN_TIMEOUT = 120.0
PER_PACKET_TIMEOUT = 0.002

#: What tshark calls a layer it could not dissect.
_UNDECODED_PROTOS = frozenset({"data", "user_dlt"})
_PROTO = re.compile(r'<proto name="([^"]+)"')
_POS = re.compile(r'\bpos="(\d+)"')
_SIZE = re.compile(r'\bsize="(\d+)"')

# results per packet
FOUND = 0  # an IP header at ``offset``
NO_IP = 1  # tshark decoded the frame and it carries no IP (802.11 beacons, LCP, ...)
UNDECODED = 2  # tshark could not decode it either (or failed)


def find_tshark() -> str | None:
    """The tshark executable, or None. ``FORENSICS_TSHARK`` overrides the PATH lookup."""
    env = os.environ.get("FORENSICS_TSHARK")
    if env is not None:
        return env or None  # set to "" to turn tshark off
    return shutil.which("tshark")


@dataclass(slots=True)
class IpOffsets:
    kind: np.ndarray  # uint8 per packet: FOUND, NO_IP, UNDECODED
    offset: np.ndarray  # int64 per packet: IP header offset in the frame (FOUND only)
    error: str | None = None


def _pcapng(frames: list[bytes], linktypes: list[int]) -> bytes:
    """A minimal little-endian pcapng: one interface per link type, timestamps 0."""
    out = [b"\x0a\x0d\x0d\x0a" + struct.pack("<IIHHqI", 28, 0x1A2B3C4D, 1, 0, -1, 28)]
    iface: dict[int, int] = {}
    for lt in sorted(set(linktypes)):
        iface[lt] = len(iface)
        out.append(struct.pack("<IIHHII", 1, 20, lt, 0, 0, 20))
    for data, lt in zip(frames, linktypes):
        pad = b"\0" * (-len(data) % 4)
        blen = 32 + len(data) + len(pad)
        out.append(struct.pack("<IIIIIII", 6, blen, iface[lt], 0, 0, len(data), len(data)) + data + pad
                   + struct.pack("<I", blen))
    return b"".join(out)


def _check(frame: bytes, pos: int, size: int, name: str) -> bool:
    if pos < 0 or pos >= len(frame):
        return False
    b = frame[pos]
    if name == "ip":
        return b >> 4 == 4 and (b & 0xF) * 4 == size and pos + 20 <= len(frame)
    return b >> 4 == 6 and pos + 40 <= len(frame)


def ip_offsets(frames: list[bytes], linktypes: list[int], tshark: str) -> IpOffsets:
    """Ask tshark where the first IP header of each frame starts."""
    n = len(frames)
    kind = np.full(n, UNDECODED, np.uint8)
    offset = np.full(n, -1, np.int64)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="forensics-tshark-") as tmp:
        for start in range(0, n, RUN_PACKETS):
            stop = min(start + RUN_PACKETS, n)
            path = os.path.join(tmp, f"part{start}.pcapng")
            with open(path, "wb") as fh:
                fh.write(_pcapng(frames[start:stop], linktypes[start:stop]))
            err = _run(tshark, path, frames, start, stop, kind, offset)
            if err:
                errors.append(err)
                break
    return IpOffsets(kind, offset, errors[0] if errors else None)


def _run(tshark: str, path: str, frames: list[bytes], start: int, stop: int,
         kind: np.ndarray, offset: np.ndarray) -> str | None:
    cmd = [tshark, "-n", "-r", path, "-T", "pdml", "-J", "ip ipv6 data"]
    timeout = RUN_TIMEOUT + PER_PACKET_TIMEOUT * (stop - start)
    errfile = tempfile.TemporaryFile()  # a file, not a pipe: tshark can never block on it
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, stdin=subprocess.DEVNULL,
                                text=True, errors="replace", bufsize=1 << 16)
    except OSError as exc:
        errfile.close()
        return f"cannot run {tshark}: {exc.strerror or exc}"
    i = start - 1
    found = False
    protos: set[str] = set()

    def close_packet() -> None:
        if i >= start and not found:
            kind[i] = UNDECODED if protos & _UNDECODED_PROTOS or not protos else NO_IP

    try:
        import threading

        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                s = line.lstrip()
                if s.startswith("<packet>"):
                    close_packet()
                    i += 1
                    found = False
                    protos = set()
                    continue
                if not s.startswith("<proto ") or found or i < start or i >= stop:
                    continue
                m = _PROTO.match(s)
                if m is None:
                    continue
                name = m.group(1)
                if name in ("geninfo", "frame", "fake-field-wrapper"):
                    continue
                protos.add(name)
                if name in ("ip", "ipv6"):
                    p, z = _POS.search(s), _SIZE.search(s)
                    if p and z and _check(frames[i], int(p.group(1)), int(z.group(1)), name):
                        kind[i] = FOUND
                        offset[i] = int(p.group(1))
                        found = True
            close_packet()
            rc = proc.wait()
        finally:
            timer.cancel()
        errfile.seek(0)
        stderr = errfile.read(1 << 16).decode("utf-8", "replace")
    finally:
        errfile.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        if rc < 0:
            return f"tshark was stopped after {timeout:.0f} s"
        msg = " ".join(ln for ln in stderr.splitlines() if "Running as user" not in ln).strip()
        return f"tshark failed (exit {rc}): {msg[:200]}"
    if i + 1 != stop:
        kind[max(i + 1, start):stop] = UNDECODED
        return f"tshark returned {i + 1 - start} of {stop - start} packets"
    return None


def redecode(rows: np.ndarray, raw, mask: np.ndarray, tshark: str):
    """Decode the ``mask`` rows of a batch through tshark; return (rows, buf, decoded, error).

    Rows whose IP header tshark found are replaced by the raw-IP decode of the
    frame from that header on; rows tshark decoded without finding IP become
    ``ST_NOT_IP``; the rest keep ``ST_LINK``. ``buf`` is the batch buffer with
    the IP packets appended (the new rows point into it).
    """
    from .decode import ST_NOT_IP, decode

    # a link type past 16 bits exists nowhere (a damaged header): tshark cannot be told it
    idx = np.flatnonzero(mask & (raw.linktype >= 0) & (raw.linktype <= 0xFFFF))
    buf = raw.buf
    if len(idx) == 0:
        return rows, buf, 0, None
    offs = raw.off[idx].tolist()
    caps = raw.caplen[idx].tolist()
    frames = [buf[o:o + c].tobytes() for o, c in zip(offs, caps)]
    res = ip_offsets(frames, raw.linktype[idx].tolist(), tshark)
    rows["status"][idx[res.kind == NO_IP]] = ST_NOT_IP
    hit = np.flatnonzero(res.kind == FOUND)
    if len(hit) == 0:
        return rows, buf, 0, res.error
    ipoff = res.offset[hit]
    pieces = [frames[j][int(k):] for j, k in zip(hit.tolist(), ipoff.tolist())]
    lens = np.array([len(p) for p in pieces], np.int64)
    starts = len(buf) + np.concatenate(([0], np.cumsum(lens)[:-1]))
    newbuf = np.concatenate([buf, np.frombuffer(b"".join(pieces), np.uint8)])
    sel = idx[hit]
    sub = decode(newbuf, raw.frame[sel], raw.ts[sel], starts, lens.astype(np.int32),
                 np.full(len(sel), 101, np.int32), np.maximum(raw.origlen[sel] - ipoff, lens))
    rows[sel] = sub
    return rows, newbuf, len(sel), res.error
