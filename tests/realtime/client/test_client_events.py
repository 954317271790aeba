"""How a client's handlers run (:mod:`tether.realtime.client.events`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tether.realtime.client.events import CATCH_ALL, HandlerTable


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
