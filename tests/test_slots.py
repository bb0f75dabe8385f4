"""``forensics._slots``: the records' constructors made by compiled code give the objects the
Python constructors give (``model.slot_filler`` and ``model.python_filler``).

Each record class is made both ways from the same field values: the same class, the very same
value in every field, equal, the same hash, repr and pickle, frozen, tracked by the collector
alike, and no reference gained or lost. The whole reports, compiled against
``FORENSICS_PURE=1`` (which leaves this extension out too), are compared by
``test_compiled.py``."""

from __future__ import annotations

import dataclasses
import operator
import gc
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from forensics import compiled, model

ROOT = Path(__file__).resolve().parent.parent
_slots = compiled.slots_module()
need_slots = pytest.mark.skipif(_slots is None, reason="forensics._slots is not built (or FORENSICS_PURE is set)")

#: every record the package makes through ``slot_filler`` (a new one must be added here)
RECORDS = ["Endpoint", "TcpOptions", "Marker", "TcpConn", "DnsAnswer", "DnsResponse", "DnsTransaction",
           "Attempt", "TlsClientHello", "TlsServerReply", "HttpRequest", "HttpResponse", "Evidence",
           "Finding", "Verdict"]


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _values(cls, seed: int) -> list:
    """A distinct value for each field of ``cls``: a new string, int, tuple or float in turn."""
    out = []
    for i, _f in enumerate(dataclasses.fields(cls)):
        k = (seed * 131 + i) % 4
        out.append(f"v{seed}-{i}" if k == 0 else 10_000 + seed * 100 + i if k == 1 else
                   (seed, i, "t") if k == 2 else seed + i / 8)
    return out


def test_every_constructor_of_the_model_is_listed():
    made = sorted(obj.__name__[4:] for name, obj in vars(model).items()
                  if name.startswith("new_") and callable(obj) and getattr(obj, "__name__", "").startswith("new_")
                  and isinstance(vars(model).get(obj.__name__[4:]), type))
    assert made == sorted(RECORDS)
    for r in RECORDS:
        assert getattr(model, f"new_{_snake(r)}").__name__ == f"new_{r}"


@need_slots
@pytest.mark.parametrize("record", RECORDS)
def test_the_compiled_constructor_makes_the_python_ones_object(record):
    cls = getattr(model, record)
    names = [f.name for f in dataclasses.fields(cls)]
    fast = getattr(model, f"new_{_snake(record)}")
    assert type(fast).__name__ == "builtin_function_or_method" and fast.__name__ == f"new_{record}"
    slow = model.python_filler(cls, names)
    for seed in range(3):
        vals = _values(cls, seed)
        a, b = fast(*vals), slow(*vals)
        assert type(a) is cls and type(b) is cls
        for n, v in zip(names, vals):
            assert getattr(a, n) is v and getattr(b, n) is v
        assert a == b and hash(a) == hash(b) and repr(a) == repr(b)
        assert pickle.loads(pickle.dumps(a, 5)) == b
        assert gc.is_tracked(a) == gc.is_tracked(b)
        assert a == cls(*vals)  # the dataclass's own __init__
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(a, names[0], "changed")
        assert dataclasses.replace(a) == b


@need_slots
def test_no_reference_is_gained_or_lost():
    cls = model.DnsAnswer
    vals = [f"name-{id(object())}", "A", 10_000_001, ("203.0.113.7",)]
    gc.collect()  # (garbage of the tests before may hold the class)
    before = [sys.getrefcount(v) for v in vals] + [sys.getrefcount(cls)]
    made = [model.new_dns_answer(*vals) for _ in range(1000)]
    assert sys.getrefcount(vals[0]) == before[0] + 1000
    del made
    gc.collect()
    assert [sys.getrefcount(v) for v in vals] + [sys.getrefcount(cls)] == before


@need_slots
def test_the_compiled_constructor_refuses_what_the_fields_do_not_fit():
    with pytest.raises(TypeError, match="takes 2 positional arguments but 1 were given"):
        model.new_endpoint("192.0.2.1")
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        model.new_endpoint("192.0.2.1", 53, 0)
    with pytest.raises(TypeError, match="keyword"):
        model.new_endpoint(ip="192.0.2.1", port=53)


@need_slots
def test_filler_makes_none_where_it_cannot_be_sure():
    @dataclasses.dataclass(frozen=True, slots=True)
    class Two:
        a: object
        b: object

    names = ["a", "b"]
    assert _slots.filler(Two, names, "new_Two")(1, 2) == Two(1, 2)

    class WithDict:  # fields that are not slots
        pass

    class OwnNew:
        __slots__ = ("a", "b")

        def __new__(cls, *args):
            return super().__new__(cls)

    class Ints(int):  # a class with items: not a record's layout
        __slots__ = ()

    assert _slots.filler(WithDict, names, "x") is None
    assert _slots.filler(OwnNew, names, "x") is None
    assert _slots.filler(Ints, [], "x") is None
    assert _slots.filler(Two, ["a", "a"], "x") is None  # the same slot twice
    assert _slots.filler(Two, ["a", "c"], "x") is None  # no such slot
    assert _slots.filler(Two, ["a", "__class__"], "x") is None  # not a member descriptor
    assert _slots.filler("Two", names, "x") is None  # not a class
    assert _slots.filler(Two, ["a"] * (_slots.MAX_FIELDS + 1), "x") is None


