"""Network namespaces and the processes the lab starts in them, with guaranteed cleanup.

Every namespace is named ``fxlab-<pid>-<n>-<node>`` so parallel runs never collide
and cleanup only ever touches this process's own namespaces.  Every process is
started by ``Lab.spawn`` and remembered by PID; ``Lab.close`` stops them by PID
(SIGTERM, then SIGKILL after a bound) and deletes the namespaces.  ``close`` runs
from ``finally`` blocks, from ``atexit`` and from SIGTERM/SIGINT/SIGHUP handlers,
so a failing test or a Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time

from ..errors import CaptureError

PREFIX = "fxlab"
PR_SET_PDEATHSIG = 1
REQUIRED_TOOLS = ("ip", "tcpdump", "curl", "dig", "openssl")
_counter = itertools.count(1)
_live: set[Lab] = set()
_handlers_installed = False


def check_environment() -> str:
    """Raise CaptureError unless we are root and the tools are there; returns the firewall tool.

    Checks everything before anything is touched, and names all that is missing
    in one line (not only the first thing)."""
    needs = []
    if os.geteuid() != 0:
        needs.append(f"root (network namespaces, TAP devices, firewall rules; running as uid {os.geteuid()})")
    missing = [t for t in REQUIRED_TOOLS if not shutil.which(t)]
    if shutil.which("iptables") and shutil.which("ip6tables"):
        fw = "iptables"
    else:
        fw = "nft" if shutil.which("nft") else None
    if fw is None:
        missing.append("iptables or nft")
    if missing:
        needs.append("these tools, missing: " + ", ".join(missing))
    if not os.path.exists("/dev/net/tun"):
        needs.append("/dev/net/tun (TAP devices)")
    if needs:
        raise CaptureError("the lab needs " + "; and ".join(needs))
    return fw


def _cleanup_all(*_args) -> None:
    for lab in list(_live):
        lab.close()


def _on_signal(signum, frame):
    _cleanup_all()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    atexit.register(_cleanup_all)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler, None):
            signal.signal(sig, _on_signal)
    _handlers_installed = True


def run(argv: list[str], timeout: float = 10, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                             preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired as exc:
        raise CaptureError(f"timed out: {' '.join(argv)}") from exc
    if check and res.returncode != 0:
        raise CaptureError(f"{' '.join(argv)}: {res.stderr.strip().splitlines()[-1:] or res.returncode}")
    return res


def reap_stale() -> list[str]:
    """Delete lab namespaces left by runs whose process no longer exists (killed by
    SIGKILL, power loss).  Namespaces of live runs are never touched."""
    reaped = []
    for name in leftover_namespaces(PREFIX + "-"):
        parts = name.split("-")
        if len(parts) > 2 and parts[1].isdigit() and not os.path.exists(f"/proc/{parts[1]}"):
            if subprocess.run(["ip", "netns", "del", name], capture_output=True).returncode == 0:
                reaped.append(name)
    return reaped


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the lab's process dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Lab:
    """A set of namespaces and processes that live and die together."""

    def __init__(self):
        _install_handlers()
        reap_stale()
        self.prefix = f"{PREFIX}-{os.getpid()}-{next(_counter)}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.closed = False
        _live.add(self)

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def add_ns(self, node: str) -> str:
        name = self.ns(node)
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def exec(self, node: str, argv: list[str], timeout: float = 10, check: bool = True, input: str | None = None):
        return run(["ip", "netns", "exec", self.ns(node)] + argv, timeout=timeout, check=check, input=input)

    def sysctl(self, node: str, settings: list[str]) -> None:
        """Set ``key=value`` sysctls inside a namespace (by /proc/sys, no procps needed)."""
        pairs = (s.split("=", 1) for s in settings)
        script = "; ".join(f"echo {v} > /proc/sys/{k.replace('.', '/')}" for k, v in pairs)
        self.exec(node, ["sh", "-ec", script])

    def batch(self, node: str, commands: list[str]) -> None:
        """Run ``ip`` commands in a namespace in one go (``ip -batch``)."""
        if commands:
            run(["ip", "-n", self.ns(node), "-batch", "-"], input="\n".join(commands) + "\n")

    def spawn(self, node: str | None, argv: list[str], **kw) -> subprocess.Popen:
        """Start a process (in a namespace unless node is None) and remember its PID."""
        full = argv if node is None else ["ip", "netns", "exec", self.ns(node)] + argv
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(full, start_new_session=True, preexec_fn=_die_with_parent, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 3.0) -> None:
        """Stop one of our processes by its PID: ``sig``, then SIGKILL after ``timeout``."""
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for proc in reversed(self.procs):
            try:
                self.stop(proc, timeout=2.0)
            except Exception:
                pass
        for name in reversed(self.namespaces):
            for _ in range(3):
                if subprocess.run(["ip", "netns", "del", name], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
        _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def leftover_namespaces(prefix: str = PREFIX) -> list[str]:
    """Namespaces whose name starts with ``prefix`` (for tests and diagnostics)."""
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return [line.split()[0] for line in res.stdout.splitlines() if line.startswith(prefix)]
