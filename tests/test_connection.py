"""The asyncio Connection, over real servers on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Literal

import pytest

import tether
from conftest import OP_CLOSE, OP_PING, OpenRaw, StartServer, ws_uri
from helpers import echo_in_flight, timeout

COMPRESSION = pytest.mark.parametrize("compression", ["deflate", None])


async def served_connection(
    start_server: StartServer, **options: object
) -> tuple[tether.Server, asyncio.Future[tether.Connection]]:
    """A server whose handler hands its connection to the test, then only waits
    for it to close (it never reads: the test drives it)."""
    loop = asyncio.get_running_loop()
    handed: asyncio.Future[tether.Connection] = loop.create_future()

    async def handler(connection: tether.Connection) -> None:
        handed.set_result(connection)
        await connection.wait_closed()

    server = await start_server(handler, **options)
    return server, handed


# -- messages ---------------------------------------------------------------


@COMPRESSION
async def test_text_is_echoed_as_str_and_binary_as_bytes(
    start_server: StartServer, compression: Literal["deflate"] | None
) -> None:
    server = await start_server(compression=compression)
    async with tether.connect(ws_uri(server), compression=compression) as client:
        await client.send("héllo")
        text = await asyncio.wait_for(client.recv(), timeout())
        await client.send(b"\x00\xffbin")
        binary = await asyncio.wait_for(client.recv(), timeout())
        await client.send(bytearray(b"ba"))
        from_bytearray = await asyncio.wait_for(client.recv(), timeout())
    assert text == "héllo" and isinstance(text, str)
    assert binary == b"\x00\xffbin" and isinstance(binary, bytes)
    assert from_bytearray == b"ba" and isinstance(from_bytearray, bytes)


@COMPRESSION
async def test_large_messages_both_ways(
    start_server: StartServer, compression: Literal["deflate"] | None
) -> None:
    server = await start_server(compression=compression)
    payload = os.urandom(512 * 1024)
    text = "ab€" * (512 * 1024 // 5)
    async with tether.connect(ws_uri(server), compression=compression) as client:
        await asyncio.wait_for(client.send(payload), timeout(2))
        assert await asyncio.wait_for(client.recv(), timeout(2)) == payload
        await asyncio.wait_for(client.send(text), timeout(2))
        assert await asyncio.wait_for(client.recv(), timeout(2)) == text


async def test_pipelined_messages_of_every_size_come_back_in_order(
    start_server: StartServer,
) -> None:
    # Client and server share the loop's scratch buffer; frames of every size
    # straddle reads (the large ones are assembled across them) and the
    # replies are written header + payload (vectored).
    limits = {"max_message_size": 1 << 20, "max_frame_size": 1 << 20}
    server = await start_server(compression=None, **limits)
    sizes = [0, 1, 125, 126, 8191, 8192, 65535, 65536, 70000, 300000, 1 << 20, 17]
    messages: list[str | bytes] = [
        os.urandom(n) if i % 3 else "é" * (n // 2) for i, n in enumerate(sizes * 3)
    ]
    async with tether.connect(ws_uri(server), compression=None, **limits) as client:

        async def send_all() -> None:
            for message in messages:
                await client.send(message)

        sender = asyncio.ensure_future(send_all())
        received = [await asyncio.wait_for(client.recv(), timeout(2)) for _ in messages]
        await sender
    assert received == messages


@pytest.mark.parametrize(("size", "count"), [(64 * 1024, 256), (1024 * 1024, 64)])
async def test_echo_with_32_large_messages_in_flight_never_stalls(
    start_server: StartServer, size: int, count: int
) -> None:
    # Every flow-control path at once: the server's queue fills (max_queue is
    # 32), its writes pass write_high_water so the handler waits in send(),
    # frames are assembled across reads of the shared buffer and written
    # vectored; and the same on the client side.
    # The client sends all 32 before reading: the server must queue them.
    limits = {"max_message_size": size, "max_frame_size": size, "max_queue_bytes": 32 * size}
    server = await start_server(compression=None, **limits)
    await echo_in_flight(ws_uri(server), size, 32, count)


@COMPRESSION
async def test_fragments_from_a_list_arrive_as_one_message(
    start_server: StartServer, compression: Literal["deflate"] | None
) -> None:
    server = await start_server(compression=compression)
    async with tether.connect(ws_uri(server), compression=compression) as client:
        await client.send(["frag", "ment", "ed"])
        await client.send([b"\x01", b"", b"\x02\x03"])
        await client.send("after")
        received = [await asyncio.wait_for(client.recv(), timeout()) for _ in range(3)]
    assert received == ["fragmented", b"\x01\x02\x03", "after"]


@COMPRESSION
async def test_fragments_from_an_async_generator_arrive_as_one_message(
    start_server: StartServer, compression: Literal["deflate"] | None
) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0)  # really yield to the loop between fragments
            yield bytes([i]) * 1000

    server = await start_server(compression=compression)
    async with tether.connect(ws_uri(server), compression=compression) as client:
        await asyncio.wait_for(client.send(pieces()), timeout())
        message = await asyncio.wait_for(client.recv(), timeout())
    assert message == b"".join(bytes([i]) * 1000 for i in range(5))


async def test_mixing_str_and_bytes_fragments_is_refused(echo_server: tether.Server) -> None:
    async with tether.connect(ws_uri(echo_server)) as client:
        with pytest.raises(TypeError):
            await client.send(["text", b"bytes"])


async def test_send_refuses_other_types(echo_server: tether.Server) -> None:
    async with tether.connect(ws_uri(echo_server)) as client:
        with pytest.raises(TypeError):
            await client.send(42)  # type: ignore[arg-type]


async def test_concurrent_recv_is_refused(echo_server: tether.Server) -> None:
    async with tether.connect(ws_uri(echo_server)) as client:
        first = asyncio.ensure_future(client.recv())
        await asyncio.sleep(0)  # let it start waiting
        with pytest.raises(tether.InvalidState):
            await client.recv()
        await client.send("x")
        assert await asyncio.wait_for(first, timeout()) == "x"


# -- ping and keepalive -------------------------------------------------------


async def test_ping_returns_a_positive_round_trip_time(echo_server: tether.Server) -> None:
    async with tether.connect(ws_uri(echo_server)) as client:
        rtt = await asyncio.wait_for(client.ping(), timeout())
        rtt_with_payload = await asyncio.wait_for(client.ping(b"abc"), timeout())
    assert isinstance(rtt, float) and 0 < rtt < timeout()
    assert 0 < rtt_with_payload < timeout()


# -- closing ------------------------------------------------------------------


async def test_close_code_and_reason_reach_the_server(start_server: StartServer) -> None:
    server, handed = await served_connection(start_server)
    async with tether.connect(ws_uri(server)) as client:
        connection = await asyncio.wait_for(handed, timeout())
        for message in ("a", "b", "c"):
            await client.send(message)
        await asyncio.wait_for(client.close(1000, "bye"), timeout())
    await asyncio.wait_for(connection.wait_closed(), timeout())
    assert connection.close_code == 1000
    assert connection.close_reason == "bye"
    # Messages that arrived before the close are still delivered, in order.
    received = [await connection.recv() for _ in range(3)]
    assert received == ["a", "b", "c"]
    with pytest.raises(tether.ConnectionClosedOK) as info:
        await connection.recv()
    assert info.value.code == 1000 and info.value.reason == "bye"


async def test_close_code_and_reason_reach_the_client(start_server: StartServer) -> None:
    async def handler(connection: tether.Connection) -> None:
        await connection.send("last words")
        await connection.close(4000, "custom reason")

    server = await start_server(handler)
    async with tether.connect(ws_uri(server)) as client:
        assert await asyncio.wait_for(client.recv(), timeout()) == "last words"
        with pytest.raises(tether.ConnectionClosedError) as info:
            await asyncio.wait_for(client.recv(), timeout())
        assert info.value.code == 4000
        assert info.value.reason == "custom reason"
        assert client.close_code == 4000
        assert client.close_reason == "custom reason"
        assert not client.open


async def test_async_for_ends_cleanly_on_a_normal_close(start_server: StartServer) -> None:
    async def handler(connection: tether.Connection) -> None:
        for i in range(3):
            await connection.send(str(i))
        # returning closes with 1000

    server = await start_server(handler)
    received = []
    async with tether.connect(ws_uri(server)) as client:

        async def consume() -> None:
            async for message in client:
                received.append(message)

        await asyncio.wait_for(consume(), timeout())
    assert received == ["0", "1", "2"]
    assert client.close_code == 1000
    await asyncio.wait_for(client.wait_closed(), timeout())
    assert client.closed


async def test_send_after_close_raises_connection_closed(echo_server: tether.Server) -> None:
    client = await tether.connect(ws_uri(echo_server))
    await asyncio.wait_for(client.close(), timeout())
    assert client.closed
    with pytest.raises(tether.ConnectionClosedOK):
        await client.send("too late")
    with pytest.raises(tether.ConnectionClosedOK):
        await client.ping()


async def test_dropped_tcp_connection_is_1006(start_server: StartServer) -> None:
    server, handed = await served_connection(start_server)
    client = await tether.connect(ws_uri(server))
    connection = await asyncio.wait_for(handed, timeout())
    assert client.transport is not None
    client.transport.abort()
    with pytest.raises(tether.ConnectionClosedError) as info:
        await asyncio.wait_for(connection.recv(), timeout())
    assert info.value.code == 1006
    assert connection.close_code == 1006
    with pytest.raises(tether.ConnectionClosedError) as info:
        await asyncio.wait_for(client.recv(), timeout())
    assert info.value.code == 1006
    with pytest.raises(tether.ConnectionClosed):
        await connection.send("nobody listens")


async def test_close_with_unread_messages_completes_promptly(start_server: StartServer) -> None:
    # The client stops reading (max_queue reached), then closes: the server's
    # close reply must still be read instead of waiting for close_timeout.
    go = asyncio.Event()

    async def handler(connection: tether.Connection) -> None:
        await go.wait()
        for i in range(10):
            await connection.send(str(i))
        await asyncio.wait_for(connection.wait_closed(), timeout(3))

    server = await start_server(handler)
    client = await tether.connect(ws_uri(server), max_queue=2, close_timeout=timeout(5))
    paused = asyncio.Event()
    transport = client.transport
    assert transport is not None
    original = transport.pause_reading

    def spy() -> None:  # the client pauses reading once its queue is full
        original()
        paused.set()

    transport.pause_reading = spy  # type: ignore[method-assign]
    go.set()
    await asyncio.wait_for(paused.wait(), timeout())
    started = time.monotonic()
    await asyncio.wait_for(client.close(), timeout(6))
    assert time.monotonic() - started < timeout(1)
    assert client.close_code == 1000
    # What was queued before the close can still be read.
    assert await client.recv() == "0"


# -- flow control ---------------------------------------------------------------


async def fill_write_buffer(
    connection: tether.Connection, chunk: bytes, attempts: int = 500
) -> asyncio.Future[None]:
    """Send ``chunk`` until a send() blocks; return that pending send."""
    for _ in range(attempts):
        pending = asyncio.ensure_future(connection.send(chunk))
        done, _ = await asyncio.wait([pending], timeout=timeout(0.2))
        if not done:
            return pending
        pending.result()
    raise AssertionError(f"send() never blocked after {attempts} messages")


def shrink_send_buffer(connection: tether.Connection) -> None:
    assert connection.transport is not None
    sock = connection.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)


async def test_send_blocks_above_write_high_water_and_memory_stays_bounded(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    high = 32 * 1024
    server, handed = await served_connection(
        start_server, write_high_water=high, write_low_water=8 * 1024, compression=None
    )
    raw = await raw_client(server.port, rcvbuf=4096)
    raw.stop_reading()
    connection = await asyncio.wait_for(handed, timeout())
    shrink_send_buffer(connection)
    chunk = b"x" * 16 * 1024
    blocked = await fill_write_buffer(connection, chunk)
    size = connection.write_buffer_size()
    assert 8 * 1024 < size <= high + len(chunk) + 16
    # Still blocked a while later, and the buffer did not grow.
    done, _ = await asyncio.wait([blocked], timeout=timeout(0.2))
    assert not done
    assert connection.write_buffer_size() == size
    # Dropping the peer wakes the blocked sender with ConnectionClosed.
    raw.abort()
    with pytest.raises(tether.ConnectionClosed):
        await asyncio.wait_for(blocked, timeout())


async def test_blocked_send_resumes_when_the_peer_reads(start_server: StartServer) -> None:
    server, handed = await served_connection(
        start_server, write_high_water=32 * 1024, write_low_water=8 * 1024, compression=None
    )
    async with tether.connect(ws_uri(server), max_queue=1, compression=None) as client:
        connection = await asyncio.wait_for(handed, timeout())
        shrink_send_buffer(connection)
        blocked = await fill_write_buffer(connection, b"y" * 16 * 1024)

        async def drain() -> int:
            count = 0
            while not blocked.done() or client._messages:
                await client.recv()
                count += 1
            return count

        count = await asyncio.wait_for(drain(), timeout(2))
        assert blocked.done() and blocked.exception() is None
        assert count >= 2


async def test_ping_waiting_for_a_pong_fails_when_the_connection_drops(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    # A server-side ping to a raw peer that never answers.
    server, handed = await served_connection(start_server)
    raw = await raw_client(server.port)
    connection = await asyncio.wait_for(handed, timeout())
    ping = asyncio.ensure_future(connection.ping(b"p"))
    opcode, payload = await asyncio.wait_for(raw.read_frame(), timeout())
    assert (opcode, payload) == (OP_PING, b"p")
    raw.abort()
    with pytest.raises(tether.ConnectionClosedError):
        await asyncio.wait_for(ping, timeout())


async def test_server_close_frame_payload_is_well_formed(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    async def handler(connection: tether.Connection) -> None:
        await connection.close(1001, "going")

    server = await start_server(handler)
    raw = await raw_client(server.port)
    opcode, payload = await asyncio.wait_for(raw.read_frame(), timeout())
    assert opcode == OP_CLOSE
    assert struct.unpack("!H", payload[:2]) == (1001,) and payload[2:] == b"going"


async def test_keepalive_drops_a_peer_that_stopped_reading(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    # The close frame cannot be flushed to a peer that does not read: after
    # close_timeout the TCP connection is dropped anyway.
    server, handed = await served_connection(
        start_server,
        ping_interval=timeout(0.1),
        ping_timeout=timeout(0.1),
        close_timeout=timeout(0.3),
        write_high_water=16 * 1024,
        write_low_water=4 * 1024,
        compression=None,
    )
    raw = await raw_client(server.port, rcvbuf=4096)
    raw.stop_reading()
    connection = await asyncio.wait_for(handed, timeout())
    shrink_send_buffer(connection)
    blocked = await fill_write_buffer(connection, b"k" * 8192)
    with pytest.raises(tether.ConnectionClosedError):
        await asyncio.wait_for(blocked, timeout(0.1 + 0.1 + 0.3 + 0.5))
    await asyncio.wait_for(connection.wait_closed(), timeout())
    assert connection.close_code == 1006


async def test_socketpair_connection_without_listening_socket() -> None:
    """The whole stack over a socketpair: no listening socket, no port."""
    server_sock, client_sock = socket.socketpair()
    received: list[str | bytes] = []

    async def handler(connection: tether.Connection) -> None:
        async for message in connection:
            received.append(message)
            await connection.send(message)

    server = tether.Server(handler)
    await server.handle_socket(server_sock)
    async with tether.connect("ws://pair/chat", sock=client_sock) as client:
        await client.send("over a pair")
        assert await asyncio.wait_for(client.recv(), timeout()) == "over a pair"
        await client.send(b"\x00\x01")
        assert await asyncio.wait_for(client.recv(), timeout()) == b"\x00\x01"
    assert client.close_code == 1000
    assert received == ["over a pair", b"\x00\x01"]
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout(2))


async def test_cancelled_ping_frees_its_payload(start_server: StartServer) -> None:
    server = await start_server()
    async with tether.connect(ws_uri(server)) as client:
        with pytest.raises((asyncio.TimeoutError, asyncio.CancelledError)):
            await asyncio.wait_for(client.ping(b"same"), 0)
        # The same payload can be used again: the cancelled ping left nothing behind.
        rtt = await asyncio.wait_for(client.ping(b"same"), timeout())
        assert rtt > 0
