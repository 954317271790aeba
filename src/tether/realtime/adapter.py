"""Adapters: who is in which room, and where a broadcast goes.

The :class:`Adapter` here keeps everything in this process: rooms, the
packets kept for connection state recovery, and the sessions of sockets that
went away and may come back. A distributed adapter (Redis) subclasses it and
adds the other nodes; the server calls the same methods either way, so
application code does not change.

One adapter serves every namespace of a server; each method names its
namespace.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import socketio
from .rooms import RoomRegistry

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Adapter", "BroadcastOptions", "RecoveryOptions", "SavedSession", "SocketInfo"]


@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Who a broadcast reaches: members of ``rooms`` (everyone when empty),
    except members of ``except_rooms`` (a socket's sid is a room of its own)."""

    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    volatile: bool = False
    local: bool = False

    def matches(self, rooms: Iterable[str]) -> bool:
        """Whether a socket in ``rooms`` (its own sid included) is a target."""
        joined = set(rooms)
        if self.rooms and joined.isdisjoint(self.rooms):
            return False
        return joined.isdisjoint(self.except_rooms)


@dataclass(frozen=True, slots=True)
class RecoveryOptions:
    """Connection state recovery: how long a disconnected socket's session,
    and the packets it may miss, are kept; whether middleware runs again."""

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True


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
    """A socket as :meth:`Adapter.fetch_sockets` sees it, possibly on another node."""

    sid: str
    namespace: str
    rooms: frozenset[str]
    data: dict[str, Any]
    handshake: dict[str, Any]


@dataclass(slots=True)
class _Stored:
    offset: str
    namespace: str
    opts: BroadcastOptions
    data: list[Any]
    stored_at: float


# What lookup() returns for a namespace without a registry; never joined, so
# it stays empty (leave/remove on it are no-ops).
_NO_ROOMS = RoomRegistry()


