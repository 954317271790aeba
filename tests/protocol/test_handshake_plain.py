"""The plain handshake in C (``_handshake.c``) against ``ServerHandshake.accept``.

``ServerHandshake.accept_encoded`` answers a request that negotiates nothing
in C when the extension is built; whatever it answers must be what
:meth:`~tether.protocol.handshake.ServerHandshake.accept` and
``Response.encode`` give, and it must raise what ``accept`` raises. Without
the C extension ``accept_encoded`` is ``accept`` itself, and these tests
check that too.
"""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from tether.exceptions import HandshakeRejected
from tether.protocol import speedups
from tether.protocol.handshake import ServerHandshake, accept_key
from tether.protocol.http import Headers, Request

needs_c = pytest.mark.skipif(speedups.accept_plain is None, reason="the C extension is not built")

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
PLAIN = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]

# Header lines the random requests are drawn from: each check's passing and
# failing values, in several spellings.
POOL = [
    ("Host", "h"),
    ("host", "example.com:8000"),
    ("HOST", ""),
    ("Upgrade", "websocket"),
    ("upgrade", "WebSocket"),
    ("Upgrade", "h2c, websocket"),
    ("Upgrade", "web socket"),
    ("Upgrade", "websocket\x0b"),
    ("Upgrade", "\xa0websocket"),
    ("Connection", "Upgrade"),
    ("connection", "keep-alive, Upgrade"),
    ("Connection", "keep-alive"),
    ("Connection", " upgrade ,\t"),
    ("Connection", "Upgrade\x85"),
    ("Sec-WebSocket-Key", KEY),
    ("sec-websocket-key", "x3JJHMbDL1EzLkh9GBhXDw=="),
    ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw="),
    ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXD==="),
    ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhX-w=="),
    ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDwA="),
    ("Sec-WebSocket-Version", "13"),
    ("SEC-WEBSOCKET-VERSION", "13"),
    ("Sec-WebSocket-Version", "8"),
    ("Sec-WebSocket-Version", "13, 8"),
    ("Sec-WebSocket-Protocol", "chat"),
    ("Sec-WebSocket-Extensions", "permessage-deflate"),
    ("Sec-WebSocket-Extensions", "x-unknown"),
    ("Origin", "http://example.com"),
    ("User-Agent", "Mozilla/5.0"),
    ("Cookie", "a=1; b=2"),
    ("X-\u0100", "wide"),
    ("X-Wide", "\u2603"),
]

HANDSHAKES = {
    "default": ServerHandshake(),
    "no server line": ServerHandshake(server_header=None, compression=None),
    "subprotocols": ServerHandshake(subprotocols=["chat"]),
    "origins": ServerHandshake(origins=["http://example.com"]),
    "selector": ServerHandshake(select_subprotocol=lambda request, offered: None),
}


def outcome(handshake: ServerHandshake, request: Request, encoded: bool) -> object:
    """What ``accept_encoded`` (or ``accept`` and ``encode``) answer, comparable."""
    try:
        if encoded:
            response, result, head = handshake.accept_encoded(request)
        else:
            response, result = handshake.accept(request)
            head = response.encode()
    except HandshakeRejected as exc:
        return ("rejected", str(exc), exc.response.status, exc.response.encode())
    return (response.status, response.reason, list(response.headers), result, head)


def test_rfc_6455_example() -> None:
    # §1.3: this key's accept value.
    response, _, head = ServerHandshake().accept_encoded(Request("/chat", Headers(PLAIN)))
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert head.endswith(b"\r\n\r\n")


@needs_c
def test_the_c_step_answers_the_plain_case() -> None:
    handshake = ServerHandshake()
    request = Request("/", Headers(PLAIN))
    assert speedups.accept_plain is not None
    done = speedups.accept_plain(
        request.headers.flat(), handshake._head_prefix, handshake._head_suffix
    )
    assert done is not None
    assert done[0] == accept_key(KEY)
    assert done[1] == handshake.accept(request)[0].encode()


@needs_c
def test_accept_values_match_sha1_and_base64() -> None:
    rng = random.Random(6455)
    handshake = ServerHandshake(server_header=None)
    assert speedups.accept_plain is not None
    for _ in range(2000):
        key = base64.b64encode(rng.randbytes(16)).decode()
        items = Headers([*PLAIN[:3], ("Sec-WebSocket-Key", key), PLAIN[4]]).flat()
        done = speedups.accept_plain(items, b"", b"")
        expected = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        assert done == (expected, expected.encode()), key
        request = Request("/", Headers.from_flat(items))
        assert outcome(handshake, request, True) == outcome(handshake, request, False)


@needs_c
@pytest.mark.parametrize(
    "change",
    [
        [("Sec-WebSocket-Protocol", "chat")],
        [("Sec-WebSocket-Extensions", "permessage-deflate")],
        [("Host", "twice")],
        [("Sec-WebSocket-Key", KEY)],
        [("Sec-WebSocket-Version", "13")],
    ],
)
def test_the_c_step_leaves_the_rest_to_python(change: list[tuple[str, str]]) -> None:
    assert speedups.accept_plain is not None
    assert speedups.accept_plain(Headers(PLAIN + change).flat(), b"", b"") is None


@pytest.mark.parametrize("name", sorted(HANDSHAKES))
def test_same_answers_as_accept(name: str) -> None:
    handshake = HANDSHAKES[name]
    rng = random.Random(name)
    requests = [Request("/", Headers(PLAIN)), Request("/", Headers(PLAIN), "POST")]
    for _ in range(1500):
        lines = rng.sample(POOL, rng.randint(0, 9))
        if rng.random() < 0.5:
            lines += rng.sample(PLAIN, rng.randint(3, 5))
        if rng.random() < 0.5:
            lines.append(("Origin", "http://example.com"))
        rng.shuffle(lines)
        requests.append(Request("/", Headers(lines)))
    answered = 0
    for request in requests:
        expected = outcome(handshake, request, False)
        assert outcome(handshake, request, True) == expected, list(request.headers)
        answered += expected[0] == 101
    # Both sides of every check were drawn.
    assert 20 < answered < len(requests) - 20


def test_an_origin_list_set_later_is_checked() -> None:
    # origins is public: a list given after construction must still be
    # enforced, by accept(), not skipped by the C step.
    handshake = ServerHandshake()
    handshake.origins = ["https://good.example"]
    request = Request("/", Headers([*PLAIN, ("Origin", "https://evil.example")]))
    with pytest.raises(HandshakeRejected, match="origin not allowed"):
        handshake.accept_encoded(request)
