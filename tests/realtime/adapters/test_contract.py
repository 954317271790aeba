"""The adapter contract: what every adapter must do, run against each one.

Each adapter is driven the way a server drives it, through its public
methods, and reaches sockets only through :class:`Host`, a recording
:class:`~tether.realtime.adapters.interface.LocalSockets`. A distributed
adapter runs as two nodes on one broker (``nodes[0]`` and ``nodes[1]``); the
in-memory adapter is one node, so ``nodes[-1]`` is ``nodes[0]`` and "the
other node" is this one: the same tests hold for both.

Adding an adapter: add a parameter to ``nodes`` that starts it (twice when it
is distributed) on a :class:`Host`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from helpers import timeout
from realtime.redis_helpers import RedisServer, redis_server
from realtime.sio_helpers import eventually
from tether.realtime import Adapter, BroadcastOptions, RecoveryOptions, SocketInfo
from tether.realtime.adapters.base import SavedSession
from tether.realtime.adapters.interface import LocalSockets
from tether.realtime.protocol import socketio

NSP = "/"
_prefixes = itertools.count()


@dataclass
class FakeSocket:
    """A socket of one node, as :class:`~.interface.LocalSocket`."""

    sid: str
    nsp: str
    pid: str | None = None
    connected: bool = True
    writable: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    received: list[list[Any]] = field(default_factory=list)
    acks: dict[int, asyncio.Future[Any]] = field(default_factory=dict)


class Host:
    """A node's sockets as its adapter sees them; records what reaches them."""

    def __init__(self, recovery: RecoveryOptions | None) -> None:
        self.recovery = recovery
        self.adapter: Adapter | None = None
        self.sockets: dict[tuple[str, str], FakeSocket] = {}
        self.server_events: list[tuple[str, list[Any]]] = []
        self.disconnected: list[tuple[str, bool]] = []
        self._ack_ids = itertools.count(1)

    def namespace_names(self) -> list[str]:
        return [NSP]

    def socket(self, namespace: str, sid: str) -> FakeSocket | None:
        socket = self.sockets.get((namespace, sid))
        return socket if socket is not None and socket.connected else None

    def deliver(
        self, namespace: str, packet: socketio.Packet, sids: list[str], opts: BroadcastOptions
    ) -> None:
        for sid in sids:
            socket = self.socket(namespace, sid)
            if socket is not None and (socket.writable or not opts.volatile):
                socket.received.append(list(packet.data))

    def next_ack_id(self, namespace: str) -> int | None:
        return next(self._ack_ids)

    def deliver_with_ack(
        self, namespace: str, packet: socketio.Packet, sids: list[str], opts: BroadcastOptions
    ) -> list[asyncio.Future[Any]]:
        assert packet.id is not None
        waiters = []
        for sid in sids:
            socket = self.socket(namespace, sid)
            if socket is not None:
                waiter = asyncio.get_running_loop().create_future()
                socket.acks[packet.id] = waiter
                waiters.append(waiter)
        self.deliver(namespace, packet, sids, opts)
        return waiters

    def socket_infos(self, namespace: str, sids: list[str]) -> list[SocketInfo]:
        assert self.adapter is not None
        return [
            SocketInfo(sid, namespace, frozenset(self.adapter.rooms_of(namespace, sid)), {}, {})
            for sid in sids
            if self.socket(namespace, sid) is not None
        ]

    def join(self, namespace: str, sid: str, rooms: list[str]) -> None:
        if self.socket(namespace, sid) is not None:
            assert self.adapter is not None
            self.adapter.add_all(namespace, sid, rooms)

    def leave(self, namespace: str, sid: str, rooms: list[str]) -> None:
        if self.socket(namespace, sid) is not None:
            assert self.adapter is not None
            for room in rooms:
                self.adapter.delete(namespace, sid, room)

    def disconnect(self, namespace: str, sid: str, close: bool) -> None:
        socket = self.socket(namespace, sid)
        if socket is not None:
            assert self.adapter is not None
            socket.connected = False
            self.adapter.delete_all(namespace, sid)
            self.disconnected.append((sid, close))

    def server_event(self, event: str, args: list[Any]) -> None:
        self.server_events.append((event, args))


@dataclass
class Node:
    """One adapter attached to one :class:`Host`."""

    adapter: Adapter
    host: Host
    distributed: bool

    async def connect(self, sid: str, *rooms: str, pid: str | None = None) -> FakeSocket:
        """A socket connects (the server's order: registered, then in its rooms)."""
        socket = self.host.sockets[NSP, sid] = FakeSocket(sid, NSP, pid)
        self.adapter.add_all(NSP, sid, rooms)
        await self.adapter.flush()
        return socket

    async def leave_for_good(self, socket: FakeSocket) -> None:
        socket.connected = False
        self.adapter.delete_all(NSP, socket.sid)
        await self.adapter.flush()


