"""The rules are data: every signal they name is reported by some detector, every
verdict is the contract's, ids are unique, and docs/rules.md is current."""

from __future__ import annotations

from conftest import ROOT
from forensics.classify.docs import render
from forensics.classify.rules import RULES, TROUBLE
from forensics.detectors import describe
from forensics.model import TRIGGERS, VERDICT_CLASS


def _declared() -> set[str]:
    return {s for d in describe() for s in d["signals"]}


def test_every_signal_a_rule_names_is_declared_by_a_detector():
    declared = _declared()
    named = {s for r in RULES for s in r.all_of + r.none_of + r.boost} | set(TROUBLE)
    assert named - declared == set()


def test_rules_use_contract_verdicts_and_triggers_and_unique_ids():
    assert len({r.id for r in RULES}) == len(RULES)
    for r in RULES:
        assert r.verdict in VERDICT_CLASS
        assert r.trigger == "*" or r.trigger in TRIGGERS
        assert r.doc


def test_the_fallback_is_last_and_always_matches():
    assert RULES[-1].all_of == () and RULES[-1].verdict == "inconclusive"


def test_rules_page_is_current():
    assert (ROOT / "docs" / "rules.md").read_text() == render(), \
        "run: python -m forensics.classify.docs > docs/rules.md"


def test_a_detector_that_raises_is_disabled_with_a_warning_and_the_others_still_judge(monkeypatch):
    import forensics
    from forensics.detectors import BUILTIN, rst

    def broken(self, attempt):
        raise ValueError("deliberately broken for this test")

    monkeypatch.setattr(rst.ResetDetector, "run", broken)
    assert any(isinstance(d, rst.ResetDetector) for d in BUILTIN)
    report = forensics.analyze([str(ROOT / "pcaps" / "rst-injector")], keep_attempts=True)
    failed = [w for w in report.warnings if "detector" in w and "deliberately broken" in w]
    assert len(failed) == 1 and "disabled for the rest of the run" in failed[0]
    verdicts = {v.verdict for v in report.verdicts}
    assert "injected-rst" not in verdicts  # the broken detector found nothing
    assert "ok" in verdicts  # the other detectors still ran on every attempt
