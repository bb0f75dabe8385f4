"""Apply the detectors and the ordered rules to every attempt, in two stages.

``Judge.local(attempt)`` runs the local detectors on an attempt's packets and
returns its compact ``Facts`` (the packets can be released after); it also feeds
the ``Controls`` of the attempt's case (the inputs of one folder: ``cases_of``).
``Judge.verdict(facts)`` runs the cross-attempt detectors against the controls of
the same case and applies the rules. Parallel workers each
run ``local`` and the parent merges their controls (``Judge.controls.merge``)
before asking for verdicts, so the result does not depend on how the work was
split.
"""

from __future__ import annotations

from operator import attrgetter
from typing import NamedTuple

from ..detectors import BUILTIN, CROSS, crosscheck, dnsforge
from ..detectors.base import Facts, new_facts
from ..detectors.controls import ControlSet
from ..detectors.features import features
from ..model import VERDICT_CLASS, Attempt, Evidence, Finding, Hop, Verdict, new_verdict
from .rules import RULES, RULES_VERSION, Rule

__all__ = ["judge", "Judge", "RULES_VERSION", "apply_rules"]


# ``Judge.early`` knows what each cross-attempt detector reads of the controls
assert {d.name for d in CROSS} == {dnsforge.NAME, crosscheck.NAME}, "Judge.early must learn the new detector"


class Judge:
    def __init__(self, warnings: list[str] | None = None, reachable: tuple[str, ...] = (),
                 cases: tuple[int, ...] = ()) -> None:
        self.controls = ControlSet(tuple(cases), tuple(reachable))
        self.warnings = warnings if warnings is not None else []
        self._broken: set[str] = set()

    def _disable(self, det, what: str, exc: Exception) -> None:
        """One broken detector must not stop the others: it is recorded and left out from now on."""
        self._broken.add(det.name)
        self.warnings.append(f"detector {det.name} failed on {what} ({type(exc).__name__}: {exc}); "
                             f"it was disabled for the rest of the run")

    def local(self, a: Attempt) -> Facts:
        facts = self.facts(a)
        self.controls.add(facts)
        return facts

    def facts(self, a: Attempt) -> Facts:
        """``local`` without feeding the controls."""
        found: list[Finding] = []
        for det in BUILTIN:
            if self._broken and det.name in self._broken:
                continue
            try:  # runs for every attempt: no call in between
                found.extend(det.run(a))
            except Exception as exc:
                self._disable(det, f"{a.kind} attempt at {a.server}", exc)
        return new_facts(a.kind, a.transport, a.input, a.client.ip, a.server.ip, a.server.port, a.name,
                         a.start, a.end, tuple(found), features(a))

    def verdict(self, facts: Facts) -> Verdict:
        found = list(facts.findings)
        controls = self.controls.of(facts.input)
        for det in CROSS:
            if self._broken and det.name in self._broken:
                continue
            try:
                found.extend(det.run(facts, controls))
            except Exception as exc:
                self._disable(det, f"{facts.kind} attempt at {facts.server_ip}", exc)
        return apply_rules(facts, found)

    def early(self, facts: Facts) -> tuple[Verdict, tuple | None] | None:
        """The verdict of ``facts`` before the controls are complete, where they cannot
        change it; with a key where they could still, through the checks of ``dnsforge.stands``
        (``stands`` tells, once they are complete). None where
        the cross-attempt detectors read the controls in any other way.

        Most attempts are of this kind: a connection that neither failed nor met forged
        packets, a DNS query with one answer, or answers that agree. Their verdict is ``verdict``'s,
        found without the controls."""
        if crosscheck.asks(facts):
            return None
        key = dnsforge.asks(facts)
        if key is True:
            return None
        return apply_rules(facts, list(facts.findings)), key or None

    def stands(self, input_idx: int, key: tuple | None) -> bool:
        """Whether the verdict ``early`` gave with ``key`` is the one ``verdict`` gives against
        the complete controls of ``input_idx``'s case."""
        return key is None or dnsforge.stands(self.controls.of(input_idx), key)


def judge(attempts: list[Attempt], warnings: list[str], reachable: tuple[str, ...] = ()) -> list[Verdict]:
    j = Judge(warnings, reachable)
    facts = [j.local(a) for a in attempts]
    return [j.verdict(f) for f in facts]


#: Each rule's signals as sets, for one subset test per rule.
_COMPILED = [(rule, frozenset(rule.all_of), frozenset(rule.none_of)) for rule in RULES]
_SIGNAL = attrgetter("signal")


class _Plan(NamedTuple):
    """How a verdict is made from findings whose signals come in one given order: the
    rule they match, and which findings (by position) each part of the verdict reads."""

    rule: Rule
    cls: str
    used: tuple[int, ...]  # the findings the summary and the evidence come from, in the rule's order
    needed: tuple[int, ...]  # the findings of the rule's required signals (their strength counts)
    boosted: tuple[int, ...]  # the findings of the rule's boosting signals
    trigger_from: tuple[int, ...] | None  # where a "*" trigger is looked for, in order
    hop_from: tuple[int, ...] | None  # where the hop is looked for (only classes that place a sender)


