"""Capture sources: the only place capture formats live.

``iter_inputs`` yields, per input file, its ``InputInfo`` and an iterator of
decoded batches ``(rows, buf, now, made)`` (``now``: the time the capture has reached by the
end of the batch, by ``Clock``; ``made``: the IP datagrams the batch made whole from
fragments, the frame each is read at -> its ``defrag.Fragments``, or None); the info fills
in as the batches are read.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError
from ..model import InputInfo
from . import tshark_src
from . import defrag
from .decode import NATIVE_LINKTYPES, ST_BAD_IP, ST_BAD_L4, ST_FRAG, ST_LINK, ST_NOT_IP, ST_OK, decode
from .pcapio import (GZIP_MAGIC, PCAP_MAGICS, PCAPNG_SHB, STDIN, RawBatch, ReadStats, compiled_walk,
                     file_size, linktype_name, read_batches)

__all__ = ["iter_inputs", "expand_paths", "STDIN"]


def _is_capture(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head in PCAP_MAGICS or head == PCAPNG_SHB or head[:2] == GZIP_MAGIC


def expand_paths(paths: list[str]) -> list[str]:
    """Files as given; a directory becomes every capture below it, sorted; ``-`` is
    standard input (a capture piped in), at most once."""
    out: list[str] = []
    for p in paths:
        if p == STDIN:
            if STDIN in out:
                raise InputError("- (standard input) can be given only once")
            out.append(p)
        elif os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in files:
                    full = os.path.join(root, f)
                    if os.path.isfile(full) and _is_capture(full):
                        found.append(full)
            if not found:
                raise InputError(f"{p}: no pcap or pcapng capture in this directory")
            out.extend(sorted(found))
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return out


#: The most parts ``route`` can number (its answer is an int16).
MAX_ROUTED_PARTS = 32767


def iter_inputs(files: list[str], progress: Callable[[int, int, int], None] | None = None,
                part: int = 0, nparts: int = 1
                ) -> Iterator[tuple[InputInfo, Iterator[tuple[np.ndarray, np.ndarray, float | None]]]]:
    """``progress(bytes_done, bytes_total, packets_done)`` is called after each batch.

    With ``nparts`` above 1 (and the compiled walk built), the rows are only those
    of records that part ``part`` needs: its own TCP and UDP flows, and every
    record no part owns alone (see ``_walk.route``). The info is that of the
    whole input either way: records routed to other parts are counted as the
    whole, well-formed IP packets the router saw they are.
    """
    total = sum(file_size(f) for f in files)
    done = [0, 0]  # bytes, packets of the inputs before this one
    # an extension built before the router existed has none: every part then decodes everything
    route = getattr(compiled_walk, "route", None) if 1 < nparts <= MAX_ROUTED_PARTS else None
    for path in files:
        info = InputInfo(path=path, bytes=file_size(path))
        yield info, _batches(path, info, progress, total, done, route, part, nparts)


def _share(raw: RawBatch, route, part: int, nparts: int) -> tuple[RawBatch, int]:
    """The records of ``raw`` that part ``part`` decodes, and how many went to other parts."""
    dest = route(raw.buf, raw.off, raw.caplen, raw.linktype, nparts)
    keep = (dest == part) | (dest < 0)
    away = len(keep) - int(np.count_nonzero(keep))
    if not away:
        return raw, 0
    sel = np.flatnonzero(keep)
    return RawBatch(raw.buf, raw.frame[sel], raw.ts[sel], raw.off[sel], raw.caplen[sel],
                    raw.origlen[sel], raw.linktype[sel]), away


#: Records whose median time a record's own time is checked against (it and the ones
#: before it): one or two wild timestamps among five cannot move the median.
CLOCK_WINDOW = 5
#: How far ahead of that median a record's time may be and still move the clock that
#: finishes flows. A clock that runs ahead by d finishes flows d early; the shortest
#: lingers the engine waits on are 15 s (a closed connection) and 30 s (a DNS query), so
#: 1 s leaves them intact. In a busy capture five records span milliseconds; after a
#: real pause the clock waits for two more records to confirm the new time.
CLOCK_SLACK = 1.0
#: The same for the input's end (what a DNS query still pending when the capture ended
#: is measured against: was it watched for a second, or not at all). Late is the error
#: that matters there, not early: a capture that pauses for minutes before its last
#: packets keeps its true end; a timestamp hours ahead is not taken for it.
END_SLACK = 3600.0


class Clock:
    """The time a capture has reached, robust to a few corrupt timestamps.

    The engine finishes flows by capture time: a single record whose timestamp is wrong
    by years (a damaged capture) would, taken at its word, finish every live flow at once
    and split them, changing the verdicts of hundreds of attempts. A record moves the
    clock by its own time only when that time is at most ``CLOCK_SLACK`` ahead of the
    median of the last ``CLOCK_WINDOW`` records (itself included); otherwise by that
    median. ``end``, the input's end so far, follows the same rule with ``END_SLACK``.
    In a capture whose time runs forward without pauses longer than the slack, the clock
    of a batch is its latest record's time, and ``end`` the last record's, as before. The
    first records of an input have none or fewer before them: they are judged by the
    median of the input's first ``CLOCK_WINDOW`` records (so a wild first record is caught
    too, unless the input's first batch holds a single record).
    """

    __slots__ = ("_tail", "end", "ahead")

    def __init__(self) -> None:
        self._tail = np.empty(0, np.float64)
        self.end: float | None = None
        self.ahead = 0  # records more than END_SLACK ahead of their window's median

    def advance(self, ts: np.ndarray) -> float | None:
        """The clock after the records of one batch (``ts``, in capture order); None: no records yet."""
        if not len(ts):
            return None
        first = not len(self._tail)  # the input's first records: none before them
        t = np.asarray(ts, np.float64) if first else np.concatenate((self._tail, ts))
        new = len(ts)
        self._tail = t[-(CLOCK_WINDOW - 1):].copy()
        # the usual case, decided in two passes: time never runs back and any three
        # consecutive records span at most the slack, so no record is more than the slack
        # ahead of its window's median (the record two before it), and the clock is the
        # latest record's time
        if len(t) >= 3 and (np.diff(t) >= 0).all() and (t[2:] - t[:-2]).max() <= CLOCK_SLACK:
            now = end = float(t[-1])
        else:
            med = np.empty(len(t))
            if first:
                # the lower median of the input's first CLOCK_WINDOW records (those after them)
                # judges them, so that a wild first record does not set the clock (two wild of
                # four: no mean)
                k = min(CLOCK_WINDOW, len(t))
                med[:min(CLOCK_WINDOW - 1, len(t))] = np.sort(t[:k])[(k - 1) // 2]
            else:
                for i in range(min(CLOCK_WINDOW - 1, len(t))):  # an input of fewer records so far
                    med[i] = np.sort(t[:i + 1])[i // 2]  # than the window: the lower median of them
            if len(t) >= CLOCK_WINDOW:
                win = np.lib.stride_tricks.sliding_window_view(t, CLOCK_WINDOW)
                med[CLOCK_WINDOW - 1:] = np.partition(win, CLOCK_WINDOW // 2, axis=1)[:, CLOCK_WINDOW // 2]
            own, m = t[len(t) - new:], med[len(t) - new:]
            now = float(np.where(own <= m + CLOCK_SLACK, own, m).max())
            far = own > m + END_SLACK
            end = float(np.where(far, m, own).max())
            self.ahead += int(np.count_nonzero(far))
        if self.end is None or end > self.end:
            self.end = end
        return now


def _defrag_report(info: InputInfo, st: defrag.DefragStats) -> None:
    """The input's IP reassembly, in its ``decoded`` counts and warnings."""
    info.decoded["reassembled"] = st.reassembled
    if st.given_up:
        info.warnings.append(f"{st.given_up} IP datagrams came in fragments that were not all captured "
                             f"({st.given_up_fragments} fragments of them were): each first fragment that "
                             f"was there was read as a packet cut short, the others were left out")
    if st.conflicts:
        info.warnings.append(f"{st.conflicts} IP datagrams came in fragments that overlap with different bytes "
                             f"(a forged fragment racing the real one, or a broken stack): the bytes captured "
                             f"first were kept")
    if st.bad:
        info.warnings.append(f"{st.bad} IP fragments claim an offset or length no datagram can have; "
                             f"they were skipped")


