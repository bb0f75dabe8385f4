"""Resets from the server's side: did the server send them?

Detects: TCP resets (and RST+ACKs) arriving from the server's side that the
server did not send. Each reset is compared with the server's own packets in the
same connection: its TTL against the server packets nearest to it (2 hops or
more apart is strong, 1 is weak), its IP-ID against the server's progression,
the race (the server's data, ACKs or FIN still arriving after it, with the
server's TTL), bursts (RST then RST+ACK, or sequence numbers jumping beyond
anything the server sent), and timing (sooner after the client's packet than
the handshake round trip allows). It says what set the reset off (the first
client payload: SNI or Host; the SYN: the address) and where the sender sits
(hop, from TTL arithmetic, with wider bounds when the sender may have copied
the trigger's TTL). A reset with a nearer hop's TTL that hits the first packet
after a long idle period is reported as a stateful device's idle-timeout reset.
A reset whose TTL and IP-ID fit the server's is the server's own. Resets from
the server's side that come after the client itself reset the connection are
never called forged or suspect: nothing was left to interrupt (a firewall or NAT
at the edge tearing down its state sends such resets, sometimes seconds later,
with its own TTL); one that fits the server's packets is still the server's own.
Nor are resets with the server's TTL that come after the server's own FIN (its
TTL fits the SYN-ACK's): the server had closed, and its stack answers each client
segment that still arrives with a reset (RFC 9293 3.10.7.1; Linux numbers these
from another IP-ID counter than the connection's, and sends one per segment, which
looks like a burst arriving soon after the client's last packet); they are the
server's own.

Known false positives: a load balancer or server-side firewall that resets on
the server's behalf has its own TTL and IP-ID and answers quickly, so it looks
injected; a path that changes length in the same instant the server resets.
"""

from __future__ import annotations

from collections import Counter

from ..model import (C2S, S2C, SEG_DIR, SEG_FLAGS, SEG_FRAME, SEG_INPUT, SEG_IPID, SEG_PLEN, SEG_SEQ, SEG_TS, SEG_TTL,
                     Attempt, Finding, Marker)
from ..sources.decode import TCP_ACK, TCP_RST, TCP_SYN
from .base import doc_parts, ev, finding
from .features import handshake_rtt
from .ttl import (IPID_MAX_STEP, TTL_GAP_STRONG, TTL_SLACK, combine, hop_of, initial_ttl, ipid_step, mirrored_hop,
                  place, too_early)

NAME = "rst"

#: The signals this detector reports, and what each means.
SIGNALS = {
    'rst-forged': "a reset from the server's side with two or more independent signs of another sender (race, TTL gap, too early, IP-ID, burst)",
    'rst-suspect': 'a reset with one such sign only',
    'rst-from-server': "a reset whose TTL and IP-ID fit the server's own packets",
    'rst-idle': 'a reset from nearer than the server on the first packet after a long idle period',
}

#: Resets in one injection burst come within this time of each other (NDSS'09: 2 s).
BURST_WINDOW_S = 2.0
#: A connection counts as idle before a packet when nothing crossed it for at least
#: this long and for this many round trips: far beyond think time between requests,
#: the shortest stateful-firewall idle timeouts are seconds (home NAT UDP) to minutes.
IDLE_MIN_S = 1.0
IDLE_RTT_FACTOR = 20


class ResetDetector:
    name = NAME
    detects, false_positives = doc_parts(__doc__)

    def run(self, a: Attempt) -> list[Finding]:
        c = a.tcp
        if c is None:
            return []
        out: list[Finding] = []
        for side in (S2C, C2S):
            resets = [m for m in c.markers if m.kind == "rst" and m.dir == side]
            if resets:
                out.extend(_judge_resets(a, resets, side))
        if any(f.signal == "rst-forged" for f in out):  # one forged side is the verdict; drop the other's "fits"
            out = [f for f in out if f.signal != "rst-from-server"]
        return out


