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
