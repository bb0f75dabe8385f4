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

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..model import Attempt, Evidence, Finding

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


def slot_filler(cls):
    """A constructor of the frozen slots dataclass ``cls`` taking every field, in order,
    positionally, that fills the slots directly: the same object as ``cls(...)``.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
    (its own ``__setattr__`` refuses), about 1.6k instructions a field; a verdict, its
    findings and their evidence are built twice an attempt (detectors, then from the
    spill), so this halves a few percent of the judging side. Only for classes whose
    ``__init__`` does nothing else (checked)."""
    fields = dataclasses.fields(cls)
    assert cls.__dataclass_params__.frozen and "__slots__" in cls.__dict__
    assert all(f.init for f in fields) and not hasattr(cls, "__post_init__")
    names = [f.name for f in fields]
    env = {"_new": object.__new__, "_cls": cls, **{f"_set_{n}": cls.__dict__[n].__set__ for n in names}}
    body = "".join(f"    _set_{n}(o, {n})\n" for n in names)
    exec(f"def make({', '.join(names)}):\n    o = _new(_cls)\n{body}    return o\n", env)
    return env["make"]


#: ``Evidence(...)``, ``Finding(...)``: every field, positionally.
new_evidence = slot_filler(Evidence)
new_finding = slot_filler(Finding)


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