@pytest.fixture(scope="module")
def redis() -> Any:
    with redis_server() as server:
        yield server


async def _memory(recovery: RecoveryOptions | None) -> list[Node]:
    return [_attach(Adapter(), recovery, distributed=False)]


def _attach(adapter: Adapter, recovery: RecoveryOptions | None, *, distributed: bool) -> Node:
    host = Host(recovery)
    host.adapter = adapter
    sockets: LocalSockets = host
    adapter.attach(sockets)
    return Node(adapter, host, distributed)


@contextlib.asynccontextmanager
async def _cluster(
    request: pytest.FixtureRequest, recovery: RecoveryOptions | None
) -> AsyncIterator[list[Node]]:
    if request.param == "memory":
        yield await _memory(recovery)
        return
    if request.param == "cluster":
        async with _cluster_adapters(request, recovery) as nodes:
            yield nodes
        return
    from tether.realtime.adapters.redis import RedisAdapter

    server: RedisServer = request.getfixturevalue("redis")
    prefix = f"t-contract-{next(_prefixes)}"
    nodes = [
        _attach(
            RedisAdapter(server.url, prefix=prefix, heartbeat=0.2, request_timeout=timeout(2)),
            recovery,
            distributed=True,
        )
        for _ in range(2)
    ]
    for node in nodes:
        await node.adapter.start()
    try:
        yield nodes
    finally:
        for node in nodes:
            await _close(node.adapter)


@contextlib.asynccontextmanager
async def _cluster_adapters(
    request: pytest.FixtureRequest, recovery: RecoveryOptions | None
) -> AsyncIterator[list[Node]]:
    """Two :class:`ClusterAdapter` nodes on one hub, on a Unix socket under tmp_path."""
    from tether.realtime.adapters.cluster import ClusterAdapter, ClusterHub

    path = str(request.getfixturevalue("tmp_path") / "hub.sock")
    hub = ClusterHub(path)
    await hub.start()
    nodes = [
        _attach(
            ClusterAdapter(path, request_timeout=timeout(2), heartbeat=0.2),
            recovery,
            distributed=True,
        )
        for _ in range(2)
    ]
    try:
        for node in nodes:
            await node.adapter.start()
        yield nodes
    finally:
        for node in nodes:
            await _close(node.adapter)
        await asyncio.wait_for(hub.close(), timeout(10))


async def _close(adapter: Adapter) -> None:
    """Close ``adapter``, failing (with the stacks of the tasks still
    running) rather than hanging the suite if it does not return."""
    try:
        await asyncio.wait_for(adapter.close(), timeout(10))
    except asyncio.TimeoutError:
        for task in asyncio.all_tasks():
            task.print_stack()
        raise


ADAPTERS = ["memory", "cluster", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=ADAPTERS)
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[Node]]:
    async with _cluster(request, None) as cluster:
        yield cluster


@pytest.fixture(params=ADAPTERS)
async def recovering(request: pytest.FixtureRequest) -> AsyncIterator[list[Node]]:
    async with _cluster(request, RecoveryOptions()) as cluster:
        yield cluster


def event(name: str, *args: Any) -> socketio.Packet:
    return socketio.Packet.event(name, *args, namespace=NSP)


async def settle(predicate: Callable[[], bool]) -> None:
    await eventually(predicate, timeout(2))


async def nothing_more(nodes: list[Node]) -> None:
    """Let what is in flight arrive (through the broker, when there is one)."""
    if nodes[0].distributed:
        await asyncio.sleep(timeout(0.2))


# -- rooms -----------------------------------------------------------------------------


async def test_a_socket_is_in_its_own_room_and_the_rooms_it_joins(nodes: list[Node]) -> None:
    node = nodes[0]
    await node.connect("a", "r1", "r2")
    assert node.adapter.rooms_of(NSP, "a") == {"a", "r1", "r2"}
    node.adapter.delete(NSP, "a", "r1")
    assert node.adapter.rooms_of(NSP, "a") == {"a", "r2"}
    node.adapter.delete_all(NSP, "a")
    assert node.adapter.rooms_of(NSP, "a") == set()


async def test_joining_another_sockets_own_room_is_refused(nodes: list[Node]) -> None:
    node = nodes[0]
    await node.connect("a")
    await node.connect("b")
    with pytest.raises(ValueError):
        node.adapter.add_all(NSP, "a", ["ok", "b"])
    assert node.adapter.rooms_of(NSP, "a") == {"a"}  # none joined
    with pytest.raises(ValueError):
        await node.adapter.check_remote_rooms(NSP, "a", ["b"])
    await node.adapter.check_remote_rooms(NSP, "a", ["a", "free"])


