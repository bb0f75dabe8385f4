"""The analysis leaves no reference cycles, so pausing the cyclic collector costs no memory.

``pipeline.collector_by_hand`` turns Python's automatic cyclic garbage collector
off while flows are read (its walks over the live flows were a tenth of a 1M
packet run) and collects by hand every ``GC_EVERY`` batches. That is only sound
while the analysis frees its objects by reference counts alone: the first tests
run it on the samples and the corpus with the collector off and count what a
collection finds afterwards (nothing); the others check the pause itself.
"""

from __future__ import annotations

import collections
import gc
import sys
import weakref
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CORPUS, ROOT, captures_under, need_corpus  # noqa: E402

from forensics import api, pipeline  # noqa: E402
from forensics.errors import InputError  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def _cyclic_garbage(files: list[Path]) -> collections.Counter:
    """The types of the objects that only the cyclic collector could free after analysing ``files``.

    A first pass warms up what is made once (lazy imports, caches); the second
    runs with the collector off, and a collection after it saves what it finds."""
    def run() -> None:
        for f in files:
            try:
                api.analyze([str(f)])
            except InputError:
                pass  # a capture the tool refuses still must not leave cycles behind

    run()
    gc.collect()
    was_on = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return collections.Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_on:
            gc.enable()


def test_the_samples_leave_no_cycles():
    files = captures_under(ROOT / "pcaps")
    assert len(files) >= 20
    assert _cyclic_garbage(files) == collections.Counter()


def test_the_corpus_leaves_no_cycles():
    need_corpus()
    files = captures_under(CORPUS)
    assert files
    assert _cyclic_garbage(files) == collections.Counter()


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_by_hand_frees_a_cycle_every_gc_every_batches():
    assert gc.isenabled()
    with pipeline.collector_by_hand() as tick:
        assert not gc.isenabled()
        gc.collect()  # what the test runner left
        ref = weakref.ref(_Node())
        for _ in range(pipeline.GC_EVERY - 1):
            tick()
        assert ref() is not None, "collected before GC_EVERY batches: the pause is not one"
        tick()
        assert ref() is None, "a cycle outlived GC_EVERY batches"
    assert gc.isenabled()


def test_the_collector_comes_back_after_an_error_and_stays_off_if_it_was(tmp_path):
    with pytest.raises(KeyError):
        with pipeline.collector_by_hand():
            raise KeyError("a failure inside the analysis")
    assert gc.isenabled()
    bad = tmp_path / "not.pcap"
    bad.write_bytes(b"this is not a capture")
    with pytest.raises(InputError):
        api.analyze([str(bad)])
    assert gc.isenabled()
    gc.disable()
    try:
        api.analyze([str(ROOT / "pcaps" / "benign-browsing")])
        assert not gc.isenabled(), "the analysis turned on a collector its caller had turned off"
    finally:
        gc.enable()
