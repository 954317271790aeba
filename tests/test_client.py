"""The asyncio client: connect(), its reconnect iterator and its timeouts."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator

import pytest

import tether
from conftest import StartServer, ws_uri
from helpers import timeout
from tether import Request, Response


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[int, asyncio.Queue[bytes]]]:
    """A TCP server that reads but never answers; each connection's bytes, up to
    EOF, are put on the queue when the peer goes away."""
    received: asyncio.Queue[bytes] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        data = b""
        try:
            while chunk := await reader.read(65536):
                data += chunk
        except ConnectionResetError:
            pass
        await received.put(data)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], received
    for writer in writers:
        writer.transport.abort()
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout())


async def test_context_manager_closes_with_1000(start_server: StartServer) -> None:
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[tuple[int | None, str | None]] = loop.create_future()

    async def handler(connection: tether.Connection) -> None:
        async for _ in connection:
            pass
        seen.set_result((connection.close_code, connection.close_reason))

    server = await start_server(handler)
    async with tether.connect(ws_uri(server)) as client:
        assert client.open and not client.closed
        assert client.response is not None and client.response.status == 101
    assert client.closed
    assert await asyncio.wait_for(seen, timeout()) == (1000, "")


async def test_await_connect_returns_an_open_connection(echo_server: tether.Server) -> None:
    client = await tether.connect(ws_uri(echo_server))
    try:
        assert client.is_client and client.open
        assert client.remote_address[1] == echo_server.port
        await client.send("x")
        assert await asyncio.wait_for(client.recv(), timeout()) == "x"
    finally:
        await asyncio.wait_for(client.close(), timeout())


def test_invalid_uris_are_refused() -> None:
    for uri in ("http://example.com/", "ws://", "ws://host/#fragment"):
        with pytest.raises(tether.InvalidURI):
            tether.connect(uri)
    with pytest.raises(tether.InvalidURI):
        tether.connect("ws://127.0.0.1/", ssl=ssl.create_default_context())


async def test_open_timeout_when_the_server_never_answers(
    silent_server: tuple[int, asyncio.Queue[bytes]],
) -> None:
    port, received = silent_server
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(
            tether.connect(f"ws://127.0.0.1:{port}/", open_timeout=timeout(0.2)), timeout(2)
        )
    assert timeout(0.15) < time.monotonic() - started < timeout(1)
    # The client sent its handshake, then dropped the TCP connection.
    data = await asyncio.wait_for(received.get(), timeout())
    assert data.startswith(b"GET / HTTP/1.1\r\n")


async def test_a_bad_handshake_answer_is_a_handshake_error(start_server: StartServer) -> None:
    async def answer(connection: tether.Connection, request: Request) -> Response:
        # A 101 without Sec-WebSocket-Accept.
        return Response(101, "Switching Protocols", tether.Headers([("Upgrade", "websocket")]))

    server = await start_server(process_request=answer)
    with pytest.raises(tether.HandshakeError):
        await tether.connect(ws_uri(server), open_timeout=timeout())


async def test_reconnects_after_the_server_closes(start_server: StartServer) -> None:
    served = 0

    async def handler(connection: tether.Connection) -> None:
        nonlocal served
        served += 1
        await connection.send(f"hello #{served}")
        # returning closes the connection (1000)

    server = await start_server(handler)
    greetings = []
    opened: list[tether.Connection] = []

    async def run() -> None:
        async for connection in tether.connect(
            ws_uri(server), backoff_min=timeout(0.01), max_attempts=2
        ):
            opened.append(connection)
            async for message in connection:
                greetings.append(message)
            if len(opened) == 3:
                break

    await asyncio.wait_for(run(), timeout(3))
    assert greetings == ["hello #1", "hello #2", "hello #3"]
    assert len(set(map(id, opened))) == 3
    assert all(c.close_code == 1000 for c in opened)
    # The iterator closed each connection before opening the next.
    assert opened[0].closed and opened[1].closed


async def test_reconnects_when_the_server_comes_back(start_server: StartServer) -> None:
    first = await start_server()
    port = first.port
    got: asyncio.Queue[tether.Connection] = asyncio.Queue()

    async def run() -> None:
        async for connection in tether.connect(
            f"ws://127.0.0.1:{port}/", backoff_min=timeout(0.02), backoff_max=timeout(0.05)
        ):
            await got.put(connection)
            async for message in connection:
                await connection.send(message)

    task = asyncio.ensure_future(run())
    try:
        one = await asyncio.wait_for(got.get(), timeout())
        first.close()
        await asyncio.wait_for(first.wait_closed(timeout()), timeout(2))
        assert one.close_code == 1001
        # Restart on the same port: the iterator finds it, whatever attempts failed.
        second = await start_server(port=port)
        two = await asyncio.wait_for(got.get(), timeout(2))
        assert two is not one and two.open
        assert len(second.connections) == 1
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=timeout())


async def test_gives_up_after_max_attempts_when_nothing_listens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    uri = f"ws://127.0.0.1:{free_port()}/"
    caplog.set_level(logging.INFO, logger="tether.client")
    started = time.monotonic()

    async def run() -> None:
        async for _ in tether.connect(uri, backoff_min=timeout(0.01), max_attempts=3):
            raise AssertionError("nothing listens: no connection can open")

    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(run(), timeout(2))
    assert time.monotonic() - started < timeout(1)
    attempts = [r for r in caplog.records if "reconnecting" in r.getMessage()]
    assert len(attempts) == 3


async def test_reconnect_iterator_does_not_retry_a_4xx(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def refuse(connection: tether.Connection, request: Request) -> Response:
        nonlocal calls
        calls += 1
        return Response(403, "Forbidden")

    server = await start_server(process_request=refuse)

    async def run() -> None:
        async for _ in tether.connect(ws_uri(server), backoff_min=0, max_attempts=5):
            raise AssertionError("the server refuses every handshake")

    with pytest.raises(tether.InvalidStatus) as info:
        await asyncio.wait_for(run(), timeout(2))
    assert info.value.response.status == 403
    assert calls == 1


async def test_reconnect_iterator_retries_a_5xx(start_server: StartServer) -> None:
    calls = 0

    def flaky(connection: tether.Connection, request: Request) -> Response | None:
        nonlocal calls
        calls += 1
        return Response(503, "Service Unavailable") if calls < 3 else None

    server = await start_server(process_request=flaky)

    async def run() -> str | bytes:
        async for connection in tether.connect(
            ws_uri(server), backoff_min=timeout(0.01), max_attempts=5
        ):
            await connection.send("made it")
            reply = await connection.recv()
            await connection.close()
            return reply
        raise AssertionError("unreachable")

    assert await asyncio.wait_for(run(), timeout(2)) == "made it"
    assert calls == 3


@pytest.mark.parametrize("size", [0, 12, 8192, 8193])
async def test_a_refusal_body_is_read_up_to_max_header_bytes(
    start_server: StartServer, size: int
) -> None:
    # InvalidStatus carries what the server said, as websockets' does; a body
    # larger than max_header_bytes (8 KiB here) is not buffered.
    body = b"x" * size

    def refuse(connection: tether.Connection, request: Request) -> Response:
        return Response(401, "Unauthorized", body=body)

    server = await start_server(process_request=refuse)
    with pytest.raises(tether.InvalidStatus) as info:
        await asyncio.wait_for(tether.connect(ws_uri(server), max_header_bytes=8192), timeout(2))
    assert info.value.response.status == 401
    assert info.value.response.body == (body if size <= 8192 else b"")
