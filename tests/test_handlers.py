"""MessageHandler: per-message callbacks straight from the event loop."""

from __future__ import annotations

import asyncio

import pytest

import tether
from conftest import OP_CLOSE, OP_TEXT, OpenRaw, StartServer, ws_uri
from helpers import timeout


class Recorder(tether.MessageHandler):
    def __init__(self) -> None:
        self.events: list[object] = []
        self.closed = asyncio.Event()

    def on_open(self, connection: tether.Connection) -> None:
        self.events.append("open")

    def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
        self.events.append(message)
        if message == "boom":
            raise RuntimeError("handler bug")
        connection.send_nowait(message)

    def on_close(self, connection: tether.Connection) -> None:
        self.events.append(("close", connection.close_code))
        self.closed.set()


async def test_callbacks_echo_in_order_and_see_open_and_close(start_server: StartServer) -> None:
    handler = Recorder()
    server = await start_server(handler)
    async with tether.connect(ws_uri(server)) as client:
        for i in range(200):
            await client.send(f"m{i}")
        await client.send(b"\x00bin")
        replies = [await asyncio.wait_for(client.recv(), timeout()) for _ in range(201)]
    assert replies == [f"m{i}" for i in range(200)] + [b"\x00bin"]
    await asyncio.wait_for(handler.closed.wait(), timeout())
    assert handler.events[0] == "open"
    assert handler.events[1:-1] == replies
    assert handler.events[-1] == ("close", 1000)


async def test_messages_in_one_read_beyond_max_queue_all_reach_the_callback(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    handler = Recorder()
    server = await start_server(handler, max_queue=2)
    client = await raw_client(server.port)
    for i in range(50):  # buffered by the stream writer: one write, one server read
        client.send_frame(OP_TEXT, b"n%d" % i)
    echoed = [await asyncio.wait_for(client.read_frame(), timeout()) for _ in range(50)]
    assert echoed == [(OP_TEXT, b"n%d" % i) for i in range(50)]


async def test_an_exception_in_on_message_closes_that_connection_with_1011(
    start_server: StartServer,
) -> None:
    handler = Recorder()
    server = await start_server(handler)
    async with tether.connect(ws_uri(server)) as other:
        async with tether.connect(ws_uri(server)) as client:
            await client.send("boom")
            with pytest.raises(tether.ConnectionClosedError) as info:
                await asyncio.wait_for(client.recv(), timeout())
            assert info.value.code == 1011
        await other.send("still here")
        assert await asyncio.wait_for(other.recv(), timeout()) == "still here"


async def test_reading_pauses_while_a_peer_does_not_read_replies(
    start_server: StartServer, raw_client: OpenRaw
) -> None:
    class Amplify(tether.MessageHandler):
        def on_message(self, connection: tether.Connection, message: tether.Message) -> None:
            connection.send_nowait(b"x" * 65536)

    server = await start_server(
        Amplify(), max_queue=4, write_high_water=65536, write_low_water=16384
    )
    client = await raw_client(server.port, rcvbuf=4096)
    client.stop_reading()
    connection = next(iter(server.connections))
    for _ in range(400):
        client.send_frame(OP_TEXT, b"more")
    await client.writer.drain()

    async def reading_paused() -> None:
        while connection.transport is not None and connection.transport.is_reading():
            await asyncio.sleep(0.01)  # polls a condition; bounded by the wait_for below

    await asyncio.wait_for(reading_paused(), timeout(5))
    # Replies stay bounded by the queue: (max_queue + 1) replies over the
    # high-water mark at most, far below 400 x 64 KiB.
    assert connection.write_buffer_size() < 6 * 65536 + 65536
    assert len(connection._messages) <= 4
    client.send_frame(OP_CLOSE, b"\x03\xe8")
