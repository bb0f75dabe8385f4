"""Tests build packets; they never send one.

scapy resolves a missing Ethernet destination by sending an ARP request (and
this machine's own interface may sit in a documentation range), so every
Ether() built in the tests must name both addresses. This test reads the test
sources and fails on any that does not, and on any scapy send call.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SENDERS = {"send", "sendp", "sr", "sr1", "srp", "srp1", "sniff", "getmacbyip", "arping"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            yield name, node


def test_no_ether_without_addresses_and_no_send():
    bad = []
    for path in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for name, node in _calls(tree):
            kws = {k.arg for k in node.keywords}
            if name == "Ether" and not node.args and not {"src", "dst"} <= kws:
                bad.append(f"{path.relative_to(TESTS)}:{node.lineno} Ether() without src and dst")
            if name in SENDERS and path.name != "test_no_network.py":
                bad.append(f"{path.relative_to(TESTS)}:{node.lineno} calls {name}()")
    assert not bad, bad
