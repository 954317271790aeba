"""tether.protocol.proxy: proxy selection, the CONNECT request and its answer, sans-I/O."""

from __future__ import annotations

import base64

import pytest

from tether.exceptions import InvalidURI, ProxyError
from tether.protocol.proxy import (
    Proxy,
    bypass,
    connect_request,
    parse_connect_response,
    select_proxy,
)

LIMITS = {"max_bytes": 256, "max_count": 8}
PROXY = Proxy("proxy.example", 3128)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy:3128", Proxy("proxy", 3128)),
        ("proxy:3128", Proxy("proxy", 3128)),
        ("http://proxy", Proxy("proxy", 80)),
        ("http://a%40b:p%3Ass@proxy:1", Proxy("proxy", 1, "a@b", "p:ss")),
        ("http://user@[::1]:3128/", Proxy("::1", 3128, "user", None)),
    ],
)
def test_from_url(url: str, expected: Proxy) -> None:
    assert Proxy.from_url(url) == expected


@pytest.mark.parametrize(
    "url", ["socks5://proxy:1080", "https://proxy:443", "http://", "http://proxy:99999"]
)
def test_from_url_refuses(url: str) -> None:
    with pytest.raises(InvalidURI):
        Proxy.from_url(url)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(InvalidURI) as caught:
        Proxy.from_url("socks5://ann:hunter2@proxy:1080")
    assert "hunter2" not in str(caught.value) and "ann:***@proxy" in str(caught.value)
    assert Proxy.from_url("http://ann:hunter2@proxy:1").url == "http://proxy:1"


def test_select_by_scheme_and_all() -> None:
    proxies = {"http": "http://plain:1", "https": "http://secure:2"}
    assert select_proxy("ws", "h", 80, environ=proxies) == Proxy("plain", 1)
    assert select_proxy("http", "h", 80, environ=proxies) == Proxy("plain", 1)
    assert select_proxy("wss", "h", 443, environ=proxies) == Proxy("secure", 2)
    assert select_proxy("https", "h", 443, environ=proxies) == Proxy("secure", 2)
    assert select_proxy("wss", "h", 443, environ={"all": "http://every:3"}) == Proxy("every", 3)
    assert select_proxy("wss", "h", 443, environ={"http": "http://plain:1"}) is None
    assert select_proxy("ws", "h", 80, environ={}) is None
    # ws_proxy / wss_proxy: WebSocket connections only, before the others.
    proxies |= {"ws": "http://wsonly:4", "wss": "http://wssonly:5", "all": "http://every:3"}
    assert select_proxy("ws", "h", 80, environ=proxies) == Proxy("wsonly", 4)
    assert select_proxy("wss", "h", 443, environ=proxies) == Proxy("wssonly", 5)
    assert select_proxy("http", "h", 80, environ=proxies) == Proxy("plain", 1)
    assert select_proxy("https", "h", 443, environ=proxies) == Proxy("secure", 2)


def test_explicit_option_wins() -> None:
    env = {"http": "http://env:1"}
    assert select_proxy("ws", "h", 80, "http://mine:2", environ=env) == Proxy("mine", 2)
    assert select_proxy("ws", "h", 80, None, environ=env) is None
    assert select_proxy("ws", "h", 80, False, environ=env) is None
    # An explicit proxy is used even for a host NO_PROXY lists.
    env["no"] = "h"
    assert select_proxy("ws", "h", 80, "http://mine:2", environ=env) == Proxy("mine", 2)


def test_environment_read_by_getproxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    assert select_proxy("wss", "h", 443) == Proxy("upper", 1)
    monkeypatch.setenv("https_proxy", "http://lower:2")  # lower case wins, as in curl
    assert select_proxy("wss", "h", 443) == Proxy("lower", 2)
    monkeypatch.setenv("NO_PROXY", ".example.com")
    assert select_proxy("wss", "api.example.com", 443) is None
    assert select_proxy("wss", "example.org", 443) == Proxy("lower", 2)


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("example.com", 443, "example.com", True),
        ("api.example.com", 443, "example.com", True),
        ("api.example.com", 443, ".example.com", True),
        ("badexample.com", 443, "example.com", False),
        ("example.com", 443, "*", True),
        ("example.com", 443, "example.com:8443", False),
        ("example.com", 8443, " other , example.com:8443 ", True),
        ("127.0.0.1", 80, "127.0.0.1", True),
        ("127.0.0.10", 80, "127.0.0.1", False),
        ("::1", 80, "[::1]:80", True),
        ("::1", 81, "[::1]:80", False),
        ("::1", 81, "::1", True),  # a bare IPv6 address, any port
        ("Example.COM.", 1, "example.com", True),
        ("example.com", 1, "", False),
        ("example.com", 1, ",,", False),
    ],
)
def test_bypass(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert bypass(host, port, no_proxy) is expected


def test_connect_request() -> None:
    assert connect_request("example.com", 443, PROXY) == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    assert connect_request("::1", 80, PROXY).startswith(b"CONNECT [::1]:80 HTTP/1.1\r\n")
    request = connect_request("h", 1, Proxy("p", 1, "ann", "pa:ss"))
    assert b"\r\nProxy-Authorization: Basic " + base64.b64encode(b"ann:pa:ss") in request


def test_connect_response_complete_and_partial() -> None:
    answer = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n"
    assert parse_connect_response(answer, PROXY, **LIMITS) == len(answer)
    assert parse_connect_response(answer[:-1], PROXY, **LIMITS) is None
    assert parse_connect_response(b"HTTP/1.0 200 OK\r\n\r\n", PROXY, **LIMITS) == 19


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 407),
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403),
        (b"HTTP/1.1 502\r\n\r\n", 502),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", 101),
    ],
)
def test_connect_refused(answer: bytes, status: int) -> None:
    with pytest.raises(ProxyError) as caught:
        parse_connect_response(answer, PROXY, **LIMITS)
    assert caught.value.status == status
    assert caught.value.proxy == "http://proxy.example:3128"
    assert f"proxy http://proxy.example:3128 refused the tunnel: HTTP {status}" in str(caught.value)


def test_connect_response_bounded_and_checked() -> None:
    with pytest.raises(ProxyError, match="too large"):
        parse_connect_response(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 300, PROXY, **LIMITS)
    many = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 9 + b"\r\n"
    with pytest.raises(ProxyError, match="too large"):
        parse_connect_response(many, PROXY, **LIMITS)
    with pytest.raises(ProxyError, match="malformed") as caught:
        parse_connect_response(b"SSH-2.0-x\r\n\r\n", PROXY, **LIMITS)
    assert caught.value.status is None
