"""Watching a realtime server from outside: :class:`Observer` and the hooks it gets.

An observer is told what happens in a :class:`~tether.realtime.Server`
(sockets coming and going, rooms, events in and out, recoveries, ack round
trips) without taking part in it: metrics and the Socket.IO Admin UI
(:mod:`tether.realtime.admin`) are built on it. Subclass :class:`Observer`,
override the hooks you want (every one is a no-op here) and install it::

    class Count(Observer):
        connected = 0

        def socket_connected(self, socket, recovered):
            self.connected += 1

    server.observe(Count())

The server calls only the hooks its observers override, decided when they
are installed: a hook nobody overrides costs its site one ``is None`` test,
and with one observer the server calls its method directly (see
:class:`Hooks`).

Hooks are plain functions called synchronously, in the event loop, from the
middle of the server's work: they must be quick and must not block. One that
raises is logged (rate-limited, once per hook per interval) and the server
goes on; the other observers still get the call. Objects passed in (sockets,
argument lists) are the server's own: read them, do not keep or change them
(copy what you keep).

Every hook fires on the node where the thing happened: with a distributed
adapter an observer sees its own process's sockets, and the events its own
process emits (a broadcast is reported once, by the node that emitted it, not
by the nodes that deliver it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ...ratelimit import LogLimiter
    from ..adapters.base import BroadcastOptions

__all__ = ["HOOKS", "Hooks", "Observer", "Session", "Socket"]


# What the hooks are given, as protocols: the server's Session and Socket
# satisfy them (this module is imported by the server, so it cannot import
# the server's modules back, even for type checking).
class Session(Protocol):
    """An Engine.IO session as observers see it
    (:class:`tether.realtime.server.engine.Session`)."""

    @property
    def sid(self) -> str: ...

    @property
    def transport(self) -> str:
        """``"polling"`` or ``"websocket"``."""

    @property
    def closed(self) -> bool: ...


class Socket(Protocol):
    """A socket as observers see it (:class:`tether.realtime.Socket`)."""

    @property
    def sid(self) -> str: ...

    @property
    def nsp(self) -> str:
        """Its namespace's name."""

    @property
    def rooms(self) -> set[str]: ...

    @property
    def data(self) -> dict[str, Any]: ...

    @property
    def conn(self) -> Session:
        """Its Engine.IO session."""

    @property
    def connected(self) -> bool: ...


class Observer:
    """What a server tells its observers; every hook is a no-op here.

    The timing of each hook is part of its contract (see each docstring).
    """

    def server_started(self) -> None:
        """The server started (its adapter is up: :meth:`Server.start
        <tether.realtime.Server.start>` is returning), or was already started
        when this observer was installed. The event loop is running."""

    def server_stopping(self) -> None:
        """The server is shutting down: its sessions are closed (each reported)
        and its handlers drained; its adapter is still up."""

    def session_opened(self, session: Session) -> None:
        """An Engine.IO session opened (its handshake answered), before any
        namespace is joined. ``session.transport`` is ``"polling"`` or
        ``"websocket"`` (it may change on upgrade: not reported)."""

    def session_closed(self, session: Session, reason: str) -> None:
        """An Engine.IO session closed for ``reason``, after its sockets were
        disconnected (each reported by :meth:`socket_disconnected` first)."""

    def message_received(self, session: Session, size: int) -> None:
        """An Engine.IO message arrived (``size``: characters of text or bytes
        of a binary attachment), before it is decoded."""

    def messages_sent(self, count: int, size: int) -> None:
        """The server queued the same Socket.IO packet for ``count`` sessions,
        ``size`` characters/bytes each (its Engine.IO messages, attachments
        included): one call per socket emit, per local delivery of a
        broadcast (on each node that delivers it), per ack and CONNECT reply."""

    def socket_connected(self, socket: Socket, recovered: bool) -> None:
        """``socket`` was admitted (middleware passed): it is in its rooms (its
        sid, and those it recovered) and its CONNECT reply is queued; called
        before the namespace's ``connect`` handler runs, so rooms it joins
        there are reported by :meth:`room_joined`. ``recovered``: it came back
        with its state (connection-state recovery)."""

    def socket_disconnected(self, socket: Socket, reason: str) -> None:
        """``socket`` left for ``reason`` (socket.io's reason strings: ``client
        namespace disconnect``, ``server namespace disconnect``, ``transport
        close``...). Called after it left its rooms (no :meth:`room_left` for
        them; ``socket.rooms`` still lists them) and before the ``disconnecting``
        and ``disconnect`` handlers run (they run in tasks)."""

    def room_joined(self, nsp: str, room: str, sid: str) -> None:
        """Socket ``sid`` of this node joined ``room``, after the room
        registry changed: through ``socket.join`` or a ``sockets_join`` (from
        any node). Not called for the rooms a socket is in when it connects
        (see :meth:`socket_connected`), nor for a room it was already in."""

    def room_left(self, nsp: str, room: str, sid: str) -> None:
        """Socket ``sid`` of this node left ``room``, after the registry
        changed: through ``socket.leave`` or a ``sockets_leave`` (from any
        node). Not called when it disconnects, nor for a room it was not in."""

    def event_received(self, socket: Socket, event: str, args: Sequence[Any]) -> None:
        """An EVENT packet from ``socket``'s client was decoded: called before
        its handler runs (before it waits for a handler slot), whether or not
        a handler is registered for ``event``. ``args`` excludes the ack
        callback."""

    def event_sent(
        self,
        nsp: str,
        event: str,
        args: Sequence[Any],
        *,
        sid: str | None = None,
        opts: BroadcastOptions | None = None,
    ) -> None:
        """The application emitted ``event``, called before it is encoded:
        ``sid`` for ``socket.emit``/``emit_with_ack`` (one socket), ``opts``
        (rooms, except-rooms...) for a broadcast (``server.emit``,
        ``to(...).emit``...), once per namespace it reaches, and only on the
        node that emitted it. Acks and server-side events are not reported."""

    def recovery(self, nsp: str, succeeded: bool) -> None:
        """A client asked to recover its session in ``nsp``, with recovery on:
        ``succeeded`` once the adapter answered (before middleware and the
        ``connect`` handler run)."""

    def ack_round_trip(self, socket: Socket, seconds: float) -> None:
        """``socket``'s client acknowledged an event the server sent with an
        ack id, ``seconds`` after it was sent (``emit_with_ack``, either kind);
        called as the ack arrives, before whoever awaits it resumes. Acks
        that arrive after their timeout are not reported."""


