"""The event handlers of a :class:`~tether.realtime.client.Client`, and how they run.

A handler is registered per namespace and event name (``"*"`` catches every
event without one of its own). A plain function runs at once; a coroutine
function runs as a task. Either way, the handler's return value answers the
server's acknowledgement when one was asked for, and an exception in a
handler is logged, never raised into the connection's receive loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["CATCH_ALL", "Handler", "HandlerTable", "Reply"]

Handler = Callable[..., Any]
Reply = Callable[[Any], None]
"""Sends a handler's return value back as the acknowledgement it was asked for."""

CATCH_ALL = "*"
"""The event name of a handler that gets every event without a handler of its own."""


class HandlerTable:
    """Handlers by ``(namespace, event)``, run with errors logged to ``logger``."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._tasks: set[asyncio.Task[Any]] = set()  # coroutine handlers still running

    def register(self, namespace: str, event: str, handler: Handler) -> None:
        """Make ``handler`` the one for ``event`` in ``namespace`` (replacing any)."""
        self._handlers[(namespace, event)] = handler

    def get(self, namespace: str, event: str) -> Handler | None:
        """The handler of ``event`` in ``namespace``, or None."""
        return self._handlers.get((namespace, event))

    def emit(self, namespace: str, event: str, *args: Any) -> None:
        """Run the handler of a special event (``"connect"``, ``"disconnect"``...), if any."""
        self.call(self.get(namespace, event), *args)

    def dispatch(
        self, namespace: str, event: str, args: Sequence[Any], reply: Reply | None
    ) -> bool:
        """Run the handler of a server event, or the catch-all one with the
        event's name first; whether there was one."""
        handler = self.get(namespace, event)
        if handler is None and (catch_all := self.get(namespace, CATCH_ALL)):
            handler, args = catch_all, [event, *args]
        if handler is None:
            return False
        self.call(handler, *args, reply=reply)
        return True

    def call(self, handler: Handler | None, *args: Any, reply: Reply | None = None) -> None:
        """Run a handler: a plain function now, a coroutine function as a task."""
        if handler is None:
            return
        try:
            result = handler(*args)
        except Exception:
            self.logger.exception("error in handler %s", getattr(handler, "__name__", handler))
            return
        if inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._finish(handler, result, reply))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif reply is not None:
            reply(result)

    async def _finish(self, handler: Handler, result: Awaitable[Any], reply: Reply | None) -> None:
        try:
            value = await result
        except Exception:
            self.logger.exception("error in handler %s", getattr(handler, "__name__", handler))
            return
        if reply is not None:
            reply(value)
