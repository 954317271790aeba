"""tether's realtime client against tether's realtime server, end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest

from helpers import timeout
from tether import realtime
from tether.realtime.client import Client

T = TypeVar("T")


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    return await asyncio.wait_for(awaitable, timeout(units))


@pytest.fixture
async def served() -> AsyncIterator[tuple[realtime.Server, str]]:
    server = realtime.Server(connection_state_recovery={"max_disconnection_duration": 30})

    @server.on("join")
    async def join(socket: realtime.Socket, room: str) -> str:
        await socket.join(room)
        return room

    @server.on("shout")
    async def shout(socket: realtime.Socket, room: str, text: str) -> None:
        await socket.to(room).emit("heard", text)

    @server.on("echo")
    async def echo(socket: realtime.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @server.on("ask")
    async def ask(socket: realtime.Socket, question: str) -> Any:
        return await socket.emit_with_ack("question", question, timeout=timeout(3))

    async with realtime.serve(server, "127.0.0.1", 0) as http:
        yield server, f"http://127.0.0.1:{http.port}"


@pytest.mark.parametrize("transports", [("websocket",), ("polling",), ("polling", "websocket")])
async def test_events_acks_and_binary_both_ways(
    served: tuple[realtime.Server, str], transports: tuple[str, ...]
) -> None:
    _, url = served
    client = Client(transports=transports, reconnection=False)

    @client.on("question")
    async def question(text: str) -> str:
        return text.upper()

    await within(client.connect(url))
    try:
        blob = bytes(range(256)) * 40
        assert await within(client.emit_with_ack("echo", 1, "two", {"b": blob})) == (
            1,
            "two",
            {"b": blob},
        )
        # The server asks the client, inside a handler, and acks with its answer.
        assert await within(client.emit_with_ack("ask", "why")) == "WHY"
        if transports == ("polling", "websocket"):
            # The upgrade happens in the background; events keep flowing meanwhile.
            for _ in range(50):
                if client.transport == "websocket":
                    break
                assert await within(client.emit_with_ack("echo", "ping")) == "ping"
            assert client.transport == "websocket"
    finally:
        await client.disconnect()


async def test_rooms_reach_members_only(served: tuple[realtime.Server, str]) -> None:
    _, url = served
    heard: dict[str, asyncio.Queue[str]] = {}
    clients: dict[str, Client] = {}
    for name in ("ann", "bob", "cid"):
        client = Client(reconnection=False)
        heard[name] = queue = asyncio.Queue()
        client.on("heard", queue.put_nowait)
        await within(client.connect(url))
        clients[name] = client
    try:
        for name, room in (("ann", "a"), ("bob", "a"), ("cid", "b")):
            assert await within(clients[name].emit_with_ack("join", room)) == room
        await clients["ann"].emit("shout", "a", "hi a")
        await clients["cid"].emit("shout", "a", "from outside")
        assert await within(heard["bob"].get()) == "hi a"
        assert await within(heard["bob"].get()) == "from outside"
        # Synchronise on an ack: whatever reached ann or cid has arrived by now.
        await within(clients["ann"].emit_with_ack("echo"))
        await within(clients["cid"].emit_with_ack("echo"))
        # ann got cid's message to her room but not her own; cid is not in it.
        assert await within(heard["ann"].get()) == "from outside"
        assert heard["ann"].empty()
        assert heard["cid"].empty()
    finally:
        for client in clients.values():
            await client.disconnect()


async def test_recovery_after_a_dropped_connection(served: tuple[realtime.Server, str]) -> None:
    server, url = served
    received: asyncio.Queue[int] = asyncio.Queue()
    client = Client(reconnection_delay=0.05, reconnection_delay_max=0.1)
    client.on("seq", received.put_nowait)
    await within(client.connect(url))
    try:
        await within(client.emit_with_ack("join", "feed"))
        sid = client.sid()
        await server.to("feed").emit("seq", 1)
        assert await within(received.get()) == 1
        # Drop the transport (a recoverable reason), send while the client is away.
        (socket,) = server.sockets.values()
        socket.session.close("transport close")
        for n in range(2, 6):
            await server.to("feed").emit("seq", n)
        got = [await within(received.get()) for _ in range(4)]
        assert got == [2, 3, 4, 5]
        assert client.sid() == sid
        assert client.recovered()
        await server.to("feed").emit("seq", 6)  # still in the room after recovery
        assert await within(received.get()) == 6
        assert received.empty()
    finally:
        await client.disconnect()
