"""The Socket.IO v5 server: :class:`Server`, the main namespace and the
registry of the others, and :class:`ServerSockets`, what its adapter reaches
its sockets through.

Engine.IO sessions (:mod:`.engine`) carry the packets; each session gets a
:class:`~.connection.SocketIOConnection` that decodes them and routes them to
the :class:`~.sockets.Socket` of their namespace (:mod:`.namespace`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ...exceptions import InvalidState
from ...limits import DEFAULT_REALTIME_LIMITS, RealtimeLimitOptions, RealtimeLimits
from ..adapters.base import Adapter, BroadcastOptions, RecoveryOptions, SocketInfo
from ..protocol import socketio
from ..protocol.parsers import (
    Parser,
    SerializerOptions,
    encode_packet,
    json_out,
    make_parser,
)
from .by_sid import ClassNamespace, SidMethods
from .connection import SocketIOConnection
from .engine import (
    DEFAULT_ENGINE_OPTIONS,
    CookieOptions,
    EngineOptions,
    EngineServer,
    Outgoing,
    Session,
)
from .namespace import Namespace
from .observe import Hooks, Observer
from .runner import Handler, Runner, maybe_await
from .sockets import Socket, ack_value

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ClassNamespace", "Namespace", "Server", "ServerOptions", "ServerSockets"]

_log = logging.getLogger("tether.realtime")

_H = TypeVar("_H", bound=Handler)

_ENGINE_FIELDS = frozenset(f.name for f in dataclasses.fields(EngineOptions))
_SERIALIZER_FIELDS = frozenset(SerializerOptions.__annotations__)


class ServerOptions(RealtimeLimitOptions, SerializerOptions, total=False):
    """The keyword options of :class:`Server` beyond its own parameters: the
    :class:`~.engine.EngineOptions` fields (their defaults are there), the
    :class:`~tether.limits.RealtimeLimits` fields and the
    :class:`~tether.realtime.protocol.parsers.SerializerOptions`."""

    ping_interval: float
    ping_timeout: float
    transports: Iterable[str]
    allow_upgrades: bool
    upgrade_timeout: float
    cors_allowed_origins: str | Iterable[str] | None
    cors_credentials: bool
    cookie: bool | str | CookieOptions | None


class Server(SidMethods, Namespace):
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
    allow-list for WebSocket upgrades. Times are in seconds. The Engine.IO
    options (:class:`~.engine.EngineOptions`: ``ping_interval``,
    ``transports``, ``cors_allowed_origins``... with their defaults) and the
    limits (:class:`~tether.limits.RealtimeLimits`) are keyword options
    (:class:`ServerOptions`), on top of ``engine_options=`` and ``limits=``:
    ``realtime.Server(ping_interval=10, max_payload=100_000, max_handler_tasks=4)``.

    ``parser="msgpack"`` speaks npm's ``socket.io-msgpack-parser``; ``json=``
    (``orjson``...) and ``default=`` (a hook for ``datetime``, dataclasses...)
    configure the default JSON parser
    (:class:`~tether.realtime.protocol.parsers.SerializerOptions`).

    For code coming from python-socketio, the by-sid methods
    (:class:`~.by_sid.SidMethods`: ``emit(..., to=sid)``, ``enter_room``,
    ``call``, ``get_session``, ``@server.event``, ``register_namespace``)
    are here too: see ``docs/migrating.md``.
    """

    def __init__(
        self,
        *,
        path: str = "/socket.io",
        adapter: Adapter | None = None,
        connection_state_recovery: bool | dict[str, Any] | RecoveryOptions | None = None,
        connect_timeout: float = 45.0,
        ack_timeout: float = 10.0,
        static_files: dict[str, str] | None = None,
        logger: logging.Logger | None = None,
        limits: RealtimeLimits = DEFAULT_REALTIME_LIMITS,
        engine_options: EngineOptions = DEFAULT_ENGINE_OPTIONS,
        **options: Unpack[ServerOptions],
    ) -> None:
        self.path = "/" + path.strip("/")
        engine: dict[str, Any] = {n: v for n, v in options.items() if n in _ENGINE_FIELDS}
        serializer: dict[str, Any] = {n: v for n, v in options.items() if n in _SERIALIZER_FIELDS}
        limit_options = {
            n: v
            for n, v in options.items()
            if n not in _ENGINE_FIELDS and n not in _SERIALIZER_FIELDS
        }
        #: How packets are encoded and decoded
        #: (:class:`~tether.realtime.protocol.parsers.Parser`).
        self.parser: Parser = make_parser(**serializer)
        #: The default JSON parser's fast encoder (None with another parser).
        self.json_out = json_out(self.parser)
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
        self.static_files = dict(static_files or {})
        self.logger = logger or _log
        #: Its tasks (handlers, admissions...) and the rate-limited log of
        #: their failures.
        self.runner = Runner(self.logger)
        # Any iterable is taken, as a list or tuple (EngineOptions wants sequences).
        if "transports" in engine:
            engine["transports"] = tuple(engine["transports"])
        origins = engine.get("cors_allowed_origins")
        if origins is not None and not isinstance(origins, str):
            engine["cors_allowed_origins"] = list(origins)
        self.engine = EngineServer(
            on_session=self._on_session, limits=self.limits, options=engine_options, **engine
        )
        self.namespaces: dict[str, Namespace] = {}
        self._parents: dict[Any, Namespace] = {}
        self._started = False
        self._starting: asyncio.Task[None] | None = None  # the start under way
        self._start_waiters = 0  # callers of start() waiting for it
        self._closed = False  # shutdown() called, and no start() since
        self._stopping = 0  # shutdown() calls under way
        #: Handlers of server-side events from other nodes (:meth:`on_server_event`).
        self.server_handlers: dict[str, Handler] = {}
        #: What the hook sites call (:class:`.observe.Hooks`): a hook nobody
        #: overrides is None there, so that its sites cost one ``is None`` test.
        self.hooks = Hooks((), self.runner.limiter)
        self._observers: tuple[Observer, ...] = ()
        super().__init__(self, socketio.DEFAULT_NAMESPACE)
        self.namespaces[self.name] = self
        #: What the adapter reaches this server's sockets through.
        self.local_sockets = ServerSockets(self)
        self.adapter.attach(self.local_sockets)

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
            parent = Namespace(self, f"<dynamic {name!r}>", dynamic=True)
            self._parents[name] = parent
        return parent

    async def resolve_namespace(self, name: str, auth: dict[str, Any]) -> Namespace | None:
        """The namespace a client asks for by ``name``: an existing one, or a
        child created for a dynamic parent that accepts it; None if none does."""
        namespace = self.namespaces.get(name)
        if namespace is not None:
            return namespace
        for matcher, parent in self._parents.items():
            if isinstance(matcher, re.Pattern):
                ok = matcher.fullmatch(name) is not None
            else:
                ok = bool(await maybe_await(matcher(name, auth)))
            if ok:
                child = self.namespaces.get(name)
                if child is None:
                    child = self.namespaces[name] = Namespace(self, name, parent)
                    parent.children[name] = child
                return child
        return None

    def release_namespace(self, namespace: Namespace) -> None:
        """Remove a dynamic child namespace nobody uses any more: a client may
        ask for any number of names a pattern accepts, so each lives only while
        it has sockets (or sockets being admitted). Its parent keeps the
        handlers: the next socket to ask for the name gets a new child."""
        parent = namespace.parent
        if parent is None or namespace.sockets or namespace.admitting:
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
            self.server_handlers[event] = function
            return function

        if handler is not None:
            register(handler)
            return handler
        return register

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Send ``event`` to every *other* node's :meth:`on_server_event` handler
        (JSON-able args; nothing happens with the in-memory adapter)."""
        await self.adapter.server_side_emit(event, list(args))

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the adapter is started: :meth:`start` returned, and
        :meth:`shutdown` was not called since."""
        return self._started

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called and no :meth:`start` since.

        Only an explicit :meth:`start` (:func:`serve`, :meth:`lifespan`, the
        ASGI lifespan, a call of your own) opens a closed server again: the
        ASGI app, which starts a server no lifespan started on its first
        request, answers 503 instead of restarting one that was shut down.
        """
        return self._closed

    async def start(self) -> None:
        """Start the adapter. :func:`serve` calls it, and so do the ASGI app
        (on the lifespan startup, or on the first request when no lifespan
        reaches it: a mounted app) and :meth:`lifespan`.

        Safe to call more than once: concurrent calls wait for the same start,
        later ones return at once. If the adapter fails to start, every
        caller waiting gets its error, and the next call tries again; a
        failure nobody waits for any more (every caller was cancelled) is
        logged. After :meth:`shutdown` it starts the server again (see
        :attr:`closed`); during one it raises
        :class:`~tether.exceptions.InvalidState`.
        """
        if self._stopping:
            raise InvalidState("start() while shutdown() is under way")
        self._closed = False
        if self._started:
            return
        starting = self._starting
        if starting is None:
            starting = self._starting = asyncio.ensure_future(self._start_adapter())
            starting.add_done_callback(self._start_done)
        self._start_waiters += 1
        try:
            # Shielded: a caller that is cancelled (a client that went away)
            # does not cancel the start the other callers wait for.
            await asyncio.shield(starting)
        finally:
            self._start_waiters -= 1

    async def _start_adapter(self) -> None:
        try:
            await self.adapter.start()
            self._started = True
            if self.hooks.server_started is not None:
                self.hooks.call("server_started")
        finally:
            self._starting = None

    def _start_done(self, starting: asyncio.Task[None]) -> None:
        # Always retrieve the error (asyncio.shield does not once its caller
        # is cancelled: "Task exception was never retrieved" at collection).
        # The callers still waiting get it raised; if none is left, log it.
        error = None if starting.cancelled() else starting.exception()
        if error is not None and not self._start_waiters:
            self.logger.error(
                "the realtime server could not start its adapter "
                "(every caller of start() was cancelled meanwhile)",
                exc_info=error,
            )

    async def shutdown(self) -> None:
        """Close every session (clients see ``server shutting down``), stop the
        adapter. The server is then :attr:`closed` until :meth:`start` is
        called again."""
        self._closed = True
        self._stopping += 1
        try:
            self.engine.close_all("server shutting down")
            await self.runner.drain(1.0)
            starting = self._starting
            if starting is not None:
                await asyncio.wait({starting})  # a start under way ends first, however it ends
            if self._started:
                if self.hooks.server_stopping is not None:
                    self.hooks.call("server_stopping")
                self._started = False
                await self.adapter.close()
        finally:
            self._stopping -= 1

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """The server running for the duration of an ``async with`` block:
        :meth:`start` on entry, :meth:`shutdown` on exit. Its signature is the
        ``lifespan=`` of FastAPI and Starlette (``app`` is not used), so a host
        app that mounts :meth:`asgi_app`, and so passes it no lifespan events,
        starts and stops it::

            app = FastAPI(lifespan=server.lifespan)
            app.mount("/rt", server.asgi_app())

        With a lifespan of your own, enter it there:
        ``async with server.lifespan(app): ... yield``.
        """
        await self.start()
        try:
            yield
        finally:
            await self.shutdown()

    # -- observers -------------------------------------------------------------------

    @property
    def observers(self) -> tuple[Observer, ...]:
        """The observers installed with :meth:`observe`, in order."""
        return self._observers

    def observe(self, observer: Observer) -> Observer:
        """Tell ``observer`` (a :class:`~.observe.Observer`) what happens in
        this server from now on; returns it. Installing one twice does nothing.
        Which hooks it overrides is read now: the server calls only those."""
        if observer not in self._observers:
            self._set_observers((*self._observers, observer))
            if self._started:
                observer.server_started()
        return observer

    def unobserve(self, observer: Observer) -> None:
        """Stop telling ``observer`` (installed with :meth:`observe`); no error
        if it is not installed."""
        self._set_observers(tuple(o for o in self._observers if o is not observer))

    def _set_observers(self, observers: tuple[Observer, ...]) -> None:
        self._observers = observers
        self.hooks = Hooks(observers, self.runner.limiter)

    # -- sessions and their clients ------------------------------------------------

    def _on_session(self, session: Session) -> None:
        session.listener = SocketIOConnection(self, session)
        if self.hooks.session_opened is not None:
            self.hooks.call("session_opened", session)

    # -- serving ---------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether a request path is an Engine.IO endpoint of this server."""
        route = urlsplit(path).path.rstrip("/")
        return route == self.path

    def asgi_app(self, other_app: Any = None) -> Any:
        """An ASGI application serving this server (and ``other_app`` for other paths)."""
        from .asgi import ASGIApp

        return ASGIApp(self, other_app)


