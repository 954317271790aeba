"""How a client's handlers run (:mod:`tether.realtime.client.events`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from helpers import timeout
from tether.limits import RealtimeLimits
from tether.realtime.client.events import CATCH_ALL, PACKET_OVERHEAD, HandlerTable


async def test_plain_and_coroutine_handlers_answer_the_ack() -> None:
    table = HandlerTable(logging.getLogger("test"))
    replies: list[Any] = []

    async def later(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    table.register("/", "now", lambda x: x + 1)
    table.register("/", "later", later)
    assert table.dispatch("/", "now", [1], replies.append)
    assert table.dispatch("/", "later", [5], replies.append)
    assert replies == [2]
    await asyncio.sleep(0.01)
    assert replies == [2, 10]


async def test_catch_all_gets_the_event_name_first() -> None:
    table = HandlerTable(logging.getLogger("test"))
    seen: list[tuple[Any, ...]] = []
    assert not table.dispatch("/", "news", ["a"], None)
    table.register("/", CATCH_ALL, lambda *args: seen.append(args))
    assert table.dispatch("/", "news", ["a"], None)
    assert not table.dispatch("/other", "news", ["a"], None)
    assert seen == [("news", "a")]


async def test_a_failing_handler_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    table = HandlerTable(logging.getLogger("test.events"))

    def broken() -> None:
        raise RuntimeError("boom")

    async def broken_later() -> None:
        raise RuntimeError("boom later")

    table.register("/", "connect", broken)
    table.register("/", "disconnect", broken_later)
    with caplog.at_level(logging.ERROR, "test.events"):
        table.emit("/", "connect")
        table.emit("/", "disconnect")
        table.emit("/", "no handler")
        await asyncio.sleep(0.01)
    assert [r.message for r in caplog.records] == [
        "error in handler broken",
        "error in handler broken_later",
    ]


class Gate:
    """Coroutine handlers that each wait for their own release; their starts
    and ends are waited on as events, with timeouts."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self._started: dict[Any, asyncio.Event] = {}
        self._release: dict[Any, asyncio.Event] = {}
        self._finished: dict[Any, asyncio.Event] = {}

    def _event(self, table: dict[Any, asyncio.Event], key: Any) -> asyncio.Event:
        return table.setdefault(key, asyncio.Event())

    async def handler(self, key: Any) -> Any:
        self.started.append(key)
        self._event(self._started, key).set()
        await self._event(self._release, key).wait()
        self._event(self._finished, key).set()
        return key

    async def wait_started(self, key: Any) -> None:
        await asyncio.wait_for(self._event(self._started, key).wait(), timeout())

    async def open(self, key: Any) -> None:
        """Let ``key``'s handler finish, and wait until its task is done."""
        self._event(self._release, key).set()
        await asyncio.wait_for(self._event(self._finished, key).wait(), timeout())
        for _ in range(3):  # the task's return, then its done callbacks
            await asyncio.sleep(0)


async def test_at_most_max_tasks_handlers_run_and_the_rest_wait_in_order() -> None:
    table = HandlerTable(
        logging.getLogger("test"), RealtimeLimits(max_handler_tasks=2, max_pending_bytes=1 << 20)
    )
    gate = Gate()
    plain: list[Any] = []
    replies: list[Any] = []
    table.register("/", "slow", gate.handler)
    table.register("/", "quick", plain.append)
    for n in range(4):
        table.dispatch("/", "slow", [n], replies.append, 100)
    # A plain function's event behind waiting ones waits its turn too.
    table.dispatch("/", "quick", ["after 3"], None, 10)
    await gate.wait_started(1)
    assert gate.started == [0, 1] and table.running == 2
    assert table.pending == 2 * (100 + PACKET_OVERHEAD) + 10 + PACKET_OVERHEAD
    assert plain == []
    await gate.open(1)
    await gate.wait_started(2)
    assert gate.started == [0, 1, 2] and table.running == 2
    await gate.open(0)
    await gate.wait_started(3)
    # 3 started, then the plain handler ran: in the order the events came.
    assert gate.started == [0, 1, 2, 3] and plain == ["after 3"]
    await gate.open(2)
    await gate.open(3)
    assert replies == [1, 0, 2, 3] and table.pending == 0 and table.running == 0


async def test_bytes_bound_the_running_handlers_too() -> None:
    table = HandlerTable(
        logging.getLogger("test"), RealtimeLimits(max_handler_tasks=10, max_pending_bytes=1000)
    )
    gate = Gate()
    table.register("/", "e", gate.handler)
    table.dispatch("/", "e", ["big"], None, 900)  # alone it runs, whatever its size
    table.dispatch("/", "e", ["next"], None, 100)  # 900 + 100 + two overheads > 1000
    await gate.wait_started("big")
    assert gate.started == ["big"] and table.pending == 100 + PACKET_OVERHEAD
    await gate.open("big")
    await gate.wait_started("next")
    await gate.open("next")
    assert table.running == 0


async def test_too_many_bytes_waiting_drop_them_and_call_overflow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    overflows: list[None] = []
    table = HandlerTable(
        logging.getLogger("test.events"),
        RealtimeLimits(max_handler_tasks=1, max_pending_bytes=3 * PACKET_OVERHEAD),
        overflow=lambda: overflows.append(None),
    )
    gate = Gate()
    table.register("/", "e", gate.handler)
    with caplog.at_level(logging.ERROR, "test.events"):
        for n in range(4):  # one runs, three wait: 3 overheads, not more
            table.dispatch("/", "e", [n], None, 0)
        assert overflows == [] and table.pending == 3 * PACKET_OVERHEAD
        table.dispatch("/", "e", [4], None, 0)
    assert overflows == [None]
    assert table.pending == 0
    assert "more than max_pending_bytes=768" in caplog.text
    await gate.open(0)  # the running handler finishes; the dropped ones never run
    assert gate.started == [0] and table.running == 0


async def test_a_plain_function_returning_an_awaitable_waits_for_a_slot() -> None:
    table = HandlerTable(
        logging.getLogger("test"), RealtimeLimits(max_handler_tasks=1, max_pending_bytes=1 << 20)
    )
    gate = Gate()
    table.register("/", "slow", gate.handler)
    table.register("/", "wrapped", lambda key: gate.handler(key))  # not a coroutine function
    table.dispatch("/", "slow", ["a"], None, 0)
    await gate.wait_started("a")
    table.dispatch("/", "wrapped", ["b"], None, 0)
    assert table.running == 1 and table.pending == PACKET_OVERHEAD
    await gate.open("a")
    await gate.wait_started("b")
    await gate.open("b")
    assert gate.started == ["a", "b"] and table.running == 0
