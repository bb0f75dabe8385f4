"""The report: the contract's envelope around attempts and their verdicts."""

from __future__ import annotations

import json
import shutil
import struct
import weakref
from operator import methodcaller
from typing import Iterator

import numpy as np
import orjson

from . import __version__
from .compiled import lines_module
from .errors import UsageError
from .holes import Freer
from .model import MAX_FRAMES_LISTED, Attempt, InputInfo, Verdict, iso_time
from .sources import pcapio

SCHEMA = "forensics.report/1"
#: Characters of the attempts' store read at a time by the renderers (a few hundred
#: attempts: large enough that copying costs no Python step per attempt).
STORE_BLOCK = 1 << 20
#: Lines read at a time from the parts' files in step: about ``STORE_BLOCK`` of text (an attempt's
#: line is 1 to 2 KB).
IN_STEP_LINES = 1024
#: Bytes of a part's file of lines read at a time when the compiled walk merges them.
IN_STEP_READ = 1 << 20

CSV_COLUMNS = ["id", "kind", "transport", "client_ip", "client_port", "server_ip", "server_port", "name",
               "start", "duration_ms", "verdict", "class", "trigger", "confidence", "summary",
               "hop_from_capture", "hop_low", "hop_high", "hop_server_hops", "hop_method",
               "input", "rule", "history"]


class Report:
    """The analysis of some captures: inputs, attempts with their verdicts, warnings.

    Attempts come in the contract's sorted order. A report built by ``analyze``
    holds its attempts on disk (JSON lines in a temporary directory, removed with
    the report), so iterating them costs no memory; for small inputs it also keeps
    the ``Attempt`` and ``Verdict`` objects (``attempts``, ``verdicts``).
    """

    def __init__(self, inputs: list[InputInfo], attempts: list[Attempt] | None, verdicts: list[Verdict] | None,
                 rules_version: str, warnings: list[str] | None = None, evicted_flows: int = 0, *,
                 store: "AttemptStore | None" = None) -> None:
        self.inputs = inputs
        self._attempts = attempts
        self._verdicts = verdicts
        self.rules_version = rules_version
        self.warnings = warnings if warnings is not None else []
        self.evicted_flows = evicted_flows
        self._store = store
        if store is None and (attempts is None or verdicts is None):
            raise ValueError("a report needs its attempts and verdicts, or a store")

    def __repr__(self) -> str:
        return f"<Report {self.summary()['attempts']} attempts from {len(self.inputs)} input(s)>"

    @property
    def attempts(self) -> list[Attempt]:
        if self._attempts is None:
            raise NotHeldError(self.summary()["attempts"])
        return self._attempts

    @property
    def verdicts(self) -> list[Verdict]:
        if self._verdicts is None:
            raise NotHeldError(self.summary()["attempts"])
        return self._verdicts

    @property
    def deliberate(self) -> bool:
        if self._store is not None:
            return self._store.summary["by_class"].get("deliberate", 0) > 0
        return any(v.cls == "deliberate" for v in self._verdicts)

    @property
    def exit_code(self) -> int:
        return 1 if self.deliberate else 0

    def iter_attempt_json(self) -> Iterator[str]:
        """Each attempt as one compact JSON text (the ``jsonl`` line), in order."""
        if self._store is not None:
            yield from self._store.lines()
            return
        for a, v in zip(self._attempts, self._verdicts):
            yield _encode(attempt_dict(a, v))

    def iter_attempt_json_blocks(self, binary: bool = False, lead: bytes | None = None) -> Iterator:
        """The ``jsonl`` lines, in order, as blocks of whole lines each ending in a newline:
        what a renderer copies, without a Python step per attempt when they are on disk.
        ``binary``: as bytes (the lines are ASCII: ``_encode`` escapes the rest). ``lead``
        (bytes only): each line comes after it instead, without its newline (the JSON
        report's ``,\n    `` between attempts)."""
        if self._store is not None:
            yield from self._store.blocks(binary, lead)
            return
        for line in self.iter_attempt_json():
            if lead is not None:
                yield lead + line.encode("ascii")
            else:
                yield (line + "\n").encode("ascii") if binary else line + "\n"

    def read_once(self) -> None:
        """The next pass over the attempts is the last (a report that writes itself once and is
        done): a report kept on disk frees its files' space behind that pass where it reads them
        as bytes (``iter_attempt_json_blocks(binary=True)``), and cannot be read again."""
        if self._store is not None:
            self._store.read_once()

    def iter_attempt_dicts(self) -> Iterator[dict]:
        """Each attempt as the contract's dict, in order, without holding them all."""
        if self._store is not None:
            for line in self._store.lines():
                yield json.loads(line)
            return
        for a, v in zip(self._attempts, self._verdicts):
            yield attempt_dict(a, v)

    def attempt_dicts(self) -> list[dict]:
        return list(self.iter_attempt_dicts())

    def summary(self) -> dict:
        if self._store is not None:
            s = self._store.summary
            return {"attempts": s["attempts"], "by_class": dict(s["by_class"]), "by_verdict": dict(s["by_verdict"])}
        by_class: dict[str, int] = {}
        by_verdict: dict[str, int] = {}
        for v in self._verdicts:
            by_class[v.cls] = by_class.get(v.cls, 0) + 1
            by_verdict[v.verdict] = by_verdict.get(v.verdict, 0) + 1
        return {"attempts": len(self._attempts), "by_class": by_class, "by_verdict": by_verdict}

    def envelope(self) -> dict:
        """The report's dict with ``attempts`` left empty (the renderers stream them)."""
        return {
            "schema": SCHEMA,
            "tool": {"name": "forensics", "version": __version__, "rules_version": self.rules_version},
            "inputs": [i.to_dict() for i in self.inputs],
            "attempts": [],
            "summary": self.summary(),
            "rules_version": self.rules_version,
            "warnings": list(self.warnings),
            "evicted_flows": self.evicted_flows,
        }

    def to_dict(self) -> dict:
        d = self.envelope()
        d["attempts"] = self.attempt_dicts()
        return d

    def attempts_frame(self):
        """The attempts as a pandas DataFrame with the CSV columns."""
        import pandas as pd

        return pd.DataFrame([flat_row(d) for d in self.iter_attempt_dicts()], columns=CSV_COLUMNS)


