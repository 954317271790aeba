"""The client's address behind trusted reverse proxies (sans-I/O).

A reverse proxy (HAProxy, nginx, a cloud load balancer) opens its own TCP
connection to the server, so the server sees the proxy's address, not the
client's. The proxy says who the client was in a header:

* ``Forwarded`` (RFC 7239): ``Forwarded: for=192.0.2.60;proto=https,
  for="[2001:db8::17]:4711"``, one element per proxy, each proxy appending its
  own to the right;
* ``X-Forwarded-For`` (the de facto older form): ``X-Forwarded-For:
  192.0.2.60, 198.51.100.7``, likewise appended to.

Anyone can send either header, so they mean something only when the peer is
a proxy we trust, and only as far back as the chain of trusted proxies goes:
:func:`client_address` walks the list from the right, skipping the hops that
are trusted proxies themselves, and takes the first one that is not. Any
doubt (a malformed header, more than :data:`MAX_HOPS` hops, an ``unknown``
or obfuscated node, RFC 7239 §6.2-6.3) leaves the peer's own address: a
header we cannot read is never a reason to believe a part of it.

>>> proxies = TrustedProxies(["10.0.0.0/8"])
>>> client_address("10.0.0.5", Headers([("X-Forwarded-For", "203.0.113.9, 10.0.0.7")]), proxies)
('203.0.113.9', 0)
>>> client_address("198.51.100.1", Headers([("X-Forwarded-For", "203.0.113.9")]), proxies)

(None: the peer is not a trusted proxy, its own address stands.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from .http_types import Headers

__all__ = [
    "MAX_HOPS",
    "Address",
    "ForwardedError",
    "TrustedProxies",
    "client_address",
    "parse_forwarded",
    "parse_node",
    "parse_x_forwarded_for",
]

#: Hops read from a forwarding header at most; a longer list is not believed
#: (and costs no more work than this many hops: the bound is checked first).
MAX_HOPS = 32

#: ``(host, port)``: an address as text in its canonical form (``ipaddress``'s
#: ``str``), and the port, 0 when not known.
Address = tuple[str, int]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 7230 §3.2.6 tchar, for the parameter names of RFC 7239 §4.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class ForwardedError(ValueError):
    """A forwarding header that cannot be read (the peer's address then stands)."""


class TrustedProxies:
    """A set of proxy addresses: IP addresses and CIDR networks.

    >>> proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "::1"])
    >>> "10.1.2.3" in proxies, "::ffff:127.0.0.1" in proxies, "192.0.2.1" in proxies
    (True, True, False)

    An IPv4 address seen as IPv4-mapped IPv6 (a dual-stack socket) is
    matched as IPv4. Anything that is not an IP address is not in the set.
    """

    __slots__ = ("networks",)

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        if isinstance(proxies, str):
            raise TypeError("trusted_proxies is a list of addresses, not one string")
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for proxy in proxies:
            try:
                networks.append(ipaddress.ip_network(proxy.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted proxy {proxy!r} is not an IP address or network"
                ) from None
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not self.networks:
            return False  # the default: no address to parse for every connection
        ip = address if isinstance(address, IPAddress) else _ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"


def _ip(text: object) -> IPAddress | None:
    """``text`` as an IP address (IPv4-mapped IPv6 as IPv4), or None."""
    if not isinstance(text, str):
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.scope_id is not None:
            return None  # a link-local zone is meaningless off the proxy's host
    return ip


def parse_node(text: str) -> tuple[IPAddress, int] | None:
    """An RFC 7239 §6 node: ``192.0.2.43``, ``192.0.2.43:47011``, ``[2001:db8::17]``,
    ``[2001:db8::17]:4711``; also a bare IPv6 address, as some proxies write one.

    None for ``unknown`` and obfuscated identifiers (``_hidden``, §6.3), whose
    address is not known; :class:`ForwardedError` for anything else that is
    not a node.

    >>> parse_node("[2001:db8::17]:4711")
    (IPv6Address('2001:db8::17'), 4711)
    >>> parse_node("unknown") is None
    True
    """
    port = 0
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ForwardedError(f"unterminated IPv6 literal in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ForwardedError(f"invalid node {text!r}")
            port = _port(rest[1:], text)
        ip = _ip(host)
        if not isinstance(ip, ipaddress.IPv6Address) and ip is not None and ":" not in host:
            raise ForwardedError(f"brackets around an IPv4 address in {text!r}")
    else:
        if text.lower() == "unknown" or text.startswith("_"):
            return None
        ip = _ip(text)  # an IPv4 address, or a bare IPv6 address
        if ip is None and text.count(":") == 1:
            host, _, number = text.partition(":")
            ip = _ip(host)
            if not isinstance(ip, ipaddress.IPv4Address) or ":" in host:
                raise ForwardedError(f"invalid node {text!r}")
            port = _port(number, text)
    if ip is None:
        raise ForwardedError(f"invalid node {text!r}")
    return ip, port


def _port(number: str, text: str) -> int:
    # RFC 7239 §6: node-port = port / obfport; port = 1*5DIGIT.
    if number.startswith("_"):
        return 0
    if not (0 < len(number) <= 5 and number.isascii() and number.isdigit()):
        raise ForwardedError(f"invalid port in {text!r}")
    port = int(number)
    if port > 65535:
        raise ForwardedError(f"invalid port in {text!r}")
    return port


def _hops(values: list[str]) -> Iterator[str]:
    """The comma-separated items of every line of a header, bounded by MAX_HOPS."""
    # Counted before splitting: a header of thousands of commas is refused
    # for the price of one scan (its size is bounded by the request head's).
    if sum(value.count(",") + 1 for value in values) > MAX_HOPS:
        raise ForwardedError(f"more than {MAX_HOPS} hops")
    for value in values:
        yield from value.split(",")


def parse_x_forwarded_for(values: list[str]) -> list[tuple[IPAddress, int] | None]:
    """The nodes of ``X-Forwarded-For`` lines, left to right (None where unknown).

    >>> parse_x_forwarded_for(["203.0.113.9, 10.0.0.7:8080"])
    [(IPv4Address('203.0.113.9'), 0), (IPv4Address('10.0.0.7'), 8080)]
    """
    nodes = []
    for item in _hops(values):
        item = item.strip(" \t")
        if not item:
            raise ForwardedError("empty X-Forwarded-For element")
        nodes.append(parse_node(item))
    return nodes


def parse_forwarded(values: list[str]) -> list[tuple[IPAddress, int] | None]:
    """The ``for`` nodes of ``Forwarded`` lines (RFC 7239 §4), left to right:
    None where a node is unknown, obfuscated or absent from its element.

    >>> parse_forwarded(['for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8::17]:4711"'])
    [(IPv4Address('192.0.2.60'), 0), (IPv6Address('2001:db8::17'), 4711)]
    """
    # Quoted strings may hold commas and semicolons (RFC 7230 §3.2.6), so the
    # line is scanned character by character, not split; MAX_HOPS is checked
    # on the raw commas first, which bounds the elements as well.
    if sum(value.count(",") + 1 for value in values) > MAX_HOPS * 4:
        raise ForwardedError(f"more than {MAX_HOPS} hops")
    nodes: list[tuple[IPAddress, int] | None] = []
    for value in values:
        for element in _elements(value):
            if len(nodes) == MAX_HOPS:
                raise ForwardedError(f"more than {MAX_HOPS} hops")
            node = element.get("for")
            nodes.append(None if node is None else parse_node(node))
    return nodes


def _elements(value: str) -> Iterator[dict[str, str]]:
    """The forwarded-elements of one header line, as {lowercase name: value}."""
    i, end = 0, len(value)
    element: dict[str, str] = {}
    while True:
        i = _skip_space(value, i)
        start = i
        while i < end and value[i] in _TCHAR:
            i += 1
        if i > start:
            name = value[start:i].lower()
            if i >= end or value[i] != "=":
                raise ForwardedError(f"expected '=' after {name!r}")
            i, pair_value = _pair_value(value, i + 1)
            if name in element:
                # RFC 7239 §4: each parameter at most once per element.
                raise ForwardedError(f"{name!r} twice in one element")
            element[name] = pair_value
            i = _skip_space(value, i)
        if i >= end:
            if not element:
                raise ForwardedError("empty Forwarded element")
            yield element
            return
        if value[i] == ";":
            i += 1
        elif value[i] == ",":
            if not element:
                raise ForwardedError("empty Forwarded element")
            yield element
            element = {}
            i += 1
        else:
            raise ForwardedError(f"unexpected {value[i]!r} in Forwarded")


def _skip_space(value: str, i: int) -> int:
    while i < len(value) and value[i] in " \t":
        i += 1
    return i


def _pair_value(value: str, i: int) -> tuple[int, str]:
    """A token or quoted-string value starting at ``i``; the index after it."""
    end = len(value)
    if i < end and value[i] == '"':
        out = []
        i += 1
        while i < end and value[i] != '"':
            if value[i] == "\\":
                i += 1
                if i >= end:
                    break
            out.append(value[i])
            i += 1
        if i >= end:
            raise ForwardedError("unterminated quoted string in Forwarded")
        return i + 1, "".join(out)
    start = i
    # A token by RFC 7239, but ':' '[' ']' are let through unquoted: proxies
    # configured as "for=$remote_addr" write IPv6 nodes that way. The node is
    # then checked by parse_node like any other.
    while i < end and (value[i] in _TCHAR or value[i] in ":[]"):
        i += 1
    if i == start:
        raise ForwardedError("empty value in Forwarded")
    return i, value[start:i]


def client_address(peer: str, headers: Headers, trusted: TrustedProxies) -> Address | None:
    """The client's address for a request from ``peer`` with ``headers``; None
    to keep the peer's own (it is not trusted, or the headers say nothing
    usable).

    Only a trusted ``peer``'s headers are read. ``Forwarded`` wins over
    ``X-Forwarded-For`` when both are present; in either, the right-most hop
    that is not a trusted proxy is the client (when every hop is trusted, the
    left-most one). An unreadable header, too many hops, or a hop whose node
    is not known (``unknown``, obfuscated, no ``for``) gives None: what is
    left of it was written by someone the proxies could not vouch for.
    """
    if peer not in trusted:
        return None
    try:
        forwarded = headers.get_all("Forwarded")
        if forwarded:
            nodes = parse_forwarded(forwarded)
        else:
            x_forwarded_for = headers.get_all("X-Forwarded-For")
            if not x_forwarded_for:
                return None
            nodes = parse_x_forwarded_for(x_forwarded_for)
    except ForwardedError:
        return None
    found: tuple[IPAddress, int] | None = None
    for node in reversed(nodes):
        if node is None:
            return None
        found = node
        if node[0] not in trusted:
            break
    if found is None:
        return None
    return str(found[0]), found[1]
