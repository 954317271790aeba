"""Connection state recovery and rooms under hostile clients (issue 12).

Each attack runs against the README's chat (:func:`chat_server`, recovery on)
with a bystander that must lose nothing and never stall:

* many recoverable sockets dropping at once: saving a session is O(1);
* stored events and saved sessions are bounded in bytes and count;
* a recovering client's offset cannot reach before it joined a room (or
  before it connected);
* a room named after another socket's sid cannot be joined, and what is
  sent to a socket reaches that socket only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import timeout
from realtime.conftest import StartSio
from realtime.hostile_helpers import MemoryWatch, MiB, bystander, chat_server
from realtime.redis_helpers import RedisServer, redis_server
from realtime.server.test_server_recovery import event_with_offset
from realtime.sio_helpers import EioSocket, eventually, open_websocket, running
from tether import realtime
from tether.realtime.adapters.base import Adapter, BroadcastOptions, SavedSession
from tether.realtime.adapters.cluster import ClusterAdapter, ClusterHub
from tether.realtime.adapters.redis import RedisAdapter
from tether.realtime.protocol import socketio


async def connect(
    port: int, auth: dict[str, Any] | None = None
) -> tuple[EioSocket, dict[str, Any]]:
    """A WebSocket Socket.IO client on ``/``: the socket and the CONNECT reply."""
    ws = await open_websocket(port)
    assert (await ws.recv_text()).startswith("0{")
    await ws.send("40" + (json.dumps(auth) if auth is not None else ""))
    reply = await ws.recv_text()
    assert reply.startswith("40{"), reply
    return ws, json.loads(reply[2:])


async def lose(server: realtime.Server, ws: EioSocket, pid: str) -> None:
    """Drop a client's connection and wait until its session is saved."""
    await ws.close()
    adapter = server.adapter
    if isinstance(adapter, ClusterAdapter):  # kept by the hub
        kept = _hubs[adapter.path].memory.inner._sessions
        await eventually(lambda: pid in kept)
        return
    if not isinstance(adapter, RedisAdapter):
        await eventually(lambda: pid in adapter._sessions)
        return
    # Saved in Redis for the recovery window (a live socket's session is
    # saved with a longer TTL): no event to await in another process.
    key = adapter.keys.session(pid)
    deadline = time.monotonic() + timeout(3)
    while not 0 < await adapter.client.pttl(key) <= adapter.window_ms:
        assert time.monotonic() < deadline, "the session was not kept"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


_prefixes = itertools.count()
_hubs: dict[str, ClusterHub] = {}  # by path: the hub of each cluster served


@contextlib.asynccontextmanager
async def cluster_hub(path: str) -> AsyncIterator[ClusterHub]:
    hub = _hubs[path] = ClusterHub(path)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()
        del _hubs[path]


@contextlib.asynccontextmanager
async def serving(
    kind: str, redis_url: str | None = None, prefix: str = "", **options: Any
) -> AsyncIterator[tuple[realtime.Server, int]]:
    """The chat served with the in-memory adapter, a RedisAdapter or a
    ClusterAdapter (``prefix``: the path of its hub, started by the caller)."""
    if kind == "cluster":
        options["adapter"] = ClusterAdapter(prefix, request_timeout=timeout(3))
    if kind == "redis":
        assert redis_url is not None
        prefix = prefix or f"t-hostile-{next(_prefixes)}"
        options["adapter"] = RedisAdapter(redis_url, prefix=prefix, request_timeout=timeout(3))
    server = chat_server(**options)
    async with running(server) as sio:
        yield server, sio.port


