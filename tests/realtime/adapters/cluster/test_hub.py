"""The hub, driven by raw workers over its real Unix socket: what it relays,
what it keeps for recovery, and its bounds (a worker that misbehaves or does
not read loses its own link, the others carry on)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helpers import timeout
from realtime.sio_helpers import eventually
from tether.realtime.adapters.cluster import ClusterHub
from tether.realtime.adapters.cluster.wire import HEAD, decode, encode, frame_length

REC = {"window": 60, "bytes": 1 << 20, "sessions": 100}


class RawWorker:
    """A worker speaking frames by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def join(
        cls, hub: ClusterHub, node: str, rec: dict[str, Any] | None = None, **options: Any
    ) -> RawWorker:
        reader, writer = await asyncio.open_unix_connection(hub.path, **options)
        worker = cls(reader, writer)
        worker.send({"t": "hello", "node": node, "rec": rec})
        await eventually(lambda: node in hub.nodes)
        return worker

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(encode(message))

    async def recv(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            head = await self.reader.readexactly(HEAD)
            return decode(await self.reader.readexactly(frame_length(head)))

        return await asyncio.wait_for(read(), timeout(2))

    async def recv_kind(self, kind: str) -> dict[str, Any]:
        """The next message of ``kind`` (others before it are skipped)."""
        while True:
            message = await self.recv()
            if message["t"] == kind:
                return message

    async def closed(self) -> bool:
        """Whether the hub closed this link (read to the end)."""
        try:
            while await asyncio.wait_for(self.reader.read(1 << 16), timeout(2)):
                pass
        except ConnectionResetError:
            pass
        return True

    def kill(self) -> None:
        self.writer.transport.abort()


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[ClusterHub]:
    hub = ClusterHub(str(tmp_path / "hub.sock"), max_frame=64 * 1024, max_queued=256 * 1024)
    await hub.start()
    try:
        yield hub
    finally:
        await asyncio.wait_for(hub.close(), timeout(5))


def bc(data: list[Any], rooms: list[str] | None = None, **more: Any) -> dict[str, Any]:
    """A broadcast as it travels (fields at their default left out)."""
    message: dict[str, Any] = {"t": "bc", "nsp": "/", "data": data}
    if rooms:
        message["o"] = {"rooms": rooms}
    return {**message, **more}


async def test_broadcasts_and_server_events_go_to_the_other_workers(hub: ClusterHub) -> None:
    a, b, c = [await RawWorker.join(hub, name) for name in "abc"]
    a.send(bc(["e", b"\x01"], ["r"]))
    a.send({"t": "se", "event": "ping", "args": [1]})
    a.send(bc(["kept"], store=True))  # recovery off: no offset, to everyone
    for worker in (b, c):
        assert await worker.recv() == bc(["e", b"\x01"], ["r"])
        assert await worker.recv() == {"t": "se", "event": "ping", "args": [1]}
        assert await worker.recv() == bc(["kept"])
    assert await a.recv() == bc(["kept"])
    assert sorted(hub.nodes) == ["a", "b", "c"]


@pytest.mark.parametrize(
    "bad",
    [
        struct.pack(">I", 64 * 1024 + 1),  # over max_frame: refused from its prefix
        struct.pack(">I", 3) + b"{x}",  # not JSON
        encode({"t": "nonsense"}),
        encode({"t": "bc", "nsp": "/", "data": "not a list"}),
    ],
    ids=["oversize", "not-json", "unknown-kind", "ill-typed"],
)
async def test_a_bad_frame_drops_that_worker_only(
    hub: ClusterHub, bad: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = [await RawWorker.join(hub, name) for name in "abc"]
    a.writer.write(bad)
    assert await a.closed()
    await eventually(lambda: sorted(hub.nodes) == ["b", "c"])
    assert "dropping the link of worker a" in caplog.text
    b.send(bc(["still", "here"]))
    assert await c.recv() == bc(["still", "here"])


async def test_a_worker_that_never_reads_is_dropped_past_the_byte_bound(
    hub: ClusterHub, caplog: pytest.LogCaptureFixture
) -> None:
    sender = await RawWorker.join(hub, "sender")
    reader = await RawWorker.join(hub, "reader")
    # The stuck worker reads nothing, with small socket buffers on its side.
    stuck = await RawWorker.join(hub, "stuck", limit=1024)
    sock = stuck.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.reader._transport.pause_reading()  # type: ignore[attr-defined]
    count, chunk = 200, "x" * (32 * 1024)  # 6.4 MB: far past the 256 KiB bound
    got: list[int] = []
    for seq in range(count):  # the reading worker keeps up, one message at a time
        sender.send(bc(["big", seq, chunk]))
        got.append((await reader.recv())["data"][1])
    assert got == list(range(count))  # the reading worker lost nothing
    await eventually(lambda: "stuck" not in hub.nodes)
    assert "worker stuck is not reading" in caplog.text
    assert sorted(hub.nodes) == ["reader", "sender"]


async def test_a_request_counts_a_worker_that_dies_as_answered(hub: ClusterHub) -> None:
    a, b, c = [await RawWorker.join(hub, name) for name in "abc"]
    a.send({"t": "ack", "id": "q1", "nsp": "/", "o": {}, "timeout": 30, "data": ["q"]})
    assert await a.recv() == {"t": "sent", "id": "q1", "n": 2}
    assert (await b.recv())["id"] == (await c.recv())["id"] == "q1"
    b.send({"t": "rep", "id": "q1", "receipt": True, "expect": 2})
    b.send({"t": "rep", "id": "q1", "receipt": False, "expect": 0, "items": ["from b"]})
    assert (await a.recv())["expect"] == 2
    assert (await a.recv())["items"] == ["from b"]
    c.kill()  # before any answer: its receipt, and nothing more
    assert await a.recv() == {"t": "rep", "id": "q1", "receipt": True}
    b.kill()  # owing one reply
    assert await a.recv() == {"t": "rep", "id": "q1", "receipt": False, "expect": -1}
    await eventually(lambda: not hub._requests)


async def test_a_dead_worker_s_sessions_are_restored_once_with_what_they_missed(
    hub: ClusterHub,
) -> None:
    w1 = await RawWorker.join(hub, "w1", REC)
    w2 = await RawWorker.join(hub, "w2", REC)
    live = {"nsp": "/", "sid": "a", "pid": "pa", "rooms": ["r"], "data": {"x": 1}}
    w1.send({"t": "live", "sockets": [live]})
    w2.send(bc(["seen"], ["r"], store=True))
    first = await w1.recv()
    assert first["data"][:1] == ["seen"]
    offset = first["off"]
    w1.kill()  # it persists nothing
    await eventually(lambda: "w1" not in hub.nodes)
    missed: list[tuple[list[Any], list[str] | None]] = [
        (["m", 1], ["r"]),
        (["elsewhere"], ["o"]),
        (["m", b"\x00\x02"], None),  # binary attachments are kept too
    ]
    for data, rooms in missed:
        w2.send(bc(data, rooms, store=True))
    w2.send({"t": "restore", "id": "1", "nsp": "/", "pid": "pa", "offset": offset})
    reply = await w2.recv_kind("restored")
    session = reply["session"]
    assert (session["sid"], session["rooms"], session["data"]) == ("a", ["r"], {"x": 1})
    assert [data[:2] for data in reply["missed"]] == [["m", 1], ["m", b"\x00\x02"]]
    offsets = [data[-1] for data in reply["missed"]]
    assert offsets == sorted(offsets, key=lambda o: int(o.rpartition("-")[2])) > [offset]
    w2.send({"t": "restore", "id": "2", "nsp": "/", "pid": "pa", "offset": offset})
    assert "session" not in await w2.recv_kind("restored")  # once: none


async def test_a_sid_of_any_worker_is_a_taken_room(hub: ClusterHub) -> None:
    w1 = await RawWorker.join(hub, "w1")
    w2 = await RawWorker.join(hub, "w2")
    w1.send({"t": "live", "sockets": [{"nsp": "/", "sid": "a", "rooms": []}]})
    w1.send({"t": "flush", "id": "0"})
    await w1.recv_kind("flushed")
    w2.send({"t": "check", "id": "1", "nsp": "/", "sid": "b", "rooms": ["free", "a"]})
    assert (await w2.recv_kind("checked"))["taken"] == "a"
    w1.send({"t": "gone", "sockets": [["/", "a"]]})
    w1.send({"t": "flush", "id": "2"})
    await w1.recv_kind("flushed")
    w2.send({"t": "check", "id": "3", "nsp": "/", "sid": "b", "rooms": ["a"]})
    assert "taken" not in await w2.recv_kind("checked")  # None: left out


async def test_close_is_bounded_with_a_worker_that_does_not_read(
    hub: ClusterHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stuck = await RawWorker.join(hub, "stuck")
    other = await RawWorker.join(hub, "other")
    for _ in range(4):  # under the bound, but more than the socket buffers hold
        other.send(bc(["x" * 60_000]))
    await other.writer.drain()
    start = time.monotonic()
    await asyncio.wait_for(hub.close(), timeout(2))
    assert time.monotonic() - start < timeout(1)
    assert await stuck.closed()
    assert not Path(hub.path).exists()


async def test_a_worker_back_after_a_lost_link_takes_its_sockets_back(hub: ClusterHub) -> None:
    """Its sockets were saved when its link dropped; reported live again,
    they are no longer restorable elsewhere (that would make two of one)."""
    live = {"nsp": "/", "sid": "a", "pid": "pa", "rooms": [], "data": {}}
    w1 = await RawWorker.join(hub, "w1", REC)
    w1.send({"t": "live", "sockets": [live]})
    w1.kill()
    await eventually(lambda: "w1" not in hub.nodes)
    assert "pa" in hub.memory.inner._sessions
    again = await RawWorker.join(hub, "w1", REC)
    again.send({"t": "live", "sockets": [live]})
    again.send({"t": "restore", "id": "1", "nsp": "/", "pid": "pa", "offset": None})
    assert "session" not in await again.recv_kind("restored")


async def test_a_worker_on_a_new_link_before_its_old_one_closed_keeps_its_sockets(
    hub: ClusterHub,
) -> None:
    live = {"nsp": "/", "sid": "a", "pid": "pa", "rooms": ["r"], "data": {}}
    old = await RawWorker.join(hub, "w1", REC)
    old.send({"t": "live", "sockets": [live]})
    old.send({"t": "flush", "id": "0"})
    await old.recv_kind("flushed")
    new = await RawWorker.join(hub, "w1", REC)  # the hub drops the old link
    assert await old.closed()
    new.send({"t": "flush", "id": "1"})
    await new.recv_kind("flushed")
    assert "pa" not in hub.memory.inner._sessions  # not saved as an orphan
    assert hub.memory.inner.rooms_of("/", "a") == {"a", "r"}
    assert hub.memory.count == 1


async def test_a_second_hub_does_not_steal_a_live_hub_s_path(hub: ClusterHub) -> None:
    worker = await RawWorker.join(hub, "w")
    with pytest.raises(OSError, match="listens at"):
        await ClusterHub(hub.path).start()
    worker.send({"t": "flush", "id": "1"})
    assert (await worker.recv())["t"] == "flushed"  # the first hub still serves


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening: what a dead hub leaves
    stale.close()
    hub = ClusterHub(str(path))
    await hub.start()
    try:
        await RawWorker.join(hub, "w")
    finally:
        await hub.close()
