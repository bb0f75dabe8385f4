"""Temporary files freed behind their last reader (``forensics.holes``): stage 2 frees the spill
below the lowest offset a later block reads, and a report written once frees its lines as it
writes them; the reports are the same, byte for byte, as when nothing is freed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import forensics
from conftest import ROOT, generated
from forensics import holes, pipeline
from forensics.render import render_to_string

need_holes = pytest.mark.skipif(holes._fallocate() is None, reason="no fallocate here (not Linux)")


def _freer_or_skip(path) -> tuple[int, holes.Freer]:
    fd = os.open(path, os.O_RDWR)
    f = holes.Freer(fd)
    f.upto(holes._PAGE, last=True)  # (a file system without holes stops the freer at once)
    if not f.works:
        os.close(fd)
        pytest.skip("this file system cannot punch holes")
    return fd, f


@need_holes
def test_the_freer_frees_whole_pages_behind_and_keeps_the_rest(tmp_path):
    path = tmp_path / "f"
    data = os.urandom(5 * holes.STEP + 12345)
    path.write_bytes(data)
    fd, f = _freer_or_skip(path)
    os.fsync(fd)  # (blocks allocated: the freed ones show in st_blocks)
    try:
        blocks = os.fstat(fd).st_blocks
        f.upto(holes.STEP // 2)  # less than a step more: nothing
        assert f.done == holes._PAGE
        at = 3 * holes.STEP + 100
        f.upto(at)
        end = at - at % holes._PAGE
        assert f.done == end
        got = open(path, "rb").read()
        assert len(got) == len(data)  # the size kept
        assert got[:end] == bytes(end) and got[end:] == data[end:]
        assert os.fstat(fd).st_blocks < blocks
        f.upto(len(data), last=True)  # the rest, to its last whole page
        got = open(path, "rb").read()
        tail = len(data) - len(data) % holes._PAGE
        assert got[:tail] == bytes(tail) and got[tail:] == data[tail:]
    finally:
        os.close(fd)


def test_the_blocks_offsets_still_needed():
    import numpy as np

    t = pipeline.JUDGE_TICK
    index = np.zeros(3 * t + 5, pipeline.INDEX_DTYPE)
    index["off"] = np.arange(len(index)) * 10
    index["off"][t + 3] = 5  # a record early in the spill, read in the second block
    assert pipeline._needed_after(index, len(index)) == [5, 2 * t * 10, 3 * t * 10, -1]
    assert pipeline._needed_after(index[:0], 0) == []


def _report(paths, jobs: int) -> str:
    return render_to_string(forensics.analyze([str(p) for p in paths], jobs=jobs), "json")


@need_holes
@pytest.mark.parametrize("jobs", [1, 2])
def test_the_reports_are_the_same_with_the_spill_freed_at_every_page(tmp_path, monkeypatch, jobs):
    made = [generated(tmp_path, 3, "--rst", "0.05", "--forged-dns", "0.05"), ROOT / "pcaps"]
    monkeypatch.setattr(holes, "_fallocate", lambda: None)
    want = _report(made, jobs)
    monkeypatch.undo()
    calls = []
    real = holes.Freer.upto

    def spy(self, offset, *, last=False):
        before = self.done
        real(self, offset, last=last)
        calls.append(self.done - before)

    monkeypatch.setattr(holes, "STEP", holes._PAGE)  # as often as it can,
    monkeypatch.setattr(pipeline, "JUDGE_TICK", 64)  # after blocks of 64 attempts
    monkeypatch.setattr(holes.Freer, "upto", spy)
    assert _report(made, jobs) == want
    if jobs == 1:  # (-j 2's parts run in processes: their calls are not seen here)
        assert sum(1 for c in calls if c > 0) >= 5, calls


@need_holes
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_report_read_once_frees_its_lines_and_cannot_be_read_again(tmp_path, monkeypatch, jobs):
    from forensics.render import render

    made = [generated(tmp_path, 4), ROOT / "pcaps"]
    want = _report(made, jobs)
    rep = forensics.analyze([str(p) for p in made], jobs=jobs)
    monkeypatch.setattr(holes, "STEP", holes._PAGE)
    rep.read_once()
    got = tmp_path / "out.json"
    with open(got, "w") as fh:
        render(rep, "json", fh)
    assert got.read_text() == want
    paths = rep._store.paths
    sizes = [os.path.getsize(p) for p in paths]
    held = [os.stat(p).st_blocks * 512 for p in paths]
    assert all(h < s // 2 for h, s in zip(held, sizes)), (held, sizes)
    with pytest.raises(ValueError, match="read once"):
        list(rep.iter_attempt_json_blocks(binary=True))
    with pytest.raises(ValueError, match="read once"):  # as text too: the freed bytes read as zeros
        list(rep.iter_attempt_dicts())


def test_the_cli_report_is_the_same_written_once(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "forensics", "analyze", "-j", "1", "-o", str(out), str(ROOT / "pcaps")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode in (0, 1), r.stderr
    assert r.stderr == ""
    assert out.read_text() == _report([ROOT / "pcaps"], 1)


def test_a_file_system_without_holes_changes_nothing(tmp_path, monkeypatch):
    """The first failing call turns the freer off: the files stay whole, the report the same."""
    made = [generated(tmp_path, 5), ROOT / "pcaps"]
    monkeypatch.setattr(holes, "_fallocate", lambda: None)
    want = _report(made, 1)
    calls = []

    def refuses(fd, mode, offset, length):
        calls.append((offset, length))
        return -1  # (EOPNOTSUPP)

    monkeypatch.setattr(holes, "_fallocate", lambda: refuses)
    monkeypatch.setattr(holes, "STEP", holes._PAGE)
    monkeypatch.setattr(pipeline, "JUDGE_TICK", 64)
    assert _report(made, 1) == want
    assert len(calls) == 1  # asked once, then never again
    f = holes.Freer(0)
    assert f.works
    f.upto(10 * holes._PAGE)
    assert not f.works and f.done == 0
