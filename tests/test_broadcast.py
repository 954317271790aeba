"""broadcast(): one encoded frame to many connections, skipping slow and closed ones."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

import tether
from conftest import OP_BINARY, OP_CLOSE, OP_TEXT, OpenRaw, RawClient, StartServer, ws_uri
from helpers import timeout
from tether.protocol import connection as core


@pytest.fixture
async def quiet_server(start_server: StartServer) -> tether.Server:
    """Handlers that only wait for their connection to close."""

    async def handler(connection: tether.Connection) -> None:
        await connection.wait_closed()

    return await start_server(handler, write_high_water=16 * 1024, write_low_water=4 * 1024)


async def connect_all(
    server: tether.Server, count: int, **options: object
) -> list[tether.Connection]:
    before = len(server.connections)
    clients = [await tether.connect(ws_uri(server), **options) for _ in range(count)]  # type: ignore[arg-type]
    # The server registers a connection as it writes the 101, so it is known by now.
    assert len(server.connections) == before + count
    return clients


@pytest.mark.parametrize("message", ["to all", b"\x00to all"])
async def test_reaches_every_open_connection_and_encodes_once(
    quiet_server: tether.Server, monkeypatch: pytest.MonkeyPatch, message: str | bytes
) -> None:
    encoded = []
    original = core.encode_broadcast_frame

    def counting(data: str | bytes) -> bytes:
        encoded.append(data)
        return original(data)

    monkeypatch.setattr(core, "encode_broadcast_frame", counting)
    # With and without permessage-deflate: the uncompressed frame suits both.
    clients = await connect_all(quiet_server, 2) + await connect_all(
        quiet_server, 2, compression=None
    )
    try:
        sent = tether.broadcast(quiet_server.connections, message)
        assert sent == 4
        assert encoded == [message]
        for client in clients:
            received = await asyncio.wait_for(client.recv(), timeout())
            assert received == message and type(received) is type(message)
    finally:
        for client in clients:
            await asyncio.wait_for(client.close(), timeout())


async def test_skips_closed_connections(quiet_server: tether.Server) -> None:
    clients = await connect_all(quiet_server, 3)
    connections = list(quiet_server.connections)
    gone = clients[0]
    await asyncio.wait_for(gone.close(), timeout())
    # The server side of the closed client is still in the list given.
    assert any(not c.open for c in connections)
    assert tether.broadcast(connections, "rest") == 2
    for client in clients[1:]:
        assert await asyncio.wait_for(client.recv(), timeout()) == "rest"
        await asyncio.wait_for(client.close(), timeout())


async def slow_raw_peer(
    server: tether.Server, raw_client: OpenRaw
) -> tuple[tether.Connection, RawClient]:
    """A raw peer that stops reading, and its server connection with a full write buffer."""
    before = set(server.connections)
    raw = await raw_client(server.port, rcvbuf=4096)
    raw.stop_reading()
    # Registered as the 101 was written, so known once the raw peer read it.
    (connection,) = set(server.connections) - before
    assert connection.transport is not None
    sock = connection.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    chunk = b"z" * 8192
    # Once the kernel buffers are full, every write stays in the transport.
    for _ in range(1000):
        if connection.write_buffer_size() > connection.limits.write_high_water:
            return connection, raw
        assert tether.broadcast([connection], chunk) == 1
    raise AssertionError("the write buffer never filled up")


async def test_skips_a_slow_connection(quiet_server: tether.Server, raw_client: OpenRaw) -> None:
    clients = await connect_all(quiet_server, 2)
    # No await between filling the buffer and broadcasting: it could drain meanwhile.
    slow, _ = await slow_raw_peer(quiet_server, raw_client)
    buffered = slow.write_buffer_size()
    assert tether.broadcast(quiet_server.connections, "news") == 2
    assert slow.write_buffer_size() == buffered  # nothing added for the slow one
    assert slow.open
    for client in clients:
        assert await asyncio.wait_for(client.recv(), timeout()) == "news"
        await asyncio.wait_for(client.close(), timeout())


async def test_closes_a_slow_connection_with_1008(
    quiet_server: tether.Server, raw_client: OpenRaw
) -> None:
    clients = await connect_all(quiet_server, 1)
    slow, raw = await slow_raw_peer(quiet_server, raw_client)
    assert tether.broadcast(quiet_server.connections, "news", slow="close") == 1
    assert not slow.open
    assert await asyncio.wait_for(clients[0].recv(), timeout()) == "news"
    # The slow peer, reading again, finds the data then the close frame 1008.
    raw.writer.transport.resume_reading()  # type: ignore[attr-defined]
    opcodes = set()
    while True:
        opcode, payload = await asyncio.wait_for(raw.read_frame(), timeout())
        opcodes.add(opcode)
        if opcode == OP_CLOSE:
            break
    assert int.from_bytes(payload[:2], "big") == 1008
    assert opcodes <= {OP_BINARY, OP_TEXT, OP_CLOSE}
    await asyncio.wait_for(slow.wait_closed(), timeout())
    await asyncio.wait_for(clients[0].close(), timeout())


async def test_client_connections_mask_their_own_copy(echo_server: tether.Server) -> None:
    clients = [await tether.connect(ws_uri(echo_server)) for _ in range(2)]
    try:
        assert tether.broadcast(clients, "via clients") == 2
        for client in clients:
            assert await asyncio.wait_for(client.recv(), timeout()) == "via clients"
    finally:
        for client in clients:
            await asyncio.wait_for(client.close(), timeout())


async def test_a_slow_connection_closed_with_1008_is_dropped_if_it_never_reads(
    quiet_server: tether.Server, raw_client: OpenRaw
) -> None:
    # close() would wait forever to flush to a peer that never reads again.
    slow, _ = await slow_raw_peer(quiet_server, raw_client)
    assert tether.broadcast([slow], "news", slow="close") == 0
    await asyncio.wait_for(slow.wait_closed(), timeout(1 + 1))  # close_timeout is 1 unit
    assert slow.closed


async def test_skips_a_connection_in_the_middle_of_a_fragmented_message(
    start_server: StartServer,
) -> None:
    """§5.4: no frame of another message between the fragments of one; the
    broadcast skips that connection and reaches the others."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "frag"
        yield "ment"
        started.set()
        await release.wait()
        yield "ed"

    async def handler(connection: tether.Connection) -> None:
        if await connection.recv() == "fragments":
            await connection.send(fragments())
        await connection.wait_closed()

    server = await start_server(handler)
    fragmented, other = await connect_all(server, 2)
    try:
        await fragmented.send("fragments")
        await asyncio.wait_for(started.wait(), timeout())
        assert tether.broadcast(server.connections, "news") == 1
        release.set()
        assert await asyncio.wait_for(fragmented.recv(), timeout()) == "fragmented"
        assert await asyncio.wait_for(other.recv(), timeout()) == "news"
        assert tether.broadcast(server.connections, "later") == 2
        assert await asyncio.wait_for(fragmented.recv(), timeout()) == "later"
    finally:
        for client in (fragmented, other):
            await asyncio.wait_for(client.close(), timeout())
