"""The analysis leaves no reference cycles, so pausing the cyclic collector costs no memory.

``pipeline.collector_by_hand`` turns Python's automatic cyclic garbage collector
off while flows are read and attempts judged (its walks over the live flows were a
tenth of a 1M packet run) and collects by hand once the objects it tracks have grown
by ``GC_GROWTH``. That is only sound
while the analysis frees its objects by reference counts alone: the first tests
run it on the samples and the corpus with the collector off and count what a
collection finds afterwards (nothing); the others check the pause itself.
"""

from __future__ import annotations

import collections
import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CORPUS, ROOT, captures_under, need_corpus  # noqa: E402

from forensics import api, pipeline  # noqa: E402
from forensics.errors import InputError  # noqa: E402

pytestmark = pytest.mark.timeout(600)


_PROBE = r"""
import collections, gc, json, sys
from forensics import api
from forensics.errors import InputError

def run():
    for f in sys.argv[1:]:
        try:
            api.analyze([f])
        except InputError:
            pass  # a capture the tool refuses still must not leave cycles behind

run()
gc.collect()
gc.disable()
gc.set_debug(gc.DEBUG_SAVEALL)
run()
gc.collect()
print(json.dumps(collections.Counter(type(o).__name__ for o in gc.garbage)))
"""


def _cyclic_garbage(files: list[Path]) -> collections.Counter:
    """The types of the objects that only the cyclic collector could free after analysing ``files``.

    A first pass warms up what is made once (lazy imports, caches); the second
    runs with the collector off, and a collection after it saves what it finds. It
    runs in a process of its own: what other tests leave running in this one (the
    event-loop thread of a Dask cluster) makes garbage of its own meanwhile."""
    r = subprocess.run([sys.executable, "-c", _PROBE, *map(str, files)], capture_output=True, text=True,
                       timeout=540)
    assert r.returncode == 0, r.stderr[-3000:]
    return collections.Counter(json.loads(r.stdout.strip().splitlines()[-1]))


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


#: What a query answered once holds while it waits ``engine.DNS_LINGER`` for a late racing answer:
#: its ``_DnsPending`` and key, the client's ``Endpoint`` and the key that finds it (for ICMP
#: quotes too), its frames' and responses' tuples, the ``DnsResponse``, its answers' tuple and
#: the ``DnsAnswer``; the resolver's ``Endpoint`` is shared.
PENDING_QUERY_OBJECTS = 9


def test_a_pending_dns_query_holds_few_tracked_objects(tmp_path):
    """Tens of thousands of answered queries wait at once on a busy link (2,000 a second, each
    for 30 s), and the collector counts each object they hold towards ``GC_GROWTH``: every
    object more per query brings a part of ``-j 2`` nearer to a collection by hand."""
    from flows import Capture, dns_exchange

    from forensics.reassembly.engine import DNS_LINGER, Reassembler
    from forensics.sources import iter_inputs

    n = 2000
    cap = Capture()
    for i in range(n):  # all within DNS_LINGER of the first: none is finished before the end
        dns_exchange(cap, f"site{i % 50}.example.org", [("93.184.216.10", 0.001, 58, 7000)], sport=20000 + i,
                     txid=i, dt=0.001)
    assert cap.t - cap.pkts[0].time < DNS_LINGER / 2
    path = cap.write(tmp_path / "dns.pcap")
    done: list = []
    engine = Reassembler(done.extend)
    with pipeline.collector_by_hand(growth=1 << 40):  # (no collection meanwhile)
        (info, batches), = iter_inputs([path])
        batches = list(batches)
        gc.collect()
        # the objects alive and tracked (``gc.get_count`` drifts with the free lists of tuples)
        before = len(gc.get_objects())
        for rows, buf, now, made in batches:
            engine.feed(0, rows, buf, now, made)
        grown = len(gc.get_objects()) - before
        assert not done and len(engine.dns) == n
        del batches
    per_query = grown / n
    assert per_query <= PENDING_QUERY_OBJECTS + 0.1, \
        f"a pending answered query holds {per_query:.2f} tracked objects, not {PENDING_QUERY_OBJECTS}"


def test_by_hand_frees_a_cycle_once_the_tracked_objects_have_grown():
    assert gc.isenabled()
    with pipeline.collector_by_hand() as tick:
        assert not gc.isenabled()
        gc.collect()  # what the test runner left
        ref = weakref.ref(_Node())
        kept = []
        for _ in range(8):  # growth short of GC_GROWTH: no collection yet
            kept.extend([] for _ in range(pipeline.GC_GROWTH // 10))
            tick()
        assert ref() is not None, "collected before GC_GROWTH objects piled up: the pause is not one"
        kept.extend([] for _ in range(pipeline.GC_GROWTH // 5))
        tick()
        assert ref() is None, "a cycle outlived GC_GROWTH objects piling up"
        assert tick.collections == 1
    assert gc.isenabled()


def test_by_hand_does_not_collect_while_objects_come_and_go():
    """The point of the pause: flows made and freed by their reference counts bring no walk."""
    with pipeline.collector_by_hand() as tick:
        gc.collect()
        live: collections.deque = collections.deque(maxlen=50_000)  # a live set that turns over
        for _ in range(60):
            live.extend([k] for k in range(50_000))
            tick()
        assert tick.collections == 0


def test_by_hand_keeps_cyclic_garbage_bounded():
    """Cycles that slip in, batch after batch, are freed as they pile up."""
    with pipeline.collector_by_hand(growth=20_000) as tick:
        gc.collect()
        refs = []
        for _ in range(30):
            for _ in range(2_000):  # 2,000 cycles of 2 tracked objects (the node, its dict or not)
                refs.append(weakref.ref(_Node()))
            tick()
        alive = sum(r() is not None for r in refs)
        assert tick.collections >= 2
        assert alive <= 20_000, f"{alive} cycles still alive: the bound did not hold"


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


def test_the_command_runs_without_the_automatic_collector(tmp_path):
    """``forensics`` (``cli.main``) turns the automatic collector off for its one analysis: sound
    for the reasons above, and its stages still collect by hand (``collector_by_hand`` ticks
    whatever the collector's state, as the test of the bound shows with it off)."""
    out = tmp_path / "report.json"
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('collector on:', gc.isenabled()))\n"
            "from forensics.cli import main\n"
            "sys.argv = ['forensics'] + sys.argv[1:]\n"
            "main()\n")
    run = subprocess.run([sys.executable, "-c", code, "analyze", str(ROOT / "pcaps" / "benign-browsing"),
                          "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "collector on: False"
    assert json.loads(out.read_text())["attempts"], "the analysis ran"
