"""The server's plain-HTTP side: ``http_handler`` with bodies and keep-alive."""

from __future__ import annotations

import asyncio

import tether
from conftest import StartServer
from helpers import timeout
from tether.protocol import Headers, Request, Response


async def _answer(connection: tether.Connection, request: Request, body: bytes) -> Response:
    text = f"{request.method} {request.path} {len(body)} {body[:20]!r}".encode()
    return Response(200, "OK", Headers([("Content-Type", "text/plain")]), text)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(2))
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(
        reader.readexactly(int(headers.get("content-length", "0"))), timeout(2)
    )
    return status, headers, body


async def _open(server: tether.Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def test_keep_alive_serves_several_requests_with_bodies(start_server: StartServer) -> None:
    server = await start_server(http_handler=_answer)
    reader, writer = await _open(server)
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    status, headers, body = await _read_response(reader)
    assert (status, body) == (200, b"GET /a 0 b''")
    assert headers["content-length"] == str(len(body))
    status, _, body = await _read_response(reader)
    assert (status, body) == (200, b"POST /b 5 b'hello'")
    writer.close()


async def test_body_arriving_in_pieces(start_server: StartServer) -> None:
    server = await start_server(http_handler=_answer)
    reader, writer = await _open(server)
    payload = b"x" * 40_000  # more than max_header_bytes: the buffer must grow past it
    writer.write(b"POST /big HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(payload))
    for start in range(0, len(payload), 7_000):
        writer.write(payload[start : start + 7_000])
        await writer.drain()
    status, _, body = await _read_response(reader)
    assert status == 200
    assert body.startswith(b"POST /big 40000 ")
    writer.close()


async def test_connection_close_is_honoured(start_server: StartServer) -> None:
    server = await start_server(http_handler=_answer)
    reader, writer = await _open(server)
    writer.write(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    status, headers, _ = await _read_response(reader)
    assert status == 200 and headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), timeout(2)) == b""


async def test_oversized_body_is_refused_before_buffering(start_server: StartServer) -> None:
    server = await start_server(http_handler=_answer, max_message_size=1000)
    reader, writer = await _open(server)
    writer.write(b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n")
    status, _, _ = await _read_response(reader)
    assert status == 413
    assert await asyncio.wait_for(reader.read(), timeout(2)) == b""


async def test_chunked_and_invalid_lengths_are_refused(start_server: StartServer) -> None:
    server = await start_server(http_handler=_answer)
    for head, expected in (
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST / HTTP/1.1\r\nContent-Length: -4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 400),
    ):
        reader, writer = await _open(server)
        writer.write(head)
        status, _, _ = await _read_response(reader)
        assert status == expected, head
        writer.close()


async def test_held_request_ends_when_the_client_leaves(start_server: StartServer) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def hold(connection: tether.Connection, request: Request, body: bytes) -> Response:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    server = await start_server(http_handler=hold)
    _reader, writer = await _open(server)
    writer.write(b"GET /poll HTTP/1.1\r\n\r\n")
    await asyncio.wait_for(started.wait(), timeout(2))
    writer.close()
    await asyncio.wait_for(cancelled.wait(), timeout(2))


async def test_upgrade_after_plain_requests_on_one_connection(
    start_server: StartServer,
) -> None:
    async def echo(connection: tether.Connection) -> None:
        async for message in connection:
            await connection.send(message)

    server = await start_server(echo, http_handler=_answer)
    reader, writer = await _open(server)
    writer.write(b"GET /page HTTP/1.1\r\n\r\n")
    status, _, _ = await _read_response(reader)
    assert status == 200
    writer.close()
    # WebSocket clients still get their upgrade on the same server.
    async with tether.connect(f"ws://127.0.0.1:{server.port}/") as client:
        await client.send("hi")
        assert await asyncio.wait_for(client.recv(), timeout(2)) == "hi"


async def test_close_ends_idle_keep_alive_connections(start_server: StartServer) -> None:
    server = await start_server(http_handler=_answer)
    reader, writer = await _open(server)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    await _read_response(reader)
    server.close()
    # Not after open_timeout (10 s): at once.
    await asyncio.wait_for(server.wait_closed(), timeout(2))
    assert await asyncio.wait_for(reader.read(), timeout(2)) == b""
