"""Interop with the ``websockets`` library (its asyncio API): what is
particular to it, in both directions.

The scenarios shared with every peer are in ``test_tether_client.py``
(tether's client against each peer server) and ``test_peer_clients.py``
(each peer client against tether's server). Here: tether's client against a
websockets server offering websockets' own deflate parameters, and
websockets' client against a tether server, showing what only websockets
can show (frames one by one, its view of the deflate agreement) and offering
its own deflate parameters. Both servers follow the script described in
``peers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

import tether
from interop.peer_clients import websockets_client
from interop.peers import (
    FRAGMENTS_BINARY,
    FRAGMENTS_TEXT,
    ServerFactory,
    tether_connect,
    websockets_server,
    within,
)

pytestmark = pytest.mark.interop


def deflate_of(connection: ServerConnection | ClientConnection) -> PerMessageDeflate | None:
    """The permessage-deflate extension websockets negotiated, if any."""
    found = [ext for ext in connection.protocol.extensions if isinstance(ext, PerMessageDeflate)]
    return found[0] if found else None


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
# The scenarios shared with every peer client are in test_peer_clients.py.


async def test_websockets_client_sees_tether_fragments(tether_server: ServerFactory) -> None:
    """websockets can show a message frame by frame: tether's fragments are
    the frames it was asked to send."""
    async with (
        tether_server() as server,
        websockets_client(server.url, None, None) as client,
    ):
        connection = client.connection
        await connection.send("cmd:fragments")
        parts = [part async for part in connection.recv_streaming()]
        assert parts == FRAGMENTS_TEXT
        parts = [part async for part in connection.recv_streaming()]
        assert parts == FRAGMENTS_BINARY


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
async def test_tether_server_deflate_params_as_websockets_sees_them(
    tether_server: ServerFactory, options: tether.DeflateOptions
) -> None:
    """websockets' view of what tether's server agreed (test_peer_clients.py
    checks the header and the messages with every client)."""
    async with (
        tether_server(compression=options) as server,
        websockets_client(server.url, "deflate", None) as client,
    ):
        negotiated = deflate_of(client.connection)
    assert negotiated is not None
    # "remote" is tether, the server.
    assert negotiated.remote_no_context_takeover == options.server_no_context_takeover
    assert negotiated.local_no_context_takeover == options.client_no_context_takeover
    assert negotiated.remote_max_window_bits == options.server_max_window_bits
    assert negotiated.local_max_window_bits == options.client_max_window_bits


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
        websockets_client(server.url, None, None, extensions=[factory]) as client,
    ):
        connection = client.connection
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
