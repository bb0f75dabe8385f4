"""The report: the contract's envelope around attempts and their verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import __version__
from .model import Attempt, InputInfo, Verdict, iso_time
from .reassembly.attempts import MAX_FRAMES_LISTED

SCHEMA = "forensics.report/1"

CSV_COLUMNS = ["id", "kind", "transport", "client_ip", "client_port", "server_ip", "server_port", "name",
               "start", "duration_ms", "verdict", "class", "trigger", "confidence", "summary",
               "hop_from_capture", "hop_low", "hop_high", "hop_server_hops", "hop_method",
               "input", "rule", "history"]


@dataclass(slots=True)
class Report:
    inputs: list[InputInfo]
    attempts: list[Attempt]
    verdicts: list[Verdict]
    rules_version: str
    warnings: list[str] = field(default_factory=list)
    evicted_flows: int = 0

    @property
    def deliberate(self) -> bool:
        return any(v.cls == "deliberate" for v in self.verdicts)

    @property
    def exit_code(self) -> int:
        return 1 if self.deliberate else 0

    def attempt_dicts(self) -> list[dict]:
        return [attempt_dict(a, v) for a, v in zip(self.attempts, self.verdicts)]

    def summary(self) -> dict:
        by_class: dict[str, int] = {}
        by_verdict: dict[str, int] = {}
        for v in self.verdicts:
            by_class[v.cls] = by_class.get(v.cls, 0) + 1
            by_verdict[v.verdict] = by_verdict.get(v.verdict, 0) + 1
        return {"attempts": len(self.attempts), "by_class": by_class, "by_verdict": by_verdict}

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "tool": {"name": "forensics", "version": __version__, "rules_version": self.rules_version},
            "inputs": [i.to_dict() for i in self.inputs],
            "attempts": self.attempt_dicts(),
            "summary": self.summary(),
            "rules_version": self.rules_version,
            "warnings": list(self.warnings),
            "evicted_flows": self.evicted_flows,
        }

    def attempts_frame(self):
        """The attempts as a pandas DataFrame with the CSV columns."""
        import pandas as pd

        return pd.DataFrame([flat_row(d) for d in self.attempt_dicts()], columns=CSV_COLUMNS)


def flat_row(d: dict) -> dict:
    hop = d.get("hop") or {}
    return {
        "id": d["id"], "kind": d["kind"], "transport": d["transport"],
        "client_ip": d["client"]["ip"], "client_port": d["client"]["port"],
        "server_ip": d["server"]["ip"], "server_port": d["server"]["port"], "name": d["name"],
        "start": d["start"], "duration_ms": d["duration_ms"], "verdict": d["verdict"],
        "class": d["class"], "trigger": d["trigger"], "confidence": d["confidence"],
        "summary": d["summary"], "hop_from_capture": hop.get("from_capture"), "hop_low": hop.get("low"),
        "hop_high": hop.get("high"), "hop_server_hops": hop.get("server_hops"),
        "hop_method": hop.get("method"), "input": d["input"], "rule": d["rule"], "history": d["history"],
    }


def attempt_dict(a: Attempt, v: Verdict) -> dict:
    d = {
        "id": a.id, "kind": a.kind, "transport": a.transport,
        "client": a.client.to_dict(), "server": a.server.to_dict(), "name": a.name,
        "start": iso_time(a.start), "duration_ms": a.duration_ms,
        "verdict": v.verdict, "class": v.cls, "trigger": v.trigger, "confidence": v.confidence,
        "summary": v.summary,
    }
    if v.hop is not None:
        d["hop"] = v.hop.to_dict()
    d["evidence"] = [e.to_dict() for e in v.evidence]
    d["input"] = a.input
    d["rule"] = v.rule
    d["history"] = a.history
    d["frames"] = list(a.frames[:MAX_FRAMES_LISTED])
    d["frames_total"] = len(a.frames)
    if a.tcp is not None:
        c = a.tcp
        d["stream"] = a.stream
        d["tcp"] = {
            "packets": {"client": c.packets[0], "server": c.packets[1]},
            "payload_bytes": {"client": c.payload_bytes[0], "server": c.payload_bytes[1]},
            "direction_from": c.direction_from,
            "syn": c.syn.to_dict() if c.syn else None,
            "synack": c.synack.to_dict() if c.synack else None,
            "syn_sent": c.syn_count,
            "first_payload_sends": c.client_payload_sends,
            "retransmissions": {"client": c.retransmissions[0], "server": c.retransmissions[1]},
            "conflicting_segments": {"client": c.conflicts[0], "server": c.conflicts[1]},
            "resets_and_fins": [m.to_dict() for m in c.markers[:32]],
            "icmp": [e.to_dict() for e in c.icmp[:16]],
            "rows_capped": c.detail_capped,
        }
    if a.hello is not None:
        d["tls"] = {"client_hello": a.hello.to_dict(),
                    "server": a.tls_reply.to_dict() if a.tls_reply else None}
    if a.request is not None:
        d["http"] = {"request": a.request.to_dict(),
                     "response": a.response.to_dict() if a.response else None}
    if a.dns is not None:
        t = a.dns
        d["dns"] = {"id": t.txid, "qname": t.qname, "qtype": t.qtype, "query_frames": list(t.query_frames),
                    "query_ttl": t.query_ttl, "responses": [r.to_dict() for r in t.responses],
                    "icmp": [e.to_dict() for e in t.icmp]}
    return d
