"""The lab's scenarios, each a definition from which both the traffic and the truth follow.

Hops are counted from c1 (r1 = 1 ... servers = 5); ``T.HOP_LINK[k]`` is the link a
wire device at hop k sits on.  Names: ``*.blogs.example`` is a blog platform whose
home is ``www.blogs.example`` (another address); ``*.diary.example`` is a second
blog platform; ``news``, ``shop``, ``video``, ``archive``, ``files``, ``search``
``.example`` are ordinary sites; ``broken.example`` makes the resolver SERVFAIL.
The DNS injectors forge from ``198.51.100.0/24`` / ``2001:db8:bad::/64`` only.
"""

from __future__ import annotations

from . import topology as T
from .scenario import Expect, Scenario, http, https, lookup, py

HOP = T.HOP_LINK
ECN_ON = ["net.ipv4.tcp_ecn=1", "net.ipv4.tcp_ecn_fallback=0"]
ECN_ON_FALLBACK = ["net.ipv4.tcp_ecn=1", "net.ipv4.tcp_ecn_fallback=1"]
ECN_OFF = ["net.ipv4.tcp_ecn=0", "net.ipv4.tcp_ecn_fallback=1"]
FIXED64, ZERO = {"mode": "fixed", "value": 64}, {"mode": "zero"}


def _browse(node: str, name: str, v6: bool = False, tool: str = "curl"):
    """Normal traffic: a lookup, then the page."""
    return [lookup(node, name, "AAAA" if v6 else "A", v6=v6), https(node, name, v6=v6, tool=tool)]


def office_filter() -> Scenario:
    fw = {"sni": ["*.blogs.example"], "exclude": ["www.blogs.example"], "inpath": True,
          "direction": "both", "pattern": "single", "ttl": FIXED64, "ipid": ZERO}
    rst, drop = Expect("injected-rst", "sni", 2), Expect("host-drop", "host")
    return Scenario(
        "office-filter",
        "An office firewall at hop 2 resets TLS to *.blogs.example by SNI and drops plain-HTTP requests "
        "for them by Host, while the platform's home page loads; c2, through another ISP, loads everything.",
        wire=[(HOP[2], "rst-injector", fw),
              (HOP[2], "dropper", {"host": ["*.blogs.example"], "exclude": ["www.blogs.example"]})],
        captures=["client", "client2"],
        steps=_browse("c1", "www.blogs.example") + [
            http("c1", "www.blogs.example"),
            lookup("c1", "alice.blogs.example"),
            https("c1", "alice.blogs.example", expect=rst),
            http("c1", "alice.blogs.example", expect=drop),
            https("c1", "bob.blogs.example", tool="openssl", expect=rst),
            *_browse("c1", "news.example"),
            *_browse("c2", "www.blogs.example"),
            https("c2", "alice.blogs.example"),
            http("c2", "alice.blogs.example"),
            https("c2", "bob.blogs.example", tool="openssl"),
        ])


def transit_injector() -> Scenario:
    inj = {"sni": ["*.diary.example"], "direction": "both", "pattern": "rst-rstack",
           "ttl": FIXED64, "ipid": {"mode": "random"}}
    rst = Expect("injected-rst", "sni", 3)
    return Scenario(
        "transit-injector",
        "An upstream operator three hops out (r3) injects resets for *.diary.example's SNI; c1 behind it is cut "
        "off, c2 through an independent ISP is not. Captured at c1, at r1's upstream side and at c2.",
        wire=[(HOP[3], "rst-injector", inj)],
        captures=["client", "r1-up", "client2"],
        steps=[
            lookup("c1", "www.diary.example"),
            https("c1", "www.diary.example", expect=rst),
            https("c1", "carol.diary.example", tool="openssl", expect=rst),
            http("c1", "www.diary.example"),
            *_browse("c1", "news.example"),
            https("c1", "www.diary.example", v6=True, expect=rst),
            lookup("c2", "www.diary.example"),
            https("c2", "www.diary.example"),
            https("c2", "carol.diary.example", tool="openssl"),
        ])


def rst_injector_sni() -> Scenario:
    inj = {"sni": ["video.example"], "direction": "client", "pattern": "rst-rstack", "offsets": [0, 1460, 4380],
           "ttl": {"mode": "fixed", "value": 128}, "ipid": {"mode": "fixed", "value": 13330}}
    rst = Expect("injected-rst", "sni", 3)
    return Scenario(
        "rst-injector",
        "On-path injector at hop 3 on SNI video.example: one RST then three RST+ACK at seq +0/+1460/+4380, "
        "initial TTL 128, fixed IP-ID; resets go to the client only, so the server's real answer still arrives.",
        wire=[(HOP[3], "rst-injector", inj)],
        steps=[*_browse("c1", "news.example"), lookup("c1", "video.example"),
               https("c1", "video.example", expect=rst), https("c1", "video.example", tool="python", expect=rst),
               https("c1", "img.video.example"), http("c1", "video.example")])


