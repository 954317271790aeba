"""The by-sid methods of :class:`~tether.realtime.Server`, for code that comes
from python-socketio: ``emit(..., to=sid)``, ``enter_room(sid, room)``,
``call(..., to=sid)``, ``get_session(sid)``... and class-based namespaces
(:class:`ClassNamespace`).

A sid is a room of its own, so whatever goes through a room (``emit``,
``enter_room``, ``leave_room``, ``disconnect``, ``call``) reaches a socket on
any node of a distributed adapter. ``rooms(sid)`` and ``save_session`` only
know the sockets of this node; ``get_session`` reads a copy from another node.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeVar

from ...exceptions import AckTimeout
from .runner import Handler

# Namespaces and sockets are typed Any here: importing their modules, even
# for typing only, would pull this module into the server's import circle.

__all__ = ["ClassNamespace", "SidMethods"]

_H = TypeVar("_H", bound=Handler)


def _as_set(names: str | Iterable[str] | None) -> set[str]:
    if names is None:
        return set()
    return {names} if isinstance(names, str) else set(names)


class SidMethods:
    """Mixed into :class:`~tether.realtime.Server`: python-socketio's
    ``AsyncServer`` methods that name a socket by its sid. ``namespace=``
    is ``"/"`` by default, as there."""

    def of(self, name: str | Any) -> Any:
        """The namespace ``name`` (:meth:`~tether.realtime.Server.of`)."""
        raise NotImplementedError

    def _target(self, namespace: str | None) -> Any:
        return self.of(namespace or "/")

    def _local(self, sid: str, namespace: str | None) -> Any:
        return self._target(namespace).sockets.get(sid)

    async def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        skip: str | Iterable[str] | None = None,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
    ) -> None:
        """Emit to every socket of ``namespace``, or to the rooms or sids
        ``to`` (``room`` is the same), except the rooms or sids ``skip``
        (``skip_sid`` is the same); on every node."""
        rooms = _as_set(to) | _as_set(room)
        skips = _as_set(skip) | _as_set(skip_sid)
        operator = self._target(namespace).except_(skips)
        if rooms:
            operator = operator.to(rooms)
        await operator.emit(event, *args)

    async def send(self, *args: Any, **options: Any) -> None:
        """:meth:`emit` the ``message`` event (``to=``, ``room=``... as there)."""
        await self.emit("message", *args, **options)

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Make socket ``sid`` join ``room``, on whichever node it is."""
        await self._target(namespace).to(sid).sockets_join(room)

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        """Make socket ``sid`` leave ``room``, on whichever node it is."""
        await self._target(namespace).to(sid).sockets_leave(room)

    async def close_room(self, room: str, namespace: str | None = None) -> None:
        """Make every socket in ``room`` leave it, on every node."""
        await self._target(namespace).to(room).sockets_leave(room)

    def rooms(self, sid: str, namespace: str | None = None) -> list[str]:
        """The rooms of socket ``sid`` of this node, its own sid included
        (empty for a sid this node does not have: see
        :meth:`~tether.realtime.Namespace.fetch_sockets` for other nodes)."""
        nsp = self._target(namespace)
        return sorted(nsp.adapter.rooms_of(nsp.name, sid))

    async def disconnect(self, sid: str, namespace: str | None = None) -> None:
        """Disconnect socket ``sid`` from ``namespace``, on whichever node it is
        (its client is told and does not reconnect by itself)."""
        await self._target(namespace).to(sid).disconnect_sockets()

    async def call(
        self,
        event: str,
        *args: Any,
        to: str,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Emit to socket ``to`` and return its acknowledgement (None, one
        value, or a tuple of several); raises
        :class:`~tether.exceptions.AckTimeout` if none arrives within
        ``timeout`` (the server's ``ack_timeout`` by default), and
        :class:`~tether.exceptions.Disconnected` if a socket of this node
        disconnects meanwhile. A socket on another node is reached through
        the adapter."""
        socket = self._local(to, namespace)
        if socket is not None:
            return await socket.emit_with_ack(event, *args, timeout=timeout)
        nsp = self._target(namespace)
        seconds = nsp.server.ack_timeout if timeout is None else timeout
        replies = await nsp.to(to).timeout(seconds).emit_with_ack(event, *args)
        if not replies:
            raise AckTimeout(f"no ack for {event!r} from {to} within {seconds} s")
        return replies[0]

    # -- per-session storage -----------------------------------------------------------

    async def get_session(self, sid: str, namespace: str | None = None) -> dict[str, Any]:
        """The session of socket ``sid``: its :attr:`~tether.realtime.Socket.data`
        dict itself for a socket of this node (changes are kept), a copy for
        one on another node; :class:`KeyError` if no node has it."""
        socket = self._local(sid, namespace)
        if socket is not None:
            data: dict[str, Any] = socket.data
            return data
        for info in await self._target(namespace).to(sid).fetch_sockets():
            if info.sid == sid:
                return dict(info.data)
        raise KeyError(f"no socket {sid!r} in namespace {namespace or '/'!r}")

    async def save_session(
        self, sid: str, data: dict[str, Any], namespace: str | None = None
    ) -> None:
        """Replace the session (:attr:`~tether.realtime.Socket.data`) of socket
        ``sid`` of this node; :class:`KeyError` for a sid this node does not have."""
        socket = self._local(sid, namespace)
        if socket is None:
            raise KeyError(f"no socket {sid!r} in namespace {namespace or '/'!r} on this node")
        socket.data = data

    @contextlib.asynccontextmanager
    async def session(
        self, sid: str, namespace: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """``async with server.session(sid) as session:``: the session of a
        socket of this node, saved on exit."""
        data = await self.get_session(sid, namespace)
        yield data
        await self.save_session(sid, data, namespace)

    # -- python-socketio's registration styles -----------------------------------------

    def event(self, handler: Handler | None = None, *, namespace: str | None = None) -> Any:
        """Register a handler for the event of its name (a decorator, with or
        without ``namespace=``): ``@server.event async def chat(socket, text): ...``."""

        def register(function: _H) -> _H:
            self._target(namespace).on(function.__name__, function)
            return function

        return register if handler is None else register(handler)

    def register_namespace(self, namespace: ClassNamespace) -> ClassNamespace:
        """Register every ``on_<event>`` method of ``namespace`` as the handler
        of ``<event>`` in the namespace it names; returns it, bound to this server."""
        nsp = self._target(namespace.namespace)
        for attribute in dir(namespace):
            if attribute.startswith("on_") and attribute != "on_":
                method = getattr(namespace, attribute)
                if callable(method):
                    nsp.on(attribute[3:], method)
        namespace.server = self
        return namespace


class ClassNamespace:
    """A namespace written as a class, as python-socketio's ``AsyncNamespace``:
    each ``on_<event>`` method handles ``<event>`` and gets ``(socket, ...)``
    as tether's handlers do (``on_connect``, ``on_disconnect`` too)::

        class Chat(realtime.ClassNamespace):
            async def on_say(self, socket, text):
                await self.emit("said", text)

        server.register_namespace(Chat("/chat"))

    ``emit`` and the other by-sid methods act on its own namespace once it is
    registered."""

    def __init__(self, namespace: str = "/") -> None:
        self.namespace = namespace
        self.server: SidMethods | None = None

    def _server(self) -> SidMethods:
        if self.server is None:
            raise RuntimeError(f"{type(self).__name__} is not registered on a server")
        return self.server

    async def emit(self, event: str, *args: Any, **options: Any) -> None:
        """:meth:`SidMethods.emit` in this namespace."""
        await self._server().emit(event, *args, namespace=self.namespace, **options)

    async def call(self, event: str, *args: Any, to: str, timeout: float | None = None) -> Any:
        """:meth:`SidMethods.call` in this namespace."""
        return await self._server().call(
            event, *args, to=to, namespace=self.namespace, timeout=timeout
        )

    async def send(self, *args: Any, **options: Any) -> None:
        """:meth:`SidMethods.send` in this namespace."""
        await self._server().send(*args, namespace=self.namespace, **options)

    async def enter_room(self, sid: str, room: str) -> None:
        """:meth:`SidMethods.enter_room` in this namespace."""
        await self._server().enter_room(sid, room, self.namespace)

    async def leave_room(self, sid: str, room: str) -> None:
        """:meth:`SidMethods.leave_room` in this namespace."""
        await self._server().leave_room(sid, room, self.namespace)

    async def close_room(self, room: str) -> None:
        """:meth:`SidMethods.close_room` in this namespace."""
        await self._server().close_room(room, self.namespace)

    def rooms(self, sid: str) -> list[str]:
        """:meth:`SidMethods.rooms` in this namespace."""
        return self._server().rooms(sid, self.namespace)

    async def disconnect(self, sid: str) -> None:
        """:meth:`SidMethods.disconnect` in this namespace."""
        await self._server().disconnect(sid, self.namespace)

    async def get_session(self, sid: str) -> dict[str, Any]:
        """:meth:`SidMethods.get_session` in this namespace."""
        return await self._server().get_session(sid, self.namespace)

    async def save_session(self, sid: str, data: dict[str, Any]) -> None:
        """:meth:`SidMethods.save_session` in this namespace."""
        await self._server().save_session(sid, data, self.namespace)

    def session(self, sid: str) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
        """:meth:`SidMethods.session` in this namespace."""
        return self._server().session(sid, self.namespace)