async def test_local_sids_follow_the_selection(nodes: list[Node]) -> None:
    node = nodes[0]
    for sid, rooms in (("a", ["r1"]), ("b", ["r1", "r2"]), ("c", [])):
        await node.connect(sid, *rooms)
    sids = node.adapter.local_sids
    assert sorted(sids(NSP, BroadcastOptions())) == ["a", "b", "c"]
    assert sorted(sids(NSP, BroadcastOptions(rooms=frozenset({"r1"})))) == ["a", "b"]
    selection = BroadcastOptions(rooms=frozenset({"r1"}), except_rooms=frozenset({"r2"}))
    assert sids(NSP, selection) == ["a"]
    assert sids(NSP, BroadcastOptions(sids=frozenset({"c"}))) == ["c"]
    assert sids("/other", BroadcastOptions()) == []


# -- broadcast -------------------------------------------------------------------------


async def test_broadcast_reaches_every_selected_socket_once_on_every_node(
    nodes: list[Node],
) -> None:
    a = await nodes[0].connect("a", "r")
    b = await nodes[-1].connect("b", "r")
    c = await nodes[-1].connect("c")
    await nodes[0].adapter.broadcast(NSP, event("all", 1), BroadcastOptions())
    await nodes[0].adapter.broadcast(
        NSP, event("room", 2), BroadcastOptions(rooms=frozenset({"r", "b"}))
    )
    await nodes[0].adapter.broadcast(
        NSP, event("but", 3), BroadcastOptions(except_rooms=frozenset({"r"}))
    )
    await settle(lambda: len(a.received) == 2 and len(b.received) == 2 and len(c.received) == 2)
    await nothing_more(nodes)
    assert a.received == [["all", 1], ["room", 2]]
    assert b.received == [["all", 1], ["room", 2]]
    assert c.received == [["all", 1], ["but", 3]]


async def test_a_local_broadcast_stays_on_its_node(nodes: list[Node]) -> None:
    a = await nodes[0].connect("a")
    b = await nodes[-1].connect("b")
    await nodes[0].adapter.broadcast(NSP, event("here", 1), BroadcastOptions(local=True))
    await settle(lambda: bool(a.received))
    await nothing_more(nodes)
    assert a.received == [["here", 1]]
    assert b.received == ([["here", 1]] if nodes[0] is nodes[-1] else [])


async def test_a_volatile_broadcast_skips_sockets_that_cannot_take_it(nodes: list[Node]) -> None:
    a = await nodes[0].connect("a")
    b = await nodes[-1].connect("b")
    b.writable = False
    await nodes[0].adapter.broadcast(NSP, event("v", 1), BroadcastOptions(volatile=True))
    await nodes[0].adapter.broadcast(NSP, event("done"), BroadcastOptions())
    await settle(lambda: ["done"] in b.received and ["done"] in a.received)
    assert a.received == [["v", 1], ["done"]]
    assert b.received == [["done"]]


async def test_acks_from_a_broadcast_come_from_every_node(nodes: list[Node]) -> None:
    a = await nodes[0].connect("a")
    b = await nodes[-1].connect("b")
    await nodes[-1].connect("silent")
    ack_id = nodes[0].host.next_ack_id(NSP)
    assert ack_id is not None
    packet = socketio.Packet.event("q", namespace=NSP, id=ack_id)
    replies = asyncio.ensure_future(
        nodes[0].adapter.broadcast_with_ack(NSP, packet, BroadcastOptions(), timeout(1))
    )
    await settle(lambda: bool(a.acks) and bool(b.acks))
    for socket, answer in ((a, "from a"), (b, "from b")):
        next(iter(socket.acks.values())).set_result(answer)
    assert sorted(await replies) == ["from a", "from b"]  # "silent" timed out


# -- requests: fetch, join/leave, disconnect ------------------------------------------


async def test_fetch_sockets_sees_every_node(nodes: list[Node]) -> None:
    await nodes[0].connect("a", "r")
    await nodes[-1].connect("b", "r")
    await nodes[-1].connect("c")
    found = await nodes[0].adapter.fetch_sockets(NSP, BroadcastOptions(rooms=frozenset({"r"})))
    assert sorted((info.sid, info.rooms) for info in found) == [
        ("a", frozenset({"a", "r"})),
        ("b", frozenset({"b", "r"})),
    ]
    local = await nodes[0].adapter.fetch_sockets(NSP, BroadcastOptions(local=True))
    assert {info.sid for info in local} == set(nodes[0].adapter.local_sids(NSP, BroadcastOptions()))