def rst_injector_keyword() -> Scenario:
    inj = {"keyword": ["forbidden"], "direction": "both", "pattern": "repeat", "count": 3,
           "ttl": {"mode": "copy"}, "ipid": {"mode": "random"}}
    return Scenario(
        "rst-keyword",
        "On-path injector at hop 2 on the keyword 'forbidden' in HTTP requests: three identical RST+ACK both ways, "
        "TTL copied from the trigger (so it cannot be placed by TTL), random IP-ID.",
        wire=[(HOP[2], "rst-injector", inj)],
        steps=[lookup("c1", "search.example"), http("c1", "search.example", "/?q=weather"),
               http("c1", "search.example", "/?q=forbidden+topic", expect=Expect("injected-rst", "keyword")),
               http("c1", "search.example", "/forbidden", expect=Expect("injected-rst", "keyword")),
               https("c1", "search.example")])


def rst_injector_v6() -> Scenario:
    inj = {"sni": ["video.example"], "direction": "both", "pattern": "single", "ttl": FIXED64}
    rst = Expect("injected-rst", "sni", 3)
    return Scenario(
        "rst-injector-v6",
        "On-path RST injector at hop 3 on SNI video.example over IPv6 (hop limit 64), resets both ways.",
        wire=[(HOP[3], "rst-injector", inj)],
        steps=[*_browse("c1", "news.example", v6=True), lookup("c1", "video.example", "AAAA", v6=True),
               https("c1", "video.example", v6=True, expect=rst),
               https("c1", "video.example", v6=True, tool="openssl", expect=rst),
               https("c1", "img.video.example", v6=True)])


def dns_injector(v6: bool = False) -> Scenario:
    inj = {"names": ["*.diary.example", "video.example"], "pool4": T.FORGED_POOL4, "pool6": T.FORGED_POOL6,
           "answer_ttl": {"mode": "fixed", "value": 3600}, "ttl": FIXED64, "ipid": ZERO}
    forged = Expect("forged-dns", "dns-qname", 3)
    fam = "IPv6" if v6 else "IPv4"
    return Scenario(
        "dns-injector-v6" if v6 else "dns-injector",
        f"On-path DNS injector at hop 3 answers queries for *.diary.example and video.example over {fam} with "
        "addresses from 198.51.100.0/24 / 2001:db8:bad::/64 (TTL 3600); the real answer arrives ~40 ms later.",
        wire=[(HOP[3], "dns-injector", inj)],
        steps=[lookup("c1", "news.example", "AAAA" if v6 else "A", v6=v6),
               lookup("c1", "www.diary.example", "A", v6=v6, expect=forged),
               lookup("c1", "www.diary.example", "AAAA", v6=v6, expect=forged),
               lookup("c1", "video.example", "AAAA" if v6 else "A", v6=v6, expect=forged),
               lookup("c1", "shop.example", "A", v6=v6),
               https("c1", "shop.example", v6=v6)])


def blockpage() -> Scenario:
    inj = {"host": ["shop.example"], "status": 403, "ttl": FIXED64, "ipid": ZERO}
    return Scenario(
        "blockpage-injector",
        "On-path injector at hop 3 answers HTTP requests for shop.example with a forged 403 page plus FIN, "
        "racing the real response (which arrives ~40 ms later); HTTPS to the same site passes.",
        wire=[(HOP[3], "blockpage-injector", inj)],
        steps=[*_browse("c1", "news.example"), lookup("c1", "shop.example"),
               http("c1", "shop.example", expect=Expect("injected-blockpage", "host", 3)),
               http("c1", "shop.example", "/cart", expect=Expect("injected-blockpage", "host", 3)),
               http("c1", "news.example"), https("c1", "shop.example")])