#: The plan of each sequence of signals met so far: a capture has a few dozen distinct
#: sequences, so the rules are walked and the positions worked out once per sequence, not
#: once per attempt. Capped (a sequence past the cap is planned afresh each time).
_PLANS: dict[tuple[str, ...], _Plan] = {}
MAX_PLANS = 4096
#: ``round(confidence, 2)`` of each confidence met so far: few distinct values, and
#: rounding a float to digits goes through its decimal text. Capped as the plans are.
_ROUNDED: dict[float, float] = {}


def apply_rules(facts: Facts, findings: list[Finding]) -> Verdict:
    signals = tuple(map(_SIGNAL, findings))
    plan = _PLANS.get(signals)
    if plan is None:
        plan = _plan(signals)
        if len(_PLANS) < MAX_PLANS:
            _PLANS[signals] = plan
    return _verdict(plan, facts, findings)


def _match(signals: frozenset[str]) -> Rule:
    """The first rule whose signals are all present and none of whose forbidden ones is."""
    for rule, need, forbid in _COMPILED:
        if need <= signals and not (forbid & signals):
            return rule
    raise AssertionError("the fallback rule always matches")


def _plan(signals: tuple[str, ...]) -> _Plan:
    rule = _match(frozenset(signals))
    at = range(len(signals))
    if "*" in rule.summary:
        used = tuple(at)
    else:  # in the rule's order: the sentence reads as the rule lists its signals
        used = tuple(i for s in rule.summary for i in at if signals[i] == s)
    needed = tuple(i for i in at if signals[i] in rule.all_of)
    trigger_from = None
    if rule.trigger == "*":  # the trigger is what the evidence says set it off (a control may refine it)
        trigger_from = tuple(i for i in used if signals[i] == "trigger-refined") + needed + used
    cls = VERDICT_CLASS[rule.verdict]
    return _Plan(rule, cls, used, needed, tuple(i for i in at if signals[i] in rule.boost),
                 trigger_from, needed + used if cls in ("deliberate", "middlebox-fault") else None)


def _verdict(plan: _Plan, facts: Facts, findings: list[Finding]) -> Verdict:
    rule = plan.rule
    pick = findings.__getitem__
    used = list(map(pick, plan.used))
    summary = "; ".join([f.detail for f in used]) if used else _nothing(facts)
    evidence: list[Evidence] = []
    seen: set[tuple[int, int, str]] = set()
    for f in used:
        for e in f.evidence:
            k = (e.input, e.packet, e.signal)
            if k not in seen:
                seen.add(k)
                evidence.append(e)
    strength = min([findings[i].strength for i in plan.needed]) if plan.needed else 1.0
    bonus = sum([findings[i].strength for i in plan.boosted]) * rule.boost_step if plan.boosted else 0.0
    raw = min(rule.confidence * strength + bonus, rule.cap)
    confidence = _ROUNDED.get(raw)
    if confidence is None:
        confidence = round(raw, 2)
        if len(_ROUNDED) < MAX_PLANS:
            _ROUNDED[raw] = confidence
    trigger = rule.trigger
    if plan.trigger_from is not None:
        trigger = next((t for t in (findings[i].get("trigger") for i in plan.trigger_from) if t), "unknown")
    hop = None
    if plan.hop_from is not None:
        for i in plan.hop_from:
            h = findings[i].get("hop")
            if h is not None:
                hop = Hop(*h)
                break
    return new_verdict(rule.verdict, plan.cls, trigger, confidence, _sentence(summary), rule.id, hop, tuple(evidence))


def _sentence(s: str) -> str:
    s = s.strip()
    return s[:1].upper() + s[1:] + ("" if s.endswith(".") else ".") if s else s


def _nothing(f: Facts) -> str:
    """What the packets show when no detector found anything to say."""
    x = f.features
    if f.transport == "tcp":
        parts = [f"{x.get('packets_c', 0)} packet(s) from the client and {x.get('packets_s', 0)} from the server"]
        if not x.get("syn") and not x.get("synack"):
            parts.append("the handshake is not in the capture")
        if not x.get("payload_c") and not x.get("payload_s"):
            parts.append("no payload either way")
        elif x.get("payload_c") and x.get("payload_s") and not x.get("cut"):
            parts.append("payload both ways but not of the kind this attempt expects")
        if x.get("resets"):
            parts.append(f"{x['resets']} reset(s) from the {x.get('reset_sides', '')} side")
        if x.get("cut"):
            who = {1: "the client's payload", 2: "the server's payload"}.get(x["cut"], "the payload both ways")
            parts.append(f"the capture cut {who} short (its snapshot length), so the exchange cannot be read")
        return "; ".join(parts)
    return "the packets do not show how this attempt ended"
