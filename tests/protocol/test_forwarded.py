"""Forwarding headers, sans-I/O: RFC 7239 ``Forwarded`` and ``X-Forwarded-For``
parsed from their text, and the client address chosen behind trusted proxies."""

from __future__ import annotations

import ipaddress
import time

import pytest

from tether.protocol.forwarded import (
    MAX_HOPS,
    ForwardedError,
    TrustedProxies,
    client_address,
    parse_forwarded,
    parse_node,
    parse_x_forwarded_for,
)
from tether.protocol.http import Headers

ip = ipaddress.ip_address
PROXIES = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"])


def forwarded(value: str) -> Headers:
    return Headers([("Forwarded", value)])


def xff(*values: str) -> Headers:
    return Headers([("X-Forwarded-For", value) for value in values])


# -- TrustedProxies ---------------------------------------------------------------


def test_trusted_proxies_hold_addresses_and_networks() -> None:
    assert "127.0.0.1" in PROXIES
    assert "10.200.3.4" in PROXIES
    assert "::1" in PROXIES
    assert "fd12:3456::1" in PROXIES
    assert "127.0.0.2" not in PROXIES
    assert "2001:db8::1" not in PROXIES


def test_ipv4_mapped_ipv6_peer_matches_as_ipv4() -> None:
    # A dual-stack listening socket reports IPv4 peers this way.
    assert "::ffff:127.0.0.1" in PROXIES
    assert "::ffff:10.1.1.1" in PROXIES
    assert "::ffff:192.0.2.1" not in PROXIES


@pytest.mark.parametrize("value", ["", "localhost", "unknown", None, 42, "fe80::1%eth0"])
def test_what_is_not_an_ip_address_is_never_trusted(value: object) -> None:
    assert value not in TrustedProxies(["0.0.0.0/0", "::/0"])


def test_empty_set_is_false_and_trusts_nothing() -> None:
    proxies = TrustedProxies()
    assert not proxies
    assert "127.0.0.1" not in proxies


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", "1.2.3", "::1/200"])
def test_invalid_proxy_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="trusted proxy"):
        TrustedProxies([bad])


def test_one_string_is_refused_rather_than_read_as_characters() -> None:
    with pytest.raises(TypeError):
        TrustedProxies("127.0.0.1")


def test_host_bits_of_a_network_are_ignored() -> None:
    assert "10.9.9.9" in TrustedProxies(["10.1.2.3/8"])


# -- nodes (RFC 7239 §6) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.43", (ip("192.0.2.43"), 0)),
        ("192.0.2.43:47011", (ip("192.0.2.43"), 47011)),
        ("192.0.2.43:_hidden", (ip("192.0.2.43"), 0)),
        ("[2001:db8:cafe::17]", (ip("2001:db8:cafe::17"), 0)),
        ("[2001:db8:cafe::17]:4711", (ip("2001:db8:cafe::17"), 4711)),
        ("[2001:DB8:0:0::17]:4711", (ip("2001:db8::17"), 4711)),
        ("2001:db8::17", (ip("2001:db8::17"), 0)),  # bare, as some proxies write it
        ("[::ffff:192.0.2.1]:80", (ip("192.0.2.1"), 80)),
        ("unknown", None),
        ("UNKNOWN", None),
        ("_hidden", None),
        ("_SEVKISEK", None),
    ],
)
def test_nodes(text: str, expected: object) -> None:
    assert parse_node(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.com",
        "192.0.2.43:",
        "192.0.2.43:99999",
        "192.0.2.43:1x",
        "192.0.2.43:١٢",  # non-ASCII digits
        "[2001:db8::17",
        "[2001:db8::17]x",
        "[2001:db8::17]:port",
        "[192.0.2.43]",
        "[192.0.2.43]:80",
        "2001:db8::17:80:x",
        "[fe80::1%eth0]",
        "[unknown]",
    ],
)
def test_invalid_nodes(text: str) -> None:
    with pytest.raises(ForwardedError):
        parse_node(text)


