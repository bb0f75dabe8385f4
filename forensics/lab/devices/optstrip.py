"""An option stripper: overwrites chosen TCP options with NOPs in the segments it forwards.

Models what Linux's ``TCPOPTSTRIP`` target, many "normalising" firewalls and some
carrier-grade NATs do: the option's bytes become NOPs (kind 1), the header keeps
its length, the checksum is fixed.  Parameters: ``strip``: option names among
``mss``, ``wscale``, ``sack-perm``, ``sack``, ``timestamps`` (default
``["wscale"]``); ``toward``: ``client`` (segments coming from the servers' side,
default), ``server`` or ``both``; ``syn_only`` (default true): only SYNs and
SYN-ACKs, as a box that rewrites the handshake does.
"""

from __future__ import annotations

import struct

from .. import packets as P
from .base import Device

OPTION_KINDS = {"mss": 2, "wscale": 3, "sack-perm": 4, "sack": 5, "timestamps": 8}


def strip_options(raw: bytes, kinds: frozenset[int]) -> bytes | None:
    """``raw`` (an Ethernet frame holding a TCP segment) with the options of ``kinds``
    overwritten by NOPs and the TCP checksum recomputed; None when there was none to strip."""
    etype = struct.unpack("!H", raw[12:14])[0]
    if etype == P.ETH_IP4:
        ihl = (raw[14] & 0x0F) * 4
        tcp = 14 + ihl
        total = struct.unpack("!H", raw[16:18])[0]
        end = 14 + total
        src, dst = raw[26:30], raw[30:34]
    else:
        tcp, end = 54, 54 + struct.unpack("!H", raw[18:20])[0]
        src, dst = raw[22:38], raw[38:54]
    out = bytearray(raw)
    opt_end = tcp + (raw[tcp + 12] >> 4) * 4
    i, changed = tcp + 20, False
    while i < opt_end:
        kind = out[i]
        if kind == 0:  # end of the option list
            break
        if kind == 1:
            i += 1
            continue
        length = out[i + 1] if i + 1 < opt_end else 0
        if length < 2 or i + length > opt_end:
            break  # malformed: leave the rest as it is
        if kind in kinds:
            out[i:i + length] = b"\x01" * length
            changed = True
        i += length
    if not changed:
        return None
    out[tcp + 16:tcp + 18] = b"\0\0"
    out[tcp + 16:tcp + 18] = struct.pack("!H", P.l4_checksum(src, dst, P.TCP, bytes(out[tcp:end])))
    return bytes(out)


class OptionStripper(Device):
    kind = "option-stripper"

    def __init__(self, params, seed=0):
        super().__init__(params, seed)
        names = params.get("strip", ["wscale"])
        unknown = set(names) - set(OPTION_KINDS)
        if unknown:
            raise ValueError(f"option-stripper: unknown options {sorted(unknown)}")
        self.kinds = frozenset(OPTION_KINDS[n] for n in names)
        toward = params.get("toward", "client")
        self.sides = {"client": {"b"}, "server": {"a"}, "both": {"a", "b"}}[toward]
        self.syn_only = bool(params.get("syn_only", True))

    def on_frame(self, f, from_side, now):
        if from_side not in self.sides or not f.is_tcp or (self.syn_only and not f.flags & P.SYN):
            return True, []
        rewritten = strip_options(f.raw, self.kinds)
        if rewritten is None:
            return True, []
        self.log(f"stripped {f.src}:{f.sport} -> {f.dst}:{f.dport} flags {f.flags:#x}")
        return rewritten, []
