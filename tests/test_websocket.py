"""The event-loop side of a connection (tether._websocket): each socket read
parsed in one go under the max_queue bounds, and keepalive (RFC 6455 §5.5.2),
over real servers on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib

import pytest

import tether
from conftest import OP_PING, OP_PONG, OpenRaw, RawClient, StartServer, ws_uri
from helpers import timeout
from test_connection import served_connection

# -- keepalive ----------------------------------------------------------------


async def raw_peer(
    start_server: StartServer, raw_client: OpenRaw, **options: object
) -> tuple[RawClient, tether.Connection]:
    """A raw client and the server's side of its connection (which never reads)."""
    server, handed = await served_connection(start_server, **options)
    raw = await raw_client(server.port)
    return raw, await asyncio.wait_for(handed, timeout())


async def test_keepalive_fails_a_peer_that_never_answers_with_1011(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    raw, connection = await raw_peer(
        start_server, raw_client, ping_interval=timeout(0.1), ping_timeout=timeout(0.2)
    )
    started = time.monotonic()
    # The raw peer reads but never answers: it sees a ping, then the close frame.
    opcode, _ = await asyncio.wait_for(raw.read_frame(), timeout())
    assert opcode == OP_PING
    code, reason = await asyncio.wait_for(raw.read_close(), timeout())
    assert code == 1011
    assert "keepalive" in reason
    assert time.monotonic() - started < timeout(0.1 + 0.2 + 0.5)
    assert await asyncio.wait_for(raw.at_eof(), timeout())
    await asyncio.wait_for(connection.wait_closed(), timeout())
    with pytest.raises(tether.ConnectionClosedError):
        await connection.recv()


async def test_keepalive_keeps_pinging_a_peer_that_answers(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    raw, connection = await raw_peer(
        start_server, raw_client, ping_interval=timeout(0.05), ping_timeout=timeout(0.5)
    )
    for _ in range(3):
        opcode, payload = await asyncio.wait_for(raw.read_frame(), timeout())
        assert opcode == OP_PING
        raw.send_frame(OP_PONG, payload)
    assert connection.open


async def test_a_client_answers_keepalive_pings(start_server: StartServer) -> None:
    server, handed = await served_connection(
        start_server, ping_interval=timeout(0.05), ping_timeout=timeout(0.2)
    )
    async with tether.connect(ws_uri(server), ping_interval=None) as client:
        connection = await asyncio.wait_for(handed, timeout())
        # Several keepalive rounds; a missed pong would fail the connection.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(connection.wait_closed()), timeout(0.6))
        assert connection.open and client.open


# -- reading under the queue bounds ---------------------------------------------


async def test_unread_messages_pause_reading_at_max_queue(start_server: StartServer) -> None:
    max_queue = 4
    loop = asyncio.get_running_loop()
    paused = asyncio.Event()
    handed: asyncio.Future[tether.Connection] = loop.create_future()

    async def handler(connection: tether.Connection) -> None:
        transport = connection.transport
        assert transport is not None
        original = transport.pause_reading

        def spy() -> None:
            original()
            paused.set()

        transport.pause_reading = spy  # type: ignore[method-assign]
        handed.set_result(connection)
        await asyncio.wait_for(connection.wait_closed(), timeout(5))

    server = await start_server(handler, max_queue=max_queue, compression=None)
    # Messages of 300 KiB: one read (at most the 1 MiB scratch buffer)
    # completes a few at most, and the core completes no more than the queue
    # has room for, so max_queue holds whatever each read brings.
    messages = [bytes([i]) * (300 * 1024) for i in range(12)]
    async with tether.connect(ws_uri(server), compression=None) as client:
        connection = await asyncio.wait_for(handed, timeout())

        async def send_all() -> None:
            for message in messages:
                await client.send(message)

        sender = asyncio.ensure_future(send_all())
        await asyncio.wait_for(paused.wait(), timeout(2))
        assert connection.transport is not None
        assert not connection.transport.is_reading()
        assert len(connection._messages) <= max_queue
        # It stays paused: nothing more is read while nobody calls recv().
        await asyncio.wait([sender], timeout=timeout(0.2))
        assert not connection.transport.is_reading()
        assert len(connection._messages) <= max_queue
        received = [await asyncio.wait_for(connection.recv(), timeout(2)) for _ in messages]
        assert received == messages
        await asyncio.wait_for(sender, timeout())


def _compressed_frame(payload: bytes) -> bytes:
    """A masked, compressed (RSV1) binary frame built by hand (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = data[:-4]  # drop the 00 00 ff ff tail
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    head = (
        struct.pack("!BBH", 0x80 | 0x40 | 0x2, 0x80 | 126, len(data))
        if len(data) >= 126
        else struct.pack("!BB", 0x80 | 0x40 | 0x2, 0x80 | len(data))
    )
    return head + key + masked


async def test_one_read_of_compressed_frames_never_overfills_the_queue(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    """100 messages of 512 KiB, compressed to ~0.5 KiB each and written at once:
    the server inflates at most max_queue of them ahead of the application
    (not 50 MiB from one socket read), and still delivers every one in order."""
    count, size, max_queue = 100, 512 * 1024, 4
    seen: list[bytes] = []
    backlog: list[int] = []
    done = asyncio.Event()

    async def handler(connection: tether.Connection) -> None:
        for _ in range(count):
            message = await connection.recv()
            assert isinstance(message, bytes) and len(message) == size
            seen.append(message[:6])
            backlog.append(len(connection._messages))
        done.set()

    server = await start_server(handler, max_queue=max_queue)
    client = await raw_client(server.port, handshake=False)
    client.writer.write(client.request(extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"))
    head = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), timeout())
    assert b"permessage-deflate" in head
    frames = [_compressed_frame(b"%06d" % i + b"x" * (size - 6)) for i in range(count)]
    assert sum(map(len, frames)) < 100 * 1024
    client.writer.write(b"".join(frames))
    await asyncio.wait_for(done.wait(), timeout(10))
    assert seen == [b"%06d" % i for i in range(count)]
    assert max(backlog) <= max_queue
