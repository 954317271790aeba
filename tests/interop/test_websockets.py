"""Interop with the ``websockets`` library (its asyncio API), in both directions.

tether's client against a websockets server, then websockets' client against
a tether server; each test runs with and without permessage-deflate. Both
servers follow the script described in ``peers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

import tether
from helpers import timeout
from interop.peers import (
    FRAGMENTS_BINARY,
    FRAGMENTS_TEXT,
    MAX_SIZE,
    TETHER_OPTIONS,
    PeerReport,
    ScriptedServer,
    ServerFactory,
    echo_concurrently,
    exchange_fragments,
    pipelined_messages,
    within,
)

pytestmark = pytest.mark.interop

#: Options for every websockets server and client here (see TETHER_OPTIONS).
WS_OPTIONS: dict[str, Any] = {
    "max_size": MAX_SIZE,
    "open_timeout": timeout(5),
    "close_timeout": timeout(3),
    "ping_interval": None,
}


def deflate_of(connection: ServerConnection | ClientConnection) -> PerMessageDeflate | None:
    """The permessage-deflate extension websockets negotiated, if any."""
    found = [ext for ext in connection.protocol.extensions if isinstance(ext, PerMessageDeflate)]
    return found[0] if found else None


# -- the scripted websockets server ------------------------------------------


async def websockets_script(
    connection: ServerConnection, reports: asyncio.Queue[PeerReport]
) -> None:
    """The scripted server of peers.py as a websockets handler."""
    try:
        async for message in connection:
            if message == "cmd:fragments":
                await connection.send(FRAGMENTS_TEXT)
                await connection.send(FRAGMENTS_BINARY)
            elif message == "cmd:ping":
                pong = await connection.ping(b"from-websockets")
                await within(pong)
                await connection.send("cmd:pong-received")
            elif isinstance(message, str) and message.startswith("cmd:close "):
                _, code, reason = message.split(" ", 2)
                await connection.close(int(code), reason)
            else:
                await connection.send(message)
    except WsConnectionClosed:
        pass
    finally:
        assert connection.response is not None
        reports.put_nowait(
            PeerReport(
                subprotocol=connection.subprotocol,
                offer=connection.request.headers.get("Sec-WebSocket-Extensions"),
                extensions=connection.response.headers.get("Sec-WebSocket-Extensions"),
                close_code=connection.close_code,
                close_reason=connection.close_reason,
            )
        )


@contextlib.asynccontextmanager
async def websockets_server(**options: Any) -> AsyncIterator[ScriptedServer]:
    reports: asyncio.Queue[PeerReport] = asyncio.Queue()

    async def handler(connection: ServerConnection) -> None:
        await websockets_script(connection, reports)

    async with ws_serve(handler, "127.0.0.1", 0, **{**WS_OPTIONS, **options}) as server:
        port = server.sockets[0].getsockname()[1]
        yield ScriptedServer(f"ws://127.0.0.1:{port}/", reports)


def tether_connect(url: str, **options: Any) -> tether.connect:
    return tether.connect(url, **{**TETHER_OPTIONS, **options})


def ws_client(url: str, **options: Any) -> ws_connect:
    # proxy=None: never route loopback tests through a proxy from the environment.
    return ws_connect(url, proxy=None, **{**WS_OPTIONS, **options})


# -- tether client -> websockets server --------------------------------------


async def test_tether_client_echo_text_and_binary(compression: str | None) -> None:
    messages: list[str | bytes] = ["héllo wörld ✓ 🚀", b"\x00\xffbinary\x80", "", b""]
    async with (
        websockets_server(compression=compression) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        for message in messages:
            await connection.send(message)
            echoed = await within(connection.recv())
            assert type(echoed) is type(message)
            assert echoed == message


async def test_tether_client_large_messages(
    compression: str | None, large_messages: list[str | bytes]
) -> None:
    async with (
        websockets_server(compression=compression) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        for message in large_messages:
            await within(connection.send(message))
            echoed = await within(connection.recv())
            assert type(echoed) is type(message)
            assert echoed == message


async def test_tether_client_pipelined_messages(compression: str | None) -> None:
    messages = pipelined_messages()
    async with (
        websockets_server(compression=compression) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        received = await echo_concurrently(connection, messages)
    assert received == messages


async def test_tether_client_fragmented_messages(compression: str | None) -> None:
    async with (
        websockets_server(compression=compression) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        await exchange_fragments(connection)


async def test_tether_client_ping_pong(compression: str | None) -> None:
    async with (
        websockets_server(compression=compression) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        rtt = await within(connection.ping(b"from-tether"))
        assert 0 <= rtt < timeout(3)
        # websockets pings tether and waits for the automatic pong.
        await connection.send("cmd:ping")
        assert await within(connection.recv()) == "cmd:pong-received"
        # The connection still carries messages after the control frames.
        await connection.send("after")
        assert await within(connection.recv()) == "after"


async def test_tether_client_sees_server_close_code(compression: str | None) -> None:
    async with websockets_server(compression=compression) as server:
        async with tether_connect(server.url, compression=compression) as connection:
            await connection.send("cmd:close 4001 bye")
            with pytest.raises(tether.ConnectionClosedError) as caught:
                await within(connection.recv())
            await within(connection.wait_closed())
            assert connection.close_code == 4001
            assert connection.close_reason == "bye"
            assert caught.value.rcvd is not None
            assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4001, "bye")
        report = await server.report()
    # tether echoed the code (RFC 6455 §5.5.1) in its closing frame.
    assert report.close_code == 4001


async def test_websockets_server_sees_tether_close_code(compression: str | None) -> None:
    async with websockets_server(compression=compression) as server:
        async with tether_connect(server.url, compression=compression) as connection:
            await connection.send("ping-pong")
            assert await within(connection.recv()) == "ping-pong"
            await within(connection.close(4002, "ciao ✓"))
            assert connection.closed
            # websockets echoes the close frame it received.
            assert connection.close_code == 4002
        report = await server.report()
    assert (report.close_code, report.close_reason) == (4002, "ciao ✓")


async def test_tether_client_fails_too_big_message_with_1009(compression: str | None) -> None:
    async with websockets_server(compression=compression) as server:
        async with tether_connect(
            server.url, compression=compression, max_message_size=1000
        ) as connection:
            await connection.send("y" * 2000)  # the echo is too big for us
            with pytest.raises(tether.ConnectionClosedError) as caught:
                await within(connection.recv())
            assert caught.value.sent is not None and caught.value.sent.code == 1009
            await within(connection.wait_closed())
        report = await server.report()
    assert report.close_code == 1009


async def test_tether_client_subprotocol(compression: str | None) -> None:
    async with (
        websockets_server(compression=compression, subprotocols=["chat.v1"]) as server,
        tether_connect(
            server.url, compression=compression, subprotocols=["chat.v2", "chat.v1"]
        ) as connection,
    ):
        assert connection.subprotocol == "chat.v1"
        assert connection.response is not None
        assert connection.response.headers.get("Sec-WebSocket-Protocol") == "chat.v1"
        await connection.close()
        report = await server.report()
    assert report.subprotocol == "chat.v1"


async def test_tether_client_deflate_negotiation(compression: str | None) -> None:
    async with (
        websockets_server(compression=compression) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        await connection.send("x" * 10_000)
        assert await within(connection.recv()) == "x" * 10_000
        await connection.close()
        report = await server.report()
    assert connection.response is not None
    header = connection.response.headers.get("Sec-WebSocket-Extensions")
    if compression:
        assert header is not None and header.startswith("permessage-deflate")
        assert report.offer is not None and "permessage-deflate" in report.offer
    else:
        assert header is None
        assert report.offer is None  # tether offered nothing
    assert report.extensions == header


@pytest.mark.parametrize(
    "params",
    [
        {"server_max_window_bits": 10},
        {"client_max_window_bits": 9},
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {
            "server_no_context_takeover": True,
            "server_max_window_bits": 11,
            "client_max_window_bits": 12,
        },
        {"server_max_window_bits": 9, "client_max_window_bits": 9},
    ],
    ids=["server-bits-10", "client-bits-9", "no-context-takeover", "mixed", "bits-9"],
)
async def test_tether_client_deflate_params(
    params: dict[str, Any], varied_messages: list[str | bytes]
) -> None:
    factory = ServerPerMessageDeflateFactory(**params)
    async with (
        websockets_server(compression=None, extensions=[factory]) as server,
        tether_connect(server.url, compression="deflate") as connection,
    ):
        assert connection.response is not None
        header = connection.response.headers.get("Sec-WebSocket-Extensions")
        assert header is not None and header.startswith("permessage-deflate")
        for name, value in params.items():
            assert (name if value is True else f"{name}={value}") in header
        for message in varied_messages:
            await connection.send(message)
            assert await within(connection.recv()) == message


# -- websockets client -> tether server --------------------------------------


async def test_websockets_client_echo_text_and_binary(
    tether_server: ServerFactory, compression: str | None
) -> None:
    messages: list[str | bytes] = ["héllo wörld ✓ 🚀", b"\x00\xffbinary\x80", "", b""]
    async with (
        tether_server(compression=compression) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        for message in messages:
            await connection.send(message)
            echoed = await within(connection.recv())
            assert type(echoed) is type(message)
            assert echoed == message


async def test_websockets_client_large_messages(
    tether_server: ServerFactory, compression: str | None, large_messages: list[str | bytes]
) -> None:
    async with (
        tether_server(compression=compression) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        for message in large_messages:
            await within(connection.send(message))
            echoed = await within(connection.recv())
            assert type(echoed) is type(message)
            assert echoed == message


async def test_websockets_client_pipelined_messages(
    tether_server: ServerFactory, compression: str | None
) -> None:
    messages = pipelined_messages()
    async with (
        tether_server(compression=compression) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        received = await echo_concurrently(connection, messages)
    assert received == messages


async def test_websockets_client_fragmented_messages(
    tether_server: ServerFactory, compression: str | None
) -> None:
    async with (
        tether_server(compression=compression) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        # websockets fragments, tether reassembles (and echoes whole).
        await within(connection.send(["ab", "cdé", "f"]))
        assert await within(connection.recv()) == "abcdéf"
        await within(connection.send([b"\x01", b"", b"\x02\x03"]))
        assert await within(connection.recv()) == b"\x01\x02\x03"
        # tether fragments; websockets can show us the frames one by one.
        await connection.send("cmd:fragments")
        parts = [part async for part in connection.recv_streaming()]
        assert parts == FRAGMENTS_TEXT
        parts = [part async for part in connection.recv_streaming()]
        assert parts == FRAGMENTS_BINARY


async def test_websockets_client_ping_pong(
    tether_server: ServerFactory, compression: str | None
) -> None:
    async with (
        tether_server(compression=compression) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        pong = await connection.ping(b"from-websockets")
        rtt = await within(pong)
        assert 0 <= rtt < timeout(3)
        # tether pings websockets and waits for the automatic pong.
        await connection.send("cmd:ping")
        assert await within(connection.recv()) == "cmd:pong-received"
        await connection.send("after")
        assert await within(connection.recv()) == "after"


async def test_websockets_client_sees_tether_close_code(
    tether_server: ServerFactory, compression: str | None
) -> None:
    async with tether_server(compression=compression) as server:
        async with ws_client(server.url, compression=compression) as connection:
            await connection.send("cmd:close 4001 bye")
            with pytest.raises(WsConnectionClosed) as caught:
                await within(connection.recv())
            await within(connection.wait_closed())
            assert (connection.close_code, connection.close_reason) == (4001, "bye")
            assert caught.value.rcvd is not None
            assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4001, "bye")
        report = await server.report()
    # websockets echoed the close frame.
    assert (report.close_code, report.close_reason) == (4001, "bye")


async def test_tether_server_sees_websockets_close_code(
    tether_server: ServerFactory, compression: str | None
) -> None:
    async with tether_server(compression=compression) as server:
        async with ws_client(server.url, compression=compression) as connection:
            await connection.send("hi")
            assert await within(connection.recv()) == "hi"
            await within(connection.close(4002, "ciao ✓"))
            # tether echoes the code (not the reason, which RFC 6455 allows).
            assert connection.close_code == 4002
        report = await server.report()
    assert (report.close_code, report.close_reason) == (4002, "ciao ✓")


async def test_websockets_client_sees_1009_for_too_big_message(
    tether_server: ServerFactory, compression: str | None
) -> None:
    async with (
        tether_server(compression=compression, max_message_size=1000) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        await connection.send("y" * 1000)  # exactly the limit is fine
        assert await within(connection.recv()) == "y" * 1000
        await connection.send("y" * 1001)
        with pytest.raises(WsConnectionClosed) as caught:
            await within(connection.recv())
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
        report = await server.report()
    # tether failed the connection (RFC 6455 §7.1.7): it closed TCP without
    # waiting for websockets' echo, so it received no close frame (§7.1.5).
    assert report.close_code == 1006


async def test_websockets_client_sees_tether_server_shutdown(
    tether_server: ServerFactory, compression: str | None
) -> None:
    async with tether_server(compression=compression) as server:
        connection = await ws_client(server.url, compression=compression)
        await connection.send("hi")
        assert await within(connection.recv()) == "hi"
    # Leaving the server's context closed the connection with 1001.
    with pytest.raises(WsConnectionClosed) as caught:
        await within(connection.recv())
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1001, "server shutting down")
    await within(connection.wait_closed())


async def test_websockets_client_subprotocol(
    tether_server: ServerFactory, compression: str | None
) -> None:
    async with (
        tether_server(compression=compression, subprotocols=["chat.v1"]) as server,
        ws_client(server.url, compression=compression, subprotocols=["chat.v2", "chat.v1"]) as c,
    ):
        assert c.subprotocol == "chat.v1"
        await c.close()
        report = await server.report()
    assert report.subprotocol == "chat.v1"


async def test_websockets_client_deflate_negotiation(
    tether_server: ServerFactory, compression: str | None
) -> None:
    async with (
        tether_server(compression=compression) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        await connection.send("x" * 10_000)
        assert await within(connection.recv()) == "x" * 10_000
        negotiated = deflate_of(connection)
        await connection.close()
        report = await server.report()
    header = connection.response.headers.get("Sec-WebSocket-Extensions")
    # The tether side: the header of the 101 response it sent.
    assert report.extensions == header
    if compression:
        assert report.offer is not None and "permessage-deflate" in report.offer
        assert header is not None and header.startswith("permessage-deflate")
        assert negotiated is not None
    else:
        assert report.offer is None
        assert header is None
        assert negotiated is None


@pytest.mark.parametrize(
    "options",
    [
        tether.DeflateOptions(server_max_window_bits=10, client_no_context_takeover=True),
        tether.DeflateOptions(client_max_window_bits=9),
        tether.DeflateOptions(server_no_context_takeover=True, server_max_window_bits=8),
        tether.DeflateOptions(min_size=100, level=1),
    ],
    ids=["server-bits-10-client-nct", "client-bits-9", "server-nct-bits-8", "min-size"],
)
async def test_tether_server_deflate_params(
    tether_server: ServerFactory, options: tether.DeflateOptions, varied_messages: list[str | bytes]
) -> None:
    async with (
        tether_server(compression=options) as server,
        ws_client(server.url, compression="deflate") as connection,
    ):
        negotiated = deflate_of(connection)
        assert negotiated is not None
        # websockets' view of the agreement: "remote" is tether, the server.
        assert negotiated.remote_no_context_takeover == options.server_no_context_takeover
        assert negotiated.local_no_context_takeover == options.client_no_context_takeover
        assert negotiated.remote_max_window_bits == options.server_max_window_bits
        assert negotiated.local_max_window_bits == options.client_max_window_bits
        for message in varied_messages:
            await connection.send(message)
            assert await within(connection.recv()) == message
        await connection.close()
        report = await server.report()
    assert report.extensions == connection.response.headers.get("Sec-WebSocket-Extensions")


@pytest.mark.parametrize(
    "params",
    [
        {"server_max_window_bits": 10, "client_no_context_takeover": True},
        {"client_max_window_bits": 9},
        {"server_no_context_takeover": True, "client_max_window_bits": 12},
    ],
    ids=["server-bits-10-client-nct", "client-bits-9", "server-nct-client-bits-12"],
)
async def test_websockets_client_deflate_offer(
    tether_server: ServerFactory, params: dict[str, Any], varied_messages: list[str | bytes]
) -> None:
    """websockets' client asks for non-default parameters; tether's server obliges."""
    factory = ClientPerMessageDeflateFactory(**params)
    async with (
        tether_server(compression="deflate") as server,
        ws_client(server.url, compression=None, extensions=[factory]) as connection,
    ):
        negotiated = deflate_of(connection)
        assert negotiated is not None
        if "server_max_window_bits" in params:
            assert negotiated.remote_max_window_bits == params["server_max_window_bits"]
        if params.get("server_no_context_takeover"):
            assert negotiated.remote_no_context_takeover
        for message in varied_messages:
            await connection.send(message)
            assert await within(connection.recv()) == message
        await connection.close()
        report = await server.report()
    assert report.extensions is not None and report.extensions.startswith("permessage-deflate")
