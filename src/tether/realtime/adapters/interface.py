"""The seam between a Socket.IO server and its adapter, both ways.

An adapter (:class:`~tether.realtime.Adapter`) decides *which* sockets an
operation concerns, on this node and (for a distributed adapter) on the
others; the server owns the sockets themselves. The server hands its adapter
a :class:`LocalSockets` when it attaches it: the only way an adapter reaches
a socket of this process, by namespace and sid::

    server                                  adapter
    ------                                  -------
    BroadcastOperator.emit  ------------->  broadcast(namespace, packet, opts)
                                              chooses the sids here (rooms),
                                              publishes to other nodes
    LocalSockets.deliver    <-------------    sockets.deliver(namespace, packet, sids, opts)

Everything that crosses the seam is defined here: the selection
(:class:`BroadcastOptions`), a socket as seen from afar
(:class:`SocketInfo`), a session kept for recovery (:class:`SavedSession`)
and the recovery options (:class:`RecoveryOptions`). Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...limits import MiB
from ..protocol import socketio

__all__ = [
    "BroadcastOptions",
    "LocalSocket",
    "LocalSockets",
    "RecoveryOptions",
    "SavedSession",
    "SocketInfo",
    "replace_data",
]


@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Who a broadcast reaches: members of ``rooms`` and the sockets ``sids``
    (everyone when both are empty), except members of ``except_rooms`` (a
    socket's sid is a room of its own, which no other socket may join).

    ``sids`` selects sockets by identity, not by room membership:
    ``Socket.emit`` uses it, so what is meant for one socket reaches that
    socket only, on whichever node it is and when it is replayed."""

    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    volatile: bool = False
    local: bool = False
    sids: frozenset[str] = frozenset()

    def reaches(self, sid: str, rooms: Iterable[str]) -> bool:
        """Whether socket ``sid``, in ``rooms`` (its own room implied), is a target."""
        joined = {*rooms, sid}
        if not joined.isdisjoint(self.except_rooms):
            return False
        if not (self.rooms or self.sids):
            return True
        return sid in self.sids or not joined.isdisjoint(self.rooms)


