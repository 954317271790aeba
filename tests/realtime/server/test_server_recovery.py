"""Connection state recovery, and the ``disconnecting`` / ``disconnect``
handlers with the reason a socket went away.

With recovery on, the server's CONNECT reply carries a private id (``pid``)
and every event it emits carries an offset as its last argument; a client
that comes back within ``max_disconnection_duration`` sends both in its
CONNECT auth and gets its sid, its rooms and the events it missed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from helpers import timeout
from realtime.conftest import StartSio
from realtime.sio_helpers import EioSocket, eventually, open_websocket, sio_connect
from tether import realtime
from tether.realtime import Socket
from tether.realtime.adapters.base import Adapter, BroadcastOptions


class Recovering:
    """A server with recovery on, that records connects and disconnects."""

    def __init__(self, **recovery: Any) -> None:
        recovery.setdefault("max_disconnection_duration", 60)
        self.server = server = realtime.Server(connection_state_recovery=recovery)
        self.connects: asyncio.Queue[Socket] = asyncio.Queue()
        self.disconnects: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.middleware_calls = 0

        @server.use
        def count(socket: Socket, auth: dict[str, Any]) -> None:
            self.middleware_calls += 1

        @server.on("connect")
        def connect(socket: Socket) -> None:
            self.connects.put_nowait(socket)

        @server.on("disconnect")
        def disconnect(socket: Socket, reason: str) -> None:
            self.disconnects.put_nowait((socket.sid, reason))

        @server.on("join")
        async def join(socket: Socket, room: str) -> None:
            await socket.join(room)

        @server.on("remember")
        def remember(socket: Socket, value: Any) -> None:
            socket.data["value"] = value

    async def connect(
        self, port: int, auth: dict[str, Any] | None = None
    ) -> tuple[EioSocket, dict[str, Any]]:
        """Connect to ``/``: the socket and the CONNECT reply's JSON."""
        ws = await open_websocket(port)
        await ws.recv()
        await ws.send("40" + (json.dumps(auth) if auth is not None else ""))
        reply = await ws.recv_text()
        assert reply.startswith("40{"), reply
        await asyncio.wait_for(self.connects.get(), timeout(1))
        return ws, json.loads(reply[2:])

    async def lost(self, ws: EioSocket, sid: str, pid: str) -> None:
        """Drop the connection and wait until the server has saved the session."""
        await ws.close()
        assert await asyncio.wait_for(self.disconnects.get(), timeout(1)) == (
            sid,
            "transport close",
        )
        await eventually(lambda: pid in self.server.adapter._sessions)


def event_with_offset(packet: str | bytes) -> tuple[list[Any], str]:
    assert isinstance(packet, str) and packet.startswith("42["), packet
    *data, offset = json.loads(packet[2:])
    assert isinstance(offset, str)
    return data, offset


async def test_recovery_restores_sid_rooms_data_and_missed_events(start_sio: StartSio) -> None:
    rec = Recovering()
    server = rec.server
    sio = await start_sio(server)
    ws, hello = await rec.connect(sio.port)
    assert set(hello) == {"sid", "pid"}
    sid, pid = hello["sid"], hello["pid"]
    await ws.send('421["join","r"]', '422["remember",42]')
    assert await ws.recv_many(2) == ["431[]", "432[]"]
    await server.to("r").emit("e", 1)
    data, offset = event_with_offset(await ws.recv())
    assert data == ["e", 1]
    await rec.lost(ws, sid, pid)

    # Missed while away: two for its room, one for everyone, one not for it.
    await server.to("r").emit("e", 2)
    await server.emit("e", 3)
    await server.to("elsewhere").emit("e", 4)
    await server.to("r").emit("e", 5, {"x": [1]})

    ws, hello = await rec.connect(sio.port, {"pid": pid, "offset": offset})
    assert hello == {"sid": sid, "pid": pid}
    missed = [event_with_offset(packet)[0] for packet in await ws.recv_many(3)]
    assert missed == [["e", 2], ["e", 3], ["e", 5, {"x": [1]}]]
    await ws.nothing(0.05)
    socket = server.sockets[sid]
    assert socket.recovered
    assert socket.rooms == {sid, "r"}
    assert socket.data == {"value": 42}
    # Middleware does not run again for a recovered socket (skip_middlewares).
    assert rec.middleware_calls == 1
    await server.to("r").emit("e", 6)
    assert event_with_offset(await ws.recv())[0] == ["e", 6]
    await ws.close()


