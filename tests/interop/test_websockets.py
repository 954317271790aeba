"""Interop with the ``websockets`` library (its asyncio API), in both directions.

tether's client against a websockets server with websockets' own deflate
parameters (the scenarios shared with every peer server are in
``test_tether_client.py``), then websockets' client against a tether server,
with and without permessage-deflate. Both servers follow the script described
in ``peers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
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
    SHORT_MESSAGES,
    WS_OPTIONS,
    ServerFactory,
    echo_concurrently,
    echo_one_by_one,
    pipelined_messages,
    tether_connect,
    websockets_server,
    within,
)

pytestmark = pytest.mark.interop


def deflate_of(connection: ServerConnection | ClientConnection) -> PerMessageDeflate | None:
    """The permessage-deflate extension websockets negotiated, if any."""
    found = [ext for ext in connection.protocol.extensions if isinstance(ext, PerMessageDeflate)]
    return found[0] if found else None


def ws_client(url: str, **options: Any) -> ws_connect:
    # proxy=None: never route loopback tests through a proxy from the environment.
    return ws_connect(url, proxy=None, **{**WS_OPTIONS, **options})


# -- tether client -> websockets server --------------------------------------
# The scenarios shared with every peer are in test_tether_client.py.


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
    async with (
        tether_server(compression=compression) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        await echo_one_by_one(connection, SHORT_MESSAGES)


async def test_websockets_client_large_messages(
    tether_server: ServerFactory, compression: str | None, large_messages: list[str | bytes]
) -> None:
    async with (
        tether_server(compression=compression) as server,
        ws_client(server.url, compression=compression) as connection,
    ):
        await echo_one_by_one(connection, large_messages)


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