def blockpage_redirect() -> Scenario:
    inj = {"host": ["*.diary.example"], "status": 302, "location": "http://blocked.example/", "fin_separate": True,
           "ttl": {"mode": "fixed", "value": 255}, "ipid": {"mode": "random"}}
    page = Expect("injected-blockpage", "host", 2)
    return Scenario(
        "blockpage-redirect",
        "An ISP box at hop 2 answers HTTP requests for *.diary.example with a forged 302 redirect to a block page, "
        "then a separate FIN (initial TTL 255, random IP-ID); the real response arrives ~40 ms later.",
        wire=[(HOP[2], "blockpage-injector", inj)],
        steps=[lookup("c1", "www.diary.example"), http("c1", "www.diary.example", expect=page),
               http("c1", "news.example"), http("c1", "dan.diary.example", "/post/1", expect=page),
               https("c1", "www.diary.example")])


def front_box() -> Scenario:
    inj = {"host": ["*.diary.example"], "status": 403, "ttl": FIXED64, "ipid": {"mode": "random"}}
    page = Expect("injected-blockpage", "host", 2)
    return Scenario(
        "front-box",
        "The sites sit behind a load balancer at hop 4 that answers the handshake and the close itself (initial "
        "TTL 255, its own IP-ID counter) while the data comes from the servers: two TTLs in every connection, "
        "nothing forged. A block-page injector at hop 2 answers HTTP for *.diary.example, racing the real page.",
        wire=[(HOP[4], "front-box", {}), (HOP[2], "blockpage-injector", inj)],
        steps=[*_browse("c1", "shop.example"), http("c1", "shop.example"), http("c1", "news.example", "/big"),
               https("c1", "news.example", v6=True), http("c1", "video.example", v6=True),
               lookup("c1", "www.diary.example"), http("c1", "www.diary.example", expect=page),
               https("c1", "www.diary.example")])


def dns_injector_double() -> Scenario:
    inj = {"names": ["video.example", "*.blogs.example"], "pool4": T.FORGED_POOL4, "pool6": T.FORGED_POOL6,
           "count": 2, "answer_ttl": {"mode": "random", "low": 60, "high": 300},
           "ttl": {"mode": "random", "low": 40, "high": 250}, "ipid": {"mode": "random"}}
    forged = Expect("forged-dns", "dns-qname")  # random IP TTL: not placeable by TTL
    return Scenario(
        "dns-injector-double",
        "A DNS injector at hop 2 sends two forged answers per query (random IP TTL and IP-ID, random record TTL) "
        "for video.example and *.blogs.example; the real answer arrives ~40 ms later.",
        wire=[(HOP[2], "dns-injector", inj)],
        steps=[lookup("c1", "video.example", expect=forged), lookup("c1", "alice.blogs.example", expect=forged),
               lookup("c1", "alice.blogs.example", "AAAA", expect=forged), lookup("c1", "news.example"),
               *_browse("c1", "shop.example")])


def sni_drop() -> Scenario:
    drop = Expect("sni-drop", "sni")
    return Scenario(
        "sni-drop",
        "In-path DPI at hop 2 blackholes TLS connections whose SNI is video.example (the ClientHello and "
        "everything after it vanish); img.video.example on the same address passes, as does plain HTTP.",
        wire=[(HOP[2], "dropper", {"sni": ["video.example"]})],
        steps=[*_browse("c1", "news.example"), lookup("c1", "video.example"),
               https("c1", "video.example", expect=drop), https("c1", "img.video.example"),
               https("c1", "video.example", tool="python", expect=drop), http("c1", "video.example")])


def host_drop() -> Scenario:
    drop = Expect("host-drop", "host")
    return Scenario(
        "host-drop",
        "In-path DPI at hop 2 blackholes HTTP requests whose Host is video.example; img.video.example on the "
        "same address passes, as does HTTPS to video.example.",
        wire=[(HOP[2], "dropper", {"host": ["video.example"]})],
        steps=[lookup("c1", "video.example"), http("c1", "video.example", expect=drop),
               http("c1", "img.video.example"), https("c1", "video.example"),
               http("c1", "video.example", "/watch", expect=drop), *_browse("c1", "news.example")])


def ip_block(mode: str) -> Scenario:
    targets = [T.site_addr("archive.example"), T.site_addr("archive.example", v6=True)]
    hop = 2 if mode == "prohibited" else None
    block = Expect("ip-block", "ip", hop)
    how = "silently drops" if mode == "drop" else "rejects with ICMP administratively prohibited"
    return Scenario(
        f"ip-block-{mode}",
        f"r2 (hop 2) {how} everything to archive.example's addresses (203.0.113.30, 2001:db8:5::1e); "
        "other sites pass.",
        kernel=[("ip-block", 2, targets, mode)],
        steps=[lookup("c1", "archive.example"), https("c1", "archive.example", expect=block),
               http("c1", "archive.example", expect=block), *_browse("c1", "news.example"),
               https("c1", "archive.example", v6=True, expect=block)])


