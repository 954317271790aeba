"""The cluster adapter against a hub that is missing, restarts, or does not
read: it serves locally meanwhile, reconnects, reports its sockets again,
and its ``close()`` is bounded. Sockets are the contract suite's recording
:class:`Host` (the contract itself runs in ``test_contract.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helpers import timeout
from realtime.adapters.test_contract import NSP, Node, _attach, event
from realtime.sio_helpers import eventually
from tether.realtime import BroadcastOptions, RecoveryOptions
from tether.realtime.adapters.cluster import ClusterAdapter, ClusterHub
from tether.realtime.adapters.cluster.messages import Live
from tether.realtime.adapters.cluster.wire import encode
from tether.realtime.protocol import socketio


def node(path: str, **options: float) -> Node:
    options.setdefault("request_timeout", timeout(1))
    adapter = ClusterAdapter(path, backoff_base=0.01, backoff_cap=0.05, **options)
    return _attach(adapter, RecoveryOptions(), distributed=True)


def cluster(n: Node) -> ClusterAdapter:
    assert isinstance(n.adapter, ClusterAdapter)
    return n.adapter


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[ClusterHub]:
    hub = ClusterHub(str(tmp_path / "hub.sock"))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


@contextlib.asynccontextmanager
async def started(*nodes: Node) -> AsyncIterator[None]:
    try:
        for n in nodes:
            await n.adapter.start()
        yield
    finally:
        for n in nodes:
            await asyncio.wait_for(n.adapter.close(), timeout(5))


async def test_without_a_hub_it_serves_locally_and_closes_at_once(tmp_path: Path) -> None:
    n = node(str(tmp_path / "none.sock"), request_timeout=timeout(0.2))
    async with started(n):
        assert not cluster(n).connected
        a = await n.connect("a", "r", pid="pa")
        await n.adapter.broadcast(NSP, event("e", 1), BroadcastOptions())
        assert a.received == [["e", 1]]  # at once, without an offset
        found = await n.adapter.fetch_sockets(NSP, BroadcastOptions())
        assert [info.sid for info in found] == ["a"]
        await n.adapter.add_sockets(NSP, BroadcastOptions(), ["s"])
        assert n.adapter.rooms_of(NSP, "a") == {"a", "r", "s"}
        assert await n.adapter.restore_session(NSP, "pa", None) is None
        start = time.monotonic()
    assert time.monotonic() - start < timeout(1)


async def test_a_restarted_hub_gets_every_worker_and_socket_back(hub: ClusterHub) -> None:
    n0, n1 = node(hub.path), node(hub.path)
    async with started(n0, n1):
        a = await n0.connect("a")
        b = await n1.connect("b", "r")
        await hub.close()
        await eventually(lambda: not cluster(n0).connected and not cluster(n1).connected)
        # The hub is gone: local delivery goes on, nothing waits.
        await n0.adapter.broadcast(NSP, event("alone"), BroadcastOptions())
        assert a.received == [["alone"]] and b.received == []

        again = ClusterHub(hub.path)
        await again.start()
        try:
            await eventually(lambda: cluster(n0).link.connects == cluster(n1).link.connects == 2)
            await n1.adapter.flush()
            assert again.memory.count == 2  # both sockets reported again
            await n0.adapter.broadcast(NSP, event("back"), BroadcastOptions(rooms=frozenset("r")))
            await eventually(lambda: [data[:1] for data in b.received] == [["back"]])
        finally:
            await again.close()


async def test_close_is_bounded_when_the_hub_does_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hub that accepts and never reads: the adapter drops its link past
    its byte bound (and logs it), and close() does not wait on it."""
    path = str(tmp_path / "deaf.sock")
    links: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        links.append(writer)
        writer.transport.pause_reading()

    deaf = await asyncio.start_unix_server(accept, path)
    n = node(path, request_timeout=timeout(0.5), max_queued=256 * 1024)
    try:
        async with started(n):
            await n.connect("a")
            for seq in range(100):  # 3 MB, far past the bound
                await n.adapter.broadcast(NSP, event("big", seq, "x" * 30_000), BroadcastOptions())
            assert "the cluster hub is not reading" in caplog.text
            start = time.monotonic()
        assert time.monotonic() - start < timeout(2)
    finally:
        deaf.close()
        for writer in links:
            writer.transport.abort()


async def test_a_request_does_not_wait_for_a_worker_that_died(hub: ClusterHub) -> None:
    n0, n1 = node(hub.path), node(hub.path)
    async with started(n0, n1):
        await n0.connect("a")
        b = await n1.connect("b")
        ack_id = n0.host.next_ack_id(NSP)
        packet = socketio.Packet.event("q", namespace=NSP, id=ack_id)
        replies = asyncio.ensure_future(
            n0.adapter.broadcast_with_ack(NSP, packet, BroadcastOptions(), timeout(30))
        )
        await eventually(lambda: bool(b.acks))
        peer = cluster(n1).link.peer
        assert peer is not None
        peer.abort()  # worker 1's link dies; its answer counts as given
        n0.host.sockets[NSP, "a"].acks[1].set_result("from a")
        assert await asyncio.wait_for(replies, timeout(2)) == ["from a"]


async def test_a_hub_that_sends_garbage_is_left_and_reached_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An oversize frame from the hub drops the link (the adapter does not
    buffer it), and so does a message of an unknown kind or with a field of
    the wrong type; the adapter connects again each time."""
    path = str(tmp_path / "bad.sock")
    garbage = [
        struct.pack(">I", 1 << 30),  # announces 1 GiB
        encode({"t": "nonsense"}),
        encode({"t": "bc", "nsp": "/", "data": "not a list"}),
    ]
    links: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        links.append(writer)
        if len(links) <= len(garbage):
            writer.write(garbage[len(links) - 1])

    fake = await asyncio.start_unix_server(accept, path)
    n = node(path)
    try:
        async with started(n):
            await eventually(lambda: cluster(n).link.connects == 4 and cluster(n).connected)
            assert caplog.text.count("bad message from the cluster hub") == 3
            assert "over the 16777216-byte bound" in caplog.text
            assert "unknown message kind 'nonsense'" in caplog.text
            assert "bc.data must be list[Any], not str" in caplog.text
    finally:
        fake.close()
        for writer in links:
            writer.transport.abort()


async def test_the_heartbeat_reports_what_changed_only(hub: ClusterHub) -> None:
    reported: list[str] = []
    handle = hub._handlers[Live]

    async def live(worker: Any, message: Live) -> None:
        reported.extend(entry["sid"] for entry in message.sockets)
        await handle(worker, message)

    hub._handlers[Live] = live
    n = node(hub.path, heartbeat=timeout(0.02))
    async with started(n):
        await n.connect("a", pid="pa")
        b = await n.connect("b", pid="pb")
        owned = hub.workers[cluster(n).node].owned.sockets
        for value in range(3):  # each change reaches the hub with a heartbeat
            b.data["v"] = value
            await eventually(lambda value=value: owned["/", "b"][1] == {"v": value})  # type: ignore[misc]
        assert reported.count("a") == 1  # unchanged: reported once, at connect
        assert reported.count("b") == 4
