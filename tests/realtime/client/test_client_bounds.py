"""What a server can make tether's realtime client hold: at most
``max_handler_tasks`` handlers at once, and ``max_pending_bytes`` of events
waiting for one, past which the client drops the session (a real tether
server sending faster than the client's handlers finish)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import pytest

from helpers import timeout
from tether import realtime
from tether.realtime.client import Client

T = TypeVar("T")
EVENTS = 60


async def within(awaitable: Awaitable[T], units: float = 3) -> T:
    return await asyncio.wait_for(awaitable, timeout(units))


@pytest.fixture
async def url() -> AsyncIterator[str]:
    server = realtime.Server()

    @server.on("flood")
    async def flood(socket: realtime.Socket, count: int, size: int) -> int:
        for n in range(count):
            await socket.emit("item", n, "x" * size)
        return count  # the ack comes after every item

    async with realtime.serve(server, "127.0.0.1", 0) as http:
        yield f"http://127.0.0.1:{http.port}"


class Blocked:
    """An async handler that holds every event until released."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.done: list[int] = []
        self.release = asyncio.Event()
        self.count = asyncio.Condition()

    async def handler(self, n: int, text: str) -> None:
        async with self.count:
            self.started.append(n)
            self.count.notify_all()
        await self.release.wait()
        async with self.count:
            self.done.append(n)
            self.count.notify_all()

    async def until(self, test: object) -> None:
        async with self.count:
            await within(self.count.wait_for(test))  # type: ignore[arg-type]


async def test_handlers_run_max_handler_tasks_at_a_time_and_all_in_order(url: str) -> None:
    limits = realtime.RealtimeLimits(max_handler_tasks=3, max_pending_bytes=1 << 20)
    client = Client(reconnection=False, limits=limits)
    blocked = Blocked()
    client.on("item", blocked.handler)
    await within(client.connect(url))
    try:
        # The ack comes after every item: they all arrived, 3 run, the rest wait.
        assert await within(client.emit_with_ack("flood", EVENTS, 100)) == EVENTS
        await blocked.until(lambda: len(blocked.started) == 3)
        assert blocked.started == [0, 1, 2] and client.connected
        blocked.release.set()
        await blocked.until(lambda: len(blocked.done) == EVENTS)
        assert blocked.started == list(range(EVENTS))
    finally:
        await client.disconnect()


async def test_too_many_events_waiting_drop_the_session(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    limits = realtime.RealtimeLimits(max_handler_tasks=2, max_pending_bytes=8192)
    client = Client(reconnection=False, limits=limits, logger=logging.getLogger("test.bounds"))
    blocked = Blocked()
    client.on("item", blocked.handler)
    reasons: asyncio.Queue[str] = asyncio.Queue()
    client.on("disconnect", reasons.put_nowait)
    await within(client.connect(url))
    try:
        with caplog.at_level(logging.ERROR, "test.bounds"):
            # 60 events of ~300 bytes: 2 run, ~14 fit in 8 KiB, the next one is too many.
            await client.emit("flood", EVENTS, 300)
            assert await within(reasons.get()) == "forced close"
            await within(client.wait())
        assert "more than max_pending_bytes=8192" in caplog.text
        assert blocked.started == [0, 1]  # the waiting ones were dropped, never run
        assert not client.connected
    finally:
        blocked.release.set()
        await client.disconnect()