async def test_recovery_without_an_offset_replays_from_the_disconnection(
    start_sio: StartSio,
) -> None:
    rec = Recovering()
    server = rec.server
    sio = await start_sio(server)
    await server.emit("before anyone")
    ws, hello = await rec.connect(sio.port)
    await rec.lost(ws, hello["sid"], hello["pid"])
    await server.emit("while away")
    ws, again = await rec.connect(sio.port, {"pid": hello["pid"]})
    assert again["sid"] == hello["sid"]
    assert event_with_offset(await ws.recv())[0] == ["while away"]
    await ws.nothing(0.05)
    await ws.close()


async def test_socket_emits_are_replayed_too(start_sio: StartSio) -> None:
    rec = Recovering()
    server = rec.server
    sio = await start_sio(server)
    ws, hello = await rec.connect(sio.port)
    socket = server.sockets[hello["sid"]]
    await socket.emit("private", 1)
    _, offset = event_with_offset(await ws.recv())
    await rec.lost(ws, hello["sid"], hello["pid"])
    await server.to(hello["sid"]).emit("private", 2)
    ws, _ = await rec.connect(sio.port, {"pid": hello["pid"], "offset": offset})
    assert event_with_offset(await ws.recv())[0] == ["private", 2]
    await ws.close()


@pytest.mark.parametrize("case", ["expired", "unknown pid", "unknown offset", "not recoverable"])
async def test_no_recovery_gives_a_new_sid(start_sio: StartSio, case: str) -> None:
    rec = Recovering()
    server = rec.server
    sio = await start_sio(server)
    ws, hello = await rec.connect(sio.port)
    sid, pid = hello["sid"], hello["pid"]
    await ws.send('421["join","r"]')
    await ws.recv()
    await server.emit("e")
    _, offset = event_with_offset(await ws.recv())
    if case == "not recoverable":
        # Leaving on purpose is not a lost connection: nothing is kept.
        await ws.send("41")
        assert await asyncio.wait_for(rec.disconnects.get(), timeout(1)) == (
            sid,
            "client namespace disconnect",
        )
        await ws.close()
    else:
        await rec.lost(ws, sid, pid)
    if case == "expired":
        # Saved longer ago than max_disconnection_duration.
        server.adapter._sessions[pid].session.saved_at -= 61
    auth = {"pid": pid if case != "unknown pid" else "nobody", "offset": offset}
    if case == "unknown offset":
        auth["offset"] = "0-0"
    await server.to("r").emit("missed")
    ws, again = await rec.connect(sio.port, auth)
    assert again["sid"] != sid
    assert again["pid"] != pid
    socket = server.sockets[again["sid"]]
    assert not socket.recovered
    assert socket.rooms == {again["sid"]}
    await ws.nothing(0.05)
    # Neither pid nor offset leak into the auth the handlers see.
    assert socket.handshake.auth == {}
    await ws.close()


async def test_without_recovery_no_pid_and_no_offsets(start_sio: StartSio) -> None:
    server = realtime.Server()
    sio = await start_sio(server)
    ws, sid = await sio_connect(sio.port)
    await server.emit("plain", 1)
    assert await ws.recv() == '42["plain",1]'
    await ws.close()
    await eventually(lambda: not server.sockets)
    ws, again = await sio_connect(sio.port, auth={"pid": sid, "offset": "y"})
    assert again != sid
    assert not server.sockets[again].recovered
    await ws.close()


