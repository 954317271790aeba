"""The asyncio server: limits, hooks, handshake options, shutdown, transports."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from pathlib import Path
from typing import Literal

import pytest

import tether
from conftest import OP_BINARY, OP_TEXT, OpenRaw, StartServer, ws_uri
from helpers import send_past_a_1009, timeout
from tether import Headers, Request, Response


async def echo_once(uri: str, message: str = "ping", **options: object) -> str | bytes:
    async with tether.connect(uri, **options) as client:  # type: ignore[arg-type]
        await client.send(message)
        return await asyncio.wait_for(client.recv(), timeout())


async def http_get(port: int, path: str, extra: str = "") -> bytes:
    """A plain HTTP/1.1 request; return everything the server sent before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
        return await asyncio.wait_for(reader.read(), timeout())
    finally:
        writer.close()


# -- limits and protocol errors ---------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_message_over_max_message_size_fails_with_1009_and_others_are_served(
    start_server: StartServer, compression: Literal["deflate"] | None
) -> None:
    server = await start_server(max_message_size=1000, compression=compression)
    async with tether.connect(ws_uri(server), compression=compression) as bystander:
        async with tether.connect(ws_uri(server), compression=compression) as client:
            await client.send("x" * 999)
            assert await asyncio.wait_for(client.recv(), timeout()) == "x" * 999
            # Compressible on purpose: with deflate the limit applies after inflating.
            await client.send("y" * 1001)
            with pytest.raises(tether.ConnectionClosedError) as info:
                await asyncio.wait_for(client.recv(), timeout())
            assert info.value.code == 1009
        await bystander.send("still here")
        assert await asyncio.wait_for(bystander.recv(), timeout()) == "still here"
    assert await echo_once(ws_uri(server), compression=compression) == "ping"


async def test_a_failed_connection_lingers_so_its_close_frame_survives_the_rest_of_the_frame(
    start_server: StartServer,
) -> None:
    """The server fails a connection on a frame header over max_message_size
    (1009), while that frame's payload is still on its way. It sends FIN and
    reads and drops what comes until the client closes: closing with unread
    bytes would answer them with a reset, which can destroy the close frame
    before the client reads it (a client then sees ECONNRESET, not 1009)."""
    server = await start_server(max_message_size=1000)
    received = await asyncio.to_thread(send_past_a_1009, server.port)
    assert received[0] == 0x88  # a close frame, then the server's FIN
    assert int.from_bytes(received[2:4], "big") == 1009


@pytest.mark.parametrize(
    ("frame", "mask"),
    [
        ((OP_TEXT, b"unmasked"), False),  # §5.1: clients must mask
        ((0x3, b"reserved opcode"), True),
        ((OP_BINARY | 0x20, b"rsv2"), True),
    ],
)
async def test_malformed_frame_closes_only_that_connection_with_1002(
    echo_server: tether.Server, raw_client: OpenRaw, frame: tuple[int, bytes], mask: bool
) -> None:
    async with tether.connect(ws_uri(echo_server)) as bystander:
        raw = await raw_client(echo_server.port)
        raw.send_frame(frame[0], frame[1], mask=mask)
        code, _ = await asyncio.wait_for(raw.read_close(), timeout())
        assert code == 1002
        assert await asyncio.wait_for(raw.at_eof(), timeout())
        await bystander.send("fine")
        assert await asyncio.wait_for(bystander.recv(), timeout()) == "fine"
        # The server lingers (reading and dropping) until the client closes too.
        raw.writer.close()
        for connection in list(echo_server.connections):
            if not connection.open:
                await asyncio.wait_for(connection.wait_closed(), timeout())
    assert not echo_server.connections or all(c.open for c in echo_server.connections)


