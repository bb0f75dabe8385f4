"""The report's numbers and their texts, made by shortcuts, are those of the plain formulas: ``model.round_to``
gives the float ``round(x, digits)`` gives, bit for bit; ``iso_time`` and ``hex4`` the texts of the formats
they replace."""

import math
import random
import struct

import pytest

from forensics.model import _iso_second, hex4, iso_time, round_to


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _differ(cases) -> list:
    """The (x, digits, got, wanted) of each case ``(x, digits)`` where ``round_to`` and ``round``
    give different floats (-0.0 against 0.0 too; a NaN matches a NaN)."""
    out = []
    for x, digits in cases:
        got, want = round_to(x, digits), round(x, digits)
        if not (math.isnan(got) and math.isnan(want)) and _bits(got) != _bits(want):
            out.append((x, digits, got, want))
    return out


def _near(x: float, steps: int = 3):
    """``x`` and its neighbouring floats."""
    out, lo, hi = [x], x, x
    for _ in range(steps):
        lo, hi = math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)
        out += [lo, hi]
    return out


@pytest.mark.parametrize("digits", range(7))
def test_halves_and_their_neighbours(digits):
    # the hard cases: decimal halves at the rounding place, which a float can only
    # come near, from either side, and the integers' neighbours
    rng = random.Random(digits)
    cases = []
    for _ in range(3000):
        k = rng.randrange(-10**9, 10**9)
        cases += [(x, digits) for x in _near((k + 0.5) / 10**digits) + _near(k / 10**digits)]
    assert _differ(cases) == []


@pytest.mark.parametrize("digits", range(7))
def test_random_values_of_every_magnitude(digits):
    rng = random.Random(100 + digits)
    cases = []
    for _ in range(20000):
        cases.append((rng.uniform(-1, 1) * 10.0 ** rng.uniform(-12, 18), digits))
        cases.append((struct.unpack("<d", rng.randbytes(8))[0], digits))  # any bit pattern, NaNs and infinities too
    assert _differ(cases) == []


def test_capture_delays_as_the_report_computes_them():
    # differences of epoch timestamps (microseconds and nanoseconds), in seconds and in ms
    rng = random.Random(7)
    cases = []
    for _ in range(50000):
        t0 = 1.7e9 + rng.randrange(10**8) / (10**6 if rng.random() < 0.5 else 10**9)
        t1 = t0 + rng.randrange(10**7) / (10**6 if rng.random() < 0.5 else 10**9)
        cases += [(t1 - t0, 6), ((t1 - t0) * 1000.0, 3), (max(t0 - t1, 0.0) * 1000.0, 3)]
    assert _differ(cases) == []


def test_zeros_signs_and_the_limits():
    values = (0.0, -0.0, 1e-300, -1e-300, 5e-7, -5e-7, 4.9999999e-7, -4.9999999e-7, 2.0 ** 40, -(2.0 ** 40),
              2.0 ** 40 / 1e6, 2.0 ** 53, 1e308, -1e308, math.inf, -math.inf, math.nan, 0.5, 1.5, 2.5, -0.5,
              0.0005, 0.0015, 0.0025, 1.0005, 1e15 + 0.3)
    assert _differ([(x, d) for x in values for d in range(7)]) == []
    assert math.copysign(1.0, round_to(-1e-9, 6)) == -1.0  # the sign of a zero kept


def test_times_are_written_as_the_format_wrote_them():
    rng = random.Random(11)
    stamps = [0.0, 0.5, 0.9999995, -0.25, -1.0000004, 1795255200.000044, 1795255200.9999996]
    stamps += [rng.uniform(-1e9, 4e9) for _ in range(20000)]
    stamps += [1.7e9 + rng.randrange(10**9) / 10**6 for _ in range(20000)]
    for ts in stamps:
        sec, us = divmod(int(round(ts * 1_000_000)), 1_000_000)
        assert iso_time(ts) == "%s.%06dZ" % (_iso_second(sec), us), ts


def test_flags_are_written_in_four_hex_digits_or_more():
    for v in [0, 3, 0x8180, 0x8183, 0xFFFF, 0x10000, -1] + list(range(0, 0x10000, 257)):
        assert hex4(v) == f"0x{v:04x}"
        assert hex4(v) == f"0x{v:04x}"  # (the second time from the table)
