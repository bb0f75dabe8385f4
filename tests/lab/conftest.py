"""Fixtures for the lab's tests: the committed samples, and a gate for live runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"


@pytest.fixture
def pcaps_dir() -> Path:
    return PCAPS


def _cannot_make_namespaces() -> str | None:
    """Why this (possibly containerised) root cannot build the lab, or None."""
    name = f"fxlab-{os.getpid()}-probe"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode:
        return f"cannot create network namespaces here: {res.stderr.strip()}"
    try:
        res = subprocess.run(["ip", "netns", "exec", name, "ip", "tuntap", "add", "mode", "tap", "fxprobe"],
                             capture_output=True, text=True)
        if res.returncode:
            return f"cannot create TAP devices here: {res.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@pytest.fixture
def live_lab():
    """Skip unless this machine can run the lab (root, tools, /dev/net/tun)."""
    if os.geteuid() != 0:
        pytest.skip("the live lab needs root (network namespaces, TAP devices)")
    missing = [t for t in ("ip", "tcpdump", "curl", "dig", "openssl") if shutil.which(t) is None]
    if shutil.which("iptables") is None and shutil.which("nft") is None:
        missing.append("iptables or nft")
    if missing:
        pytest.skip("the live lab needs: " + ", ".join(missing))
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("the live lab needs /dev/net/tun")
    reason = _cannot_make_namespaces()
    if reason:
        pytest.skip(reason)
    from forensics.lab.netns import leftover_namespaces

    before = set(leftover_namespaces(f"fxlab-{os.getpid()}-"))
    yield
    after = set(leftover_namespaces(f"fxlab-{os.getpid()}-"))
    assert after <= before, f"namespaces left behind: {sorted(after - before)}"