class Adapter:
    """The in-memory adapter: one process, no dependencies (the default)."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.recovery: RecoveryOptions | None = None
        self._rooms: dict[str, RoomRegistry] = {}
        self._packets: collections.deque[_Stored] = collections.deque()
        self._sessions: dict[str, SavedSession] = {}
        self._ids = itertools.count(1)
        self._epoch = f"{time.time_ns():x}"

    # -- lifecycle --------------------------------------------------------------

    def attach(self, server: Server) -> None:
        """Called once by the server that owns this adapter."""
        self.server = server
        self.recovery = server.recovery

    async def start(self) -> None:
        """Connect to whatever the adapter needs (nothing, in memory)."""

    async def close(self) -> None:
        """Release what :meth:`start` took."""

    async def flush(self) -> None:
        """Wait until room changes made so far take effect everywhere (a
        distributed adapter subscribes to the new rooms); nothing to wait for here."""

    async def server_side_emit(self, event: str, args: list[Any]) -> None:
        """Send a server-side event to the other nodes (there are none here)."""

    # -- rooms of local sockets --------------------------------------------------

    def registry(self, namespace: str) -> RoomRegistry:
        """The room registry of ``namespace``, created on first use."""
        registry = self._rooms.get(namespace)
        if registry is None:
            registry = self._rooms[namespace] = RoomRegistry()
        return registry

    def lookup(self, namespace: str) -> RoomRegistry:
        """The room registry of ``namespace`` for reading: an empty one (not
        kept) if it has none, so that a broadcast to a namespace without local
        sockets creates nothing."""
        return self._rooms.get(namespace, _NO_ROOMS)

    def add_all(self, namespace: str, sid: str, rooms: Iterable[str]) -> None:
        registry = self.registry(namespace)
        if sid not in registry:
            registry.add(sid)
        registry.join(sid, *rooms)

    def delete(self, namespace: str, sid: str, room: str) -> None:
        self.lookup(namespace).leave(sid, room)

    def delete_all(self, namespace: str, sid: str) -> None:
        self.lookup(namespace).remove(sid)

    def remove_namespace(self, namespace: str) -> None:
        """Forget the room registry of a namespace that has no sockets left
        (a dynamic child namespace whose last socket left); a namespace that
        still has sockets is kept. Recovery state is kept: it expires by itself."""
        registry = self._rooms.get(namespace)
        if registry is not None and not len(registry):
            del self._rooms[namespace]

    def rooms_of(self, namespace: str, sid: str) -> set[str]:
        return set(self.lookup(namespace).rooms_of(sid))

    def local_sids(self, namespace: str, opts: BroadcastOptions) -> list[str]:
        return self.lookup(namespace).select(opts.rooms, opts.except_rooms)

    # -- delivery ----------------------------------------------------------------

    def _server(self) -> Server:
        if self.server is None:
            raise RuntimeError("the adapter is not attached to a server")
        return self.server

    async def broadcast(
        self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions
    ) -> None:
        """Send ``packet`` to every matching socket (here: in this process)."""
        packet = self.store(namespace, packet, opts)
        self._server()._deliver(namespace, packet, self.local_sids(namespace, opts), opts)

    async def broadcast_with_ack(
        self,
        namespace: str,
        packet: socketio.Packet,
        opts: BroadcastOptions,
        timeout: float,
    ) -> list[Any]:
        """Send ``packet`` (with an ack id) to every matching socket and collect
        the replies that arrive within ``timeout``, one value per socket."""
        targets = self.local_sids(namespace, opts)
        waiters = self._server()._deliver_with_ack(namespace, packet, targets, opts)
        return await _collect(waiters, timeout)

    async def fetch_sockets(self, namespace: str, opts: BroadcastOptions) -> list[SocketInfo]:
        return self._server()._socket_infos(namespace, self.local_sids(namespace, opts))

    async def add_sockets(self, namespace: str, opts: BroadcastOptions, rooms: list[str]) -> None:
        server = self._server()
        for sid in self.local_sids(namespace, opts):
            server._join(namespace, sid, rooms)

    async def del_sockets(self, namespace: str, opts: BroadcastOptions, rooms: list[str]) -> None:
        server = self._server()
        for sid in self.local_sids(namespace, opts):
            server._leave(namespace, sid, rooms)

    async def disconnect_sockets(
        self, namespace: str, opts: BroadcastOptions, close: bool = False
    ) -> None:
        server = self._server()
        for sid in self.local_sids(namespace, opts):
            server._disconnect(namespace, sid, close)

    # -- connection state recovery ---------------------------------------------

    def new_offset(self) -> str:
        return f"{self._epoch}-{next(self._ids)}"

    @property
    def last_offset(self) -> str | None:
        return self._packets[-1].offset if self._packets else None

    def store(
        self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions
    ) -> socketio.Packet:
        """With recovery on, keep an event for sockets that may come back, and
        append its offset as its last argument (what the client reports on
        reconnection). Events with an ack or volatile ones are not kept: an ack
        cannot be awaited across a reconnection, a volatile event may be lost."""
        if (
            self.recovery is None
            or packet.type not in (socketio.PacketType.EVENT, socketio.PacketType.BINARY_EVENT)
            or packet.id is not None
            or opts.volatile
        ):
            return packet
        offset = self.new_offset()
        data = [*packet.data, offset]
        now = time.monotonic()
        self._packets.append(_Stored(offset, namespace, opts, data, now))
        self._prune(now)
        return socketio.Packet(packet.type, packet.namespace, data)

    def _prune(self, now: float) -> None:
        assert self.recovery is not None
        horizon = now - self.recovery.max_disconnection_duration
        packets = self._packets
        while packets and packets[0].stored_at < horizon:
            packets.popleft()

    async def persist_session(self, session: SavedSession) -> None:
        """Keep a disconnected socket's state for ``max_disconnection_duration``."""
        if self.recovery is None:
            return
        now = time.monotonic()
        horizon = now - self.recovery.max_disconnection_duration
        for pid in [pid for pid, s in self._sessions.items() if s.saved_at < horizon]:
            del self._sessions[pid]
        self._sessions[session.pid] = session

    async def restore_session(
        self, namespace: str, pid: str, offset: str | None
    ) -> tuple[SavedSession, list[list[Any]]] | None:
        """The saved session of ``pid`` and the events it missed after
        ``offset`` (event data, offsets included), or None if it cannot be
        recovered: unknown, expired, or its offset no longer kept."""
        if self.recovery is None:
            return None
        session = self._sessions.pop(pid, None)
        if session is None or session.namespace != namespace:
            return None
        now = time.monotonic()
        if now - session.saved_at > self.recovery.max_disconnection_duration:
            return None
        self._prune(now)
        start = offset or session.offset
        missed: list[list[Any]] = []
        packets = list(self._packets)
        if start is not None:
            index = next((i for i, p in enumerate(packets) if p.offset == start), None)
            if index is None:
                return None  # too old: the packets after it are gone
            packets = packets[index + 1 :]
        rooms = [*session.rooms, session.sid]
        for stored in packets:
            if stored.namespace == namespace and stored.opts.matches(rooms):
                missed.append(stored.data)
        return session, missed


async def _collect(waiters: list[asyncio.Future[Any]], timeout: float) -> list[Any]:
    """The results of the waiters done within ``timeout``, in order."""
    if not waiters:
        return []
    done, pending = await asyncio.wait(waiters, timeout=timeout)
    for waiter in pending:
        waiter.cancel()
    return [w.result() for w in waiters if w in done and not w.cancelled() and not w.exception()]
