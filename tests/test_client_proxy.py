"""tether.connect (and tether.sync.connect, which wraps it) through an HTTP proxy.

The proxy is tinyproxy (tests/tinyproxy.py), a real one nobody here wrote;
the misbehaving proxies (closing, oversize head, silent) are small asyncio
servers written below, since no real proxy does that on purpose.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import tether
import tether.sync
from helpers import timeout
from tether.exceptions import ProxyError
from tinyproxy import Tinyproxy

PROXY_VARIABLES = [
    name
    for base in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
]


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment with no proxy variable."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def server(start_server: Callable[..., Awaitable[tether.Server]]) -> tether.Server:
    return await start_server()


@pytest.fixture
def proxy(tmp_path: Path, server: tether.Server) -> Iterator[Tinyproxy]:
    with Tinyproxy.start(tmp_path, connect_ports=[server.port]) as running:
        yield running


@pytest.fixture
async def dead_port() -> AsyncIterator[int]:
    """A port nothing listens on (a listener bound, then closed)."""
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    yield port


async def echo_once(uri: str, **options: object) -> None:
    async with tether.connect(uri, open_timeout=timeout(5), **options) as connection:  # type: ignore[arg-type]
        await connection.send("through")
        assert await asyncio.wait_for(connection.recv(), timeout(3)) == "through"


def tunnels(proxy: Tinyproxy, port: int) -> list[str]:
    return proxy.logged(rf"CONNECT 127\.0\.0\.1:{port} ")


async def test_ws_through_explicit_proxy(server: tether.Server, proxy: Tinyproxy) -> None:
    await echo_once(f"ws://127.0.0.1:{server.port}/", proxy=proxy.url)
    assert len(tunnels(proxy, server.port)) == 1


async def test_wss_through_proxy_tls_inside_the_tunnel(
    tmp_path: Path,
    start_server: Callable[..., Awaitable[tether.Server]],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = await start_server(ssl=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    with Tinyproxy.start(tmp_path, connect_ports=[server.port]) as proxy:
        # wss:// reads HTTPS_PROXY (upper case here), not HTTP_PROXY.
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
        uri = f"wss://127.0.0.1:{server.port}/"
        await echo_once(uri, ssl=client_context, server_hostname="localhost")
        assert len(tunnels(proxy, server.port)) == 1


async def test_environment_and_no_proxy(
    server: tether.Server, proxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"ws://127.0.0.1:{server.port}/"
    monkeypatch.setenv("http_proxy", proxy.url)
    await echo_once(uri)
    assert len(tunnels(proxy, server.port)) == 1
    # ALL_PROXY serves when no scheme-specific variable is set.
    monkeypatch.delenv("http_proxy")
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    await echo_once(uri)
    assert len(tunnels(proxy, server.port)) == 2
    # NO_PROXY lists the host (with its port here): straight to the server.
    monkeypatch.setenv("no_proxy", f"localhost, 127.0.0.1:{server.port}")
    await echo_once(uri)
    assert len(tunnels(proxy, server.port)) == 2


async def test_ws_proxy_before_http_proxy(
    server: tether.Server, proxy: Tinyproxy, dead_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{dead_port}")
    monkeypatch.setenv("WS_PROXY", proxy.url)
    await echo_once(f"ws://127.0.0.1:{server.port}/")
    assert len(tunnels(proxy, server.port)) == 1


async def test_explicit_proxy_wins_and_none_ignores_the_environment(
    server: tether.Server, proxy: Tinyproxy, dead_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"ws://127.0.0.1:{server.port}/"
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{dead_port}")
    with pytest.raises(OSError):
        await echo_once(uri)  # the environment's proxy is down: proof it is used
    await echo_once(uri, proxy=proxy.url)
    assert len(tunnels(proxy, server.port)) == 1
    for off in (None, False):
        await echo_once(uri, proxy=off)
    assert len(tunnels(proxy, server.port)) == 1


async def test_sync_client_through_proxy(server: tether.Server, proxy: Tinyproxy) -> None:
    uri = f"ws://127.0.0.1:{server.port}/"

    def blocking() -> None:  # in a thread: the server runs on this test's loop
        with tether.sync.connect(uri, proxy=proxy.url, open_timeout=timeout(5)) as connection:
            connection.send("sync")
            assert connection.recv(timeout=timeout(3)) == "sync"

    await asyncio.wait_for(asyncio.to_thread(blocking), timeout(10))
    assert len(tunnels(proxy, server.port)) == 1


async def test_proxy_authentication(tmp_path: Path, server: tether.Server) -> None:
    uri = f"ws://127.0.0.1:{server.port}/"
    with Tinyproxy.start(tmp_path, connect_ports=[server.port], auth=("ann", "s3cret")) as proxy:
        await echo_once(uri, proxy=f"http://ann:s3cret@127.0.0.1:{proxy.port}")
        for url in (proxy.url, f"http://ann:wrong@127.0.0.1:{proxy.port}"):
            with pytest.raises(ProxyError) as caught:
                await echo_once(uri, proxy=url)
            # RFC 9110 §15.5.8 asks for 407; tinyproxy 1.11 answers a CONNECT
            # without valid credentials with 401 (and plain requests with 407).
            status = caught.value.status
            assert status in (401, 407)
            message = str(caught.value)
            assert proxy.url in message and f"HTTP {status}" in message
            assert "wrong" not in message


async def test_proxy_refusing_the_port(tmp_path: Path, server: tether.Server) -> None:
    with Tinyproxy.start(tmp_path, connect_ports=[server.port + 1]) as proxy:
        with pytest.raises(ProxyError, match=r"refused the tunnel: HTTP 403") as caught:
            await echo_once(f"ws://127.0.0.1:{server.port}/", proxy=proxy.url)
        assert caught.value.proxy == proxy.url
        assert caught.value.status == 403


FakeProxy = Callable[[bytes | None], Awaitable[str]]
CONNECTS: list[bytes] = []  # the requests the fake proxies got


@pytest.fixture
async def fake_proxy() -> AsyncIterator[FakeProxy]:
    """``await fake_proxy(answer)``: a proxy that reads the CONNECT head, then
    sends ``answer`` and closes (or sends nothing and stays silent for None)."""
    servers: list[asyncio.Server] = []
    held: list[asyncio.StreamWriter] = []

    async def start(answer: bytes | None) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            CONNECTS.append(await reader.readuntil(b"\r\n\r\n"))
            if answer is None:
                held.append(writer)
                return
            writer.write(answer)
            await writer.drain()
            writer.close()

        listener = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(listener)
        return f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"

    yield start
    for writer in held:
        writer.close()
    for listener in servers:
        listener.close()
        await listener.wait_closed()


async def test_proxy_closing_without_answer(fake_proxy: FakeProxy) -> None:
    url = await fake_proxy(b"")
    with pytest.raises(ProxyError, match="closed the connection before answering"):
        await echo_once("ws://127.0.0.1:9/", proxy=url)


async def test_proxy_oversize_head(fake_proxy: FakeProxy) -> None:
    url = await fake_proxy(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n")
    with pytest.raises(ProxyError, match="response head too large"):
        await echo_once("ws://127.0.0.1:9/", proxy=url, max_header_bytes=8192)


async def test_proxy_malformed_answer(fake_proxy: FakeProxy) -> None:
    url = await fake_proxy(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ProxyError, match="malformed"):
        await echo_once("ws://127.0.0.1:9/", proxy=url)


async def test_silent_proxy_is_under_the_open_timeout(fake_proxy: FakeProxy) -> None:
    url = await fake_proxy(None)
    with pytest.raises(asyncio.TimeoutError):
        async with tether.connect("ws://127.0.0.1:9/", proxy=url, open_timeout=timeout(0.5)):
            pass


async def test_reconnecting_retries_a_proxy_5xx_not_a_4xx(fake_proxy: FakeProxy) -> None:
    bad_gateway = await fake_proxy(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
    attempts = tether.connect(
        "ws://127.0.0.1:9/", proxy=bad_gateway, max_attempts=2, backoff_min=0.001
    )
    CONNECTS.clear()
    with pytest.raises(ProxyError, match="HTTP 502"):
        async for _ in attempts:
            pass
    assert len(CONNECTS) == 2
    forbidden = await fake_proxy(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    CONNECTS.clear()
    with pytest.raises(ProxyError, match="HTTP 403"):
        async for _ in tether.connect("ws://127.0.0.1:9/", proxy=forbidden, max_attempts=5):
            pass
    assert len(CONNECTS) == 1
