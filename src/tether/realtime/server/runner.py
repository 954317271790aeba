"""The tasks of a Socket.IO server, and how it calls application code.

Handlers, middleware and admissions run in tasks that :meth:`Runner.drain`
waits for at shutdown. A client can make application code fail again and
again (a handler raising on its arguments): failures are logged through one
:class:`~tether.ratelimit.LogLimiter`, one traceback per key per interval.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ...ratelimit import LogLimiter

__all__ = ["EAGER_START", "Handler", "Runner", "arity", "is_async", "maybe_await"]

Handler = Callable[..., Any]

# Runner.start runs a coroutine's first step at once, as an eager task
# (Python 3.12+); before 3.12 a task is made for each coroutine.
# (Doing by hand what eager tasks do would mean relying on the C Task's
# internals, which crash when a half-made task is inspected.)
EAGER_START = sys.version_info >= (3, 12)


async def maybe_await(value: Any) -> Any:
    """``value``, awaited if it is awaitable (handlers may be plain or async)."""
    if inspect.isawaitable(value):
        return await value
    return value


def is_async(handler: Handler) -> bool:
    """Whether calling ``handler`` starts a coroutine (an ``async def``, a
    partial of one, or an object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 (the method, not callable())
    )


def arity(handler: Handler) -> int:
    """How many positional arguments a handler takes (-1: any number)."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return -1
    count = 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return -1
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class Runner:
    """The tasks of one server and the rate-limited log of their failures."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        #: Failures a client can repeat at will: one traceback per key per
        #: interval, then counts.
        self.limiter = LogLimiter(logger)
        #: The tasks running now (:meth:`drain` waits for them).
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self, coroutine: Coroutine[Any, Any, None], done: Callable[[], object] | None = None
    ) -> asyncio.Task[None]:
        """A task that :meth:`drain` waits for; ``done`` is called when it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        tasks = self.tasks
        tasks.add(task)
        if done is None:
            task.add_done_callback(tasks.discard)
        else:
            # One callback for both: each is a loop callback.
            def finished(task: asyncio.Task[None]) -> None:
                tasks.discard(task)
                done()

            task.add_done_callback(finished)
        return task

    def spawn_after(
        self,
        previous: asyncio.Task[None] | None,
        coroutine: Coroutine[Any, Any, None],
        done: Callable[[], object],
    ) -> asyncio.Task[None]:
        """:meth:`spawn`, with ``coroutine`` started only once ``previous``
        (if any) has ended, whatever its outcome: a chain of sends that never
        overtake each other (emit_nowait's, through an adapter that waits)."""

        async def chained() -> None:
            try:
                if previous is not None and not previous.done():
                    await asyncio.wait((previous,))  # its failure is its own
            except BaseException:
                coroutine.close()
                raise
            await coroutine

        return self.spawn(chained(), done)

    def start(
        self,
        coroutine: Coroutine[Any, Any, Any],
        finished: Callable[[asyncio.Task[Any]], object],
    ) -> asyncio.Task[Any]:
        """A task for ``coroutine``, with one done callback, ``finished``,
        that must itself :meth:`forget` the task (one callback per task
        rather than two: each is a loop callback, and this runs per event).

        Python 3.12+: the coroutine runs at once up to where it first waits,
        as an eager task. A task returned done has finished there: it was
        never kept, and ``finished`` is not called; the caller takes its
        result. Before 3.12 a task is made and kept, its first step to come.
        """
        if EAGER_START:
            task: asyncio.Task[Any] = asyncio.Task(  # type: ignore[call-arg]
                coroutine, loop=asyncio.get_running_loop(), eager_start=True
            )
            if task.done():
                return task
        else:
            task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(finished)
        return task

    def forget(self, task: asyncio.Task[Any]) -> None:
        """Stop keeping ``task`` (for the ``finished`` callback of :meth:`start`)."""
        self.tasks.discard(task)

    def run(self, coroutine: Awaitable[Any], what: str = "task") -> None:
        """Run ``coroutine`` in a task; a failure is logged under ``what`` (a
        name of ours, never one a client chose: it keys the rate limit)."""

        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                self.limiter.exception(what, "%s failed", what)

        self.spawn(guarded())

    def log_failure(
        self, namespace: str, event: str, socket: object, failure: BaseException | None = None
    ) -> None:
        """Log that handler ``event`` of ``namespace`` failed on ``socket``
        with ``failure`` (by default the exception being handled), and its
        traceback. ``namespace`` is the one the handler is registered on (a
        dynamic parent, not the child a client named), so that clients cannot
        multiply the keys."""
        key = f"{namespace} {event}"
        self.limiter.log(
            logging.ERROR,
            key,
            "handler %r of %s failed on %r",
            event,
            namespace,
            socket,
            exc_info=True if failure is None else failure,
        )

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the running tasks, then cancel the rest and
        wait up to ``timeout`` again for them to end."""
        tasks = set(self.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:  # their cleanup runs (a handler may ignore the cancel: bounded)
                await asyncio.wait(pending, timeout=timeout)
