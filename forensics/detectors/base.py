"""What every detector has, and the two stages they run in.

Stage 1, *local*: a detector looks at one finished attempt (its packets) and
reports findings. This runs as each attempt finishes, so the packets of an
attempt can be released right after.

Stage 2, *cross-attempt*: attempts in one capture are each other's controls
(the same server with another name, the same resolver's other answers, plain
SYNs beside ECN SYNs). ``Controls`` gathers, per server, name and resolver, the
few facts the controls need from every attempt's ``Facts``; it is bounded by
the number of distinct servers/names/resolvers, not by attempts, and two
``Controls`` merge (for parallel workers). Cross detectors then read one
attempt's ``Facts`` plus the ``Controls``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..model import Attempt, Evidence, Finding, new_evidence, new_finding, slot_maker

if TYPE_CHECKING:
    from .controls import Controls


class Detector(Protocol):
    name: str
    detects: str
    false_positives: str

    def run(self, attempt: Attempt) -> list[Finding]: ...


class CrossDetector(Protocol):
    name: str
    detects: str
    false_positives: str

    def run(self, facts: "Facts", controls: "Controls") -> list[Finding]: ...


@dataclass(slots=True)
class Facts:
    """The compact record of one attempt that outlives its packets (picklable)."""

    kind: str
    transport: str
    input: int
    client_ip: str
    server_ip: str
    server_port: int
    name: str
    start: float
    end: float
    findings: tuple[Finding, ...]
    # attempt-level features the controls compare: hello size, ECN, server TTL...
    features: dict[str, Any] = field(default_factory=dict)

    def signals(self) -> set[str]:
        return {f.signal for f in self.findings}

    def get(self, signal: str) -> Finding | None:
        for f in self.findings:
            if f.signal == signal:
                return f
        return None


#: ``Facts(...)``, every field given positionally (``model.slot_maker``: its dataclass ``__init__``
#: runs as Python)
new_facts = slot_maker(Facts)


def query_text(qtype: str, qname: str) -> str:
    """A DNS query as its evidence line says it: "A example.org", or that its question is not in the capture."""
    return f"{qtype} {qname}" if qname else "(question not captured)"


def ev(attempt_input: int, frame: int, signal: str, detail: str) -> Evidence:
    return new_evidence(int(attempt_input), int(frame), signal, detail)


def finding(detector: str, signal: str, strength: float, detail: str,
            evidence: list[Evidence] | tuple[Evidence, ...] = (), **data) -> Finding:
    return new_finding(detector, signal, strength, detail, tuple(evidence), tuple(sorted(data.items())))


def doc_parts(doc: str) -> tuple[str, str]:
    """(detects, false positives) from a detector module's docstring."""
    detects = doc.split("Detects: ")[1].split("\n\n")[0].replace("\n", " ").strip()
    fp = doc.split("Known false positives: ")[1].split("\n\n")[0].replace("\n", " ").strip()
    return detects, fp