async def test_remote_join_and_leave(nodes: list[Node]) -> None:
    await nodes[0].connect("a")
    await nodes[-1].connect("b", "old")
    await nodes[0].adapter.add_sockets(NSP, BroadcastOptions(), ["new"])
    assert "new" in nodes[-1].adapter.rooms_of(NSP, "b")
    assert "new" in nodes[0].adapter.rooms_of(NSP, "a")
    await nodes[0].adapter.del_sockets(NSP, BroadcastOptions(rooms=frozenset({"old"})), ["new"])
    assert nodes[-1].adapter.rooms_of(NSP, "b") == {"b", "old"}
    assert "new" in nodes[0].adapter.rooms_of(NSP, "a")


async def test_remote_disconnect(nodes: list[Node]) -> None:
    await nodes[0].connect("a")
    await nodes[-1].connect("b", "kick")
    await nodes[0].adapter.disconnect_sockets(NSP, BroadcastOptions(rooms=frozenset({"kick"})))
    assert nodes[-1].host.disconnected == [("b", False)]
    await nodes[0].adapter.disconnect_sockets(NSP, BroadcastOptions(), close=True)
    assert ("a", True) in nodes[0].host.disconnected


async def test_save_data_replaces_a_sockets_data_on_its_node(nodes: list[Node]) -> None:
    here = await nodes[0].connect("a")
    there = await nodes[-1].connect("b")
    assert await nodes[0].adapter.save_data(NSP, "b", {"user": "ada"}) is True
    assert there.data == {"user": "ada"}
    assert await nodes[-1].adapter.save_data(NSP, "a", {"n": 1}) is True
    assert here.data == {"n": 1} and there.data == {"user": "ada"}
    # Every node answered and none has it (no node waits for a timeout).
    assert await nodes[0].adapter.save_data(NSP, "nobody", {}) is False
    await nodes[-1].leave_for_good(there)
    assert await nodes[0].adapter.save_data(NSP, "b", {}) is False
    assert there.data == {"user": "ada"}


async def test_server_side_events_reach_the_other_nodes_only(nodes: list[Node]) -> None:
    await nodes[0].adapter.server_side_emit("ping", [1, "two"])
    if nodes[0].distributed:
        await settle(lambda: bool(nodes[1].host.server_events))
        assert nodes[1].host.server_events == [("ping", [1, "two"])]
    await nothing_more(nodes)
    assert nodes[0].host.server_events == []


# -- connection state recovery ----------------------------------------------------------


async def test_a_session_is_restored_with_what_it_missed(recovering: list[Node]) -> None:
    nodes = recovering
    a = await nodes[0].connect("a", "r", pid="pid-a")
    await nodes[0].adapter.broadcast(NSP, event("seen", 1), BroadcastOptions())
    await settle(lambda: bool(a.received))
    first = a.received[0]
    assert first[:2] == ["seen", 1] and isinstance(first[2], str)  # its offset
    offset = first[2]

    await nodes[0].leave_for_good(a)
    saved = SavedSession("a", "pid-a", NSP, ["r"], {"name": "a"}, offset)
    await nodes[0].adapter.persist_session(saved)
    await nodes[0].adapter.flush()
    await nodes[-1].adapter.broadcast(
        NSP, event("missed", 2), BroadcastOptions(rooms=frozenset({"r"}))
    )
    await nodes[-1].adapter.broadcast(
        NSP, event("elsewhere", 3), BroadcastOptions(rooms=frozenset({"other"}))
    )

    restored = None
    for _ in range(20):  # a distributed adapter writes the session in the background
        restored = await nodes[-1].adapter.restore_session(NSP, "pid-a", offset)
        if restored is not None:
            break
        await asyncio.sleep(timeout(0.05))
    assert restored is not None
    session, missed = restored
    assert (session.sid, session.pid, session.rooms, session.data) == (
        "a",
        "pid-a",
        ["r"],
        {"name": "a"},
    )
    assert [data[:2] for data in missed] == [["missed", 2]]
    # Once restored, it is gone: a pid recovers once.
    assert await nodes[-1].adapter.restore_session(NSP, "pid-a", offset) is None


async def test_an_unknown_session_or_offset_restores_nothing(recovering: list[Node]) -> None:
    adapter = recovering[0].adapter
    assert await adapter.restore_session(NSP, "nobody", None) is None
    a = await recovering[0].connect("a", pid="pid-a")
    await recovering[0].leave_for_good(a)
    await adapter.persist_session(SavedSession("a", "pid-a", NSP, [], {}, None))
    assert await adapter.restore_session(NSP, "pid-a", "not-an-offset") is None


async def test_without_recovery_nothing_is_kept(nodes: list[Node]) -> None:
    a = await nodes[0].connect("a")
    await nodes[0].adapter.broadcast(NSP, event("e", 1), BroadcastOptions())
    await settle(lambda: bool(a.received))
    assert a.received == [["e", 1]]  # no offset appended
    await nodes[0].adapter.persist_session(SavedSession("a", "p", NSP, [], {}, None))
    assert await nodes[0].adapter.restore_session(NSP, "p", None) is None
