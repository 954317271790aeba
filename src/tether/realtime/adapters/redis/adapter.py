"""The Redis adapter: many server processes, on many machines, as one server.

How messages flow (see ``docs/scale-out.md`` for the whole story):

* an event for everyone in a namespace is published on the namespace's
  channel; an event for rooms (or sids) on each room's channel, which a node
  subscribes to only while it has local members (:mod:`.subscriber`). A node
  getting one message on several channels delivers it once (message ids).
* with connection state recovery on, events are stored in a Redis Stream and
  published by one Lua script, so the stream order is the delivery order and
  the offset a client holds is a stream id; every node, the sender included,
  delivers them when Redis hands them back. Other events are delivered to the
  sender's sockets at once and skipped when they come back.
* requests (broadcast acks, ``fetch_sockets``, ``sockets_join/leave``,
  ``disconnect_sockets``, ``save_data``) go where a broadcast would go; each
  copy (``PUBLISH`` tells how many reached a node) is answered on the
  requester's node channel, so the requester knows when every answer is in.
* sessions are saved in Redis at connect, on join/leave and every heartbeat,
  with a TTL: a node killed without a chance to save anything leaves its
  sockets recoverable on any other node.
* while Redis is down, local delivery goes on; what could not be published is
  logged, counted in :attr:`RedisAdapter.stats` and passed to ``on_failure``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ....exceptions import PacketError
from ....ratelimit import LogLimiter
from ...protocol import socketio
from ..base import Adapter, BroadcastOptions, SavedSession, SocketInfo, taken
from ..interface import LocalSocket, replace_data
from .messages import (
    AckRequest,
    Broadcast,
    DataRequest,
    DisconnectRequest,
    FetchRequest,
    Message,
    Reply,
    Request,
    RoomsRequest,
    ServerEvent,
    decode,
    encode,
    opts_from_wire,
    opts_to_wire,
    socket_info_from_wire,
    split_payload,
)
from .presence import Presence
from .publisher import Publisher, connect
from .recovery import Recovery
from .requests import Pending, Requests
from .stats import Failure, RedisStats, report
from .store import Store
from .subscriber import Subscriptions
from .workers import cancel_until_done

__all__ = ["Failure", "RedisAdapter", "RedisStats"]

_log = logging.getLogger("tether.realtime.adapters.redis")

_FAILURES = (RedisError, OSError)
_SEEN = 1024  # message ids remembered for de-duplication


class RedisAdapter(Adapter):
    """Rooms, broadcasts, acks and recovery across processes, through Redis::

        from tether import realtime
        from tether.realtime.adapters.redis import RedisAdapter

        server = realtime.Server(adapter=RedisAdapter("redis://localhost:6379/0"))

    ``prefix`` namespaces keys and channels (servers sharing one must agree).
    ``heartbeat`` (seconds): how often a node says it is alive, refreshes its
    sockets' saved sessions and reaps dead nodes. ``request_timeout``: how
    long ``fetch_sockets``, ``sockets_join/leave``, ``disconnect_sockets`` and
    ``save_data`` wait for other nodes. ``presence`` keeps room memberships and users in
    Redis (:attr:`presence`); ``user_key`` names the entry of ``socket.data``
    holding a socket's user id. ``on_failure(failure)`` (may be async) hears
    of every :class:`Failure`. ``client`` replaces the connection made from
    ``url`` (a ``redis.asyncio.Redis``, which should not retry on its own).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "tether",
        client: aioredis.Redis | None = None,
        heartbeat: float = 5.0,
        request_timeout: float = 5.0,
        presence: bool = True,
        user_key: str = "user",
        on_failure: Callable[[Failure], Any] | None = None,
        backoff_base: float = 0.05,
        backoff_cap: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.node = secrets.token_hex(8)
        self.heartbeat = heartbeat
        self.request_timeout = request_timeout
        self.user_key = user_key
        self.on_failure = on_failure
        self.stats = RedisStats()
        self.client = client if client is not None else connect(url)
        self._publisher = Publisher(self.client, prefix)
        self.keys = self._publisher.keys
        self.channels = self._publisher.channels
        self.presence: Presence | None = (
            Presence(self.client, prefix, self.node) if presence else None
        )
        self._subs = Subscriptions(
            self.client,
            self._on_payload,
            on_state=self._on_state,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
        )
        self._ids = itertools.count(1)
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._store = Store(self)
        # Malformed messages, stream entries and sessions: one line per
        # interval, not one per occurrence (or per recovering client).
        self._logs = LogLimiter(_log)
        self._recovery = Recovery(
            self.client,
            self.keys,
            self.channels,
            self._subs,
            deliver=self._deliver_local,
            rooms_of=self.rooms_of,
            logs=self._logs,
            timeout=request_timeout,
        )
        # Namespaces whose channel this node listens to from start() on, with
        # or without sockets (the others only while they have local sockets).
        self._listened: set[str] = set()
        self._was_up = False
        self._requests = Requests(
            self,
            self.client,
            self.channels,
            report=self._report,
            spawn=self._spawn,
            touch=self._touch,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._chain: asyncio.Task[None] | None = None
        self._dispatch: dict[type[Message], Callable[[Any, str | None], None]] = {
            Broadcast: self._on_broadcast,
            AckRequest: self._answer(self._requests.on_ack_request),
            FetchRequest: self._answer(self._requests.on_fetch),
            RoomsRequest: self._answer(self._requests.on_rooms),
            DisconnectRequest: self._answer(self._requests.on_disconnect),
            DataRequest: self._answer(self._requests.on_data),
            Reply: self._requests.on_reply,
            ServerEvent: self._on_server_event,
        }

    # -- lifecycle --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the Pub/Sub connection to Redis is up."""
        return self._subs.connected

    @property
    def window_ms(self) -> int:
        """How long a saved session and the stream keep, in ms (0: recovery off)."""
        if self.recovery is None:
            return 0
        return max(1, int(self.recovery.max_disconnection_duration * 1000))

    async def start(self) -> None:
        self._subs.want(self.channels.node(self.node))
        self._subs.want(self.channels.server)
        for name in self._local().namespace_names():
            self._subs.want(self.channels.namespace(name))
            self._listened.add(name)
        self._subs.start()
        for worker in (self._store.run(), self._requests.run(), self._store.beat(self._local_keys)):
            self._spawn(worker)
        await self._subs.settle(self.request_timeout)

    async def close(self) -> None:
        with contextlib.suppress(*_FAILURES, asyncio.TimeoutError):
            await asyncio.wait_for(self._store.write_all(), self.request_timeout)
        with contextlib.suppress(*_FAILURES, asyncio.TimeoutError):
            await asyncio.wait_for(self._requests.send_all(), self.request_timeout)
        if self.presence is not None:
            with contextlib.suppress(*_FAILURES, asyncio.TimeoutError):
                await asyncio.wait_for(self.presence.reap(self.node, self.run_in_order), 1.0)
        await cancel_until_done(self._tasks)
        await self._subs.close()
        with contextlib.suppress(*_FAILURES):
            await self.client.aclose()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def run_in_order(self, awaitable: Any) -> None:
        """Run a handler's coroutine after the previous one: presence and
        failure handlers see changes in the order they happened."""
        previous = self._chain

        async def guarded() -> None:
            if previous is not None:
                # Whatever ended it (its own error is logged there); a
                # cancellation of this task still goes through (close()).
                await asyncio.wait({previous})
            try:
                await awaitable
            except Exception:
                _log.exception("presence or failure handler failed")

        task = self._chain = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_state(self, up: bool) -> None:
        if not up:
            _log.warning("redis is unreachable; local delivery goes on, reconnecting")
            return
        if self._was_up:
            self.stats.reconnects += 1
            _log.warning("redis connection restored; resynchronising")
        self._was_up = True
        # Redis may have lost what we wrote (or we failed to write it).
        self._store.touch_all(self._local_keys(), resync=True)
        self._requests.wake()

    def _report(
        self, what: str, nsp: str | None, message: Message, error: BaseException, local: bool
    ) -> None:
        failure = Failure(what, nsp, message, error, local)
        report(failure, self.stats, self.on_failure, self.run_in_order)

    # -- local rooms: what this node subscribes to ------------------------------------

    def add_all(self, namespace: str, sid: str, rooms: Iterable[str]) -> None:
        registry = self.registry(namespace)
        new = sid not in registry
        before = set() if new else set(registry.rooms_of(sid))
        super().add_all(namespace, sid, rooms)
        for room in registry.rooms_of(sid):
            if room not in before:
                self._subs.want(self.channels.room(namespace, room))
        if new:
            self._subs.want(self.channels.namespace(namespace))
        self._touch(namespace, sid)
        hold = self._recovery.holds.get(sid)
        if hold is not None and hold.namespace == namespace:
            # The recovered socket is live once the server's synchronous
            # connect step (CONNECT, then the missed events) is done.
            asyncio.get_running_loop().call_soon(self._recovery.release, sid)

    def delete(self, namespace: str, sid: str, room: str) -> None:
        registry = self.lookup(namespace)
        if sid in registry and room in registry.rooms_of(sid):
            super().delete(namespace, sid, room)
            self._subs.unwant(self.channels.room(namespace, room))
            self._touch(namespace, sid)

    def delete_all(self, namespace: str, sid: str) -> None:
        registry = self.lookup(namespace)
        if sid not in registry:
            return
        for room in registry.rooms_of(sid):
            self._subs.unwant(self.channels.room(namespace, room))
        self._subs.unwant(self.channels.namespace(namespace))
        socket = self.local_socket(namespace, sid)
        super().delete_all(namespace, sid)
        self._recovery.fences.pop(sid, None)
        self._touch(namespace, sid)
        if socket is not None and socket.pid is not None and self.recovery is not None:
            # The server calls persist_session right after this when the
            # disconnection is recoverable; decide two loop turns later
            # (after that task's first step), forget the session otherwise.
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._store.departed, socket.pid)

    def _departing(self, namespace: str, sid: str, marks: dict[str, int]) -> None:
        """Nothing to keep here: the marks that matter are in Redis."""

    async def check_remote_rooms(self, namespace: str, sid: str, rooms: list[str]) -> None:
        """Refuse a room named after a sid of any node: with recovery on,
        every socket's session (live or saved) marks its sid as taken in
        Redis, so one ``EXISTS`` per room tells. Without recovery, or while
        Redis is unreachable, only this node's sockets are checked."""
        self.check_rooms(namespace, sid, rooms)
        others = [room for room in rooms if room != sid]
        if not others or not self.window_ms or not self.connected:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for room in others:
                    pipe.exists(self.keys.sid(namespace, room))
                found = await pipe.execute()
        except _FAILURES as exc:
            _log.debug("cannot check rooms against other nodes' sids: %s", exc)
            return
        for room, hit in zip(others, found, strict=True):
            if hit:
                raise taken(room)

    def remove_namespace(self, namespace: str) -> None:
        super().remove_namespace(namespace)
        if namespace not in self._rooms and namespace in self._listened:
            self._listened.discard(namespace)
            self._subs.unwant(self.channels.namespace(namespace))

    async def flush(self) -> None:
        """Wait until the room changes made so far are effective everywhere:
        this node listens to the channels of its sockets' rooms, and their
        presence (and saved sessions) are written to Redis. ``Socket.join``
        awaits it: an event sent to the room right after reaches the socket,
        and :attr:`presence` read on any node shows it. Returns regardless
        after ``request_timeout`` or while Redis is unreachable (the writes
        are retried)."""
        waits = [self._subs.settle(self.request_timeout)]
        if self.connected and (self.presence is not None or self.window_ms):
            waits.append(self._store.settle(self.request_timeout))
        await asyncio.gather(*waits)

    def local_socket(self, namespace: str, sid: str) -> LocalSocket | None:
        """The connected socket ``sid`` of ``namespace`` on this node, or None."""
        return self._local().socket(namespace, sid)

    def _touch(self, namespace: str, sid: str) -> None:
        self._store.touch((namespace, sid))

    def _local_keys(self) -> list[tuple[str, str]]:
        return [(nsp, sid) for nsp, registry in self._rooms.items() for sid in registry.select()]

    # -- publishing ---------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self.node}:{next(self._ids)}"

    def _first(self, message_id: str) -> bool:
        """Whether a message is new here (it may come on several channels)."""
        seen = self._seen
        if message_id in seen:
            return False
        seen[message_id] = None
        if len(seen) > _SEEN:
            seen.popitem(last=False)
        return True

    def _channels_for(self, namespace: str, opts: BroadcastOptions) -> list[str]:
        channels = self.channels.for_rooms(namespace, opts.rooms | opts.sids)
        # Rooms joined here a moment ago may not be subscribed yet: our own
        # node channel covers our own sockets meanwhile.
        if self._subs.pending(set(channels)) and self.local_sids(namespace, opts):
            channels.append(self.channels.node(self.node))
        return channels

    def _storable(self, packet: socketio.Packet, opts: BroadcastOptions) -> bool:
        return (
            self.recovery is not None
            and packet.type in (socketio.PacketType.EVENT, socketio.PacketType.BINARY_EVENT)
            and packet.id is None
            and not opts.volatile
        )

    @property
    def last_offset(self) -> str | None:
        # Informational: the offset a new socket starts from is recorded in
        # Redis when its session is first saved (scripts.SAVE_SESSION).
        return self._recovery.last_seen

    async def broadcast(
        self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions
    ) -> None:
        sockets = self._local()
        wire = opts_to_wire(opts)
        if not self._storable(packet, opts):
            sockets.deliver(namespace, packet, self.local_sids(namespace, opts), opts)
            if opts.local:
                return
            message = Broadcast(self._new_id(), namespace, packet.data, wire, origin=self.node)
            channels = self.channels.for_rooms(namespace, opts.rooms | opts.sids)
            await self._publish("broadcast", namespace, message, channels, local=True)
            return
        # Stored for recovery: every node, this one included, delivers it when
        # Redis hands it back, in stream order.
        message = Broadcast(self._new_id(), namespace, packet.data, wire)
        if opts.local:
            channels = [self.channels.node(self.node)]
        else:
            channels = self._channels_for(namespace, opts)
        if not await self._publish("broadcast", namespace, message, channels, stored=True):
            sockets.deliver(namespace, packet, self.local_sids(namespace, opts), opts)

    async def _publish(
        self,
        what: str,
        namespace: str | None,
        message: Message,
        channels: list[str],
        *,
        stored: bool = False,
        local: bool = False,
    ) -> int | None:
        """Publish (``stored``: kept in the stream for recovery); the number
        of copies delivered, or None (reported) on failure."""
        window_ms = max_bytes = 0
        if stored and self.recovery is not None:
            window_ms, max_bytes = self.window_ms, self.recovery.max_stored_bytes
        try:
            published = await self._publisher.publish(message, channels, window_ms, max_bytes)
        except _FAILURES as exc:
            self._report(what, namespace, message, exc, local=local or stored)
            return None
        self.stats.published += 1
        return published.receivers

    # -- receiving ------------------------------------------------------------------------

    def _on_payload(self, payload: bytes) -> None:
        self.stats.received += 1
        offset, body = split_payload(payload)
        try:
            message = decode(body)
        except PacketError as exc:
            self._logs.log(logging.WARNING, "payload", "ignoring a malformed message: %s", exc)
            return
        try:
            self._dispatch[type(message)](message, offset)
        except (ValueError, TypeError, AttributeError, KeyError):
            # Decodable but with ill-typed fields: one traceback per interval,
            # however many come.
            self._logs.exception("dispatch", "failed to handle a message from redis")

    def _on_broadcast(self, message: Broadcast, offset: str | None) -> None:
        if not self._first(message.id) or message.origin == self.node:
            return
        if offset is not None:
            self._recovery.last_seen = offset
        nsp = message.nsp
        opts = opts_from_wire(message.opts)
        data = [*message.data, offset] if offset is not None else message.data
        packet = socketio.Packet.event(*data, namespace=nsp)
        targets = self.local_sids(nsp, opts)
        recovery = self._recovery
        fenced = recovery.fenced(offset) if recovery.fences and offset is not None else set()
        if fenced:
            targets = [sid for sid in targets if sid not in fenced]
        if recovery.holds:
            targets = recovery.divert(nsp, packet, opts, targets, offset, fenced)
        self._local().deliver(nsp, packet, targets, opts)

    # -- requests: acks, fetch, join/leave, disconnect, data ---------------------------

    async def _request(self, what: str, request: Request, opts: BroadcastOptions) -> Pending | None:
        pending = self._requests.pending[request.id] = Pending()
        channels = self._channels_for(request.nsp, opts)
        receivers = await self._publish(what, request.nsp, request, channels)
        if receivers is None:
            del self._requests.pending[request.id]
            return None
        pending.receipts_needed = receivers
        pending.check()
        return pending

    def _answer(self, handler: Callable[[Any, list[str]], None]) -> Callable[[Any, Any], None]:
        """A request handler given the local sockets it concerns: none for a
        copy seen before (it still gets a receipt: the requester counts them)."""

        def answer(request: Request, offset: str | None) -> None:
            first = self._first(request.id)
            targets = self.local_sids(request.nsp, opts_from_wire(request.opts)) if first else []
            handler(request, targets)

        return answer

    async def broadcast_with_ack(
        self,
        namespace: str,
        packet: socketio.Packet,
        opts: BroadcastOptions,
        timeout: float,
    ) -> list[Any]:
        if opts.local:
            return await super().broadcast_with_ack(namespace, packet, opts, timeout)
        request = AckRequest(
            self._new_id(), self.node, namespace, opts_to_wire(opts), packet.data, timeout
        )
        pending = await self._request("ack", request, opts)
        if pending is None:
            return await super().broadcast_with_ack(namespace, packet, opts, timeout)
        return await self._requests.wait(request, pending, timeout)

    async def fetch_sockets(self, namespace: str, opts: BroadcastOptions) -> list[SocketInfo]:
        if opts.local:
            return await super().fetch_sockets(namespace, opts)
        request = FetchRequest(self._new_id(), self.node, namespace, opts_to_wire(opts))
        pending = await self._request("fetch_sockets", request, opts)
        if pending is None:
            return await super().fetch_sockets(namespace, opts)
        items = await self._requests.wait(request, pending, self.request_timeout)
        return [socket_info_from_wire(item) for item in items]

    async def add_sockets(self, namespace: str, opts: BroadcastOptions, rooms: list[str]) -> None:
        await self._rooms_request(namespace, opts, rooms, join=True)

    async def del_sockets(self, namespace: str, opts: BroadcastOptions, rooms: list[str]) -> None:
        await self._rooms_request(namespace, opts, rooms, join=False)

    async def _rooms_request(
        self, namespace: str, opts: BroadcastOptions, rooms: list[str], *, join: bool
    ) -> None:
        if opts.local:
            method = super().add_sockets if join else super().del_sockets
            await method(namespace, opts, rooms)
            await self.flush()
            return
        request = RoomsRequest(
            self._new_id(), self.node, namespace, opts_to_wire(opts), rooms, join
        )
        pending = await self._request("rooms", request, opts)
        if pending is None:
            method = super().add_sockets if join else super().del_sockets
            await method(namespace, opts, rooms)
            return
        await self._requests.wait(request, pending, self.request_timeout)

    async def disconnect_sockets(
        self, namespace: str, opts: BroadcastOptions, close: bool = False
    ) -> None:
        if opts.local:
            await super().disconnect_sockets(namespace, opts, close)
            return
        request = DisconnectRequest(self._new_id(), self.node, namespace, opts_to_wire(opts), close)
        pending = await self._request("disconnect", request, opts)
        if pending is None:
            await super().disconnect_sockets(namespace, opts, close)
            return
        await self._requests.wait(request, pending, self.request_timeout)

    async def save_data(self, namespace: str, sid: str, data: dict[str, Any]) -> bool | None:
        if replace_data(self._local(), namespace, sid, data):
            self._touch(namespace, sid)
            return True
        opts = BroadcastOptions(sids=frozenset({sid}))
        request = DataRequest(self._new_id(), self.node, namespace, opts_to_wire(opts), data)
        encode(request)  # TypeError here, before a request is left pending
        pending = await self._request("data", request, opts)
        if pending is None:
            return None
        saved = await self._requests.wait(request, pending, self.request_timeout)
        return True if saved else (False if pending.done.is_set() else None)

    # -- server-side events ---------------------------------------------------------------

    async def server_side_emit(self, event: str, args: list[Any]) -> None:
        message = ServerEvent(self.node, event, list(args))
        await self._publish("server_event", None, message, [self.channels.server])

    def _on_server_event(self, message: ServerEvent, offset: str | None) -> None:
        if message.origin != self.node:
            self._local().server_event(message.event, message.args)

    # -- connection state recovery ---------------------------------------------------

    async def persist_session(self, session: SavedSession) -> None:
        if self.recovery is None:
            return
        self._store.persist(session)

    async def restore_session(
        self, namespace: str, pid: str, offset: str | None
    ) -> tuple[SavedSession, list[list[Any]]] | None:
        if self.recovery is None:
            return None
        return await self._recovery.restore(namespace, pid, offset)

    def _deliver_local(
        self, namespace: str, packet: socketio.Packet, sids: list[str], opts: BroadcastOptions
    ) -> None:
        self._local().deliver(namespace, packet, sids, opts)