@dataclass(frozen=True, slots=True)
class RecoveryOptions:
    """Connection state recovery: how long a disconnected socket's session,
    and the packets it may miss, are kept; whether middleware runs again.

    Storage is bounded in time, bytes and count; past a bound the oldest goes
    first, and a client whose session or offset went simply reconnects as a
    new socket (``socket.recovered`` is False), as after
    ``max_disconnection_duration``."""

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True
    # Events kept for recovery, all namespaces together, counted as their
    # encoded size (text and binary attachments) plus 320 bytes of
    # bookkeeping. 16 MiB keeps two minutes of 140 KB/s of events: a chat's
    # worth, while one busy client cannot make the server hold more than
    # this. The Redis adapter trims its stream to the same bytes (estimated
    # as entries of the average size seen).
    max_stored_bytes: int = 16 * MiB
    # Sessions of disconnected sockets kept at once. Each costs well under a
    # kilobyte plus its rooms and ``data``; 100,000 covers every socket of a
    # busy server dropping at once.
    max_saved_sessions: int = 100_000

    def __post_init__(self) -> None:
        if not self.max_disconnection_duration > 0:
            raise ValueError("max_disconnection_duration must be positive")
        for name in ("max_stored_bytes", "max_saved_sessions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(slots=True)
class SavedSession:
    """What a recovering socket gets back."""

    sid: str
    pid: str
    namespace: str
    rooms: list[str]
    data: dict[str, Any]
    # The newest offset when the socket connected or was saved: the client
    # may hold no offset at all if no event reached it.
    offset: str | None
    saved_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class SocketInfo:
    """A socket as :meth:`~tether.realtime.Adapter.fetch_sockets` sees it,
    possibly on another node."""

    sid: str
    namespace: str
    rooms: frozenset[str]
    data: dict[str, Any]
    handshake: dict[str, Any]


class LocalSocket(Protocol):
    """What an adapter may read of a socket of this process (a
    :class:`~tether.realtime.Socket` is one): a distributed adapter saves it
    for recovery and publishes its presence. Its :attr:`data` is the one
    thing an adapter may replace (:func:`replace_data`)."""

    @property
    def sid(self) -> str:
        """Its id, and the name of its own room."""

    @property
    def pid(self) -> str | None:
        """Its private id for connection state recovery (None with recovery off)."""

    @property
    def nsp(self) -> str:
        """The name of its namespace."""

    @property
    def connected(self) -> bool:
        """False once it has disconnected."""

    @property
    def data(self) -> dict[str, Any]:
        """The application's data about it (JSON-able to be saved elsewhere)."""

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        """Replaced by :meth:`~tether.realtime.Adapter.save_data`."""


class LocalSockets(Protocol):
    """What a server offers its adapter: the sockets of this process, by
    namespace and sid, and the server-side events of other nodes.

    The adapter chooses the sids (from its rooms, or a request of another
    node); these methods act on those that are still connected here and
    quietly skip the others (a socket may leave while a message is on its
    way). None of them blocks; none raises for an unknown namespace or sid.
    """

    @property
    def recovery(self) -> RecoveryOptions | None:
        """The server's connection state recovery options (None: off)."""

    def namespace_names(self) -> list[str]:
        """The namespaces that exist here now (a distributed adapter listens to
        their channels from the start, sockets or not)."""

    def socket(self, namespace: str, sid: str) -> LocalSocket | None:
        """The connected socket ``sid`` of ``namespace``, or None."""

    def deliver(
        self, namespace: str, packet: socketio.Packet, sids: list[str], opts: BroadcastOptions
    ) -> None:
        """Send ``packet`` to these sockets, serialised and framed once for all;
        with ``opts.volatile``, skip those whose transport cannot take it now."""

    def next_ack_id(self, namespace: str) -> int | None:
        """A new ack id for a broadcast in ``namespace`` (None: no such namespace
        here). Ack ids are counted per namespace, like a socket's own."""

    def deliver_with_ack(
        self, namespace: str, packet: socketio.Packet, sids: list[str], opts: BroadcastOptions
    ) -> list[asyncio.Future[Any]]:
        """:meth:`deliver` a packet carrying an ack id (:meth:`next_ack_id`) and
        return one future per socket it went to, resolved with that socket's
        reply (None, its one value, or a tuple of several) and cancelled if the
        socket leaves first. Cancelling a future stops waiting for its reply."""

    def socket_infos(self, namespace: str, sids: list[str]) -> list[SocketInfo]:
        """A snapshot of each of these sockets (rooms, data, handshake)."""

    def join(self, namespace: str, sid: str, rooms: list[str]) -> None:
        """Make socket ``sid`` join ``rooms`` (through the adapter's
        :meth:`~tether.realtime.Adapter.add_all`); raise :class:`ValueError`,
        joining none, if a room is another socket's sid."""

    def leave(self, namespace: str, sid: str, rooms: list[str]) -> None:
        """Make socket ``sid`` leave ``rooms`` (through
        :meth:`~tether.realtime.Adapter.delete`)."""

    def disconnect(self, namespace: str, sid: str, close: bool) -> None:
        """Disconnect socket ``sid`` as :meth:`~tether.realtime.Socket.disconnect`
        does (the client is told; ``close`` ends its whole connection)."""

    def server_event(self, event: str, args: list[Any]) -> None:
        """Run this server's handler for a server-side event another node sent
        (:meth:`~tether.realtime.Server.on_server_event`)."""


def replace_data(sockets: LocalSockets, namespace: str, sid: str, data: dict[str, Any]) -> bool:
    """Make ``data`` the :attr:`~LocalSocket.data` of socket ``sid`` of
    ``namespace`` if it is connected in this process (what an adapter does
    for :meth:`~tether.realtime.Adapter.save_data`); whether it was."""
    socket = sockets.socket(namespace, sid)
    if socket is None:
        return False
    socket.data = data
    return True
