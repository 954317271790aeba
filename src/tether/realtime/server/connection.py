"""The Socket.IO side of one Engine.IO session: decoding, namespaces, sockets.

Section names refer to the Socket.IO v5 specification
(https://github.com/socketio/socket.io-protocol, README). Each Engine.IO
session (:mod:`tether.realtime.server.engine`) gets a
:class:`SocketIOConnection` that decodes its packets, admits its sockets to
namespaces (middleware, recovery, the connect handler) and runs their event
handlers within the connection's bounds.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ...exceptions import ConnectionRefused, PacketError
from ..adapters.base import SavedSession
from ..protocol import socketio
from ..protocol.parsers import encode_ack, encode_packet
from .engine import POLICY_VIOLATION, Session
from .namespace import Event, Namespace
from .runner import EAGER_START, Handler, arity, maybe_await
from .sockets import Handshake, Socket, send_messages

if TYPE_CHECKING:
    from .server import Server

__all__ = ["RECOVERABLE", "SocketIOConnection"]

# Reasons after which a socket may come back with its state (socket.io's list,
# RECOVERABLE_DISCONNECT_REASONS in its lib/socket.ts).
RECOVERABLE = frozenset(
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


_UNSET: Any = object()
_EVENT = socketio.PacketType.EVENT

# An event waiting for a handler slot: its socket, and the bytes it counts.
_Waiting = tuple[Socket, Event, int]


class SocketIOConnection:
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
        self.decoder = server.parser.decoder(
            max_payload=server.limits.max_payload,
            max_attachments=server.limits.max_attachments,
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
        hook = self.server.hooks.message_received
        if hook is not None:
            try:
                hook(session, len(data))
            except Exception:
                self.server.hooks.failed("message_received")
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
        # A binary parser's lists and maps (msgpack: one byte each) are only
        # known once decoded (its decoder counts them): charged then.
        containers: int = getattr(self.decoder, "containers", 0)
        if containers:
            size += _CONTAINER_SIZE * containers
            if size > self._max_packet:
                self._refuse_packet(size)
                return
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
            self.disconnect_socket(socket, reason, notify=False)
        # What waited is dropped: the client is gone (handlers running finish).
        self._connecting.clear()
        self._waiting.clear()
        self._pending = 0
        hooks = self.server.hooks
        if hooks.session_closed is not None:
            hooks.call("session_closed", session, reason)

    # -- packets ---------------------------------------------------------------------

    def _on_packet(self, packet: socketio.Packet, size: int) -> None:
        kind = packet.type
        name = packet.namespace
        if kind is _EVENT and not self._connecting:
            # Nearly every packet: an event for a connected namespace (or for
            # none: dropped). What the general path below does with it.
            socket = self.sockets.get(name)
            if socket is not None:
                self._on_event(socket, packet, size)
            return
        if kind is socketio.PacketType.CONNECT:
            if name in self.sockets or name in self._connecting:
                return  # already connected: a duplicate CONNECT is ignored
            if not self._hold(size):
                return
            # The CONNECT counts (its auth) until admitted: names a dynamic
            # namespace accepts are unlimited, and each may wait on a middleware.
            self._connecting[name] = []
            self.server.runner.spawn(self._connect(name, packet.data or {}, size))
            return
        if kind is socketio.PacketType.CONNECT_ERROR:
            raise PacketError(f"a client may not send {kind.name}")
        socket = self.sockets.get(name)
        if kind in (socketio.PacketType.ACK, socketio.PacketType.BINARY_ACK):
            # Never queued: a handler (or the connect handler, while its
            # namespace is still connecting) may be awaiting this very reply.
            if socket is not None:
                socket.ack_received(packet)
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
            self.disconnect_socket(socket, "client namespace disconnect", notify=False)
            return
        self._on_event(socket, packet, size)

    def _on_event(self, socket: Socket, packet: socketio.Packet, size: int) -> None:
        """An EVENT (or BINARY_EVENT) for ``socket``: its handler starts, or
        waits for a slot (counted in ``max_pending_bytes``)."""
        hook = self.server.hooks.event_received
        if hook is not None and packet.data:
            try:
                hook(socket, packet.data[0], packet.data[1:])
            except Exception:
                self.server.hooks.failed("event_received")
        event = socket.namespace.handlers.match(packet)
        if event is None:
            return
        if not self._waiting and (not self._running or self._may_start(size)):
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
        self.server.runner.limiter.log(
            logging.WARNING, key, "closing session %s: " + why, self.session.sid, *args
        )
        self.session.close(POLICY_VIOLATION, code=1008)

    def _may_start(self, size: int) -> bool:
        running = self._running
        if not running:
            return True
        return running < self._max_tasks and self._running_bytes + size <= self._max_pending

    def _run_event(self, socket: Socket, event: Event, size: int) -> None:
        """Start the handler now: a plain function is called, a coroutine runs
        in a task (Python 3.12+: up to where it first waits at once, and
        only one that waits gets a task), counted (``max_handler_tasks``)
        until it is done. Handlers start in the order their events came
        either way: this runs for an event only when none is waiting before
        it. Before Python 3.12 (no eager tasks) a coroutine starts in a task,
        so while one has not finished a plain function goes in a task too,
        behind it."""
        try:
            if event.is_async and event.ack_id is None:
                # Nothing to answer: the task runs the handler's own
                # coroutine, with no coroutine of ours around it.
                coroutine = event.handler(socket, *event.args)
                if type(coroutine) is not CoroutineType:
                    coroutine = self._handle_event(socket, event, coroutine)
            elif event.is_async or (self._running and not EAGER_START):
                coroutine = self._handle_event(socket, event)
            else:
                result = event.handler(socket, *event.args)
                if result is None or not inspect.isawaitable(result):
                    if event.ack_id is not None:
                        self._reply(socket, event.ack_id, result)
                    return
                coroutine = self._handle_event(socket, event, result)
        except Exception:
            self._log_failure(socket, event.event)
            return
        # Counted from its start: whatever it does in its first step sees it running.
        self._running += 1
        self._running_bytes += size
        runner = self.server.runner

        def done(task: asyncio.Task[Any]) -> None:
            # One callback per event, rather than a finally: it runs even for
            # a task cancelled before it started.
            runner.forget(task)
            self._running -= 1
            self._running_bytes -= size
            if not task.cancelled() and (failure := task.exception()) is not None:
                self._log_failure(socket, event.event, failure)
            if self._waiting:
                self._start_waiting()

        task = runner.start(coroutine, done)
        if task.done():
            # Finished in its first step (3.12+: never kept, done not called).
            # Not _start_waiting: the caller is the one loop that starts
            # waiting events (on_message starts this one only when none
            # waits; done goes on with the next).
            self._running -= 1
            self._running_bytes -= size
            if not task.cancelled() and (failure := task.exception()) is not None:
                self._log_failure(socket, event.event, failure)

    def _start_waiting(self) -> None:
        """Start the events waiting for a handler slot, as far as slots allow."""
        waiting = self._waiting
        max_tasks, max_pending = self._max_tasks, self._max_pending
        # _may_start, inlined: with more events in flight than
        # max_handler_tasks, half of them come through here.
        while waiting and (
            not self._running
            or (self._running < max_tasks and self._running_bytes + waiting[0][2] <= max_pending)
        ):
            socket, event, size = waiting.popleft()
            self._pending -= size
            self._run_event(socket, event, size)

    def _reply(self, socket: Socket, ack_id: int | None, result: Any) -> None:
        if ack_id is not None and socket.connected:
            server = self.server
            args = socketio.ack_args(result)
            messages = encode_ack(server.parser, ack_id, args, socket.namespace.name)
            send_messages(self.session, messages, server.hooks)

    async def _handle_event(self, socket: Socket, event: Event, started: Any = _UNSET) -> None:
        """Run an event's handler in a task (or finish the awaitable it
        ``started``) and answer its ack in the same step, in the order the
        handlers finish; what it raises is logged by the task's done callback."""
        result = event.handler(socket, *event.args) if started is _UNSET else started
        if type(result) is CoroutineType or inspect.isawaitable(result):
            result = await result
        self._reply(socket, event.ack_id, result)

    def _log_failure(
        self, socket: Socket, event: str, failure: BaseException | None = None
    ) -> None:
        # Keyed by the handler, not the child namespace a client named.
        namespace = socket.namespace
        root = namespace.parent or namespace
        self.server.runner.log_failure(root.name, event, socket, failure)

    def _call(
        self,
        handler: Handler,
        socket: Socket,
        event: str,
        *args: Any,
        after: Callable[[], object] | None = None,
    ) -> None:
        """Run the ``event`` handler ``handler(socket, *args)`` in a task, with
        as many of ``args`` as it takes (``disconnect`` handlers may ignore the
        reason); ``after`` runs once it is over, however it ended."""
        count = arity(handler)
        if count >= 1:
            args = args[: count - 1]

        async def call() -> None:
            try:
                await maybe_await(handler(socket, *args))
            except Exception:
                self._log_failure(socket, event)
            finally:
                if after is not None:
                    after()

        self.server.runner.spawn(call())

    def _send(self, packet: socketio.Packet) -> None:
        server = self.server
        send_messages(self.session, encode_packet(server.parser, packet), server.hooks)

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
            self.server.runner.limiter.exception("connect", "connecting to %s failed", name[:100])
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
        namespace = await server.resolve_namespace(name, auth)
        if namespace is None:
            raise ConnectionRefused("Invalid namespace")
        namespace.admitting += 1
        try:
            return await self._admit_to(namespace, auth, pid, offset)
        finally:
            namespace.admitting -= 1
            # A refused (or abandoned) admission leaves no dynamic child behind.
            server.release_namespace(namespace)

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
            if server.hooks.recovery is not None:
                server.hooks.call("recovery", name, restored is not None)
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
            for middleware in namespace.handlers.middlewares:
                await maybe_await(middleware(socket, auth))
        connect = namespace.handlers.get("connect")
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
        if server.hooks.socket_connected is not None:
            server.hooks.call("socket_connected", socket, restored is not None)
        if connect is not None:
            # The CONNECT reply leaves in a write of its own, as socket.io's
            # server sends it, before whatever the handler emits: a client
            # that reads one message and then waits for the next (the
            # protocol test suite's does) then sees them apart.
            self.session.flush()
            try:
                one = arity(connect) == 1
                await maybe_await(connect(socket) if one else connect(socket, auth))
            except ConnectionRefused as refused:
                # Refused after all: the client gets a DISCONNECT.
                server.logger.info("connect handler refused %r: %s", socket, refused)
                self.disconnect_socket(socket, "server namespace disconnect", notify=True)
                return None
        return socket

    def _handshake(self, auth: dict[str, Any]) -> Handshake:
        request = self.session.request
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        headers: dict[str, str] = {}
        for key, value in request.headers:
            headers.setdefault(key.lower(), value)
        return Handshake(headers, query, auth, self.session.remote_address, request.path)

    def disconnect_socket(self, socket: Socket, reason: str, *, notify: bool) -> None:
        """Disconnect ``socket`` for ``reason``: it leaves its rooms, its acks
        fail, its session is saved if it may come back (a reason of
        ``RECOVERABLE``); ``notify`` sends the client a DISCONNECT."""
        if not socket.connected:
            return
        server = self.server
        namespace = socket.namespace
        name = namespace.name
        if notify and not self.session.closed:
            self._send(socketio.Packet(socketio.PacketType.DISCONNECT, name))
        handlers = namespace.handlers
        disconnecting = handlers.get("disconnecting")
        if disconnecting is not None:
            self._call(disconnecting, socket, "disconnecting", reason)
        rooms = [room for room in server.adapter.rooms_of(name, socket.sid) if room != socket.sid]
        socket.detach({*rooms, socket.sid}, reason)
        server.adapter.delete_all(name, socket.sid)
        namespace.sockets.pop(socket.sid, None)
        self.sockets.pop(name, None)
        if server.hooks.socket_disconnected is not None:
            server.hooks.call("socket_disconnected", socket, reason)
        server.release_namespace(namespace)
        if server.recovery is not None and socket.pid is not None and reason in RECOVERABLE:
            saved = SavedSession(socket.sid, socket.pid, name, rooms, socket.data, socket.offset)
            server.runner.run(
                server.adapter.persist_session(saved), "saving a session for recovery"
            )
        disconnect = handlers.get("disconnect")
        if disconnect is not None:
            sid, departing = socket.sid, namespace.departing
            departing[sid] = socket
            self._call(
                disconnect, socket, "disconnect", reason, after=lambda: departing.pop(sid, None)
            )