class NotHeldError(UsageError):
    """The report is too large to hold its attempts as objects."""

    def __init__(self, n: int) -> None:
        super().__init__(f"this report keeps its {n} attempts on disk, not as objects: use "
                         f"iter_attempt_dicts(), or analyze(..., keep_attempts=True) for a small input")


class AttemptStore:
    """The finished attempts' JSON lines, in order, in files that live as long as their owner.

    One file holds them in order; or several (the parts of ``-j N``, each in its own
    order) are read in step, the ``i``-th line coming from file ``order[i]``: the
    report is then written straight from the parts' files, without a merged copy
    written and read back first."""

    def __init__(self, paths: str | list[str], summary: dict, cleanup: str | None = None,
                 order=None) -> None:
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        if len(self.paths) > 1 and order is None:
            raise ValueError("several files of lines need the order to read them in")
        self.order = order  # a sequence of file numbers, one per line (a numpy array)
        self.summary = summary
        self._finalizer = weakref.finalize(self, shutil.rmtree, cleanup, True) if cleanup else None
        self._once = False  # the next pass is the last: it frees the files behind it (``read_once``)
        self._spent = False

    def read_once(self) -> None:
        """The next pass over the lines is the last one: where it reads them as bytes, it frees
        each file's space behind its reads (``holes.Freer``); the store cannot be read again."""
        self._once = True

    def _open(self, binary: bool) -> tuple[list, list[Freer | None]]:
        """The files of a pass (as bytes, or as text), and the freer of each (None where the pass
        is not the last, or reads text): the last pass opens its files for writing too."""
        if self._spent:
            raise ValueError("the report's attempts were read once, their files freed as they were read")
        self._spent = self._once
        frees = self._once and binary
        files = [open(p, "r+b" if frees else "rb") if binary else open(p, "r", encoding="utf-8")
                 for p in self.paths]
        return files, [Freer(f.fileno()) if frees else None for f in files]

    def lines(self) -> Iterator[str]:
        for block in self.blocks():
            yield from block[:-1].split("\n")

    def _in_step(self, binary: bool, lead: bytes | None = None) -> Iterator:
        """The lines of several files, in ``order``, about ``IN_STEP_LINES`` at a time (text, or
        bytes if ``binary``, each line ending in a newline, or after ``lead``: ``blocks``)."""
        files, freers = self._open(True)
        try:
            walk = pcapio.compiled_walk
            # (a build without lead_lines has a merge_lines without its lead: an older _walk.pyx)
            compiled = hasattr(walk, "merge_lines") and (lead is None or hasattr(walk, "lead_lines"))
            blocks = (self._in_step_compiled(files, walk.merge_lines, lead, freers) if compiled
                      else self._in_step_lines(files, lead, freers))
            for block in blocks:
                yield block if binary else block.decode("utf-8")
        finally:
            for f in files:
                f.close()

    def _in_step_lines(self, files: list, lead: bytes | None, freers: list) -> Iterator[bytes]:
        """``_in_step`` without the compiled walk: a line read at a time."""
        readers = [f.readline for f in files]
        order = self.order
        for b in range(0, len(order), IN_STEP_LINES):
            group = [readers[p]() for p in order[b:b + IN_STEP_LINES].tolist()]
            if not all(group) or group[-1][-1:] != b"\n":
                raise ValueError(f"the attempts' files {self.paths} hold fewer lines than the report has")
            for f, freer in zip(files, freers):
                if freer is not None:
                    freer.upto(f.tell())
            yield b"".join(group) if lead is None else _lead_lines(b"".join(group), lead)

    def _in_step_compiled(self, files: list, merge, lead: bytes | None, freers: list) -> Iterator[bytes]:
        """``_in_step`` by ``merge_lines``: each file read into its own buffer, ``IN_STEP_READ``
        bytes at a time, and the lines copied from the buffers in order by compiled code."""
        n = len(files)
        bufs = [bytearray(IN_STEP_READ) for _ in range(n)]
        pos = np.zeros(n, np.int64)
        fill = np.zeros(n, np.int64)
        order = self.order
        for b in range(0, len(order), IN_STEP_LINES):
            block = np.ascontiguousarray(order[b:b + IN_STEP_LINES], np.int16)
            pieces, at = [], 0
            while True:
                got, at = merge(bufs, pos, fill, block, at, lead)
                pieces.append(got)
                if at == len(block):
                    break
                p = int(block[at])  # that file's next line is not whole in its buffer: read on
                buf, keep = bufs[p], int(fill[p] - pos[p])
                buf[:keep] = buf[int(pos[p]):int(fill[p])]
                if keep == len(buf):  # a line longer than the buffer
                    buf.extend(bytes(len(buf)))
                read = files[p].readinto(memoryview(buf)[keep:])
                if not read:
                    raise ValueError(f"the attempts' files {self.paths} hold fewer lines than the report has")
                pos[p], fill[p] = 0, keep + read
                if freers[p] is not None:
                    freers[p].upto(files[p].tell())
            yield pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def blocks(self, binary: bool = False, lead: bytes | None = None) -> Iterator:
        """The lines' text (bytes if ``binary``) in blocks of about ``STORE_BLOCK``
        characters, each cut after a newline. With ``lead`` (bytes): each line after it,
        without its newline (``_walk.lead_lines``, or ``_lead_lines``)."""
        if lead is not None and not binary:
            raise ValueError("lines after a lead are bytes")
        nl = b"\n" if binary else "\n"
        if len(self.paths) > 1:
            yield from self._in_step(binary, lead)
            return
        if lead is not None:
            yield from self._led(lead)
            return
        (fh,), (freer,) = self._open(binary)
        with fh:
            rest = nl[:0]
            while True:
                chunk = fh.read(STORE_BLOCK)
                if freer is not None:
                    freer.upto(fh.tell())
                if not chunk:
                    break
                cut = chunk.rfind(nl) + 1
                if cut:
                    yield rest + chunk[:cut]
                    rest = chunk[cut:]
                else:
                    rest += chunk
            if rest:  # the store's lines all end in a newline; a last line without one is still a line
                yield rest + nl

    def _led(self, lead: bytes) -> Iterator[bytes]:
        """``blocks`` of the one file, each line after ``lead``: read into one buffer, the
        whole lines written from there (a last line without a newline is still a line)."""
        walk = pcapio.compiled_walk
        led = walk.lead_lines if hasattr(walk, "lead_lines") else None
        buf = bytearray(STORE_BLOCK)
        keep = 0
        (fh,), (freer,) = self._open(True)
        with fh:
            while True:
                if keep == len(buf):  # a line longer than the buffer
                    buf.extend(bytes(len(buf)))
                got = fh.readinto(memoryview(buf)[keep:])
                if freer is not None:
                    freer.upto(fh.tell())
                if not got:
                    if keep:
                        yield lead + bytes(buf[:keep])
                    return
                fill = keep + got
                cut = buf.rfind(b"\n", 0, fill) + 1
                if cut:
                    yield led(buf, 0, cut, lead) if led is not None else _lead_lines(bytes(buf[:cut]), lead)
                    keep = fill - cut
                    buf[:keep] = buf[cut:fill]
                else:
                    keep = fill


