"""The Socket.IO v5 client: :class:`Client`.

Section names refer to https://github.com/socketio/socket.io-protocol
(README). Under it, the Engine.IO session (transports, heartbeat, upgrade):
:mod:`tether.realtime.client.engineio`. Here: namespaces, events, acks,
reconnection, connection state recovery. A namespace's state (and the packets
emitted while disconnected): :class:`~.namespaces.ClientNamespace`; handlers:
:class:`~.events.HandlerTable`.

::

    from tether.realtime.client import Client

    client = Client()

    @client.on("news")
    async def news(*args):
        print("news:", args)

    await client.connect("http://127.0.0.1:8000", auth={"token": "secret"})
    reply = await client.emit_with_ack("echo", "hello", timeout=5)
    await client.disconnect()
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import ssl as ssl_module
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urlsplit

from ...exceptions import AckTimeout, ConnectionRefused, Disconnected, InvalidState, PacketError
from ...limits import DEFAULT_REALTIME_LIMITS, RealtimeLimits
from ...protocol.proxy import ProxyOption
from ..protocol.parsers import PacketDecoder, Parser, SerializerOptions, make_parser
from ..protocol.socketio import DEFAULT_NAMESPACE, RESERVED_EVENTS, Packet, PacketType, ack_args
from .backoff import backoff_delay
from .engineio import TRANSPORTS, EngineSession, Target
from .events import CATCH_ALL, Handler, HandlerTable
from .namespaces import ClientNamespace, Encoded

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["CATCH_ALL", "Client", "backoff_delay"]

_log = logging.getLogger("tether.realtime.client")

H = TypeVar("H", bound=Handler)
Auth = Mapping[str, Any] | Callable[[], Any]
"""A CONNECT payload, or a function returning one (or an awaitable of one)."""

DEFAULT_MAX_BUFFERED = 1000
"""Default of ``max_buffered``: packets kept per namespace while disconnected."""


class Client:
    """A Socket.IO client, in the style of python-socketio's ``AsyncClient``.

    ``transports``: ``("websocket",)`` (default) or ``("polling",)``, or
    ``("polling", "websocket")`` to start with long-polling and upgrade, as
    ``socket.io-client`` does by default.

    Reconnection: after the connection is lost (not when :meth:`disconnect`
    is called, nor when the server disconnects every namespace), the client
    reconnects after ``reconnection_delay`` seconds, doubling each attempt up
    to ``reconnection_delay_max``, each delay moved by up to
    ``randomization_factor`` of itself (jitter); ``reconnection_attempts``
    failed attempts in a row end it (``None``: never). Events emitted
    meanwhile wait in a buffer, at most ``max_buffered`` packets per
    namespace, and are sent once the namespace is connected again.

    ``connect_timeout`` bounds opening the connection and the namespaces'
    replies. ``limits`` bounds what the server may send
    (:class:`~tether.limits.RealtimeLimits`). Logs go to ``logger``
    (``tether.realtime.client`` by default). Serializers: ``parser=``, ``json=``,
    ``default=`` (:class:`~tether.realtime.protocol.parsers.SerializerOptions`).
    """

    def __init__(
        self,
        *,
        reconnection: bool = True,
        reconnection_attempts: int | None = None,
        reconnection_delay: float = 1.0,
        reconnection_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        transports: Sequence[str] = ("websocket",),
        connect_timeout: float = 20.0,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        limits: RealtimeLimits = DEFAULT_REALTIME_LIMITS,
        logger: logging.Logger | None = None,
        **serializer: Unpack[SerializerOptions],
    ) -> None:
        transports = tuple(transports)
        if not transports or any(t not in TRANSPORTS for t in transports):
            raise ValueError(f"transports must be taken from {TRANSPORTS}, got {transports!r}")
        if not 0 <= randomization_factor <= 1:
            raise ValueError("randomization_factor must be between 0 and 1")
        if max_buffered < 0:
            raise ValueError("max_buffered must not be negative")
        self.reconnection = reconnection
        self.reconnection_attempts = reconnection_attempts
        self.reconnection_delay = reconnection_delay
        self.reconnection_delay_max = reconnection_delay_max
        self.randomization_factor = randomization_factor
        self.transports = transports
        self.connect_timeout = connect_timeout
        self.max_buffered = max_buffered
        self.limits = limits
        self.logger = logger or _log
        #: How packets are encoded and decoded (the server's must be the same).
        self.parser: Parser = make_parser(**serializer)
        self._handlers = HandlerTable(self.logger, limits, self._overflow)
        self._packet_bytes = 0  # of the packet being received (text and attachments)
        self._overflowed = False  # the session is being dropped: read nothing more
        self._namespaces: dict[str, ClientNamespace] = {}
        self._target: Target | None = None
        self._auth: Auth | None = None
        self._session: EngineSession | None = None
        self._decoder = self._new_decoder()
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()  # the current session ended
        self._done = asyncio.Event()  # disconnected for good
        self._done.set()
        self._closing = False

    # -- handlers --------------------------------------------------------------

    @overload
    def on(
        self, event: str, handler: None = None, *, namespace: str = DEFAULT_NAMESPACE
    ) -> Callable[[H], H]: ...

    @overload
    def on(self, event: str, handler: H, *, namespace: str = DEFAULT_NAMESPACE) -> H: ...

    def on(
        self, event: str, handler: H | None = None, *, namespace: str = DEFAULT_NAMESPACE
    ) -> H | Callable[[H], H]:
        """Register ``handler`` for ``event`` in ``namespace``; usable as a decorator.

        A handler may be a function or a coroutine function. For server events
        it gets the event's arguments; if the server asked for an
        acknowledgement, the return value is sent back (``None``: no
        arguments, a tuple: one argument per item, anything else: one
        argument). Special events: ``"connect"`` (no arguments),
        ``"disconnect"`` (the reason, e.g. ``"io server disconnect"``,
        ``"transport close"``, ``"ping timeout"``), ``"connect_error"`` (the
        exception: :class:`~tether.exceptions.ConnectionRefused` when the
        server refused, or why a reconnection attempt failed), and ``"*"``
        (any event without a handler of its own; gets the event name first).

        >>> client = Client()
        >>> @client.on("news", namespace="/chat")
        ... def news(headline):
        ...     print(headline)
        """

        def register(handler: H) -> H:
            self._handlers.register(namespace, event, handler)
            return handler

        if handler is not None:
            register(handler)
            return handler
        return register

    # -- connecting --------------------------------------------------------------

    async def connect(
        self,
        url: str,
        *,
        namespaces: Sequence[str] | None = None,
        auth: Auth | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        path: str = "/socket.io",
        ssl: ssl_module.SSLContext | None = None,
        proxy: ProxyOption = True,
    ) -> None:
        """Connect to the server at ``url`` (``http(s)://`` or ``ws(s)://``) and
        join ``namespaces``; return once the server accepted every one.

        ``namespaces`` defaults to the URL's path, or ``"/"``. ``auth`` is the
        CONNECT payload (§Connection to a namespace), or a function
        returning it, called (and awaited if need be) on every connection.
        ``headers`` are sent with every HTTP request. ``ssl`` is an
        :class:`ssl.SSLContext` for ``https://`` and ``wss://``. ``proxy``:
        :func:`tether.connect`'s (True: from the environment; a URL; None: none).

        Raises :class:`~tether.exceptions.ConnectionRefused` when a namespace
        refuses (the client then disconnects), :class:`asyncio.TimeoutError`
        after ``connect_timeout``, or the error that stopped the connection
        (:class:`OSError`, :class:`~tether.exceptions.HandshakeError`, ...).
        The first connection is not retried.
        """
        if not self._done.is_set():
            raise InvalidState("the client is already connected or connecting")
        if isinstance(headers, Mapping):
            headers = list(headers.items())
        if namespaces is None:
            namespaces = [urlsplit(url).path.rstrip("/") or DEFAULT_NAMESPACE]
        if not namespaces:
            raise ValueError("namespaces must not be empty")
        for name in namespaces:
            if not name.startswith("/") or "," in name:
                raise ValueError(f"invalid namespace {name!r}: it must start with '/'")
        self._target = Target.from_url(url, path, headers, ssl, proxy)
        self._auth = auth
        self._namespaces = {name: ClientNamespace(name) for name in namespaces}
        self._closing = False
        self._done.clear()
        try:
            await self._open(initial=True)
        except BaseException:
            await self._stop("io client disconnect")
            raise
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _open(self, *, initial: bool) -> None:
        """Open a session and connect every active namespace.

        Raise when that fails; a refusal only on the first connection or when
        no namespace is left (later, a refused namespace is given up and the
        others carry on). On the first connection the caller cleans up.
        """
        assert self._target is not None
        loop = asyncio.get_running_loop()
        self._decoder = self._new_decoder()
        self._packet_bytes = 0
        self._overflowed = False
        session = await asyncio.wait_for(
            EngineSession.open(
                self._target,
                self.transports,
                on_message=self._on_message,
                on_close=self._on_session_closed,
                max_payload=self.limits.max_payload,
                logger=self.logger,
            ),
            self.connect_timeout,
        )
        self._session = session
        self._lost.clear()
        waiting = []
        try:
            for ns in self._namespaces.values():
                if ns.active:
                    ns.ready = loop.create_future()
                    waiting.append(ns.ready)
                    await self._send_connect(session, ns)
            done, pending = await asyncio.wait(waiting, timeout=self.connect_timeout)
        except BaseException:
            if not initial:
                await session.close(self.connect_timeout)
            raise
        errors = [error for f in done if (error := f.result()) is not None]
        if pending:
            errors.append(asyncio.TimeoutError("no CONNECT reply from the server in time"))
        refused = [e for e in errors if isinstance(e, ConnectionRefused)]
        if len(refused) < len(errors) or (refused and (initial or not self._active())):
            if not initial:
                await session.close(self.connect_timeout)
            raise (refused + errors)[0]

    async def _send_connect(self, session: EngineSession, ns: ClientNamespace) -> None:
        auth = self._auth
        if callable(auth):
            auth = auth()
            if inspect.isawaitable(auth):
                auth = await auth
        data: dict[str, Any] | None = dict(auth) if auth is not None else None
        if ns.pid is not None:
            # Connection state recovery: the session and the last offset seen,
            # under what the application's own auth payload says.
            recovery: dict[str, Any] = {"pid": ns.pid}
            if ns.offset is not None:
                recovery["offset"] = ns.offset
            data = {**recovery, **(data or {})}
        self._send(session, self._encode(Packet(PacketType.CONNECT, ns.name, data)))

    def _new_decoder(self) -> PacketDecoder:
        max_payload, max_attachments = self.limits.max_payload, self.limits.max_attachments
        return self.parser.decoder(max_payload=max_payload, max_attachments=max_attachments)

    def _encode(self, packet: Packet) -> Encoded:
        return Encoded.of(packet, self.parser)

    def _send(self, session: EngineSession, encoded: Encoded) -> None:
        for payload in encoded.payloads:
            session.send(payload)

    # -- reconnection ------------------------------------------------------------

    async def _supervise(self) -> None:
        """Reconnect after each loss, until the client is done."""
        try:
            while True:
                await self._lost.wait()
                if self._closing or not self.reconnection or not self._active():
                    break
                if not await self._reconnect():
                    break
        finally:
            if not self._closing:
                await self._stop("io client disconnect")

    async def _reconnect(self) -> bool:
        """Reconnect with backoff; False when giving up."""
        attempt = 0
        while self._active():
            if self.reconnection_attempts is not None and attempt >= self.reconnection_attempts:
                self.logger.warning("giving up reconnecting after %d attempts", attempt)
                return False
            await asyncio.sleep(self._delay(attempt))
            attempt += 1
            try:
                await self._open(initial=False)
            except ConnectionRefused:
                return False  # by every namespace: each is given up
            except Exception as exc:  # the network, the server, or an auth callable
                self.logger.info("reconnection attempt %d failed: %s", attempt, exc)
                for ns in self._namespaces.values():
                    if ns.active:
                        self._handlers.emit(ns.name, "connect_error", exc)
            else:
                self.logger.info("reconnected after %d attempt(s)", attempt)
                return True
        return False

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: the delay before attempt ``attempt + 1``."""
        return backoff_delay(
            attempt,
            self.reconnection_delay,
            self.reconnection_delay_max,
            self.randomization_factor,
            random.random(),
        )

    def _active(self) -> bool:
        return any(ns.active for ns in self._namespaces.values())

    # -- receiving -------------------------------------------------------------

    def _on_message(self, data: str | bytes) -> None:
        # A PacketError from here closes the session with "parse error".
        if self._overflowed:
            return
        self._packet_bytes += len(data)
        packet = self._decoder.feed(data)
        if packet is not None:
            size, self._packet_bytes = self._packet_bytes, 0
            self._on_packet(packet, size)

    def _on_packet(self, packet: Packet, size: int) -> None:
        ns = self._namespaces.get(packet.namespace)
        if ns is None or not ns.active:
            self.logger.debug("ignoring %s for namespace %s", packet.type.name, packet.namespace)
            return
        kind = packet.type
        if kind is PacketType.CONNECT:
            self._on_connect(ns, packet.data)
        elif kind is PacketType.CONNECT_ERROR:
            self._on_connect_error(ns, packet.data)
        elif kind is PacketType.DISCONNECT:
            self._on_disconnect(ns)
        elif kind in (PacketType.EVENT, PacketType.BINARY_EVENT):
            self._on_event(ns, packet, size)
        elif packet.id is not None:  # ACK, BINARY_ACK
            future = ns.acks.pop(packet.id, None)
            if future is not None and not future.done():
                future.set_result(packet.data)

    def _on_connect(self, ns: ClientNamespace, data: Any) -> None:
        # §Connection to a namespace: the server answers CONNECT with its sid,
        # and with a pid when it keeps sessions for recovery.
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            raise PacketError(f"CONNECT reply for {ns.name} carries no sid")
        pid = data.get("pid") if isinstance(data.get("pid"), str) else None
        ns.recovered = pid is not None and pid == ns.pid
        if not ns.recovered:
            ns.offset = None
        ns.sid, ns.pid, ns.connected = data["sid"], pid, True
        session = self._session
        while ns.buffer and session is not None:
            self._send(session, ns.buffer.popleft())
        self._handlers.emit(ns.name, "connect")
        ns.settle(None)

    def _on_connect_error(self, ns: ClientNamespace, data: Any) -> None:
        if isinstance(data, dict):
            error = ConnectionRefused(str(data.get("message", "")), data.get("data"))
        else:
            error = ConnectionRefused(str(data))
        self.logger.info("namespace %s refused the connection: %s", ns.name, error.message)
        ns.give_up(error)
        self._handlers.emit(ns.name, "connect_error", error)
        ns.settle(error)

    def _on_disconnect(self, ns: ClientNamespace) -> None:
        was_connected = ns.connected
        ns.give_up(Disconnected(f"the server disconnected namespace {ns.name}"))
        if was_connected:
            self._handlers.emit(ns.name, "disconnect", "io server disconnect")
        if not self._active():
            self._close_session()

    def _on_event(self, ns: ClientNamespace, packet: Packet, size: int) -> None:
        name, *args = packet.data
        if packet.id is None and ns.pid is not None and args and isinstance(args[-1], str):
            # Connection state recovery: the server appends the event's offset
            # to what it stores (every event without an ack). It is ours to
            # send back on reconnection, not the handler's.
            ns.offset = args.pop()
        reply = self._replier(ns, packet.id) if packet.id is not None else None
        if not self._handlers.dispatch(ns.name, name, args, reply, size):
            self.logger.debug("no handler for event %r in %s", name, ns.name)

    def _replier(self, ns: ClientNamespace, ack_id: int) -> Callable[[Any], None]:
        session = self._session

        def reply(result: Any) -> None:
            # An ack only makes sense in the session that asked for it.
            if session is None or session is not self._session or not ns.connected:
                return
            try:
                encoded = self._encode(Packet.ack(ack_id, *ack_args(result), namespace=ns.name))
            except (TypeError, ValueError) as exc:
                self.logger.error("cannot acknowledge event %d in %s: %s", ack_id, ns.name, exc)
                return
            self._send(session, encoded)

        return reply

    # -- losing the connection ---------------------------------------------------

    def _on_session_closed(
        self, session: EngineSession, reason: str, exc: BaseException | None
    ) -> None:
        if session is not self._session:
            return
        self._session = None
        error = Disconnected(f"connection lost: {reason}")
        for ns in self._namespaces.values():
            if ns.lose(error) and not self._closing:
                self._handlers.emit(ns.name, "disconnect", reason)
        self._lost.set()

    def _overflow(self) -> None:
        """Past max_pending_bytes waiting (logged by the table): drop the session."""
        self._overflowed = True
        self._close_session()

    def _close_session(self) -> None:
        session = self._session
        if session is not None:
            task = asyncio.get_running_loop().create_task(session.close(self.connect_timeout))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _stop(self, reason: str) -> None:
        """Disconnected for good: close the session, fail what waits, wake wait()."""
        self._closing = True
        session, self._session = self._session, None
        error = Disconnected("the client is disconnected")
        for ns in self._namespaces.values():
            was_connected = ns.connected
            ns.give_up(error)
            ns.settle(error)
            if was_connected:
                if session is not None:
                    self._send(session, self._encode(Packet(PacketType.DISCONNECT, ns.name)))
                self._handlers.emit(ns.name, "disconnect", reason)
        if session is not None:
            await session.close(self.connect_timeout)
        self._done.set()

    # -- the public API ------------------------------------------------------------

    async def emit(self, event: str, *args: Any, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Send an event with ``args`` (JSON-able values, ``bytes`` anywhere in them).

        While reconnecting, the event waits in the buffer and is sent once the
        namespace is connected again. Raises
        :class:`~tether.exceptions.Disconnected` when the client is not
        connected and not reconnecting, or when the buffer is full.
        """
        self._emit(event, args, namespace, None)

    async def emit_with_ack(
        self,
        event: str,
        *args: Any,
        timeout: float | None = 60.0,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> Any:
        """Send an event and return the server's acknowledgement.

        Returns ``None`` when the server acknowledged with no argument, the
        argument when it sent one, and a tuple when it sent several (like
        python-socketio's ``call``). Raises
        :class:`~tether.exceptions.AckTimeout` after ``timeout`` seconds
        (``None``: no limit), and :class:`~tether.exceptions.Disconnected`
        when the connection is lost before the event reached the server.
        """
        loop = asyncio.get_running_loop()
        ack_id = next(self._ids)
        future: asyncio.Future[list[Any]] = loop.create_future()
        ns = self._emit(event, args, namespace, ack_id)
        ns.acks[ack_id] = future
        try:
            values = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise AckTimeout(f"no acknowledgement of {event!r} within {timeout} s") from None
        finally:
            ns.acks.pop(ack_id, None)
            for encoded in ns.buffer:
                if encoded.id == ack_id:  # still unsent: it would be answered by no one
                    ns.buffer.remove(encoded)
                    break
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def _emit(
        self, event: str, args: tuple[Any, ...], namespace: str, ack_id: int | None
    ) -> ClientNamespace:
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is a reserved event name")
        ns = self._namespaces.get(namespace)
        if ns is None:
            if self._done.is_set():
                raise Disconnected("the client is not connected")
            raise ValueError(f"{namespace!r} is not one of the client's namespaces")
        if not ns.active or self._closing:
            raise Disconnected(f"namespace {namespace} is disconnected")
        # Encoded now, so that arguments that cannot be sent fail here, not later.
        encoded = self._encode(Packet.event(event, *args, namespace=namespace, id=ack_id))
        if ns.connected and self._session is not None:
            self._send(self._session, encoded)
        elif len(ns.buffer) >= self.max_buffered:
            raise Disconnected(
                f"namespace {namespace} is reconnecting and its buffer of "
                f"{self.max_buffered} packets is full"
            )
        else:
            ns.buffer.append(encoded)
        return ns

    async def disconnect(self) -> None:
        """Leave every namespace, close the connection and stop reconnecting."""
        if self._done.is_set():
            return
        self._closing = True
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await self._stop("io client disconnect")

    async def wait(self) -> None:
        """Wait until the client is disconnected for good: by :meth:`disconnect`,
        by the server, or when reconnection gives up."""
        await self._done.wait()

    def sid(self, namespace: str = DEFAULT_NAMESPACE) -> str | None:
        """The id the server gave this client in ``namespace``, or ``None``."""
        ns = self._namespaces.get(namespace)
        return ns.sid if ns is not None and ns.connected else None

    def recovered(self, namespace: str = DEFAULT_NAMESPACE) -> bool:
        """Whether the last connection to ``namespace`` recovered the previous
        session: same sid and rooms, and the events missed meanwhile delivered."""
        ns = self._namespaces.get(namespace)
        return ns is not None and ns.recovered

    @property
    def connected(self) -> bool:
        """Whether every namespace still in use is connected (False if none is)."""
        active = [ns for ns in self._namespaces.values() if ns.active]
        return bool(active) and all(ns.connected for ns in active) and not self._closing

    @property
    def transport(self) -> str | None:
        """The current transport, ``"websocket"`` or ``"polling"``; ``None`` when disconnected."""
        session = self._session
        return session.transport.name if session is not None and not session.closed else None
