"""The capture clock (``sources.Clock``): one corrupt timestamp must not finish every live flow.

The engine finishes flows by capture time. Before the clock, a batch's time was its
latest record's: one record stamped years ahead (a damaged capture) finished every
flow still open at that batch's end, split them, and changed verdicts. The verdict
tests below patch one record of real lab captures (kernel traffic, ``pcaps/``) and of
a corpus capture, in a copy, and read them in small batches so that the record falls
mid-capture; the old clock changes verdicts or splits attempts on each of them.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import forensics
import forensics.sources.pcapio as pcapio
from forensics.sources import CLOCK_SLACK, CLOCK_WINDOW, END_SLACK, Clock

import captures as C
from conftest import CORPUS, ROOT, need_corpus

TEN_YEARS = 10 * 365 * 86400


def _clocks(ts: np.ndarray, cuts: list[int]) -> tuple[list[float | None], float | None]:
    clock = Clock()
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(ts)}), len(ts)]
    out = [clock.advance(ts[a:b]) for a, b in zip(bounds, bounds[1:])]
    return out, clock.end


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 0.4), min_size=1, max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_a_busy_capture_keeps_its_latest_time(gaps, cuts):
    """Time running forward with records closer than the slack: every batch's clock is its
    latest record's time and the end is the last record's, however the batches fall."""
    ts = 1.7e9 + np.cumsum(gaps)
    clocks, end = _clocks(ts, cuts)
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(ts)}), len(ts)]
    assert clocks == [float(ts[b - 1]) for b in bounds[1:]]
    assert end == float(ts[-1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 0.4), min_size=8, max_size=300), st.data())
def test_one_or_two_wild_timestamps_do_not_move_the_clock(gaps, data):
    ts = 1.7e9 + np.cumsum(gaps)
    at = data.draw(st.integers(2, len(ts) - 1))
    width = data.draw(st.integers(1, 2))
    wild = ts.copy()
    wild[at:at + width] += data.draw(st.sampled_from([TEN_YEARS, 2 ** 31, 7200.0, 5.0]))
    cuts = data.draw(st.lists(st.integers(0, len(ts)), max_size=4))
    clocks, end = _clocks(wild, cuts)
    assert max(c for c in clocks if c is not None) <= ts.max() + CLOCK_SLACK
    assert end <= ts.max() + END_SLACK


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 0.4), min_size=8, max_size=300), st.data())
def test_wild_first_timestamps_do_not_move_the_clock(gaps, data):
    """The input's first one or two records stamped ahead: nothing before them to judge them
    by, so the input's first CLOCK_WINDOW records do (the first batch holds them all)."""
    ts = 1.7e9 + np.cumsum(gaps)
    width = data.draw(st.integers(1, 2))
    wild = ts.copy()
    wild[:width] += data.draw(st.sampled_from([TEN_YEARS, 2 ** 31, 7200.0, 5.0]))
    cuts = data.draw(st.lists(st.integers(CLOCK_WINDOW, len(ts)), max_size=4))
    clocks, end = _clocks(wild, cuts)
    assert max(c for c in clocks if c is not None) <= ts.max() + CLOCK_SLACK
    assert end <= ts.max() + END_SLACK


def test_a_real_pause_is_followed_after_two_records():
    clock = Clock()
    assert clock.advance(np.array([0.0, 0.1, 0.2, 0.3])) == 0.3
    # an hour's pause: the first two records after it are not yet believed
    assert clock.advance(np.array([3600.0, 3600.1])) == 0.3
    assert clock.advance(np.array([3600.2])) == 3600.2
    assert clock.end == 3600.2 and clock.ahead == 0


def test_the_end_follows_a_sparse_capture_but_not_a_wild_last_record():
    """A capture of a few packets seconds apart ends at its last packet (what a DNS query
    pending at the end is measured against); a last record days ahead is not its end."""
    clock = Clock()
    clock.advance(np.array([0.0, 10.0, 20.0, 30.0, 40.0]))
    assert clock.end == 40.0 and clock.ahead == 0
    clock = Clock()
    clock.advance(np.array([0.0, 10.0, 20.0, 30.0, 40.0 + 3 * 86400]))
    assert clock.end == 30.0 and clock.ahead == 1
    assert Clock().advance(np.array([], np.float64)) is None


def _key(d: dict) -> tuple:
    return (d["kind"], d["client"]["ip"], d["client"]["port"], d["server"]["ip"], d["server"]["port"], d["start"])


def _with_one_wild_record(src, tmp_path, monkeypatch, first: bool = False):
    """The report of ``src`` and of a copy whose middle record (``first``: its first) is
    stamped ten years ahead, read in 50-record batches (the wild record mid-capture, flows
    still open), and that record's frame number."""
    data = bytearray(src.read_bytes())
    offs = C.pcap_offsets(bytes(data))
    frame = 1 if first else len(offs) // 2 + 1
    pos = offs[frame - 1]
    struct.pack_into("<I", data, pos, struct.unpack_from("<I", data, pos)[0] + TEN_YEARS)
    wild = tmp_path / "wild.pcap"
    wild.write_bytes(bytes(data))
    monkeypatch.setattr(pcapio, "BATCH_RECORDS", 50)
    return forensics.analyze(str(src)), forensics.analyze(str(wild)), frame


def _changed(orig, wild, frame: int) -> list[tuple]:
    """Attempts of ``orig`` missing from ``wild`` or judged or summed up otherwise, but the
    one that holds the wild record (it lasts ten years now)."""
    got = {_key(d): d for d in wild.attempt_dicts()}
    return [k for k, d in ((_key(d), d) for d in orig.attempt_dicts()) if frame not in d["frames"] and
            (k not in got or (got[k]["verdict"], got[k]["summary"]) != (d["verdict"], d["summary"]))]


def _ahead(warnings: list[str]) -> int:
    """The count of the clock's warning: records over an hour ahead of those before them."""
    found = [int(m.group(1)) for w in warnings for m in [re.search(r"(\d+) records have a timestamp over 1 h ahead", w)]
             if m]
    return sum(found)


@pytest.mark.parametrize("first", [False, True], ids=["mid-capture", "first-record"])
@pytest.mark.parametrize("sample", ["host-drop", "mixed-path", "office-filter/client2.pcap", "rst-injector-v6"])
def test_lab_capture_with_a_wild_timestamp_keeps_its_verdicts(sample, first, tmp_path, monkeypatch):
    path = ROOT / "pcaps" / sample
    src = path if path.suffix == ".pcap" else path / "client.pcap"
    orig, wild, frame = _with_one_wild_record(src, tmp_path, monkeypatch, first)
    assert len(wild.attempt_dicts()) == len(orig.attempt_dicts()), "no connection was split"
    assert _changed(orig, wild, frame) == []
    assert _ahead(orig.warnings) == 0 and _ahead(wild.warnings) == 1


def test_corpus_capture_with_a_wild_timestamp_keeps_its_attempts(tmp_path, monkeypatch):
    """1kxun.pcap (nDPI's tests) jumps from 2016 to 2022 after record 1,031 and stays
    there: the clock follows that jump (its 2 first records are counted in the warning)."""
    need_corpus()
    orig, wild, frame = _with_one_wild_record(CORPUS / "ntop__nDPI/tests/cfgs/default/pcap/1kxun.pcap", tmp_path,
                                              monkeypatch)
    assert len(wild.attempt_dicts()) == len(orig.attempt_dicts()), "no connection was split"
    assert _changed(orig, wild, frame) == []
    assert _ahead(orig.warnings) == 2 and _ahead(wild.warnings) == 3
