"""The Socket.IO v5 server: namespaces, middleware, events, acks, rooms, recovery.

Section names refer to the Socket.IO v5 specification
(https://github.com/socketio/socket.io-protocol, README). Engine.IO sessions
(:mod:`tether.realtime.server.engine`) carry the packets; each session has a
:class:`_Client` here that decodes them and routes them to the
:class:`~tether.realtime.server.sockets.Socket` of their namespace.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qs, urlsplit

from ...exceptions import ConnectionRefused, Disconnected, PacketError
from ...limits import DEFAULT_REALTIME_LIMITS, RealtimeLimits
from ...ratelimit import LogLimiter
from ..adapters.base import Adapter, BroadcastOptions, RecoveryOptions, SavedSession, SocketInfo
from ..protocol import socketio
from .engine import POLICY_VIOLATION, EngineServer, Outgoing, Session
from .sockets import BroadcastOperator, Handshake, Socket, ack_value

__all__ = ["Namespace", "Server"]

_log = logging.getLogger("tether.realtime")

Handler = Callable[..., Any]
Middleware = Callable[[Socket, dict[str, Any]], "Awaitable[None] | None"]
_H = TypeVar("_H", bound=Handler)

# Reasons after which a socket may come back with its state (socket.io's list,
# RECOVERABLE_DISCONNECT_REASONS in its lib/socket.ts).
_RECOVERABLE = frozenset(
    {
        "transport error",
        "transport close",
        "forced close",
        "ping timeout",
        "server shutting down",
        "forced server close",
    }
)

# What a received packet costs while it waits (for a handler slot, or for its
# namespace CONNECT), besides its length: the Packet, its data list, the queue
# entry (about 230 bytes measured for '2["e"]'). Counted so that a flood of
# tiny packets cannot hold many times max_pending_bytes.
_PACKET_OVERHEAD = 256

# What one decoded JSON list or object costs beyond its brackets (an empty
# list is 56 bytes, a dict 64, plus the slot that holds it; CPython 3.11).
_CONTAINER_SIZE = 64


class _Event(NamedTuple):
    """An EVENT packet matched to its handler."""

    handler: Handler
    args: list[Any]
    ack_id: int | None
    event: str  # the name the handler is registered under ("*": the catch-all)
    is_async: bool  # runs in a task (and needs one of max_handler_tasks)


_UNSET: Any = object()

# An event waiting for a handler slot: its socket, and the bytes it counts.
_Waiting = tuple[Socket, _Event, int]


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _is_async(handler: Handler) -> bool:
    """Whether calling ``handler`` starts a coroutine (an ``async def``, a
    partial of one, or an object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 (the method, not callable())
    )


def _arity(handler: Handler) -> int:
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