def _judge_resets(a: Attempt, resets: list[Marker], side: int = S2C) -> list[Finding]:
    """Judge the resets claiming to come from ``side`` against that side's own packets.

    From the client's side of the path the resets to look at come "from the
    server"; a capture near the server sees injected resets "from the client".
    """
    c = a.tcp
    rows = c.rows
    who = "server" if side == S2C else "client"
    srv = [r for r in rows if r[SEG_DIR] == side and not r[SEG_FLAGS] & TCP_RST]
    cli = [r for r in rows if r[SEG_DIR] != side] if side == S2C else [r for r in srv if r[SEG_PLEN] > 0]
    first = resets[0]
    inp = first.input
    signals: dict[str, tuple[str, list]] = {}

    # --- what set it off: the client packet just before the first reset
    before = [r for r in cli if r[SEG_TS] <= first.ts]
    if not before:
        return []
    trig = before[-1]
    # the client had reset the connection already: these resets interrupt nothing, whoever sent them
    late = side == S2C and bool(trig[SEG_FLAGS] & TCP_RST)
    trig_ts, trig_frame, trig_ttl = trig[SEG_TS], trig[SEG_FRAME], trig[SEG_TTL]
    trig_is_payload = trig[SEG_PLEN] > 0
    trig_is_syn = (trig[SEG_FLAGS] & (TCP_SYN | TCP_ACK)) == TCP_SYN
    first_payload = c.client_payload_frames[0] if c.client_payload_frames else None
    after_first_payload = first_payload is not None and trig_frame >= first_payload
    server_data_before = any(r[SEG_PLEN] > 0 and r[SEG_TS] < first.ts for r in srv)

    # --- TTL: against the server's packets nearest the reset
    srv_before = [r for r in srv if r[SEG_TS] < first.ts]
    srv_after = [r for r in srv if r[SEG_TS] > first.ts]
    neighbours = [r[SEG_TTL] for r in srv_before[-1:] + srv_after[:1]]
    base = neighbours[0] if neighbours else None
    gap = min(abs(first.ttl - t) for t in neighbours) if neighbours else None
    if gap is not None and gap >= TTL_GAP_STRONG:
        signals["ttl-gap"] = (f"reset TTL {first.ttl}, the {who}'s own packets {'/'.join(map(str, sorted(set(neighbours))))}",
                              [ev(inp, first.frame, "ttl-mismatch", f"RST TTL {first.ttl}, {who} TTL {base}")])
    elif gap == TTL_SLACK:
        signals["ttl-gap-weak"] = (f"reset TTL {first.ttl}, one off the server's {base}",
                                   [ev(inp, first.frame, "ttl-mismatch", f"RST TTL {first.ttl}, {who} TTL {base}")])

    # --- a trigger that could not reach the server: sent with fewer hops of TTL than the server is away
    # (TTL-limited probes, as CenTrace sends): whatever answered it sits within that many hops
    server_hops = hop_of(base) if base is not None else None
    probe_limited = side == S2C and server_hops is not None and trig_ttl < server_hops
    if probe_limited:
        signals["unreachable-trigger"] = (
            f"the client's packet left with TTL {trig_ttl} and could reach hop {trig_ttl} at most, the server is at "
            f"hop {server_hops}", [ev(inp, trig_frame, "trigger", f"client packet with TTL {trig_ttl}")])

    # --- the race: the {who}'s own packets (its TTL) still coming after the reset
    racing = [r for r in srv_after if abs(r[SEG_TTL] - base) <= TTL_SLACK] if base is not None else []
    if gap is not None and gap >= TTL_SLACK and racing:
        r = racing[0]
        what = "data" if r[SEG_PLEN] else ("FIN" if r[SEG_FLAGS] & 0x01 else "ACK")
        signals["race"] = (f"the {who}'s {what} (TTL {r[SEG_TTL]}) still arrived "
                           f"{(r[SEG_TS] - first.ts) * 1000:.1f} ms after the reset",
                           [ev(r[SEG_INPUT], r[SEG_FRAME], "race", f"{who} {what} after the reset, TTL {r[SEG_TTL]}")])

    # --- IP-ID: outside the server's progression, or a value repeated across resets
    if ":" not in a.server.ip:
        ids = [r[SEG_IPID] for r in srv if r[SEG_IPID] > 0]
        rst_ids = [m.ipid for m in resets]
        seq_ok = len(ids) >= 2 and all(0 < ipid_step(p, q) <= IPID_MAX_STEP for p, q in zip(ids, ids[1:]))
        note = ""
        if seq_ok and first.ipid > 0:
            prev = [r[SEG_IPID] for r in srv_before if r[SEG_IPID] > 0]
            nxt = [r[SEG_IPID] for r in srv_after if r[SEG_IPID] > 0]
            fits_prev = bool(prev) and 0 < ipid_step(prev[-1], first.ipid) <= IPID_MAX_STEP
            fits_next = bool(nxt) and 0 < ipid_step(first.ipid, nxt[0]) <= IPID_MAX_STEP
            if not fits_prev and not fits_next:
                note = f"reset IP-ID {first.ipid} is outside the {who}'s sequence ({ids[0]}..{ids[-1]})"
        if not note:
            repeated = [(i, n) for i, n in Counter(rst_ids).most_common() if i > 0 and n >= 2]
            if repeated and len(set(ids)) == len(ids):
                i, n = repeated[0]
                note = f"{n} resets carry the same IP-ID {i}, a repetition the {who}'s own packets never show"
        if not note and first.ipid > 0 and len(srv) >= 2 and not ids:
            note = f"reset IP-ID {first.ipid} where the {who} sends IP-ID 0 in all {len(srv)} of its packets"
        # (a reset with IP-ID 0 proves nothing: Linux sends its own resets with ID 0)
        if note:
            signals["ipid"] = (note, [ev(inp, first.frame, "ipid", note)])

    # --- bursts
    burst = [m for m in resets if m.ts - first.ts <= BURST_WINDOW_S]
    if len(burst) >= 2:
        kinds = {bool(m.flags & TCP_ACK) for m in burst}
        top = _highest_server_seq(srv, first.ts)
        jumps = [m for m in burst[1:] if ((m.seq - first.seq) & 0xFFFFFFFF) > 2
                 and (top is None or ((m.seq - top) & 0xFFFFFFFF) < 0x80000000 and m.seq != top)]
        if kinds == {False, True} or jumps:
            shape = "a RST then RST+ACK" if kinds == {False, True} else "resets whose sequence number jumps"
            signals["burst"] = (f"{len(burst)} resets within {(burst[-1].ts - first.ts) * 1000:.1f} ms ({shape})",
                                [ev(inp, m.frame, "burst", f"RST seq {m.seq}") for m in burst[1:3]])

    # --- timing against the handshake round trip
    rtt = handshake_rtt(c)
    delay = first.ts - trig_ts
    if side == S2C and too_early(delay, rtt):
        signals["early"] = (f"it came {delay * 1000:.1f} ms after the client's packet, the round trip to the "
                            f"server is {rtt * 1000:.1f} ms",
                            [ev(inp, trig_frame, "trigger", "client packet the reset answers")])

    # --- idle: the trigger came after a long silence, and the exchange had already worked
    prior = [r for r in rows if r[SEG_TS] < trig_ts]
    idle = trig_ts - prior[-1][SEG_TS] if prior else 0.0
    idle_limit = max(IDLE_MIN_S, IDLE_RTT_FACTOR * (rtt or 0.0))
    hop = _hop(a, resets, base, trig_ttl)
    if probe_limited:
        est = hop[0][0] if hop[0] is not None and hop[0][0] <= trig_ttl else None
        hop = ((est or trig_ttl, est or 1, trig_ttl, server_hops, "probe"),
               f"; it answered a packet that could go no further than hop {trig_ttl}, so its sender is at hop "
               f"{trig_ttl} or nearer" + (f" (TTL says {est})" if est else ""))
    data = {"hop": hop[0], "rst_ttl": first.ttl, "server_ttl": base, "delay_ms": round(delay * 1000, 2)}
    where = hop[1]
    out: list[Finding] = []
    evidence_rst = [ev(inp, first.frame, "rst", f"RST TTL {first.ttl}, IP-ID {first.ipid}, "
                                                  f"{delay * 1000:.1f} ms after frame {trig_frame}"),
                    ev(trig[SEG_INPUT], trig_frame, "trigger", "the client packet the reset follows")]
    if side == S2C and trig_is_payload and server_data_before and idle >= idle_limit and ("ttl-gap" in signals or "early" in signals):
        detail = (f"after {idle:.1f} s of silence the client's next packet (frame {trig_frame}) was answered by "
                  f"a reset {delay * 1000:.1f} ms later; {signals.get('ttl-gap', signals.get('early'))[0]}{where}")
        out.append(finding(NAME, "rst-idle", 0.8, detail,
                           [ev(inp, trig_frame, "after-idle", f"first packet after {idle:.1f} s idle")] + evidence_rst,
                           trigger="idle", idle_s=round(idle, 2), **data))
        return out

    trigger = "unknown"
    if trig_is_syn and not trig_is_payload:
        trigger = "ip"
    elif after_first_payload:
        trigger = {"tls": "sni", "http": "host"}.get(a.kind, "keyword")
    confidence = combine(signals)
    strong = [k for k in signals if k in ("race", "ttl-gap", "early", "unreachable-trigger")]
    order = ("race", "unreachable-trigger", "ttl-gap", "early", "ipid", "burst", "ttl-gap-weak")
    names = [k for k in order if k in signals]
    reasons = "; ".join(signals[k][0] for k in names)
    ev_all = evidence_rst + [e for k in names for e in signals[k][1]]
    what = f"{len(resets)} reset(s) from the {who}'s side {delay * 1000:.1f} ms after the " \
           f"{'ClientHello' if a.kind == 'tls' and trig_is_payload else 'request' if a.kind == 'http' and trig_is_payload else 'SYN' if trigger == 'ip' else 'client packet'}"
    # two independent signs, at least one of them strong; a weak TTL gap (one hop) never counts as strong
    ttl_fits = gap is not None and gap <= TTL_SLACK
    fits_all = ttl_fits and "ipid" not in signals and "race" not in signals and "early" not in signals
    # after the server's own FIN, a reset with the server's TTL is its stack's: the IP-ID counter and
    # the timing of its answers to late segments are not the connection's (see the docstring). One with
    # another TTL is judged as any other: a box reacting to the response may reset after the FIN.
    closed_by = _server_fin_before(c, first.ts) if side == S2C and ttl_fits and not fits_all else None
    fits = fits_all or closed_by is not None
    late = late or closed_by is not None
    forged = len(strong) >= 2 or (strong and len([k for k in signals if k != "ttl-gap-weak"]) >= 2)
    # after the client's own reset: never forged nor suspect (see the docstring); one that fits is the server's
    if forged and not late:
        out.append(finding(NAME, "rst-forged", confidence, f"{what}: {reasons}{where}", ev_all,
                           trigger=trigger, signals=tuple(names), **data))
    elif signals and not fits and not late:
        out.append(finding(NAME, "rst-suspect", confidence,
                           f"{what}: {reasons}{where}; one signal alone does not prove injection "
                           f"(a route change or a server-side box could explain it)", ev_all,
                           trigger=trigger, signals=tuple(names), **data))
    if side == S2C and fits:
        how = (f"the reset's TTL ({first.ttl}) and IP-ID fit the {who}'s own packets (TTL {base})" if fits_all else
               f"the reset's TTL ({first.ttl}) fits the server's own packets (TTL {base}) and it came after the "
               f"server's own FIN (frame {closed_by.frame}): the server had closed, and its stack answered what "
               f"still arrived")
        out.append(finding(NAME, "rst-from-server", 0.9,
                           f"{how}, {delay * 1000:.1f} ms after the client's packet", evidence_rst + (
                               [ev(inp, srv_before[-1][SEG_FRAME], "server-baseline", f"{who} TTL {base}")]
                               if srv_before else []), **data))
    return out


