"""Phenomenon checks: does a recorded scenario show, on the wire, what it claims?

``verify(name, directory)`` runs the generic checks (the truth lists exactly the
attempts the captures contain) and the scenario's own check, which asserts the
phenomenon from the packets: forged resets whose TTL differs from the server's
and real data after them, a forged DNS answer before the real one, ClientHellos
retransmitted with no ServerHello, large segments retransmitted while small ones
pass, and so on.  Each check raises ``AssertionError`` naming what is missing.
The tests run these on the committed samples (``pcaps/``) and on live recordings.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections import Counter
from pathlib import Path

from . import packets as P
from . import topology as T
from .capview import Capture, Conn, dns_addresses, dns_rcode

# real answers cross the delayed long-haul link twice after the injector saw the trigger
MIN_RACE_S = 0.9 * 2 * T.DELAY_MS / 1000


def need(cond, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def _cap(d: Path, name: str = "client") -> Capture:
    return Capture(d / f"{name}.pcap")


def check_truth(d: Path) -> None:
    """Every attempt in every capture is in the truth, and nothing else is."""
    truth = json.loads((d / "truth.json").read_text())
    need(truth["attempts"], "truth.json lists no attempts")
    by_cap: dict = {}
    for a in truth["attempts"]:
        need(a["class"] and a["verdict"] and a["trigger"], f"incomplete truth entry {a}")
        by_cap.setdefault(a["capture"], Counter())[
            (a["kind"], a["client"]["ip"], a["server"]["ip"], a["server"]["port"], a["name"])] += 1
    pcaps = sorted(p.name for p in d.glob("*.pcap"))
    need(sorted(by_cap) == pcaps, f"truth covers {sorted(by_cap)}, captures are {pcaps}")
    for cap, want in by_cap.items():
        got = Counter(Capture(d / cap).attempts())
        need(got == want, f"{cap}: attempts in the capture and in the truth differ: "
                          f"only captured {dict(got - want)}, only in truth {dict(want - got)}")


def check_wire(d: Path) -> None:
    """Captures show wire-size frames with correct checksums (no offload artefacts)."""
    for pcap in sorted(d.glob("*.pcap")):
        for p in Capture(pcap).pkts:
            need(len(p.f.raw) <= 1514, f"{pcap.name} #{p.n}: {len(p.f.raw)}-byte frame (offload giant)")
            # (a fragment's transport checksum covers the whole datagram: dns_fragmented checks those)
            if p.f.proto in (P.TCP, P.UDP) and p.f.ip_len <= len(p.f.raw) - 14 and _ip_fragments(p.f.raw) is None:
                need(_l4_checksum_ok(p.f), f"{pcap.name} #{p.n}: bad {p.f.proto} checksum")


def _l4_checksum_ok(f: P.Frame) -> bool:
    ip = f.raw[14 : 14 + f.ip_len]
    if f.version == 4:
        hl = (ip[0] & 0x0F) * 4
        l4 = ip[hl:]
        pseudo = ip[12:20] + bytes([0, f.proto]) + len(l4).to_bytes(2, "big")
        if P.checksum(ip[:hl]) != 0:
            return False
    else:
        l4 = ip[40:]
        pseudo = ip[8:40] + len(l4).to_bytes(4, "big") + bytes([0, 0, 0, f.proto])
    if f.proto == P.UDP and l4[6:8] == b"\0\0" and f.version == 4:
        return True
    return P.checksum(pseudo + l4) == 0


# --- building blocks ------------------------------------------------------------

def forged_resets(c: Conn) -> list:
    """Resets from the server's address whose TTL differs from the server's SYN-ACK."""
    ttl = c.server_ttl()
    return [p for p in c.resets_from_server() if ttl is not None and p.f.ttl != ttl]


def assert_injected(c: Conn, ttl: int | None = None, real_after: bool = True, count: int | None = None) -> list:
    forged = forged_resets(c)
    need(forged, f"{c.server}:{c.sport} from {c.cport}: no reset with a TTL other than the server's")
    if ttl is not None:
        need(all(p.f.ttl == ttl for p in forged), f"forged resets' TTL {[p.f.ttl for p in forged]}, want {ttl}")
    if count is not None:
        need(len(forged) == count, f"{len(forged)} forged resets, want {count}")
    if real_after:
        later = [p for p in c.down() if p.ts >= forged[0].ts + MIN_RACE_S and p.f.ttl == c.server_ttl()]
        need(later, f"{c.server}:{c.sport}: nothing from the real server arrived {MIN_RACE_S}s after the forged reset")
    return forged


def assert_completed(c: Conn) -> None:
    need(c.server_data(), f"{c.server}:{c.sport} ({c.kind_name()[1]}): the server sent no data")
    need(not forged_resets(c), f"{c.server}:{c.sport}: a reset with a foreign TTL")


def assert_blackholed(c: Conn, min_retx: int = 2) -> None:
    first = c.first_payload()
    need(first, f"{c.server}:{c.sport}: the client sent no payload")
    sends = [p for p in c.up() if p.f.payload[:16] == first[:16]]
    need(len(sends) >= 1 + min_retx, f"{c.server}:{c.sport}: first payload sent {len(sends)}x, want retransmissions")
    need(not c.server_data(), f"{c.server}:{c.sport}: the server answered")
    need(not c.resets_from_server(), f"{c.server}:{c.sport}: a reset came back")


def assert_syn_unanswered(c: Conn) -> None:
    need(len(c.up()) >= 2 and all(p.f.flags & P.SYN for p in c.up()), "SYN not retransmitted")
    need(not c.down(), f"{c.server}:{c.sport}: something came back to an unanswered SYN")


def _one(cap: Capture, server: str, port: int, name: str | None = None, i: int = 0) -> Conn:
    cs = cap.conns_to(server, port, name)
    need(len(cs) > i, f"{cap.path.name}: no connection #{i} to {server}:{port} {name or ''}")
    return cs[i]


def _forged_dns(cap: Capture, qname: str, qtype: int, hop_ttl: int | None, count: int = 1) -> None:
    qs = cap.queries_for(qname, qtype)
    need(qs, f"no query for {qname} type {qtype}")
    for q in qs:
        need(len(q.responses) == count + 1, f"{qname}: {len(q.responses)} response(s), want {count} forged + real")
        forged, real = q.responses[:count], q.responses[-1]
        for fake in forged:
            fa = dns_addresses(fake.f.payload)
            need(fa and all(_in_pool(a) for a in fa), f"{qname}: early answer {fa} not from the injector's pool")
            need(hop_ttl is None or fake.f.ttl == hop_ttl, f"{qname}: forged TTL {fake.f.ttl}, want {hop_ttl}")
            need(fake.f.ttl != real.f.ttl, f"{qname}: forged answer has the resolver's TTL")
        ra = dns_addresses(real.f.payload)
        need(ra and not any(_in_pool(a) for a in ra), f"{qname}: last answer {ra} is not the real one")
        need(real.f.ttl == 60, f"{qname}: real answer's TTL {real.f.ttl}, want 60")
        need(real.ts - forged[-1].ts >= MIN_RACE_S, f"{qname}: real answer only {real.ts - forged[-1].ts:.3f}s later")


def _in_pool(addr: str) -> bool:
    return P.in_net(addr, ["198.51.100.0/24", "2001:db8:bad::/64"])


def _clean_dns(cap: Capture, qname: str) -> None:
    for q in cap.queries_for(qname):
        need(len(q.responses) == 1, f"{qname}: {len(q.responses)} responses, want 1")
        need(not any(_in_pool(a) for a in dns_addresses(q.responses[0].f.payload)), f"{qname}: forged answer")


A = T.site_addr


# --- one check per scenario -------------------------------------------------------

def office_filter(d: Path) -> None:
    c = _cap(d)
    for name in ("alice.blogs.example", "bob.blogs.example"):
        conn = _one(c, A(name), 443, name)
        assert_injected(conn, ttl=63, real_after=False)
        need(not conn.server_data(), f"{name}: the server's answer got through an in-path filter")
    assert_blackholed(_one(c, A("alice.blogs.example"), 80, "alice.blogs.example"))
    for port in (443, 80):
        assert_completed(_one(c, A("www.blogs.example"), port, "www.blogs.example"))
    c2 = _cap(d, "client2")
    for name, port in (("www.blogs.example", 443), ("alice.blogs.example", 443), ("alice.blogs.example", 80),
                       ("bob.blogs.example", 443)):
        assert_completed(_one(c2, A(name), port, name))


def transit_injector(d: Path) -> None:
    for capname, ttl in (("client", 62), ("r1-up", 63)):
        c = _cap(d, capname)
        for name in ("www.diary.example", "carol.diary.example"):
            conn = _one(c, A(name), 443, name)
            forged = assert_injected(conn, ttl=ttl, count=4)
            need(forged[0].f.flags == P.RST and all(p.f.flags == P.RST | P.ACK for p in forged[1:]),
                 "pattern is not RST then RST+ACK")
        assert_injected(_one(c, A("www.diary.example", True), 443), ttl=ttl)
        assert_completed(_one(c, A("www.diary.example"), 80))
        assert_completed(_one(c, A("news.example"), 443))
    c2 = _cap(d, "client2")
    for name in ("www.diary.example", "carol.diary.example"):
        assert_completed(_one(c2, A(name), 443, name))


def rst_injector(d: Path) -> None:
    c = _cap(d)
    for i in (0, 1):
        conn = _one(c, A("video.example"), 443, "video.example", i)
        forged = assert_injected(conn, ttl=126, count=4)
        need(all(p.f.ipid == 13330 for p in forged), "IP-ID is not the fixed 13330")
        base = forged[0].f.seq
        need([p.f.seq - base for p in forged] == [0, 0, 1460, 4380], "seq offsets are not 0/0/1460/4380")
        need(any(p.f.payload for p in conn.down() if p.ts > forged[0].ts), "the real ServerHello did not arrive after")
    assert_completed(_one(c, A("img.video.example"), 443, "img.video.example"))
    assert_completed(_one(c, A("video.example"), 80))


def rst_keyword(d: Path) -> None:
    c = _cap(d)
    conns = [x for x in c.conns_to(A("search.example"), 80) if b"forbidden" in x.first_payload()]
    need(len(conns) == 2, f"{len(conns)} keyword connections, want 2")
    for conn in conns:
        forged = assert_injected(conn, count=3)
        need(len({(p.f.seq, p.f.ack, p.f.flags) for p in forged}) == 1, "the three resets are not identical")
        need(len({p.f.ipid for p in forged}) == 3, "IP-IDs are not random")
    ok = [x for x in c.conns_to(A("search.example"), 80) if b"forbidden" not in x.first_payload()]
    assert_completed(ok[0])
    assert_completed(_one(c, A("search.example"), 443))


def rst_injector_v6(d: Path) -> None:
    c = _cap(d)
    v6 = A("video.example", True)
    for conn in c.conns_to(v6, 443, "video.example"):
        need(conn.client == T.C1_6, "not IPv6")
        assert_injected(conn, ttl=62, count=1)
    assert_completed(_one(c, v6, 443, "img.video.example"))
    assert_completed(_one(c, A("news.example", True), 443))


def _dns_injector(d: Path, v6: bool) -> None:
    c = _cap(d)
    for qname, qtype in (("www.diary.example", 1), ("www.diary.example", 28), ("video.example", 28 if v6 else 1)):
        _forged_dns(c, qname, qtype, hop_ttl=62)
        need(all((":" in q.pkt.f.dst) == v6 for q in c.queries_for(qname)), "wrong transport family")
    for qname in ("news.example", "shop.example"):
        _clean_dns(c, qname)
    assert_completed(_one(c, A("shop.example", v6), 443))


def dns_injector(d: Path) -> None:
    _dns_injector(d, False)


def dns_injector_v6(d: Path) -> None:
    _dns_injector(d, True)


def dns_injector_double(d: Path) -> None:
    c = _cap(d)
    for qname, qtype in (("video.example", 1), ("alice.blogs.example", 1), ("alice.blogs.example", 28)):
        _forged_dns(c, qname, qtype, hop_ttl=None, count=2)
        q = c.queries_for(qname, qtype)[0]
        need(q.responses[0].f.ipid != q.responses[1].f.ipid, "the two forged answers share an IP-ID")
    _clean_dns(c, "news.example")
    assert_completed(_one(c, A("shop.example"), 443))


def blockpage_redirect(d: Path) -> None:
    c = _cap(d)
    conns = c.conns_to(A("www.diary.example"), 80)
    need(len(conns) == 2, "want two HTTP connections to the diary platform")
    for conn in conns:
        data = conn.server_data()
        need(data and data[0].f.payload.startswith(b"HTTP/1.1 302") and b"Location: http://blocked.example/"
             in data[0].f.payload and not data[0].f.flags & P.FIN, "the first response is not a 302 without FIN")
        fin = [p for p in conn.down() if p.f.flags & P.FIN]
        need(fin and fin[0].ts >= data[0].ts and fin[0].f.ttl == 254, "no separate FIN from the box (TTL 254)")
        need(data[0].f.ttl == 254 and conn.server_ttl() == 60, "forged redirect TTL should be 254, server's 60")
        real = [p for p in data if p.f.payload.startswith(b"HTTP/1.1 200")]
        need(real and real[0].ts - data[0].ts >= MIN_RACE_S, "the real response did not arrive after the redirect")
    assert_completed(_one(c, A("news.example"), 80))
    assert_completed(_one(c, A("www.diary.example"), 443))


def blockpage_injector(d: Path) -> None:
    c = _cap(d)
    conns = c.conns_to(A("shop.example"), 80)
    need(len(conns) == 2, "want two HTTP connections to shop.example")
    for conn in conns:
        data = conn.server_data()
        need(data and data[0].f.payload.startswith(b"HTTP/1.1 403") and data[0].f.flags & P.FIN,
             "the first response is not a 403 with FIN")
        need(data[0].f.ttl == 62 and conn.server_ttl() == 60, "forged page TTL should be 62, server's 60")
        real = [p for p in data if p.f.payload.startswith(b"HTTP/1.1 200")]
        need(real and real[0].ts - data[0].ts >= MIN_RACE_S, "the real response did not arrive after the page")
    assert_completed(_one(c, A("news.example"), 80))
    assert_completed(_one(c, A("shop.example"), 443))


def front_box(d: Path) -> None:
    c = _cap(d)
    diary = A("www.diary.example")
    split = [x for x in c.conns if not (x.server == diary and x.sport == 80)]
    need(len(split) >= 6, f"want six connections through the front box, got {len(split)}")
    for conn in split:
        assert_completed(conn)
        need(conn.server_ttl() == 252, f"{conn.server}:{conn.sport}: SYN-ACK TTL {conn.server_ttl()}, want the "
                                       f"front box's 252")
        data = conn.server_data()
        need(all(p.f.ttl == 60 for p in data), f"{conn.server}:{conn.sport}: data not from the server (TTL 60)")
        fin = [p for p in conn.down() if p.f.flags & P.FIN]
        need(fin and fin[0].f.ttl == 252, f"{conn.server}:{conn.sport}: no FIN from the front box (TTL 252)")
        end = max((p.f.seq + len(p.f.payload)) & 0xFFFFFFFF for p in data)
        need(fin[0].f.seq == end, f"{conn.server}:{conn.sport}: the front box's FIN does not continue the data")
    page = _one(c, diary, 80)
    data = page.server_data()
    need(data and data[0].f.payload.startswith(b"HTTP/1.1 403") and data[0].f.ttl == 63,
         "the first response to the diary is not the injector's 403 (TTL 63)")
    real = [p for p in data if p.f.payload.startswith(b"HTTP/1.1 200")]
    need(real and real[0].f.ttl == 60 and real[0].ts - data[0].ts >= MIN_RACE_S,
         "the real response did not arrive after the page")


def sni_drop(d: Path) -> None:
    c = _cap(d)
    for i in (0, 1):
        assert_blackholed(_one(c, A("video.example"), 443, "video.example", i))
    assert_completed(_one(c, A("video.example"), 443, "img.video.example"))
    assert_completed(_one(c, A("video.example"), 80))


def host_drop(d: Path) -> None:
    c = _cap(d)
    for i in (0, 1):
        assert_blackholed(_one(c, A("video.example"), 80, "video.example", i))
    assert_completed(_one(c, A("video.example"), 80, "img.video.example"))
    assert_completed(_one(c, A("video.example"), 443))


def ip_block_drop(d: Path) -> None:
    c = _cap(d)
    for ip, port in ((A("archive.example"), 443), (A("archive.example"), 80), (A("archive.example", True), 443)):
        assert_syn_unanswered(_one(c, ip, port))
    need(not c.icmp, "ICMP errors in a silent-drop capture")
    assert_completed(_one(c, A("news.example"), 443))


def ip_block_prohibited(d: Path) -> None:
    c = _cap(d)
    codes = Counter((p.f.src, p.f.ttl, p.f.payload[0], p.f.payload[1]) for p in c.icmp)
    need(codes[("192.0.2.130", 63, 3, 13)] >= 2, f"no ICMP admin-prohibited from r2 (TTL 63): {codes}")
    need(codes[("2001:db8:1:12::2", 63, 1, 1)] >= 1, f"no ICMPv6 admin-prohibited from r2: {codes}")
    for ip, port in ((A("archive.example"), 443), (A("archive.example"), 80), (A("archive.example", True), 443)):
        conn = _one(c, ip, port)
        need(not conn.down(), "the blocked server answered")
    assert_completed(_one(c, A("news.example"), 443))


def pmtu_blackhole(d: Path) -> None:
    c = _cap(d)
    conns = [x for x in c.conns_to(A("files.example"), 80) if x.first_payload().startswith(b"POST")]
    need(len(conns) == 2, "want two POSTs")
    big, small = sorted(conns, key=lambda x: -sum(len(p.f.payload) for p in x.up()))
    large = Counter(p.f.seq for p in big.up() if len(p.f.payload) > 1240)
    need(large and max(large.values()) >= 3, "large segments were not retransmitted")
    tails = [p.f.seq + len(p.f.payload) for p in big.up() if 0 < len(p.f.payload) <= 1240]
    acked = [p for p in big.down() if any(_sack_covers(p, t) for t in tails)]
    need(tails and acked, "the small segment was not acknowledged (SACK) while the large ones vanished")
    need(not big.server_data(), "the big upload got an answer")
    need(not c.icmp, "an ICMP error reached the client")
    assert_completed(small)
    for conn in c.conns_to(A("files.example"), 80):
        if conn.first_payload().startswith(b"GET"):
            assert_completed(conn)


def _sack_covers(p, edge: int) -> bool:
    return p.f.ack >= edge or str(edge) in _sack_blocks(p)


def _tcp_header(p) -> tuple[int, list[tuple[int, bytes]]]:
    """A TCP packet's raw window field and its options in order, NOPs included: (kind, data)."""
    raw = p.f.raw
    ip_off = 14 + (40 if p.f.version == 6 else (raw[14] & 0x0F) * 4)
    off = (raw[ip_off + 12] >> 4) * 4
    window = int.from_bytes(raw[ip_off + 14 : ip_off + 16], "big")
    opts, i, out = raw[ip_off + 20 : ip_off + off], 0, []
    while i < len(opts):
        kind = opts[i]
        if kind in (0, 1):
            out.append((kind, b""))
            i += 1
            continue
        ln = opts[i + 1] if i + 1 < len(opts) else 0
        out.append((kind, opts[i + 2 : i + ln]))
        i += max(ln, 2)
    return window, out


