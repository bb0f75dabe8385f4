"""The terminal table: one row per attempt, then the summary and warnings."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.table import Table

from ..model import Endpoint
from ..report import Report

CLASS_STYLE = {"ok": "green", "deliberate": "bold red", "middlebox-fault": "yellow",
               "endpoint": "cyan", "inconclusive": "magenta"}


def render_table(report: Report, out: TextIO, *, color: bool = False, width: int | None = None) -> None:
    console = Console(file=out, force_terminal=color, no_color=not color, width=width or 200,
                      highlight=False, soft_wrap=False)
    t = Table(show_lines=False, pad_edge=False, expand=False)
    for col in ("id", "time", "kind", "client → server", "name", "history", "verdict", "summary"):
        t.add_column(col, overflow="fold", no_wrap=col in ("id", "time", "kind", "verdict"))
    for d in report.iter_attempt_dicts():
        style = CLASS_STYLE.get(d["class"], "")
        verdict = d["verdict"] + (f" [{d['trigger']}]" if d["trigger"] not in ("none", "unknown") else "")
        if d.get("hop") is not None:
            verdict += f" @hop {d['hop']['from_capture']}"
        t.add_row(d["id"], d["start"][11:23], d["kind"], f"{_ep(d['client'])} → {_ep(d['server'])}",
                  d["name"] or "", d["history"], f"[{style}]{verdict}[/]" if style else verdict, d["summary"])
    console.print(t)
    s = report.summary()
    parts = ", ".join(f"{k} {n}" for k, n in sorted(s["by_verdict"].items(), key=lambda kv: -kv[1]))
    console.print(f"{s['attempts']} attempts in {len(report.inputs)} input(s), "
                  f"{sum(i.packets for i in report.inputs)} packets: {parts or 'none'}")
    console.print(f"rules {report.rules_version}")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}" if color else f"warning: {w}")


def _ep(d: dict) -> str:
    return str(Endpoint(d["ip"], d["port"]))
