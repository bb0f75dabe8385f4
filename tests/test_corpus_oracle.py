"""Reassembly agrees with Wireshark on every capture of the shared corpus.

The oracle is tshark: one TCP attempt per ``tcp.stream`` (Wireshark's notion of
one connection, split on port reuse), one DNS attempt per (transaction id,
client port) among its queries to a unicast address (mDNS and LLMNR queries to
their multicast groups ask the link, not a resolver: neither side counts them), and
the same SNI and Host per stream. TCP and
DNS carried inside ICMP errors are quotes, not traffic: both sides leave them out.
"""

from __future__ import annotations

import pytest

from conftest import CORPUS, analyze_json, corpus_entries, need_corpus, need_tshark
from oracle import facts

ENTRIES = corpus_entries()
IDS = [e["file"] for e in ENTRIES] or ["no-corpus"]


@pytest.fixture(params=ENTRIES or [None], ids=IDS)
def entry(request):
    need_corpus()
    return request.param


def test_attempts_match_tshark(entry):
    need_tshark()
    path = CORPUS / entry["file"]
    oracle = facts(str(path))
    report = analyze_json(path)
    attempts = report["attempts"]
    streams = {a["stream"] for a in attempts if a["transport"] == "tcp"}
    assert len(streams) == len(oracle["streams"]), "TCP attempts differ from tshark's tcp.stream count"
    assert streams == set(range(len(streams))), "stream numbers are not 0..n-1 like tcp.stream"
    dns = {(a["dns"]["id"], a["client"]["port"]) for a in attempts if a["kind"] == "dns"}
    assert dns == oracle["dns"]
    for a in attempts:
        if a["kind"] == "tls":
            assert oracle["sni"].get(a["stream"]) == a["name"], a["id"]
        if a["kind"] == "http":
            assert oracle["host"].get(a["stream"]) == a["name"], a["id"]
    seen_tls = {a["stream"] for a in attempts if a["kind"] == "tls"}
    assert set(oracle["sni"]) <= seen_tls, "tshark saw ClientHellos in streams not reported as tls"


def test_no_deliberate_verdict_on_benign(entry):
    if not entry["label"].startswith("benign"):
        pytest.skip(f"{entry['file']} is labelled {entry['label']}")
    report = analyze_json(CORPUS / entry["file"])
    wrong = [a for a in report["attempts"] if a["class"] == "deliberate"]
    assert not wrong, [(a["id"], a["verdict"], a["summary"]) for a in wrong]


def test_every_frame_cited_exists(entry):
    report = analyze_json(CORPUS / entry["file"])
    packets = report["inputs"][0]["packets"]
    for a in report["attempts"]:
        for e in a["evidence"]:
            assert 1 <= e["packet"] <= packets
        for f in a["frames"]:
            assert 1 <= f <= packets
