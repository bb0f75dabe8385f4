"""The analysis as work units: read and reassemble one partition of the flows,
judge each attempt locally as it finishes, spill it; then one final pass.

A *part* (``run_part``) reads every input, keeps the flows of its partition
(``Reassembler(part, nparts)``; with the compiled walk it decodes only the
records of its partition and those every part needs: ``sources._walk.route``),
and for each finished attempt (handed on by the engine a few dozen at a time,
``FINISH_BATCH``, each step below run over them in turn) runs
``Judge.local``, encodes the attempt's JSON pieces and appends them with its
``Facts`` to a spill file; where the controls cannot change its verdict
(``Judge.early``: most attempts), it gives the verdict there and spills the
encoded verdict instead (``_Recorder``). The common DNS transactions (one whole answer
from the server asked) take a shorter way to the same records: ``forensics.dnslane``; so do
the common TLS attempts and HTTP exchanges (a ServerHello or a status line, nothing else to
say): ``forensics.tlslane``.
It writes a small index row per attempt to disk,
and sorts the rows there (``ordering``), so its memory follows the live flows,
not the attempts. Parts are independent: one
process runs one part; ``-j N`` runs N; a Dask cluster runs them as tasks.

``finalize`` merges the parts' controls, numbers the attempts from every
part's index (``number``: ids ``a1..`` by start, input, first frame; ``stream``
ranked like Wireshark's ``tcp.stream``; merged and ranked on disk, a block at a
time), has each part write its attempts'
final JSON lines with their verdicts (``judge_part``: the verdicts not yet
given, and the early ones checked with ``Judge.stands``), and puts the parts'
lines in order in the report's store (``assemble``). Whatever the number of
parts, the lines are the same, byte for byte.
"""

from __future__ import annotations

import copyreg
import dataclasses
import errno
import functools
import gc
import os
import pickle
import shutil
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Callable, Iterator

import numpy as np

from .classify.engine import RULES_VERSION, Judge
from .detectors.base import Facts, new_facts
from .detectors.controls import ControlSet, cases_of
from . import dnslane
from .dnslane import DnsLane
from .compiled import lines_module
from .errors import ForensicsError, InputError
from .holes import Freer
from .ordering import Appender, DiskArray, merged, sort_file
from .model import (VERDICT_CLASS, Attempt, DnsTransaction, Evidence, InputInfo, TcpConn, Verdict, new_evidence,
                    new_finding, slot_reader, struct_of)
from .reassembly import attempts as attempts_mod
from .reassembly.engine import MAX_LIVE_FLOWS, EngineStats, Reassembler
from .report import (LANE_GENERAL, LINE_MAGIC, LINE_RECORD, AttemptStore, Report, attempt_fragments, attempt_line,
                     line_of, line_record, read_line_record, verdict_piece)
from .sources import iter_inputs
from .tlslane import TlsLane

#: One row per attempt: its sort key, its tcp.stream key, where its record is, and the order
#: in which the part found it (``seq``: where its ``Attempt`` is in a part's kept list).
INDEX_DTYPE = np.dtype([("start", np.float64), ("input", np.int32), ("frame", np.int64), ("sub", np.int32),
                        ("sin", np.int32), ("sfr", np.int64), ("off", np.int64), ("len", np.int64),
                        ("seq", np.int64)])
#: An index row packed by ``struct`` (``_Recorder`` appends them to a buffer: ``np.array`` of a list of
#: tuples took 330 ns a row, converting field by field).
_INDEX_ROW = struct_of(INDEX_DTYPE)
#: The contract's order of the attempts: start, input, first frame, then the order within a connection.
SORT_KEYS = ("start", "input", "frame", "sub")
#: A TCP attempt's stream key (input << 40 | the connection's first frame) and its place in the report.
_STREAM_DTYPE = np.dtype([("key", np.int64), ("pos", np.int64)])
_RANKED_DTYPE = np.dtype([("pos", np.int64), ("rank", np.int64)])
#: Rows numbered at a time in ``number`` (a few MB of arrays).
NUMBER_BLOCK = 1 << 18
_BLOCK = 65536

ProgressFn = Callable[[int, int, int], None]
#: ``stage(name, done, total)``: after reading, "finishing" (the flows still open,
#: finished) then "judging" (the attempts given their verdicts).
StageFn = Callable[[str, int, int], None]
#: Attempts judged between two progress reports.
JUDGE_TICK = 4096
#: Stage 2 reads a block's spill records (``JUDGE_TICK`` of them, in report order) by ranges: the
#: records sorted by place, one ``pread`` for those that lie less than this many bytes apart. The
#: spill is in the order attempts finished (a DNS query's up to its 30 s linger after the
#: connections beside it), so a block's records sit in a few runs: on the 1M benchmark file,
#: 8,611 reads of 1.17 times the spill's bytes instead of 160,980 reads, one per attempt, each
#: a system call (0.7 us here, and the calls of two processes at once slowed each other).
SPILL_GAP = 4096
#: Net growth in objects the cyclic collector tracks (made minus freed: CPython's generation-0
#: count, which counts on while the automatic collector is off) at which a collection by hand
#: runs: the bound on the cyclic garbage that could pile up (half a million objects of 50 to
#: 200 bytes: tens of MB) while ``collector_by_hand`` has the automatic collector off.
GC_GROWTH = 500_000


