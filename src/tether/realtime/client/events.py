"""The event handlers of a :class:`~tether.realtime.client.Client`, and how they run.

A handler is registered per namespace and event name (``"*"`` catches every
event without one of its own). A plain function runs at once; a coroutine
function runs as a task. Either way, the handler's return value answers the
server's acknowledgement when one was asked for, and an exception in a
handler is logged, never raised into the connection's receive loop.

What a server can make the client hold is bounded as on the server side
(:class:`~tether.limits.RealtimeLimits`, the server's
``realtime/server/connection.py``): at most ``max_handler_tasks`` handler
tasks run at once, holding packets of at most ``max_pending_bytes``
together (or one packet, whatever its size); later events wait, in arrival
order, and once the packets waiting count more than ``max_pending_bytes``
the table calls its ``overflow`` (the client then drops the session, as for
a transport error, and reconnects if it may).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ...limits import DEFAULT_REALTIME_LIMITS, RealtimeLimits

__all__ = ["CATCH_ALL", "Handler", "HandlerTable", "Reply"]

Handler = Callable[..., Any]
Reply = Callable[[Any], None]
"""Sends a handler's return value back as the acknowledgement it was asked for."""

CATCH_ALL = "*"
"""The event name of a handler that gets every event without a handler of its own."""


#: What a received event costs while it waits or runs, besides its bytes: the
#: decoded packet, its argument list and the waiting entry (as the server
#: counts it, realtime/server/connection.py).
PACKET_OVERHEAD = 256

# An event waiting for a slot: its handler and arguments (or the awaitable
# the handler already returned), its reply, and the bytes it counts.
_Waiting = tuple[Handler, tuple[Any, ...], "Reply | None", int, "Awaitable[Any] | None"]


def _is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004 (an instance's async __call__)
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


class HandlerTable:
    """Handlers by ``(namespace, event)``, run with errors logged to ``logger``,
    within ``limits``' max_handler_tasks and max_pending_bytes (see the module)."""

    def __init__(
        self,
        logger: logging.Logger,
        limits: RealtimeLimits = DEFAULT_REALTIME_LIMITS,
        overflow: Callable[[], None] | None = None,
    ) -> None:
        self.logger = logger
        self.max_tasks = limits.max_handler_tasks
        self.max_pending = limits.max_pending_bytes
        self.overflow = overflow
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._tasks: set[asyncio.Task[Any]] = set()  # coroutine handlers still running
        self._running_bytes = 0  # what the running handlers' events count
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self.pending = 0  # what the waiting events count
        self._settled: asyncio.Future[None] | None = None  # see settled()

    def register(self, namespace: str, event: str, handler: Handler) -> None:
        """Make ``handler`` the one for ``event`` in ``namespace`` (replacing any)."""
        self._handlers[(namespace, event)] = handler

    def get(self, namespace: str, event: str) -> Handler | None:
        """The handler of ``event`` in ``namespace``, or None."""
        return self._handlers.get((namespace, event))

    @property
    def running(self) -> int:
        """Coroutine handlers running."""
        return len(self._tasks)

    def emit(self, namespace: str, event: str, *args: Any) -> None:
        """Run the handler of a special event (``"connect"``, ``"disconnect"``...), if any."""
        self.call(self.get(namespace, event), *args)

    def dispatch(
        self,
        namespace: str,
        event: str,
        args: Sequence[Any],
        reply: Reply | None,
        size: int = 0,
    ) -> bool:
        """Run the handler of a server event (``size``: its packet's bytes), or
        the catch-all one with the event's name first; whether there was one."""
        handler = self.get(namespace, event)
        if handler is None and (catch_all := self.get(namespace, CATCH_ALL)):
            handler, args = catch_all, [event, *args]
        if handler is None:
            return False
        self.call(handler, *args, reply=reply, size=size)
        return True

    def call(
        self, handler: Handler | None, *args: Any, reply: Reply | None = None, size: int = 0
    ) -> None:
        """Run a handler: a plain function now, a coroutine function as a task;
        behind the events already waiting, and as a slot allows."""
        if handler is None:
            return
        cost = size + PACKET_OVERHEAD
        if self._waiting or (_is_async(handler) and not self._may_start(cost)):
            self._wait((handler, args, reply, cost, None))
            return
        left = self._run(handler, args, reply, cost, None)
        if left is not None:  # a plain function that returned an awaitable, no slot free
            self._wait((handler, args, reply, cost, left))

    def _may_start(self, cost: int) -> bool:
        running = len(self._tasks)
        if not running:
            return True
        return running < self.max_tasks and self._running_bytes + cost <= self.max_pending

    def _wait(self, entry: _Waiting) -> None:
        self._waiting.append(entry)
        self.pending += entry[3]
        if self.pending > self.max_pending:
            self.logger.error(
                "more than max_pending_bytes=%d of events waiting for a handler slot "
                "(max_handler_tasks=%d): dropping the connection",
                self.max_pending,
                self.max_tasks,
            )
            self.drop_waiting()
            if self.overflow is not None:
                self.overflow()

    def drop_waiting(self) -> None:
        """Forget the events waiting for a slot (their handlers never run)."""
        for entry in self._waiting:
            started = entry[4]
            if inspect.iscoroutine(started):
                started.close()  # created, never to run: no "never awaited" warning
        self._waiting.clear()
        self.pending = 0
        self._wake_settled()

    async def settled(self) -> None:
        """Wait until no event waits for a slot: every handler so far has started."""
        while self._waiting:
            if self._settled is None or self._settled.done():
                self._settled = asyncio.get_running_loop().create_future()
            await self._settled

    def _wake_settled(self) -> None:
        if self._settled is not None and not self._settled.done():
            self._settled.set_result(None)

    def _run(
        self,
        handler: Handler,
        args: tuple[Any, ...],
        reply: Reply | None,
        cost: int,
        started: Awaitable[Any] | None,
    ) -> Awaitable[Any] | None:
        """Start a handler; the awaitable it returned if that needs a slot
        and none is free (a plain function returning one), else None."""
        if started is None:
            try:
                result = handler(*args)
            except Exception:
                self.logger.exception("error in handler %s", getattr(handler, "__name__", handler))
                return None
            if not inspect.isawaitable(result):
                if reply is not None:
                    reply(result)
                return None
            if not self._may_start(cost):
                return result
            started = result
        task = asyncio.get_running_loop().create_task(self._finish(handler, started, reply))
        self._tasks.add(task)
        self._running_bytes += cost
        task.add_done_callback(functools.partial(self._done, cost))
        return None

    def _done(self, cost: int, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._running_bytes -= cost
        waiting = self._waiting
        while waiting:
            handler, args, reply, cost, started = waiting[0]
            # A plain function's event needs no slot: only its turn.
            needs_slot = started is not None or _is_async(handler)
            if needs_slot and not self._may_start(cost):
                return
            waiting.popleft()
            self.pending -= cost
            left = self._run(handler, args, reply, cost, started)
            if left is not None:  # it returned an awaitable after all: first in line
                waiting.appendleft((handler, args, reply, cost, left))
                self.pending += cost
                return
        self._wake_settled()

    async def _finish(self, handler: Handler, result: Awaitable[Any], reply: Reply | None) -> None:
        try:
            value = await result
        except Exception:
            self.logger.exception("error in handler %s", getattr(handler, "__name__", handler))
            return
        if reply is not None:
            reply(value)
