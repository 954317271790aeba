"""The HTTP/1.1 head parser (RFC 7230), fed raw bytes."""

from __future__ import annotations

import pytest

from tether.exceptions import HandshakeError, PayloadTooBig
from tether.protocol.http import Headers, Request, Response, parse_request, parse_response

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
LIMITS = {"max_bytes": 16384, "max_count": 128}


def head_of_size(size: int) -> bytes:
    """A request head of exactly ``size`` bytes, blank line included."""
    base = b"GET / HTTP/1.1\r\nX: \r\n\r\n"
    head = b"GET / HTTP/1.1\r\nX: " + b"v" * (size - len(base)) + b"\r\n\r\n"
    assert len(head) == size
    return head


def test_parse_request() -> None:
    parsed = parse_request(REQUEST + b"\x81\x00", **LIMITS)
    assert parsed is not None
    request, end = parsed
    assert end == len(REQUEST)  # the frame after the head is left alone
    assert (request.method, request.path) == ("GET", "/chat?room=1")
    assert list(request.headers) == [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]


def test_parse_request_is_incremental() -> None:
    for cut in range(len(REQUEST)):
        assert parse_request(REQUEST[:cut], **LIMITS) is None, cut
    assert parse_request(bytearray(REQUEST), **LIMITS) is not None


def test_header_value_whitespace_is_trimmed_and_obs_text_kept() -> None:
    parsed = parse_request(b"GET / HTTP/1.1\r\nX-A: \t a b \t\r\nX-B:\xe9\r\n\r\n", **LIMITS)
    assert parsed is not None
    assert list(parsed[0].headers) == [("X-A", "a b"), ("X-B", "\xe9")]


@pytest.mark.parametrize("whole", [True, False])
def test_head_byte_limit(whole: bool) -> None:
    limit = 200
    fits, too_big = head_of_size(limit), head_of_size(limit + 1)

    def feed(data: bytes) -> object:
        if whole:
            return parse_request(data, max_bytes=limit, max_count=10)
        result = None
        for cut in range(1, len(data) + 1):  # as it arrives, byte by byte
            result = parse_request(data[:cut], max_bytes=limit, max_count=10)
        return result

    assert feed(fits) is not None
    with pytest.raises(PayloadTooBig):
        feed(too_big)


def test_head_byte_limit_without_a_blank_line() -> None:
    with pytest.raises(PayloadTooBig):
        parse_request(b"GET / HTTP/1.1\r\nX: " + b"v" * 300, max_bytes=200, max_count=10)
    assert parse_request(b"GET / HTTP/1.1\r\nX: " + b"v" * 100, max_bytes=200, max_count=10) is None


def test_header_count_limit() -> None:
    def head(n: int) -> bytes:
        return b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(n)) + b"\r\n"

    assert parse_request(head(5), max_bytes=1000, max_count=5) is not None
    with pytest.raises(PayloadTooBig):
        parse_request(head(6), max_bytes=1000, max_count=5)
    with pytest.raises(PayloadTooBig):
        parse_response(b"HTTP/1.1 101 OK\r\n" + head(6)[16:], max_bytes=1000, max_count=5)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",  # whitespace before the colon
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX\xe9: v\r\n\r\n",
    ],
)
def test_malformed_request_raises_handshake_error(head: bytes) -> None:
    with pytest.raises(HandshakeError):
        parse_request(head, **LIMITS)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"Host : x", "invalid header line b'Host : x'"),
        (b"no colon", "invalid header line b'no colon'"),
        (b"X: a\x00b", "invalid header value in b'X: a\\x00b'"),
    ],
)
def test_the_error_names_the_line_at_fault(line: bytes, message: str) -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\n" + line + b"\r\nX: 1\r\n\r\n"
    with pytest.raises(HandshakeError) as caught:
        parse_request(head, **LIMITS)
    assert str(caught.value) == message


def test_parse_response() -> None:
    raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00"
    parsed = parse_response(raw, **LIMITS)
    assert parsed is not None
    response, end = parsed
    assert raw[end:] == b"\x81\x00"
    assert (response.status, response.reason) == (101, "Switching Protocols")
    assert list(response.headers) == [("Upgrade", "websocket")]
    for cut in range(end):
        assert parse_response(raw[:cut], **LIMITS) is None


def test_parse_response_without_a_reason() -> None:
    parsed = parse_response(b"HTTP/1.1 404\r\n\r\n", **LIMITS)
    assert parsed is not None
    assert (parsed[0].status, parsed[0].reason) == (404, "")


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 1010 x\r\n\r\n",
        b"HTTP/1.1 10 x\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_response_raises_handshake_error(head: bytes) -> None:
    with pytest.raises(HandshakeError):
        parse_response(head, **LIMITS)


# -- encoding what the parser reads ---------------------------------------------------


def test_request_and_response_encode_round_trip() -> None:
    request = Request("/p?q=1", Headers([("Host", "h"), ("X", "1")]))
    assert request.encode() == b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\n"
    parsed = parse_request(request.encode(), **LIMITS)
    assert parsed is not None
    assert (parsed[0].path, list(parsed[0].headers)) == ("/p?q=1", [("Host", "h"), ("X", "1")])
    response = Response(400, "Bad Request", Headers([("A", "b")]), b"body")
    assert response.encode() == b"HTTP/1.1 400 Bad Request\r\nA: b\r\n\r\nbody"
