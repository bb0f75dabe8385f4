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

from ..detectors import BUILTIN, CROSS
from ..detectors.base import Facts
from ..detectors.controls import ControlSet
from ..detectors.features import features
from ..model import VERDICT_CLASS, Attempt, Evidence, Finding, Hop, Verdict
from .rules import RULES, RULES_VERSION, Rule

__all__ = ["judge", "Judge", "RULES_VERSION", "apply_rules"]


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
        found: list[Finding] = []
        for det in BUILTIN:
            if self._broken and det.name in self._broken:
                continue
            try:  # runs for every attempt: no call in between
                found.extend(det.run(a))
            except Exception as exc:
                self._disable(det, f"{a.kind} attempt at {a.server}", exc)
        facts = Facts(a.kind, a.transport, a.input, a.client.ip, a.server.ip, a.server.port, a.name,
                      a.start, a.end, tuple(found), features(a))
        self.controls.add(facts)
        return facts

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


def judge(attempts: list[Attempt], warnings: list[str], reachable: tuple[str, ...] = ()) -> list[Verdict]:
    j = Judge(warnings, reachable)
    facts = [j.local(a) for a in attempts]
    return [j.verdict(f) for f in facts]


#: Each rule's signals as sets, for one subset test per rule.
_COMPILED = [(rule, frozenset(rule.all_of), frozenset(rule.none_of)) for rule in RULES]
#: The rule each set of signals met so far matches: a capture has a few dozen distinct
#: sets, so the rules are walked once per set, not once per attempt. Capped (a set past
#: the cap is matched afresh each time).
_MATCHED: dict[frozenset[str], Rule] = {}
MAX_MATCHED = 4096


def apply_rules(facts: Facts, findings: list[Finding]) -> Verdict:
    signals = frozenset([f.signal for f in findings])
    rule = _MATCHED.get(signals)
    if rule is None:
        rule = _match(signals)
        if len(_MATCHED) < MAX_MATCHED:
            _MATCHED[signals] = rule
    return _verdict(rule, facts, findings)


def _match(signals: frozenset[str]) -> Rule:
    """The first rule whose signals are all present and none of whose forbidden ones is."""
    for rule, need, forbid in _COMPILED:
        if need <= signals and not (forbid & signals):
            return rule
    raise AssertionError("the fallback rule always matches")


def _verdict(rule: Rule, facts: Facts, findings: list[Finding]) -> Verdict:
    if "*" in rule.summary:
        used = list(findings)
    else:  # in the rule's order: the sentence reads as the rule lists its signals
        used = [f for s in rule.summary for f in findings if f.signal == s]
    summary = "; ".join(f.detail for f in used) if used else _nothing(facts)
    evidence: list[Evidence] = []
    seen: set[tuple[int, int, str]] = set()
    for f in used:
        for e in f.evidence:
            k = (e.input, e.packet, e.signal)
            if k not in seen:
                seen.add(k)
                evidence.append(e)
    needed = [f for f in findings if f.signal in rule.all_of]
    strength = min((f.strength for f in needed), default=1.0)
    bonus = sum(f.strength for f in findings if f.signal in rule.boost) * rule.boost_step
    confidence = min(rule.confidence * strength + bonus, rule.cap)
    trigger = rule.trigger
    if trigger == "*":  # the trigger is what the evidence says set it off (a control may refine it)
        refined = [f for f in used if f.signal == "trigger-refined"]
        trigger = next((f.get("trigger") for f in refined + needed + used if f.get("trigger")), "unknown")
    hop = None
    if VERDICT_CLASS[rule.verdict] in ("deliberate", "middlebox-fault"):
        for f in needed + used:
            h = f.get("hop")
            if h is not None:
                hop = Hop(*h)
                break
    return Verdict(verdict=rule.verdict, cls=VERDICT_CLASS[rule.verdict], trigger=trigger,
                   confidence=round(confidence, 2), summary=_sentence(summary), rule=rule.id,
                   hop=hop, evidence=tuple(evidence))


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
        elif x.get("payload_c") and x.get("payload_s"):
            parts.append("payload both ways but not of the kind this attempt expects")
        if x.get("resets"):
            parts.append(f"{x['resets']} reset(s) from the {x.get('reset_sides', '')} side")
        return "; ".join(parts)
    return "the packets do not show how this attempt ended"