class _Ticker:
    """Called after each batch; collects generations 0 and 1 once the tracked objects have grown
    by ``GC_GROWTH`` since the last collection. (An object, not a closure: compiled by Cython, a
    closure is kept in one object with its own scope, a cycle.)"""

    __slots__ = ("growth", "collections")

    def __init__(self, growth: int = GC_GROWTH) -> None:
        self.growth = growth
        self.collections = 0

    def __call__(self) -> None:
        if gc.get_count()[0] >= self.growth:
            gc.collect(1)
            self.collections += 1


@contextmanager
def collector_by_hand(growth: int = GC_GROWTH) -> Iterator[Callable[[], None]]:
    """Pause Python's automatic cyclic garbage collector; yield ``tick``, to call after each batch.

    The analysis makes no reference cycles (``tests/test_gc.py`` checks it): an
    attempt's objects go by their reference counts when it is done. The automatic
    collector still walks the live objects, and the live flows are hundreds of
    thousands of them: at 1M packets of the benchmark its walks took 4.0 s, a tenth
    of the run, for nothing. A collection every 16 batches by hand (session 15)
    still cost 0.42 and 0.51 s at 1M packets (5 % of the run): each walks every object
    made since the one before that is still alive, which is most of the live flows
    (closed connections linger 15 s, DNS queries 30 s).

    So ``tick`` collects only when the objects the collector tracks have grown, net,
    by ``growth`` since the last collection. While flows come and go, made and freed
    balance and no collection runs; a cycle that slips in is never freed by its
    reference counts, so cycles (or live flows) piling up make the count grow and
    bring a collection, which frees the cycles (and moves the survivors to the old
    generation, which waits until the collector is back on).
    """
    was_on = gc.isenabled()
    gc.disable()
    tick = _Ticker(growth)
    try:
        yield tick
    finally:
        if was_on:
            gc.enable()