class ServerSockets:
    """The sockets of a :class:`Server`, as its adapter reaches them (the
    :class:`~tether.realtime.adapters.interface.LocalSockets` it is given)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    @property
    def recovery(self) -> RecoveryOptions | None:
        return self.server.recovery

    def namespace_names(self) -> list[str]:
        return list(self.server.namespaces)

    def socket(self, namespace: str, sid: str) -> Socket | None:
        nsp = self.server.namespaces.get(namespace)
        return None if nsp is None else nsp.sockets.get(sid)

    def deliver(
        self,
        namespace: str,
        packet: socketio.Packet,
        sids: list[str],
        opts: BroadcastOptions,
    ) -> None:
        """Send ``packet`` to these local sockets: serialised once, framed once."""
        nsp = self.server.namespaces.get(namespace)
        if nsp is None or not sids:
            return
        messages = encode_packet(self.server.parser, packet)
        outgoing = Outgoing(messages)
        # One frame for every WebSocket session (a packet without attachments,
        # the common case): written by Connection.write_shared straight from
        # this loop. A session on polling, or one write_shared refuses (slow,
        # closing), goes through send_outgoing, which knows those cases.
        frame = outgoing.frames if len(outgoing.texts) == 1 else None
        volatile = opts.volatile
        get = nsp.sockets.get
        sent = 0
        for sid in sids:
            socket = get(sid)
            if socket is None or not socket.connected:
                continue
            session = socket.session
            if volatile and not session.writable:
                continue
            sent += 1
            shared = session.shared
            if shared is None or frame is None or not shared.write_shared(frame):
                session.send_outgoing(outgoing)
        hook = self.server.hooks.messages_sent
        if hook is not None and sent:
            try:
                hook(sent, sum(map(len, messages)))
            except Exception:
                self.server.hooks.failed("messages_sent")

    def next_ack_id(self, namespace: str) -> int | None:
        nsp = self.server.namespaces.get(namespace)
        return None if nsp is None else nsp.next_ack_id()

    def deliver_with_ack(
        self,
        namespace: str,
        packet: socketio.Packet,
        sids: list[str],
        opts: BroadcastOptions,
    ) -> list[asyncio.Future[Any]]:
        nsp = self.server.namespaces.get(namespace)
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
        self.deliver(namespace, packet, live, opts)
        return waiters

    def socket_infos(self, namespace: str, sids: list[str]) -> list[SocketInfo]:
        nsp = self.server.namespaces.get(namespace)
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

    def join(self, namespace: str, sid: str, rooms: list[str]) -> None:
        socket = self.socket(namespace, sid)
        if socket is not None:
            socket.enter(rooms)

    def leave(self, namespace: str, sid: str, rooms: list[str]) -> None:
        socket = self.socket(namespace, sid)
        if socket is not None:
            socket.exit(rooms)

    def disconnect(self, namespace: str, sid: str, close: bool) -> None:
        socket = self.socket(namespace, sid)
        if socket is None:
            return
        connection = socket.session.listener
        assert isinstance(connection, SocketIOConnection)
        if close:
            # As socket.io: every namespace of the connection gets a DISCONNECT
            # (so the client does not reconnect: a kick is final), then the
            # connection closes. To simulate a lost connection instead, close
            # ``socket.conn``.
            for other in list(connection.sockets.values()):
                connection.disconnect_socket(other, "server namespace disconnect", notify=True)
            socket.session.close("forced server close")
        else:
            connection.disconnect_socket(socket, "server namespace disconnect", notify=True)

    def server_event(self, event: str, args: list[Any]) -> None:
        handler = self.server.server_handlers.get(event)
        if handler is not None:
            self.server.runner.run(
                maybe_await(handler(*args)), f"server-side event handler {event!r}"
            )


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