def _lead_lines(block: bytes, lead: bytes) -> bytes:
    """The lines of ``block`` (each ending in a newline), each after ``lead`` and without its
    newline: ``_walk.lead_lines`` in Python."""
    return lead + block[:-1].replace(b"\n", lead) if block else b""


# The attempt's dict in pieces, so that workers can encode what they know (the
# attempt) and the parent only adds what needs every attempt (id, verdict, stream).
def attempt_head(a: Attempt) -> dict:
    return {"kind": a.kind, "transport": a.transport, "client": a.client.to_dict(),
            "server": a.server.to_dict(), "name": a.name, "start": iso_time(a.start),
            "duration_ms": a.duration_ms}


def verdict_fields(v: Verdict) -> dict:
    d = {"verdict": v.verdict, "class": v.cls, "trigger": v.trigger, "confidence": v.confidence,
         "summary": v.summary}
    if v.hop is not None:
        d["hop"] = v.hop.to_dict()
    d["evidence"] = [e.to_dict() for e in v.evidence]
    return d


def attempt_mid(a: Attempt) -> dict:
    return {"history": a.history, "frames": list(a.frames[:MAX_FRAMES_LISTED]), "frames_total": len(a.frames)}


def attempt_dict(a: Attempt, v: Verdict) -> dict:
    d = {"id": a.id}
    d.update(attempt_head(a))
    d.update(verdict_fields(v))
    d["input"] = a.input
    d["rule"] = v.rule
    d.update(attempt_mid(a))
    if a.tcp is not None:
        d["stream"] = a.stream
    d.update(attempt_tail(a))
    return d


