"""Interop with the Node.js libraries ``ws`` and WebSocket-Node (npm
``websocket``): what is particular to them, in both directions.

The scenarios shared with every peer are in ``test_tether_client.py``
(tether's client against each peer server) and ``test_peer_clients.py``
(each peer client against tether's server). Here: tether's client against
``node/ws_echo_server.mjs`` offering ws' own deflate parameters; the Node
clients (``node/client.mjs``) sending frames no Python peer can (a message
split inside a character, a ping between its frames); ws' client offering
its own deflate parameters. The Node scripts run as subprocesses
(``peers.node``), killed by PID when the test ends.
"""

from __future__ import annotations

from typing import Any

import pytest

from interop.peer_clients import node_client
from interop.peers import ServerFactory, echo_one_by_one, tether_connect, within, ws_server

pytestmark = pytest.mark.interop


# -- tether client -> ws server ----------------------------------------------
# The scenarios shared with every peer are in test_tether_client.py.


@pytest.mark.parametrize(
    "params",
    [
        {"serverMaxWindowBits": 10, "clientNoContextTakeover": True},
        {"serverNoContextTakeover": True, "clientMaxWindowBits": 9},
        {"serverMaxWindowBits": 12, "clientMaxWindowBits": 11},
    ],
    ids=["server-bits-10-client-nct", "server-nct-client-bits-9", "server-12-client-11"],
)
async def test_tether_client_deflate_params_with_ws(
    params: dict[str, Any], varied_messages: list[str | bytes]
) -> None:
    async with (
        ws_server(perMessageDeflate=params) as server,
        tether_connect(server.url, compression="deflate") as connection,
    ):
        assert connection.response is not None
        header = connection.response.headers.get("Sec-WebSocket-Extensions")
        assert header is not None
        for name, value in params.items():
            # serverMaxWindowBits -> server_max_window_bits
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
            assert (snake if value is True else f"{snake}={value}") in header
        for message in varied_messages:
            await connection.send(message)
            assert await within(connection.recv()) == message


# -- ws and WebSocket-Node clients -> tether server ----------------------------
# The scenarios shared with every peer client are in test_peer_clients.py.


@pytest.mark.parametrize("library", ["ws", "websocket-node"])
async def test_node_client_splits_a_character_and_pings_between_frames(
    tether_server: ServerFactory, library: str
) -> None:
    """A text message split inside the two bytes of "é", with a ping between
    two of its frames (control frames may interleave, RFC 6455 §5.4; UTF-8 is
    checked on the whole message, §8.1), then a binary one with an empty frame."""
    cde = "cdé".encode()
    async with (
        tether_server() as server,
        node_client(library, server.url, False, None) as client,
    ):
        await client.send_frames(
            [b"ab", cde[:3], ("ping", b"between-fragments"), cde[3:] + b"f"], binary=False
        )
        assert await within(client.pongs.get()) == b"between-fragments"
        assert await client.recv() == "abcdéf"
        await client.send_frames([b"\x01", b"", b"\x02\x03"], binary=True)
        assert await client.recv() == b"\x01\x02\x03"


@pytest.mark.parametrize(
    "offer",
    [
        {"serverMaxWindowBits": 10, "clientMaxWindowBits": 11},
        {"serverNoContextTakeover": True, "clientNoContextTakeover": True},
    ],
    ids=["bits-10-11", "no-context-takeover"],
)
async def test_ws_client_deflate_offer(
    tether_server: ServerFactory, offer: dict[str, Any], varied_messages: list[str | bytes]
) -> None:
    """ws' client asks for non-default parameters; tether's server obliges."""
    async with (
        tether_server(compression="deflate") as server,
        node_client("ws", server.url, offer, None) as client,
    ):
        await echo_one_by_one(client, varied_messages)
        await client.close(1000, "")
        report = await server.report()
    assert report.extensions is not None
    assert client.extensions == report.extensions
    if "serverMaxWindowBits" in offer:
        assert f"server_max_window_bits={offer['serverMaxWindowBits']}" in report.extensions
    if offer.get("serverNoContextTakeover"):
        assert "server_no_context_takeover" in report.extensions
