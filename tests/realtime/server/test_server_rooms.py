"""Rooms and broadcasting on the wire: join/leave, emit to rooms, except,
``socket.broadcast``, volatile emits, ``fetch_sockets``, ``sockets_join`` /
``sockets_leave``, ``disconnect_sockets``, broadcasts with acks, and a
broadcast to many sockets serialised once.

Clients join rooms with an ``join`` event they ask an ack for, so that the
test knows the server has done it; the server side then emits from the test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from helpers import timeout
from realtime.conftest import StartSio
from realtime.sio_helpers import (
    EioSocket,
    eventually,
    open_polling,
    poll,
    post,
    sio_connect,
)
from tether import realtime
from tether.protocol.connection import encode_broadcast_frame
from tether.realtime import Socket
from tether.realtime.adapters.base import BroadcastOptions
from tether.realtime.protocol import engineio, socketio
from tether.realtime.protocol.parsers import JsonParser
from tether.realtime.server import session as engine_session
from tether.realtime.server import sockets


def room_server() -> realtime.Server:
    server = realtime.Server()

    @server.on("join")
    async def join(socket: Socket, *rooms: str) -> list[str]:
        await socket.join(rooms)
        return sorted(socket.rooms - {socket.sid})

    @server.on("leave")
    async def leave(socket: Socket, room: str) -> list[str]:
        await socket.leave(room)
        return sorted(socket.rooms - {socket.sid})

    @server.on("shout")
    async def shout(socket: Socket, text: str) -> None:
        await socket.broadcast.emit("heard", text)

    @server.on("tell")
    async def tell(socket: Socket, room: str, text: str) -> None:
        await socket.to(room).emit("told", text)

    @server.on("quit")
    async def quit(socket: Socket, close: bool) -> None:
        await socket.disconnect(close)

    return server


class Member:
    """One WebSocket client connected to ``/``, with its sid."""

    def __init__(self, ws: EioSocket, sid: str) -> None:
        self.ws, self.sid = ws, sid

    async def join(self, *rooms: str) -> None:
        await self.ws.send("421" + json.dumps(["join", *rooms], separators=(",", ":")))
        assert (await self.ws.recv_text()).startswith("431[")


async def members(port: int, count: int) -> list[Member]:
    return [Member(*await sio_connect(port)) for _ in range(count)]


async def expect(
    server: realtime.Server, packet: str, receivers: list[Member], silent: list[Member]
) -> None:
    """Each receiver gets ``packet`` exactly once, the others nothing: checked
    with a marker emitted to everyone next, which must be what comes after."""
    await server.emit("marker")
    for member in receivers:
        assert await member.ws.recv() == packet
    for member in receivers + silent:
        assert await member.ws.recv() == '42["marker"]'


# -- joining, leaving, emitting to rooms ------------------------------------------------


async def test_join_leave_and_emit_to_a_room(start_sio: StartSio) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, c = await members(sio.port, 3)
    await a.ws.send('421["join","r"]')
    assert await a.ws.recv() == '431[["r"]]'
    await b.join("r")
    assert server.sockets[a.sid].rooms == {a.sid, "r"}
    await server.to("r").emit("news", 1)
    await expect(server, '42["news",1]', [a, b], [c])
    await a.ws.send('422["leave","r"]')
    assert await a.ws.recv() == "432[[]]"
    await server.to("r").emit("news", 2)
    await expect(server, '42["news",2]', [b], [a, c])
    # A sid is a room of its own.
    await server.to(c.sid).emit("direct")
    await expect(server, '42["direct"]', [c], [a, b])


async def test_several_rooms_reach_each_member_once(start_sio: StartSio) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, c, d = await members(sio.port, 4)
    await a.join("r1")
    await b.join("r2")
    await c.join("r1", "r2")
    await server.to(["r1", "r2"]).emit("both")
    await expect(server, '42["both"]', [a, b, c], [d])
    await server.to("r1").to("r2").emit("chained")
    await expect(server, '42["chained"]', [a, b, c], [d])


async def test_except_rooms(start_sio: StartSio) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, c, d = await members(sio.port, 4)
    await a.join("r1")
    await b.join("r2")
    await c.join("r1", "r2")
    await server.to("r1").except_("r2").emit("one")
    await expect(server, '42["one"]', [a], [b, c, d])
    await server.except_("r1").emit("not-r1")
    await expect(server, '42["not-r1"]', [b, d], [a, c])
    await server.except_(["r1", d.sid]).emit("neither")
    await expect(server, '42["neither"]', [b], [a, c, d])


async def test_server_emit_to_and_skip(start_sio: StartSio) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, c = await members(sio.port, 3)
    await a.join("r")
    await b.join("r")
    await server.emit("to-sid", {"x": 1}, to=c.sid)
    await expect(server, '42["to-sid",{"x":1}]', [c], [a, b])
    await server.emit("room-but-a", to="r", skip=a.sid)
    await expect(server, '42["room-but-a"]', [b], [a, c])
    await server.emit("all-but-r", skip=["r"])
    await expect(server, '42["all-but-r"]', [c], [a, b])
    await server.emit("everyone")
    await expect(server, '42["everyone"]', [a, b, c], [])


async def test_socket_broadcast_reaches_all_but_the_sender(start_sio: StartSio) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, c = await members(sio.port, 3)
    await a.ws.send('42["shout","hi"]')
    for member in (b, c):
        assert await member.ws.recv() == '42["heard","hi"]'
    await expect(server, '42["heard","hi"]', [], [a, b, c])


async def test_socket_to_a_room_leaves_out_the_sender(start_sio: StartSio) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, c, d = await members(sio.port, 4)
    for member in (a, b, c):
        await member.join("r")
    await a.ws.send('42["tell","r","psst"]')
    for member in (b, c):
        assert await member.ws.recv() == '42["told","psst"]'
    await expect(server, '42["told","psst"]', [], [a, b, c, d])


async def test_broadcasts_stay_in_their_namespace(start_sio: StartSio) -> None:
    server = room_server()
    server.of("/custom")
    sio = await start_sio(server)
    main, _ = await sio_connect(sio.port)
    custom, custom_sid = await sio_connect(sio.port, "/custom")
    await server.emit("main-only")
    assert await main.recv() == '42["main-only"]'
    await custom.nothing(0.05)
    await server.of("/custom").to(custom_sid).emit("custom-only")
    assert await custom.recv() == '42/custom,["custom-only"]'
    await main.nothing(0.05)


# -- volatile ----------------------------------------------------------------------------


async def test_volatile_emit_is_dropped_when_polling_cannot_take_it(start_sio: StartSio) -> None:
    server = realtime.Server()
    sio = await start_sio(server)
    sid, _ = await open_polling(sio.port)
    await post(sio.port, sid, "40")
    assert (await poll(sio.port, sid))[0].startswith('40{"sid":')
    session = server.engine.sessions[sid]
    # No GET pending: the volatile event is dropped, the ordinary one queued.
    assert not session.writable
    await server.volatile.emit("lost")
    await server.emit("kept")
    assert await poll(sio.port, sid) == ['42["kept"]']
    # A GET pending: the volatile event goes out.
    get = asyncio.create_task(poll(sio.port, sid))
    await eventually(lambda: session.writable)
    await server.volatile.emit("delivered")
    assert await get == ['42["delivered"]']
    # The same through one socket.
    (socket,) = server.sockets.values()
    await socket.volatile.emit("lost-too")
    await server.emit("kept-too")
    assert await poll(sio.port, sid) == ['42["kept-too"]']


async def test_volatile_emit_over_websocket(start_sio: StartSio) -> None:
    server = realtime.Server()
    sio = await start_sio(server)
    ws, sid = await sio_connect(sio.port)
    await server.volatile.emit("v", 1)
    assert await ws.recv() == '42["v",1]'
    await server.sockets[sid].volatile.emit("w")
    assert await ws.recv() == '42["w"]'


# -- acting on selections --------------------------------------------------------------


async def test_fetch_sockets(start_sio: StartSio) -> None:
    server = room_server()

    @server.use
    def name(socket: Socket, auth: dict[str, Any]) -> None:
        socket.data["name"] = auth.get("name")

    sio = await start_sio(server)
    ann = Member(*await sio_connect(sio.port, auth={"name": "ann"}))
    bob = Member(*await sio_connect(sio.port, auth={"name": "bob"}))
    await ann.join("r")
    everyone = await server.fetch_sockets()
    assert {info.sid for info in everyone} == {ann.sid, bob.sid}
    (info,) = await server.in_("r").fetch_sockets()
    assert info.sid == ann.sid
    assert info.namespace == "/"
    assert info.rooms == {ann.sid, "r"}
    assert info.data == {"name": "ann"}
    assert info.handshake["auth"] == {"name": "ann"}
    assert info.handshake["query"]["transport"] == "websocket"
    assert await server.to("nobody").fetch_sockets() == []
    assert [i.sid for i in await server.except_("r").fetch_sockets()] == [bob.sid]


async def test_sockets_join_and_leave(start_sio: StartSio) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, c = await members(sio.port, 3)
    await a.join("r1")
    await b.join("r1")
    await server.in_("r1").sockets_join(["r2", "r3"])
    assert server.sockets[a.sid].rooms == {a.sid, "r1", "r2", "r3"}
    await server.to("r2").emit("r2")
    await expect(server, '42["r2"]', [a, b], [c])
    await server.in_(a.sid).sockets_leave("r2")
    await server.to("r2").emit("r2-again")
    await expect(server, '42["r2-again"]', [b], [a, c])
    await server.sockets_join("all")
    await server.to("all").emit("all")
    await expect(server, '42["all"]', [a, b, c], [])
    await server.sockets_leave("all")
    assert await server.in_("all").fetch_sockets() == []


def reasons_of(server: realtime.Server) -> asyncio.Queue[tuple[str, str]]:
    reasons: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    server.on("disconnect", lambda socket, reason: reasons.put_nowait((socket.sid, reason)))
    return reasons


async def test_disconnect_sockets(start_sio: StartSio) -> None:
    server = room_server()
    reasons = reasons_of(server)
    sio = await start_sio(server)
    a, b, c = await members(sio.port, 3)
    await a.join("r")
    await b.join("r")
    await server.in_("r").disconnect_sockets()
    # Each member is told with a DISCONNECT; its session stays open.
    assert await a.ws.recv() == "41"
    assert await b.ws.recv() == "41"
    await expect(server, "", [], [c])
    got = {await asyncio.wait_for(reasons.get(), timeout(1)) for _ in range(2)}
    assert got == {(a.sid, "server namespace disconnect"), (b.sid, "server namespace disconnect")}
    assert set(server.sockets) == {c.sid}
    await a.ws.send("40")
    assert (await a.ws.recv_text()).startswith('40{"sid":')


async def test_disconnect_sockets_and_close(start_sio: StartSio) -> None:
    server = room_server()
    reasons = reasons_of(server)
    sio = await start_sio(server)
    a, b = await members(sio.port, 2)
    await server.in_(a.sid).disconnect_sockets(close=True)
    # Told first (so that it does not reconnect), then closed.
    assert await a.ws.closed() == ["41", "1"]
    assert await asyncio.wait_for(reasons.get(), timeout(1)) == (
        a.sid,
        "server namespace disconnect",
    )
    await b.ws.send('42["shout","x"]')
    await b.ws.nothing(0.05)
    assert set(server.sockets) == {b.sid}


@pytest.mark.parametrize(
    ("close", "seen", "reason"),
    [
        (False, ["41"], "server namespace disconnect"),
        (True, ["41", "1"], "server namespace disconnect"),
    ],
)
async def test_socket_disconnect_from_a_handler(
    start_sio: StartSio, close: bool, seen: list[str], reason: str
) -> None:
    server = room_server()
    reasons = reasons_of(server)
    sio = await start_sio(server)
    (a,) = await members(sio.port, 1)
    await a.ws.send(f'42["quit",{json.dumps(close)}]')
    if close:
        assert await a.ws.closed() == seen
    else:
        assert [await a.ws.recv()] == seen
    assert await asyncio.wait_for(reasons.get(), timeout(1)) == (a.sid, reason)


# -- broadcasts with acks ------------------------------------------------------------------


async def answer(member: Member, reply: Any, event: str = "q") -> None:
    packet = await member.ws.recv_text()
    ack_id, _, rest = packet[2:].partition("[")
    assert json.loads("[" + rest)[0] == event
    await member.ws.send(f"43{ack_id}{json.dumps([reply])}")


async def test_broadcast_with_acks_collects_replies_within_the_timeout(
    start_sio: StartSio,
) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, silent = await members(sio.port, 3)
    asking = asyncio.create_task(server.timeout(timeout(0.3)).emit_with_ack("q", 1))
    await answer(a, "from-a")
    await answer(b, {"from": "b"})
    assert (await silent.ws.recv_text()).endswith('["q",1]')
    replies = await asyncio.wait_for(asking, timeout(2))
    assert sorted(map(json.dumps, replies)) == sorted(map(json.dumps, ["from-a", {"from": "b"}]))


async def test_broadcast_with_acks_returns_once_everyone_answered(start_sio: StartSio) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, b, c = await members(sio.port, 3)
    await a.join("r")
    await b.join("r")
    # A long timeout that must not be waited out.
    asking = asyncio.create_task(server.to("r").timeout(timeout(30)).emit_with_ack("q"))
    await answer(a, 1)
    await answer(b, 2)
    assert sorted(await asyncio.wait_for(asking, timeout(1))) == [1, 2]
    await c.ws.nothing(0.05)
    assert await server.to("nobody").emit_with_ack("q") == []


# -- one broadcast, many sockets -------------------------------------------------------


async def test_broadcast_to_many_sockets(
    start_sio: StartSio, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = realtime.Server()
    sio = await start_sio(server)
    ws_members = await members(sio.port, 30)
    polling_sids = []
    for _ in range(2):
        sid, _ = await open_polling(sio.port)
        await post(sio.port, sid, "40")
        await poll(sio.port, sid)
        polling_sids.append(sid)

    def counting(function: Callable[..., Any], calls: list[int]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return function(*args, **kwargs)

        return wrapper

    encodes: list[int] = []
    frames: list[int] = []
    # Every way the parser encodes: its fast path for events and the general one.
    parser = server.parser
    assert isinstance(parser, JsonParser)
    monkeypatch.setattr(socketio, "encode", counting(socketio.encode, encodes))
    monkeypatch.setattr(parser, "encode_event", counting(parser.encode_event, encodes))
    # Each Engine.IO message encoded once too: no packet encoded per recipient.
    messages: list[int] = []
    packets: list[int] = []
    monkeypatch.setattr(engineio, "encode_message", counting(engineio.encode_message, messages))
    monkeypatch.setattr(engineio, "encode_packet", counting(engineio.encode_packet, packets))
    # Patched where the sessions look it up.
    monkeypatch.setattr(
        engine_session, "encode_broadcast_frame", counting(encode_broadcast_frame, frames)
    )
    for i in range(3):
        await server.emit("tick", i)
    # Serialised once and framed once per broadcast, whatever the audience.
    assert (len(encodes), len(frames)) == (3, 3)
    assert (len(messages), len(packets)) == (3, 0)
    for member in ws_members:
        assert await member.ws.recv_many(3) == [f'42["tick",{i}]' for i in range(3)]
    for member in ws_members:
        await member.ws.nothing(0.01)
    for sid in polling_sids:
        assert await poll(sio.port, sid) == [f'42["tick",{i}]' for i in range(3)]


async def test_emit_and_ack_take_the_fast_paths(
    start_sio: StartSio, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = realtime.Server()

    @server.on("ask")
    async def ask(socket: Socket, text: str) -> Any:
        await socket.emit("told", text)
        return await socket.emit_with_ack("q", text)

    sio = await start_sio(server)
    [member] = await members(sio.port, 1)
    parser = server.parser
    assert isinstance(parser, JsonParser)
    keys = ["fast", "event", "ack", "general", "message", "packet"]
    calls: dict[str, int] = dict.fromkeys(keys, 0)

    def counting(key: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[key] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(sockets, "event_text", counting("fast", sockets.event_text))
    monkeypatch.setattr(parser, "encode_event", counting("event", parser.encode_event))
    monkeypatch.setattr(parser, "encode_ack", counting("ack", parser.encode_ack))
    monkeypatch.setattr(parser, "encode", counting("general", parser.encode))
    monkeypatch.setattr(engineio, "encode_message", counting("message", engineio.encode_message))
    monkeypatch.setattr(engineio, "encode_packet", counting("packet", engineio.encode_packet))
    await member.ws.send('425["ask","hi"]')
    assert await member.ws.recv() == '42["told","hi"]'
    question = await member.ws.recv_text()
    assert question.startswith("42") and question.endswith('["q","hi"]')
    ack_id = question[2 : question.index("[")]
    await member.ws.send(f'43{ack_id}["yes"]')
    assert await member.ws.recv() == '435["yes"]'
    # Each packet encoded once, by the fast paths (a socket's emit calls the
    # JSON parser's own): no general encode, no Engine.IO packet built to be
    # encoded (a text message is prefixed with its "4" in Session.send
    # itself, without encode_message).
    assert calls == {"fast": 2, "event": 0, "ack": 1, "general": 0, "message": 0, "packet": 0}


async def test_broadcast_with_acks_skips_a_socket_that_leaves(
    start_sio: StartSio, caplog: pytest.LogCaptureFixture
) -> None:
    server = room_server()
    sio = await start_sio(server)
    a, leaving = await members(sio.port, 2)
    asking = asyncio.create_task(server.timeout(timeout(30)).emit_with_ack("q"))
    await answer(a, "a")
    assert (await leaving.ws.recv_text()).endswith('["q"]')
    await leaving.ws.close()
    # No need to wait out the timeout for a reply that cannot come.
    assert await asyncio.wait_for(asking, timeout(1)) == ["a"]
    assert "Exception" not in caplog.text


def test_remove_namespace_forgets_an_empty_registry_only() -> None:
    adapter = realtime.Server().adapter
    adapter.add_all("/child", "a", ["room"])
    adapter.remove_namespace("/child")
    assert adapter.local_sids("/child", BroadcastOptions()) == ["a"]  # still has a socket
    adapter.delete_all("/child", "a")
    adapter.remove_namespace("/child")
    assert "/child" not in adapter._rooms
    # Reading a namespace without a registry creates none.
    assert adapter.local_sids("/other", BroadcastOptions(frozenset({"room"}))) == []
    adapter.delete("/other", "a", "room")
    assert adapter.rooms_of("/other", "a") == set()
    assert "/other" not in adapter._rooms
