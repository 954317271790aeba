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
# (Python 3.12+); before 3.12 a task is made for each coroutine, as before.
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
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(
        self, coroutine: Coroutine[Any, Any, None], done: Callable[[], object] | None = None
    ) -> asyncio.Task[None]:
        """A task that :meth:`drain` waits for; ``done`` is called when it ends."""
        return self._keep(asyncio.get_running_loop().create_task(coroutine), done)

    def start(
        self, coroutine: Coroutine[Any, Any, None], done: Callable[[], object] | None = None
    ) -> asyncio.Task[None] | None:
        """Python 3.12+: run ``coroutine`` at once up to where it first waits,
        as an eager task; ``None`` if it finished there (no task kept), else
        the task that runs the rest, which :meth:`drain` waits for. Before
        3.12: :meth:`spawn`. ``done`` is called when a task
        returned here ends (cancelled too), not when ``None`` is returned.

        ``coroutine`` should catch its own failures, as a task's would go
        unseen; what it raises in its first step is logged.
        """
        if not EAGER_START:
            return self.spawn(coroutine, done)
        task: asyncio.Task[None] = asyncio.Task(  # type: ignore[call-arg]
            coroutine, loop=asyncio.get_running_loop(), eager_start=True
        )
        if task.done():
            # The coroutines run here catch their own failures (handlers log
            # through log_failure); this one is retrieved and logged anyway.
            if not task.cancelled() and (exc := task.exception()) is not None:
                self.logger.error("a task failed", exc_info=exc)
            return None
        return self._keep(task, done)

    def _keep(
        self, task: asyncio.Task[None], done: Callable[[], object] | None = None
    ) -> asyncio.Task[None]:
        tasks = self.tasks
        tasks.add(task)
        if done is None:
            task.add_done_callback(tasks.discard)
        else:
            # One callback for both (one a task, per event): each is a loop callback.
            def finished(task: asyncio.Task[None]) -> None:
                tasks.discard(task)
                done()

            task.add_done_callback(finished)
        return task

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

    def log_failure(self, namespace: str, event: str, socket: object) -> None:
        """Log that handler ``event`` of ``namespace`` failed on ``socket``
        (from an ``except`` block: the traceback is logged). ``namespace`` is
        the one the handler is registered on (a dynamic parent, not the child
        a client named), so that clients cannot multiply the keys."""
        key = f"{namespace} {event}"
        self.limiter.exception(key, "handler %r of %s failed on %r", event, namespace, socket)

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
