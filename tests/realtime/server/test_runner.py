"""tether.realtime.server.runner: the server's tasks and how handlers are called."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import pytest

from helpers import timeout
from tether.realtime.server.runner import Runner, arity, is_async, maybe_await


def plain(socket: Any, reason: str) -> None:
    pass


async def coroutine(socket: Any) -> None:
    pass


class Callable:
    async def __call__(self, socket: Any) -> None:
        pass


def test_arity_counts_positional_parameters() -> None:
    assert arity(plain) == 2
    assert arity(coroutine) == 1
    assert arity(lambda *args: None) == -1
    assert arity(functools.partial(plain, None)) == 1
    assert arity(print) == -1  # no signature to read: any number


def test_is_async_sees_coroutines_behind_partials_and_call() -> None:
    assert not is_async(plain)
    assert is_async(coroutine)
    assert is_async(functools.partial(coroutine))
    assert is_async(Callable())


async def test_maybe_await_takes_values_and_awaitables() -> None:
    assert await maybe_await(1) == 1

    async def two() -> int:
        return 2

    assert await maybe_await(two()) == 2


async def test_run_logs_a_failure_under_its_name(caplog: pytest.LogCaptureFixture) -> None:
    runner = Runner(logging.getLogger("test.runner"))

    async def fail() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, "test.runner"):
        runner.run(fail(), "saving")
        await runner.drain(timeout())
    assert "saving failed" in caplog.text
    assert not runner.tasks


async def test_drain_cancels_what_outlives_it() -> None:
    runner = Runner(logging.getLogger("test.runner"))
    task = runner.spawn(asyncio.sleep(10 * timeout()))
    await runner.drain(timeout(0.05))
    await asyncio.sleep(0)
    assert task.cancelled()