def _sack_blocks(p) -> list[str]:
    return [str(int.from_bytes(data[j + 4 : j + 8], "big"))
            for kind, data in _tcp_header(p)[1] if kind == 5 for j in range(0, len(data), 8)]



def _tcp_window_and_kinds(p) -> tuple[int, list[int]]:
    """The raw window field and the option kinds, NOPs included, of a TCP packet."""
    window, opts = _tcp_header(p)
    return window, [kind for kind, _ in opts]


def option_stripping(d: Path) -> None:
    c, c2 = _cap(d), _cap(d, "client2")
    WSCALE = 3
    six = c.conns_to(A("shop.example", True), 80)
    need(len(six) == 1, "want one IPv6 upload")
    for conn in c.conns_to(A("news.example")) + c.conns_to(A("shop.example")) + six:
        syn, sa = conn.up()[0], conn.synack()
        need(sa is not None, f"{conn.server}:{conn.sport}: no SYN-ACK")
        need(WSCALE in _tcp_window_and_kinds(syn)[1], "c1's SYN offers no window scale")
        kinds = _tcp_window_and_kinds(sa)[1]
        need(WSCALE not in kinds, "a SYN-ACK reached c1 with its window scale")
        need(b"\x01\x01\x01\x01" in bytes(kinds), "no run of NOPs where the window scale was")
    posts = [x for x in c.conns_to(A("news.example"), 80) if x.first_payload().startswith(b"POST")]
    need(len(posts) == 2, "want two POSTs from c1")
    small, big = sorted(posts, key=lambda x: sum(len(p.f.payload) for p in x.up()))
    offer = _tcp_window_and_kinds(big.synack())[0]
    later = [_tcp_window_and_kinds(p)[0] for p in big.down() if not p.f.flags & P.SYN]
    need(later and max(later) * 16 <= offer, f"the server's windows {later[:5]} are not far below its offer {offer}")
    crawl = [p for p in big.up() if 0 < len(p.f.payload) <= max(later)]
    need(len(crawl) >= 5, "the client did not send into the tiny windows")
    need(not big.server_data(), "the big upload got an answer")
    need(not six[0].server_data(), "the big IPv6 upload got an answer")
    assert_completed(small)
    for conn in c.conns_to(A("news.example"), 80) + c.conns_to(A("shop.example"), 443):
        if conn is not big:
            assert_completed(conn)
    (ctrl,) = c2.conns_to(A("news.example"), 80)
    need(WSCALE in _tcp_window_and_kinds(ctrl.synack())[1], "c2's SYN-ACK lost its window scale too")
    need(sum(len(p.f.payload) for p in ctrl.up()) > 100000, "c2 did not upload it all")
    assert_completed(ctrl)

