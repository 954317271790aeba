"""What handlers hold: :class:`Socket` (one client in one namespace) and
:class:`BroadcastOperator` (a selection of sockets to emit to)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ...exceptions import AckTimeout, Disconnected
from ..adapters.base import BroadcastOptions, SocketInfo
from ..protocol import socketio
from ..protocol.checks import RESERVED_EVENTS, check_event
from ..protocol.fastpath import event_text
from ..protocol.parsers import encode_event, plain

if TYPE_CHECKING:
    from .engine import Session
    from .namespace import Namespace
    from .observe import Hooks

__all__ = ["BroadcastOperator", "Handshake", "Socket"]


def _names(rooms: str | Iterable[str]) -> frozenset[str]:
    return frozenset((rooms,) if isinstance(rooms, str) else rooms)


def ack_value(args: list[Any]) -> Any:
    """What an ack resolves to: None, its one argument, or a tuple of several."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a socket's client sent when it connected."""

    headers: dict[str, str]
    query: dict[str, str]
    auth: dict[str, Any]
    address: Any
    url: str
    time: float = field(default_factory=time.time)
    secure: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "headers": self.headers,
            "query": self.query,
            "auth": self.auth,
            "address": self.address,
            "url": self.url,
            "time": self.time,
            "secure": self.secure,
        }


_EVERYONE = BroadcastOptions()


