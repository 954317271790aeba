"""The C request head parser (``_http_head.c``) against the Python one.

Whatever the C parser answers, it answers as :func:`parse_request_py` does:
None for a head not whole yet, the same request for a whole one. For
anything else it returns False, and the Python parser judges. The common
heads (what browsers and the usual clients send) must not need that.
Skipped without the C extension; the pure-Python parser's own behaviour is
tests/protocol/test_http.py's.
"""

from __future__ import annotations

import random
from types import ModuleType

import pytest

from tether.exceptions import HandshakeError, PayloadTooBig
from tether.protocol import http
from tether.protocol.http import parse_request_py

_c: ModuleType | None
try:
    from tether.protocol import _speedups as _c
except ImportError:
    _c = None

pytestmark = pytest.mark.skipif(_c is None, reason="the C extension is not built")

MAX_BYTES, MAX_COUNT = 8192, 100

# What clients send, as they send it.
COMMON = [
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",
    # Chromium's
    b"GET /socket.io/?EIO=4&transport=websocket&sid=abc HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"Connection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n"
    b"Upgrade: websocket\r\nOrigin: http://127.0.0.1:8000\r\nSec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: a=1; b=2\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    # Firefox's
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: Mozilla/5.0 Firefox/120.0\r\n"
    b"Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Sec-WebSocket-Version: 13\r\nOrigin: http://localhost\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-Fetch-Dest: empty\r\nPragma: no-cache\r\nUpgrade: websocket\r\n\r\n",
    # A plain HTTP request with a body after its head, and one with no headers
    b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: h\r\n"
    b"Content-Length: 5\r\nContent-Type: text/plain;charset=UTF-8\r\n\r\n40abc",
    b"GET / HTTP/1.1\r\n\r\n",
    # Empty values, tabs and spaces around them
    b"GET /x HTTP/1.1\r\nX-Empty:\r\nX-Pad: \t padded \t\r\nHost:h\r\n\r\n",
]


def c_parse(buf: bytes | bytearray) -> object:
    assert _c is not None
    return _c.parse_request(buf, MAX_BYTES, MAX_COUNT, http._SHARED_TEXT)


def python_parse(buf: bytes | bytearray) -> object:
    """What the Python parser does with ``buf``: its result or its exception type."""
    try:
        parsed = parse_request_py(buf, max_bytes=MAX_BYTES, max_count=MAX_COUNT)
    except (HandshakeError, PayloadTooBig) as exc:
        return type(exc)
    if parsed is None:
        return None
    request, used = parsed
    return request.method, request.path, list(request.headers), used


def agree(buf: bytes | bytearray) -> object:
    """Check that the C parser, when it answers, answers as Python does."""
    got = c_parse(buf)
    expected = python_parse(buf)
    if got is False:
        assert expected is not None, buf  # a head not whole is the C parser's to say
        return got
    if got is None:
        assert expected is None, buf
        return got
    assert isinstance(got, tuple)
    method, target, items, used = got
    pairs = list(zip(items[0::2], items[1::2], strict=True))
    assert (method, target, pairs, used) == expected, buf
    return got


@pytest.mark.parametrize("head", COMMON)
def test_the_common_heads_are_parsed_in_c_as_in_python(head: bytes) -> None:
    assert isinstance(agree(head), tuple)
    assert isinstance(agree(bytearray(head)), tuple)
    # Every prefix short of the blank line is "not yet", as for Python.
    end = head.index(b"\r\n\r\n") + 4
    for cut in range(end):
        assert agree(head[:cut]) is None


def test_shared_strings_are_shared() -> None:
    first, second = (c_parse(COMMON[0]) for _ in range(2))
    assert isinstance(first, tuple) and isinstance(second, tuple)
    assert first[2][2] == "Upgrade" and first[2][2] is second[2][2]


@pytest.mark.parametrize(
    "head",
    [
        b"get / HTTP/1.1\r\nHost: h\r\n\r\n",  # lower-case method
        b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",  # space before the colon
        b"GET / HTTP/1.1\r\nHost h\r\n\r\n",
        b"GET / HTTP/1.1\r\n: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\nb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_COUNT + 1) + b"\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"y" * MAX_BYTES + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"y" * MAX_BYTES,
    ],
)
def test_what_python_rejects_is_left_to_python(head: bytes) -> None:
    assert c_parse(head) is False
    assert isinstance(python_parse(head), type)


def test_a_target_python_decodes_with_replacement_is_left_to_python() -> None:
    head = b"GET /\xe9 HTTP/1.1\r\nHost: h\r\n\r\n"
    assert c_parse(head) is False
    assert http.parse_request(head, max_bytes=MAX_BYTES, max_count=MAX_COUNT) is not None
    assert python_parse(head) == ("GET", "/\ufffd", [("Host", "h")], len(head))


def test_random_heads_agree() -> None:
    rng = random.Random(7230)
    alphabet = b"GET /HTP1.:\r\n\t -aZz\x00\x7f\xe9=;,"
    checked = answered = 0
    for _ in range(3000):
        head = bytearray(rng.choice(COMMON))
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(head) + 1)
            action = rng.randrange(3)
            if action == 0 and i < len(head):
                head[i] = rng.choice(alphabet)
            elif action == 1 and i < len(head):
                del head[i]
            else:
                head.insert(i, rng.choice(alphabet))
        answered += isinstance(agree(head), tuple)
        checked += 1
    assert checked == 3000 and answered > 100  # many still parse, and agree