def ecn_blackhole(d: Path) -> None:
    c = _cap(d)
    news, shop = c.conns_to(A("news.example"), 80), c.conns_to(A("shop.example"), 80)
    need(len(news) == 2 and len(shop) == 2, "want two connections to each of news and shop")
    ecn_syn = P.SYN | P.ECE | P.CWR
    dead = news[0]
    need(all(p.f.flags == ecn_syn for p in dead.up()) and len(dead.up()) >= 2, "ECN SYNs not retransmitted")
    need(not dead.down(), "an ECN SYN was answered")
    assert_completed(news[1])
    need(news[1].up()[0].f.flags == P.SYN, "the control SYN asks for ECN")
    fb = shop[0]
    syns = [p for p in fb.up() if p.f.flags & P.SYN]
    need(syns[0].f.flags == ecn_syn and syns[-1].f.flags == P.SYN, "fallback: ECN SYN then plain SYN expected")
    need(fb.synack() and fb.synack().ts > syns[-1].ts, "the plain SYN was not the one answered")
    assert_completed(fb)


def idle_timeout_reset(d: Path) -> None:
    c = _cap(d)
    conns = c.conns_to(A("news.example"), 80)
    need(len(conns) == 2, "want two keep-alive connections")
    reset, ok = conns
    req2 = [p for p in reset.up() if p.f.payload.startswith(b"GET /again")]
    need(req2, "no second request")
    before = [p for p in reset.pkts if p.ts < req2[0].ts]
    need(req2[0].ts - before[-1].ts >= 2.0, "no idle gap before the second request")
    forged = assert_injected(reset, ttl=63, count=1, real_after=False)
    need(forged[0].ts - req2[0].ts < MIN_RACE_S, "the reset came later than an on-path box at hop 2 could send it")
    assert_completed(ok)
    need(len([p for p in ok.server_data() if p.f.payload.startswith(b"HTTP/1.1 200")]) == 2, "control lost an answer")


