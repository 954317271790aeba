"""Real servers behind trusted proxies: ``trusted_proxies=`` on :func:`tether.serve`
and :func:`tether.realtime.serve`.

The proxy is 127.0.0.1 (each test's trusted address); forged headers come
from 127.0.0.2, another loopback address the server does not trust. The
parsing itself is tested in tests/protocol/test_forwarded.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

import tether
from helpers import timeout
from tether import Request, Response, realtime
from tether.cli import _parser

Seen = list[Any]


def recording(seen: Seen) -> Callable[[tether.Connection], Any]:
    """A handler that records each connection's remote_address, then echoes."""

    async def handler(connection: tether.Connection) -> None:
        seen.append(connection.remote_address)
        async for message in connection:
            await connection.send(message)

    return handler


async def open_from(
    server: tether.Server,
    source: str,
    headers: list[tuple[str, str]] | None = None,
    *,
    family: socket.AddressFamily = socket.AF_INET,
) -> tether.Connection:
    """A WebSocket client whose TCP connection comes from ``source``, sending ``headers``."""
    target = "127.0.0.1" if family == socket.AF_INET else "::1"
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, (target, server.port)), timeout(2))
    host = target if family == socket.AF_INET else f"[{target}]"
    return await tether.connect(
        f"ws://{host}:{server.port}/",
        sock=sock,
        extra_headers=headers or [],
        open_timeout=timeout(2),
    )


@contextlib.asynccontextmanager
async def opened(
    opening: Coroutine[Any, Any, tether.Connection],
) -> AsyncIterator[tether.Connection]:
    connection = await opening
    try:
        yield connection
    finally:
        await connection.close()