_json_encode = json.JSONEncoder(separators=(",", ":")).encode


def _encode(value) -> str:
    """Compact JSON text of an attempt (or a piece of one), in ASCII.

    orjson encodes an attempt about 3x faster than the standard library (13 against
    40 microseconds). Where it would write something else than ``json.dumps`` with
    ASCII escapes (text outside ASCII, an integer beyond 64 bits) the standard
    encoder writes it. Floats are orjson's shortest round-trip form, which differs
    from Python's only in notation (``0.000099`` for ``9.9e-05``): the same value."""
    return _encode_bytes(value).decode("ascii")


def _encode_bytes(value) -> bytes:
    """``_encode(value)`` as ASCII bytes, as orjson writes it: the attempts' pieces stay bytes
    from the encoder to the report's file (no text decoded, pickled as text, decoded again and
    encoded again on the way out)."""
    try:
        b = orjson.dumps(value)
    except TypeError:
        return _json_encode(value).encode("ascii")
    return b if b.isascii() else _json_encode(value).encode("ascii")


# Keys that mark where one piece ends: JSON escapes the NUL, and a quote that
# opens a key cannot follow a comma inside a string, so these cannot occur in data.
CUT1, CUT2 = "\x00cut1", "\x00cut2"
_SEP1, _SEP2 = b"," + _encode_bytes(CUT1) + b":0,", b"," + _encode_bytes(CUT2) + b":0"


