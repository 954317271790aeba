"""The :class:`Adapter`: the interface a broker adapter implements, and its
in-memory implementation (the default: one process, no dependencies).

The adapter keeps who is in which room (one
:class:`~tether.realtime.protocol.rooms.RoomRegistry` per namespace), chooses
the sockets a broadcast or a request reaches, and keeps what connection state
recovery needs: the events a disconnected socket may miss and the sessions of
sockets that may come back. It reaches the sockets of this process only
through the :class:`~tether.realtime.adapters.interface.LocalSockets` the
server gives it in :meth:`Adapter.attach`.

A broker adapter (:class:`~tether.realtime.adapters.redis.RedisAdapter`)
subclasses :class:`Adapter`: it keeps the local rooms and delivery of this
class and overrides the methods whose docstrings say "a distributed adapter":
it publishes what concerns other nodes and, when a message of another node
comes, calls the same :class:`LocalSockets` methods. The contract of each
method is in its docstring; ``tests/realtime/adapters/test_contract.py`` holds
both adapters to it.

One adapter serves every namespace of a server; each method names its
namespace.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..protocol import socketio
from ..protocol.parsers import JsonParser, encode_packet
from ..protocol.rooms import RoomRegistry
from .interface import (
    BroadcastOptions,
    LocalSockets,
    RecoveryOptions,
    SavedSession,
    SocketInfo,
    replace_data,
)

__all__ = [
    "Adapter",
    "BroadcastOptions",
    "LocalSockets",
    "RecoveryOptions",
    "SavedSession",
    "SocketInfo",
]


@dataclass(slots=True)
class _Stored:
    seq: int  # the number in its offset: consecutive, in store order
    namespace: str
    opts: BroadcastOptions
    data: list[Any]
    stored_at: float
    size: int  # encoded bytes, counted against max_stored_bytes


@dataclass(slots=True)
class _Kept:
    """A saved session and where its socket started listening: room (its
    own sid included) -> the seq of the newest stored event when it joined."""

    session: SavedSession
    marks: dict[str, int]


_Mark = TypeVar("_Mark")


def taken(room: str) -> ValueError:
    """The error for joining a room named after another socket's sid."""
    return ValueError(f"cannot join {room!r}: it is another socket's own room")


def replayable(opts: BroadcastOptions, sid: str, marks: Mapping[str, _Mark], at: _Mark) -> bool:
    """Whether an event stored at position ``at`` with ``opts`` reached socket
    ``sid``, whose rooms were joined at the positions ``marks``: only rooms it
    was in before the event count, so a recovering client (whatever offset it
    claims) never gets what was sent to a room before it joined."""
    rooms = [room for room, mark in marks.items() if mark < at]  # type: ignore[operator]
    return opts.reaches(sid, rooms)


# What keeping an event costs besides its encoded bytes (its entry, data list
# and offset string): about 350 bytes measured on CPython 3.11. Counted, so
# that max_stored_bytes bounds memory for tiny events too.
_ENTRY_OVERHEAD = 320

# Sizes stored events by their JSON text (their data is plain already, see
# parsers.plain), with the JSON parser's encoder built once and its fast path.
_SIZER = JsonParser()

# What lookup() returns for a namespace without a registry; never joined, so
# it stays empty (leave/remove on it are no-ops).
_NO_ROOMS = RoomRegistry()


