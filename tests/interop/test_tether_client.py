"""tether's client against every scripted peer server (``peers.PEER_SERVERS``:
websockets on PyPI, ws and WebSocket-Node on Node), with and without
permessage-deflate (for the peers that implement it).

Each scenario is written once; ``peer_server`` (see ``conftest.py``) runs it
against each peer. What is particular to one peer (its own deflate parameters, its
client against tether's server) stays in ``test_websockets.py`` and
``test_ws_node.py``.
"""

from __future__ import annotations

import pytest

import tether
from helpers import timeout
from interop.peers import (
    SHORT_MESSAGES,
    Peer,
    PeerServerStarter,
    echo_concurrently,
    echo_one_by_one,
    exchange_fragments,
    pipelined_messages,
    tether_connect,
    within,
)

pytestmark = pytest.mark.interop


async def test_echo_text_and_binary(
    peer_server: Peer[PeerServerStarter], compression: str | None
) -> None:
    async with (
        peer_server.start(compression, None) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        await echo_one_by_one(connection, SHORT_MESSAGES)


async def test_large_messages(
    peer_server: Peer[PeerServerStarter], compression: str | None, large_messages: list[str | bytes]
) -> None:
    async with (
        peer_server.start(compression, None) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        await echo_one_by_one(connection, large_messages)


async def test_pipelined_messages(
    peer_server: Peer[PeerServerStarter], compression: str | None
) -> None:
    messages = pipelined_messages()
    async with (
        peer_server.start(compression, None) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        received = await echo_concurrently(connection, messages)
    assert received == messages


async def test_fragmented_messages(
    peer_server: Peer[PeerServerStarter], compression: str | None
) -> None:
    async with (
        peer_server.start(compression, None) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        await exchange_fragments(connection)


async def test_ping_pong(peer_server: Peer[PeerServerStarter], compression: str | None) -> None:
    async with (
        peer_server.start(compression, None) as server,
        tether_connect(server.url, compression=compression) as connection,
    ):
        rtt = await within(connection.ping(b"from-tether"))
        assert 0 <= rtt < timeout(3)
        # The peer pings tether and waits for the automatic pong.
        await connection.send("cmd:ping")
        assert await within(connection.recv()) == "cmd:pong-received"
        # The connection still carries messages after the control frames.
        await connection.send("after")
        assert await within(connection.recv()) == "after"


async def test_sees_server_close_code(
    peer_server: Peer[PeerServerStarter], compression: str | None
) -> None:
    async with peer_server.start(compression, None) as server:
        async with tether_connect(server.url, compression=compression) as connection:
            await connection.send("cmd:close 4001 bye")
            with pytest.raises(tether.ConnectionClosedError) as caught:
                await within(connection.recv())
            await within(connection.wait_closed())
            assert (connection.close_code, connection.close_reason) == (4001, "bye")
            assert caught.value.rcvd is not None
            assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4001, "bye")
        report = await server.report()
    # tether echoed the code (RFC 6455 §5.5.1) in its closing frame.
    assert report.close_code == 4001


async def test_server_sees_tether_close_code(
    peer_server: Peer[PeerServerStarter], compression: str | None
) -> None:
    async with peer_server.start(compression, None) as server:
        async with tether_connect(server.url, compression=compression) as connection:
            await connection.send("ping-pong")
            assert await within(connection.recv()) == "ping-pong"
            await within(connection.close(4002, "ciao ✓"))
            assert connection.closed
            # The code of the peer's reply: the one it received, if it echoes it.
            if peer_server.echoes_close_code:
                assert (connection.close_code, connection.close_reason) == (4002, "ciao ✓")
            else:
                assert connection.close_code == 1000
        report = await server.report()
    assert (report.close_code, report.close_reason) == (4002, "ciao ✓")


async def test_fails_too_big_message_with_1009(
    peer_server: Peer[PeerServerStarter], compression: str | None
) -> None:
    async with peer_server.start(compression, None) as server:
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


async def test_subprotocol(peer_server: Peer[PeerServerStarter], compression: str | None) -> None:
    async with (
        peer_server.start(compression, ["chat.v1"]) as server,
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


async def test_deflate_negotiation(
    peer_server: Peer[PeerServerStarter], compression: str | None
) -> None:
    async with (
        peer_server.start(compression, None) as server,
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
