"""Renderers: the report as a terminal table, JSON, JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import TextIO

from ..report import CSV_COLUMNS, Report, flat_row

FORMATS = ("table", "json", "jsonl", "csv")


def render(report: Report, fmt: str, out: TextIO, *, color: bool = False, width: int | None = None) -> None:
    if fmt == "json":
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
    elif fmt == "jsonl":
        for d in report.attempt_dicts():
            out.write(json.dumps(d, separators=(",", ":")))
            out.write("\n")
    elif fmt == "csv":
        w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for d in report.attempt_dicts():
            w.writerow(flat_row(d))
    else:
        from .table import render_table

        render_table(report, out, color=color, width=width)


def render_to_string(report: Report, fmt: str) -> str:
    buf = io.StringIO()
    render(report, fmt, buf)
    return buf.getvalue()
