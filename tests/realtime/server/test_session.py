"""One Engine.IO session (:mod:`tether.realtime.server.session`) on its own:
its polling queue, what it costs, the slow-client bound and the close
(on long-polling, and on a real WebSocket for broadcasts).

The host is a plain object with the :class:`SessionHost` interface; the
sessions on the wire (heartbeat, upgrade, long-polling) are in test_engine.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import tether
from helpers import timeout
from realtime.sio_helpers import eventually
from tether.limits import RealtimeLimits
from tether.protocol.connection import encode_broadcast_frame
from tether.protocol.http import Request
from tether.realtime.protocol.engineio import Packet, PacketType
from tether.realtime.server.session import SLOW_CLIENT, Outgoing, Session, queued_size


class Host:
    """A SessionHost that records what the session asks of it."""

    def __init__(self, **limits: Any) -> None:
        self.limits = RealtimeLimits().replace(**limits)
        self.ping_interval = 25.0
        self.ping_timeout = 20.0
        self.upgrade_timeout = 10.0
        self.max_payload = self.limits.max_payload
        self.discarded: list[Session] = []
        self.ids = 0

    def generate_id(self) -> str:
        self.ids += 1
        return f"sid{self.ids}"

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        coroutine.close()

    def discard(self, session: Session) -> None:
        self.discarded.append(session)


class Listener:
    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.closes: list[str] = []

    def on_message(self, session: Session, data: str | bytes) -> None:
        self.messages.append(data)

    def on_close(self, session: Session, reason: str) -> None:
        self.closes.append(reason)


def test_queued_size_counts_the_payload_bytes() -> None:
    text = queued_size(Packet(PacketType.MESSAGE, "héllo"))
    assert text == queued_size(Packet(PacketType.MESSAGE, "hello")) + 1  # é is 2 bytes
    # Binary: "b" + base64 (4 characters per 3 bytes, padded).
    assert (
        queued_size(Packet(PacketType.MESSAGE, b"\x00" * 4))
        - queued_size(Packet(PacketType.MESSAGE, ""))
        == 8
    )
    outgoing = Outgoing(["a", b"b"])
    assert outgoing.size == sum(queued_size(packet) for packet in outgoing.packets)


def test_outgoing_encodes_each_message_once() -> None:
    outgoing = Outgoing(['2["a"]', b"\x01"])
    # What a WebSocket is sent, encoded at once; the polling packets when asked.
    assert outgoing.texts == ['42["a"]', b"\x01"]
    assert outgoing.frames == encode_broadcast_frame('42["a"]') + encode_broadcast_frame(b"\x01")
    assert outgoing.packets == [
        Packet(PacketType.MESSAGE, '2["a"]'),
        Packet(PacketType.MESSAGE, b"\x01"),
    ]
    assert outgoing.packets is outgoing.packets


async def test_polling_queue_is_taken_once() -> None:
    host = Host()
    session = Session(host, Request("/"), ("127.0.0.1", 1))
    assert session.sid == "sid1" and session.transport == "polling"
    assert session.websocket is None and not session.holding
    session.send("a")
    session.send_outgoing(Outgoing(["b"]))
    assert [p.data for p in session.take_queued()] == ["a", "b"]
    assert session.take_queued() == []


async def test_receive_hands_messages_to_the_listener() -> None:
    session = Session(Host(), Request("/"), None)
    listener = session.listener = Listener()
    session.receive(Packet(PacketType.MESSAGE, "hi"))
    session.receive(Packet(PacketType.NOOP))
    assert listener.messages == ["hi"]


async def test_slow_polling_client_is_closed() -> None:
    host = Host(max_outgoing_bytes=1000)
    session = Session(host, Request("/"), None)
    listener = session.listener = Listener()
    for _ in range(20):
        session.send("x" * 100)
    assert not session.closed  # closed on the next loop turn, not inside the send
    await asyncio.sleep(0)
    assert session.closed and session.close_reason == SLOW_CLIENT
    assert listener.closes == [SLOW_CLIENT] and host.discarded == [session]
    # A client closed for breaking a limit gets only "close", not the backlog.
    assert [p.type for p in session.take_queued()] == [PacketType.CLOSE]


async def test_close_by_the_client_answers_the_held_get_with_noop() -> None:
    session = Session(Host(), Request("/"), None)
    waiting = asyncio.ensure_future(session.wait_for_packets())
    await asyncio.sleep(0)
    assert session.holding
    session.receive(Packet(PacketType.CLOSE))
    await waiting
    assert session.close_reason == "forced close"
    assert [p.type for p in session.take_queued()] == [PacketType.NOOP]


async def test_broadcasts_to_a_slow_websocket_wait_then_close_it() -> None:
    # send_outgoing on a WebSocket whose client stops reading: below
    # write_high_water the shared frames; above it, not skipped as
    # tether.broadcast would skip it (nor counted as a skip), each message
    # written on its own; past max_outgoing_bytes, closed as a slow client.
    opened: asyncio.Queue[Session] = asyncio.Queue()
    host = Host(max_outgoing_bytes=256 * 1024)

    async def handler(connection: tether.Connection) -> None:
        assert connection.request is not None
        opened.put_nowait(Session(host, connection.request, None, connection))
        await connection.wait_closed()

    server = await tether.serve(
        handler, "127.0.0.1", 0, compression=None, ping_interval=None, close_timeout=timeout(1)
    )
    client = await tether.connect(f"ws://127.0.0.1:{server.port}/", compression=None)
    try:
        assert client.transport is not None
        client.transport.pause_reading()
        session = await asyncio.wait_for(opened.get(), timeout(5))
        websocket = session.websocket
        assert isinstance(websocket, tether.Connection)
        assert session.shared is websocket  # what a fan-out writes shared frames to
        outgoing = Outgoing(['2["n","' + "x" * 8192 + '"]'])
        frame = len(outgoing.frames)
        high_water = websocket.limits.write_high_water
        for _ in range(10_000):  # until the socket buffers are full
            if websocket.write_buffer_size() > high_water:
                break
            assert session.send_outgoing(outgoing)
        assert high_water < websocket.write_buffer_size() < host.limits.max_outgoing_bytes
        before = websocket.write_buffer_size()
        assert session.send_outgoing(outgoing)
        assert websocket.write_buffer_size() == before + frame  # written, not skipped
        assert server.metrics.snapshot()["tether_slow_clients_total"] == {}
        sent = 0
        while session.send_outgoing(outgoing):
            sent += 1
            assert sent * frame <= host.limits.max_outgoing_bytes
        assert host.limits.max_outgoing_bytes < websocket.write_buffer_size()
        assert websocket.write_buffer_size() <= host.limits.max_outgoing_bytes + frame
        assert session.shared is None  # overflowed: a fan-out writes it nothing more
        await eventually(lambda: session.closed, wait=5)
        assert session.close_reason == SLOW_CLIENT and host.discarded == [session]
        assert server.metrics.snapshot()["tether_slow_clients_total"] == {}
    finally:
        if client.transport is not None:
            client.transport.abort()
        server.close()
        await server.wait_closed(timeout(5))
