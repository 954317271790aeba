"""The tether realtime server that foreign Socket.IO clients are tested against.

Imported by the interop tests as ``from interop.realtime_app import ...``.
One scripted server covers every feature: the Node client
(``node/sio_client.mjs``) and python-socketio drive it through these events.

Namespaces:

``/``
    middleware refuses any auth but ``{"token": "secret", ...}`` with
    ``ConnectionRefused("access denied", {"reason": "bad token"})``; the
    ``connect`` handler emits ``welcome`` with ``{sid, nsp, user}``.
``/chat``
    no middleware; same events as ``/``.
``/dyn-<digits>``
    a dynamic namespace (a pattern); same events.
``/private``
    a middleware that always refuses, with data ``{"code": 42}``.

Events (on every namespace):

``echo(*args)``             acks with the same arguments
``whoami()``                acks with ``{sid, nsp, user, recovered}``
``tell(event, *args)``      the server emits ``event`` with ``args`` to this socket
``ask(*args)``              the server ``emit_with_ack("question", *args)``s this
                            socket and acks with the client's answer
``binary(data)``            acks with ``{"reversed": data[::-1], "parts": [data[:2], data[2:]]}``
``join(room)``/``leave(room)``       acks with the socket's rooms (sorted, sid left out)
``to_room(room, text)``     ``socket.to(room).emit("room", text)`` (the sender left out)
``broadcast(text)``         ``socket.broadcast.emit("room", text)``
``server_to(rooms, text)``  ``server.emit("room", text, to=rooms)``
``except(room, text)``      ``server.except_(room).emit("room", text)``
``count(room)``             acks with how many sockets ``fetch_sockets`` finds in ``room``
``poll(room, question)``    ``server.to(room).timeout(2).emit_with_ack("question", question)``;
                            acks with the sorted replies
``rooms_join(room, new)``   ``server.in_(room).sockets_join(new)``
``kick(room)``              ``server.in_(room).disconnect_sockets()``
``drop()``                  ``socket.conn.close()``: the whole connection
``drop_then_emit(room, *values)``    drops the connection, then at once (no await in
                            between that yields) emits ``missed`` once per value to ``room``

Every connect and disconnect is also reported on :attr:`Recorder.events` so
that a test can wait for the server side.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket as socket_module
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from helpers import timeout
from tether import realtime
from tether.realtime import ConnectionRefused, Socket


@dataclass
class Recorder:
    """What the server saw: ``("connect", nsp, sid)`` and ``("disconnect", nsp, sid, reason)``."""

    events: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    sockets: dict[str, Socket] = field(default_factory=dict)

    async def next(self, kind: str) -> tuple[Any, ...]:
        """The next recorded event of ``kind`` (bounded wait), skipping others."""
        while True:
            event = await asyncio.wait_for(self.events.get(), timeout(5))
            if event[0] == kind:
                return event


def require_token(socket: Socket, auth: dict[str, Any]) -> None:
    if (auth or {}).get("token") != "secret":
        raise ConnectionRefused("access denied", {"reason": "bad token"})


def refuse_all(socket: Socket, auth: dict[str, Any]) -> None:
    raise ConnectionRefused("private", {"code": 42})


def make_server(**options: Any) -> tuple[realtime.Server, Recorder]:
    """A scripted server (module docstring) and the recorder of its connections."""
    server = realtime.Server(**options)
    recorder = Recorder()
    server.use(require_token)
    install(server, server, recorder)
    install(server, server.of("/chat"), recorder)
    install(server, server.of(re.compile(r"/dyn-\d+")), recorder)
    server.of("/private").use(refuse_all)
    return server, recorder


def install(server: realtime.Server, nsp: realtime.Namespace, recorder: Recorder) -> None:
    """Register the events of the module docstring on one namespace."""

    @nsp.on("connect")
    async def connect(socket: Socket, auth: dict[str, Any]) -> None:
        socket.data.setdefault("user", (auth or {}).get("user"))
        recorder.sockets[socket.sid] = socket
        recorder.events.put_nowait(("connect", socket.nsp, socket.sid, socket.recovered))
        await socket.emit(
            "welcome", {"sid": socket.sid, "nsp": socket.nsp, "user": socket.data["user"]}
        )

    @nsp.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        recorder.events.put_nowait(("disconnect", socket.nsp, socket.sid, reason))

    @nsp.on("echo")
    def echo(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    @nsp.on("whoami")
    def whoami(socket: Socket) -> dict[str, Any]:
        return {
            "sid": socket.sid,
            "nsp": socket.nsp,
            "user": socket.data.get("user"),
            "recovered": socket.recovered,
        }

    @nsp.on("tell")
    async def tell(socket: Socket, event: str, *args: Any) -> None:
        await socket.emit(event, *args)

    @nsp.on("ask")
    async def ask(socket: Socket, *args: Any) -> Any:
        return await socket.emit_with_ack("question", *args, timeout=timeout(3))

    @nsp.on("binary")
    def binary(socket: Socket, data: bytes) -> dict[str, Any]:
        return {"reversed": data[::-1], "parts": [data[:2], data[2:]], "type": type(data).__name__}

    @nsp.on("join")
    async def join(socket: Socket, room: str) -> list[str]:
        await socket.join(room)
        return sorted(socket.rooms - {socket.sid})

    @nsp.on("leave")
    async def leave(socket: Socket, room: str) -> list[str]:
        await socket.leave(room)
        return sorted(socket.rooms - {socket.sid})

    @nsp.on("to_room")
    async def to_room(socket: Socket, room: str, text: str) -> None:
        await socket.to(room).emit("room", text)

    @nsp.on("broadcast")
    async def broadcast(socket: Socket, text: str) -> None:
        await socket.broadcast.emit("room", text)

    @nsp.on("server_to")
    async def server_to(socket: Socket, rooms: list[str], text: str) -> None:
        await socket.namespace.emit("room", text, to=rooms)

    @nsp.on("except")
    async def except_(socket: Socket, room: str, text: str) -> None:
        await socket.namespace.except_(room).emit("room", text)

    @nsp.on("count")
    async def count(socket: Socket, room: str) -> int:
        return len(await socket.namespace.in_(room).fetch_sockets())

    @nsp.on("poll")
    async def poll(socket: Socket, room: str, question: str) -> list[Any]:
        replies = (
            await socket.namespace.to(room).timeout(timeout(2)).emit_with_ack("question", question)
        )
        return sorted(replies)

    @nsp.on("rooms_join")
    async def rooms_join(socket: Socket, room: str, new: str) -> None:
        await socket.namespace.in_(room).sockets_join(new)

    @nsp.on("kick")
    async def kick(socket: Socket, room: str) -> None:
        await socket.namespace.in_(room).disconnect_sockets()

    @nsp.on("drop")
    async def drop(socket: Socket) -> None:
        socket.conn.close()

    @nsp.on("drop_then_emit")
    async def drop_then_emit(socket: Socket, room: str, *values: Any) -> None:
        socket.conn.close()
        for value in values:
            await socket.namespace.to(room).emit("missed", value)


@contextlib.asynccontextmanager
async def running(**options: Any) -> AsyncIterator[tuple[str, realtime.Server, Recorder]]:
    """Serve :func:`make_server` on a free loopback port: yield its URL, the server
    and the recorder."""
    server, recorder = make_server(**options)
    async with realtime.serve(server, "127.0.0.1", 0) as http:
        yield f"http://127.0.0.1:{http.port}", server, recorder


@contextlib.asynccontextmanager
async def running_asgi(**options: Any) -> AsyncIterator[tuple[str, realtime.Server, Recorder]]:
    """Like :func:`running`, as an ASGI app under uvicorn (its socket listens
    before uvicorn starts, so clients queue until it is ready)."""
    import uvicorn

    server, recorder = make_server(**options)
    listener = socket_module.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = uvicorn.Config(server.asgi_app(), lifespan="on", log_level="warning")
    asgi_server = uvicorn.Server(config)
    task = asyncio.ensure_future(asgi_server.serve(sockets=[listener]))
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", server, recorder
    finally:
        asgi_server.should_exit = True
        await asyncio.wait_for(task, timeout(5))
        listener.close()
