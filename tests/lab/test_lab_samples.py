"""The committed samples in pcaps/ show their phenomena on the wire (no root needed)."""

from __future__ import annotations

import json

import pytest

from forensics.lab.scenario import CLASS
from forensics.lab.scenarios import all_scenarios
from forensics.lab.verify import verify

NAMES = sorted(all_scenarios())
TRIGGERS = {"sni", "host", "url", "dns-qname", "ip", "keyword", "size", "ecn", "idle", "none", "unknown"}
KINDS = {"dns", "tls", "http", "tcp", "quic"}


@pytest.mark.parametrize("name", NAMES)
def test_sample_shows_its_phenomenon(pcaps_dir, name):
    d = pcaps_dir / name
    assert (d / "truth.json").exists(), f"no recorded sample for {name}: run `forensics lab run --all --out pcaps`"
    verify(name, d)


@pytest.mark.parametrize("name", NAMES)
def test_truth_is_in_the_report_shape(pcaps_dir, name):
    truth = json.loads((pcaps_dir / name / "truth.json").read_text())
    assert truth["scenario"] == name and truth["description"]
    keys = set()
    for a in truth["attempts"]:
        assert a["kind"] in KINDS and a["trigger"] in TRIGGERS
        assert CLASS[a["verdict"]] == a["class"]
        assert (pcaps_dir / name / a["capture"]).exists()
        assert set(a["client"]) == {"ip", "port"} and set(a["server"]) == {"ip", "port"}
        if "hop" in a:
            assert a["hop"]["from_capture"] >= 1
        key = (a["capture"], a["kind"], a["client"]["ip"], a["server"]["ip"], a["server"]["port"], a["name"], a["seq"])
        assert key not in keys, f"join key not unique: {key}"
        keys.add(key)
    if name not in ("benign-browsing", "dns-fragmented"):  # the two scenarios of normal traffic only
        assert any(a["verdict"] != "ok" for a in truth["attempts"]), "no interference in the truth"
    assert any(a["verdict"] == "ok" for a in truth["attempts"]), "no normal traffic mixed in"


def test_samples_stay_small(pcaps_dir):
    total = sum(p.stat().st_size for p in pcaps_dir.rglob("*") if p.is_file())
    assert total < 4 * 1024 * 1024, f"pcaps/ is {total / 1e6:.1f} MB"


def test_every_sample_is_a_scenario(pcaps_dir):
    recorded = {p.name for p in pcaps_dir.iterdir() if p.is_dir()}
    assert recorded == set(NAMES)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "benign-browsing"])
def test_checks_can_fail_on_clean_traffic(pcaps_dir, name):
    """A scenario's phenomenon check rejects a capture of normal browsing."""
    from forensics.lab.verify import CHECKS

    with pytest.raises(AssertionError):
        CHECKS[name](pcaps_dir / "benign-browsing")


def test_truth_check_catches_a_missing_attempt(pcaps_dir, tmp_path):
    import shutil

    from forensics.lab.verify import check_truth

    d = tmp_path / "s"
    shutil.copytree(pcaps_dir / "sni-drop", d)
    truth = json.loads((d / "truth.json").read_text())
    truth["attempts"] = [a for a in truth["attempts"] if a["kind"] != "dns"]
    (d / "truth.json").write_text(json.dumps(truth))
    with pytest.raises(AssertionError, match="differ"):
        check_truth(d)


@pytest.mark.parametrize("name", NAMES)
def test_committed_truth_matches_the_definition(pcaps_dir, name):
    """The samples' truth is the scenario's definition (re-record pcaps/ when a scenario changes)."""
    from forensics.lab.scenario import truth

    assert json.loads((pcaps_dir / name / "truth.json").read_text()) == truth(all_scenarios()[name])


def test_a_scenario_without_a_check_fails_its_check_not_the_run(pcaps_dir):
    """A scenario added without its phenomenon check is a failed check (``lab run`` reports it
    and exits 3), not a KeyError escaping as a traceback."""
    with pytest.raises(AssertionError, match="no phenomenon check"):
        verify("no-such-scenario", pcaps_dir / "benign-browsing")
