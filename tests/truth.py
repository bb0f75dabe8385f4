"""Join a report with a lab sample's truth.json (the join is on the truth's own key)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from forensics import analyze
from forensics.lab.topology import REACHABLE


def _key(a: dict, capture: str, seq: int) -> tuple:
    return (capture, a["kind"], a["client"]["ip"], a["server"]["ip"], a["server"]["port"], a["name"], seq)


def join(sample_dir: Path, together: bool = False) -> list[tuple[dict, dict | None]]:
    """(truth attempt, reported attempt or None) for every attempt in the truth; each
    capture analysed alone, or (``together``) all of the sample's captures in one run."""
    truth = json.loads((sample_dir / "truth.json").read_text())
    caps = sorted({t["capture"] for t in truth["attempts"]})
    runs = [caps] if together else [[c] for c in caps]
    reported: dict[tuple, dict] = {}
    seen: Counter = Counter()
    for run in runs:
        report = analyze([str(sample_dir / c) for c in run], reachable=REACHABLE).to_dict()
        names = [Path(i["path"]).name for i in report["inputs"]]
        for a in report["attempts"]:
            base = _key(a, names[a["input"]], 0)[:-1]
            reported[base + (seen[base],)] = a
            seen[base] += 1
    out = []
    for t in truth["attempts"]:
        k = (t["capture"], t["kind"], t["client"]["ip"], t["server"]["ip"], t["server"]["port"], t["name"],
             t.get("seq", 0))
        out.append((t, reported.get(k)))
    return out
