"""The lab samples in pcaps/: every attempt of the truth is reported, and no
verdict is stronger than what the detectors of this version can show.

(The full verdict/trigger/hop agreement with truth.json is the detectors'
acceptance; this file checks what holds for every version: the join is
complete, ok is only said where the truth says ok, and interference is never
called ok.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, analyze_json
from truth import join

SAMPLES = sorted(p for p in (ROOT / "pcaps").iterdir() if (p / "truth.json").exists()) if (ROOT / "pcaps").exists() else []


@pytest.fixture(params=SAMPLES or [None], ids=[p.name for p in SAMPLES] or ["no-samples"])
def sample(request) -> Path:
    if request.param is None:
        pytest.skip("no recorded samples in pcaps/")
    return request.param


def test_every_truth_attempt_is_reported(sample):
    pairs = join(sample)
    assert pairs, "a sample with no attempts in its truth"
    missing = [(t["capture"], t["kind"], t["name"]) for t, a in pairs if a is None]
    assert not missing


def test_interference_is_never_called_ok(sample):
    for t, a in join(sample):
        if t["verdict"] != "ok":
            assert a["verdict"] != "ok", (t["verdict"], a["id"], a["summary"])
        else:
            assert a["verdict"] == "ok", (a["id"], a["verdict"], a["summary"])


def test_reports_validate_and_benign_has_no_deliberate(sample):
    for cap in sorted(sample.glob("*.pcap")):
        report = analyze_json(cap)
        if sample.name.startswith("benign"):
            assert report["summary"]["by_class"].get("deliberate", 0) == 0
