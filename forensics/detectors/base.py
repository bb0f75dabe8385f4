"""What every detector has: a name, what it detects, its known false positives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..model import Attempt, Evidence, Finding


class Detector(Protocol):
    name: str
    detects: str
    false_positives: str

    def run(self, attempt: Attempt, ctx: "Context") -> list[Finding]: ...


@dataclass(slots=True)
class Context:
    """Facts across attempts of one analysis: each attempt's controls."""

    # server ip -> names whose exchange completed there
    ok_names_by_server: dict[str, set[str]] = field(default_factory=dict)
    # server ip -> number of attempts that got any answer from the server
    answered_by_server: dict[str, int] = field(default_factory=dict)


def ev(attempt_input: int, frame: int, signal: str, detail: str) -> Evidence:
    return Evidence(attempt_input, frame, signal, detail)


def finding(detector: str, signal: str, strength: float, detail: str,
            evidence: list[Evidence] | tuple[Evidence, ...] = (), **data) -> Finding:
    return Finding(detector, signal, strength, detail, tuple(evidence), tuple(sorted(data.items())))