async def test_oversized_handshake_head_is_answered_431(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    server = await start_server(max_header_bytes=1024)
    raw = await raw_client(server.port, handshake=False)
    raw.writer.write(raw.request(extra="X-Big: " + "a" * 2000 + "\r\n"))
    answer = await asyncio.wait_for(raw.reader.read(), timeout())
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_plain_http_request_is_answered_426(echo_server: tether.Server) -> None:
    answer = await http_get(echo_server.port, "/")
    assert answer.startswith(b"HTTP/1.1 426 ")
    assert b"Upgrade: websocket" in answer


# -- process_request, origins, subprotocols, request ------------------------------


async def test_process_request_answers_a_health_check(start_server: StartServer) -> None:
    def health(connection: tether.Connection, request: Request) -> Response | None:
        if request.path == "/health":
            return Response(200, "OK", Headers([("Content-Length", "3")]), b"ok\n")
        return None

    server = await start_server(process_request=health)
    answer = await http_get(server.port, "/health")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\nok\n")
    with pytest.raises(tether.InvalidStatus) as info:
        await tether.connect(ws_uri(server, "/health"))
    assert info.value.response.status == 200
    # Other paths still upgrade.
    assert await echo_once(ws_uri(server, "/chat")) == "ping"


async def test_async_process_request_can_refuse_with_401(start_server: StartServer) -> None:
    async def authenticate(connection: tether.Connection, request: Request) -> Response | None:
        await asyncio.sleep(0)  # e.g. a token lookup
        if request.headers.get("Authorization") != "Bearer s3cret":
            return Response(401, "Unauthorized", Headers([("WWW-Authenticate", "Bearer")]))
        return None

    server = await start_server(process_request=authenticate)
    with pytest.raises(tether.InvalidStatus) as info:
        await tether.connect(ws_uri(server))
    assert info.value.response.status == 401
    assert info.value.response.headers.get("WWW-Authenticate") == "Bearer"
    reply = await echo_once(ws_uri(server), extra_headers=[("Authorization", "Bearer s3cret")])
    assert reply == "ping"
    assert not server.connections or all(c.request is not None for c in server.connections)


async def test_process_response_adds_headers_to_the_101(start_server: StartServer) -> None:
    seen: list[str] = []

    def stamp(connection: tether.Connection, request: Request, response: Response) -> None:
        assert response.status == 101
        seen.append(request.path)
        response.headers.add("Set-Cookie", "node=a; Path=/")

    server = await start_server(process_response=stamp)
    async with tether.connect(ws_uri(server, "/chat")) as client:
        assert client.response is not None
        assert client.response.headers.get("Set-Cookie") == "node=a; Path=/"
        await client.send("ping")
        assert await asyncio.wait_for(client.recv(), timeout()) == "ping"
    assert seen == ["/chat"]


async def test_process_response_may_answer_with_another_response(
    start_server: StartServer,
) -> None:
    def refuse(connection: tether.Connection, request: Request, response: Response) -> Response:
        return Response(403, "Forbidden", Headers([("Content-Length", "0")]))

    server = await start_server(process_response=refuse)
    with pytest.raises(tether.InvalidStatus) as info:
        await tether.connect(ws_uri(server))
    assert info.value.response.status == 403
    assert not server.connections  # no WebSocket was started behind the 403


async def test_origins_allow_list(start_server: StartServer) -> None:
    server = await start_server(origins=["https://good.example"])
    with pytest.raises(tether.InvalidStatus) as info:
        await tether.connect(ws_uri(server), origin="https://evil.example")
    assert info.value.response.status == 403
    with pytest.raises(tether.InvalidStatus) as info:
        await tether.connect(ws_uri(server))  # no Origin at all
    assert info.value.response.status == 403
    assert await echo_once(ws_uri(server), origin="https://good.example") == "ping"


async def test_subprotocol_is_negotiated_on_both_sides(start_server: StartServer) -> None:
    async def handler(connection: tether.Connection) -> None:
        await connection.send(str(connection.subprotocol))

    server = await start_server(handler, subprotocols=["chat.v2", "chat.v1"])
    async with tether.connect(ws_uri(server), subprotocols=["chat.v1", "other"]) as client:
        assert client.subprotocol == "chat.v1"
        assert await asyncio.wait_for(client.recv(), timeout()) == "chat.v1"
    async with tether.connect(ws_uri(server), subprotocols=["unknown"]) as client:
        assert client.subprotocol is None
        assert await asyncio.wait_for(client.recv(), timeout()) == "None"


async def test_handler_sees_request_path_and_headers(start_server: StartServer) -> None:
    async def handler(connection: tether.Connection) -> None:
        assert connection.request is not None
        headers = connection.request.headers
        await connection.send(f"{connection.path}|{headers.get('x-trace')}|{headers['Host']}")

    server = await start_server(handler)
    uri = ws_uri(server, "/room/7?user=ann&x=1")
    async with tether.connect(uri, extra_headers=[("X-Trace", "abc123")]) as client:
        reply = await asyncio.wait_for(client.recv(), timeout())
    assert reply == f"/room/7?user=ann&x=1|abc123|127.0.0.1:{server.port}"


# -- timeouts and shutdown ---------------------------------------------------------


async def test_open_timeout_drops_a_half_handshake(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    server = await start_server(open_timeout=timeout(0.3))
    slow = await raw_client(server.port, handshake=False)
    slow.writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
    started = time.monotonic()
    # Others are served meanwhile.
    assert await echo_once(ws_uri(server)) == "ping"
    assert await asyncio.wait_for(slow.at_eof(), timeout(2))
    elapsed = time.monotonic() - started
    assert timeout(0.25) < elapsed < timeout(1.5)
    assert await echo_once(ws_uri(server)) == "ping"


async def test_close_sends_1001_and_wait_closed_is_bounded(start_server: StartServer) -> None:
    cancelled = asyncio.Event()

    async def handler(connection: tether.Connection) -> None:
        if connection.path == "/stubborn":
            try:
                await asyncio.Event().wait()  # never reads, ignores the close
            except asyncio.CancelledError:
                cancelled.set()
                raise
        async for message in connection:
            await connection.send(message)

    server = await start_server(handler)
    uri = ws_uri(server)
    polite = await tether.connect(ws_uri(server, "/echo"))
    stubborn = await tether.connect(ws_uri(server, "/stubborn"))
    await polite.send("hi")
    assert await asyncio.wait_for(polite.recv(), timeout()) == "hi"
    assert len(server.connections) == 2

    started = time.monotonic()
    server.close()
    await asyncio.wait_for(server.wait_closed(timeout(0.5)), timeout(2))
    assert time.monotonic() - started < timeout(1.5)
    assert cancelled.is_set()
    assert not server.connections
    for client in (polite, stubborn):
        with pytest.raises(tether.ConnectionClosedOK) as info:
            await asyncio.wait_for(client.recv(), timeout())
        assert info.value.code == 1001
        await asyncio.wait_for(client.wait_closed(), timeout())
    with pytest.raises(OSError):
        await tether.connect(uri, open_timeout=timeout())


async def test_wait_closed_returns_quickly_when_handlers_finish(
    start_server: StartServer,
) -> None:
    server = await start_server(close_timeout=timeout(5))
    clients = [await tether.connect(ws_uri(server)) for _ in range(3)]
    started = time.monotonic()
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout(6))
    assert time.monotonic() - started < timeout(1)
    for client in clients:
        await asyncio.wait_for(client.wait_closed(), timeout())
        assert client.close_code == 1001


async def test_close_reaches_a_connection_with_a_full_queue(start_server: StartServer) -> None:
    # The handler reads one message and then no more, so the queue (max_queue=1)
    # stays full and reading pauses; the server must still get through the
    # unread messages to the client's close reply instead of timing out.
    first_read = asyncio.Event()

    async def handler(connection: tether.Connection) -> None:
        await connection.recv()
        first_read.set()
        await connection.wait_closed()

    server = await start_server(handler, max_queue=1, close_timeout=timeout(5))
    client = await tether.connect(ws_uri(server))
    for _ in range(4):
        await client.send("unread")
    await asyncio.wait_for(first_read.wait(), timeout())
    connection = next(iter(server.connections))
    started = time.monotonic()
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout(6))
    assert time.monotonic() - started < timeout(1)
    assert connection.close_code == 1001