def tls_intolerance(d: Path) -> None:
    c = _cap(d)
    for name in ("news.example", "shop.example"):
        conns = c.conns_to(A(name), 443, name)
        big = [x for x in conns if P.tls_client_hello(x.first_payload())[2] > len(x.first_payload())]
        small = [x for x in conns if x not in big]
        need(big and small, f"{name}: want big and small ClientHellos")
        for conn in big:
            need(P.tls_client_hello(conn.first_payload())[2] > 1460, "the big ClientHello fits in one segment")
            assert_blackholed(conn)
        for conn in small:
            assert_completed(conn)


def benign_browsing(d: Path) -> None:
    for capname in ("client", "client2"):
        c = _cap(d, capname)
        for conn in c.conns:
            assert_completed(conn)
        for q in c.queries:
            need(len(q.responses) == 1, f"{q.qname}: {len(q.responses)} responses")
    c = _cap(d)
    aborted = [x for x in c.conns_to(A("shop.example"), 80)]
    need(aborted and any(p.f.flags & P.RST for p in aborted[0].up()), "the client abort sent no RST")
    nx = c.queries_for("nosuch.example")
    need(nx and dns_rcode(nx[0].responses[0].f.payload) == 3, "NXDOMAIN missing")


def benign_failures(d: Path) -> None:
    c = _cap(d)
    news = A("news.example")
    for ip in (news, A("news.example", True)):
        refused = _one(c, ip, 8443)
        rst = refused.resets_from_server()
        need(rst and rst[0].f.flags & P.ACK and rst[0].f.ttl == 60, "no kernel RST+ACK (TTL 60) to the SYN")
    reset = _one(c, news, 8081)
    need(reset.server_ttl() == 60 and [p.f.ttl for p in reset.resets_from_server()] == [60],
         "the server's own reset (TTL 60) is missing")
    silent = _one(c, news, 8082)
    need(not silent.server_data() and not silent.resets_from_server(), "the silent server answered")
    need(any(p.f.flags & P.FIN for p in silent.up()), "the client did not give up with FIN")
    for qtype in (1, 28):
        q = c.queries_for("broken.example", qtype)
        need(q and dns_rcode(q[0].responses[0].f.payload) == 2, "SERVFAIL missing")
    assert_completed(_one(c, news, 443))


