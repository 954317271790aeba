"""WebSocket URIs (RFC 6455 §3) and ws+unix:// URIs."""

from __future__ import annotations

import pytest

from tether.exceptions import InvalidURI
from tether.protocol.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ws://example.com", WebSocketURI(False, "example.com", 80, "/")),
        ("ws://example.com/", WebSocketURI(False, "example.com", 80, "/")),
        ("wss://example.com", WebSocketURI(True, "example.com", 443, "/")),
        ("ws://example.com:8080/chat", WebSocketURI(False, "example.com", 8080, "/chat")),
        (
            "wss://example.com:443/a/b?x=1&y=2",
            WebSocketURI(True, "example.com", 443, "/a/b?x=1&y=2"),
        ),
        ("ws://example.com?x=1", WebSocketURI(False, "example.com", 80, "/?x=1")),
        ("WS://Example.COM/Path", WebSocketURI(False, "example.com", 80, "/Path")),
        ("ws://[::1]:9000/", WebSocketURI(False, "::1", 9000, "/")),
        ("ws://user:secret@example.com/", WebSocketURI(False, "example.com", 80, "/")),
        ("ws://example.com:0/", WebSocketURI(False, "example.com", 0, "/")),
        ("ws+unix:///tmp/app.sock", WebSocketURI(False, "localhost", 80, "/", "/tmp/app.sock")),
        (
            "ws+unix:///tmp/app.sock:/chat?room=1",
            WebSocketURI(False, "localhost", 80, "/chat?room=1", "/tmp/app.sock"),
        ),
        (
            "ws+unix:///tmp/app.sock?x=1",
            WebSocketURI(False, "localhost", 80, "/?x=1", "/tmp/app.sock"),
        ),
    ],
)
def test_parse_uri(uri: str, expected: WebSocketURI) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/",
        "https://example.com/",
        "example.com",
        "ws://",
        "ws:///path",
        "ws://example.com/#frag",  # §3: fragments MUST NOT be used
        "ws://example.com:99999/",
        "ws://example.com:port/",
        "ws+unix://",
    ],
)
def test_parse_uri_rejects(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)
    with pytest.raises(ValueError):  # InvalidURI is also a ValueError
        parse_uri(uri)


@pytest.mark.parametrize(
    ("uri", "host_header"),
    [
        ("ws://example.com/", "example.com"),
        ("ws://example.com:80/", "example.com"),
        ("ws://example.com:443/", "example.com:443"),
        ("wss://example.com:443/", "example.com"),
        ("wss://example.com:80/", "example.com:80"),
        ("ws://example.com:8080/", "example.com:8080"),
        ("ws://[::1]/", "[::1]"),
        ("wss://[2001:db8::1]:8443/", "[2001:db8::1]:8443"),
    ],
)
def test_host_header_includes_the_port_only_when_not_default(uri: str, host_header: str) -> None:
    # §4.1: the port is part of Host when it is not the scheme's default.
    assert parse_uri(uri).host_header == host_header
