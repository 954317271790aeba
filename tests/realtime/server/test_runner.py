"""tether.realtime.server.runner: the server's tasks and how handlers are called."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import sys
from typing import Any

import pytest

from helpers import timeout
from tether.realtime.server.runner import Runner, arity, is_async, maybe_await

# Runner.start runs a coroutine's first step at once (an eager task) on 3.12+.
eager = pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")


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


# -- start: a coroutine run at once, in a task only if it suspends ----------------------

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def runner() -> Runner:
    return Runner(logging.getLogger("test.runner"))


def start(tasks: Runner, coroutine: Any) -> asyncio.Task[Any]:
    """``tasks.start`` with a callback that only forgets the task."""
    return tasks.start(coroutine, tasks.forget)


@eager
async def test_start_finishes_at_once_without_a_task() -> None:
    tasks = runner()
    outer = asyncio.current_task()
    seen: list[Any] = []

    async def quick() -> None:
        VAR.set("quick")
        seen.append(asyncio.current_task())

    task = start(tasks, quick())
    assert task.done() and task not in tasks.tasks
    # Ran to its end before start() returned, in a task of its own as far as
    # it could tell (not the caller's), in a context of its own.
    assert seen == [task] and task is not outer
    assert asyncio.current_task() is outer
    assert VAR.get() == "unset"
    assert not tasks.tasks


@eager
async def test_start_continues_in_the_task_it_ran_in() -> None:
    tasks = runner()
    gate = asyncio.Event()
    seen: list[Any] = []

    async def slow() -> None:
        VAR.set("slow")
        seen.append(asyncio.current_task())
        await gate.wait()
        seen.append((asyncio.current_task(), VAR.get()))

    task = start(tasks, slow())
    assert not task.done() and task in tasks.tasks
    assert seen == [task]  # its first step ran already, as this very task
    assert VAR.get() == "unset"
    gate.set()
    await asyncio.wait_for(task, timeout(1))
    assert seen == [task, (task, "slow")]
    assert not tasks.tasks


@pytest.mark.skipif(not hasattr(asyncio, "timeout"), reason="asyncio.timeout is 3.11+")
async def test_a_timeout_entered_at_once_cancels_the_coroutine_only() -> None:
    tasks = runner()
    outer = asyncio.current_task()
    assert outer is not None
    results: list[str] = []

    async def bounded() -> None:
        try:
            async with asyncio.timeout(0):  # type: ignore[attr-defined]
                await asyncio.Event().wait()
        except TimeoutError:
            results.append("timed out")

    task = start(tasks, bounded())
    await asyncio.wait_for(task, timeout(1))
    assert results == ["timed out"]
    assert outer.cancelling() == 0  # type: ignore[attr-defined]


@eager
async def test_a_task_that_fails_at_once_is_returned_done() -> None:
    tasks = runner()

    async def fail() -> None:
        raise RuntimeError("boom")

    task = start(tasks, fail())
    # The caller takes the failure (the server logs it as the handler's).
    assert task.done() and isinstance(task.exception(), RuntimeError)
    assert not tasks.tasks


@eager
async def test_a_started_task_can_be_cancelled_and_drained() -> None:
    tasks = runner()
    ends: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ends.append(f"{name} cancelled")
            raise
        finally:
            ends.append(f"{name} finally")

    # Cancelled before its task took a step: the coroutine, started already,
    # is cancelled where it waits all the same, not left hanging.
    early = start(tasks, forever("early"))
    early.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(early, timeout(1))
    assert ends == ["early cancelled", "early finally"]
    # Cancelled while it waits, as drain() does: it sees CancelledError.
    late = start(tasks, forever("late"))
    await asyncio.sleep(0)  # its task's first step: now waiting on the event
    await tasks.drain(0)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(late, timeout(1))
    assert ends == ["early cancelled", "early finally", "late cancelled", "late finally"]
    assert not tasks.tasks


@eager
async def test_the_task_of_a_first_step_can_be_looked_at() -> None:
    # What a library may ask of the current task in the first step.
    tasks = runner()
    seen: list[Any] = []

    async def probe() -> None:
        task = asyncio.current_task()
        assert task is not None
        seen.append((task.done(), task.cancelled()))
        task.get_coro()
        repr(task)
        task.get_name()

    assert start(tasks, probe()).done()
    assert seen == [(False, False)]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="before 3.12 only")
async def test_start_makes_a_task_before_3_12() -> None:
    tasks = runner()
    seen: list[Any] = []

    async def quick() -> None:
        seen.append(asyncio.current_task())

    task = start(tasks, quick())
    assert task in tasks.tasks and seen == []
    await asyncio.wait_for(task, timeout(1))
    assert seen == [task] and not tasks.tasks


async def test_finished_is_called_once_when_a_started_task_ends_cancelled_or_not() -> None:
    tasks = runner()
    called: list[Any] = []
    release = asyncio.Event()

    async def waits() -> None:
        await release.wait()

    def finished(task: asyncio.Task[Any]) -> None:
        tasks.forget(task)
        called.append(task)

    ends = tasks.start(waits(), finished)
    cancelled = tasks.start(waits(), finished)
    assert not ends.done() and not cancelled.done()  # both wait: tasks on every Python
    assert set(tasks.tasks) == {ends, cancelled}
    cancelled.cancel()
    release.set()
    # Registered before asyncio.wait's own: run by the time it returns.
    await asyncio.wait([ends, cancelled], timeout=timeout(1))
    assert sorted(called, key=id) == sorted([ends, cancelled], key=id)
    assert not tasks.tasks  # each was forgotten by its one callback


@eager
async def test_finished_is_not_called_for_a_coroutine_that_ends_at_once() -> None:
    tasks = runner()
    called: list[Any] = []

    async def quick() -> None:
        pass

    assert tasks.start(quick(), called.append).done()
    await asyncio.sleep(0)  # one loop turn: a callback scheduled at its end would have run
    assert called == [] and not tasks.tasks
