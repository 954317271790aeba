"""The by-sid methods of :class:`~tether.realtime.Server`, for code that comes
from python-socketio: ``emit(..., to=sid)``, ``enter_room(sid, room)``,
``call(..., to=sid)``, ``get_session(sid)``... and class-based namespaces
(:class:`ClassNamespace`).

A sid is a room of its own, so whatever goes through a room (``emit``,
``enter_room``, ``leave_room``, ``disconnect``, ``call``) reaches a socket on
any node of a distributed adapter. ``get_session`` reads a copy from another
node and ``save_session`` writes there through the adapter
(:meth:`~tether.realtime.Adapter.save_data`). ``rooms(sid)``,
``get_environ(sid)`` and ``transport(sid)`` only know the sockets of this node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import unquote

from ...exceptions import AckTimeout, Disconnected
from ..adapters.interface import BroadcastOptions
from ..protocol import socketio
from ..protocol.checks import check_event
from .runner import Handler, maybe_await

# Namespaces and sockets are typed Any here: importing their modules, even
# for typing only, would pull this module into the server's import circle.

__all__ = ["ClassNamespace", "SidMethods"]

_H = TypeVar("_H", bound=Handler)


def _as_set(names: str | Iterable[str] | None) -> set[str]:
    if names is None:
        return set()
    return {names} if isinstance(names, str) else set(names)


def _one_sid(to: str | Iterable[str] | None, other: str | Iterable[str] | None) -> str:
    """The one sid named by ``to=`` or its other name (``room=``, ``sid=``)."""
    if (to is None) == (other is None):
        raise ValueError("name one socket: to=sid (callbacks and calls cannot broadcast)")
    sid = to if to is not None else other
    if not isinstance(sid, str):
        raise ValueError(f"name one socket by its sid, not {sid!r}")
    return sid


async def _when_acked(ack: Any, callback: Callable[..., Any], *, spread: bool) -> None:
    """Await ``ack`` and call ``callback`` with its arguments: the raw ack
    list (``spread`` False) or a value as :meth:`SidMethods.call` returns it;
    nothing if it never comes."""
    try:
        value = await ack
    except (AckTimeout, Disconnected, asyncio.TimeoutError):
        return
    if not spread:
        args = list(value)
    elif value is None:
        args = []
    else:
        args = list(value) if isinstance(value, tuple) else [value]
    await maybe_await(callback(*args))


def wsgi_environ(handshake: Any) -> dict[str, Any]:
    """A WSGI-style environ of a socket handshake (``Socket.handshake``)
    (:meth:`SidMethods.get_environ`)."""
    path, _, query = handshake.url.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path),
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https" if handshake.secure else "http",
        "tether.handshake": handshake,
    }
    address = handshake.address
    if isinstance(address, tuple) and len(address) >= 2:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(address[0]), str(address[1])
    elif address:
        environ["REMOTE_ADDR"] = str(address)
    for name, value in handshake.headers.items():
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        environ.setdefault(key, value)
    return environ


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
        """Socket ``sid`` of this node, or one whose disconnect handler runs."""
        nsp = self._target(namespace)
        return nsp.sockets.get(sid) or nsp.departing.get(sid)

    async def emit(
        self,
        event: str,
        *args: Any,
        to: str | Iterable[str] | None = None,
        skip: str | Iterable[str] | None = None,
        room: str | Iterable[str] | None = None,
        skip_sid: str | Iterable[str] | None = None,
        namespace: str | None = None,
        callback: Callable[..., Any] | None = None,
    ) -> None:
        """Emit to every socket of ``namespace``, or to the rooms or sids
        ``to`` (``room`` is the same), except the rooms or sids ``skip``
        (``skip_sid`` is the same); on every node.

        ``callback`` (plain or async), as python-socketio's, is called with
        the client's acknowledgement arguments when they come; it needs one
        sid as ``to=`` (or ``room=``): anything else raises
        :class:`ValueError`, as python-socketio's message-queue managers do.
        It is not called if no ack comes within the server's
        ``ack_timeout`` or the socket disconnects first (python-socketio
        keeps it until then). For a socket of this node the event is sent
        before this returns and the callback gets the ack's arguments as the
        client sent them. For a sid of another node the event goes through
        the adapter's broadcast with acks, from a task: it leaves after this
        returns (an emit that follows may overtake it: ``await
        server.call(...)`` keeps the order), and the ack has crossed the
        broker as one value, so the callback gets no argument for None, the
        items of a tuple, else the one value (several ack arguments reach it
        as one list)."""
        skips = _as_set(skip) | _as_set(skip_sid)
        if callback is not None:
            sid = _one_sid(to, room)
            if sid not in skips:
                self._emit_with_callback(event, args, sid, namespace, callback)
            return
        rooms = _as_set(to) | _as_set(room)
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
        :meth:`~tether.realtime.Namespace.fetch_sockets` for other nodes). In
        its ``disconnect`` handler: the rooms it was in, as python-socketio."""
        socket = self._local(sid, namespace)
        return sorted(socket.rooms) if socket is not None else []

    async def disconnect(self, sid: str, namespace: str | None = None) -> None:
        """Disconnect socket ``sid`` from ``namespace``, on whichever node it is
        (its client is told and does not reconnect by itself)."""
        await self._target(namespace).to(sid).disconnect_sockets()

    def _emit_with_callback(
        self,
        event: str,
        args: tuple[Any, ...],
        sid: str,
        namespace: str | None,
        callback: Callable[..., Any],
    ) -> None:
        check_event(event)
        nsp = self._target(namespace)
        server = nsp.server
        socket = nsp.sockets.get(sid)
        if socket is None:
            remote = self.call(event, *args, to=sid, namespace=namespace)
            server.runner.run(_when_acked(remote, callback, spread=True), "emit callback")
            return
        if not socket.connected:
            raise Disconnected(f"{socket!r} is disconnected")
        # Sent now, through the server's own delivery (serialised by its
        # parser); the raw ack list is what python-socketio's callbacks get.
        ack_id = nsp.next_ack_id()
        waiter = socket.expect_ack(ack_id)
        packet = socketio.Packet.event(event, *args, namespace=nsp.name, id=ack_id)
        nsp.adapter.sockets.deliver(
            nsp.name, packet, [sid], BroadcastOptions(sids=frozenset({sid}))
        )
        acked = asyncio.wait_for(waiter, server.ack_timeout)
        server.runner.run(_when_acked(acked, callback, spread=False), "emit callback")

    async def call(
        self,
        event: str,
        *args: Any,
        to: str | None = None,
        sid: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Emit to socket ``to`` and return its acknowledgement (None, one
        value, or a tuple of several); raises
        :class:`~tether.exceptions.AckTimeout` if none arrives within
        ``timeout`` (the server's ``ack_timeout`` by default), and
        :class:`~tether.exceptions.Disconnected` if a socket of this node
        disconnects meanwhile. A socket on another node is reached through
        the adapter. ``sid=`` is python-socketio's other name for ``to=``."""
        to = _one_sid(to, sid)
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
        ``sid``: ``data`` itself becomes it for a socket of this node; for one
        on another node, the adapter carries a copy there
        (:meth:`~tether.realtime.Adapter.save_data`; a distributed adapter
        needs it JSON-able) and this returns once that node has replaced it.
        Raises :class:`KeyError` if every node answered and none has the
        socket (as python-socketio for an unknown sid), :class:`TimeoutError`
        naming the sid if none that answered has it but a node did not answer
        within the adapter's request timeout (or its broker is unreachable)."""
        socket = self._local(sid, namespace)
        if socket is not None:
            socket.data = data
            return
        nsp = self._target(namespace)
        saved = await nsp.adapter.save_data(nsp.name, sid, data)
        if saved is None:
            raise TimeoutError(
                f"cannot save the session of socket {sid!r} in namespace {nsp.name!r}:"
                " not every node answered within the adapter's request timeout"
            )
        if not saved:
            raise KeyError(f"no socket {sid!r} in namespace {nsp.name!r} on any node")

    @contextlib.asynccontextmanager
    async def session(
        self, sid: str, namespace: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """``async with server.session(sid) as session:``: the session of socket
        ``sid`` (:meth:`get_session`), saved on exit (:meth:`save_session`),
        on whichever node it is; not saved if the block raises. For a socket
        of another node the block works on a copy: a change made there
        meanwhile is overwritten."""
        data = await self.get_session(sid, namespace)
        yield data
        await self.save_session(sid, data, namespace)

    # -- what the client connected with (sockets of this node) --------------------------

    def get_environ(self, sid: str, namespace: str | None = None) -> dict[str, Any] | None:
        """A WSGI-style environ of the request socket ``sid`` connected with
        (None for a sid this node does not have, as python-socketio).

        python-socketio hands its handlers a WSGI environ, under ASGI too
        (python-engineio translates the scope), so code written for it reads
        ``REMOTE_ADDR``, ``QUERY_STRING`` and ``HTTP_*`` keys: this builds
        those from the socket's ``handshake``
        (``REQUEST_METHOD``, ``PATH_INFO``, ``QUERY_STRING``,
        ``REMOTE_ADDR``/``REMOTE_PORT``, ``HTTP_<HEADER>`` from each header,
        the first of repeated ones, ``wsgi.url_scheme``), and puts the
        handshake itself (headers, query, auth...) under
        ``"tether.handshake"``. It is not a WSGI request: there is no
        ``wsgi.input``, no ``SERVER_NAME``. New code reads
        ``socket.handshake`` instead."""
        socket = self._local(sid, namespace)
        return None if socket is None else wsgi_environ(socket.handshake)

    def transport(self, sid: str, namespace: str | None = None) -> str:
        """The transport of socket ``sid`` of this node now: ``"polling"`` or
        ``"websocket"`` (python-socketio's values); :class:`KeyError` for a
        sid this node does not have."""
        socket = self._local(sid, namespace)
        if socket is None:
            raise KeyError(f"no socket {sid!r} in namespace {namespace or '/'!r} on this node")
        transport: str = socket.conn.transport
        return transport

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
        """:meth:`SidMethods.emit` in this namespace (``callback=`` too)."""
        await self._server().emit(event, *args, namespace=self.namespace, **options)

    async def call(self, event: str, *args: Any, **options: Any) -> Any:
        """:meth:`SidMethods.call` in this namespace (``to=`` or ``sid=``, ``timeout=``)."""
        return await self._server().call(event, *args, namespace=self.namespace, **options)

    async def send(self, *args: Any, **options: Any) -> None:
        """:meth:`SidMethods.send` in this namespace (``callback=`` too)."""
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