# -- Forwarded (RFC 7239 §4) --------------------------------------------------------


def test_rfc_7239_examples() -> None:
    # §4 and §7.1, as written there.
    assert parse_forwarded(['for="_gazonk"']) == [None]
    assert parse_forwarded(['For="[2001:db8:cafe::17]:4711"']) == [(ip("2001:db8:cafe::17"), 4711)]
    assert parse_forwarded(["for=192.0.2.60;proto=http;by=203.0.113.43"]) == [(ip("192.0.2.60"), 0)]
    assert parse_forwarded(["for=192.0.2.43, for=198.51.100.17"]) == [
        (ip("192.0.2.43"), 0),
        (ip("198.51.100.17"), 0),
    ]


def test_elements_over_several_lines_keep_their_order() -> None:
    lines = ["for=192.0.2.43", 'for="[2001:db8::1]", for=unknown']
    assert parse_forwarded(lines) == [(ip("192.0.2.43"), 0), (ip("2001:db8::1"), 0), None]


def test_element_without_for_has_no_node() -> None:
    assert parse_forwarded(["proto=https;by=10.0.0.1"]) == [None]


def test_quoted_strings_may_hold_separators_and_escapes() -> None:
    value = 'host="a,b;c";for="192.0.2.1", for="\\[2001:db8::2\\]"'
    assert parse_forwarded([value]) == [(ip("192.0.2.1"), 0), (ip("2001:db8::2"), 0)]


def test_spaces_around_separators_and_empty_pairs_are_taken() -> None:
    assert parse_forwarded([" for=192.0.2.1 ;; proto=http ,\tfor=192.0.2.2 "]) == [
        (ip("192.0.2.1"), 0),
        (ip("192.0.2.2"), 0),
    ]


def test_unquoted_ipv6_node_is_taken() -> None:
    # Not a token by the RFC, but "for=$remote_addr" proxy configs send it.
    assert parse_forwarded(["for=[2001:db8::1]:443"]) == [(ip("2001:db8::1"), 443)]


@pytest.mark.parametrize(
    "value",
    [
        "",
        ",",
        "for=192.0.2.1,",
        ",for=192.0.2.1",
        "for",
        "for=",
        "=192.0.2.1",
        'for="192.0.2.1',
        "for=192.0.2.1 for=192.0.2.2",
        "for=192.0.2.1;for=192.0.2.2",  # §4: a parameter at most once per element
        "for=example.com",
        "for=192.0.2.1/24",
        "for=\x00",
        "\x00garbage\xff",
        'for="[2001:db8::1]:80"x',
    ],
)
def test_malformed_forwarded(value: str) -> None:
    with pytest.raises(ForwardedError):
        parse_forwarded([value])


def test_too_many_elements_are_refused_without_reading_them_all() -> None:
    ok = ", ".join(["for=10.0.0.1"] * MAX_HOPS)
    assert len(parse_forwarded([ok])) == MAX_HOPS
    with pytest.raises(ForwardedError, match="hops"):
        parse_forwarded([ok + ", for=10.0.0.1"])
    with pytest.raises(ForwardedError, match="hops"):
        parse_forwarded(["for=10.0.0.1"] * (MAX_HOPS + 1))


def test_a_header_full_of_commas_costs_one_scan() -> None:
    # A request head is bounded (max_header_size), but within it the work
    # must stay linear: the comma count is checked before any parsing.
    value = "," * 200_000
    start = time.perf_counter()
    with pytest.raises(ForwardedError):
        parse_forwarded([value])
    with pytest.raises(ForwardedError):
        parse_x_forwarded_for([value])
    assert time.perf_counter() - start < 1.0


# -- X-Forwarded-For ----------------------------------------------------------------


