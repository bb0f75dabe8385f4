"""Join a report with a lab sample's truth.json (the join is on the truth's own key)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from forensics import analyze
from forensics.lab.topology import REACHABLE


def _key(a: dict, capture: str, seq: int) -> tuple:
    return (capture, a["kind"], a["client"]["ip"], a["server"]["ip"], a["server"]["port"], a["name"], seq)


def join(sample_dir: Path) -> list[tuple[dict, dict | None]]:
    """(truth attempt, reported attempt or None) for every attempt in the truth."""
    truth = json.loads((sample_dir / "truth.json").read_text())
    reported: dict[tuple, dict] = {}
    for cap in sorted({t["capture"] for t in truth["attempts"]}):
        report = analyze([str(sample_dir / cap)], reachable=REACHABLE).to_dict()
        seen: Counter = Counter()
        for a in report["attempts"]:
            base = _key(a, cap, 0)[:-1]
            reported[base + (seen[base],)] = a
            seen[base] += 1
    out = []
    for t in truth["attempts"]:
        k = (t["capture"], t["kind"], t["client"]["ip"], t["server"]["ip"], t["server"]["port"], t["name"],
             t.get("seq", 0))
        out.append((t, reported.get(k)))
    return out