async def echoes(connection: tether.Connection) -> bool:
    await connection.send("hello")
    return await asyncio.wait_for(connection.recv(), timeout(2)) == "hello"


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it holds (a condition, not a fixed delay)."""
    deadline = time.monotonic() + timeout(3)
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def serve() -> Any:
    servers: list[tether.Server] = []

    async def start(handler: Any, host: str = "127.0.0.1", **options: Any) -> tether.Server:
        options.setdefault("close_timeout", timeout(1))
        server = await tether.serve(handler, host, 0, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


FORGED = [("X-Forwarded-For", "203.0.113.66"), ("Forwarded", "for=203.0.113.66")]


# -- who the client is ----------------------------------------------------------------


async def test_headers_from_an_untrusted_peer_are_ignored(serve: Any) -> None:
    seen: Seen = []
    server = await serve(recording(seen), trusted_proxies=["127.0.0.1"])
    async with opened(open_from(server, "127.0.0.2", FORGED)) as client:
        assert await echoes(client)
    assert seen[0][0] == "127.0.0.2"
    assert seen[0][1] == client.local_address[1]


async def test_headers_are_ignored_by_default(serve: Any) -> None:
    seen: Seen = []
    server = await serve(recording(seen))
    async with opened(open_from(server, "127.0.0.1", FORGED)) as client:
        assert await echoes(client)
    assert seen[0][0] == "127.0.0.1"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("X-Forwarded-For", "203.0.113.7")], ("203.0.113.7", 0)),
        # A client forging its own X-Forwarded-For: our proxy appended the real one.
        ([("X-Forwarded-For", "1.1.1.1, 203.0.113.7")], ("203.0.113.7", 0)),
        ([("Forwarded", 'for="[2001:db8::7]:4711";proto=https')], ("2001:db8::7", 4711)),
        (
            [("Forwarded", "for=203.0.113.8"), ("X-Forwarded-For", "203.0.113.9")],
            ("203.0.113.8", 0),
        ),
        # Not usable: the proxy's own address stands.
        ([("Forwarded", "for=unknown")], None),
        ([("X-Forwarded-For", "garbage")], None),
        ([("X-Forwarded-For", ", ".join(["203.0.113.1"] * 100))], None),
        ([], None),
    ],
)
async def test_headers_from_a_trusted_proxy_name_the_client(
    serve: Any, headers: list[tuple[str, str]], expected: tuple[str, int] | None
) -> None:
    seen: Seen = []
    server = await serve(recording(seen), trusted_proxies=["127.0.0.0/30"])
    async with opened(open_from(server, "127.0.0.1", headers)) as client:
        assert await echoes(client)
        assert repr(expected[0] if expected else "127.0.0.1") in repr(server.connections)
    if expected is None:
        assert seen[0] == ("127.0.0.1", client.local_address[1])
    else:
        assert seen[0] == expected


async def test_ipv6_proxy(serve: Any) -> None:
    seen: Seen = []
    try:
        server = await serve(recording(seen), "::1", trusted_proxies=["::1"])
    except OSError:
        pytest.skip("no IPv6 loopback")
    headers = [("Forwarded", 'for="[2001:db8:cafe::17]:4711", for="[::1]"')]
    async with opened(open_from(server, "::1", headers, family=socket.AF_INET6)) as client:
        assert await echoes(client)
    assert seen == [("2001:db8:cafe::17", 4711)]


async def test_plain_http_requests_on_one_connection_each_name_their_client(serve: Any) -> None:
    # A proxy may carry several clients' requests over one keep-alive connection.
    seen: Seen = []

    async def http(connection: tether.Connection, request: Request, body: bytes) -> Response:
        seen.append((connection.remote_address, server.addresses.count("203.0.113.1")))
        return Response(200, "OK", body=b"ok")

    server = await serve(
        recording([]), http_handler=http, trusted_proxies=["127.0.0.1"], max_connections_per_ip=1
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for client in ("203.0.113.1", "203.0.113.2", "203.0.113.1"):
            writer.write(f"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(2))
            assert head.startswith(b"HTTP/1.1 200"), head
            assert await reader.readexactly(2) == b"ok"
    finally:
        writer.close()
    assert seen == [(("203.0.113.1", 0), 1), (("203.0.113.2", 0), 0), (("203.0.113.1", 0), 1)]
    await eventually(lambda: len(server.addresses) == 0)


# -- max_connections_per_ip --------------------------------------------------------------


async def test_a_trusted_proxy_is_not_capped_but_each_client_is(serve: Any) -> None:
    server = await serve(recording([]), trusted_proxies=["127.0.0.1"], max_connections_per_ip=2)
    # Many clients through one proxy: more connections than the cap, all served.
    clients = [
        await open_from(server, "127.0.0.1", [("X-Forwarded-For", f"203.0.113.{i}")])
        for i in range(1, 6)
    ]
    for client in clients:
        assert await echoes(client)
    # One client through the proxy: capped like a direct client.
    same = [("X-Forwarded-For", "198.51.100.1")]
    first = await open_from(server, "127.0.0.1", same)
    second = await open_from(server, "127.0.0.1", same)
    with pytest.raises(tether.InvalidStatus) as info:
        await open_from(server, "127.0.0.1", same)
    assert info.value.response.status == 503
    assert server.addresses.count("127.0.0.1") == 0  # the proxy itself is not counted
    # Released on close.
    await first.close()
    await eventually(lambda: server.addresses.count("198.51.100.1") == 1)
    third = await open_from(server, "127.0.0.1", same)
    assert await echoes(third)
    for client in [*clients, second, third]:
        await client.close()
    await eventually(lambda: len(server.addresses) == 0)


async def test_forged_headers_do_not_escape_the_cap(serve: Any) -> None:
    server = await serve(recording([]), trusted_proxies=["127.0.0.1"], max_connections_per_ip=1)
    first = await open_from(server, "127.0.0.2", [("X-Forwarded-For", "203.0.113.1")])
    with pytest.raises(tether.InvalidStatus) as info:
        await open_from(server, "127.0.0.2", [("X-Forwarded-For", "203.0.113.2")])
    assert info.value.response.status == 503
    await eventually(lambda: server.addresses.count("127.0.0.2") == 1)  # the refused one is gone
    assert server.addresses.count("203.0.113.1") == 0
    await first.close()
    await eventually(lambda: len(server.addresses) == 0)


async def test_proxy_connection_that_never_sends_a_request_is_not_counted(serve: Any) -> None:
    server = await serve(recording([]), trusted_proxies=["127.0.0.1"], max_connections_per_ip=1)
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    other = await open_from(server, "127.0.0.1")  # counted under the proxy: no header
    assert await echoes(other)
    assert len(server.addresses) == 1
    writer.close()
    await other.close()
    await eventually(lambda: len(server.addresses) == 0)


# -- the realtime layer and the CLI ------------------------------------------------------


async def test_realtime_handshake_address_is_the_client() -> None:
    server = realtime.Server()
    addresses: list[Any] = []

    @server.on("connect")
    def connect(sock: realtime.Socket) -> None:
        addresses.append(sock.handshake.address)

    async with realtime.serve(server, "127.0.0.1", 0, trusted_proxies=["127.0.0.1"]) as http:
        url = f"ws://127.0.0.1:{http.port}/socket.io/?EIO=4&transport=websocket"
        headers = [("Forwarded", "for=203.0.113.50:6000")]
        async with tether.connect(url, extra_headers=headers) as ws:
            assert str(await asyncio.wait_for(ws.recv(), timeout(2))).startswith("0{")
            await ws.send("40")
            reply = str(await asyncio.wait_for(ws.recv(), timeout(2)))
            assert reply.startswith("40") and "sid" in json.loads(reply[2:])
    assert addresses == [("203.0.113.50", 6000)]


def test_cli_takes_trusted_proxies() -> None:
    args = _parser().parse_args(
        ["serve", "--echo", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"]
    )
    assert args.trusted_proxy == ["10.0.0.0/8", "::1"]
    assert _parser().parse_args(["serve", "--echo"]).trusted_proxy == []


def test_invalid_trusted_proxy_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="trusted proxy"):
        tether.serve(recording([]), "127.0.0.1", 0, trusted_proxies=["10.0.0.0/99"])
