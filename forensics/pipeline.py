"""The analysis as work units: read and reassemble one partition of the flows,
judge each attempt locally as it finishes, spill it; then one final pass.

A *part* (``run_part``) reads every input, keeps the flows of its partition
(``Reassembler(part, nparts)``), and for each finished attempt runs
``Judge.local``, encodes the attempt's JSON pieces and appends them with its
``Facts`` to a spill file. It keeps only a small index row per attempt, so its
memory follows the live flows, not the attempts. Parts are independent: one
process runs one part; ``-j N`` runs N; a Dask cluster runs them as tasks.

``finalize`` merges the parts' controls, sorts the index (ids ``a1..`` by start,
input, first frame; ``stream`` ranked like Wireshark's ``tcp.stream``), asks
for each verdict and writes the attempts' JSON lines, in order, to the report's
store. Whatever the number of parts, the lines are the same, byte for byte.
"""

from __future__ import annotations

import copyreg
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .classify.engine import RULES_VERSION, Judge
from .detectors.base import Facts
from .detectors.controls import Controls
from .errors import InputError
from .model import Attempt, DnsTransaction, Evidence, Finding, InputInfo, TcpConn
from .reassembly import attempts as attempts_mod
from .reassembly.engine import MAX_LIVE_FLOWS, EngineStats, Reassembler
from .report import AttemptStore, Report, attempt_fragments, attempt_line
from .sources import iter_inputs

#: One row per attempt: its sort key, its tcp.stream key, where its record is.
INDEX_DTYPE = np.dtype([("start", np.float64), ("input", np.int32), ("frame", np.int64), ("sub", np.int32),
                        ("sin", np.int32), ("sfr", np.int64), ("off", np.int64), ("len", np.int64)])
_BLOCK = 65536

ProgressFn = Callable[[int, int, int], None]


def _fast_pickling(cls) -> None:
    """Pickle a dataclass as its constructor's arguments (the default for frozen
    slots dataclasses walks ``dataclasses.fields`` on every object: slow)."""
    import dataclasses
    from operator import attrgetter

    names = [f.name for f in dataclasses.fields(cls) if f.init]
    get = attrgetter(*names)
    copyreg.pickle(cls, lambda obj: (cls, get(obj)))


for _cls in (Facts, Finding, Evidence):
    _fast_pickling(_cls)


@dataclass
class PartResult:
    """What one part hands back: small, picklable (the spill stays on disk unless shipped)."""

    part: int
    infos: list[InputInfo]
    errors: list[str]
    readable: int
    stats: EngineStats
    controls: Controls
    warnings: list[str]
    index: np.ndarray
    spill: str
    spill_bytes: bytes | None = None  # the spill's content, when it travels (Dask)
    kept: list[Attempt] | None = None
    stats_extra: dict = field(default_factory=dict)


