"""The lab's clients: real tools (curl, openssl, dig) and small Python socket clients.

``argv_*`` helpers build command lines, always with explicit timeouts.  The
Python clients run inside a client namespace as
``python -m forensics.lab.clients MODE ARGS`` (standard library only):

- ``tls HOST IP PORT [--big]``: a TLS handshake and one request; ``--big`` pads the
  ClientHello past one segment (a long ALPN list, ~2.3 KB) like post-quantum
  key shares do.
- ``idle IP PORT HOST PAUSE``: HTTP keep-alive: a request, an idle pause, a second
  request on the same connection.
- ``abort IP PORT HOST``: asks for a big page, reads a little, aborts with RST.
- ``post IP PORT HOST SIZE``: an HTTP POST with a SIZE-byte body (large segments).
- ``connect IP PORT HOST``: an HTTP GET over a plain socket (used with ECN on/off).
- ``late IP PORT HOST COUNT``: an HTTP GET with ``Connection: close``; once the
  server has closed (its FIN read), small segments ``LATE_GAP_S`` apart, as a client
  that writes after the server hung up, until the server's reset is back (at most
  COUNT, and at most ``LATE_MAX``).

Each exits 0 on success, 1 on a network failure, and never runs longer than its
timeout.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import time

TIMEOUT = 3.0
#: ``late``: the gap between the segments written after the server closed. Well under the
#: lab's 40 ms round trip, so several leave before the server's first reset is back, the
#: last of them a few ms before it (the client writes until the reset stops it: a fixed
#: count ended 15 ms before the reset, and a reset 5 ms late on a loaded machine made it
#: look like an answer to the client's last segment, not an early one).
LATE_GAP_S = 0.005
#: ``late``: the most segments written (20 x 5 ms: 2.5 round trips of the lab).
LATE_MAX = 20


def argv_dig(server: str, name: str, qtype: str = "A") -> list[str]:
    return ["dig", f"@{server}", name, qtype, "+time=2", "+tries=1", "+retry=0", "+nocookie"]


def argv_curl(url: str, name: str, ip: str, port: int, max_time: float = TIMEOUT) -> list[str]:
    host_ip = f"[{ip}]" if ":" in ip else ip
    return ["curl", "-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(max_time),
            "--connect-timeout", str(max_time), "--http1.1", "--resolve", f"{name}:{port}:{host_ip}", url]


def argv_openssl(name: str, ip: str, port: int = 443) -> list[str]:
    target = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return ["openssl", "s_client", "-connect", target, "-servername", name, "-brief"]


def _request(host: str, path: str = "/", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fxlab/1\r\n{extra}\r\n".encode()


def _connect(ip: str, port: int) -> socket.socket:
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect((ip, port))
    return s


def _read_response(s) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def tls(host: str, ip: str, port: int, big: bool = False) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    alpn = ["http/1.1"]
    if big:  # ~2.3 KB of ALPN names: the ClientHello spans two segments
        alpn += [f"x-pad-{i}-" + "p" * 240 for i in range(9)]
    ctx.set_alpn_protocols(alpn)
    with _connect(ip, port) as raw, ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(_request(host, extra="Connection: close\r\n"))
        _read_response(s)


def idle(ip: str, port: int, host: str, pause: float) -> None:
    with _connect(ip, port) as s:
        s.sendall(_request(host))
        _read_response(s)
        time.sleep(min(pause, 10.0))
        s.sendall(_request(host, "/again", "Connection: close\r\n"))
        if not _read_response(s):
            raise ConnectionError("no answer after the pause")


def abort(ip: str, port: int, host: str) -> None:
    s = _connect(ip, port)
    s.sendall(_request(host, "/big"))
    s.recv(1000)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def post(ip: str, port: int, host: str, size: int) -> None:
    body = b"u" * size
    head = (f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    with _connect(ip, port) as s:
        s.sendall(head + body)
        if not _read_response(s):
            raise ConnectionError("no answer")


def connect(ip: str, port: int, host: str) -> None:
    with _connect(ip, port) as s:
        s.sendall(_request(host, extra="Connection: close\r\n"))
        _read_response(s)


def late(ip: str, port: int, host: str, count: int) -> None:
    with _connect(ip, port) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one segment per write
        s.sendall(_request(host, extra="Connection: close\r\n"))
        if not _read_response(s):
            raise ConnectionError("no answer")
        while s.recv(4096):  # until the server's FIN (bounded by the socket's timeout)
            pass
        sent = 0
        for i in range(min(count, LATE_MAX)):
            try:
                s.send(b"late %d\r\n" % i)
            except OSError:  # the server's reset is back: the connection is gone
                break
            sent += 1
            time.sleep(LATE_GAP_S)
        if sent < 2:
            raise ConnectionError(f"only {sent} segment(s) written after the server closed")


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    try:
        if mode == "tls":
            tls(args[0], args[1], int(args[2]), big="--big" in args)
        elif mode == "idle":
            idle(args[0], int(args[1]), args[2], float(args[3]))
        elif mode == "abort":
            abort(args[0], int(args[1]), args[2])
        elif mode == "post":
            post(args[0], int(args[1]), args[2], int(args[3]))
        elif mode == "connect":
            connect(args[0], int(args[1]), args[2])
        elif mode == "late":
            late(args[0], int(args[1]), args[2], int(args[3]))
        else:
            print(f"unknown mode {mode}", file=sys.stderr)
            return 2
    except (OSError, ssl.SSLError) as exc:
        print(f"{mode}: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