class BroadcastOperator:
    """Sockets chosen by rooms, to emit to or act on; immutable, chainable.

    ::

        await server.to("room1").to("room2").except_("muted").emit("news", 1)
        replies = await server.timeout(5).emit_with_ack("question")
    """

    __slots__ = ("_namespace", "_opts", "_timeout")

    def __init__(
        self,
        namespace: Namespace,
        opts: BroadcastOptions = _EVERYONE,
        timeout: float | None = None,
    ) -> None:
        self._namespace = namespace
        self._opts = opts
        self._timeout = timeout

    def _with(self, **changes: Any) -> BroadcastOperator:
        return BroadcastOperator(self._namespace, replace(self._opts, **changes), self._timeout)

    def to(self, rooms: str | Iterable[str]) -> BroadcastOperator:
        """Also target the members of ``rooms`` (a sid is a room too)."""
        return self._with(rooms=self._opts.rooms | _names(rooms))

    in_ = to

    def except_(self, rooms: str | Iterable[str]) -> BroadcastOperator:
        """Leave out the members of ``rooms`` (or these sids)."""
        return self._with(except_rooms=self._opts.except_rooms | _names(rooms))

    @property
    def volatile(self) -> BroadcastOperator:
        """Drop the event for sockets whose transport cannot take it now."""
        return self._with(volatile=True)

    @property
    def local(self) -> BroadcastOperator:
        """Only sockets of this process (with a distributed adapter)."""
        return self._with(local=True)

    def timeout(self, seconds: float) -> BroadcastOperator:
        """How long :meth:`emit_with_ack` waits for replies."""
        return BroadcastOperator(self._namespace, self._opts, seconds)

    def _events(
        self, event: str, args: tuple[Any, ...]
    ) -> Iterator[tuple[Namespace, socketio.Packet]]:
        """The event's packet for each namespace it goes to (hooks told)."""
        check_event(event)
        nsp = self._namespace
        # Built for "/" and renamed per target: a dynamic parent's own name is
        # not a valid namespace, only its children's are.
        # The data as the parser's default= hook makes it: adapters carry it
        # to other nodes in their own format, which knows nothing of the hook.
        packet = socketio.Packet.event(event, *plain(nsp.server.parser, args))
        hooks = nsp.server.hooks
        for target in nsp.targets():
            if hooks.event_sent is not None:
                hooks.call("event_sent", target.name, event, args, opts=self._opts)
            yield target, _renamed(packet, target.name)

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to every selected socket (serialised and framed once)."""
        for target, packet in self._events(event, args):
            pending = target.broadcasting
            if pending is not None and not pending.done():
                await asyncio.wait((pending,))  # behind emit_nowait's, in order
            await target.adapter.broadcast(target.name, packet, self._opts)

    def emit_nowait(self, event: str, *args: Any) -> None:
        """Send an event to every selected socket without waiting: what a
        plain-function handler calls (Node's ``io.to(room).emit``).

        With the in-memory adapter (and the cluster adapter) it is written at
        once, like :meth:`emit`. An adapter that waits for its broker (Redis)
        finishes it in a server task, after this namespace's earlier ones, so
        that no event overtakes another; a failure there is logged.
        """
        for target, packet in self._events(event, args):
            pending = target.broadcasting
            if pending is not None and not pending.done():
                # Behind a broadcast still in a task: this one goes there too.
                target.broadcast_later(target.adapter.broadcast(target.name, packet, self._opts))
                continue
            later = target.adapter.broadcast_nowait(target.name, packet, self._opts)
            if later is not None:
                target.broadcast_later(later)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send an event to every selected socket and return the replies that
        arrive within the timeout (one value per socket, see :meth:`Socket.emit_with_ack`)."""
        check_event(event)
        nsp = self._namespace
        timeout = self._timeout if self._timeout is not None else nsp.server.ack_timeout
        replies: list[Any] = []
        hooks = nsp.server.hooks
        for target in nsp.targets():
            if hooks.event_sent is not None:
                hooks.call("event_sent", target.name, event, args, opts=self._opts)
            packet = socketio.Packet.event(
                event,
                *plain(nsp.server.parser, args),
                namespace=target.name,
                id=target.next_ack_id(),
            )
            replies += await target.adapter.broadcast_with_ack(
                target.name, packet, self._opts, timeout
            )
        return replies

    async def fetch_sockets(self) -> list[SocketInfo]:
        """The selected sockets (on every node, with a distributed adapter)."""
        found: list[SocketInfo] = []
        for target in self._namespace.targets():
            found += await target.adapter.fetch_sockets(target.name, self._opts)
        return found

    async def sockets_join(self, rooms: str | Iterable[str]) -> None:
        """Make the selected sockets join ``rooms``."""
        for target in self._namespace.targets():
            await target.adapter.add_sockets(target.name, self._opts, sorted(_names(rooms)))

    async def sockets_leave(self, rooms: str | Iterable[str]) -> None:
        """Make the selected sockets leave ``rooms``."""
        for target in self._namespace.targets():
            await target.adapter.del_sockets(target.name, self._opts, sorted(_names(rooms)))

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets; ``close`` ends their whole connection."""
        for target in self._namespace.targets():
            await target.adapter.disconnect_sockets(target.name, self._opts, close)


def _renamed(packet: socketio.Packet, namespace: str) -> socketio.Packet:
    if packet.namespace == namespace:
        return packet
    return socketio.Packet(packet.type, namespace, packet.data, packet.id)


def send_messages(session: Session, messages: list[str | bytes], hooks: Hooks) -> None:
    """Send the Engine.IO messages of one Socket.IO packet to ``session``
    (and tell the server's observers, if one overrides ``messages_sent``)."""
    for payload in messages:
        session.send(payload)
    if hooks.messages_sent is not None:
        # Most packets are one message: its length without a map and a sum.
        report_sent(hooks, len(messages[0]) if len(messages) == 1 else sum(map(len, messages)))


def report_sent(hooks: Hooks, size: int) -> None:
    """Tell the observers that override ``messages_sent`` that a packet of
    ``size`` characters or bytes went out (per-packet callers test
    ``hooks.messages_sent`` first, to save this call when none does)."""
    hook = hooks.messages_sent
    if hook is not None:
        try:
            hook(1, size)
        except Exception:
            hooks.failed("messages_sent")


class Socket:
    """One client connected to one namespace; what event handlers receive."""

    def __init__(
        self,
        namespace: Namespace,
        session: Session,
        sid: str,
        pid: str | None,
        handshake: Handshake,
    ) -> None:
        self.namespace = namespace
        self.server = namespace.server
        self.session = session
        self.sid = sid
        self.pid = pid
        self.handshake = handshake
        self.data: dict[str, Any] = {}
        self.recovered = False
        self.connected = False
        self.offset: str | None = None  # the newest stored offset when it connected
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}
        # When each ack awaited was asked for (only while observed).
        self._ack_times: dict[int, float] = {}
        # Set when it disconnects: the rooms it was in then, for the
        # "disconnecting" and "disconnect" handlers (they run in tasks, after
        # the socket has left its rooms).
        self._rooms_at_exit: set[str] | None = None
        # With recovery on, the task of the last event sent through the
        # adapter: the next one starts after it (_keep).
        self._kept: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Socket {self.sid} {self.namespace.name}>"

    @property
    def conn(self) -> Session:
        """The Engine.IO session under this socket, shared by its namespaces;
        ``socket.conn.close()`` drops the connection as a network failure would
        (the client reconnects and, with recovery on, recovers)."""
        return self.session

    @property
    def nsp(self) -> str:
        """The name of this socket's namespace (``"/"`` for the main one)."""
        return self.namespace.name

    @property
    def rooms(self) -> set[str]:
        """The rooms this socket is in, its own sid included (once
        disconnected: the rooms it was in when it disconnected)."""
        if self._rooms_at_exit is not None:
            return set(self._rooms_at_exit)
        return self.namespace.adapter.rooms_of(self.namespace.name, self.sid)

    # -- emitting ----------------------------------------------------------------

    def _send_event(self, event: str, args: Any, ack_id: int | None = None) -> None:
        server = self.server
        out = server.json_out
        if out is not None:
            # The default JSON parser's fast path, called here rather than
            # through encode_event: once per event sent, and the commonest.
            text = event_text(event, args, self.namespace.name, ack_id, out)
            if text is not None:
                self.session.send(text)
                if server.hooks.messages_sent is not None:
                    report_sent(server.hooks, len(text))
                return
        messages = encode_event(server.parser, event, args, self.namespace.name, ack_id)
        send_messages(self.session, messages, server.hooks)

    async def emit(self, event: str, *args: Any) -> None:
        """Send an event to this socket's client."""
        kept = self._emit(event, args, False)
        if kept is not None:
            await kept  # what failed in the adapter is raised here

    def emit_nowait(self, event: str, *args: Any) -> None:
        """Send an event to this socket's client without waiting: what a
        plain-function handler calls (Node's ``socket.emit``).

        Written at once, like :meth:`emit`; it raises what :meth:`emit`
        raises before sending. With connection-state recovery on, the event
        goes through the adapter (which keeps it, and may publish it) in a
        server task, in order with this socket's other emits; a failure
        there is logged.
        """
        self._emit(event, args, True)

    def _emit(self, event: str, args: tuple[Any, ...], log: bool) -> asyncio.Task[None] | None:
        """Send an event: at once, or (recovery on) in the task returned
        (``log``: whether that task logs its failure, nobody awaiting it)."""
        if type(event) is not str or not event or event in RESERVED_EVENTS:
            check_event(event)  # raises, unless a str subclass passes
        if not self.connected:
            raise Disconnected(f"{self!r} is disconnected")
        adapter = self.namespace.adapter
        hooks = self.server.hooks
        if hooks.event_sent is not None:
            hooks.call("event_sent", self.namespace.name, event, args, sid=self.sid)
        if adapter.recovery is None:
            self._send_event(event, args)
            return None
        return self._keep(event, args, log)

    def _keep(self, event: str, args: tuple[Any, ...], log: bool) -> asyncio.Task[None]:
        """Send an event through the adapter, which keeps it (with its offset)
        for the client in case it comes back: like a broadcast to its sid, so
        that a distributed adapter delivers it in the same order as it stores
        it; by identity (sids), not through its room, since only this socket
        may get it. In a task that starts after this socket's previous one
        has ended (emit_nowait cannot wait for the adapter, and its events
        must not overtake each other)."""
        plain_args = plain(self.server.parser, args)  # the adapter stores it in its own JSON
        packet = socketio.Packet.event(event, *plain_args, namespace=self.namespace.name)
        opts = BroadcastOptions(sids=_names(self.sid))
        send = self.namespace.adapter.broadcast(self.namespace.name, packet, opts)
        runner = self.server.runner

        def done() -> None:
            if self._kept is task:
                self._kept = None
            # Taken even when logged by nobody: an emit cancelled while
            # awaiting this task leaves its failure unread otherwise.
            failure = None if task.cancelled() else task.exception()
            if log and failure is not None:
                runner.limiter.log(
                    logging.ERROR, "emit", "emit to %r failed", self, exc_info=failure
                )

        task = self._kept = runner.spawn_after(self._kept, send, done)
        return task

    async def send(self, *args: Any) -> None:
        """Emit the ``message`` event."""
        await self.emit("message", *args)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send an event and wait for the client's acknowledgement.

        Returns None, the one value the client acknowledged with, or a tuple of
        several; raises :class:`~tether.exceptions.AckTimeout` after
        ``timeout`` (the server's ``ack_timeout`` by default).
        """
        check_event(event)
        if not self.connected:
            raise Disconnected(f"{self!r} is disconnected")
        hooks = self.server.hooks
        if hooks.event_sent is not None:
            hooks.call("event_sent", self.namespace.name, event, args, sid=self.sid)
        ack_id = self.namespace.next_ack_id()
        waiter = self.expect_ack(ack_id)
        self._send_event(event, args, ack_id)
        if timeout is None:
            timeout = self.server.ack_timeout
        try:
            return ack_value(await asyncio.wait_for(waiter, timeout))
        except asyncio.TimeoutError:
            raise AckTimeout(f"no ack for {event!r} from {self.sid} within {timeout} s") from None
        finally:
            self._acks.pop(ack_id, None)
            self._ack_times.pop(ack_id, None)

    call = emit_with_ack

    def expect_ack(self, ack_id: int) -> asyncio.Future[list[Any]]:
        """A future for the client's acknowledgement ``ack_id`` (the server's broadcasts use it)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[Any]] = loop.create_future()
        self._acks[ack_id] = waiter
        if self.server.hooks.ack_round_trip is not None:
            self._ack_times[ack_id] = loop.time()
            # Forgotten however the wait ends (a broadcast's timeout cancels it).
            waiter.add_done_callback(lambda _: self._ack_times.pop(ack_id, None))
        return waiter

    def ack_received(self, packet: socketio.Packet) -> None:
        """Resolve the wait for the client's acknowledgement ``packet`` (called
        by the server's connection; an ack nobody awaits is dropped)."""
        assert packet.id is not None
        waiter = self._acks.pop(packet.id, None)
        if waiter is not None and not waiter.done():
            started = self._ack_times.pop(packet.id, None)
            hook = self.server.hooks.ack_round_trip
            if hook is not None and started is not None:
                elapsed = asyncio.get_running_loop().time() - started
                try:
                    hook(self, elapsed)
                except Exception:
                    self.server.hooks.failed("ack_round_trip")
            waiter.set_result(list(packet.data))

    def detach(self, rooms: set[str], reason: str) -> None:
        """Mark this socket disconnected for ``reason`` (called by the server's
        connection): ``rooms`` is what :attr:`rooms` says from now on, and
        whoever awaits an ack from it gets :class:`~tether.exceptions.Disconnected`."""
        self._rooms_at_exit = rooms
        self.connected = False
        for waiter in self._acks.values():
            if not waiter.done():
                # Whoever awaits an ack learns why it will never come (a
                # cancelled waiter would cancel the handler awaiting it).
                waiter.set_exception(Disconnected(f"{self!r} disconnected: {reason}"))
        self._acks.clear()
        self._ack_times.clear()

    # -- rooms and selections ---------------------------------------------------

    async def join(self, rooms: str | Iterable[str]) -> None:
        """Join one room or several (effective on every node when it returns).

        Raises :class:`ValueError`, joining none, if a room is named after
        another socket's sid: that room is the other socket's private line."""
        names = sorted(_names(rooms))
        adapter = self.namespace.adapter
        await adapter.check_remote_rooms(self.namespace.name, self.sid, names)
        self.enter(names)
        await adapter.flush()

    async def leave(self, rooms: str | Iterable[str]) -> None:
        """Leave one room or several (presence updated everywhere when it returns)."""
        self.exit(_names(rooms))
        await self.namespace.adapter.flush()

    def enter(self, rooms: Iterable[str]) -> None:
        """Put this socket in ``rooms`` in the registry, at once (what
        :meth:`join` and a ``sockets_join`` from any node do; no check across
        nodes, no flush)."""
        name = self.namespace.name
        adapter = self.namespace.adapter
        hooks = self.server.hooks
        if hooks.room_joined is None:
            adapter.add_all(name, self.sid, rooms)
            return
        rooms = list(rooms)
        before = adapter.rooms_of(name, self.sid)
        adapter.add_all(name, self.sid, rooms)
        for room in dict.fromkeys(rooms):
            if room not in before:
                hooks.call("room_joined", name, room, self.sid)

    def exit(self, rooms: Iterable[str]) -> None:
        """Take this socket out of ``rooms`` in the registry, at once (what
        :meth:`leave` and a ``sockets_leave`` from any node do; no flush)."""
        name = self.namespace.name
        adapter = self.namespace.adapter
        hooks = self.server.hooks
        if hooks.room_left is None:
            for room in rooms:
                adapter.delete(name, self.sid, room)
            return
        before = adapter.rooms_of(name, self.sid)
        for room in dict.fromkeys(rooms):
            adapter.delete(name, self.sid, room)
            if room in before:
                hooks.call("room_left", name, room, self.sid)

    def to(self, rooms: str | Iterable[str]) -> BroadcastOperator:
        """Members of ``rooms`` except this socket."""
        return self.broadcast.to(rooms)

    in_ = to

    def except_(self, rooms: str | Iterable[str]) -> BroadcastOperator:
        """Every socket of the namespace but this one and the members of ``rooms``."""
        return self.broadcast.except_(rooms)

    @property
    def broadcast(self) -> BroadcastOperator:
        """Every socket of the namespace except this one."""
        return BroadcastOperator(self.namespace, BroadcastOptions(except_rooms=_names(self.sid)))

    @property
    def volatile(self) -> BroadcastOperator:
        """This socket only, dropping events its transport cannot take now."""
        return BroadcastOperator(self.namespace, BroadcastOptions(_names(self.sid), volatile=True))

    def timeout(self, seconds: float) -> _TimedSocket:
        """``await socket.timeout(5).emit_with_ack("question")``."""
        return _TimedSocket(self, seconds)

    # -- leaving -------------------------------------------------------------------

    async def disconnect(self, close: bool = False) -> None:
        """Disconnect from this namespace; ``close`` disconnects every namespace
        and ends the connection. Either way the client is told (reason ``io
        server disconnect``) and does not reconnect by itself."""
        self.server.local_sockets.disconnect(self.namespace.name, self.sid, close)


class _TimedSocket:
    __slots__ = ("_seconds", "_socket")

    def __init__(self, socket: Socket, seconds: float) -> None:
        self._socket, self._seconds = socket, seconds

    async def emit_with_ack(self, event: str, *args: Any) -> Any:
        return await self._socket.emit_with_ack(event, *args, timeout=self._seconds)
