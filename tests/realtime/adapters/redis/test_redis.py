"""Scale-out over Redis, end to end: three server processes, one redis-server.

The nodes are ``tests/realtime/redis_node.py`` subprocesses (its docstring
lists the events they answer), sharing a ``redis-server`` this module starts
on a free port. Clients are tether's :class:`~tether.realtime.client.Client`
and the official ``socket.io-client`` (Node), spread over the nodes.

"Exactly once" is checked behind a barrier rather than after a pause: the
last emit of a test goes to everyone from the node that emitted before, and
Redis hands a subscriber the messages of one publisher in order, so once
every client has the barrier event, nothing of the earlier emits is in
flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from helpers import node_bin, repo_root, timeout
from realtime.redis_helpers import NodeProcess, Peer, Proxy, RedisServer, redis_server
from tether import realtime
from tether.realtime import Socket
from tether.realtime.adapters.redis import Emitter, RedisAdapter

pytestmark = pytest.mark.redis

NODE_CLIENTS = repo_root() / "tests" / "realtime" / "redis_sio_clients.mjs"
_names = itertools.count()


def unique(stem: str) -> str:
    return f"{stem}-{next(_names)}"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(redis: RedisServer) -> Iterator[list[NodeProcess]]:
    """Three nodes with connection state recovery on (events go through the stream)."""
    nodes: list[NodeProcess] = []
    try:
        for _ in range(3):
            nodes.append(NodeProcess(redis.url, "t-cluster", recovery=True))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@contextlib.asynccontextmanager
async def peers(*specs: tuple[NodeProcess, str | None]) -> AsyncIterator[list[Peer]]:
    """One connected :class:`Peer` per (node, user)."""
    connected: list[Peer] = []
    try:
        for index, (node, user) in enumerate(specs):
            connected.append(await Peer.connect(node.url, f"p{index}", user=user))
        yield connected
    finally:
        for peer in connected:
            await peer.close()


async def barrier(trigger: Peer, everyone: list[Peer]) -> None:
    """Emit ``done`` to everyone from ``trigger``'s node and wait until all have it."""
    token = unique("done")
    assert await trigger.call("emit", [], [], "done", token)
    for peer in everyone:
        await peer.wait_for("done")
        assert peer.events["done"][-1][0] == token


async def test_broadcasts_rooms_and_except_reach_each_socket_once(
    cluster: list[NodeProcess],
) -> None:
    a, b, c = cluster
    room, odd = unique("room"), unique("odd")
    async with peers((a, None), (a, None), (b, None), (b, None), (c, None), (c, None)) as ps:
        for index, peer in enumerate(ps):
            assert await peer.call("join", room)
            if index % 2:
                assert await peer.call("join", odd)
        sender = ps[0]  # on node a
        assert await sender.call("emit", [], [], "all", 1)  # everyone
        assert await sender.call("emit", [odd], [], "odd", 2)  # one room
        assert await sender.call("emit", [room], [odd], "even", 3)  # except a room
        assert await sender.call("emit", [room, odd], [], "union", 4)  # overlapping rooms
        assert await sender.call("emit", [ps[5].sid], [], "direct", 5)  # a sid on node c
        assert await ps[3].call("emit", [room], [ps[4].sid], "but4", 6)  # except a sid
        await barrier(sender, ps)
        for index, peer in enumerate(ps):
            assert peer.count("all", 1) == 1, (index, peer.events)
            assert peer.count("odd", 2) == index % 2
            assert peer.count("even", 3) == 1 - index % 2
            assert peer.count("union", 4) == 1
            assert peer.count("direct", 5) == (index == 5)
            assert peer.count("but4", 6) == (index != 4)


async def test_acks_fetch_join_leave_disconnect_across_nodes(
    cluster: list[NodeProcess],
) -> None:
    a, b, c = cluster
    room, extra = unique("room"), unique("extra")
    users = [unique("user") for _ in range(3)]
    async with peers((a, users[0]), (b, users[1]), (c, users[2]), (a, None)) as ps:
        members = ps[:3]
        for peer in members:
            assert await peer.call("join", room)
        outsider = ps[3]
        # Broadcast acks: one reply per socket, from every node, within the timeout.
        assert await outsider.call("ack", [room], timeout(3)) == ["p0", "p1", "p2"]
        # fetch_sockets sees the sockets of every node, with their data.
        found = await outsider.call("fetch", [room])
        assert found == sorted([p.sid, u] for p, u in zip(members, users, strict=True))
        # sockets_join: effective on every node when it returns.
        assert await ps[1].call("join_all", [room], extra)
        assert await outsider.call("emit", [extra], [], "extra", 1)
        assert await ps[2].call("leave_all", [room], extra)
        assert await outsider.call("emit", [extra], [], "extra", 2)
        await barrier(outsider, ps)
        for peer in members:
            assert peer.count("extra", 1) == 1
            assert peer.count("extra", 2) == 0
        # disconnect_sockets: the room's sockets on every node are gone.
        assert await outsider.call("kick", [room])
        for peer in members:
            await peer.wait_for("disconnect")
        assert await outsider.call("fetch", [room]) == []