# -- transports ---------------------------------------------------------------------


async def test_unix_socket_server(start_server: StartServer, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    server = await start_server(path=path)
    assert os.path.exists(path)
    assert await echo_once("ws+unix://" + path) == "ping"
    with pytest.raises(RuntimeError):
        server.port  # noqa: B018


async def test_tls_server(start_server: StartServer, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def handler(connection: tether.Connection) -> None:
        assert connection.transport is not None
        cipher = connection.transport.get_extra_info("cipher")
        await connection.send("tls" if cipher else "plain")
        await connection.send(await connection.recv())

    server = await start_server(handler, ssl=server_ctx, close_timeout=timeout(5))
    uri = f"wss://localhost:{server.port}/"
    async with tether.connect(uri, ssl=client_ctx) as client:
        assert await asyncio.wait_for(client.recv(), timeout()) == "tls"
        big = os.urandom(300 * 1024)
        await client.send(big)
        assert await asyncio.wait_for(client.recv(), timeout(2)) == big
    # A client that does not trust the certificate refuses it.
    with pytest.raises(ssl.SSLCertVerificationError):
        await tether.connect(uri, ssl=ssl.create_default_context(), open_timeout=timeout(2))
    # The failed TLS handshake left nothing behind for shutdown to wait for.
    started = time.monotonic()
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout(6))
    assert time.monotonic() - started < timeout(1)


async def test_reuse_port_lets_two_servers_share_a_port(start_server: StartServer) -> None:
    first = await start_server(reuse_port=True)
    second = await start_server(reuse_port=True, port=first.port)
    assert second.port == first.port
    assert await echo_once(ws_uri(second)) == "ping"
    with pytest.raises(OSError):
        await start_server(port=first.port)  # without reuse_port the port is taken