class Namespace:
    """A namespace: its handlers, middleware and sockets.

    A namespace made with a pattern or a predicate (:meth:`Server.of`) is a
    *parent*: each name it accepts becomes a child namespace sharing its
    handlers and middleware; emitting on the parent emits on every child.
    """

    def __init__(self, server: Server, name: str, parent: Namespace | None = None) -> None:
        self.server = server
        self.name = name
        self.adapter: Adapter = server.adapter
        self.sockets: dict[str, Socket] = {}
        self.parent = parent
        self.children: dict[str, Namespace] = {}
        self._handlers: dict[str, Handler] = parent._handlers if parent else {}
        # event -> whether its handler is a coroutine function, found once.
        self._async: dict[str, bool] = parent._async if parent else {}
        self._middlewares: list[Middleware] = parent._middlewares if parent else []
        self._ack_ids = itertools.count(1)
        # Sockets being admitted (middleware, connect handler): a dynamic child
        # is only removed when it has neither these nor sockets.
        self._admitting = 0

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"

    def _next_ack_id(self) -> int:
        return next(self._ack_ids)

    def _targets(self) -> list[Namespace]:
        """The namespaces an emit on this one reaches: a parent's children."""
        if any(parent is self for parent in self.server._parents.values()):
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
            self._handlers[event] = function
            self._async[event] = _is_async(function)
            return function

        if handler is not None:
            register(handler)
            return handler
        return register

    def use(self, middleware: Middleware) -> Middleware:
        """Run ``middleware(socket, auth)`` before a socket connects; raising
        :class:`~tether.exceptions.ConnectionRefused` refuses it with a
        ``CONNECT_ERROR`` carrying the message and data."""
        self._middlewares.append(middleware)
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
        operator = self._all
        if to is not None:
            operator = operator.to(to)
        if skip is not None:
            operator = operator.except_(skip)
        await operator.emit(event, *args)

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

    # -- dispatch ---------------------------------------------------------------------

    def _handler_for(self, packet: socketio.Packet) -> _Event | None:
        """What handles an EVENT (None: nothing does)."""
        args = list(packet.data)
        event = args.pop(0)
        if event in ("connect", "disconnect", "disconnecting"):
            return None  # reserved: a client cannot trigger these
        handler = self._handlers.get(event)
        if handler is None:
            handler = self._handlers.get("*")
            if handler is None:
                return None
            args.insert(0, event)
            event = "*"
        return _Event(handler, args, packet.id, event, self._async.get(event, True))

    def _reply(self, socket: Socket, ack_id: int | None, result: Any) -> None:
        if ack_id is not None and socket.connected:
            ack = socketio.Packet.ack(ack_id, *socketio.ack_args(result), namespace=self.name)
            socket._send(ack)

    async def _handle_event(self, socket: Socket, event: _Event, started: Any = _UNSET) -> None:
        """Run an event's handler in a task (or finish the awaitable it ``started``)."""
        try:
            result = event.handler(socket, *event.args) if started is _UNSET else started
            if inspect.isawaitable(result):
                result = await result
            self._reply(socket, event.ack_id, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.server._log_failure(self, event.event, socket)


class Server(Namespace):
    """A Socket.IO server; it is also its main namespace ``/``.

    ::

        server = realtime.Server()

        @server.on("chat")
        async def chat(socket, text):
            await socket.broadcast.emit("chat", text)

        await realtime.serve(server, "127.0.0.1", 8000)

    ``connection_state_recovery`` (``True`` or a dict of
    :class:`~tether.realtime.adapters.base.RecoveryOptions` fields) lets a client
    that lost its connection come back with its sid, rooms, ``data`` and every
    event it missed. ``cors_allowed_origins`` is ``None`` (same origin only:
    no CORS headers), ``"*"`` or a list of origins; a list is also an Origin
    allow-list for WebSocket upgrades. Times are in seconds. Limits
    (:class:`~tether.limits.RealtimeLimits`) are keyword options too:
    ``realtime.Server(max_payload=100_000, max_handler_tasks=4)``.
    """

    def __init__(
        self,
        *,
        path: str = "/socket.io",
        adapter: Adapter | None = None,
        connection_state_recovery: bool | dict[str, Any] | RecoveryOptions | None = None,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        connect_timeout: float = 45.0,
        ack_timeout: float = 10.0,
        transports: Iterable[str] = ("polling", "websocket"),
        allow_upgrades: bool = True,
        cors_allowed_origins: str | Iterable[str] | None = None,
        cors_credentials: bool = False,
        static_files: dict[str, str] | None = None,
        logger: logging.Logger | None = None,
        limits: RealtimeLimits = DEFAULT_REALTIME_LIMITS,
        **limit_options: Any,
    ) -> None:
        self.path = "/" + path.strip("/")
        #: Every bound of this server (:class:`~tether.limits.RealtimeLimits`):
        #: ``limits=`` with any of its fields given as keyword options
        #: (``max_payload=``, ``max_handler_tasks=``...) on top.
        self.limits = limits.replace(**limit_options)
        if connection_state_recovery is True:
            connection_state_recovery = RecoveryOptions()
        elif isinstance(connection_state_recovery, dict):
            connection_state_recovery = RecoveryOptions(**connection_state_recovery)
        elif connection_state_recovery is False:
            connection_state_recovery = None
        self.recovery: RecoveryOptions | None = connection_state_recovery
        self.adapter = adapter if adapter is not None else Adapter()
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.max_payload = self.limits.max_payload
        self.max_attachments = self.limits.max_attachments
        self.static_files = dict(static_files or {})
        self.logger = logger or _log
        # Failures a client can repeat at will (a handler raising on its
        # arguments, a middleware refusing with a bug): one traceback per
        # handler per interval, then counts.
        self._log_limiter = LogLimiter(self.logger)
        origins = cors_allowed_origins
        if origins is not None and not isinstance(origins, str):
            origins = list(origins)
        self.engine = EngineServer(
            on_session=self._on_session,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            limits=self.limits,
            transports=tuple(transports),
            allow_upgrades=allow_upgrades,
            cors_allowed_origins=origins,
            cors_credentials=cors_credentials,
        )
        self.namespaces: dict[str, Namespace] = {}
        self._parents: dict[Any, Namespace] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._server_handlers: dict[str, Handler] = {}
        super().__init__(self, socketio.DEFAULT_NAMESPACE)
        self.namespaces[self.name] = self
        self.adapter.attach(self)

    # -- namespaces ------------------------------------------------------------------

    def of(self, name: str | Any) -> Namespace:
        """The namespace ``name``, created on first use.

        ``name`` may also be a compiled regular expression or a predicate
        ``(name, auth) -> bool`` (may be async): every namespace a client asks
        for that matches is created on demand and shares the handlers
        registered on the returned parent.
        """
        if isinstance(name, str):
            if not name.startswith("/"):
                name = "/" + name
            namespace = self.namespaces.get(name)
            if namespace is None:
                namespace = self.namespaces[name] = Namespace(self, name)
            return namespace
        parent = self._parents.get(name)
        if parent is None:
            parent = self._parents[name] = Namespace(self, f"<dynamic {name!r}>")
        return parent

    async def _resolve(self, name: str, auth: dict[str, Any]) -> Namespace | None:
        namespace = self.namespaces.get(name)
        if namespace is not None:
            return namespace
        for matcher, parent in self._parents.items():
            if isinstance(matcher, re.Pattern):
                ok = matcher.fullmatch(name) is not None
            else:
                ok = bool(await _maybe_await(matcher(name, auth)))
            if ok:
                child = self.namespaces.get(name)
                if child is None:
                    child = self.namespaces[name] = Namespace(self, name, parent)
                    parent.children[name] = child
                return child
        return None

    def _release_child(self, namespace: Namespace) -> None:
        """Remove a dynamic child namespace nobody uses any more: a client may
        ask for any number of names a pattern accepts, so each lives only while
        it has sockets (or sockets being admitted). Its parent keeps the
        handlers: the next socket to ask for the name gets a new child."""
        parent = namespace.parent
        if parent is None or namespace.sockets or namespace._admitting:
            return
        name = namespace.name
        if self.namespaces.get(name) is namespace:
            del self.namespaces[name]
        if parent.children.get(name) is namespace:
            del parent.children[name]
        self.adapter.remove_namespace(name)

    # -- server-side events (between the nodes of a distributed adapter) -------------

    def on_server_event(self, event: str, handler: Handler | None = None) -> Any:
        """Register ``handler(*args)`` (may be async) for a server-side event
        that another node sent with :meth:`server_side_emit`; usable as a decorator."""

        def register(function: _H) -> _H:
            self._server_handlers[event] = function
            return function

        if handler is not None:
            register(handler)
            return handler
        return register

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to every *other* node's :meth:`on_server_event` handler
        (JSON-able args; nothing happens with the in-memory adapter)."""
        await self.adapter.server_side_emit(event, list(args))

    def _on_server_event(self, event: str, args: list[Any]) -> None:
        handler = self._server_handlers.get(event)
        if handler is not None:
            self._run(_maybe_await(handler(*args)), f"server-side event handler {event!r}")

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the adapter (called by :func:`serve` and the ASGI app)."""
        if not self._started:
            self._started = True
            await self.adapter.start()

    async def shutdown(self) -> None:
        """Close every session (clients see ``server shutting down``), stop the adapter."""
        self.engine.close_all("server shutting down")
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()
        if self._started:
            self._started = False
            await self.adapter.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task that :meth:`shutdown` waits for."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _run(self, coroutine: Awaitable[Any], what: str = "task") -> None:
        """Run ``coroutine`` in a task; a failure is logged under ``what`` (a
        name of ours, never one a client chose: it keys the rate limit)."""

        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log_limiter.exception(what, "%s failed", what)

        self._spawn(guarded())

    def _log_failure(self, namespace: Namespace, event: str, socket: Socket) -> None:
        # Keyed by the handler, not the child namespace a client named.
        root = namespace.parent or namespace
        key = f"{root.name} {event}"
        self._log_limiter.exception(key, "handler %r of %s failed on %r", event, root.name, socket)

    def _call(self, handler: Handler, socket: Socket, event: str, *args: Any) -> None:
        """Run the ``event`` handler ``handler(socket, *args)`` in a task, with
        as many of ``args`` as it takes (``disconnect`` handlers may ignore the
        reason)."""
        arity = _arity(handler)
        if arity >= 1:
            args = args[: arity - 1]

        async def call() -> None:
            try:
                await _maybe_await(handler(socket, *args))
            except Exception:
                self._log_failure(socket.namespace, event, socket)

        self._spawn(call())

    # -- sessions and their clients ------------------------------------------------

    def _on_session(self, session: Session) -> None:
        session.listener = _Client(self, session)

    # -- what adapters call ---------------------------------------------------------

    def _deliver(
        self,
        namespace: str,
        packet: socketio.Packet,
        sids: list[str],
        opts: BroadcastOptions,
    ) -> None:
        """Send ``packet`` to these local sockets: serialised once, framed once."""
        nsp = self.namespaces.get(namespace)
        if nsp is None or not sids:
            return
        text, attachments = socketio.encode(packet)
        outgoing = Outgoing([text, *attachments])
        sockets = nsp.sockets
        for sid in sids:
            socket = sockets.get(sid)
            if socket is None or not socket.connected:
                continue
            session = socket.session
            if opts.volatile and not session.writable:
                continue
            session.send_outgoing(outgoing)

    def _deliver_with_ack(
        self,
        namespace: str,
        packet: socketio.Packet,
        sids: list[str],
        opts: BroadcastOptions,
    ) -> list[asyncio.Future[Any]]:
        nsp = self.namespaces.get(namespace)
        if nsp is None:
            return []
        assert packet.id is not None
        waiters: list[asyncio.Future[Any]] = []
        live = []
        for sid in sids:
            socket = nsp.sockets.get(sid)
            if socket is not None and socket.connected:
                live.append(sid)
                raw = socket.expect_ack(packet.id)
                waiters.append(_ack_value_future(raw))
        self._deliver(namespace, packet, live, opts)
        return waiters

    def _socket_infos(self, namespace: str, sids: list[str]) -> list[SocketInfo]:
        nsp = self.namespaces.get(namespace)
        if nsp is None:
            return []
        infos = []
        for sid in sids:
            socket = nsp.sockets.get(sid)
            if socket is not None:
                infos.append(
                    SocketInfo(
                        sid,
                        namespace,
                        frozenset(socket.rooms),
                        socket.data,
                        socket.handshake.as_dict(),
                    )
                )
        return infos

    def _join(self, namespace: str, sid: str, rooms: list[str]) -> None:
        nsp = self.namespaces.get(namespace)
        if nsp is not None and sid in nsp.sockets:
            self.adapter.add_all(namespace, sid, rooms)

    def _leave(self, namespace: str, sid: str, rooms: list[str]) -> None:
        nsp = self.namespaces.get(namespace)
        if nsp is not None and sid in nsp.sockets:
            for room in rooms:
                self.adapter.delete(namespace, sid, room)

    def _disconnect(self, namespace: str, sid: str, close: bool) -> None:
        nsp = self.namespaces.get(namespace)
        socket = nsp.sockets.get(sid) if nsp is not None else None
        if socket is None:
            return
        client = socket.session.listener
        assert isinstance(client, _Client)
        if close:
            # As socket.io: every namespace of the connection gets a DISCONNECT
            # (so the client does not reconnect: a kick is final), then the
            # connection closes. To simulate a lost connection instead, close
            # ``socket.conn``.
            for other in list(client.sockets.values()):
                client._disconnect_socket(other, "server namespace disconnect", notify=True)
            socket.session.close("forced server close")
        else:
            client._disconnect_socket(socket, "server namespace disconnect", notify=True)

    # -- serving ---------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether a request path is an Engine.IO endpoint of this server."""
        route = urlsplit(path).path.rstrip("/")
        return route == self.path

    def asgi_app(self, other_app: Any = None) -> Any:
        """An ASGI application serving this server (and ``other_app`` for other paths)."""
        from .asgi import ASGIApp

        return ASGIApp(self, other_app)


def _ack_value_future(raw: asyncio.Future[list[Any]]) -> asyncio.Future[Any]:
    loop = asyncio.get_running_loop()
    out: asyncio.Future[Any] = loop.create_future()

    def done(future: asyncio.Future[list[Any]]) -> None:
        if out.done():
            return
        if future.cancelled() or future.exception() is not None:
            out.cancel()  # the socket left: no reply to collect
        else:
            out.set_result(ack_value(future.result()))

    def cancelled(future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            raw.cancel()

    raw.add_done_callback(done)
    out.add_done_callback(cancelled)
    return out


class _Client:
    """The Socket.IO side of one Engine.IO session: decoding, namespaces, sockets.

    Also the connection's bounds on the work a client can queue: at most
    ``max_handler_tasks`` event handlers run at once (for all its namespaces),
    holding packets of at most ``max_pending_bytes`` together (or one packet,
    whatever its size); later events wait in arrival order, and the bytes of
    packets waiting (for a handler, or for their namespace's CONNECT to be
    admitted) stay under ``max_pending_bytes``, past which the session is
    closed (1008). Decoded JSON can take up to ~25 times its text in objects:
    both byte bounds are what keeps that multiple bounded per connection.
    """

    def __init__(self, server: Server, session: Session) -> None:
        self.server = server
        self.session = session
        self.decoder = socketio.Decoder(
            max_payload=server.max_payload, max_attachments=server.max_attachments
        )
        self.sockets: dict[str, Socket] = {}
        # Namespaces whose CONNECT is being admitted -> the packets that came
        # for them meanwhile, with the bytes each counts.
        self._connecting: dict[str, list[tuple[socketio.Packet, int]]] = {}
        self._max_tasks = server.limits.max_handler_tasks
        self._max_pending = server.limits.max_pending_bytes
        # The most one packet may count (see on_message): what it decodes to
        # is bounded too, not only its text (max_payload).
        self._max_packet = max(self._max_pending, server.limits.max_payload)
        self._running = 0  # handler tasks running
        self._running_bytes = 0  # bytes of the packets they hold
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._pending = 0  # bytes counted by _waiting and _connecting
        self._partial = 0  # bytes of the binary packet being received so far
        loop = asyncio.get_running_loop()
        # §Connection to a namespace: a session that joins none is closed.
        self._connect_timer: asyncio.TimerHandle | None = loop.call_later(
            server.connect_timeout, self._connect_timed_out
        )

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if not self.sockets and not self._connecting:
            self.server.logger.info("closing session %s: no namespace joined", self.session.sid)
            self.session.close("connect timeout")

    # -- SessionListener ------------------------------------------------------------

    def on_message(self, session: Session, data: str | bytes) -> None:
        # A packet counts as received: the text of its Engine.IO message plus
        # its attachments (characters of text, bytes of attachments), plus
        # what its decoded lists and objects hold beyond their text: "[]" is 2
        # characters but a 56-byte list and an 8-byte slot, so a packet of
        # nothing but brackets decodes to ~24 times its length. Counted before
        # decoding: a packet that would decode to more than one packet may
        # hold is refused without spending the CPU (a megabyte of brackets
        # takes json.loads about 0.2 s, every other client waiting).
        size = self._partial + len(data)
        if isinstance(data, str):
            size += _CONTAINER_SIZE * (data.count("[") + data.count("{"))
            if size > self._max_packet:
                self._refuse_packet(size)
                return
        try:
            packet = self.decoder.feed(data)
        except PacketError as exc:
            self.server.logger.info("closing session %s: %s", session.sid, exc)
            session.close("parse error")
            return
        if packet is None:
            self._partial = size
            return
        self._partial = 0
        try:
            self._on_packet(packet, size + _PACKET_OVERHEAD)
        except PacketError as exc:
            self.server.logger.info("closing session %s: %s", session.sid, exc)
            session.close("parse error")

    def on_close(self, session: Session, reason: str) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        for socket in list(self.sockets.values()):
            self._disconnect_socket(socket, reason, notify=False)
        # What waited is dropped: the client is gone (handlers running finish).
        self._connecting.clear()
        self._waiting.clear()
        self._pending = 0

    # -- packets ---------------------------------------------------------------------

    def _on_packet(self, packet: socketio.Packet, size: int) -> None:
        kind = packet.type
        name = packet.namespace
        if kind is socketio.PacketType.CONNECT:
            if name in self.sockets or name in self._connecting:
                return  # already connected: a duplicate CONNECT is ignored
            if not self._hold(size):
                return
            # The CONNECT counts (its auth) until admitted: names a dynamic
            # namespace accepts are unlimited, and each may wait on a middleware.
            self._connecting[name] = []
            self.server._spawn(self._connect(name, packet.data or {}, size))
            return
        if kind is socketio.PacketType.CONNECT_ERROR:
            raise PacketError(f"a client may not send {kind.name}")
        socket = self.sockets.get(name)
        if kind in (socketio.PacketType.ACK, socketio.PacketType.BINARY_ACK):
            # Never queued: a handler (or the connect handler, while its
            # namespace is still connecting) may be awaiting this very reply.
            if socket is not None:
                socket._on_ack(packet)
            return
        waiting = self._connecting.get(name)
        if waiting is not None:
            # Events sent right after CONNECT wait for the connection to settle.
            if self._hold(size):
                waiting.append((packet, size))
            return
        if socket is None:
            return  # not connected to that namespace: dropped, like socket.io
        if kind is socketio.PacketType.DISCONNECT:
            self._disconnect_socket(socket, "client namespace disconnect", notify=False)
            return
        event = socket.namespace._handler_for(packet)
        if event is None:
            return
        if not self._waiting and self._may_start(size):
            self._run_event(socket, event, size)
        elif self._hold(size):
            self._waiting.append((socket, event, size))

    def _refuse_packet(self, size: int) -> None:
        self._close_for_policy(
            "max_packet",
            "a packet counting %d bytes decoded (more than max_payload and max_pending_bytes)",
            size,
        )

    def _hold(self, size: int) -> bool:
        """Count ``size`` more bytes waiting; past ``max_pending_bytes`` close the
        session (a policy violation, not recoverable) and return False."""
        self._pending += size
        if self._pending <= self._max_pending:
            return True
        self._close_for_policy(
            "max_pending_bytes",
            "more than max_pending_bytes=%d waiting for handlers",
            self._max_pending,
        )
        return False

    def _close_for_policy(self, key: str, why: str, *args: Any) -> None:
        """Close the session for breaking a limit (WebSocket 1008, not
        recoverable), logged once per interval per ``key``."""
        self.server._log_limiter.log(
            logging.WARNING, key, "closing session %s: " + why, self.session.sid, *args
        )
        self.session.close(POLICY_VIOLATION, code=1008)

    def _may_start(self, size: int) -> bool:
        running = self._running
        if not running:
            return True
        return running < self._max_tasks and self._running_bytes + size <= self._max_pending

    def _run_event(self, socket: Socket, event: _Event, size: int) -> None:
        """Run the handler in a task counted until done; or, when nothing of this
        connection is running, a plain function at once, with no task (the
        common case: events are handled in the order they came either way)."""
        namespace = socket.namespace
        if self._running or event.is_async:
            coroutine = namespace._handle_event(socket, event)
        else:
            try:
                result = event.handler(socket, *event.args)
                if not inspect.isawaitable(result):
                    namespace._reply(socket, event.ack_id, result)
                    return
            except Exception:
                self.server._log_failure(namespace, event.event, socket)
                return
            coroutine = namespace._handle_event(socket, event, result)
        self._running += 1
        self._running_bytes += size
        task = self.server._spawn(coroutine)
        task.add_done_callback(lambda _: self._handler_done(size))

    def _handler_done(self, size: int) -> None:
        # A done callback rather than a finally: it runs even for a task
        # cancelled before it started.
        self._running -= 1
        self._running_bytes -= size
        waiting = self._waiting
        while waiting and self._may_start(waiting[0][2]):
            socket, event, size = waiting.popleft()
            self._pending -= size
            self._run_event(socket, event, size)

    def _send(self, packet: socketio.Packet) -> None:
        text, attachments = socketio.encode(packet)
        self.session.send(text)
        for attachment in attachments:
            self.session.send(attachment)

    async def _connect(self, name: str, auth: dict[str, Any], size: int) -> None:
        socket = None
        try:
            socket = await self._admit(name, auth)
        except ConnectionRefused as refused:
            payload: dict[str, Any] = {"message": refused.message}
            if refused.data is not None:
                payload["data"] = refused.data
            self._send(socketio.Packet(socketio.PacketType.CONNECT_ERROR, name, payload))
        except Exception:
            # A client can make this happen again and again (a middleware that
            # fails on its auth): keyed by the connect path, not the name asked.
            self.server._log_limiter.exception("connect", "connecting to %s failed", name[:100])
            payload = {"message": "Internal server error"}
            self._send(socketio.Packet(socketio.PacketType.CONNECT_ERROR, name, payload))
        queued = self._connecting.pop(name, None)
        if queued is None:
            return  # the session closed meanwhile (and dropped what waited)
        self._pending -= size + sum(packet_size for _, packet_size in queued)
        if socket is None:
            return  # refused: what came for the namespace meanwhile is dropped
        for packet, packet_size in queued:
            if self.session.closed:
                return
            self._on_packet(packet, packet_size)

    async def _admit(self, name: str, auth: Any) -> Socket | None:
        server = self.server
        if not isinstance(auth, dict):
            auth = {}
        auth = dict(auth)
        pid = auth.pop("pid", None)
        offset = auth.pop("offset", None)
        namespace = await server._resolve(name, auth)
        if namespace is None:
            raise ConnectionRefused("Invalid namespace")
        namespace._admitting += 1
        try:
            return await self._admit_to(namespace, auth, pid, offset)
        finally:
            namespace._admitting -= 1
            # A refused (or abandoned) admission leaves no dynamic child behind.
            server._release_child(namespace)

    async def _admit_to(
        self, namespace: Namespace, auth: dict[str, Any], pid: Any, offset: Any
    ) -> Socket | None:
        server = self.server
        name = namespace.name
        if self.session.closed:
            return None
        handshake = self._handshake(auth)
        restored = None
        if server.recovery is not None and isinstance(pid, str):
            restored = await server.adapter.restore_session(
                name, pid, offset if isinstance(offset, str) else None
            )
        if restored is not None:
            saved, missed = restored
            socket = Socket(namespace, self.session, saved.sid, saved.pid, handshake)
            socket.data = saved.data
            socket.recovered = True
            rooms = saved.rooms
        else:
            missed = []
            socket = Socket(
                namespace,
                self.session,
                server.engine.generate_id(),
                server.engine.generate_id() if server.recovery is not None else None,
                handshake,
            )
            rooms = []
        if not (restored is not None and server.recovery and server.recovery.skip_middlewares):
            for middleware in namespace._middlewares:
                await _maybe_await(middleware(socket, auth))
        connect = namespace._handlers.get("connect")
        if self.session.closed:
            return None
        # Joined before the connect handler runs, so it can emit to the socket.
        server.adapter.add_all(name, socket.sid, rooms)
        socket.offset = server.adapter.last_offset
        namespace.sockets[socket.sid] = socket
        self.sockets[name] = socket
        socket.connected = True
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        reply: dict[str, Any] = {"sid": socket.sid}
        if socket.pid is not None:
            reply["pid"] = socket.pid
        self._send(socketio.Packet(socketio.PacketType.CONNECT, name, reply))
        for data in missed:
            self._send(socketio.Packet.event(*data, namespace=name))
        if connect is not None:
            # The CONNECT reply leaves in a write of its own, as socket.io's
            # server sends it, before whatever the handler emits: a client
            # that reads one message and then waits for the next (the
            # protocol test suite's does) then sees them apart.
            self.session.flush()
            try:
                arity = _arity(connect)
                await _maybe_await(connect(socket) if arity == 1 else connect(socket, auth))
            except ConnectionRefused as refused:
                # Refused after all: the client gets a DISCONNECT.
                server.logger.info("connect handler refused %r: %s", socket, refused)
                self._disconnect_socket(socket, "server namespace disconnect", notify=True)
                return None
        return socket

    def _handshake(self, auth: dict[str, Any]) -> Handshake:
        request = self.session.request
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        headers: dict[str, str] = {}
        for key, value in request.headers:
            headers.setdefault(key.lower(), value)
        return Handshake(headers, query, auth, self.session.remote_address, request.path)

    def _disconnect_socket(self, socket: Socket, reason: str, *, notify: bool) -> None:
        if not socket.connected:
            return
        server = self.server
        namespace = socket.namespace
        name = namespace.name
        if notify and not self.session.closed:
            self._send(socketio.Packet(socketio.PacketType.DISCONNECT, name))
        handlers = namespace._handlers
        disconnecting = handlers.get("disconnecting")
        if disconnecting is not None:
            server._call(disconnecting, socket, "disconnecting", reason)
        rooms = [room for room in server.adapter.rooms_of(name, socket.sid) if room != socket.sid]
        socket._rooms_at_exit = {*rooms, socket.sid}
        socket.connected = False
        for waiter in socket._acks.values():
            if not waiter.done():
                # Whoever awaits an ack learns why it will never come (a
                # cancelled waiter would cancel the handler awaiting it).
                waiter.set_exception(Disconnected(f"{socket!r} disconnected: {reason}"))
        socket._acks.clear()
        server.adapter.delete_all(name, socket.sid)
        namespace.sockets.pop(socket.sid, None)
        self.sockets.pop(name, None)
        server._release_child(namespace)
        if server.recovery is not None and socket.pid is not None and reason in _RECOVERABLE:
            saved = SavedSession(socket.sid, socket.pid, name, rooms, socket.data, socket.offset)
            server._run(server.adapter.persist_session(saved), "saving a session for recovery")
        disconnect = handlers.get("disconnect")
        if disconnect is not None:
            server._call(disconnect, socket, "disconnect", reason)
