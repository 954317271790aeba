"""The tasks of a Socket.IO server, and how it calls application code.

Handlers, middleware and admissions run in tasks that :meth:`Runner.drain`
waits for at shutdown. A client can make application code fail again and
again (a handler raising on its arguments): failures are logged through one
:class:`~tether.ratelimit.LogLimiter`, one traceback per key per interval.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from ...ratelimit import LogLimiter

__all__ = ["Handler", "Runner", "arity", "is_async", "maybe_await"]

Handler = Callable[..., Any]

# How Runner.start runs a coroutine's first step as its own task would: on
# 3.12+ an eager task (Task(eager_start=True)); on 3.10-3.11 by hand, with
# the C Task allocated first (not yet initialised, so not yet scheduled) and
# made the current task for that step, then initialised on the rest of the
# coroutine only if it waits. Elsewhere (no C tasks): a task each.
_EAGER_START = sys.version_info >= (3, 12)
_c_tasks = getattr(asyncio.tasks, "_CTask", None)
_BY_HAND = not _EAGER_START and asyncio.Task is _c_tasks
_current_task = asyncio.tasks.current_task
_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task


class _EagerTask(asyncio.Task):  # type: ignore[type-arg]
    """The task of :meth:`Runner.start`: allocated before its first step (the
    current task during it) and initialised after it, only if the coroutine
    waits. Until then its C fields are empty: what would read them is answered
    here instead (``get_coro()`` would crash).

    Used before Python 3.12 only (3.12 has eager tasks), which has no
    ``Task.get_context()``."""

    __slots__ = ()

    def get_coro(self) -> Any:
        return self._coro  # type: ignore[attr-defined]  # None until initialised

    def __repr__(self) -> str:
        if self._loop is None:
            return f"<{type(self).__name__} starting>"
        return super().__repr__()


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, Any]:
    """Drive ``coroutine``, which has run up to yielding ``waiting`` (what it
    awaits), from a task: what the task sends or throws goes on to it.

    Primed by :meth:`Runner.start` up to the first ``yield``, so that the
    task's first step reaches the coroutine even when it is a ``throw`` (the
    task cancelled before it ran): ``waiting`` is handed to the task after.
    """
    started = False  # the task's first step has come
    step: Callable[[Any], Any]
    while True:
        try:
            sent = yield (waiting if started else None)
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # CancelledError included: the coroutine decides
            step, value = coroutine.throw, exc
        else:
            if not started:  # the task's first step: now it waits on ``waiting``
                started = True
                continue
            step, value = coroutine.send, sent
        started = True
        try:
            waiting = step(value)
        except StopIteration as stop:
            return stop.value


async def _rest(coroutine: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    return await _resume(coroutine, waiting)


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

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task that :meth:`drain` waits for."""
        return self._keep(asyncio.get_running_loop().create_task(coroutine))

    def start(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coroutine`` at once up to where it first waits, as the first
        step of its own task; ``None`` if it finished there (no task made),
        else the task that runs the rest, which :meth:`drain` waits for.

        Within that step the coroutine sees what a task of its own shows it
        (``asyncio.current_task()`` is the task that goes on with it, and a
        copy of the caller's context), as in an eager task of Python 3.12.
        What it raises there is logged (``CancelledError`` ends it quietly);
        it should catch its own failures, as a task's would go unseen.
        """
        loop = asyncio.get_running_loop()
        if _EAGER_START:
            task: asyncio.Task[None] = asyncio.Task(  # type: ignore[call-arg]
                coroutine, loop=loop, eager_start=True
            )
            if task.done():
                return None
            return self._keep(task)
        if not _BY_HAND:  # pragma: no cover - CPython has C tasks
            return self.spawn(coroutine)
        task = _EagerTask.__new__(_EagerTask)
        context = contextvars.copy_context()
        caller = _current_task(loop)
        if caller is not None:
            _leave_task(loop, caller)
        _enter_task(loop, task)
        try:
            waiting = context.run(coroutine.send, None)
        except StopIteration:
            return None
        except asyncio.CancelledError:
            return None
        except Exception:
            self.limiter.exception("task", "a task failed")
            return None
        finally:
            _leave_task(loop, task)
            if caller is not None:
                _enter_task(loop, caller)
        # Initialised (and scheduled) on the rest: whatever took this task as
        # the current one in the first step (asyncio.timeout) now has it.
        rest = _rest(coroutine, waiting)
        rest.send(None)  # primed (see _resume)
        # In the context of the first step: the task runs the rest in a copy of it.
        context.run(asyncio.Task.__init__, task, rest, loop=loop)
        return self._keep(task)

    def _keep(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
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
        """Wait up to ``timeout`` for the running tasks, then cancel the rest."""
        tasks = set(self.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
