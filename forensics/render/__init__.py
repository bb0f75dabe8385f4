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
        write_json(report, out)
    elif fmt == "jsonl":
        sink = _byte_sink(out)
        for block in report.iter_attempt_json_blocks(binary=sink is not None):
            (sink or out).write(block)
    elif fmt == "csv":
        w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for d in report.iter_attempt_dicts():
            w.writerow(flat_row(d))
    else:
        from .table import render_table

        render_table(report, out, color=color, width=width)


_HOLE = "\x00attempts\x00"


def write_json(report: Report, out: TextIO) -> None:
    """The report's JSON, streamed: the envelope indented, one attempt per line."""
    env = report.envelope()
    env["attempts"] = _HOLE
    head, tail = json.dumps(env, indent=2).split(json.dumps(_HOLE), 1)
    out.write(head)
    sink = _byte_sink(out)
    empty = True
    if sink is not None:
        # each attempt's line after ",\n    ", the first one's comma made the list's "["
        for block in report.iter_attempt_json_blocks(True, lead=b",\n    "):
            if not block:
                continue
            if empty:
                sink.write(b"[")
                sink.write(memoryview(block)[1:])
                empty = False
            else:
                sink.write(block)
    else:
        lead = "[\n    "
        for block in report.iter_attempt_json_blocks():
            # attempts' JSON texts hold no raw newline (JSON escapes it in strings)
            out.write(lead)
            out.write(block[:-1].replace("\n", ",\n    "))
            lead, empty = ",\n    ", False
    out.write("[]" if empty else "\n  ]")
    out.write(tail)
    out.write("\n")


def _byte_sink(out: TextIO):
    """The binary stream under ``out``, flushed up to here, or None (a ``StringIO``).

    The attempts' lines are ASCII: written as bytes they skip a decode and an
    encode of the whole store (a fifth of a gigabyte for a million packets)."""
    buffer = getattr(out, "buffer", None)
    if buffer is None or not hasattr(buffer, "write"):
        return None
    out.flush()
    return buffer


def render_to_string(report: Report, fmt: str) -> str:
    buf = io.StringIO()
    render(report, fmt, buf)
    return buf.getvalue()