def benign_closed_server(d: Path) -> None:
    c = _cap(d)
    for v6 in (False, True):
        ip = A("news.example", v6)
        late = [x for x in c.conns_to(ip, 80) if x.first_payload().startswith(b"GET / ") and
                any(p.f.payload.startswith(b"late ") for p in x.up())]
        need(len(late) == 1, f"{ip}: want one connection that writes after the server closed, got {len(late)}")
        conn = late[0]
        fin = next((p for p in conn.down() if p.f.flags & P.FIN), None)
        need(fin is not None and fin.f.ttl == conn.server_ttl(), f"{ip}: no FIN from the server itself")
        after = [p for p in conn.up() if p.ts > fin.ts and p.f.payload.startswith(b"late ")]
        resets = conn.resets_from_server()
        need(len(after) >= 2 and len(resets) >= 2, f"{ip}: {len(after)} late segments, {len(resets)} resets")
        need(all(r.ts > fin.ts and r.f.ttl == conn.server_ttl() for r in resets),
             f"{ip}: resets before the FIN or with another TTL than the server's")
        need(all(r.f.seq == after[0].f.ack for r in resets), f"{ip}: resets not at the late segments' ACK")
        # sooner after the client's last segment than half the round trip (2 x DELAY_MS): what
        # the reset detector counts as "too early" for a reply from the server
        last_before = [p for p in after if p.ts < resets[0].ts]
        need(last_before and resets[0].ts - last_before[-1].ts < T.DELAY_MS / 1000,
             f"{ip}: the first reset came half a round trip or more after the client's last segment")
        need(any(p.f.payload.startswith(b"HTTP/1.1 200") for p in conn.server_data()), f"{ip}: no answer")
    assert_completed(_one(c, A("news.example"), 80, "news.example", 1))