class Adapter:
    """The in-memory adapter: one process, no dependencies (the default); and
    the base class of every adapter.

    A subclass must call ``super().__init__()``. Methods it may override are
    those with a contract in their docstring; the server calls them, never
    the private ones. Room changes go through :meth:`add_all`,
    :meth:`delete` and :meth:`delete_all` (synchronous: they change the local
    registry at once); anything that must reach other nodes is awaited
    (:meth:`broadcast`, the requests, :meth:`flush`).
    """

    def __init__(self) -> None:
        #: The server's sockets (set by :meth:`attach`).
        self.sockets: LocalSockets | None = None
        #: The server's recovery options (None: recovery off), set by :meth:`attach`.
        self.recovery: RecoveryOptions | None = None
        self._rooms: dict[str, RoomRegistry] = {}
        self._packets: collections.deque[_Stored] = collections.deque()
        self._stored_bytes = 0
        self._seq = 0  # the seq of the newest offset given out
        # Saved sessions by pid, oldest first (so they expire from the front:
        # O(1) per save), and who they are, to refuse joining their sid.
        self._sessions: collections.OrderedDict[str, _Kept] = collections.OrderedDict()
        self._saved_sids: dict[tuple[str, str], str] = {}
        # The marks of sockets that just left, until persist_session takes
        # them (the server saves a session after removing its socket).
        self._departed: collections.OrderedDict[tuple[str, str], tuple[float, dict[str, int]]]
        self._departed = collections.OrderedDict()
        self._epoch = f"{time.time_ns():x}"

    # -- lifecycle --------------------------------------------------------------

    def attach(self, sockets: LocalSockets) -> None:
        """Called once by the server that owns this adapter, before
        :meth:`start`, with what it offers: its sockets and recovery options.
        An override must call ``super().attach(sockets)``."""
        self.sockets = sockets
        self.recovery = sockets.recovery

    async def start(self) -> None:
        """Connect to whatever the adapter needs (nothing, in memory); called
        once when the server starts serving, before any socket connects."""

    async def close(self) -> None:
        """Release what :meth:`start` took; called once when the server shuts
        down, after its sessions are closed. A distributed adapter writes what
        it still holds (saved sessions) while it can."""

    async def flush(self) -> None:
        """Wait until room changes made so far take effect everywhere (a
        distributed adapter subscribes to the new rooms); nothing to wait for here."""

    async def server_side_emit(self, event: str, args: list[Any]) -> None:
        """Send a server-side event to the other nodes, whose adapters hand it
        to :meth:`LocalSockets.server_event`; never to this node (there are
        no others here)."""

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

    def check_rooms(self, namespace: str, sid: str, rooms: Iterable[str]) -> None:
        """Raise :class:`ValueError` if a room is named after another socket's
        sid, live or saved for recovery: a socket's own room is its private
        line (``server.to(sid)``), which no other socket may join."""
        registry = self.lookup(namespace)
        for room in rooms:
            if room != sid and (
                room in registry
                or (namespace, room) in self._saved_sids
                or (namespace, room) in self._departed
            ):
                raise taken(room)

    async def check_remote_rooms(self, namespace: str, sid: str, rooms: list[str]) -> None:
        """:meth:`check_rooms` against the sockets of other nodes too (a
        distributed adapter asks them; here there are none)."""
        self.check_rooms(namespace, sid, rooms)

    def add_all(self, namespace: str, sid: str, rooms: Iterable[str]) -> None:
        """Add socket ``sid`` (registering it if new) to ``rooms``; raise
        :class:`ValueError`, joining none, if one is another socket's sid."""
        rooms = list(rooms)
        self.check_rooms(namespace, sid, rooms)
        registry = self.registry(namespace)
        if sid not in registry:
            registry.add(sid, self._seq)
        registry.join(sid, *rooms, mark=self._seq)

    def delete(self, namespace: str, sid: str, room: str) -> None:
        """Take socket ``sid`` out of ``room`` (nothing if it is not in it)."""
        self.lookup(namespace).leave(sid, room)

    def delete_all(self, namespace: str, sid: str) -> None:
        """Forget socket ``sid``, which disconnected: it leaves every room. With
        recovery on, remember where it was listening for
        :meth:`persist_session`, which the server calls next if it may come back."""
        registry = self.lookup(namespace)
        if self.recovery is not None and sid in registry:
            self._departing(namespace, sid, registry.marks(sid))
        registry.remove(sid)

    def _departing(self, namespace: str, sid: str, marks: dict[str, int]) -> None:
        """Keep the marks of a socket that left for :meth:`persist_session`
        (bounded like the saved sessions; a distributed adapter keeps its
        own in its store)."""
        assert self.recovery is not None
        now = time.monotonic()
        key = (namespace, sid)
        self._departed.pop(key, None)  # kept in time order
        self._departed[key] = (now, marks)
        _expire(self._departed, now - self.recovery.max_disconnection_duration, _first_of)
        _cap(self._departed, self.recovery.max_saved_sessions)
        # The server calls persist_session right after this when the socket
        # may come back, and its first step takes the marks; two loop turns
        # later they are dropped otherwise (a client's own DISCONNECT), not
        # kept until they expire: ~600 B per departure, which a client
        # joining and leaving namespaces in a loop could pile up.
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self._drop_departed, key)

    def _drop_departed(self, key: tuple[str, str]) -> None:
        self._departed.pop(key, None)

    def remove_namespace(self, namespace: str) -> None:
        """Forget the room registry of a namespace that has no sockets left
        (a dynamic child namespace whose last socket left); a namespace that
        still has sockets is kept. Recovery state is kept: it expires by itself."""
        registry = self._rooms.get(namespace)
        if registry is not None and not len(registry):
            del self._rooms[namespace]

    def rooms_of(self, namespace: str, sid: str) -> set[str]:
        """The rooms of local socket ``sid``, its own included (empty if unknown)."""
        return set(self.lookup(namespace).rooms_of(sid))

    def local_sids(self, namespace: str, opts: BroadcastOptions) -> list[str]:
        """The local sockets ``opts`` selects (:meth:`BroadcastOptions.reaches`)."""
        return self.lookup(namespace).select(opts.rooms, opts.except_rooms, sids=opts.sids)

    # -- delivery and requests: what a distributed adapter extends to every node ------

    def _local(self) -> LocalSockets:
        if self.sockets is None:
            raise RuntimeError("the adapter is not attached to a server")
        return self.sockets

    async def broadcast(
        self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions
    ) -> None:
        """Send ``packet`` to every socket ``opts`` selects, each socket once.

        Here: the sockets of this process; a distributed adapter adds those of
        the other nodes unless ``opts.local``. With recovery on, an event
        without an ack that is not volatile is kept and gets an offset as its
        last argument (:meth:`store`), in the order it is delivered. Returns
        once the packet is handed to the local sockets and (distributed) to
        the broker; a broker failure is the adapter's to report, not raised.
        """
        self._broadcast_here(namespace, packet, opts)

    def broadcast_nowait(
        self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions
    ) -> Coroutine[Any, Any, None] | None:
        """:meth:`broadcast` for a caller that cannot wait
        (``BroadcastOperator.emit_nowait``): None once it is done, or the
        coroutine that finishes it, which the server runs in a task after the
        namespace's earlier ones (so that they keep their order).

        Here it is all done at once. A subclass that overrides
        :meth:`broadcast` alone (it may wait for a broker) gets its
        :meth:`broadcast` back; one whose broadcast never waits overrides
        this too, to do it at once (the cluster adapter).
        """
        if type(self).broadcast is not Adapter.broadcast:
            return self.broadcast(namespace, packet, opts)
        self._broadcast_here(namespace, packet, opts)
        return None

    def _broadcast_here(
        self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions
    ) -> None:
        packet = self.store(namespace, packet, opts)
        self._local().deliver(namespace, packet, self.local_sids(namespace, opts), opts)

    async def broadcast_with_ack(
        self,
        namespace: str,
        packet: socketio.Packet,
        opts: BroadcastOptions,
        timeout: float,
    ) -> list[Any]:
        """Send ``packet`` (it carries an ack id) to every socket ``opts``
        selects and return the replies that arrive within ``timeout``: one
        value per socket that answered, in no set order (a socket that
        disconnects or does not answer in time adds nothing). Never stored
        for recovery: an ack cannot be awaited across a reconnection."""
        targets = self.local_sids(namespace, opts)
        waiters = self._local().deliver_with_ack(namespace, packet, targets, opts)
        return await _collect(waiters, timeout)

    async def fetch_sockets(self, namespace: str, opts: BroadcastOptions) -> list[SocketInfo]:
        """A snapshot of every socket ``opts`` selects (on every node, for a
        distributed adapter, unless ``opts.local``; nodes that do not answer
        within its request timeout are left out)."""
        return self._local().socket_infos(namespace, self.local_sids(namespace, opts))

    async def add_sockets(self, namespace: str, opts: BroadcastOptions, rooms: list[str]) -> None:
        """Make every socket ``opts`` selects join ``rooms``, through
        :meth:`LocalSockets.join` on its node; effective when it returns."""
        sockets = self._local()
        for sid in self.local_sids(namespace, opts):
            sockets.join(namespace, sid, rooms)

    async def del_sockets(self, namespace: str, opts: BroadcastOptions, rooms: list[str]) -> None:
        """Make every socket ``opts`` selects leave ``rooms``, through
        :meth:`LocalSockets.leave` on its node; effective when it returns."""
        sockets = self._local()
        for sid in self.local_sids(namespace, opts):
            sockets.leave(namespace, sid, rooms)

    async def disconnect_sockets(
        self, namespace: str, opts: BroadcastOptions, close: bool = False
    ) -> None:
        """Disconnect every socket ``opts`` selects, through
        :meth:`LocalSockets.disconnect` on its node (``close``: their whole
        connection)."""
        sockets = self._local()
        for sid in self.local_sids(namespace, opts):
            sockets.disconnect(namespace, sid, close)

    # -- connection state recovery ---------------------------------------------

    def new_offset(self) -> str:
        """A new offset, later than every one given out before."""
        self._seq += 1
        return f"{self._epoch}-{self._seq}"

    @property
    def last_offset(self) -> str | None:
        """The newest offset given out (kept or not), None before the first: the
        server records it as where a new socket starts (a distributed adapter
        may give the newest it has seen)."""
        return f"{self._epoch}-{self._seq}" if self._seq else None

    def _seq_of(self, offset: str) -> int | None:
        """The seq of one of our offsets, None for any other string."""
        epoch, _, seq = offset.rpartition("-")
        if epoch != self._epoch or not seq.isdigit() or len(seq) > 19:
            return None
        return int(seq)

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
        stored = socketio.Packet(packet.type, packet.namespace, data)
        size = sum(map(len, encode_packet(_SIZER, stored))) + _ENTRY_OVERHEAD
        now = time.monotonic()
        self._packets.append(_Stored(self._seq, namespace, opts, data, now, size))
        self._stored_bytes += size
        self._prune(now)
        return stored

    def _prune(self, now: float) -> None:
        """Drop the oldest events: those past the window, then past the bytes."""
        assert self.recovery is not None
        horizon = now - self.recovery.max_disconnection_duration
        budget = self.recovery.max_stored_bytes
        packets = self._packets
        while packets and (packets[0].stored_at < horizon or self._stored_bytes > budget):
            self._stored_bytes -= packets.popleft().size

    def _expire_sessions(self, now: float) -> None:
        assert self.recovery is not None
        horizon = now - self.recovery.max_disconnection_duration
        for kept in _expire(self._sessions, horizon, _saved_at):
            self._forget(kept)
        for kept in _cap(self._sessions, self.recovery.max_saved_sessions):
            self._forget(kept)

    def _forget(self, kept: _Kept) -> None:
        self._saved_sids.pop((kept.session.namespace, kept.session.sid), None)

    async def persist_session(self, session: SavedSession) -> None:
        """Keep a disconnected socket's state for ``max_disconnection_duration``
        (at most ``max_saved_sessions`` of them, the oldest dropped first);
        O(1): sessions are kept in the order they were saved and expire from
        the front."""
        if self.recovery is None:
            return
        now = time.monotonic()
        key = (session.namespace, session.sid)
        departed = self._departed.pop(key, None)
        if departed is not None:
            marks = departed[1]
        else:
            # Not seen leaving (saved by other means): its rooms count from
            # now, its own room from the offset it connected at.
            marks = dict.fromkeys(session.rooms, self._seq)
            marks[session.sid] = self._seq_of(session.offset or "") or 0
        previous = self._sessions.pop(session.pid, None)
        if previous is not None:
            self._forget(previous)
        session.saved_at = now
        self._sessions[session.pid] = _Kept(session, marks)
        self._saved_sids[key] = session.pid
        self._expire_sessions(now)

    async def restore_session(
        self, namespace: str, pid: str, offset: str | None
    ) -> tuple[SavedSession, list[list[Any]]] | None:
        """The saved session of ``pid`` and the events it missed after
        ``offset`` (event data, offsets included), or None if it cannot be
        recovered: unknown, expired, or its offset no longer kept.

        The offset is the client's word: events are replayed from the later
        of it and where the socket connected, and an event sent to a room
        only if the socket had joined it before (:func:`replayable`)."""
        if self.recovery is None:
            return None
        now = time.monotonic()
        self._expire_sessions(now)
        kept = self._sessions.pop(pid, None)
        if kept is None:
            return None
        self._forget(kept)
        session = kept.session
        if session.namespace != namespace:
            return None
        if now - session.saved_at > self.recovery.max_disconnection_duration:
            return None
        self._prune(now)
        start = kept.marks.get(session.sid, self._seq)
        if offset is not None:
            claimed = self._seq_of(offset)
            if claimed is None or claimed > self._seq:
                return None  # not an offset we gave out
            start = max(start, claimed)
        packets = self._packets
        first = packets[0].seq if packets else self._seq + 1
        if first > start + 1:
            return None  # too old: some events after it are gone
        missed = [
            stored.data
            for stored in itertools.islice(packets, start + 1 - first, None)
            if stored.namespace == namespace
            and replayable(stored.opts, session.sid, kept.marks, stored.seq)
        ]
        return session, missed

    # -- a socket's data, by sid --------------------------------------------------

    async def save_data(self, namespace: str, sid: str, data: dict[str, Any]) -> bool | None:
        """Make ``data`` the ``data`` of socket ``sid`` of ``namespace``, on
        whichever node it is (``server.save_session`` for a sid of another
        node), through :func:`~.interface.replace_data` on its node.

        Returns True once its node has replaced it; False when every node
        answered and none has that socket; None when no node that answered
        has it but some did not answer within the adapter's request timeout
        (or the broker could not be reached). A distributed adapter carries
        ``data`` in its own JSON, so it must be JSON-able; a distributed
        adapter that saves sessions (recovery, presence) writes the new data
        there too. Here: the sockets of this process."""
        return replace_data(self._local(), namespace, sid, data)


_K = TypeVar("_K")
_V = TypeVar("_V")


def _saved_at(kept: _Kept) -> float:
    return kept.session.saved_at


def _first_of(entry: tuple[float, Any]) -> float:
    return entry[0]


def _expire(
    entries: collections.OrderedDict[_K, _V], horizon: float, when: Callable[[_V], float]
) -> list[_V]:
    """Pop the entries (oldest first) made before ``horizon``; return them."""
    gone = []
    while entries:
        oldest = next(iter(entries.values()))
        if when(oldest) >= horizon:
            break
        gone.append(entries.popitem(last=False)[1])
    return gone


def _cap(entries: collections.OrderedDict[_K, _V], most: int) -> list[_V]:
    """Pop the oldest entries past ``most``; return them."""
    gone = []
    while len(entries) > most:
        gone.append(entries.popitem(last=False)[1])
    return gone


async def _collect(waiters: list[asyncio.Future[Any]], timeout: float) -> list[Any]:
    """The results of the waiters done within ``timeout``, in order."""
    if not waiters:
        return []
    done, pending = await asyncio.wait(waiters, timeout=timeout)
    for waiter in pending:
        waiter.cancel()
    return [w.result() for w in waiters if w in done and not w.cancelled() and not w.exception()]