def _batches(path: str, info: InputInfo, progress, total: int, done: list[int], route=None,
             part: int = 0, nparts: int = 1):
    stats = ReadStats()
    clock = Clock()
    frags = defrag.Reassembler()
    counts = np.zeros(6, np.int64)
    skipped_links: dict[int, int] = {}
    via_tshark = 0
    tshark_errors: list[str] = []
    tshark: str | None | bool = False  # False: not looked up yet
    start = done[0]
    pk_start = done[1]
    try:
        for whole in read_batches(path, stats):
            raw, away = (whole, 0) if route is None or not len(whole) else _share(whole, route, part, nparts)
            rows = decode(raw.buf, raw.frame, raw.ts, raw.off, raw.caplen, raw.linktype, raw.origlen)
            buf = raw.buf
            not_here = rows["status"] == ST_LINK
            if not_here.any():
                if tshark is False:
                    tshark = tshark_src.find_tshark()
                if tshark:
                    rows, buf, n_done, err = tshark_src.redecode(rows, raw, not_here, tshark)
                    via_tshark += n_done
                    if err and err not in tshark_errors:
                        tshark_errors.append(err)
            fragments = defrag.mark(rows)  # before counting: a fragment is counted as one, whatever it holds
            counts += np.bincount(rows["status"], minlength=6)[:6]
            counts[ST_OK] += away  # the router gives a part only whole TCP/UDP packets
            if len(whole):
                if info.first_ts is None:
                    info.first_ts = float(whole.ts[0])
                info.last_ts = float(whole.ts[-1])
            info.packets = stats.records
            bad_link = rows["status"] == ST_LINK
            if bad_link.any():
                lts, n = np.unique(raw.linktype[bad_link], return_counts=True)
                for lt, c in zip(lts.tolist(), n.tolist()):
                    skipped_links[lt] = skipped_links.get(lt, 0) + c
            if progress is not None:
                done[0] = start + (stats.bytes_read or int(whole.off[-1]))
                progress(min(done[0], total) if total else done[0], total, pk_start + stats.records)
            now = clock.advance(whole.ts)
            rows, buf = frags.feed(rows, buf, now, fragments)
            yield rows, buf, now, frags.take_made()
        last = frags.close()  # the datagrams still missing a piece: their first fragments, cut short
        if last is not None:
            yield last[0], last[1], None, None
    finally:
        info.end_ts = clock.end
        if clock.ahead:
            info.warnings.append(f"{clock.ahead} records have a timestamp over {END_SLACK / 3600:.0f} h ahead of "
                                 f"the records before them (damaged timestamps, or captures of different days "
                                 f"joined): the analysis took a new time only once later records confirmed it")
        info.format = stats.format
        info.packets = stats.records
        info.link_types = sorted({linktype_name(lt) for lt in stats.linktypes})
        info.decoded = {"ip": int(counts[ST_OK] + counts[ST_BAD_L4] + counts[ST_FRAG]),
                        "not_ip": int(counts[ST_NOT_IP]), "bad_ip": int(counts[ST_BAD_IP]),
                        "bad_transport": int(counts[ST_BAD_L4]), "fragments": int(counts[ST_FRAG]),
                        "link_not_decoded": int(counts[ST_LINK]), "via_tshark": via_tshark}
        _defrag_report(info, frags.stats)
        info.warnings.extend(stats.warnings())
        if counts[ST_BAD_IP]:
            info.warnings.append(f"{int(counts[ST_BAD_IP])} packets have an IP header that is cut short "
                                 f"or lies about its length; they were skipped")
        if counts[ST_BAD_L4]:
            info.warnings.append(f"{int(counts[ST_BAD_L4])} packets have a TCP/UDP/ICMP header that is cut "
                                 f"short or malformed; they were skipped")
        for err in tshark_errors:
            info.warnings.append(f"decoding through tshark failed: {err}")
        for lt, n in sorted(skipped_links.items()):
            what = (f"{n} packets of link type {linktype_name(lt)} ({lt})" if lt not in NATIVE_LINKTYPES
                    else f"{n} packets of link type {linktype_name(lt)} ({lt}) carrying MPLS")
            if tshark:
                info.warnings.append(f"{what} were not decoded, even by tshark; they were skipped")
            else:
                info.warnings.append(f"{what} were not decoded: they need tshark "
                                     f"(apt install tshark, or install Wireshark); they were skipped")
        done[1] = pk_start + stats.records
        if path == STDIN:
            info.bytes = stats.bytes_read  # known only now
        if progress is not None:
            done[0] = start + info.bytes
            progress(min(done[0], total) if total else done[0], total, done[1])