@pytest.fixture(params=["memory", "cluster", pytest.param("redis", marks=pytest.mark.redis)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis_url(kind: str, request: pytest.FixtureRequest) -> str | None:
    if kind != "redis":
        return None
    server: RedisServer = request.getfixturevalue("redis")
    return server.url


async def join(ws: EioSocket, room: str, ack_id: int = 1) -> None:
    """The chat's ``join``, acknowledged (the handler ran)."""
    await ws.send(f'42{ack_id}["join",{json.dumps(room)}]')
    while True:
        message = await ws.recv_text()
        if message.startswith(f"43{ack_id}"):
            return


def recovering_adapter(**options: Any) -> Adapter:
    return realtime.Server(connection_state_recovery=options or True).adapter


def saved(pid: str) -> SavedSession:
    return SavedSession(f"sid-{pid}", pid, "/", ["lobby"], {}, None)


# -- 1. many recoverable sockets dropping at once ----------------------------------------


async def time_saves(adapter: Adapter, first: int, count: int) -> float:
    start = time.perf_counter()
    for n in range(first, first + count):
        await adapter.persist_session(saved(str(n)))
    return time.perf_counter() - start


async def test_saving_a_session_does_not_scan_the_saved_ones() -> None:
    # The unfixed adapter looked at every saved session on each save: 1,000
    # saves on top of 20,000 took 20 times longer than on top of 1,000.
    small, large = recovering_adapter(), recovering_adapter()
    await time_saves(small, 0, 1_000)
    await time_saves(large, 0, 20_000)
    assert len(large._sessions) == 20_000
    on_small = min([await time_saves(small, 10**6 + 1_000 * i, 1_000) for i in range(3)])
    on_large = min([await time_saves(large, 10**6 + 1_000 * i, 1_000) for i in range(3)])
    assert on_large < 3 * on_small, (on_small, on_large)


async def test_ten_thousand_sockets_dropping_at_once(start_sio: StartSio) -> None:
    server = chat_server()
    sio = await start_sio(server)
    adapter = server.adapter
    count = 10_000
    for n in range(count):
        adapter.add_all("/", f"sid-{n}", ["lobby"])
    # What the test run left in this process (every earlier test's objects)
    # is not the server's: kept out of the collector's full passes, which
    # otherwise pause the loop in proportion to it (~0.3 s here).
    gc.freeze()
    try:
        await drop_at_once(server, sio.port, count)
    finally:
        gc.unfreeze()


async def drop_at_once(server: realtime.Server, port: int, count: int) -> None:
    adapter = server.adapter
    async with bystander(port) as watcher:
        with MemoryWatch() as memory:
            # As the server does when a connection drops: the socket leaves
            # its rooms, then its session is saved in a task (one per socket).
            # Closed connections come as separate callbacks: a loop turn per
            # hundred of them here.
            for n in range(count):
                sid = f"sid-{n}"
                adapter.delete_all("/", sid)
                session = SavedSession(sid, f"pid-{n}", "/", ["lobby"], {"n": n}, None)
                server.runner.run(adapter.persist_session(session))
                if n % 100 == 0:
                    await asyncio.sleep(0)
            await eventually(lambda: len(adapter._sessions) == count, wait=3)
        # A new client is admitted at once.
        started = time.monotonic()
        ws, _ = await connect(port)
        admitted = time.monotonic() - started
        await ws.close()
        await watcher.check(max_latency=0.5)
    assert admitted < timeout(0.5), admitted
    # 10,000 sessions: about 1 KiB each.
    assert memory.growth() < 24 * MiB, memory.growth()
    assert not adapter._departed


# -- 2. bounded storage ---------------------------------------------------------------------


async def test_stored_events_are_bounded_in_bytes(start_sio: StartSio) -> None:
    budget = 256 * 1024
    server = chat_server(connection_state_recovery={"max_stored_bytes": budget})
    sio = await start_sio(server)
    adapter = server.adapter
    # A victim that will come back with an offset the flood pushes out.
    victim, hello = await connect(sio.port)
    await join(victim, "quiet")
    await server.to("quiet").emit("news", 1)
    _, offset = event_with_offset(await victim.recv())
    await lose(server, victim, hello["pid"])

    attacker, _ = await connect(sio.port)
    await join(attacker, "loud")
    text = "x" * 500
    async with bystander(sio.port) as watcher:
        with MemoryWatch() as memory:
            # It reads what it gets back (its own "said"), so no other bound
            # than the stored bytes applies.
            received = 0

            async def drain() -> None:
                nonlocal received
                while True:
                    await attacker.connection.recv()
                    received += 1

            reader = asyncio.get_running_loop().create_task(drain())
            # Sixteen budgets' worth (about 2 s; the deadline is a safety net).
            deadline = time.monotonic() + timeout(10)
            sent = 0
            while sent * 550 < 16 * budget and time.monotonic() < deadline:
                await attacker.send(*[f'42["say","{text}"]'] * 100)
                sent += 100
                await eventually(lambda sent=sent: received >= sent - 200)  # type: ignore[misc]
            reader.cancel()
            await watcher.check(max_latency=0.5)
    await attacker.close()

    assert sent * 550 >= 16 * budget  # the flood was well past the budget
    assert adapter._stored_bytes <= budget
    assert sum(p.size for p in adapter._packets) == adapter._stored_bytes
    # Unfixed: every event of the window kept, +9 MiB for 8,800 events (0.2 MiB fixed).
    assert memory.growth() < 4 * MiB, memory.growth()
    # The victim's offset is gone: it comes back as a new socket.
    again, fresh = await connect(sio.port, {"pid": hello["pid"], "offset": offset})
    assert fresh["sid"] != hello["sid"]
    assert not server.sockets[fresh["sid"]].recovered
    await again.close()


async def test_saved_sessions_are_capped_oldest_first() -> None:
    adapter = recovering_adapter(max_saved_sessions=100)
    await time_saves(adapter, 0, 150)
    assert len(adapter._sessions) == 100
    assert len(adapter._saved_sids) == 100
    assert await adapter.restore_session("/", "0", None) is None  # dropped
    restored = await adapter.restore_session("/", "149", None)
    assert restored is not None and restored[0].sid == "sid-149"


def test_recovery_options_are_validated() -> None:
    with pytest.raises(ValueError):
        realtime.Server(connection_state_recovery={"max_stored_bytes": -1})
    with pytest.raises(ValueError):
        realtime.Server(connection_state_recovery={"max_saved_sessions": 1.5})


# -- 3. offsets the client cannot push back ---------------------------------------------


async def test_an_old_offset_replays_nothing_from_before_joining(
    kind: str, redis_url: str | None, tmp_path: Path
) -> None:
    if kind == "cluster":
        path = str(tmp_path / "hub.sock")
        async with cluster_hub(path), serving(kind, prefix=path) as (server, port):
            await old_offsets_attack(server, port)
        return
    async with serving(kind, redis_url) as (server, port):
        await old_offsets_attack(server, port)


async def old_offsets_attack(server: realtime.Server, port: int) -> None:
    await server.to("secret").emit("said", "x", "before the attacker connected")
    async with bystander(port) as watcher:
        with MemoryWatch() as memory:
            attacker, hello = await connect(port)
            await server.emit("hello")  # an offset for everyone
            _, first = event_with_offset(await attacker.recv())
            await server.to("secret").emit("said", "x", "before the attacker joined")
            await join(attacker, "secret")
            await server.to("secret").emit("said", "x", "after it joined")
            _, last = event_with_offset(await attacker.recv())
            await lose(server, attacker, hello["pid"])
            await server.to("secret").emit("said", "x", "while it was away")
            epoch = first.rpartition("-")[0]  # a Redis offset is a stream id: ms-seq
            oldest = ["0-0", "0-1", "1-0"] if isinstance(server.adapter, RedisAdapter) else []
            oldest += [f"{epoch}-1", f"{epoch}-0"]
            # Its own pid with the oldest offsets it can name: what it was
            # sent while in the room comes back, nothing from before.
            expected = [["said", "x", "after it joined"], ["said", "x", "while it was away"]]
            for offset in [first, *oldest]:
                ws, back = await connect(port, {"pid": hello["pid"], "offset": offset})
                assert back["sid"] == hello["sid"]
                replayed = [event_with_offset(await ws.recv())[0] for _ in expected]
                await ws.nothing(0.1)
                assert replayed == expected, offset
                await lose(server, ws, hello["pid"])
                await server.to("secret").emit("said", "x", "while it was away")
                # Recovered, it started listening again: from there on.
                expected = [["said", "x", "while it was away"]]
            # A made-up offset (not one the server gave out) recovers nothing.
            # (an older one would only be moved up to where the socket started).
            made_up = f"{epoch}-99999"
            if isinstance(server.adapter, RedisAdapter):
                made_up = f"{int(epoch) + 10**9}-0"
            ws, back = await connect(port, {"pid": hello["pid"], "offset": made_up})
            assert back["sid"] != hello["sid"]
            await ws.close()
        await watcher.check(max_latency=0.5)
    assert last != first
    assert memory.growth() < 8 * MiB, memory.growth()


async def test_sessions_record_where_the_socket_started() -> None:
    adapter = recovering_adapter()
    await adapter.broadcast("/", socketio.Packet.event("to", "room"), room_opts("r"))
    adapter.add_all("/", "a", [])
    await adapter.broadcast("/", socketio.Packet.event("to", "all"), room_opts())
    adapter.add_all("/", "a", ["r"])
    await adapter.broadcast("/", socketio.Packet.event("to", "room"), room_opts("r"))
    adapter.delete_all("/", "a")
    await adapter.persist_session(SavedSession("a", "p", "/", ["r"], {}, None))
    restored = await adapter.restore_session("/", "p", None)
    assert restored is not None
    assert [data[:2] for data in restored[1]] == [["to", "all"], ["to", "room"]]


def room_opts(*rooms: str) -> BroadcastOptions:
    return BroadcastOptions(frozenset(rooms))


# -- 4. a socket's own room ---------------------------------------------------------------


async def test_no_socket_can_join_another_sockets_own_room(start_sio: StartSio) -> None:
    server = chat_server()
    sio = await start_sio(server)
    victim, hello = await connect(sio.port)
    away, gone = await connect(sio.port)
    await lose(server, away, gone["pid"])
    attacker, _ = await connect(sio.port)
    async with bystander(sio.port) as watcher:
        with MemoryWatch() as memory:
            for n, room in enumerate([hello["sid"], gone["sid"]] * 50):
                # The chat's join handler fails (ValueError): no ack.
                await attacker.send(f'42{n}["join","{room}"]')
            await attacker.send('42999["echo"]')  # the joins were handled before this
            assert await attacker.recv_text() == "43999[]"
            victim_socket = server.sockets[hello["sid"]]
            others = [s.rooms for s in server.sockets.values() if s is not victim_socket]
            assert not {hello["sid"], gone["sid"]} & set().union(*others)
            await victim_socket.emit("private", "for the victim")
            await server.to(hello["sid"]).emit("private", "to its room")
            assert event_with_offset(await victim.recv())[0] == ["private", "for the victim"]
            assert event_with_offset(await victim.recv())[0] == ["private", "to its room"]
            await attacker.nothing(0.1)
        await watcher.check(max_latency=0.5)
    assert memory.growth() < 4 * MiB, memory.growth()
    await victim.close()
    await attacker.close()


async def test_socket_emit_reaches_the_socket_by_identity() -> None:
    adapter = recovering_adapter()
    adapter.add_all("/", "victim", [])
    # Even a registry that somehow holds a room named after the victim (a
    # socket that joined it before the victim's sid existed) is not used.
    adapter.add_all("/", "intruder", [])
    adapter.registry("/").join("intruder", "victim")
    opts = BroadcastOptions(sids=frozenset({"victim"}))
    assert adapter.local_sids("/", opts) == ["victim"]
    await adapter.broadcast("/", socketio.Packet.event("private"), opts)
    adapter.delete_all("/", "intruder")
    await adapter.persist_session(SavedSession("intruder", "p", "/", ["victim"], {}, None))
    restored = await adapter.restore_session("/", "p", None)
    assert restored is not None and restored[1] == []
    with pytest.raises(ValueError, match="another socket's own room"):
        adapter.add_all("/", "other", ["victim"])


@pytest.mark.redis
async def test_no_socket_can_join_a_sid_of_another_node(redis: RedisServer) -> None:
    prefix = f"t-sids-{next(_prefixes)}"
    async with (
        serving("redis", redis.url, prefix) as (one, port_one),
        serving("redis", redis.url, prefix) as (two, port_two),
    ):
        await sid_of_another_node_attack(one, port_one, two, port_two)


async def test_no_socket_can_join_a_sid_of_another_worker(tmp_path: Path) -> None:
    path = str(tmp_path / "hub.sock")
    async with (
        cluster_hub(path),
        serving("cluster", prefix=path) as (one, port_one),
        serving("cluster", prefix=path) as (two, port_two),
    ):
        await sid_of_another_node_attack(one, port_one, two, port_two)


async def sid_of_another_node_attack(
    one: realtime.Server, port_one: int, two: realtime.Server, port_two: int
) -> None:
    victim, hello = await connect(port_one)
    attacker, _ = await connect(port_two)
    async with bystander(port_two) as watcher:
        await attacker.send(f'421["join","{hello["sid"]}"]', '422["join","lobby"]')
        assert await attacker.recv_text() == '432["lobby"]'  # the first join failed
        assert all(hello["sid"] not in s.rooms for s in two.sockets.values())
        await two.to(hello["sid"]).emit("private", "to its room")
        await one.sockets[hello["sid"]].emit("private", "for the victim")
        assert event_with_offset(await victim.recv())[0] == ["private", "to its room"]
        assert event_with_offset(await victim.recv())[0] == ["private", "for the victim"]
        await attacker.nothing(0.1)
        await watcher.check(max_latency=0.5)
    await victim.close()
    await attacker.close()


# -- 5. garbage in the Redis stream -------------------------------------------------------


@pytest.mark.redis
async def test_garbage_in_the_stream_is_skipped_on_recovery(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving("redis", redis.url) as (server, port):
        adapter = server.adapter
        assert isinstance(adapter, RedisAdapter)
        async with bystander(port) as watcher:
            client, hello = await connect(port)
            await server.emit("seq", 0)
            _, offset = event_with_offset(await client.recv())
            await lose(server, client, hello["pid"])
            await server.emit("seq", 1)
            stream = adapter.keys.stream
            garbage = [
                b"not json",
                b'["b",{"id":"x","nsp":"/","data":5,"opts":{}}]',  # data not a list
                b'["b",{"id":"y","nsp":"/","data":[],"opts":[]}]',  # opts not a dict
                b'["?",{}]',
                b"\x00\xff\xff\xff\xff",
            ]
            for body in garbage * 20:
                await adapter.client.xadd(stream, {"m": body})
            await adapter.client.xadd(stream, {"other": b"field"})
            await server.emit("seq", 2)
            with caplog.at_level("WARNING", logger="tether.realtime.adapters.redis"):
                again, back = await connect(port, {"pid": hello["pid"], "offset": offset})
                assert back["sid"] == hello["sid"]  # recovered, no CONNECT_ERROR
                replayed = [event_with_offset(await again.recv())[0] for _ in range(2)]
                assert replayed == [["seq", 1], ["seq", 2]]
                await again.nothing(0.1)
            await watcher.check(max_latency=0.5)
            await again.close()
    skipped = [r for r in caplog.records if "undecodable stream entry" in r.getMessage()]
    assert len(skipped) == 1  # 101 bad entries, one line (rate-limited)


@pytest.mark.redis
async def test_the_stream_is_trimmed_to_the_stored_bytes(redis: RedisServer) -> None:
    budget = 32 * 1024
    options = {"connection_state_recovery": {"max_stored_bytes": budget}}
    async with serving("redis", redis.url, **options) as (server, port):
        adapter = server.adapter
        assert isinstance(adapter, RedisAdapter)
        async with bystander(port) as watcher:
            for _ in range(100):
                await asyncio.gather(*[server.emit("said", "x" * 500) for _ in range(10)])
            await watcher.check(max_latency=0.5)
        length = await adapter.client.xlen(adapter.keys.stream)
        # 1,000 entries of ~600 bytes sent; about 55 fit (MAXLEN ~ trims
        # whole nodes of 100 entries, so up to one more node remains).
        assert length <= budget // 500 + 100, length