def _inner(d: dict) -> bytes:
    """A dict's compact JSON without its braces."""
    return _encode_bytes(d)[1:-1]


#: the compiled writer of a TCP attempt's pieces, or None (``compiled.lines_module``)
_tcp_pieces = getattr(lines_module(), "tcp_pieces", None)


def attempt_fragments(a: Attempt) -> tuple[bytes, bytes, bytes]:
    """The JSON pieces (ASCII bytes) of an attempt that do not depend on the verdict, id or
    stream: the members of ``attempt_head``, ``attempt_mid`` and ``attempt_tail``, encoded once
    (a TCP attempt's by ``forensics._lines`` where it can, the same bytes)."""
    if _tcp_pieces is not None and a.tcp is not None:
        got = _tcp_pieces(a, a.duration_ms, MAX_FRAMES_LISTED)
        if got is not None:
            return got
    d = attempt_head(a)
    d[CUT1] = 0
    d.update(attempt_mid(a))
    d[CUT2] = 0
    _tail_into(d, a)
    return fragments_of(d)


def fragments_of(d: dict) -> tuple[bytes, bytes, bytes]:
    """``attempt_fragments`` of the dict ``d``: the members of an attempt's head, ``CUT1: 0``,
    the members of its mid, ``CUT2: 0``, the members of its tail."""
    text = _encode_bytes(d)[1:-1]
    head, rest = text.split(_SEP1, 1)
    mid, tail = rest.split(_SEP2, 1)
    return head, mid, tail[1:]


_rules_json: dict[str, bytes] = {}


def verdict_piece(v: Verdict, input_idx: int) -> bytes:
    """The members of an attempt's line between its head and its mid: its verdict's, its
    input and its rule."""
    rule = _rules_json.get(v.rule)
    if rule is None:
        rule = _rules_json[v.rule] = _encode_bytes(v.rule)
    return b"".join((_inner(verdict_fields(v)), b',"input":', b"%d" % input_idx, b',"rule":', rule))


def line_of(head: bytes, vpiece: bytes, mid: bytes, tail: bytes, position: int, stream: int) -> bytes:
    """An attempt's line from its fragments (``attempt_fragments``), its ``verdict_piece``,
    and what needs every part's attempts: its position in the report (0-based; the id is
    ``a`` and the position plus one) and its stream (-1: none)."""
    # (the tail joined as it is: ``b"," + tail`` would copy the longest piece twice more)
    return b"".join((b'{"id":"a', b"%d" % (position + 1), b'",', head, b",", vpiece, b",", mid,
                     b',"stream":%d' % stream if stream >= 0 else b"", b"," if tail else b"", tail, b"}\n"))


#: A line record's lane byte: where its facts come from. The general path's pickled facts
#: record (``pipeline._facts_record``); the DNS lane's transaction as builtins, pickled
#: (``dnslane.facts_of``); or that transaction packed by the compiled writer (``dnslane.unpack``).
LANE_GENERAL, LANE_DNS, LANE_DNS_PACKED = 0, 1, 2