def _fast_pickling(cls) -> None:
    """Pickle a dataclass as its constructor's arguments (the default for frozen
    slots dataclasses walks ``dataclasses.fields`` on every object: slow)."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    get = attrgetter(*names)
    copyreg.pickle(cls, lambda obj: (cls, get(obj)))


# the evidence of the verdicts that ``-j`` workers send back (the spill holds no class: below)
_fast_pickling(Evidence)

_FACTS_NAMES = [f.name for f in dataclasses.fields(Facts)]
assert _FACTS_NAMES[-2:] == ["findings", "features"], "the spill record puts these two last"
_facts_fields = attrgetter(*_FACTS_NAMES[:-2])


def _facts_record(facts: Facts) -> tuple:
    """``facts`` as builtins only, its findings and their evidence as tuples. The spill
    pickles one per attempt: with no class in it, pickling looks up no class by name
    and calls no reducer (that took a fifth of the judging side's time)."""
    return (*_facts_fields(facts),
            tuple([(f.detector, f.signal, f.strength, f.detail,
                    tuple([(e.input, e.packet, e.signal, e.detail) for e in f.evidence]), f.data)
                   for f in facts.findings]),
            facts.features)


def _facts_from_record(rec: tuple) -> Facts:
    """The ``Facts`` that ``_facts_record`` made ``rec`` of."""
    *head, findings, features = rec
    return new_facts(*head, tuple([new_finding(det, sig, strength, detail,
                                               tuple([new_evidence(*e) for e in evidence]), data)
                                   for det, sig, strength, detail, evidence, data in findings]), features)


def _spilled_lines(bufs: list, ats: list, lens: list, inputs: list, positions: list, ranks: list,
                   codes: np.ndarray, stands: Callable, loads: Callable) -> list:
    """The lines of a block's line records whose verdict stands, as ``line_of`` writes them:
    a list of bytes (the lines of a run of such records, joined) and ints (the place in the
    block of a record whose line the caller makes: a pickled record, or a verdict that does
    not stand). ``bufs[k][ats[k]:ats[k] + lens[k]]``: record k; ``codes[k]`` is set for
    each line written. ``_lines.spilled_lines`` does the same in compiled code."""
    out: list = []
    run: list[bytes] = []
    for k, (buf, at, ln) in enumerate(zip(bufs, ats, lens)):
        got = _standing_line(buf, at, ln, inputs[k], positions[k], ranks[k], stands, loads)
        if got is None:  # the caller makes this one: the lines before it go first
            if run:
                out.append(b"".join(run))
                run = []
            out.append(k)
        else:
            codes[k], line = got
            run.append(line)
    if run:
        out.append(b"".join(run))
    return out


def _standing_line(buf, at: int, ln: int, inp: int, pos: int, rank: int, stands: Callable,
                   loads: Callable) -> tuple[int, bytes] | None:
    """(verdict code, line) of the line record ``buf[at:at + ln]`` whose verdict stands; None for
    a pickled record, a damaged one, or a verdict the controls overturn."""
    head_size = LINE_RECORD.size
    if ln < head_size or buf[at] != LINE_MAGIC:
        return None
    _, _, code, nh, npc, nm, nt, nk, nf = LINE_RECORD.unpack_from(buf, at)
    if head_size + nh + npc + nm + nt + nk + nf != ln:
        return None
    h = at + head_size
    p = h + nh
    m = p + npc
    t = m + nm
    e = t + nt
    if nk and not stands(inp, loads(buf[e:e + nk])):
        return None
    if pos < 0:
        raise ValueError("spilled_lines: a negative position")
    return code, line_of(buf[h:p], buf[p:m], buf[m:t], buf[t:e], pos, rank)


#: ``Judge.stands`` answers remembered in stage 2 (``_StandsMemo``) before the memory is cleared:
#: a key and an input each, some 200 bytes; 65,536 of them are about 13 MB.
MAX_STANDS_MEMO = 1 << 16


class _StandsMemo:
    """``Judge.stands`` asked with a pickled key, each answer remembered by the input and the
    key's bytes. Stage 2's controls no longer change, so a key asked again gets the same answer:
    the DNS lane's keys repeat (a name asked of the same resolver, given the same answer; on
    the benchmark's 1M file, 26,655 distinct keys among 95,381), and a repeat is neither
    unpickled nor checked again."""

    __slots__ = ("stands", "loads", "seen")

    def __init__(self, stands: Callable, loads: Callable) -> None:
        self.stands, self.loads = stands, loads
        self.seen: dict[tuple[int, bytes], bool] = {}

    def ask(self, inp: int, raw: bytes) -> bool:
        """``Judge.stands(inp, loads(raw))``, found once for each input and key."""
        key = (inp, raw)
        got = self.seen.get(key)
        if got is None:
            got = self.stands(inp, self.loads(raw))
            if len(self.seen) >= MAX_STANDS_MEMO:
                self.seen.clear()
            self.seen[key] = got
        return got


def _writer() -> Callable:
    """Stage 2's writer of the lines whose verdict stands: compiled where it is built and
    reads the header ``LINE_RECORD`` is."""
    mod = lines_module()
    if mod is not None and getattr(mod, "LINE_FORMAT", None) == LINE_RECORD.format \
            and getattr(mod, "LINE_MAGIC", None) == LINE_MAGIC:
        return mod.spilled_lines
    return _spilled_lines


spilled_lines = _writer()


@dataclass
class PartResult:
    """What one part hands back: small, picklable (the spill stays on disk, where the part ran)."""

    part: int
    infos: list[InputInfo]
    errors: list[str]
    readable: int
    stats: EngineStats
    controls: ControlSet
    warnings: list[str]
    index: DiskArray | np.ndarray  # sorted in the contract's order (an array once it has left its machine)
    spill: str
    kept: list[Attempt] | None = None
    stats_extra: dict = field(default_factory=dict)
    #: on a Dask worker: the sorted index where the part ran, for its stage 2 there (``index``
    #: then travels to the client as an array, which writes it to its own disk)
    worker_index: DiskArray | None = None


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


#: Whether the first stage gives the verdicts the controls cannot change (``Judge.early``);
#: the tests turn it off to compare.
EARLY_VERDICTS = True
#: Whether the common DNS transactions take the lane (``forensics.dnslane``; with the early
#: verdicts only); the tests turn it off to compare.
DNS_LANE = True
#: Whether the common TLS attempts and HTTP exchanges take the lane (``forensics.tlslane``; with the early
#: verdicts only); the tests turn it off to compare.
TLS_LANE = True


def _index_row(a: Attempt, sub: int, off: int, ln: int, seq: int) -> bytes:
    """The index row (``INDEX_DTYPE``) of attempt ``a``, the ``sub``-th of its connection, spilled
    at ``off`` (``ln`` bytes), the ``seq``-th the part found."""
    start, inp, frames, tcp = _ROW_OF(a)
    sin, sfr = tcp.stream if tcp is not None else (-1, -1)
    return _INDEX_ROW.pack(start, inp, frames[0] if frames else 0, sub, sin, sfr, off, ln, seq)


#: what ``_index_row`` reads of an attempt, in one call (``model.slot_reader``)
_ROW_OF = slot_reader(Attempt, "start", "input", "frames", "tcp")


class _Recorder:
    """What ``run_part`` does with each finished connection or DNS transaction: judge its attempts
    locally, spill their facts and JSON pieces, and index them. (An object rather than nested
    functions: compiled by Cython, those share one closure that holds them, a cycle per run.)

    A spill record is of one of two kinds. A pickled ``(facts, fragments)``: stage 2 gives the
    verdict. A line record (``line_record``) for an attempt whose verdict ``Judge.early``
    found: its verdict's code and its line's pieces, and where the controls could still
    change the verdict, the key ``Judge.stands`` is asked with and the facts, each pickled
    apart. Most attempts are of that kind: stage 2 writes their line as it is, unpickling
    at most the key (``spilled_lines``), and reads the facts back only where the verdict
    does not stand. A record of the DNS lane (``record_laned``, made whole by ``DnsLane.record``)
    has in place of the facts the transaction, packed or as pickled builtins, from which stage 2
    makes them (``dnslane.raw_of``, ``dnslane.facts_of``)."""

    def __init__(self, judge: Judge, spill: _Spill, index_fh, keep: bool) -> None:
        self.judge, self.spill, self.index_fh = judge, spill, index_fh
        self.rows = bytearray()  # index rows not yet written (``_INDEX_ROW``)
        self.count = 0
        self.kept: list[Attempt] | None = [] if keep else None
        # a kept attempt's Verdict object is made in stage 2
        self.early = judge.early if EARLY_VERDICTS and not keep else None
        lane = DnsLane(judge) if DNS_LANE and self.early is not None else None
        self.lane = lane if lane is not None and lane.open else None
        tls = TlsLane(judge) if TLS_LANE and self.early is not None else None
        self.tls = tls if tls is not None and tls.open else None

    def record_items(self, items: list) -> None:
        """Record finished connections and DNS transactions, in the order they were done
        (the engine hands them on ``FINISH_BATCH`` at a time, a new list each time)."""
        found: list[Attempt] = []
        subs: list[int] = []
        laned: list[DnsTransaction] = []
        tls_laned: list[tuple[Attempt, bytes]] = []
        from_tcp, from_dns = attempts_mod.from_tcp, attempts_mod.from_dns
        takes = self.lane.takes if self.lane is not None else None
        tls_take = self.tls.take if self.tls is not None else None
        for item in items:
            if isinstance(item, TcpConn):
                got = from_tcp(item)
                if tls_take is not None and len(got) == 1:
                    piece = tls_take(got[0])
                    if piece is not None:
                        tls_laned.append((got[0], piece))
                        continue
                found.extend(got)
                subs.extend(range(len(got)))
            elif isinstance(item, DnsTransaction):
                if takes is not None and takes(item):
                    laned.append(item)
                else:
                    found.append(from_dns(item))
                    subs.append(0)
        self.record(found, subs)
        if laned:
            self.record_laned(laned)
        if tls_laned:
            self.record_tls(tls_laned)

    def record_laned(self, txns: list[DnsTransaction]) -> None:
        """Spill and index the DNS transactions the lane takes (``forensics.dnslane``): their
        early verdict's record, as ``DnsLane.record`` makes it."""
        add, row, record = self.spill.add, self.rows.extend, self.lane.record
        pack = _INDEX_ROW.pack
        c = _CODE[self.lane.verdict.verdict]
        seq = self.count
        for i, t in enumerate(txns):
            start, inp, frame, rec = record(t, c)
            off, ln = add(rec)
            row(pack(start, inp, frame, 0, -1, -1, off, ln, seq + i))
        self._recorded(len(txns))

    def record_tls(self, laned: list[tuple[Attempt, bytes]]) -> None:
        """Spill and index the TLS and HTTP attempts the lane took (``forensics.tlslane``), with their
        verdict's piece: an early verdict's record whose verdict stands whatever the controls
        hold (no key, no facts)."""
        add, row = self.spill.add, self.rows.extend
        c = _CODE[self.tls.verdict.verdict]
        seq = self.count
        for i, (a, piece) in enumerate(laned):
            head, mid, tail = attempt_fragments(a)
            off, ln = add(line_record(c, LANE_GENERAL, head, piece, mid, tail, b"", b""))
            row(_index_row(a, 0, off, ln, seq + i))
        self._recorded(len(laned))

    def record(self, found: list[Attempt], subs: list[int]) -> None:
        """Judge, encode, spill and index ``found``, each step over all of them in turn;
        ``subs[i]``: the place of ``found[i]`` among its connection's attempts."""
        add, dumps, row, kept = self.spill.add, pickle.dumps, self.rows.extend, self.kept
        early, code = self.early, _CODE
        seq = self.count
        all_facts = list(map(self.judge.local, found))
        gots = list(map(early, all_facts)) if early is not None else [None] * len(found)
        frags = list(map(attempt_fragments, found))
        for i, (a, k, facts, got, frag) in enumerate(zip(found, subs, all_facts, gots, frags)):
            if got is None:
                payload = dumps((_facts_record(facts), frag), 5)
            else:
                v, key = got
                head, mid, tail = frag
                asked = key is not None  # the key and the facts, only where the controls can still speak
                payload = line_record(code[v.verdict], LANE_GENERAL, head, verdict_piece(v, a.input), mid, tail,
                                      dumps(key, 5) if asked else b"",
                                      dumps(_facts_record(facts), 5) if asked else b"")
            off, ln = add(payload)
            row(_index_row(a, k, off, ln, seq + i))
            if kept is not None:
                kept.append(a)
        self._recorded(len(found))

    def _recorded(self, n: int) -> None:
        """``n`` more attempts spilled and indexed: counted, and the index written a block at a time."""
        self.count += n
        if len(self.rows) >= _BLOCK * _INDEX_ROW.size:
            self.write_rows()

    def write_rows(self) -> None:
        if self.rows:
            self.index_fh.write(self.rows)
            self.rows.clear()


def run_part(files: list[str], part: int, nparts: int, workdir: str, *, max_flows: int | None = None,
             keep: bool = False, progress: ProgressFn | None = None, reachable: tuple[str, ...] = (),
             stage: StageFn | None = None) -> PartResult:
    """Analyse partition ``part`` of ``nparts`` of the flows in ``files``, up to the local verdict stage."""
    judge = Judge([], reachable, cases_of(files))
    spill = _Spill(os.path.join(workdir, f"part{part}.spill"))
    # the index goes to disk as the attempts are found (60 bytes an attempt: 120 MB for a
    # 2M-flow SYN flood), and is sorted there once the flows are gone
    index_path = os.path.join(workdir, f"part{part}.index")
    index_fh = open(index_path, "wb")
    rec = _Recorder(judge, spill, index_fh, keep)
    engine = Reassembler(rec.record_items, max_flows=max_flows or MAX_LIVE_FLOWS, part=part, nparts=nparts)
    infos: list[InputInfo] = []
    errors: list[str] = []
    readable = 0
    try:
        with collector_by_hand() as gc_tick:
            for idx, (info, batches) in enumerate(iter_inputs(files, progress, part, nparts)):
                infos.append(info)
                try:
                    for b_rows, buf, now, made in batches:
                        engine.feed(idx, b_rows, buf, now, made)
                        gc_tick()
                    readable += 1
                except InputError as exc:
                    errors.append(str(exc))
                    info.warnings.append(str(exc))
                engine.end_input(idx, info.end_ts)  # also for an input cut short by an error
            engine.flush((lambda done, total: stage("finishing", done, total)) if stage is not None else None)
        stats = engine.stats
        del engine  # the live flows go before the index comes back
        _give_back_memory()
        rec.write_rows()
    finally:
        spill.close()
        index_fh.close()
    found = DiskArray(index_path, INDEX_DTYPE)
    index = sort_file(found, os.path.join(workdir, f"part{part}.sorted"), SORT_KEYS)
    os.unlink(index_path)
    return PartResult(part, infos, errors, readable, stats, judge.controls, judge.warnings,
                      index, spill.path, kept=rec.kept)


def _merge_warnings(dst: list[str], src: list[str]) -> None:
    for w in src:
        if w not in dst:
            dst.append(w)


def check_readable(results: list[PartResult]) -> None:
    """Raise the inputs' error when not one of them could be read."""
    first = min(results, key=lambda r: r.part)
    if not first.readable:
        errs = first.errors
        raise InputError(errs[0] if len(errs) == 1 else "; ".join(errs[:3]))


def merge_controls(results: list[PartResult], adopt: bool = False) -> ControlSet:
    """Every part's controls in one, in part order (the same however many parts); ``adopt``:
    as ``merge_control_sets`` does, the parts' controls then given up by the caller."""
    return merge_control_sets([r.controls for r in sorted(results, key=lambda r: r.part)], adopt)


def merge_control_sets(sets: list[ControlSet], adopt: bool = False) -> ControlSet:
    """``sets`` (every part's controls, in part order) merged into a new one; ``sets`` are left as
    they were (a merge copies what it takes). With ``adopt``, for a caller that gives them
    all up: the first set is the merged one, the others merged into it, and none is copied
    twice (one process's stage 2 took 0.03 to 0.09 s to copy its only set on the benchmark's
    1M file). The merge is the same either way: into a set that holds what the first one
    holds, the others in the same order, every case left to be settled (``loosen``)."""
    merged = sets[0] if adopt else ControlSet(sets[0].cases, sets[0].reachable)
    with collector_by_hand():  # what it makes lives on: walking it would find nothing to free
        for c in (sets[1:] if adopt else sets):
            merged.merge(c)
    if adopt:
        merged.loosen()
    return merged


#: Verdicts as small codes, so that parts send back an array, not objects.
VERDICTS = tuple(VERDICT_CLASS)
_CODE = {v: i for i, v in enumerate(VERDICTS)}


@dataclass
class Numbering:
    """Where the attempts of each part go in the report, from every part's index: files, read a
    block at a time, so that memory does not grow with the number of attempts."""

    part_seq: DiskArray  # the part of the attempt at each position of the report (int16)
    positions: list[DiskArray]  # per part, in the part's own order: each attempt's position (0-based)
    ranks: list[DiskArray]  # the same, the attempt's ``stream`` (-1: not TCP)


def number(results: list[PartResult], workdir: str) -> Numbering:
    """Merge every part's sorted index into the contract's order and rank the TCP streams.

    Within one part, the attempts keep the part's own order: the merge is stable, so a part
    can write its lines one after the other and they fall in place. A stream's rank is the
    number of distinct stream keys (input, the connection's first frame) below its own, as
    Wireshark numbers ``tcp.stream``: the TCP attempts' keys are sorted on disk, ranked in one
    pass, and sorted back into the report's order. Positions and ranks are 32-bit where the
    run has fewer than 2**31 attempts."""
    results = sorted(results, key=lambda r: r.part)
    n = sum(len(r.index) for r in results)
    itype = np.int32 if n < 2 ** 31 else np.int64
    path = functools.partial(os.path.join, workdir)
    seq_out = Appender(path("report.parts"), np.int16)
    pos_out = [Appender(path(f"part{r.part}.positions"), itype) for r in results]
    streams = Appender(path("streams"), _STREAM_DTYPE)
    g = 0
    for rows, src in merged([r.index for r in results], SORT_KEYS):
        gpos = np.arange(g, g + len(rows), dtype=np.int64)
        seq_out.add(src)
        for k, out in enumerate(pos_out):
            out.add(gpos[src == k])
        tcp = rows["sin"] >= 0
        if tcp.any():
            st = np.empty(int(tcp.sum()), _STREAM_DTYPE)
            st["key"] = (rows["sin"][tcp].astype(np.int64) << np.int64(40)) | rows["sfr"][tcp]
            st["pos"] = gpos[tcp]
            streams.add(st)
        g += len(rows)
    part_seq, positions = seq_out.close(), [p.close() for p in pos_out]
    ranked = _dense_ranks(streams.close(), path("streams"))
    rank_out = [Appender(path(f"part{r.part}.ranks"), itype) for r in results]
    pending = _ByPos(ranked)
    for g0 in range(0, n, NUMBER_BLOCK):
        parts = part_seq[g0:g0 + NUMBER_BLOCK]
        rank = np.full(len(parts), -1, itype)
        for pos, rk in pending.take(g0 + len(parts)):
            rank[pos - g0] = rk
        for k, out in enumerate(rank_out):
            out.add(rank[parts == k])
    os.unlink(ranked.path)
    return Numbering(part_seq, positions, [r.close() for r in rank_out])


def _dense_ranks(streams: DiskArray, path: str) -> DiskArray:
    """``(pos, rank)`` of each TCP attempt, sorted by ``pos``: the rank of its stream key among
    the distinct keys, from 0."""
    by_key = sort_file(streams, path + ".by_key", ("key",))
    os.unlink(streams.path)
    out = Appender(path + ".ranked", _RANKED_DTYPE)
    prev, nxt = None, 0
    for b in by_key.blocks(NUMBER_BLOCK):
        new = np.empty(len(b), bool)
        new[0] = prev is None or b["key"][0] != prev
        np.not_equal(b["key"][1:], b["key"][:-1], out=new[1:])
        rows = np.empty(len(b), _RANKED_DTYPE)
        rows["pos"] = b["pos"]
        rows["rank"] = np.cumsum(new) + (nxt - 1)
        out.add(rows)
        prev, nxt = b["key"][-1], int(rows["rank"][-1]) + 1
    os.unlink(by_key.path)
    ranked = out.close()
    by_pos = sort_file(ranked, path + ".by_pos", ("pos",))
    os.unlink(ranked.path)
    return by_pos


class _ByPos:
    """A reader of ``ranked`` (sorted by ``pos``), a block at a time. (An object, not a closure:
    compiled by Cython, a closure is a cycle.)"""

    def __init__(self, ranked: DiskArray) -> None:
        self.blocks = ranked.blocks(NUMBER_BLOCK)
        self.held = np.empty(0, _RANKED_DTYPE)

    def take(self, end: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(pos, rank)`` arrays of the rows not yet taken whose ``pos`` is below ``end``."""
        while True:
            cur = self.held
            cut = int(np.searchsorted(cur["pos"], end))
            if cut:
                yield cur["pos"][:cut], cur["rank"][:cut]
            self.held = cur[cut:]
            if len(self.held):
                return
            nxt = next(self.blocks, None)
            if nxt is None:
                return
            self.held = nxt


@dataclass
class JudgedPart:
    """A part after its verdicts: its attempts' final JSON lines, in the contract's order, on disk."""

    part: int
    lines: str  # one attempt's JSON a line, id and stream included
    counts: np.ndarray  # attempts of each verdict (index into VERDICTS)
    first: np.ndarray  # the report position of each verdict's first attempt (-1: none)
    warnings: list[str]
    kept: list[Attempt] | None = None
    verdicts: list[Verdict] | None = None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _spill_ranges(fd: int, offs: np.ndarray, lens: np.ndarray) -> tuple[list[bytes], list[int]]:
    """Where the spill's records at ``offs`` (``lens`` bytes each) are, in that order: record k
    is ``bufs[k][ats[k]:ats[k] + lens[k]]``, read in ranges of records less than
    ``SPILL_GAP`` apart (each range one ``bytes``, shared by its records)."""
    n = len(offs)
    order = np.argsort(offs, kind="stable")
    start = offs[order].astype(np.int64)
    end = start + lens[order]
    reach = np.maximum.accumulate(end)  # how far the records so far, in place order, reach
    new = np.ones(n, bool)
    new[1:] = start[1:] > reach[:-1] + SPILL_GAP
    heads = np.flatnonzero(new).tolist()
    bufs: list = [None] * n
    ats: list = [0] * n
    starts, reaches, order = start.tolist(), reach.tolist(), order.tolist()
    for h, t in zip(heads, heads[1:] + [n]):
        base = starts[h]
        want = reaches[t - 1] - base
        got = os.pread(fd, want, base)
        if len(got) != want:
            raise ValueError("the spill file is shorter than its index says: it was changed")
        for k in range(h, t):
            bufs[order[k]] = got
            ats[order[k]] = starts[k] - base
    return bufs, ats


def _needed_after(index, n: int) -> list[int]:
    """For each block of ``JUDGE_TICK`` rows of ``index`` (in the report's order), the lowest
    spill offset a later block reads: stage 2 frees the spill below it once the block is
    judged (-1 for the last block: the spill is removed then). The spill is in the order the
    attempts finished, the report in the order they started, so the offsets still needed
    rise from block to block, a DNS query's linger behind."""
    if not n:
        return []
    lows = np.array([index[b:b + JUDGE_TICK]["off"].min() for b in range(0, n, JUDGE_TICK)], np.int64)
    from_here = np.minimum.accumulate(lows[::-1])[::-1]  # the lowest of block k and every block after it
    return np.append(from_here[1:], -1).tolist()


def judge_part(res: PartResult, controls: ControlSet, workdir: str, positions, ranks,
               stage: StageFn | None = None) -> JudgedPart:
    """Stage 2 for one part: each attempt's verdict against every part's controls, and
    its line of the report (``positions`` and ``ranks``: this part's share of ``number``,
    files or arrays)."""
    judge = Judge([], controls.reachable)
    judge.controls = controls
    index = res.index
    n = len(index)
    if len(positions) != n or len(ranks) != n:
        raise ValueError(f"part {res.part} has {n} attempts, its numbering {len(positions)}")
    nv = len(VERDICTS)
    counts = np.zeros(nv, np.int64)
    first = np.full(nv, -1, np.int64)
    kept = None
    if res.kept is not None:
        kept = [res.kept[i] for i in np.asarray(index)["seq"].tolist()]
    verdicts: list[Verdict] | None = [] if kept is not None else None
    path = os.path.join(workdir, f"part{res.part}.lines")
    loads, code = pickle.loads, _CODE
    # the writer hands the key's bytes on as they are (``bytes`` of a bytes is that object)
    stands, as_bytes = _StandsMemo(judge.stands, loads).ask, bytes
    fd = os.open(res.spill, os.O_RDWR)  # (read, and its space freed behind the blocks: ``holes``)
    freer = Freer(fd)
    needed = _needed_after(index, n) if freer.works else None
    try:
        with open(path, "wb", buffering=1 << 20) as out, collector_by_hand() as gc_tick:
            write = out.write
            for b in range(0, n, JUDGE_TICK):  # Python ints for a block at a time
                gc_tick()
                if stage is not None:
                    stage("judging", b, n)
                sel = index[b:b + JUDGE_TICK]
                pos_block = positions[b:b + JUDGE_TICK]
                codes = np.empty(len(sel), np.int16)
                lens = sel["len"].tolist()
                inputs = sel["input"].tolist()
                pos_list, rank_list = pos_block.tolist(), ranks[b:b + JUDGE_TICK].tolist()
                bufs, ats = _spill_ranges(fd, sel["off"], sel["len"])
                for seg in spilled_lines(bufs, ats, lens, inputs, pos_list, rank_list, codes, stands, as_bytes):
                    if type(seg) is bytes:
                        write(seg)
                        continue
                    k = seg  # a record whose line is made here
                    raw = memoryview(bufs[k])[ats[k]:ats[k] + lens[k]]
                    inp = inputs[k]
                    if raw[0] == LINE_MAGIC:  # a verdict given early that does not stand
                        _, lane, head, _, mid, tail, _, facts = read_line_record(raw)
                        facts = (_facts_from_record(loads(facts)) if lane == LANE_GENERAL
                                 else dnslane.facts_of(judge, dnslane.raw_of(lane, facts)))
                        frags = head, mid, tail
                    else:
                        rec = loads(raw)
                        facts, frags = _facts_from_record(rec[0]), rec[1]
                    v = judge.verdict(facts)
                    write(attempt_line(frags, v, inp, pos_list[k], rank_list[k]))
                    codes[k] = code[v.verdict]
                    if verdicts is not None:
                        verdicts.append(v)
                counts += np.bincount(codes, minlength=nv)
                seen, at = np.unique(codes, return_index=True)
                new = first[seen] < 0
                first[seen[new]] = pos_block[at[new]]
                if needed is not None and needed[b // JUDGE_TICK] >= 0:
                    freer.upto(needed[b // JUDGE_TICK])  # no later block reads the spill below it
        if stage is not None:
            stage("judging", n, n)
    finally:
        os.close(fd)
        _unlink(res.spill)
    if kept is not None:
        for a, pos, rank in zip(kept, np.asarray(positions).tolist(), np.asarray(ranks).tolist()):
            object.__setattr__(a, "id", f"a{pos + 1}")
            if a.tcp is not None:
                object.__setattr__(a, "stream", rank)
    for a in (index, positions, ranks):
        if isinstance(a, DiskArray):
            _unlink(a.path)
    return JudgedPart(res.part, path, counts, first, judge.warnings, kept, verdicts)


def _summary(judged: list[JudgedPart]) -> dict:
    """The counts of each class and verdict, in the order of their first attempt in the report."""
    counts = sum(j.counts for j in judged)
    first = np.full(len(VERDICTS), np.iinfo(np.int64).max, np.int64)
    for j in judged:
        np.minimum(first, np.where(j.first >= 0, j.first, first), out=first)
    by_class: dict[str, int] = {}
    by_verdict: dict[str, int] = {}
    for c in np.argsort(first, kind="stable").tolist():  # a class first shows with its first verdict
        if counts[c]:
            v = VERDICTS[c]
            by_verdict[v] = int(counts[c])
            by_class[VERDICT_CLASS[v]] = by_class.get(VERDICT_CLASS[v], 0) + int(counts[c])
    return {"by_class": by_class, "by_verdict": by_verdict}


def assemble(results: list[PartResult], judged: list[JudgedPart], numbering: Numbering, workdir: str, *,
             max_flows: int | None = None, cleanup: str | None = None) -> Report:
    """The report: the parts' lines in order, their warnings, the summary."""
    results = sorted(results, key=lambda r: r.part)
    judged = sorted(judged, key=lambda j: j.part)
    infos = results[0].infos
    warnings: list[str] = []
    for info in infos:
        warnings.extend(f"{info.path}: {w}" for w in info.warnings)
    evicted = sum(r.stats.evicted for r in results)
    if evicted:
        warnings.append(f"{evicted} connections were finished early because more than "
                        f"{max_flows or MAX_LIVE_FLOWS} were live at once")
    cut = sum(r.stats.payload_cut for r in results)
    if cut:
        warnings.append(f"{cut} TCP and DNS packets had their payload cut short by the capture's snapshot length: "
                        f"what they carried beyond it (TLS names, HTTP Hosts, DNS answers, the servers' answers) "
                        f"is not in the capture, and attempts that need it cannot be judged on it")
    fragmented = sum(r.stats.dns_fragmented for r in results)
    if fragmented:
        warnings.append(f"{fragmented} DNS messages came in IP fragments that were not all captured: only the "
                        f"first fragment of each was read, and answers in the others are missing")
    for r in results:
        _merge_warnings(warnings, r.warnings)
    for j in judged:
        _merge_warnings(warnings, j.warnings)

    part_seq = numbering.part_seq
    n = len(part_seq)
    summary = {"attempts": n, **_summary(judged)}

    attempts: list[Attempt] | None = None
    verdicts: list[Verdict] | None = None
    if all(j.kept is not None for j in judged):
        attempts, verdicts = [None] * n, [None] * n
        for j in judged:  # each kept attempt has its id ("a" and its position + 1) by now
            for a, v in zip(j.kept, j.verdicts):
                pos = int(a.id[1:]) - 1
                attempts[pos] = a
                verdicts[pos] = v
    if len(judged) == 1:
        store = AttemptStore(judged[0].lines, summary, cleanup)
    else:  # the parts' lines are read in step as the report is written: no merged copy
        store = AttemptStore([j.lines for j in judged], summary, cleanup, part_seq)
    return Report(infos, attempts, verdicts, RULES_VERSION, warnings, evicted, store=store)


def finalize(results: list[PartResult], workdir: str, *, max_flows: int | None = None,
             cleanup: str | None = None, stage: StageFn | None = None) -> Report:
    """Stage 2 for parts whose spills are here (one process), then the report. The parts'
    controls are merged into the first part's (``merge_controls``' ``adopt``): given up."""
    check_readable(results)
    results = sorted(results, key=lambda r: r.part)
    controls = merge_controls(results, adopt=True)  # (the parts are done with their own)
    numbering = number(results, workdir)
    total = sum(len(r.index) for r in results)
    judged, base = [], 0
    for k, r in enumerate(results):
        def tick(name, done, _n, base=base):  # the parts one after the other, as one count
            stage(name, base + done, total)
        judged.append(judge_part(r, controls, workdir, numbering.positions[k], numbering.ranks[k],
                                 tick if stage is not None else None))
        base += len(r.index)
    return assemble(results, judged, numbering, workdir, max_flows=max_flows, cleanup=cleanup)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (each ``CDLL`` makes a few objects in a
    reference cycle: one lookup per part left cyclic garbage behind); None elsewhere."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _give_back_memory() -> None:
    """Return freed heap to the system (glibc keeps it otherwise), so that the
    memory of a million finished flows is not counted again under stage 2."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


#: Errors of a write that found no room: the disk or the user's quota full.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
#: What a run keeps in its temporary folder at its fullest, per attempt: the spill record
#: (1.56 KB on the 1M benchmark, its verdict encoded in most) and the report line (1.31 KB)
#: both exist while a part is judged, with the index rows beside them. (Where the file system
#: punches holes, stage 2 frees the spill behind it as it writes the lines: ``holes``; this
#: counts on neither.)
WORKDIR_BYTES_PER_ATTEMPT = 3000


def new_workdir() -> str:
    try:
        return tempfile.mkdtemp(prefix="forensics-")
    except OSError as exc:
        raise ForensicsError(f"cannot make a temporary folder in {tempfile.gettempdir()}: "
                             f"{exc.strerror or exc} (set TMPDIR to a folder that can hold one)") from None


def workdir_error(exc: OSError, workdir: str) -> ForensicsError | None:
    """The one-line error for a temporary folder that ran out of room (None for another error)."""
    if exc.errno not in _NO_ROOM:
        return None
    where = os.path.dirname(workdir.rstrip(os.sep)) or workdir
    return ForensicsError(f"{where}: {exc.strerror}: the analysis keeps its attempts in a temporary folder "
                          f"there (about {WORKDIR_BYTES_PER_ATTEMPT / 1000:g} KB an attempt, {WORKDIR_BYTES_PER_ATTEMPT / 1000:g} GB for "
                          f"a million); set TMPDIR to a folder with more room")


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