async def test_events_with_acks_and_volatile_ones_carry_no_offset(start_sio: StartSio) -> None:
    rec = Recovering()
    server = rec.server
    sio = await start_sio(server)
    ws, _ = await rec.connect(sio.port)
    await server.volatile.emit("v")
    assert await ws.recv() == '42["v"]'
    asking = asyncio.create_task(server.timeout(timeout(1)).emit_with_ack("q"))
    question = await ws.recv_text()
    assert question.endswith('["q"]')
    await ws.send("43" + question[2:-5] + "[1]")
    assert await asking == [1]
    await ws.close()


# -- disconnect reasons -------------------------------------------------------------------


def watched_server(**options: Any) -> tuple[realtime.Server, asyncio.Queue[tuple[str, str, Any]]]:
    """A server whose ``disconnecting`` and ``disconnect`` handlers report
    (handler, reason, rooms at that moment)."""
    server = realtime.Server(**options)
    seen: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()

    @server.on("join")
    async def join(socket: Socket, room: str) -> None:
        await socket.join(room)

    @server.on("disconnecting")
    def disconnecting(socket: Socket, reason: str) -> None:
        seen.put_nowait(("disconnecting", reason, socket.rooms - {socket.sid}))

    @server.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        seen.put_nowait(("disconnect", reason, socket.connected))

    @server.on("quit")
    async def quit(socket: Socket, close: bool) -> None:
        await socket.disconnect(close)

    return server, seen


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("41", "client namespace disconnect"),
        ("1", "forced close"),
        ("close", "transport close"),
        ("4abc", "parse error"),
        ('42["quit",false]', "server namespace disconnect"),
        ('42["quit",true]', "server namespace disconnect"),
    ],
)
async def test_disconnect_reasons(start_sio: StartSio, how: str, reason: str) -> None:
    server, seen = watched_server()
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send('421["join","r"]')
    await ws.recv()
    if how == "close":
        await ws.close()
    else:
        await ws.send(how)
    first = await asyncio.wait_for(seen.get(), timeout(1))
    second = await asyncio.wait_for(seen.get(), timeout(1))
    # "disconnecting" still sees the rooms; "disconnect" comes after, disconnected.
    assert first == ("disconnecting", reason, {"r"})
    assert second == ("disconnect", reason, False)
    assert not server.sockets


async def test_ping_timeout_reason(start_sio: StartSio) -> None:
    server, seen = watched_server(ping_interval=timeout(0.1), ping_timeout=timeout(0.1))
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    assert await ws.recv() == "2"  # never answered
    assert (await asyncio.wait_for(seen.get(), timeout(1)))[:2] == ("disconnecting", "ping timeout")
    assert await ws.closed() == ["1"]


async def test_disconnect_handler_without_reason_parameter(start_sio: StartSio) -> None:
    server = realtime.Server()
    gone: asyncio.Queue[str] = asyncio.Queue()

    @server.on("disconnect")
    def disconnect(socket: Socket) -> None:
        gone.put_nowait(socket.sid)

    sio = await start_sio(server)
    ws, sid = await sio_connect(sio.port)
    await ws.close()
    assert await asyncio.wait_for(gone.get(), timeout(1)) == sid


async def test_closing_the_session_disconnects_every_namespace(start_sio: StartSio) -> None:
    server, seen = watched_server()
    other = server.of("/other")
    other_gone: asyncio.Queue[str] = asyncio.Queue()
    other.on("disconnect", lambda socket, reason: other_gone.put_nowait(reason))
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    await ws.send("40/other,")
    assert (await ws.recv_text()).startswith("40/other,")
    await ws.close()
    assert await asyncio.wait_for(other_gone.get(), timeout(1)) == "transport close"
    assert (await asyncio.wait_for(seen.get(), timeout(1)))[1] == "transport close"