def _hook_names() -> tuple[str, ...]:
    return tuple(name for name in vars(Observer) if not name.startswith("_"))


#: The names of every hook, in definition order.
HOOKS = _hook_names()

Hook = Callable[..., None]


def overrides(observer: Observer, name: str) -> bool:
    """Whether ``observer`` does something on hook ``name``: its class (or
    the instance itself) defines it, rather than inheriting the no-op."""
    hook = getattr(observer, name)
    return getattr(hook, "__func__", None) is not getattr(Observer, name)


class Hooks:
    """What a server's hook sites call, decided once whenever its observers
    change: for each hook in :data:`HOOKS` an attribute that is

    * None when no installed observer overrides it (the site's whole cost is
      that test: the server does not call no-ops);
    * the observer's own bound method when exactly one does (called directly:
      no layer in between);
    * a function calling each overriding observer in install order, and
      logging one that raises, when several do.

    A site calls a hook within ``try``/``except Exception`` and calls
    :meth:`failed` in the ``except``: so an observer that raises is logged
    (rate-limited, once per hook per interval) and the server goes on. A
    server holds one, replaced by :meth:`Server.observe
    <tether.realtime.Server.observe>` and ``unobserve``.
    """

    server_started: Callable[[], None] | None
    server_stopping: Callable[[], None] | None
    session_opened: Callable[[Session], None] | None
    session_closed: Callable[[Session, str], None] | None
    message_received: Callable[[Session, int], None] | None
    messages_sent: Callable[[int, int], None] | None
    socket_connected: Callable[[Socket, bool], None] | None
    socket_disconnected: Callable[[Socket, str], None] | None
    room_joined: Callable[[str, str, str], None] | None
    room_left: Callable[[str, str, str], None] | None
    event_received: Callable[[Socket, str, Sequence[Any]], None] | None
    event_sent: Hook | None  # keyword arguments: sid= or opts=
    recovery: Callable[[str, bool], None] | None
    ack_round_trip: Callable[[Socket, float], None] | None

    def __init__(self, observers: Sequence[Observer], limiter: LogLimiter) -> None:
        self.observers = tuple(observers)
        self._limiter = limiter
        for name in HOOKS:
            hooks = [getattr(o, name) for o in self.observers if overrides(o, name)]
            if not hooks:
                setattr(self, name, None)
            elif len(hooks) == 1:
                setattr(self, name, hooks[0])
            else:
                setattr(self, name, self._fan_out(name, hooks))

    def failed(self, name: str) -> None:
        """Log that an observer's hook ``name`` raised (call it in the ``except``)."""
        self._limiter.exception(f"observer {name}", "an observer's %s hook failed", name)

    def call(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Call hook ``name``, which is not None, logging a failure: what the
        sites that run once per session, socket, emit or broadcast do after
        their ``is not None`` test (the per-event and per-message sites call
        the hook inline, saving this call)."""
        try:
            getattr(self, name)(*args, **kwargs)
        except Exception:
            self.failed(name)

    def _fan_out(self, name: str, hooks: list[Hook]) -> Hook:
        failed = self.failed

        def call_all(*args: Any, **kwargs: Any) -> None:
            # One failing observer does not keep the next from its call.
            for hook in hooks:
                try:
                    hook(*args, **kwargs)
                except Exception:
                    failed(name)

        return call_all