class _Spill:
    """Append-only records: pickled (facts, JSON pieces) of each attempt."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "wb", buffering=1 << 20)
        self.size = 0

    def add(self, payload: bytes) -> tuple[int, int]:
        off = self.size
        self._fh.write(payload)
        self.size += len(payload)
        return off, len(payload)

    def close(self) -> None:
        self._fh.close()


def run_part(files: list[str], part: int, nparts: int, workdir: str, *, max_flows: int | None = None,
             keep: bool = False, progress: ProgressFn | None = None, reachable: tuple[str, ...] = ()) -> PartResult:
    """Analyse partition ``part`` of ``nparts`` of the flows in ``files``, up to the local verdict stage."""
    judge = Judge([], reachable)
    spill = _Spill(os.path.join(workdir, f"part{part}.spill"))
    blocks: list[np.ndarray] = []
    rows: list[tuple] = []
    kept: list[Attempt] | None = [] if keep else None
    dumps = pickle.dumps

    def record(found: list[Attempt]) -> None:
        for k, a in enumerate(found):
            facts = judge.local(a)
            off, ln = spill.add(dumps((facts, attempt_fragments(a)), 5))
            sin, sfr = a.tcp.stream if a.tcp is not None else (-1, -1)
            rows.append((a.start, a.input, a.frames[0] if a.frames else 0, k, sin, sfr, off, ln))
            if kept is not None:
                kept.append(a)
        if len(rows) >= _BLOCK:
            blocks.append(np.array(rows, INDEX_DTYPE))
            rows.clear()

    def emit(item: object) -> None:
        if isinstance(item, TcpConn):
            record(attempts_mod.from_tcp(item))
        elif isinstance(item, DnsTransaction):
            record([attempts_mod.from_dns(item)])

    engine = Reassembler(emit, max_flows=max_flows or MAX_LIVE_FLOWS, part=part, nparts=nparts)
    infos: list[InputInfo] = []
    errors: list[str] = []
    readable = 0
    try:
        for idx, (info, batches) in enumerate(iter_inputs(files, progress)):
            infos.append(info)
            try:
                for b_rows, buf in batches:
                    engine.feed(idx, b_rows, buf)
                readable += 1
            except InputError as exc:
                errors.append(str(exc))
                info.warnings.append(str(exc))
        engine.flush()
    finally:
        spill.close()
    if rows:
        blocks.append(np.array(rows, INDEX_DTYPE))
    index = np.concatenate(blocks) if blocks else np.empty(0, INDEX_DTYPE)
    return PartResult(part, infos, errors, readable, engine.stats, judge.controls, judge.warnings,
                      index, spill.path, kept=kept)


def _merge_warnings(dst: list[str], src: list[str]) -> None:
    for w in src:
        if w not in dst:
            dst.append(w)


def finalize(results: list[PartResult], workdir: str, *, max_flows: int | None = None,
             cleanup: str | None = None, progress: Callable[[int, int], None] | None = None) -> Report:
    """Sort, number, judge and write every attempt of every part: the report."""
    results = sorted(results, key=lambda r: r.part)
    first = results[0]
    infos = first.infos
    if not first.readable:
        errs = first.errors
        raise InputError(errs[0] if len(errs) == 1 else "; ".join(errs[:3]))
    warnings: list[str] = []
    for info in infos:
        warnings.extend(f"{info.path}: {w}" for w in info.warnings)
    evicted = sum(r.stats.evicted for r in results)
    if evicted:
        warnings.append(f"{evicted} connections were finished early because more than "
                        f"{max_flows or MAX_LIVE_FLOWS} were live at once")
    for r in results:
        _merge_warnings(warnings, r.warnings)

    judge = Judge(warnings, first.controls.reachable)
    for r in results:
        judge.controls.merge(r.controls)

    sizes = [len(r.index) for r in results]
    n = sum(sizes)
    idx = np.concatenate([r.index for r in results]) if n else np.empty(0, INDEX_DTYPE)
    part_of = np.repeat(np.arange(len(results), dtype=np.int32), sizes)
    order = np.lexsort((idx["sub"], idx["frame"], idx["input"], idx["start"]))
    tcp = idx["sin"] >= 0
    skey = (idx["sin"].astype(np.int64) << np.int64(40)) | idx["sfr"]
    rank = np.full(n, -1, np.int64)
    if tcp.any():
        _, inv = np.unique(skey[tcp], return_inverse=True)
        rank[tcp] = inv
    o_part = part_of[order].tolist()
    o_off = idx["off"][order].tolist()
    o_len = idx["len"][order].tolist()
    o_input = idx["input"][order].tolist()
    o_rank = rank[order].tolist()

    kept = all(r.kept is not None for r in results)
    base = np.cumsum([0] + sizes)
    attempts: list[Attempt] | None = [] if kept else None
    verdicts = [] if kept else None
    by_class: dict[str, int] = {}
    by_verdict: dict[str, int] = {}
    fds = [os.open(r.spill, os.O_RDONLY) for r in results]
    out_path = os.path.join(workdir, "attempts.jsonl")
    pread, loads = os.pread, pickle.loads
    try:
        with open(out_path, "w", encoding="utf-8", buffering=1 << 20) as out:
            for pos in range(n):
                p = o_part[pos]
                facts, frags = loads(pread(fds[p], o_len[pos], o_off[pos]))
                v = judge.verdict(facts)
                stream = o_rank[pos] if o_rank[pos] >= 0 else None
                aid = f"a{pos + 1}"
                out.write(attempt_line(aid, frags, v, o_input[pos], stream))
                out.write("\n")
                by_class[v.cls] = by_class.get(v.cls, 0) + 1
                by_verdict[v.verdict] = by_verdict.get(v.verdict, 0) + 1
                if kept:
                    i = int(order[pos])
                    a = results[p].kept[i - int(base[p])]
                    object.__setattr__(a, "id", aid)
                    if a.tcp is not None:
                        object.__setattr__(a, "stream", stream)
                    attempts.append(a)
                    verdicts.append(v)
                if progress is not None and pos % 4096 == 0:
                    progress(pos, n)
    finally:
        for fd in fds:
            os.close(fd)
        for r in results:
            try:
                os.unlink(r.spill)
            except OSError:
                pass
    summary = {"attempts": n, "by_class": by_class, "by_verdict": by_verdict}
    store = AttemptStore(out_path, summary, cleanup)
    return Report(infos, attempts, verdicts, RULES_VERSION, warnings, evicted, store=store)


def new_workdir() -> str:
    return tempfile.mkdtemp(prefix="forensics-")


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