class GatedAdapter(Adapter):
    """The in-memory adapter, made to wait (as a distributed one waits for its
    broker) on the events named in ``gates`` until their gate opens; an event
    named ``boom`` fails there."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, asyncio.Event] = {}

    async def broadcast(self, namespace: str, packet: Any, opts: BroadcastOptions) -> None:
        name = packet.data[0]
        if name == "boom":
            raise RuntimeError("the broker is gone")
        gate = self.gates.get(name)
        if gate is not None:
            await gate.wait()
        await super().broadcast(namespace, packet, opts)


async def test_emit_nowait_with_recovery_keeps_order_and_offsets(
    start_sio: StartSio, caplog: pytest.LogCaptureFixture
) -> None:
    """With recovery on an emit goes through the adapter, which may wait:
    emit_nowait's events still arrive in the order they were sent, behind
    one the adapter holds back, and each gets its offset; one the adapter
    fails is logged and the next ones go on."""
    adapter = GatedAdapter()
    server = realtime.Server(
        adapter=adapter, connection_state_recovery={"max_disconnection_duration": 60}
    )
    connected: asyncio.Queue[Socket] = asyncio.Queue()
    server.on("connect")(connected.put_nowait)
    server.on("echo")(lambda socket: None)
    sio = await start_sio(server)
    ws = await open_websocket(sio.port)
    await ws.recv()
    await ws.send("40")
    assert (await ws.recv_text()).startswith("40{")
    socket = await asyncio.wait_for(connected.get(), timeout(1))
    gate = adapter.gates["held"] = asyncio.Event()
    socket.emit_nowait("held", 1)
    socket.emit_nowait("boom", 2)
    socket.emit_nowait("after", 3)
    awaited = asyncio.ensure_future(socket.emit("awaited", 4))
    # Nothing overtakes the held event (the server acks an event meanwhile).
    await ws.send('420["echo"]')
    assert await ws.recv_text() == "430[]"
    assert not awaited.done()
    gate.set()
    await asyncio.wait_for(awaited, timeout(1))
    got = [event_with_offset(packet) for packet in await ws.recv_many(3)]
    assert [data for data, _ in got] == [["held", 1], ["after", 3], ["awaited", 4]]
    assert len({offset for _, offset in got}) == 3
    assert "emit to" in caplog.text and "the broker is gone" in caplog.text
    with pytest.raises(RuntimeError, match="broker"):
        await socket.emit("boom")
    await ws.close()


async def test_broadcast_emit_nowait_through_an_adapter_that_waits_keeps_order(
    start_sio: StartSio, caplog: pytest.LogCaptureFixture
) -> None:
    """BroadcastOperator.emit_nowait through an adapter whose broadcast waits
    (a broker): finished in server tasks, one after another, so nothing
    overtakes a broadcast the adapter holds back, an awaited emit included;
    one the adapter fails is logged and the next ones go on."""
    adapter = GatedAdapter()
    server = realtime.Server(adapter=adapter)
    server.on("echo")(lambda socket: None)
    sio = await start_sio(server)
    ws, _ = await sio_connect(sio.port)
    gate = adapter.gates["held"] = asyncio.Event()
    server.emit_nowait("held", 1)
    server.emit_nowait("boom", 2)
    server.to("nobody").emit_nowait("skipped", 0)  # no member: not delivered
    server.emit_nowait("after", 3)
    awaited = asyncio.ensure_future(server.emit("awaited", 4))
    # Nothing overtakes the held broadcast (the server acks an event meanwhile).
    await ws.send('420["echo"]')
    assert await ws.recv_text() == "430[]"
    assert not awaited.done() and server.broadcasting is not None
    gate.set()
    await asyncio.wait_for(awaited, timeout(1))
    got = [json.loads(packet[2:]) for packet in await ws.recv_many(3)]  # type: ignore[arg-type]
    assert got == [["held", 1], ["after", 3], ["awaited", 4]]
    assert "broadcast in" in caplog.text and "the broker is gone" in caplog.text
    await eventually(lambda: server.broadcasting is None)
    await ws.close()