#: A line record's header (``line_record``): a first byte that no pickle starts with (protocol 5
#: starts with 0x80), the lane the facts come from (``LANE_GENERAL``, ``LANE_DNS``, ``LANE_DNS_PACKED``), the verdict's
#: code (``_CODE``), and the lengths of what follows: the line's head, verdict piece, mid and
#: tail, then the pickled key and facts (empty where the verdict stands whatever the controls).
LINE_RECORD = struct.Struct("<BBhIIIIII")
LINE_MAGIC = 0x4C


def line_record(code: int, lane: int, head: bytes, piece: bytes, mid: bytes, tail: bytes, key: bytes,
                facts: bytes) -> bytes:
    """The spill record of an attempt whose verdict was given early (``_Recorder``)."""
    return b"".join((LINE_RECORD.pack(LINE_MAGIC, lane, code, len(head), len(piece), len(mid), len(tail),
                                      len(key), len(facts)), head, piece, mid, tail, key, facts))


def read_line_record(raw) -> tuple:
    """``(code, lane, head, piece, mid, tail, key, facts)`` of a ``line_record`` (bytes, empty
    where it has no key or facts); ValueError where ``raw`` is not a whole one."""
    magic, lane, code, *lens = LINE_RECORD.unpack_from(raw, 0)
    if magic != LINE_MAGIC or LINE_RECORD.size + sum(lens) != len(raw):
        raise ValueError("a spill record is not one that was written: the spill file was changed")
    out, at = [], LINE_RECORD.size
    for n in lens:
        out.append(bytes(raw[at:at + n]))
        at += n
    return (code, lane, *out)


def attempt_line(frags: tuple[bytes, bytes, bytes], v: Verdict, input_idx: int, position: int,
                 stream: int) -> bytes:
    """An attempt's compact JSON line (ASCII bytes, with its newline), byte for byte
    ``_encode(attempt_dict(...))``, from its fragments, its verdict and what needs every
    part's attempts: its position in the report (0-based; the id is ``a`` and the position
    plus one) and its stream (-1: none)."""
    head, mid, tail = frags
    return line_of(head, verdict_piece(v, input_idx), mid, tail, position, stream)


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


def attempt_tail(a: Attempt) -> dict:
    return _tail_into({}, a)


_to_dict = methodcaller("to_dict")


def _tail_into(d: dict, a: Attempt) -> dict:
    """``d`` with the members of ``attempt_tail`` added."""
    if a.tcp is not None:
        c = a.tcp
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
            "resets_and_fins": list(map(_to_dict, c.markers[:32])),
            "icmp": list(map(_to_dict, c.icmp[:16])),
            "rows_capped": c.detail_capped,
        }
        if c.payload_cut:
            d["tcp"]["payload_cut"] = {"client": bool(c.payload_cut & 1), "server": bool(c.payload_cut & 2)}
        if c.fragment_frames:
            d["tcp"]["ip_fragments"] = list(c.fragment_frames)
            d["tcp"]["ip_fragment_ttls"] = list(c.fragment_ttls)
            if c.fragments_disagree:
                d["tcp"]["ip_fragments_disagree"] = True
    if a.hello is not None:
        d["tls"] = {"client_hello": a.hello.to_dict(),
                    "server": a.tls_reply.to_dict() if a.tls_reply else None}
    if a.request is not None:
        d["http"] = {"request": a.request.to_dict(),
                     "response": a.response.to_dict() if a.response else None}
    if a.dns is not None:
        t = a.dns
        d["dns"] = {"id": t.txid, "qname": t.qname, "qtype": t.qtype, "query_frames": list(t.query_frames),
                    "query_ttl": t.query_ttl, "responses": list(map(_to_dict, t.responses)),
                    "icmp": list(map(_to_dict, t.icmp))}
        if t.query_fragments:
            d["dns"]["query_fragments"] = list(t.query_fragments)
    return d