def _ip_fragments(raw: bytes) -> tuple | None:
    """(source, identification, offset, more) of an Ethernet frame carrying an IP fragment, else None."""
    if len(raw) < 14 + 40:
        return None
    et, ip = struct.unpack("!H", raw[12:14])[0], raw[14:]
    if et == 0x0800:
        fo = struct.unpack("!H", ip[6:8])[0]
        if fo & 0x3FFF:
            return str(ipaddress.IPv4Address(ip[12:16])), struct.unpack("!H", ip[4:6])[0], (fo & 0x1FFF) * 8, bool(fo & 0x2000)
    elif et == 0x86DD and ip[6] == 44:
        fo, ident = struct.unpack("!HI", ip[42:48])
        return str(ipaddress.IPv6Address(ip[8:24])), ident, fo & 0xFFF8, bool(fo & 1)
    return None


def _by_ident(pkts: list) -> list[list]:
    """IPv6 fragments grouped by datagram (scapy's defragment6 takes one datagram's)."""
    out: dict[tuple, list] = {}
    for p in pkts:
        out.setdefault((p["IPv6"].src, p["IPv6ExtHdrFragment"].id), []).append(p)
    return list(out.values())


def dns_fragmented(d: Path) -> None:
    from scapy.layers.dns import DNS
    from scapy.layers.inet import defragment
    from scapy.layers.inet6 import defragment6
    from scapy.utils import rdpcap

    c = _cap(d)
    frags: dict[tuple, list] = {}
    for p in c.pkts:
        got = _ip_fragments(p.f.raw)
        if got:
            frags.setdefault(got[:2], []).append(got[2:])
    resolvers = {T.RESOLVER, T.RESOLVER_6}
    need(sorted(src for src, _ in frags) == sorted(resolvers),
         f"want one fragmented answer from each resolver address, got {sorted(frags)}")
    for key, pieces in frags.items():
        need(len(pieces) >= 2 and (0, True) in pieces and any(o and not m for o, m in pieces),
             f"{key}: not a whole train of fragments ({pieces})")
    # scapy's own reassembly, independent of the analyser: each answer holds the whole pool
    pkts = rdpcap(str(d / "client.pcap"))
    v4 = list(defragment([p for p in pkts if p.haslayer("IP")]))
    v6 = [defragment6(list(g)) for g in _by_ident([p for p in pkts if p.haslayer("IPv6ExtHdrFragment")])]
    whole = [q for q in v4 + v6 if q.haslayer(DNS) and q[DNS].qr]
    pool = T.POOL_NAMES["pool.example"]
    counts = sorted(q[DNS].ancount for q in whole if q[DNS].qd and q[DNS].qd[0].qname == b"pool.example.")
    need(counts == [pool, pool], f"pool.example answers reassembled by scapy hold {counts} records, want {pool} each")
    _clean_dns(c, "news.example")


