"""Renderers: the report as a terminal table, JSON, JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
from typing import Iterable, TextIO

from ..report import CSV_COLUMNS, Report, flat_row

FORMATS = ("table", "json", "jsonl", "csv")


def render(report: Report, fmt: str, out: TextIO, *, color: bool = False, width: int | None = None) -> None:
    if fmt == "json":
        write_json(report, out)
    elif fmt == "jsonl":
        sink = _byte_sink(out)
        if sink is not None:
            write_behind(sink, report.iter_attempt_json_blocks(binary=True))
        else:
            for block in report.iter_attempt_json_blocks():
                out.write(block)
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
        empty = not write_behind(sink, _listed(report.iter_attempt_json_blocks(True, lead=b",\n    ")))
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


def _listed(blocks: Iterable[bytes]) -> Iterable:
    """The blocks of lines each after ``,\n    ``, the first one's comma made the list's ``[``."""
    first = True
    for block in blocks:
        if not block:
            continue
        if first:
            yield b"["
            yield memoryview(block)[1:]
            first = False
        else:
            yield block


#: Blocks (of about a MB: ``report.STORE_BLOCK``, ``report.IN_STEP_LINES``) read ahead of the
#: one being written, at most: a few MB held while the disk is slower than the reading.
WRITE_AHEAD = 4


def write_behind(sink, blocks: Iterable) -> bool:
    """Write ``blocks`` (bytes-like) to the binary stream ``sink`` in order, each written by a
    thread of its own while the next ones are read and put together here: the system call
    that copies a block into the file runs without the GIL, beside the reading and merging of
    the next (one after the other, on the benchmark's 1M file, the report's 200 MB took 0.12 s
    to write and as long to read and merge). Gives whether any block came. An error of the
    writing is raised here, once the blocks read so far are done with."""
    q: queue.Queue = queue.Queue(WRITE_AHEAD)
    failed: list[BaseException] = []
    writer = threading.Thread(target=_drain, args=(q, sink.write, failed), name="forensics-writer", daemon=True)
    writer.start()
    wrote = False
    try:
        for block in blocks:
            if failed:
                break
            q.put(block)
            wrote = True
    finally:
        q.put(None)  # (the writer drains the queue even after an error: this never waits for ever)
        writer.join()
    if failed:
        raise failed[0]
    return wrote


def _drain(q: queue.Queue, write, failed: list) -> None:
    """The writer of ``write_behind``: each block to ``write`` until None comes; after an error,
    the error kept and the rest taken off the queue unwritten."""
    while True:
        block = q.get()
        if block is None:
            return
        if not failed:
            try:
                write(block)
            except BaseException as exc:
                failed.append(exc)


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