def pmtu() -> Scenario:
    return Scenario(
        "pmtu-blackhole",
        "The r2-r3 link (hop 2 to 3) has MTU 1280 and both routers filter their ICMP 'fragmentation needed' / "
        "'packet too big': a 6 KB upload's full-size segments vanish and are retransmitted, small requests pass.",
        kernel=[("pmtu", HOP[3], 1280)],
        steps=[lookup("c1", "files.example"), http("c1", "files.example"),
               py("c1", "post", "files.example", ["6000"], expect=Expect("pmtu-blackhole", "size"), timeout=5),
               http("c1", "files.example", "/status"),
               py("c1", "post", "files.example", ["600"])])


def ecn() -> Scenario:
    bh, never = Expect("ecn-blackhole", "ecn"), Expect("ecn-blackhole", "ecn-syn")
    return Scenario(
        "ecn-blackhole",
        "A box at hop 2 drops SYNs that ask for ECN (ECE+CWR). With ECN on and no fallback the connection never "
        "opens; with fallback the plain retry passes after 1 s; with ECN off everything passes.",
        wire=[(HOP[2], "ecn-blackhole", {})],
        steps=[lookup("c1", "news.example"),
               py("c1", "connect", "news.example", [], expect=never, sysctl=ECN_ON, timeout=5),
               py("c1", "connect", "news.example", [], sysctl=ECN_OFF),
               py("c1", "connect", "shop.example", [], expect=bh, sysctl=ECN_ON_FALLBACK, timeout=6),
               py("c1", "connect", "shop.example", [], sysctl=ECN_OFF)])


def idle() -> Scenario:
    fw = {"timeout_s": 2.0, "reset": "sender", "ttl": FIXED64, "ipid": ZERO}
    return Scenario(
        "idle-timeout-reset",
        "A stateful firewall at hop 2 forgets connections idle for 2 s and answers their next packet with a RST "
        "of its own (TTL 64); a keep-alive connection paused 3.5 s is reset, one paused 0.5 s is not.",
        wire=[(HOP[2], "idle-firewall", fw)],
        steps=[lookup("c1", "news.example"),
               py("c1", "idle", "news.example", ["3.5"], expect=Expect("idle-timeout-reset", "idle", 2)),
               py("c1", "idle", "news.example", ["0.5"]), https("c1", "shop.example")])


def tls_intolerance() -> Scenario:
    broken = Expect("tls-intolerance", "size")
    return Scenario(
        "tls-intolerance",
        "A box at hop 3 cannot handle a ClientHello that spans two TCP segments and blackholes the connection, "
        "whatever the name; ordinary one-segment ClientHellos to the same names pass.",
        wire=[(HOP[3], "tls-size-breaker", {})],
        steps=[lookup("c1", "news.example"), https("c1", "news.example", tool="python-big", expect=broken),
               https("c1", "news.example", tool="python"), https("c1", "news.example"),
               https("c1", "shop.example", tool="python-big", expect=broken), https("c1", "shop.example")])


def mixed_path() -> Scenario:
    """A censor and faults on one path, each hitting a different server: the controls must not mix them up."""
    inj = {"sni": ["*.diary.example"], "direction": "both", "pattern": "rst-rstack",
           "ttl": {"mode": "fixed", "value": 128}, "ipid": {"mode": "random"}}
    return Scenario(
        "mixed-path",
        "Three things on c1's path at once: in-path DPI at hop 2 blackholes TLS for SNI video.example, an "
        "injector at hop 3 resets TLS for *.diary.example (initial TTL 128), and the r2-r3 link has MTU 1280 "
        "with its ICMP filtered (a PMTU black hole for files.example's big upload). Controls pass beside each.",
        wire=[(HOP[2], "dropper", {"sni": ["video.example"]}), (HOP[3], "rst-injector", inj)],
        kernel=[("pmtu", HOP[3], 1280)],
        steps=[*_browse("c1", "news.example"),
               lookup("c1", "video.example"), https("c1", "video.example", expect=Expect("sni-drop", "sni")),
               https("c1", "img.video.example"),
               lookup("c1", "files.example"), http("c1", "files.example"),
               py("c1", "post", "files.example", ["6000"], expect=Expect("pmtu-blackhole", "size"), timeout=5),
               py("c1", "post", "files.example", ["600"]),
               lookup("c1", "www.diary.example"),
               https("c1", "www.diary.example", expect=Expect("injected-rst", "sni", 3)),
               http("c1", "www.diary.example"),
               https("c1", "video.example", tool="python", expect=Expect("sni-drop", "sni"))])


