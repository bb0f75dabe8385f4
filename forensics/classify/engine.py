"""Apply the detectors and the ordered rules to every attempt."""

from __future__ import annotations

from ..detectors import BUILTIN
from ..detectors.base import Context
from ..model import VERDICT_CLASS, Attempt, Evidence, Finding, Verdict
from .rules import RULES, RULES_VERSION, Rule

__all__ = ["judge", "RULES_VERSION", "build_context"]


def build_context(attempts: list[Attempt]) -> Context:
    ctx = Context()
    for a in attempts:
        if a.tcp is None or a.kind == "dns":
            continue
        answered = a.tcp.packets[1] > 0
        if answered:
            ctx.answered_by_server[a.server.ip] = ctx.answered_by_server.get(a.server.ip, 0) + 1
        if (a.tls_reply is not None and a.tls_reply.server_hello) or (a.response is not None and a.response.status):
            ctx.ok_names_by_server.setdefault(a.server.ip, set()).add(a.name)
    return ctx


def judge(attempts: list[Attempt], warnings: list[str]) -> list[Verdict]:
    ctx = build_context(attempts)
    broken: set[str] = set()
    out = []
    for a in attempts:
        findings: list[Finding] = []
        for det in BUILTIN:
            if det.name in broken:
                continue
            try:
                findings.extend(det.run(a, ctx))
            except Exception as exc:  # one broken detector must not stop the others
                broken.add(det.name)
                warnings.append(f"detector {det.name} failed on attempt {a.id} ({type(exc).__name__}: {exc}); "
                                f"it was disabled for the rest of the run")
        out.append(apply_rules(a, findings))
    return out


def _matches(rule: Rule, signals: set[str]) -> bool:
    return all(s in signals for s in rule.all_of) and not any(s in signals for s in rule.none_of)


def apply_rules(a: Attempt, findings: list[Finding]) -> Verdict:
    signals = {f.signal for f in findings}
    for rule in RULES:
        if _matches(rule, signals):
            return _verdict(rule, a, findings)
    raise AssertionError("the fallback rule always matches")


def _verdict(rule: Rule, a: Attempt, findings: list[Finding]) -> Verdict:
    used = [f for f in findings if "*" in rule.summary or f.signal in rule.summary]
    summary = "; ".join(f.detail for f in used) if used else _nothing(a)
    evidence: list[Evidence] = []
    for f in used:
        evidence.extend(f.evidence)
    strength = min((f.strength for f in findings if f.signal in rule.all_of), default=1.0)
    return Verdict(verdict=rule.verdict, cls=VERDICT_CLASS[rule.verdict], trigger=rule.trigger,
                   confidence=round(rule.confidence * strength, 2), summary=_sentence(summary),
                   rule=rule.id, evidence=tuple(evidence))


def _sentence(s: str) -> str:
    s = s.strip()
    return s[:1].upper() + s[1:] + ("" if s.endswith(".") else ".") if s else s


def _nothing(a: Attempt) -> str:
    """What the packets show when no detector found anything to say."""
    if a.tcp is not None:
        c = a.tcp
        parts = [f"{c.packets[0]} packet(s) from the client and {c.packets[1]} from the server"]
        if c.syn is None and c.synack is None:
            parts.append("the handshake is not in the capture")
        if not c.client_payload and not c.server_payload:
            parts.append("no payload either way")
        elif c.client_payload and c.server_payload:
            parts.append("payload both ways but not of the kind this attempt expects")
        resets = [m for m in c.markers if m.kind == "rst"]
        if resets:
            who = {("client" if m.dir == 0 else "server") for m in resets}
            parts.append(f"{len(resets)} reset(s) from the {' and '.join(sorted(who))} side")
        return "; ".join(parts)
    return "the packets do not show how this attempt ended"
