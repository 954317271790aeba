"""The long-polling client (tether.realtime.client.polling): its HTTP/1.1
client against raw scripted responses (keep-alive, chunked and read-to-close
bodies, size limits, malformed heads), and PollingTransport against a real
Engine.IO server on 127.0.0.1 port 0 (the ``start_engine`` fixture: sessions
that echo every message).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import pytest

from helpers import timeout
from realtime.conftest import EchoEngine, StartEngine
from tether.exceptions import HandshakeError, PacketError
from tether.realtime.client.polling import HTTPClient, PollingTransport
from tether.realtime.protocol.engineio import Handshake, Packet, PacketType

T = TypeVar("T")


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    return await asyncio.wait_for(awaitable, timeout(units))


# -- the HTTP client of the polling transport --------------------------------------------


@contextlib.asynccontextmanager
async def raw_http_server(responses: list[bytes]) -> AsyncIterator[tuple[HTTPClient, list[int]]]:
    """Answer each request with the next raw response; count connections."""
    connections: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while responses:
                await reader.readuntil(b"\r\n\r\n")
                response = responses.pop(0)
                writer.write(response)
                await writer.drain()
                framed = b"Content-Length" in response or b"chunked" in response
                if b"Connection: close" in response or not framed:
                    break
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = HTTPClient("127.0.0.1", port, max_body=100)
    try:
        yield http, connections
    finally:
        http.close()
        for writer in writers:
            writer.close()
        server.close()
        await within(server.wait_closed())


async def test_http_keep_alive_and_chunked_bodies() -> None:
    responses = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\n4he\r\n4\r\nllo!\r\n0\r\nTrailer: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n6",
    ]
    async with raw_http_server(responses) as (http, connections):
        first = await within(http.request("POST", "/a", b"4x", "text/plain"))
        second = await within(http.request("GET", "/b"))
        third = await within(http.request("GET", "/c"))
    assert [first.body, second.body, third.body] == [b"ok", b"4hello!", b"6"]
    assert first.status == 200
    assert len(connections) == 1  # one connection, kept alive


async def test_http_body_to_the_end_of_the_connection() -> None:
    async with raw_http_server([b"HTTP/1.1 200 OK\r\n\r\n4hi"]) as (http, _):
        response = await within(http.request("GET", "/"))
    assert response.body == b"4hi"


async def test_http_refuses_large_bodies() -> None:
    too_big = b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n"
    async with raw_http_server([too_big]) as (http, _):
        with pytest.raises(PacketError, match="exceeds the limit of 100"):
            await within(http.request("GET", "/"))
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n"
    async with raw_http_server([chunked]) as (http, _):
        with pytest.raises(PacketError, match="exceeds the limit of 100"):
            await within(http.request("GET", "/"))


async def test_http_errors() -> None:
    async with raw_http_server([b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]) as (http, _):
        with pytest.raises(HandshakeError, match="Content-Length"):
            await within(http.request("GET", "/"))
    async with raw_http_server([b"SMTP ready\r\n\r\n"]) as (http, _):
        with pytest.raises(HandshakeError, match="status line"):
            await within(http.request("GET", "/"))


# -- PollingTransport against a real Engine.IO server ------------------------------------


def transport_to(engine: EchoEngine, max_payload: int = 100_000) -> PollingTransport:
    return PollingTransport(
        "127.0.0.1",
        engine.port,
        "/engine.io/?EIO=4&transport=polling",
        max_payload=max_payload,
    )


async def handshake(transport: PollingTransport) -> Handshake:
    """The first GET answers with the open packet (§Handshake); keep its sid."""
    first, *rest = await within(transport.receive())
    assert rest == []
    opened = Handshake.from_packet(first)
    transport.sid = opened.sid
    transport.send_limit = opened.max_payload
    return opened


async def test_polling_handshake_send_and_receive(start_engine: StartEngine) -> None:
    engine = await start_engine()
    transport = transport_to(engine)
    try:
        opened = await handshake(transport)
        assert tuple(opened.upgrades) == ("websocket",)
        sent = [Packet(PacketType.MESSAGE, "héllo"), Packet(PacketType.MESSAGE, b"\x00\x01")]
        await within(transport.send(sent))
        received: list[Packet] = []
        while len(received) < 2:
            received += await within(transport.receive())
        assert received == [
            Packet(PacketType.MESSAGE, "héllo"),
            Packet(PacketType.MESSAGE, b"\x00\x01"),
        ]
    finally:
        await within(transport.close())
    # The close packet we POSTed ended the session on the server (the client
    # asked: "forced close", as test_engine.test_polling_client_close).
    assert await engine.closed(opened.sid) == "forced close"


async def test_polling_get_and_post_in_flight_at_once(start_engine: StartEngine) -> None:
    """A pending GET (held open by the server) and a POST at the same time: the
    POST goes out on a second connection and its echo completes the GET."""
    engine = await start_engine()
    transport = transport_to(engine)
    try:
        await handshake(transport)
        pending = asyncio.ensure_future(transport.receive())
        await asyncio.sleep(timeout(0.2))
        assert not pending.done()  # the server holds the GET until it has packets
        await within(transport.send([Packet(PacketType.MESSAGE, "echo me")]))
        assert await within(pending) == [Packet(PacketType.MESSAGE, "echo me")]
    finally:
        await within(transport.close())


async def test_polling_send_splits_bodies_at_the_server_max_payload(
    start_engine: StartEngine,
) -> None:
    engine = await start_engine(max_payload=1000)
    transport = transport_to(engine)
    try:
        opened = await handshake(transport)
        assert transport.send_limit == opened.max_payload == 1000
        messages = [Packet(PacketType.MESSAGE, str(i) * 300) for i in range(5)]
        await within(transport.send(messages))  # one body would be over 1000 bytes
        received: list[Packet] = []
        while len(received) < len(messages):
            received += await within(transport.receive())
        assert received == messages
    finally:
        await within(transport.close())


async def test_polling_unknown_sid_is_an_error(start_engine: StartEngine) -> None:
    engine = await start_engine()
    transport = transport_to(engine)
    transport.sid = "no-such-session"
    try:
        with pytest.raises(HandshakeError, match="HTTP 400"):
            await within(transport.receive())
    finally:
        await within(transport.close(send_close=False))
