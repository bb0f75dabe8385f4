"""Special-purpose space and the ranges a user declares reachable (``--reachable``)."""

from forensics.detectors.addrspace import in_any, public_name, special

LAB = ("203.0.113.0/24", "2001:db8:2::/48")


def test_an_address_is_in_a_declared_range_of_its_own_version():
    assert in_any("203.0.113.7", LAB)
    assert in_any("2001:db8:2::54", LAB)
    assert not in_any("203.0.114.7", LAB)
    assert not in_any("2001:db8:3::53", LAB)
    # an IPv4-mapped address is not the IPv4 address's range (as ``ipaddress`` has it)
    assert not in_any("::ffff:203.0.113.7", LAB)


def test_the_answer_is_the_same_asked_again_and_for_other_ranges():
    # (the answers are cached by address and ranges: a second set of ranges must not get the first's)
    assert in_any("198.51.100.9", ("198.51.100.0/24",))
    assert not in_any("198.51.100.9", ("198.51.100.128/25",))
    assert in_any("198.51.100.9", ("198.51.100.0/24",))
    assert in_any("198.51.100.9", ["198.51.100.0/24"])  # a list is taken as its tuple


def test_nothing_is_in_no_range_and_a_bad_address_in_none():
    assert not in_any("203.0.113.7", ())
    assert not in_any("not-an-address", LAB)
    assert not in_any("", LAB)


def test_special_space_and_public_names():
    assert special("127.0.0.1") == "never"
    assert special("203.0.113.7") == "special"
    assert special("2001:db8::1") == "special"
    assert special("8.8.8.8") == ""
    assert special("junk") == ""
    assert public_name("blog.example.")
    assert not public_name("printer.local")
    assert not public_name("localhost")
