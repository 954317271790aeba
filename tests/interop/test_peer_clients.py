"""Every peer client against tether's server (``peer_clients.PEER_CLIENTS``:
websockets on PyPI, ws and WebSocket-Node on Node), with and without
permessage-deflate (for the clients that implement it).

Each scenario is written once; ``peer_client`` (see ``conftest.py``) runs it
with each client. The server follows the script described in ``peers.py``.
What is particular to one client (its own deflate offers, how it shows
fragments) stays in ``test_websockets.py`` and ``test_ws_node.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tether
from interop.peer_clients import PeerClient, PeerClientStarter, PeerClosed
from interop.peers import (
    SHORT_MESSAGES,
    Peer,
    ScriptedServer,
    ServerFactory,
    echo_concurrently,
    echo_one_by_one,
    pipelined_messages,
)

pytestmark = pytest.mark.interop

Client = Peer[PeerClientStarter]


@contextlib.asynccontextmanager
async def connected(
    tether_server: ServerFactory,
    peer_client: Client,
    compression: str | None,
    offer: list[str] | None = None,
    **server_options: Any,
) -> AsyncIterator[tuple[ScriptedServer, PeerClient]]:
    """A scripted tether server with ``server_options``, and the peer's client
    connected to it (offering the subprotocols ``offer``)."""
    async with (
        tether_server(compression=compression, **server_options) as server,
        peer_client.start(server.url, compression, offer) as client,
    ):
        yield server, client


async def test_echo_text_and_binary(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with connected(tether_server, peer_client, compression) as (_, client):
        await echo_one_by_one(client, SHORT_MESSAGES)


async def test_large_messages(
    tether_server: ServerFactory,
    peer_client: Client,
    compression: str | None,
    large_messages: list[str | bytes],
) -> None:
    async with connected(tether_server, peer_client, compression) as (_, client):
        await echo_one_by_one(client, large_messages)


async def test_pipelined_messages(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    messages = pipelined_messages()
    async with connected(tether_server, peer_client, compression) as (_, client):
        received = await echo_concurrently(client, messages)
    assert received == messages


async def test_fragmented_messages(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with connected(tether_server, peer_client, compression) as (_, client):
        # The client fragments, tether reassembles and echoes whole.
        await client.send_fragments(["ab", "cdé", "f"])
        assert await client.recv() == "abcdéf"
        await client.send_fragments([b"\x01", b"", b"\x02\x03"])
        assert await client.recv() == b"\x01\x02\x03"
        # tether fragments, the client reassembles.
        await client.send("cmd:fragments")
        assert await client.recv() == "frag-mented"
        assert await client.recv() == b"\x00\x01\x02"


async def test_ping_pong(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with connected(tether_server, peer_client, compression) as (_, client):
        await client.ping(b"from-the-peer")  # tether pongs automatically
        # tether pings the client and waits for the client's automatic pong.
        await client.send("cmd:ping")
        assert await client.recv() == "cmd:pong-received"
        # The connection still carries messages after the control frames.
        await client.send("after")
        assert await client.recv() == "after"


async def test_client_sees_tether_close_code(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with tether_server(compression=compression) as server:
        async with peer_client.start(server.url, compression, None) as client:
            await client.send("cmd:close 4001 bye")
            with pytest.raises(PeerClosed) as caught:
                await client.recv()
            assert (caught.value.code, caught.value.reason) == (4001, "bye")
        report = await server.report()
    # What tether received back: its code echoed, or 1000 (§5.5.1 allows both).
    assert report.close_code == (4001 if peer_client.echoes_close_code else 1000)


async def test_tether_sees_client_close_code(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with tether_server(compression=compression) as server:
        async with peer_client.start(server.url, compression, None) as client:
            await client.send("hi")
            assert await client.recv() == "hi"
            # tether echoes the code (not the reason, which RFC 6455 allows).
            assert await client.close(4002, "ciao ✓") == 4002
        report = await server.report()
    assert (report.close_code, report.close_reason) == (4002, "ciao ✓")


async def test_client_sees_1009_for_too_big_message(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with connected(tether_server, peer_client, compression, max_message_size=1000) as (
        server,
        client,
    ):
        await client.send("y" * 1000)  # exactly the limit is fine
        assert await client.recv() == "y" * 1000
        await client.send("y" * 1001)
        with pytest.raises(PeerClosed) as caught:
            await client.recv()
        assert caught.value.code == 1009
        report = await server.report()
    # tether failed the connection (RFC 6455 §7.1.7): it closed TCP without
    # waiting for the client's reply, so it received no close frame (§7.1.5).
    assert report.close_code == 1006


async def test_client_sees_tether_server_shutdown(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        async with tether_server(compression=compression) as server:
            client = await stack.enter_async_context(
                peer_client.start(server.url, compression, None)
            )
            await client.send("hi")
            assert await client.recv() == "hi"
        # Leaving the server's context closed the connection with 1001.
        with pytest.raises(PeerClosed) as caught:
            await client.recv()
        assert (caught.value.code, caught.value.reason) == (1001, "server shutting down")


async def test_subprotocol(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with connected(
        tether_server, peer_client, compression, ["chat.v2", "chat.v1"], subprotocols=["chat.v1"]
    ) as (server, client):
        assert client.subprotocol == "chat.v1"
        await client.close(1000, "")
        report = await server.report()
    assert report.subprotocol == "chat.v1"


async def test_deflate_negotiation(
    tether_server: ServerFactory, peer_client: Client, compression: str | None
) -> None:
    async with connected(tether_server, peer_client, compression) as (server, client):
        await client.send("x" * 10_000)
        assert await client.recv() == "x" * 10_000
        await client.close(1000, "")
        report = await server.report()
    # Both sides agree on the header of tether's 101 response.
    assert client.extensions == report.extensions
    if compression:
        assert report.offer is not None and "permessage-deflate" in report.offer
        assert client.extensions is not None
        assert client.extensions.startswith("permessage-deflate")
    else:
        assert report.offer is None
        assert client.extensions is None


@pytest.mark.parametrize(
    "options",
    [
        tether.DeflateOptions(server_max_window_bits=10, client_no_context_takeover=True),
        tether.DeflateOptions(server_no_context_takeover=True, client_max_window_bits=9),
        tether.DeflateOptions(server_no_context_takeover=True, server_max_window_bits=8),
        tether.DeflateOptions(min_size=100, level=1),
    ],
    ids=["server-bits-10-client-nct", "server-nct-client-bits-9", "server-nct-bits-8", "min-size"],
)
async def test_tether_server_deflate_params(
    tether_server: ServerFactory,
    deflate_client: Client,
    options: tether.DeflateOptions,
    varied_messages: list[str | bytes],
) -> None:
    """tether's server asks for non-default parameters; the client honours them
    (messages whose compression depends on the window and context)."""
    async with (
        tether_server(compression=options) as server,
        deflate_client.start(server.url, "deflate", None) as client,
    ):
        await echo_one_by_one(client, varied_messages)
        await client.close(1000, "")
        report = await server.report()
    header = client.extensions
    assert header == report.extensions
    assert header is not None and header.startswith("permessage-deflate")
    for name in ("server_max_window_bits", "client_max_window_bits"):
        bits = getattr(options, name)
        assert (f"{name}={bits}" in header) == (bits < 15)
    for name in ("server_no_context_takeover", "client_no_context_takeover"):
        assert (name in header) == getattr(options, name)