async def test_official_client_on_every_node(cluster: list[NodeProcess]) -> None:
    executable = node_bin()
    if executable is None:
        pytest.skip("node is not installed")
    room = unique("room")
    config = {"urls": [node.url for node in cluster], "room": room, "user": unique("js")}
    process = await asyncio.create_subprocess_exec(
        executable,
        str(NODE_CLIENTS),
        json.dumps(config),
        cwd=repo_root(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    stdout = process.stdout
    seen: list[dict[str, Any]] = []

    async def until(predicate: Any) -> dict[str, Any]:
        while True:
            line = await asyncio.wait_for(stdout.readline(), timeout(10))
            assert line, "the node clients exited"
            parsed: dict[str, Any] = json.loads(line)
            seen.append(parsed)
            if predicate(parsed):
                return parsed

    try:
        sids = {}
        while len(sids) < 3:
            line = await until(lambda line: "ready" in line)
            sids[line["ready"]] = line["sid"]
        async with peers((cluster[1], None)) as (python,):
            # A Python client on node b emits; the JS clients on a, b, c each get it once.
            assert await python.call("emit", [room], [], "hello", "from python")
            assert await python.call("ack", [room], timeout(3)) == ["node-0", "node-1", "node-2"]
            found = await python.call("fetch", [room])
            assert sorted(sid for sid, _ in found) == sorted(sids.values())
            assert await python.call("emit", [], [], "done", room)
            got = set()
            while len(got) < 3:
                line = await until(lambda line: line.get("event") == "done")
                got.add(line["client"])
        hellos = [line["client"] for line in seen if line.get("event") == "hello"]
        assert sorted(hellos) == [0, 1, 2]
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout(5))
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


async def test_presence_rooms_and_users_across_nodes(cluster: list[NodeProcess]) -> None:
    a, b, c = cluster
    room = unique("room")
    alice, bob = unique("alice"), unique("bob")
    async with peers((c, None)) as (watcher,):

        async def until(check: Callable[[], Awaitable[bool]]) -> None:
            """Wait, up to a timeout, until ``check()`` holds, reading again
            whenever the watcher gets an event (cleared *before* each read: an
            event that lands during the read is not lost)."""

            async def loop() -> None:
                while True:
                    watcher.changed.clear()
                    if await check():
                        return
                    await watcher.changed.wait()

            await asyncio.wait_for(loop(), timeout(5))

        def presence_events() -> list[tuple[Any, ...]]:
            return [e for e in watcher.events["presence"] if e[1] in (alice, bob)]

        async with peers((a, alice), (b, alice), (b, bob)) as ps:
            tab1, tab2, bob_peer = ps
            for peer in ps:
                assert await peer.call("join", room)
            # `await socket.join(room)` returns once presence is written: any
            # node reads it at once (connections included: written before).
            members = await watcher.call("presence", room)
            expected = sorted([[tab1.sid, alice], [tab2.sid, alice], [bob_peer.sid, bob]])
            assert sorted(members) == expected
            assert await watcher.call("online", [alice, bob, "nobody"]) == sorted([alice, bob])
            # Two tabs: alice stays online while one is connected. A
            # disconnection has nothing to await: its node writes presence,
            # then announces the change, which wakes `until` up.
            tab1_sid = tab1.sid
            await tab1.close()

            async def tab1_left() -> bool:
                return all(m[0] != tab1_sid for m in await watcher.call("presence", room))

            await until(tab1_left)
            assert alice in await watcher.call("online", [alice])

        # Everyone gone (the context closed the other two).
        async def all_offline() -> bool:
            return not await watcher.call("online", [alice, bob])

        await until(all_offline)
        assert await watcher.call("presence", room) == []

        # The events are emitted by the nodes that decided them (a and b),
        # after Redis made the change visible: seeing the state is not seeing
        # the events (a barrier from the watcher's node c orders neither).
        # Wait for the last ones themselves.
        async def announced() -> bool:
            events = presence_events()
            return (
                ("offline", alice, None) in events
                and ("offline", bob, None) in events
                and events.count(("leave", alice, room)) >= 2
                and ("leave", bob, room) in events
            )

        await until(announced)
        await barrier(watcher, [watcher])
    events = presence_events()
    assert events.count(("online", alice, None)) == 1
    assert events.count(("offline", alice, None)) == 1
    assert events.count(("online", bob, None)) == 1
    assert events.count(("offline", bob, None)) == 1
    assert events.count(("join", alice, room)) == 2
    assert events.count(("leave", alice, room)) == 2
    assert events.count(("join", bob, room)) == 1
    assert events.count(("leave", bob, room)) == 1
    # online comes before alice's first join, offline after her last leave
    assert events.index(("online", alice, None)) < events.index(("join", alice, room))
    last_leave = len(events) - 1 - events[::-1].index(("leave", alice, room))
    assert last_leave < events.index(("offline", alice, None))


async def test_server_side_events_and_the_emitter(
    cluster: list[NodeProcess], redis: RedisServer
) -> None:
    a, b, c = cluster
    room = unique("room")
    async with peers((a, None), (b, None), (c, None)) as ps:
        for peer in ps[1:]:
            assert await peer.call("join", room)
        # server_side_emit from a: b and c relay it to their own sockets; a does not.
        assert await ps[0].call("relay", "hi", 1)
        # From a process that is not a server.
        async with Emitter(redis.url, prefix="t-cluster") as emitter:
            assert await emitter.to(room).emit("news", {"n": 1}) >= 2
            await emitter.in_(room).except_(ps[2].sid).emit("news", {"n": 2})
        # The relays are new emits by b and c: wait for them, then for the
        # barrier (a must have ignored its own server-side event by then).
        await ps[1].wait_for("relayed")
        await ps[2].wait_for("relayed")
        await barrier(ps[0], ps)
        assert [p.count("relayed", "hi", 1) for p in ps] == [0, 1, 1]
        assert [p.count("news", {"n": 1}) for p in ps] == [0, 1, 1]
        assert [p.count("news", {"n": 2}) for p in ps] == [0, 1, 0]


async def test_node_killed_mid_stream_clients_recover_elsewhere(redis: RedisServer) -> None:
    nodes = [NodeProcess(redis.url, "t-recovery", recovery=True) for _ in range(3)]
    proxy = Proxy([node.port for node in nodes[:2]])  # node 2 streams, and stays
    await proxy.start()
    count = 150
    try:
        options = {"reconnection": True, "reconnection_delay": 0.05, "reconnection_delay_max": 0.2}
        listeners = [await Peer.connect(proxy.url, f"l{i}", **options) for i in range(4)]
        async with peers((nodes[2], None)) as (streamer,):
            stream = asyncio.ensure_future(streamer.call("stream", count, 0.01, wait=30))
            await listeners[0].wait_for("seq", count // 3, wait=10)
            nodes[0].kill()  # half of the listeners lose their node
            await stream
            for listener in listeners:
                await listener.wait_for("seq", count, wait=10)
        for listener in listeners:
            assert [args[0] for args in listener.events["seq"]] == list(range(count))
        recovered = [listener.client.recovered() for listener in listeners]
        assert recovered.count(True) == 2, recovered  # the two that were on node 0
        for listener in listeners:
            await listener.close()
    finally:
        await proxy.close()
        for node in nodes:
            node.stop()


@pytest.mark.parametrize("read", ["while held", "once live"])
async def test_an_event_read_from_the_stream_and_late_on_pub_sub_is_recovered_once(
    redis: RedisServer, read: str
) -> None:
    """Redis answers RESTORE and pushes Pub/Sub messages on two connections,
    read in no set order: the copy of an event stored just before RESTORE ran
    can be read after the stream range that has it, while the recovering
    socket's events are held or once it is live. It must not be delivered twice.

    The Pub/Sub messages are held back from RESTORE on, as a loaded node may
    read them; the rest is a real node, Redis and client.
    """
    adapter = RedisAdapter(redis.url, prefix=unique("t-late"), request_timeout=timeout(3))
    server = realtime.Server(
        adapter=adapter, connection_state_recovery={"max_disconnection_duration": 30}
    )
    sockets: list[Socket] = []
    server.on("connect")(sockets.append)
    restore = adapter.restore_session
    deliver = adapter._subs._on_message
    late: list[bytes] = []

    def read_late() -> None:
        adapter._subs._on_message = deliver
        for payload in late:
            deliver(payload)

    async def restore_before_pub_sub(namespace: str, pid: str, offset: str | None) -> Any:
        while not await adapter.client.exists(adapter.keys.session(pid)):
            await asyncio.sleep(0.01)  # the session is saved a moment after the loss
        adapter._subs._on_message = late.append
        try:
            await server.emit("seq", 1)  # in the stream; its Pub/Sub copy waits in `late`
            return await restore(namespace, pid, offset)
        finally:
            if read == "while held":
                read_late()

    async with realtime.serve(server, "127.0.0.1", 0) as http:
        options: dict[str, Any] = {"reconnection": True, "reconnection_delay": 0.01}
        peer = await Peer.connect(f"http://127.0.0.1:{http.port}", "p", **options)
        try:
            await server.emit("seq", 0)
            await peer.wait_for("seq")
            adapter.restore_session = restore_before_pub_sub  # type: ignore[method-assign]
            reconnected = asyncio.Event()
            peer.client.on("connect", reconnected.set)
            sockets[0].conn.close()  # as a network failure would
            await asyncio.wait_for(reconnected.wait(), timeout(5))
            assert peer.client.recovered()
            assert late, "the race was not staged"
            if read == "once live":
                read_late()
            await server.emit("seq", 2)
            await server.emit("done")  # after everything else (one publisher, in order)
            await peer.wait_for("done")
            assert [args[0] for args in peer.events["seq"]] == [0, 1, 2]
        finally:
            await peer.close()


async def test_presence_is_written_when_join_returns(redis: RedisServer) -> None:
    """``await socket.join(room)`` returns once presence is in Redis (not
    only once the room's channel is subscribed), and ``flush`` covers
    ``socket.leave``. Before, the background write often came after: read
    right after the join, the socket was missing or its user offline."""
    adapter = RedisAdapter(redis.url, prefix=unique("t-flush"), request_timeout=timeout(3))
    server = realtime.Server(adapter=adapter)
    presence = adapter.presence
    assert presence is not None
    seen: list[tuple[bool, bool, bool]] = []

    @server.on("connect")
    def connect(socket: Socket, auth: dict[str, Any]) -> None:
        socket.data["user"] = auth["user"]

    @server.on("join")
    async def join(socket: Socket, room: str) -> bool:
        await socket.join(room)
        member = any(m.sid == socket.sid for m in await presence.room(room))
        online = await presence.is_online(socket.data["user"])
        await socket.leave(room)
        await adapter.flush()
        gone = all(m.sid != socket.sid for m in await presence.room(room))
        seen.append((member, online, gone))
        return True

    async with realtime.serve(server, "127.0.0.1", 0) as http:
        for _ in range(10):
            user = unique("user")
            peer = await Peer.connect(f"http://127.0.0.1:{http.port}", user, user=user)
            try:
                assert await peer.call("join", unique("room"))
            finally:
                await peer.close()
    assert seen == [(True, True, True)] * 10


async def test_a_clean_shutdown_logs_no_outage(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping the server closes the adapter's Pub/Sub connection on purpose:
    nothing may say Redis is unreachable (it used to, on every shutdown)."""
    caplog.set_level(logging.INFO, logger="tether.realtime")
    adapter = RedisAdapter(redis.url, prefix=unique("t-stop"), request_timeout=timeout(3))
    server = realtime.Server(adapter=adapter)
    async with realtime.serve(server, "127.0.0.1", 0):
        assert adapter.connected  # it was up, so going down would be logged
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []


async def test_close_ends_a_worker_that_swallowed_a_cancellation(redis: RedisServer) -> None:
    """A cancellation that lands inside a redis command may come out as a
    connection error, which a worker's loop takes for a broker failure: it
    goes on. close() cancels again until its workers end (it hung before)."""
    adapter = RedisAdapter(redis.url, prefix=unique("t-close"), request_timeout=timeout(3))
    server = realtime.Server(adapter=adapter)
    cancelled = 0

    async def stubborn() -> None:
        nonlocal cancelled
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled += 1
                if cancelled == 2:
                    raise
                # As a redis command would: the cancellation turned into a failure.

    async def serve() -> None:
        async with realtime.serve(server, "127.0.0.1", 0):
            adapter._spawn(stubborn())

    # serve() closes the adapter on the way out; it returns, the worker done.
    await asyncio.wait_for(serve(), timeout(10))
    assert cancelled == 2
    assert not adapter._tasks