def _server_fin_before(c, ts: float) -> Marker | None:
    """The server's own FIN before ``ts``, if it sent one: a FIN from the server's side whose
    TTL fits the server's SYN-ACK (a FIN forged on the path has the forger's TTL)."""
    if c.synack is None:
        return None
    return next((m for m in c.markers if m.kind == "fin" and m.dir == S2C and m.ts < ts
                 and abs(m.ttl - c.synack.ttl) <= TTL_SLACK), None)


def _highest_server_seq(srv: list[tuple], ts: float):
    """Where the last of the server's rows before ``ts`` ends in sequence space (None if none)."""
    rows = [r for r in srv if r[SEG_TS] < ts]
    if not rows:
        return None
    return (rows[-1][SEG_SEQ] + rows[-1][SEG_PLEN]) & 0xFFFFFFFF


def _hop(a: Attempt, resets: list[Marker], server_ttl: int | None, trigger_ttl: int):
    """(hop tuple for the report or None, text for the summary), widened when the TTL may be the trigger's copy."""
    hop, why = place([m.ttl for m in resets], server_ttl)
    if hop is None:
        return None, f"; {why}"
    t = resets[0].ttl
    h, _, _, server_hops, _ = hop
    lo = hi = h
    text = f"; TTL {t} (initial {initial_ttl(t)}) places the sender at hop {h}"
    m = mirrored_hop(trigger_ttl, t)
    if m is not None and initial_ttl(t) == initial_ttl(trigger_ttl) and m != h:
        lo, hi = min(m, h), max(m, h)
        text += f", or hop {m} if it copied the trigger's TTL ({trigger_ttl})"
    if server_hops is not None:
        text += f", the server at hop {server_hops}"
    return (h, lo, hi, server_hops, "ttl"), text
