"""The lab's servers: web (HTTP 80, HTTPS 443, misbehaving ports) and a DNS resolver.

Run inside a namespace as ``python -m forensics.lab.servers web CERT KEY`` or
``python -m forensics.lab.servers dns``; each prints ``READY`` once listening and
exits on SIGTERM or after ``--lifetime`` seconds.

web, on every address of the host (one per site), IPv4 and IPv6:

- 80: HTTP/1.1 with keep-alive; ``GET /big`` answers 16 KB, anything else a small
  page naming the Host; POST bodies are read and counted.
- 443: the same over TLS, for any SNI, with the certificate the lab made.
- 8081: reads the request, then resets the connection (SO_LINGER 0): a server reset.
- 8082: accepts, reads, never answers: a server timeout.
- anything else is closed, so the kernel refuses it.

dns, on 53 UDP and TCP: A/AAAA for the lab's names (``topology.SITES``), a pool of
addresses for ``topology.POOL_NAMES`` (over UDP whatever its size, as a resolver
answering a large EDNS buffer does: the kernel fragments it), SERVFAIL for
``topology.SERVFAIL_NAMES``, NXDOMAIN for everything else.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time

from . import packets as P
from .topology import POOL_NAMES, SERVFAIL_NAMES, pool_addrs, site_addr

BIG = 16 * 1024
IDLE_S = 15


def _read_request(conn) -> tuple[bytes, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > 65536:
            return None
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1].strip() or 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body


def _respond(conn, head: bytes, body: bytes) -> bool:
    lines = head.split(b"\r\n")
    method, path = (lines[0].split(b" ") + [b"", b""])[:2]
    host = (P.http_host(head + b"\r\n\r\n") or "").encode()
    if path.startswith(b"/big"):
        page = b"x" * BIG
    else:
        page = (b"<html><body><h1>" + host + b"</h1>" + method + b" " + path + b" ok, "
                + str(len(body)).encode() + b" bytes received</body></html>\n")
    close = any(line.lower() == b"connection: close" for line in lines)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: " + str(len(page)).encode()
                 + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n" + page)
    return not close


class Web(socketserver.ThreadingMixIn, socketserver.TCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        conn, port = self.request, self.server.server_address[1]
        conn.settimeout(IDLE_S)
        try:
            if port == 443:
                conn = self.server.tls.wrap_socket(conn, server_side=True)
            if port == 8082:
                _read_request(conn)
                time.sleep(IDLE_S)
                return
            if port == 8081:
                _read_request(conn)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            while True:
                req = _read_request(conn)
                if req is None or not _respond(conn, *req):
                    break
            try:
                if isinstance(conn, ssl.SSLSocket):
                    conn = conn.unwrap()
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        except (OSError, ssl.SSLError, ValueError):
            pass


def serve_web(cert: str, key: str) -> list:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    tls.set_alpn_protocols(["http/1.1"])
    servers = []
    for port in (80, 443, 8081, 8082):
        srv = Web(("::", port), Handler)
        srv.tls = tls
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    return servers


def dns_response(query: bytes) -> bytes | None:
    q = P.dns_question(query)
    if not q:
        return None
    _txid, qname, qtype, qend = q
    if qname in SERVFAIL_NAMES:
        return P.dns_answer(query, qend, qtype, [], 0, rcode=2)
    if qname in POOL_NAMES and qtype in (1, 28):
        return P.dns_answer(query, qend, qtype, pool_addrs(qname, v6=(qtype == 28)), 300)
    try:
        addrs = [site_addr(qname, v6=(qtype == 28))] if qtype in (1, 28) else []
    except KeyError:
        return P.dns_answer(query, qend, qtype, [], 0, rcode=3)
    return P.dns_answer(query, qend, qtype, addrs, 300)


def serve_dns() -> None:
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    udp.bind(("::", 53))

    def udp_loop():
        while True:
            data, addr = udp.recvfrom(4096)
            resp = dns_response(data)
            if resp:
                udp.sendto(resp, addr)

    class TcpDns(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(5)
            try:
                n = struct.unpack("!H", self.request.recv(2))[0]
                resp = dns_response(self.request.recv(n))
                if resp:
                    self.request.sendall(struct.pack("!H", len(resp)) + resp)
            except (OSError, struct.error):
                pass

    tcp = Web(("::", 53), TcpDns)
    threading.Thread(target=udp_loop, daemon=True).start()
    threading.Thread(target=tcp.serve_forever, daemon=True).start()


def main(argv: list[str]) -> int:
    lifetime = 300.0
    if "--lifetime" in argv:
        i = argv.index("--lifetime")
        lifetime = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    if argv[0] == "web":
        serve_web(argv[1], argv[2])
    else:
        serve_dns()
    print("READY", flush=True)
    stop.wait(lifetime)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