def test_x_forwarded_for() -> None:
    assert parse_x_forwarded_for(["203.0.113.9, 10.0.0.7", "2001:db8::5,[2001:db8::6]:81"]) == [
        (ip("203.0.113.9"), 0),
        (ip("10.0.0.7"), 0),
        (ip("2001:db8::5"), 0),
        (ip("2001:db8::6"), 81),
    ]


@pytest.mark.parametrize("value", ["", " , ", "203.0.113.9,,10.0.0.1", "example.com", "1.2.3.4 5"])
def test_malformed_x_forwarded_for(value: str) -> None:
    with pytest.raises(ForwardedError):
        parse_x_forwarded_for([value])


def test_too_many_x_forwarded_for_hops() -> None:
    with pytest.raises(ForwardedError, match="hops"):
        parse_x_forwarded_for([", ".join(["10.0.0.1"] * (MAX_HOPS + 1))])


# -- choosing the client ------------------------------------------------------------


def test_untrusted_peer_keeps_its_address_whatever_it_sends() -> None:
    for headers in (forwarded("for=203.0.113.1"), xff("203.0.113.1")):
        assert client_address("192.0.2.99", headers, PROXIES) is None
        assert client_address("not an address", headers, PROXIES) is None


def test_trusted_peer_without_headers_keeps_its_address() -> None:
    assert client_address("127.0.0.1", Headers(), PROXIES) is None


def test_right_most_untrusted_hop_is_the_client() -> None:
    # The client forged the first hop; our own proxies appended the others.
    headers = xff("1.1.1.1, 203.0.113.7, 10.0.0.3")
    assert client_address("127.0.0.1", headers, PROXIES) == ("203.0.113.7", 0)
    headers = forwarded('for=1.1.1.1, for="[2001:db8::7]:5000", for=10.0.0.3')
    assert client_address("127.0.0.1", headers, PROXIES) == ("2001:db8::7", 5000)


def test_every_hop_trusted_gives_the_left_most() -> None:
    headers = xff("10.0.0.9, 10.0.0.3")
    assert client_address("127.0.0.1", headers, PROXIES) == ("10.0.0.9", 0)


def test_forwarded_wins_over_x_forwarded_for() -> None:
    headers = Headers([("X-Forwarded-For", "203.0.113.1"), ("Forwarded", "for=203.0.113.2")])
    assert client_address("127.0.0.1", headers, PROXIES) == ("203.0.113.2", 0)


def test_malformed_forwarded_is_not_a_reason_to_read_x_forwarded_for() -> None:
    headers = Headers([("Forwarded", "for="), ("X-Forwarded-For", "203.0.113.1")])
    assert client_address("127.0.0.1", headers, PROXIES) is None


@pytest.mark.parametrize(
    "headers",
    [
        forwarded("for=unknown"),
        forwarded("for=_hidden, for=10.0.0.3"),
        forwarded("proto=https"),
        forwarded("for=203.0.113.1, for=unknown"),
        forwarded("garbage"),
        xff("unknown"),
        xff("203.0.113.1, _proxy"),
        xff("not-an-ip"),
        xff(", ".join(["203.0.113.1"] * (MAX_HOPS + 1))),
    ],
)
def test_doubt_keeps_the_peer_address(headers: Headers) -> None:
    assert client_address("127.0.0.1", headers, PROXIES) is None


def test_unknown_hop_left_of_the_client_does_not_matter() -> None:
    headers = forwarded("for=unknown, for=203.0.113.5, for=10.0.0.3")
    assert client_address("127.0.0.1", headers, PROXIES) == ("203.0.113.5", 0)


def test_ipv6_proxy_and_ipv4_mapped_client() -> None:
    headers = forwarded('for="[::ffff:203.0.113.5]:8080", for="[fd00::3]"')
    assert client_address("::1", headers, PROXIES) == ("203.0.113.5", 8080)


def test_address_is_canonical() -> None:
    headers = xff("2001:DB8:0:0:0:0:0:7")
    assert client_address("::ffff:127.0.0.1", headers, PROXIES) == ("2001:db8::7", 0)
