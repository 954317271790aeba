"""A Socket.IO namespace: its handlers, middleware, sockets and selections."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ..adapters.base import Adapter, SocketInfo
from ..protocol import socketio
from .runner import Handler, is_async
from .sockets import BroadcastOperator, Socket

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Event", "Handlers", "Middleware", "Namespace"]

Middleware = Callable[[Socket, dict[str, Any]], "Awaitable[None] | None"]
_H = TypeVar("_H", bound=Handler)

# Events a client cannot trigger: the server calls their handlers itself.
_RESERVED = ("connect", "disconnect", "disconnecting")


class Event(NamedTuple):
    """An EVENT packet matched to its handler."""

    handler: Handler
    args: list[Any]
    ack_id: int | None
    event: str  # the name the handler is registered under ("*": the catch-all)
    is_async: bool  # a coroutine function (Runner.start: a task only if it waits)


_new_event = tuple.__new__


class Handlers:
    """The handlers and middleware of a namespace (a dynamic parent shares
    its own with every child)."""

    def __init__(self) -> None:
        self.events: dict[str, Handler] = {}
        # event -> whether its handler is a coroutine function, found once.
        self.coroutines: dict[str, bool] = {}
        self.middlewares: list[Middleware] = []

    def add(self, event: str, handler: Handler) -> None:
        """Register ``handler`` for ``event``, replacing any before it."""
        self.events[event] = handler
        self.coroutines[event] = is_async(handler)

    def get(self, event: str) -> Handler | None:
        """The handler of ``event`` (``connect``, ``disconnect``...), or None."""
        return self.events.get(event)

    def match(self, packet: socketio.Packet) -> Event | None:
        """What handles an EVENT packet (None: nothing does)."""
        data = packet.data
        event = data[0]
        if event in _RESERVED:
            return None  # reserved: a client cannot trigger these
        handler = self.events.get(event)
        if handler is None:
            handler = self.events.get("*")
            if handler is None:
                return None
            args = list(data)
            event = "*"
        else:
            args = data[1:]
        # tuple.__new__ rather than Event(...), whose __new__ is Python code:
        # this runs once per event.
        is_async = self.coroutines.get(event, True)
        return _new_event(Event, (handler, args, packet.id, event, is_async))


class Namespace:
    """A namespace: its handlers, middleware and sockets.

    A namespace made with a pattern or a predicate (:meth:`~tether.realtime.Server.of`) is a
    *parent*: each name it accepts becomes a child namespace sharing its
    handlers and middleware; emitting on the parent emits on every child.
    """

    def __init__(
        self,
        server: Server,
        name: str,
        parent: Namespace | None = None,
        *,
        dynamic: bool = False,
    ) -> None:
        self.server = server
        self.name = name
        self.adapter: Adapter = server.adapter
        self.sockets: dict[str, Socket] = {}
        #: Sockets whose ``disconnect`` handler is running: gone from
        #: :attr:`sockets` and from their rooms, but still found by sid (the
        #: by-sid API: python-socketio's disconnect handlers call
        #: ``get_session(sid)`` and ``rooms(sid)``).
        self.departing: dict[str, Socket] = {}
        self.parent = parent
        #: Whether this is a dynamic parent (made by :meth:`~tether.realtime.Server.of` with a
        #: pattern or predicate): its children are the namespaces it accepted.
        self.dynamic = dynamic
        self.children: dict[str, Namespace] = {}
        #: Its handlers and middleware, shared with its dynamic parent's.
        self.handlers: Handlers = parent.handlers if parent else Handlers()
        self._ack_ids = itertools.count(1)
        #: The newest broadcast emit_nowait left to a task (an adapter that
        #: waits for its broker), until it ends: the next waits for it.
        self.broadcasting: asyncio.Task[None] | None = None
        #: Sockets being admitted (middleware, connect handler): a dynamic child
        #: is only removed when it has neither these nor sockets.
        self.admitting = 0

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"

    def next_ack_id(self) -> int:
        """A new ack id for an event this server sends in this namespace."""
        return next(self._ack_ids)

    def broadcast_later(self, broadcast: Coroutine[Any, Any, None]) -> None:
        """Finish an adapter's broadcast in a server task, after this
        namespace's earlier ones (emit_nowait cannot wait for the adapter, and
        its events must not overtake each other); a failure is logged."""
        runner = self.server.runner

        def done() -> None:
            if self.broadcasting is task:
                self.broadcasting = None
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                runner.limiter.log(
                    logging.ERROR, "broadcast", "broadcast in %r failed", self, exc_info=failure
                )

        task = self.broadcasting = runner.spawn_after(self.broadcasting, broadcast, done)

    def targets(self) -> list[Namespace]:
        """The namespaces an emit on this one reaches: itself, or a dynamic
        parent's children."""
        if self.dynamic:
            return list(self.children.values())
        return [self]

    # -- registration ---------------------------------------------------------------

    def on(self, event: str, handler: Handler | None = None) -> Any:
        """Register ``handler`` for ``event`` (usable as a decorator).

        ``connect``: ``handler(socket)`` or ``handler(socket, auth)``; raise
        :class:`~tether.exceptions.ConnectionRefused` to refuse. ``disconnect``
        and ``disconnecting``: ``handler(socket, reason)``. ``"*"``: every
        event without its own handler, ``handler(socket, event, *args)``.
        Others: ``handler(socket, *args)``, whose return value acknowledges the
        event when the client asked for an ack (a tuple for several values).
        Handlers may be coroutines. Each event runs in its own task, at most
        ``max_handler_tasks`` at once per connection (later events wait their
        turn, in order, up to ``max_pending_bytes``: see
        :class:`~tether.limits.RealtimeLimits`); a plain function runs at once,
        without a task, when no other handler of the connection is running.
        A handler that raises is logged: one traceback per handler per
        interval, then counts.
        """

        def register(function: _H) -> _H:
            self.handlers.add(event, function)
            return function

        if handler is not None:
            register(handler)
            return handler
        return register

    def use(self, middleware: Middleware) -> Middleware:
        """Run ``middleware(socket, auth)`` before a socket connects; raising
        :class:`~tether.exceptions.ConnectionRefused` refuses it with a
        ``CONNECT_ERROR`` carrying the message and data."""
        self.handlers.middlewares.append(middleware)
        return middleware

    # -- selections -------------------------------------------------------------------

    @property
    def _all(self) -> BroadcastOperator:
        return BroadcastOperator(self)

    def to(self, rooms: str | Iterable[str]) -> BroadcastOperator:
        """The members of ``rooms`` (a sid is a room too); ``in_`` is the same."""
        return self._all.to(rooms)

    in_ = to

    def except_(self, rooms: str | Iterable[str]) -> BroadcastOperator:
        """Every socket of the namespace but the members of ``rooms`` (or these sids)."""
        return self._all.except_(rooms)

    @property
    def volatile(self) -> BroadcastOperator:
        """Every socket, dropping the event for those whose transport cannot take it now."""
        return self._all.volatile

    @property
    def local(self) -> BroadcastOperator:
        """Every socket of this process only (with a distributed adapter)."""
        return self._all.local

    def timeout(self, seconds: float) -> BroadcastOperator:
        """Every socket, with :meth:`emit_with_ack` waiting ``seconds`` for the replies."""
        return self._all.timeout(seconds)

    async def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        skip: str | Iterable[str] | None = None,
    ) -> None:
        """Emit to every socket, or to the rooms/sids ``to``, except ``skip``."""
        await self._select(to, skip).emit(event, *args)

    def emit_nowait(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        skip: str | Iterable[str] | None = None,
    ) -> None:
        """:meth:`emit` without waiting, for plain-function handlers
        (:meth:`BroadcastOperator.emit_nowait`)."""
        self._select(to, skip).emit_nowait(event, *args)

    def _select(
        self, to: str | Iterable[str] | None, skip: str | Iterable[str] | None
    ) -> BroadcastOperator:
        operator = self._all
        if to is not None:
            operator = operator.to(to)
        if skip is not None:
            operator = operator.except_(skip)
        return operator

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send an event to every socket; the replies that arrive in time, one per socket."""
        return await self._all.emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[SocketInfo]:
        """Every socket of the namespace (on every node, with a distributed adapter)."""
        return await self._all.fetch_sockets()

    async def sockets_join(self, rooms: str | Iterable[str]) -> None:
        """Make every socket of the namespace join ``rooms``."""
        await self._all.sockets_join(rooms)

    async def sockets_leave(self, rooms: str | Iterable[str]) -> None:
        """Make every socket of the namespace leave ``rooms``."""
        await self._all.sockets_leave(rooms)

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect every socket of the namespace; ``close`` ends their whole connection."""
        await self._all.disconnect_sockets(close)
