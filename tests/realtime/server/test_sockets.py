"""What handlers hold (tether.realtime.server.sockets): Socket and
BroadcastOperator, against a real realtime server on 127.0.0.1 port 0 and
tether's realtime Client: the to / except_ / volatile / local selections,
emit with an ack and its timeout, join and leave, fetch_sockets,
sockets_join / sockets_leave / disconnect_sockets, and disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from helpers import timeout
from tether import realtime
from tether.exceptions import AckTimeout, Disconnected
from tether.realtime.client import Client

T = TypeVar("T")

NAMES = ("a", "b", "c")


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    return await asyncio.wait_for(awaitable, timeout(units))


@dataclass
class Room:
    """A server whose sockets are kept by their client's name, and one
    connected Client per name, recording the "news" events it receives."""

    server: realtime.Server
    sockets: dict[str, realtime.Socket] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)
    news: dict[str, list[Any]] = field(default_factory=dict)

    async def settle(self) -> None:
        """Every event sent before this call has reached its client: each one's
        echo comes back after what the server queued for it earlier."""
        for client in self.clients.values():
            if client.connected:
                await within(client.emit_with_ack("echo"))

    def reset(self) -> None:
        for received in self.news.values():
            received.clear()


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    server = realtime.Server()
    state = Room(server)

    @server.on("connect")
    async def connect(socket: realtime.Socket, auth: dict[str, Any]) -> None:
        state.sockets[auth["name"]] = socket

    @server.on("echo")
    async def echo(socket: realtime.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(realtime.serve(server, "127.0.0.1", 0))
        for name in NAMES:
            client = Client(reconnection=False)
            state.news[name] = received = []
            client.on("news", received.append)
            client.on("question", lambda text, name=name: f"{name}:{text}")
            await within(client.connect(f"http://127.0.0.1:{http.port}", auth={"name": name}))
            stack.push_async_callback(client.disconnect)
            state.clients[name] = client
        yield state


async def test_socket_to_and_except_leave_the_sender_out(room: Room) -> None:
    a, b = room.sockets["a"], room.sockets["b"]
    await a.join("r1")
    await b.join(["r1", "r2"])
    assert a.rooms == {a.sid, "r1"} and b.rooms == {b.sid, "r1", "r2"}
    await a.to("r1").emit("news", "a to r1")  # b only: a is the sender
    await a.except_("r2").emit("news", "a to all but r2")  # c only
    await a.broadcast.emit("news", "a to all")  # b and c
    await room.settle()
    assert room.news == {
        "a": [],
        "b": ["a to r1", "a to all"],
        "c": ["a to all but r2", "a to all"],
    }


async def test_operator_selections_chain(room: Room) -> None:
    a, b, c = (room.sockets[name] for name in NAMES)
    await a.join("r1")
    await b.join("r1")
    await c.join("r2")
    nsp = room.server.of("/")
    await nsp.to("r1").to("r2").except_("r2").emit("news", "r1 only")
    await nsp.to(c.sid).emit("news", "to c's sid")
    await nsp.except_([a.sid, b.sid]).emit("news", "all but a and b")
    await nsp.volatile.emit("news", "volatile")
    await nsp.local.emit("news", "local")  # one node: everyone
    await a.volatile.emit("news", "a alone")
    await room.settle()
    assert room.news == {
        "a": ["r1 only", "volatile", "local", "a alone"],
        "b": ["r1 only", "volatile", "local"],
        "c": ["to c's sid", "all but a and b", "volatile", "local"],
    }


async def test_leave(room: Room) -> None:
    a, b = room.sockets["a"], room.sockets["b"]
    await b.join(["r1", "r2"])
    await b.leave("r1")
    assert b.rooms == {b.sid, "r2"}
    await a.to("r1").emit("news", "nobody")
    await a.to("r2").emit("news", "b")
    await room.settle()
    assert room.news["b"] == ["b"]


async def test_emit_with_ack_and_its_timeout(room: Room) -> None:
    a = room.sockets["a"]
    assert await within(a.emit_with_ack("question", "why")) == "a:why"
    assert await within(a.timeout(timeout(1)).emit_with_ack("question", "again")) == "a:again"

    never = asyncio.Event()

    async def silent(text: str) -> None:
        await never.wait()  # never acknowledges in time

    room.clients["a"].on("question", silent)
    with pytest.raises(AckTimeout):
        await within(a.emit_with_ack("question", "hello?", timeout=timeout(0.2)))
    with pytest.raises(AckTimeout):
        await within(a.timeout(timeout(0.2)).emit_with_ack("question", "hello?"))
    never.set()


async def test_broadcast_emit_with_ack_keeps_the_replies_in_time(room: Room) -> None:
    never = asyncio.Event()

    async def silent(text: str) -> None:
        await never.wait()

    room.clients["c"].on("question", silent)
    replies = await within(room.server.of("/").timeout(timeout(0.5)).emit_with_ack("question", "q"))
    assert sorted(replies) == ["a:q", "b:q"]  # c did not answer in time
    b = room.sockets["b"]
    await b.join("r1")
    replies = await within(b.to("r1").timeout(timeout(0.5)).emit_with_ack("question", "q"))
    assert replies == []  # b is the sender: not selected
    never.set()


async def test_fetch_join_leave_and_disconnect_sockets(room: Room) -> None:
    a, b, c = (room.sockets[name] for name in NAMES)
    nsp = room.server.of("/")
    await nsp.except_(c.sid).sockets_join("team")
    found = await within(nsp.to("team").fetch_sockets())
    assert sorted(info.sid for info in found) == sorted([a.sid, b.sid])
    assert all("team" in info.rooms for info in found)
    await nsp.to(b.sid).sockets_leave("team")
    assert {info.sid for info in await nsp.to("team").fetch_sockets()} == {a.sid}
    reasons: list[str] = []
    room.clients["a"].on("disconnect", reasons.append)
    await nsp.to("team").disconnect_sockets()
    await within(room.clients["a"].wait())
    assert reasons == ["io server disconnect"]
    assert not a.connected
    assert {info.sid for info in await nsp.fetch_sockets()} == {b.sid, c.sid}


async def test_disconnect(room: Room) -> None:
    b = room.sockets["b"]
    await b.join("r1")
    reasons: list[str] = []
    room.clients["b"].on("disconnect", reasons.append)
    await b.disconnect()
    await within(room.clients["b"].wait())
    assert reasons == ["io server disconnect"]
    assert not b.connected
    assert b.rooms == {b.sid, "r1"}  # the rooms it was in when it left
    with pytest.raises(Disconnected):
        await b.emit("news", "too late")
    with pytest.raises(Disconnected):
        await b.emit_with_ack("question", "too late")


async def test_a_plain_handler_emits_with_emit_nowait() -> None:
    """emit_nowait is what a plain-function handler calls (no task, no
    await): its events reach the client at once and in order."""
    server = realtime.Server()
    calls: list[str] = []

    @server.on("count")
    def count(socket: realtime.Socket, n: int) -> None:
        calls.append("count")
        for i in range(n):
            socket.emit_nowait("news", i)

    async with realtime.serve(server, "127.0.0.1", 0) as http:
        client = Client(reconnection=False)
        received: list[Any] = []
        done = asyncio.Event()

        def news(i: int) -> None:
            received.append(i)
            if len(received) == 5:
                done.set()

        client.on("news", news)
        await within(client.connect(f"http://127.0.0.1:{http.port}"))
        try:
            await client.emit("count", 5)
            await within(done.wait())
            assert received == [0, 1, 2, 3, 4]
            assert calls == ["count"]
        finally:
            await client.disconnect()


async def test_emit_nowait_refuses_what_emit_refuses(room: Room) -> None:
    a = room.sockets["a"]
    with pytest.raises(ValueError, match="reserved"):
        a.emit_nowait("disconnect")
    with pytest.raises(TypeError):
        a.emit_nowait("")
    a.emit_nowait("news", "first")
    await room.settle()
    assert room.news["a"] == ["first"]
    await a.disconnect()
    await within(room.clients["a"].wait())
    with pytest.raises(Disconnected):
        a.emit_nowait("news", "too late")


async def test_a_plain_handler_broadcasts_with_emit_nowait(room: Room) -> None:
    """BroadcastOperator.emit_nowait (Node's ``io.to(room).emit``): with the
    in-memory adapter it is written at once, to the selected sockets only, in
    order with emit; it refuses what emit refuses."""
    a, b = room.sockets["a"], room.sockets["b"]
    await a.join("r1")
    await b.join("r1")
    room.server.to("r1").emit_nowait("news", 1)
    await room.server.to("r1").emit("news", 2)
    a.to("r1").emit_nowait("news", 3)  # b only: a is the sender
    room.server.except_("r1").emit_nowait("news", 4)  # c only
    assert room.server.of("/").broadcasting is None  # no task: all done at once
    await room.settle()
    assert room.news == {"a": [1, 2], "b": [1, 2, 3], "c": [4]}
    with pytest.raises(ValueError, match="reserved"):
        room.server.emit_nowait("connect")
    with pytest.raises(TypeError):
        room.server.to("r1").emit_nowait("")
