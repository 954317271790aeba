"""The by-sid methods of :class:`tether.realtime.Server` (python-socketio's
``emit(to=sid)`` with or without ``callback=``, ``enter_room``, ``call``,
sessions, ``get_environ``, ``transport``, ``@server.event``, class-based
namespaces) with tether's client and the official socket.io-client on one
server, and across two servers sharing a real Redis or a cluster hub."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helpers import timeout
from realtime.node_clients import NodeClients
from realtime.redis_helpers import Peer, redis_server
from realtime.sio_helpers import eventually, running
from tether import realtime
from tether.exceptions import AckTimeout
from tether.realtime import Socket
from tether.realtime.client import Client

_prefixes = itertools.count()


async def peer(port: int, name: str) -> Peer:
    return await Peer.connect(f"http://127.0.0.1:{port}", name)


@pytest.fixture
async def one() -> AsyncIterator[tuple[realtime.Server, int]]:
    server = realtime.Server()
    async with running(server) as sio:
        yield server, sio.port


async def test_emit_by_sid_room_and_skip_sid(one: tuple[realtime.Server, int]) -> None:
    server, port = one
    alice, bob = await peer(port, "alice"), await peer(port, "bob")
    try:
        await server.emit("hi", 1, to=alice.sid)
        await alice.wait_for("hi")
        await server.enter_room(alice.sid, "r")
        await server.enter_room(bob.sid, "r")
        assert server.rooms(alice.sid) == sorted([alice.sid, "r"])
        await server.emit("news", 2, room="r", skip_sid=alice.sid)
        await bob.wait_for("news")
        await server.leave_room(bob.sid, "r")
        assert server.rooms(bob.sid) == [bob.sid]
        await server.emit("news", 3, room="r")
        await alice.wait_for("news")
        # Everyone, in order: bob got nothing from room r after leaving it.
        await server.emit("end")
        await bob.wait_for("end")
        await alice.wait_for("end")
        assert bob.events["news"] == [(2,)]
        assert alice.events["news"] == [(3,)]
        assert alice.events["hi"] == [(1,)] and not bob.events["hi"]
    finally:
        await alice.close()
        await bob.close()


async def test_call_and_disconnect_by_sid(one: tuple[realtime.Server, int]) -> None:
    server, port = one
    alice = await peer(port, "alice")
    sid = alice.sid
    try:
        assert await server.call("question", to=sid, timeout=timeout(3)) == "alice"
        with pytest.raises(AckTimeout):
            # (Peer's catch-all handler acks every event: a sid nobody has.)
            await server.call("question", to="nobody", timeout=timeout(0.2))
        await server.disconnect(sid)
        await alice.wait_for("disconnect")
        assert alice.events["disconnect"] == [("io server disconnect",)]
        assert server.rooms(sid) == []
    finally:
        await alice.close()


async def test_sessions(one: tuple[realtime.Server, int]) -> None:
    server, port = one

    @server.event
    async def login(socket: Socket, user: str) -> None:
        await server.save_session(socket.sid, {"user": user})

    @server.event
    async def whoami(socket: Socket) -> Any:
        async with server.session(socket.sid) as session:
            session["asked"] = session.get("asked", 0) + 1
        return await server.get_session(socket.sid)

    @server.event(namespace="/other")
    def ping(socket: Socket) -> str:
        return "pong"

    assert server.of("/other").handlers.get("ping") is ping
    alice = await peer(port, "alice")
    try:
        await alice.call("login", "ada")
        assert await alice.call("whoami") == {"user": "ada", "asked": 1}
        assert await alice.call("whoami") == {"user": "ada", "asked": 2}
        assert server.sockets[alice.sid].data == {"user": "ada", "asked": 2}
        with pytest.raises(KeyError):
            await server.get_session("nobody")
        with pytest.raises(KeyError):
            await server.save_session("nobody", {})
    finally:
        await alice.close()


class Chat(realtime.ClassNamespace):
    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self.connected: list[str] = []

    def on_connect(self, socket: Socket) -> None:
        self.connected.append(socket.sid)

    async def on_say(self, socket: Socket, text: str) -> str:
        await self.emit("said", text, skip_sid=socket.sid)
        return "ok"

    async def on_ask(self, socket: Socket, sid: str) -> Any:
        return await self.call("question", to=sid, timeout=timeout(3))

    async def on_tour(self, socket: Socket) -> Any:
        # Every by-sid method, in its own namespace.
        await self.enter_room(socket.sid, "a")
        await self.enter_room(socket.sid, "b")
        await self.leave_room(socket.sid, "a")
        before = self.rooms(socket.sid)
        await self.close_room("b")
        await self.save_session(socket.sid, {"n": 1})
        async with self.session(socket.sid) as session:
            session["n"] += 1
        await self.send("to you", to=socket.sid)
        return before, self.rooms(socket.sid), await self.get_session(socket.sid)

    async def on_poll(self, socket: Socket) -> Any:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self.emit("question", to=socket.sid, callback=answer.set_result)
        return await asyncio.wait_for(answer, timeout(3))

    async def on_leave(self, socket: Socket) -> None:
        await self.disconnect(socket.sid)


async def test_class_namespace(one: tuple[realtime.Server, int]) -> None:
    server, port = one
    # On "/": the test's Peer answers in the main namespace only.
    chat = server.register_namespace(Chat("/"))
    assert isinstance(chat, Chat)
    other = server.register_namespace(Chat("/other"))
    assert server.of("/other").handlers.get("say") == other.on_say
    assert server.handlers.get("say") == chat.on_say
    alice, bob = await peer(port, "alice"), await peer(port, "bob")
    try:
        assert await alice.call("say", "hello") == "ok"
        await bob.wait_for("said")
        assert bob.events["said"] == [("hello",)] and not alice.events["said"]
        assert await alice.call("ask", bob.sid) == "bob"
        assert await alice.call("poll") == "alice"
        assert sorted(chat.connected) == sorted([alice.sid, bob.sid])
        sid = alice.sid
        before, after, session = await alice.call("tour")
        assert sorted(before) == sorted([sid, "b"]) and after == [sid]
        assert session == {"n": 2}
        await alice.wait_for("message")
        assert alice.events["message"] == [("to you",)]
        await alice.client.emit("leave")
        await alice.wait_for("disconnect")
    finally:
        await alice.close()
        await bob.close()


async def by_sid_across(servers: list[realtime.Server]) -> None:
    """A client on the first node; the second acts on it by its sid."""
    async with running(servers[0]) as node1, running(servers[1]):
        here, there = servers
        alice = await peer(node1.port, "alice")
        try:
            sid = alice.sid
            assert there.rooms(sid) == []  # local only: node 2 does not have it
            await there.emit("hi", 1, to=sid)
            await alice.wait_for("hi")
            await there.enter_room(sid, "r")  # effective when it returns
            assert here.rooms(sid) == sorted([sid, "r"])
            await there.emit("news", room="r")
            await alice.wait_for("news")
            await there.leave_room(sid, "r")
            assert here.rooms(sid) == [sid]
            await there.enter_room(sid, "s")
            await there.close_room("s")
            assert here.rooms(sid) == [sid]
            await there.send("text", to=sid)
            await alice.wait_for("message")
            assert alice.events["message"] == [("text",)]
            assert await there.call("question", to=sid, timeout=timeout(3)) == "alice"
            with pytest.raises(AckTimeout):
                await there.call("question", to="nobody", timeout=timeout(0.3))
            await here.save_session(sid, {"user": "ada"})
            assert await there.get_session(sid) == {"user": "ada"}  # a copy
            await there.save_session(sid, {"user": "grace"})  # written on node 1
            assert here.sockets[sid].data == {"user": "grace"}
            async with there.session(sid) as session:
                session["visits"] = 1
            assert here.sockets[sid].data == {"user": "grace", "visits": 1}
            with pytest.raises(KeyError):
                await there.save_session("nobody", {})
            with pytest.raises(TypeError):  # carried as JSON to the other node
                await there.save_session(sid, {"when": object()})
            assert here.sockets[sid].data == {"user": "grace", "visits": 1}
            with pytest.raises(KeyError):
                await there.get_session("nobody")
            # A callback for a socket of the other node: through the adapter.
            acks: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
            await there.emit("question", to=sid, callback=lambda *a: acks.put_nowait(a))
            assert await asyncio.wait_for(acks.get(), timeout(3)) == ("alice",)
            alice.client.on("pair", lambda: ("a", 2))

            async def record(*args: Any) -> None:
                acks.put_nowait(args)

            await there.emit("pair", to=sid, callback=record)
            # Several ack arguments cross the broker as one list (documented).
            assert await asyncio.wait_for(acks.get(), timeout(3)) == (["a", 2],)
            assert there.get_environ(sid) is None  # local only
            await there.disconnect(sid)
            await alice.wait_for("disconnect")
            assert alice.events["disconnect"] == [("io server disconnect",)]
        finally:
            await alice.close()


async def test_by_sid_across_two_nodes_through_redis() -> None:
    from tether.realtime.adapters.redis import RedisAdapter

    prefix = f"t-sid-{next(_prefixes)}"
    with redis_server() as redis:
        await by_sid_across(
            [
                realtime.Server(
                    adapter=RedisAdapter(redis.url, prefix=prefix, request_timeout=timeout(3))
                )
                for _ in range(2)
            ]
        )


async def test_by_sid_across_two_workers_through_the_cluster_hub() -> None:
    from tether.realtime.adapters.cluster import ClusterAdapter, ClusterHub

    # A short path: pytest's tmp_path may pass the 107 bytes of sun_path.
    with tempfile.TemporaryDirectory() as private:
        path = str(Path(private) / "cluster.sock")
        hub = ClusterHub(path)
        await hub.start()
        try:
            await by_sid_across([realtime.Server(adapter=ClusterAdapter(path)) for _ in range(2)])
        finally:
            await hub.close()


async def test_by_sid_with_the_official_client(one: tuple[realtime.Server, int]) -> None:
    server, port = one
    left = asyncio.Event()

    @server.event
    async def join(socket: Socket, room: str) -> bool:
        await server.enter_room(socket.sid, room)
        return room in server.rooms(socket.sid)

    @server.on("disconnect")
    def disconnect(socket: Socket, reason: str) -> None:
        left.set()

    config = {"urls": [f"http://127.0.0.1:{port}"], "room": "r", "user": "js"}
    async with NodeClients(config) as node:
        sid = (await node.line())["sid"]  # connected, and joined "r" by enter_room
        assert server.rooms(sid) == sorted([sid, "r"])
        await server.emit("hi", 1, to=sid)
        assert await node.line() == {"client": 0, "event": "hi", "args": [1]}
        await server.emit("news", 2, room="r", skip_sid="someone-else")
        assert await node.line() == {"client": 0, "event": "news", "args": [2]}
        assert server.transport(sid) == "websocket"
        environ = server.get_environ(sid)
        assert environ is not None and environ["REMOTE_ADDR"] == "127.0.0.1"
        assert "transport=websocket" in environ["QUERY_STRING"]
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await server.emit("question", to=sid, callback=acked.set_result)
        assert await asyncio.wait_for(acked, timeout(5)) == "node-0"
        assert await server.call("question", to=sid, timeout=timeout(3)) == "node-0"
        await server.disconnect(sid)
        await asyncio.wait_for(left.wait(), timeout(5))
        assert sid not in server.sockets


async def test_emit_with_a_callback(one: tuple[realtime.Server, int]) -> None:
    server, port = one
    alice = await peer(port, "alice")
    alice.client.on("pair", lambda: ("a", 2))
    alice.client.on("nothing", lambda: None)
    got: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    async def later(*args: Any) -> None:
        got.put_nowait(args)

    try:
        await server.emit("question", to=alice.sid, callback=lambda *a: got.put_nowait(a))
        assert await asyncio.wait_for(got.get(), timeout(3)) == ("alice",)
        # The client's ack arguments as it sent them, to an async callback too.
        await server.emit("pair", to=alice.sid, callback=later)
        assert await asyncio.wait_for(got.get(), timeout(3)) == ("a", 2)
        await server.emit("nothing", room=alice.sid, callback=later)
        assert await asyncio.wait_for(got.get(), timeout(3)) == ()
        # Sent before emit returns: an emit that follows comes after it.
        await server.emit("first", to=alice.sid, callback=later)
        await server.emit("skipped", to=alice.sid, skip_sid=alice.sid, callback=later)
        await server.emit("second", to=alice.sid)
        await alice.wait_for("second")
        assert alice.events["first"] == [()]
        assert not alice.events["skipped"]  # skip_sid holds with a callback too
        assert await asyncio.wait_for(got.get(), timeout(3)) == ()  # the ack of "first"
        for wrong in ({}, {"to": [alice.sid]}, {"to": alice.sid, "room": alice.sid}):
            with pytest.raises(ValueError):
                await server.emit("question", callback=later, **wrong)
        with pytest.raises(ValueError):
            await server.call("question")
        assert await server.call("question", sid=alice.sid, timeout=timeout(3)) == "alice"
    finally:
        await alice.close()


async def test_get_environ_and_transport(one: tuple[realtime.Server, int]) -> None:
    server, port = one
    clients = [Client(reconnection=False, transports=[name]) for name in ("polling", "websocket")]
    try:
        for client in clients:
            await asyncio.wait_for(
                client.connect(f"http://127.0.0.1:{port}", headers={"X-Team": "blue"}), timeout(5)
            )
        polling, websocket = (client.sid() for client in clients)
        assert polling is not None and websocket is not None
        assert server.transport(polling) == "polling"
        assert server.transport(websocket) == "websocket"
        environ = server.get_environ(websocket)
        assert environ is not None
        assert environ["REQUEST_METHOD"] == "GET"
        assert environ["PATH_INFO"] == "/socket.io/"
        assert "EIO=4" in environ["QUERY_STRING"]
        assert "transport=websocket" in environ["QUERY_STRING"]
        assert environ["REMOTE_ADDR"] == "127.0.0.1"
        assert int(environ["REMOTE_PORT"]) > 0
        assert environ["HTTP_X_TEAM"] == "blue"
        assert environ["HTTP_HOST"] == f"127.0.0.1:{port}"
        assert environ["wsgi.url_scheme"] == "http"
        assert environ["tether.handshake"] is server.sockets[websocket].handshake
        assert server.get_environ("nobody") is None
        with pytest.raises(KeyError):
            server.transport("nobody")
    finally:
        for client in clients:
            await client.disconnect()


async def save_session_times_out(server: realtime.Server, silence: Any) -> None:
    """KeyError at once while every node answers; TimeoutError naming the sid
    while ``silence()`` (an async context manager) adds a node that never answers."""
    async with running(server):
        with pytest.raises(KeyError):
            await server.save_session("ghost", {})
        async with silence():
            with pytest.raises(TimeoutError, match="'ghost'"):
                await server.save_session("ghost", {"user": "ada"})


async def test_save_session_names_the_sid_when_a_redis_node_does_not_answer() -> None:
    import redis.asyncio as aioredis

    from tether.realtime.adapters.redis import RedisAdapter

    prefix = f"t-sid-{next(_prefixes)}"
    with redis_server() as redis:
        adapter = RedisAdapter(redis.url, prefix=prefix, request_timeout=timeout(0.5))

        @contextlib.asynccontextmanager
        async def silence() -> AsyncIterator[None]:
            # Listens for "ghost" (its room's channel), never answers.
            client = aioredis.from_url(redis.url)
            listener = client.pubsub()
            try:
                await listener.subscribe(adapter.channels.room("/", "ghost"))
                yield
            finally:
                await listener.aclose()
                await client.aclose()

        await save_session_times_out(realtime.Server(adapter=adapter), silence)


async def test_save_session_names_the_sid_when_a_worker_does_not_answer() -> None:
    from tether.realtime.adapters.cluster import ClusterAdapter, ClusterHub
    from tether.realtime.adapters.cluster.wire import encode

    with tempfile.TemporaryDirectory() as private:
        hub = ClusterHub(str(Path(private) / "cluster.sock"))
        await hub.start()

        @contextlib.asynccontextmanager
        async def silence() -> AsyncIterator[None]:
            # A worker that says hello to the hub and never answers a request.
            _, writer = await asyncio.open_unix_connection(hub.path)
            try:
                writer.write(encode({"t": "hello", "node": "silent"}))
                await eventually(lambda: "silent" in hub.nodes)
                yield
            finally:
                writer.close()

        try:
            adapter = ClusterAdapter(hub.path, request_timeout=timeout(0.5))
            await save_session_times_out(realtime.Server(adapter=adapter), silence)
        finally:
            await hub.close()


async def test_another_node_acts_on_an_official_client_through_redis() -> None:
    from tether.realtime.adapters.redis import RedisAdapter

    prefix = f"t-sid-{next(_prefixes)}"
    with redis_server() as redis:
        here, there = (
            realtime.Server(
                adapter=RedisAdapter(redis.url, prefix=prefix, request_timeout=timeout(3))
            )
            for _ in range(2)
        )

        @here.event
        async def join(socket: Socket, room: str) -> None:
            await socket.join(room)

        async with running(here) as node1, running(there):
            config = {"urls": [f"http://127.0.0.1:{node1.port}"], "room": "r", "user": "js"}
            async with NodeClients(config) as node:
                sid = (await node.line())["sid"]
                async with there.session(sid) as session:
                    session["user"] = "js"
                assert here.sockets[sid].data == {"user": "js"}
                acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                await there.emit("question", to=sid, callback=acked.set_result)
                assert await asyncio.wait_for(acked, timeout(5)) == "node-0"


async def test_a_disconnect_handler_reads_rooms_and_session_by_sid() -> None:
    # python-socketio's disconnect handlers call rooms(sid) and get_session(sid):
    # the socket has left, but while its handler runs it is found by sid.
    server = realtime.Server()
    seen: asyncio.Future[tuple[list[str], dict[str, Any]]] = asyncio.Future()

    @server.on("connect")
    async def connect(socket: Socket) -> None:
        await server.save_session(socket.sid, {"nick": "alice"})
        await server.enter_room(socket.sid, "lobby")

    @server.on("disconnect")
    async def disconnect(socket: Socket) -> None:
        seen.set_result((server.rooms(socket.sid), await server.get_session(socket.sid)))

    async with running(server) as sio:
        alice = await peer(sio.port, "alice")
        sid = alice.sid
        await eventually(lambda: server.rooms(sid) == sorted([sid, "lobby"]))
        await alice.close()
        rooms, session = await asyncio.wait_for(seen, timeout(5))
        assert rooms == sorted([sid, "lobby"])
        assert session == {"nick": "alice"}
        # Once the handler is over, the sid is unknown here.
        await eventually(lambda: server.rooms(sid) == [])
        with pytest.raises(KeyError):
            await server.get_session(sid)
