"""The DNS parser's shortcuts give what the plain reading gives.

``dnswire`` remembers the text of uncompressed names it has read, and writes
IPv6 answers itself instead of through ``ipaddress``: neither may change a
result, whatever the bytes (names compressed or not, labels holding zero bytes,
upper case, bytes that are not UTF-8, pointers into names read before).
"""

from __future__ import annotations

import ipaddress
import os
import random
import struct

from forensics.reassembly import dnswire


def _label(rng: random.Random) -> bytes:
    pick = rng.random()
    if pick < 0.6:
        raw = bytes(rng.choice(b"abcXYZ019-") for _ in range(rng.randint(1, 12)))
    elif pick < 0.8:
        raw = bytes(rng.choice(b"a\x00\x01.\xff\xc3\xa9") for _ in range(rng.randint(1, 6)))
    else:
        raw = "小佛Σ".encode()[: rng.randint(1, 9)]
    return bytes([len(raw)]) + raw


def _name(rng: random.Random, earlier: list[int]) -> bytes:
    """A name: labels, then the root or a pointer to an earlier name."""
    labels = b"".join(_label(rng) for _ in range(rng.randint(0, 4)))
    if earlier and rng.random() < 0.4:
        return labels + struct.pack("!H", 0xC000 | rng.choice(earlier))
    return labels + b"\x00"


def _message(rng: random.Random) -> bytes:
    answers = rng.randint(0, 3)
    msg = bytearray(struct.pack("!HHHHHH", rng.randrange(65536), 0x8180, 1, answers, 0, 0))
    names = [12]
    msg += _name(rng, []) + struct.pack("!HH", rng.choice((1, 28, 5)), 1)
    for _ in range(answers):
        names.append(len(msg))
        msg += _name(rng, names[:-1])
        rtype = rng.choice((1, 28, 5, 16))
        if rtype == 5:
            rdata = _name(rng, names)
        else:
            rdata = os.urandom({1: 4, 28: 16}.get(rtype, 3))
        msg += struct.pack("!HHIH", rtype, 1, 300, len(rdata)) + rdata
    if rng.random() < 0.2:
        del msg[rng.randrange(12, len(msg)):]  # cut short
    return bytes(msg)


def test_remembered_names_read_as_fresh_ones():
    rng = random.Random(6)
    msgs = [_message(rng) for _ in range(3000)]
    msgs += msgs[::7]  # the same names again, read from the cache this time
    fresh = []
    for m in msgs:
        dnswire._names.clear()
        fresh.append(dnswire.parse(m))
    dnswire._names.clear()
    warm = [dnswire.parse(m) for m in msgs]
    assert warm == fresh
    assert any(m is not None and m.answers for m in fresh)
    # the compiled parser (where it is built) reads them all alike, escapes and all
    assert [dnswire.fast_parse(m) for m in msgs] == fresh


def test_a_zero_byte_inside_a_label_is_not_the_end_of_the_name():
    dnswire._names.clear()
    head = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    for parse in (dnswire.parse, dnswire.fast_parse):
        assert parse(head + b"\x01a\x00\x00\x01\x00\x01").qname == "a"
        got = parse(head + b"\x03a\x00b\x00\x00\x01\x00\x01")
        assert got.qname == "a\\000b" and got.qtype == 1


def test_the_compiled_parser_reads_the_rules_alike():
    """Upper case, the root, a pointer loop, a name of 255 octets and one of 256, an obsolete label
    type, answers of the kinds read as text and as hex: what ``parse`` gives."""
    head = struct.pack("!HHHHHH", 9, 0x8180, 1, 1, 0, 0)
    q = b"\x03WwW\x07Example\x03COM\x00" + struct.pack("!HH", 28, 1)
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(3)) + b"\x3e" + b"b" * 62 + b"\x00"  # 255 octets
    cases = [
        head + q + b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 16) + bytes(15) + b"\x01",
        head + q + b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 2) + b"\xc0\x0c",
        head + q + b"\xc0\x0c" + struct.pack("!HHIH", 12, 1, 60, 2) + b"\xc0\xff",  # a pointer out: hex
        head + q + b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 2 ** 32 - 1, 3) + b"\x02hi",
        head + b"\x00" + struct.pack("!HH", 1, 1) + b"\x00" + struct.pack("!HHIH", 1, 1, 5, 4) + b"\xc0\x00\x02\x01",
        head + b"\xc0\x0c" + struct.pack("!HH", 1, 1),  # a name that points at itself
        head + long_name + struct.pack("!HH", 1, 1),
        head + b"\x01c" + long_name + struct.pack("!HH", 1, 1),  # 257 octets
        head + b"\x41abc\x00" + struct.pack("!HH", 1, 1),  # an extended label type
        head + q + b"\xc0\x0c" + struct.pack("!HHIH", 2, 1, 60, 5) + b"\x02\xe9x\xc0\x10",  # to escape
    ]
    for m in cases:
        dnswire._names.clear()
        assert dnswire.fast_parse(m) == dnswire.parse(m), m
    assert dnswire.fast_parse(cases[0]).qname == "www.example.com"
    assert dnswire.fast_parse(cases[-1]).answers == [("www.example.com", "NS", 60, "\\xe9x.example.com")]


def test_the_name_memory_is_bounded():
    dnswire._names.clear()
    head = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    for i in range(dnswire.NAME_CACHE + 100):
        label = f"n{i}".encode()
        dnswire.parse(head + bytes([len(label)]) + label + b"\x00\x00\x01\x00\x01")
    assert len(dnswire._names) == dnswire.NAME_CACHE


def test_ipv6_text_is_what_ipaddress_writes():
    rng = random.Random(28)
    cases = [bytes(16), bytes(15) + b"\x01", b"\xff" * 16, bytes(10) + b"\xff\xff\x01\x02\x03\x04",
             bytes(12) + b"\x01\x02\x03\x04"]
    for _ in range(20000):
        words = [rng.choice((0, 0, 0, 1, 0xFFFF, rng.randrange(65536))) for _ in range(8)]
        cases.append(struct.pack("!8H", *words))
    for raw in cases:
        assert dnswire.ipv6_text(raw) == str(ipaddress.IPv6Address(raw))


def test_parse_many_reads_each_message_at_its_place():
    """The messages of a batch read where they lie in its buffer (``fast_parse_many``, compiled
    where it is built; ``parse_many`` in Python): what ``parse`` gives each one, escapes and
    lies included; a place outside the buffer is an error, not a read past it."""
    import numpy as np

    rng = random.Random(9)
    msgs = [_message(rng) for _ in range(500)] + [b"", b"\x00" * 11, b"\x00" * 12]
    buf = bytearray(b"junk")
    starts, sizes = [], []
    for m in msgs:
        starts.append(len(buf))
        sizes.append(len(m))
        buf += m + b"\xc0"  # a byte between: nothing reads past its own message
    view = memoryview(np.frombuffer(bytes(buf), np.uint8))
    want = [dnswire.parse(m) for m in msgs]
    assert dnswire.parse_many(view, starts, sizes) == want
    assert dnswire.fast_parse_many(view, starts, sizes) == want
    assert dnswire.fast_parse_many(view, [], []) == []
    if dnswire.fast_parse_many is not dnswire.parse_many:
        import pytest

        with pytest.raises(ValueError, match="outside"):
            dnswire.fast_parse_many(view, [len(buf) - 5], [6])
        with pytest.raises(ValueError, match="one size"):
            dnswire.fast_parse_many(view, [0], [])
