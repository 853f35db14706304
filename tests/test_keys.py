"""Keys: address normalisation and IP masking."""
import pytest

from qgrey import keys


class S:
    ignore_remoteip = ignore_sender = ignore_recipient = False
    mask_ip = True


class Exact(S):
    mask_ip = False


@pytest.mark.parametrize("raw, masked, exact", [
    (b"192.0.2.77", "192.0.2.0/24", "192.0.2.77"),
    (b"::ffff:192.0.2.77", "192.0.2.0/24", "192.0.2.77"),
    (b"::FFFF:c000:24d", "192.0.2.0/24", "192.0.2.77"),
    (b"2001:DB8:0:1:2:3:4:5", "2001:db8:0:1::/64", "2001:db8:0:1:2:3:4:5"),
    (b"2001:db8::1", "2001:db8::/64", "2001:db8::1"),
    (b"fe80::1%eth0", "fe80::/64", "fe80::1"),
    (b"::", "::/64", "::"),
    (b"::1", "::/64", "::1"),
    (b"2001:0:0:1:0:0:0:1", "2001:0:0:1::/64", "2001:0:0:1::1"),
    (b"1:0:0:2:0:0:0:3", "1:0:0:2::/64", "1:0:0:2::3"),
])
def test_client(raw, masked, exact):
    assert keys.client(raw, S) == masked
    assert keys.client(raw, Exact) == exact


@pytest.mark.parametrize("raw, v4, v6, expected", [
    (b"192.0.2.77", 22, 64, "192.0.0.0/22"),
    (b"192.0.2.77", 32, 64, "192.0.2.77/32"),
    (b"192.0.2.77", 8, 64, "192.0.0.0/8"),
    (b"::ffff:192.0.2.77", 16, 48, "192.0.0.0/16"),
    (b"2001:db8:aaaa:bbbb::1", 24, 48, "2001:db8:aaaa::/48"),
    (b"2001:db8:aaaa:bbbb::1", 24, 128, "2001:db8:aaaa:bbbb::1/128"),
    (b"2001:db8:aaaa:bbbb::1", 24, 16, "2001::/16"),
])
def test_prefix_lengths(raw, v4, v6, expected):
    class Prefixes(S):
        ipv4_prefix, ipv6_prefix = v4, v6
    assert keys.client(raw, Prefixes) == expected


@pytest.mark.parametrize("raw, expected", [
    (b"", "-"), (b"1.2.3", "1.2.3"), (b"1.2.3.4.5", "1.2.3.4.5"), (b"300.1.1.1", "300.1.1.1"),
    (b"1.2.3.-4", "1.2.3.-4"), (b"A.b.C.d", "a.b.c.d"), (b"1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9"),
    (b"1::2::3", "1::2::3"), (b"12345::", "12345::"), (b"::FFFF:1.2.3.999", "::ffff:1.2.3.999"),
    (b"\xff\xfe", "%FF%FE"), (b"1.2.3.4/24", "1.2.3.4/24"), (b"\xd9\xa1.1.1.1", "%D9%A1.1.1.1"),
    (b"1.2.3.4 x", "1.2.3.4%20x"), (b"<1.2.3.4>*%", "%3C1.2.3.4%3E%2A%25"), (b"a\x7fb\x01", "a%7Fb%01"),
])
def test_malformed_ip_is_kept_escaped(raw, expected):
    assert keys.client(raw, S) == expected
    assert keys.client(raw, Exact) == expected


def test_addresses_compare_case_insensitively_and_escape():
    assert keys.address(b"Alice@Example.ORG") == "alice@example.org"
    assert keys.address(b"") == "<>"
    assert keys.address(b"a b\r\n\x00%<>*\xe9@x") == "a%20b%0D%0A%00%25%3C%3E%2A%E9@x"
    assert len(keys.address(b"x" * 100000)) == keys.MAX_ADDRESS


def test_triplet_and_ignore_options():
    assert keys.triplet(b"192.0.2.7", b"A@B", b"C@D", S) == "192.0.2.0/24 a@b c@d"

    class Ignore(S):
        ignore_remoteip = ignore_sender = ignore_recipient = True
    assert keys.triplet(b"192.0.2.7", b"A@B", b"C@D", Ignore) == "* * *"


class AddressUnit(S):
    awl_unit = "address"
    ipv4_prefix, ipv6_prefix = 24, 64


class NetworkUnit(AddressUnit):
    awl_unit = "network"


@pytest.mark.parametrize("raw, address, network", [
    (b"192.0.2.77", "192.0.2.77", "192.0.2.0/24"),
    (b"::ffff:192.0.2.77", "192.0.2.77", "192.0.2.0/24"),
    (b"2001:db8:0:1:2:3:4:5", "2001:db8:0:1::/64", "2001:db8:0:1::/64"),
    (b"2001:db8::1", "2001:db8::/64", "2001:db8::/64"),
    (b"", "-", "-"),
    (b"not-an-ip", "not-an-ip", "not-an-ip"),
])
def test_awl_client(raw, address, network):
    assert keys.awl_client(raw, AddressUnit) == address
    assert keys.awl_client(raw, NetworkUnit) == network


def test_awl_client_is_never_wider_than_the_triplet_client():
    class Exact(AddressUnit):
        mask_ip = False

    class Narrow(AddressUnit):
        ipv6_prefix = 96
    assert keys.awl_client(b"2001:db8::1:2:3", Exact) == "2001:db8::1:2:3"
    assert keys.awl_client(b"2001:db8::1:2:3", Narrow) == "2001:db8::1:0:0/96"
    assert keys.awl_client(b"192.0.2.77", Exact) == "192.0.2.77"