def test_without_the_extension_the_constructors_are_python():
    code = ("from forensics import model, compiled; import sys; "
            "sys.stdout.write(type(model.new_tcp_conn).__name__ + ' ' + str(compiled.slots_module()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, compiled.PURE_ENV: "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "function None"


@need_slots
@pytest.mark.parametrize("record", RECORDS)
def test_the_compiled_reader_gives_attrgetters_tuple(record):
    cls = getattr(model, record)
    names = tuple(f.name for f in dataclasses.fields(cls))
    if len(names) < 2:
        pytest.skip("a record of one field")
    fast = _slots.reader(cls, names, f"read_{record}")
    assert type(fast).__name__ == "builtin_function_or_method"
    slow = operator.attrgetter(*names)
    obj = cls(*_values(cls, 7))
    got = fast(obj)
    assert type(got) is tuple and got == slow(obj)
    assert all(g is w for g, w in zip(got, slow(obj)))
    # a subset, in another order, and a name twice
    some = (names[-1], names[0], names[-1])
    assert _slots.reader(cls, some, "x")(obj) == operator.attrgetter(*some)(obj)


@need_slots
def test_the_reader_asks_getattr_of_another_class_and_of_an_empty_slot():
    read = model.slot_reader(model.Endpoint, "ip", "port")

    class Like:
        ip, port = "198.51.100.1", 443

        @property
        def other(self):
            return 1

    assert read(Like()) == ("198.51.100.1", 443)
    with pytest.raises(AttributeError):
        read(object())

    from forensics.reassembly.tcp import TcpState

    state = TcpState()  # (its slots not set yet)
    got = _slots.reader(TcpState, ("input", "chunks"), "x")
    with pytest.raises(AttributeError) as fast_error:
        got(state)
    with pytest.raises(AttributeError) as slow_error:
        operator.attrgetter("input", "chunks")(state)
    assert str(fast_error.value) == str(slow_error.value)
    state.input, state.chunks = 3, []
    assert got(state) == (3, [])


@need_slots
def test_the_reader_keeps_references_right():
    e = model.new_endpoint(f"ip-{id(object())}", 10_000_003)
    read = model.slot_reader(model.Endpoint, "ip", "port")
    gc.collect()
    before = sys.getrefcount(e.ip), sys.getrefcount(e)
    for _ in range(1000):
        read(e)
    assert (sys.getrefcount(e.ip), sys.getrefcount(e)) == before


def test_slot_reader_falls_back_to_attrgetter():
    class Plain:  # no slots: the compiled reader refuses it
        def __init__(self):
            self.a, self.b = 1, 2

    read = model.slot_reader(Plain, "a", "b")
    assert type(read) is operator.attrgetter and read(Plain()) == (1, 2)
    with pytest.raises(AssertionError):
        model.slot_reader(Plain, "a")


def test_slot_maker_makes_what_the_class_makes():
    from forensics.reassembly.engine import _DnsPending, _new_pending

    args = (1, model.new_endpoint("192.0.2.7", 5353), model.new_endpoint("198.51.100.53", 53), 77, "example.org",
            "A", [12], 1.5, 64, [], [], (3, 4))
    a, b = _new_pending(*args), _DnsPending(*args)
    assert type(a) is _DnsPending and a == b
    assert all(getattr(a, f.name) is v for f, v in zip(dataclasses.fields(_DnsPending), args))
    a.responses.append("r")  # not frozen: the same lists as given
    assert args[9] == ["r"]
    assert (type(_new_pending).__name__ == "builtin_function_or_method") == (_slots is not None)

    @dataclasses.dataclass(slots=True)
    class Mutable:
        x: object
        y: object = None

    assert model.slot_maker(Mutable)(1, 2) == Mutable(1, 2)


def test_a_live_connections_state_is_made_alike_both_ways():
    """``TcpState`` (a live flow's state, not a record) is made by ``model.state_filler``: the
    compiled filler where built, the Python one otherwise, the same slots either way; and
    ``TcpState.start`` tells the client as the handshake, or the ports, say."""
    from forensics.reassembly import tcp

    names = list(tcp.TcpState.__slots__)
    values = [object() for _ in names]
    made = [tcp._new_state(*values), model.python_filler(tcp.TcpState, names)(*values)]
    for st in made:
        assert type(st) is tcp.TcpState and [getattr(st, n) for n in names] == values
    a, b = (1, 2, 80), (4, 5, 40000)
    for flags, first, c_key, how in ((0x02, a, a, "syn"), (0x12, a, b, "syn-ack"), (0x10, a, b, "port"),
                                     (0x10, b, b, "port")):
        src, dst = first, (b if first == a else a)
        st = tcp.TcpState.start(3, (*src, *dst, flags, 6, 1.5, 9))
        assert (st.c_key, st.s_key, st.direction_from) == (c_key, a if c_key == b else b, how)
        assert (st.input, st.stream, st.ipver, st.first_ts, st.last_ts) == (3, (3, 9), 6, 1.5, 1.5)
        assert (st.base_seq, st.chunks, st.packets, st.pbytes, st.pieces, st.want_all) == ([None, None], [], [0, 0],
                                                                                          [0, 0], None, False)
        assert st.base_seq is not tcp.TcpState.start(3, (*src, *dst, flags, 6, 1.5, 9)).base_seq  # its own lists
    assert tcp.TcpState.start(0, (1, 2, 53, 4, 5, 999, 0x02, 4, 0.0, 1)).want_all