def benign_browsing() -> Scenario:
    return Scenario(
        "benign-browsing",
        "Normal browsing from both clients, IPv4 and IPv6, curl / openssl / python, graceful closes; "
        "a client that aborts a download with RST; no device on the path.",
        captures=["client", "client2"],
        steps=[*_browse("c1", "news.example"), http("c1", "news.example", "/big"),
               *_browse("c1", "www.blogs.example", tool="openssl"), *_browse("c1", "video.example", v6=True),
               lookup("c1", "nosuch.example"), py("c1", "abort", "shop.example", []),
               https("c1", "alice.blogs.example", tool="python"),
               *_browse("c2", "shop.example"), *_browse("c2", "www.diary.example", v6=True)])


def benign_failures() -> Scenario:
    return Scenario(
        "benign-failures",
        "Endpoint failures, no device on the path: a closed port (kernel RST), a server that resets after the "
        "request, a server that accepts and never answers, a resolver that answers SERVFAIL.",
        steps=[lookup("c1", "broken.example", expect=Expect("dns-failure")),
               lookup("c1", "news.example"),
               http("c1", "news.example", port=8443, expect=Expect("connection-refused")),
               http("c1", "news.example", port=8081, expect=Expect("server-reset")),
               http("c1", "news.example", port=8082, expect=Expect("server-timeout")),
               http("c1", "news.example", port=8443, v6=True, expect=Expect("connection-refused")),
               lookup("c1", "broken.example", "AAAA", v6=True, expect=Expect("dns-failure")),
               https("c1", "news.example")])


def benign_closed_server() -> Scenario:
    return Scenario(
        "benign-closed-server",
        "A server answers and closes while the client still writes: the server's own kernel answers each late "
        "segment with a reset (the server's TTL, IP-ID 0 on IPv4), one per segment, the first arriving sooner "
        "after the client's last segment than a round trip; no device on the path.",
        steps=[lookup("c1", "news.example"),
               py("c1", "late", "news.example", ["20"], expect=Expect("server-reset")),
               py("c1", "late", "news.example", ["20"], v6=True, expect=Expect("server-reset")),
               http("c1", "news.example")])


def dns_fragmented() -> Scenario:
    return Scenario(
        "dns-fragmented",
        "A resolver answers a name with a pool of 100 addresses, over IPv4 and IPv6: each answer is larger than "
        "the link's 1,500 bytes, so the resolver's kernel sends it in IP fragments and the client's kernel "
        "reassembles them; then a page from the pool's network, both ways; no device on the path.",
        steps=[lookup("c1", "pool.example"), lookup("c1", "pool.example", "AAAA", v6=True),
               *_browse("c1", "news.example"), *_browse("c1", "news.example", v6=True)])


def option_stripping() -> Scenario:
    strip = {"strip": ["wscale"], "toward": "client"}
    return Scenario(
        "option-stripping",
        "A normalising firewall at hop 2 overwrites the window scale option of the servers' SYN-ACKs with NOPs "
        "(as Linux's TCPOPTSTRIP does): c1 does not scale, the servers do, and announce windows of ~70 bytes as "
        "c1 reads them. Requests, a 16 KB download and a 6 KB upload still fit in the first flight; a 100 KB "
        "upload crawls and times out, over IPv4 and IPv6. c2, through another ISP, uploads the same 100 KB at once.",
        wire=[(HOP[2], "option-stripper", strip)],
        captures=["client", "client2"],
        steps=[lookup("c1", "news.example"), http("c1", "news.example"), http("c1", "news.example", "/big"),
               py("c1", "post", "news.example", ["6000"]),
               py("c1", "post", "news.example", ["100000"], expect=Expect("option-stripping"), timeout=8),
               https("c1", "shop.example"),
               py("c1", "post", "shop.example", ["100000"], v6=True, expect=Expect("option-stripping"), timeout=8),
               py("c2", "post", "news.example", ["100000"])])


def all_scenarios() -> dict[str, Scenario]:
    found = [office_filter(), transit_injector(), rst_injector_sni(), rst_injector_keyword(), rst_injector_v6(),
             dns_injector(), dns_injector(v6=True), dns_injector_double(), blockpage(), blockpage_redirect(), front_box(),
             sni_drop(), host_drop(), ip_block("drop"),
             ip_block("prohibited"), pmtu(), ecn(), idle(), tls_intolerance(), mixed_path(), benign_browsing(), benign_failures(),
             benign_closed_server(), dns_fragmented(), option_stripping()]
    return {s.name: s for s in found}
