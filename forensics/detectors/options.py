"""Options: TCP options rewritten on the path, read from the windows they leave behind.

Detects: a window scale option removed from the SYN-ACK on its way to the client.
The client offered a scale in its SYN and the SYN-ACK, as captured, carries none:
by RFC 7323 neither side then scales, and every window the server announces
counts bytes. Read so, the server's window takes back what its SYN-ACK offered:
its right edge (acknowledgement number plus window) moves left by more than half
the offer, where a receiver does not shrink its window (RFC 9293 3.8.6; Linux never
does) and a server short of buffer closes it by what it holds, not by more. Read
with a scale of 2^k it does not move: the server scales, so it saw the option the
client never saw. The client then sends into windows 2^k times too small: a few
bytes per round trip, and anything larger than a window or two crawls or stalls.
An option overwritten in place (what Linux's TCPOPTSTRIP does) also leaves a run
of NOPs longer than any alignment needs, which the evidence names.

Known false positives: a server stack that shrinks its window by half or more and
announces no scale (none is known). Not seen: a capture taken between the box and
the server (the SYN-ACK is still whole there); a scale option removed from the SYN
(the server then does not scale either, and nothing breaks); other options
removed (MSS, SACK-permitted or timestamps taken out of the SYN-ACK left Linux
connections working in the lab; taken out of the SYN, the server does not use them).
"""

from __future__ import annotations

from ..model import S2C, SEG_ACK, SEG_DIR, SEG_FLAGS, SEG_FRAME, SEG_INPUT, SEG_WIN, Attempt, Finding
from ..sources.decode import TCP_ACK, TCP_RST, TCP_SYN
from .base import doc_parts, ev, finding

NAME = "options"

SIGNALS = {
    'wscale-stripped': "the SYN-ACK reached the client without the window scale the client offered, yet the "
                       "server's windows only make sense scaled: the option was removed on the path",
}

#: RFC 7323 caps the window scale shift at 14.
MAX_SHIFT = 14
#: How far the right edge must move back, as a share of the SYN-ACK's offer, to count:
#: a lost scale of 2^k divides every window by 2^k (k >= 1), so right after the
#: handshake the edge falls back by at least half the offer; a receiver short of memory
#: that takes back a little (RFC 9293 allows it, discouraged) stays well under that.
SHRINK_SHARE = 0.5
#: Options are aligned on 4 bytes, so a sender pads with at most 3 NOPs in a row; a
#: longer run is an option's bytes overwritten with NOPs in transit.
ALIGNMENT_NOPS_MAX = 3


def _longest_nop_run(kinds: tuple[int, ...]) -> int:
    best = run = 0
    for k in kinds:
        run = run + 1 if k == 1 else 0
        best = max(best, run)
    return best


class OptionsDetector:
    name = NAME
    detects, false_positives = doc_parts(__doc__)

    def run(self, a: Attempt) -> list[Finding]:
        c = a.tcp
        if c is None or c.syn is None or c.synack is None or c.syn.wscale is None or c.synack.wscale is not None:
            return []
        rows = c.rows
        sa = next((r for r in rows if r[SEG_DIR] == S2C and r[SEG_FLAGS] & TCP_SYN and r[SEG_FLAGS] & TCP_ACK), None)
        if sa is None or sa[SEG_WIN] == 0:
            return []
        base, offer = sa[SEG_ACK], sa[SEG_WIN]  # the client's ISN + 1; what the SYN-ACK offered
        later = []  # (bytes acknowledged past the SYN, raw window, row) of the server's ACKs after it
        for r in rows:
            f = r[SEG_FLAGS]
            if r[SEG_DIR] != S2C or f & (TCP_SYN | TCP_RST) or not f & TCP_ACK or r[SEG_WIN] == 0:
                continue  # a closed window says the buffer is full, not how windows are counted
            acked = (r[SEG_ACK] - base) & 0xFFFFFFFF
            if acked < 0x80000000:
                later.append((acked, r[SEG_WIN], r))
        if not later:
            return []
        back, acked, row = max((offer - (k + w), k, r) for k, w, r in later)
        if back <= offer * SHRINK_SHARE:
            return []
        # the smallest scale under which no announcement takes back the SYN-ACK's offer
        shift = next((s for s in range(1, MAX_SHIFT + 1) if all(k + (w << s) >= offer for k, w, _ in later)), None)
        if shift is None:
            return []  # no scale explains it: the server did shrink its window
        nops = _longest_nop_run(c.synack.kinds)
        overwritten = nops > ALIGNMENT_NOPS_MAX
        largest = max(w for _, w, _ in later)
        detail = (f"the SYN-ACK (frame {c.synack.frame}) came without the window scale the client's SYN offered "
                  f"(shift {c.syn.wscale}){f', {nops} NOPs in a row in its place' if overwritten else ''}: windows "
                  f"then count bytes, yet after offering {offer} the server announced at most {largest} (frame "
                  f"{row[SEG_FRAME]}: ack +{acked}, window {row[SEG_WIN]}), its window's right edge {back} bytes back, "
                  f"which no receiver does; scaled by 2^{shift} or more the edge never moves back: the server "
                  f"scales, and the client, not knowing it, sends into windows at least {1 << shift} times too small")
        evidence = [ev(a.input, c.syn.frame, "syn", f"window scale shift {c.syn.wscale} offered"),
                    ev(a.input, c.synack.frame, "syn-ack",
                       f"window {offer}, no window scale" + (f", {nops} NOPs in a row" if overwritten else "")),
                    ev(row[SEG_INPUT], row[SEG_FRAME], "window-shrunk",
                       f"ack +{acked}, window {row[SEG_WIN]}: right edge {back} bytes left of the SYN-ACK's")]
        return [finding(NAME, "wscale-stripped", 1.0, detail, evidence, shift=shift, overwritten=overwritten,
                        trigger="none")]