def mixed_path(d: Path) -> None:
    c = _cap(d)
    for i in (0, 1):
        assert_blackholed(_one(c, A("video.example"), 443, "video.example", i))
    assert_completed(_one(c, A("video.example"), 443, "img.video.example"))
    conn = _one(c, A("www.diary.example"), 443, "www.diary.example")
    assert_injected(conn, ttl=126)
    assert_completed(_one(c, A("www.diary.example"), 80))
    posts = [x for x in c.conns_to(A("files.example"), 80) if x.first_payload().startswith(b"POST")]
    need(len(posts) == 2, "want two POSTs")
    big, small = sorted(posts, key=lambda x: -sum(len(p.f.payload) for p in x.up()))
    large = Counter(p.f.seq for p in big.up() if len(p.f.payload) > 1240)
    need(large and max(large.values()) >= 3, "large segments were not retransmitted")
    need(not big.server_data(), "the big upload got an answer")
    assert_completed(small)


CHECKS = {
    "mixed-path": mixed_path,
    "office-filter": office_filter, "transit-injector": transit_injector, "rst-injector": rst_injector,
    "rst-keyword": rst_keyword, "rst-injector-v6": rst_injector_v6, "dns-injector": dns_injector,
    "dns-injector-v6": dns_injector_v6, "dns-injector-double": dns_injector_double,
    "blockpage-injector": blockpage_injector, "blockpage-redirect": blockpage_redirect, "front-box": front_box,
    "sni-drop": sni_drop,
    "host-drop": host_drop, "ip-block-drop": ip_block_drop, "ip-block-prohibited": ip_block_prohibited,
    "pmtu-blackhole": pmtu_blackhole, "ecn-blackhole": ecn_blackhole, "idle-timeout-reset": idle_timeout_reset,
    "tls-intolerance": tls_intolerance, "benign-browsing": benign_browsing, "benign-failures": benign_failures,
    "benign-closed-server": benign_closed_server, "dns-fragmented": dns_fragmented,
    "option-stripping": option_stripping,
}


def verify(name: str, directory: str | Path) -> None:
    d = Path(directory)
    need(name in CHECKS, f"scenario {name} has no phenomenon check in forensics/lab/verify.py")
    check_truth(d)
    check_wire(d)
    CHECKS[name](d)

