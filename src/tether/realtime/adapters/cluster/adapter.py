"""The cluster adapter: the workers of one machine as one server, through a
hub in their supervisor (:class:`~.hub.ClusterHub`), without a broker.

How messages flow:

* an event not kept for recovery is delivered to this worker's sockets at
  once and sent to the hub, which relays it to every other worker;
* with connection state recovery on, an event that is kept goes to the hub
  first: it gives it an offset, logs it, and sends it to every worker, this
  one included, so that every worker delivers kept events in offset order;
* requests (acks, ``fetch_sockets``, ``sockets_join/leave``,
  ``disconnect_sockets``) go to every other worker through the hub
  (:mod:`.requests`); this worker's part is done locally;
* this worker's sockets (rooms, and with recovery their pid and data) are
  reported to the hub as they change and every ``heartbeat``: when a worker
  dies, the hub keeps its sockets' sessions as if they had been persisted.

While the hub is unreachable, everything goes on locally (events kept for
recovery are delivered without an offset), the link is retried with a
bounded backoff, and on reconnection this worker's sockets are reported again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ....ratelimit import LogLimiter
from ...protocol import socketio
from ..base import Adapter, BroadcastOptions, SavedSession, SocketInfo, taken
from . import messages as msg
from .link import Link
from .memory import opts_from_wire, opts_to_wire
from .peer import MAX_QUEUED
from .requests import Answers, Pending
from .wire import MAX_FRAME, encode, from_wire, to_wire

__all__ = ["ClusterAdapter"]

_log = logging.getLogger("tether.realtime.adapters.cluster")

Key = tuple[str, str]  # (namespace, sid)

# Sockets reported to the hub in one message (a frame stays far below its bound).
_BATCH = 256
# Events held for one recovering socket at most, while its restore completes.
_HELD = 10_000


@dataclass(slots=True)
class _Hold:
    """A socket being recovered here: events for it wait until it is live."""

    namespace: str
    rooms: frozenset[str]
    buffer: list[tuple[socketio.Packet, BroadcastOptions]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class ClusterAdapter(Adapter):
    """Rooms, broadcasts, acks and recovery across the workers of one machine::

        from tether import realtime
        from tether.realtime.adapters.cluster import ClusterAdapter

        server = realtime.Server(adapter=ClusterAdapter("/run/app/cluster.sock"))

    ``path`` is the hub's Unix-domain socket. ``request_timeout``: how long
    requests to other workers (and to the hub) wait. ``heartbeat``: how often
    this worker's sockets (their ``data``) are reported again for recovery.
    """

    def __init__(
        self,
        path: str,
        *,
        request_timeout: float = 5.0,
        heartbeat: float = 5.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        max_frame: int = MAX_FRAME,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        super().__init__()
        self.path = path
        self.node = secrets.token_hex(8)
        self.request_timeout = request_timeout
        self.heartbeat = heartbeat
        self.link = Link(
            path,
            on_up=self._on_up,
            on_message=self._on_message,
            on_down=self._on_down,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_frame=max_frame,
            max_queued=max_queued,
        )
        self._ids = itertools.count(1)
        self._pending: dict[str, Pending] = {}
        self._calls: dict[str, asyncio.Future[Any]] = {}
        self._dirty: dict[Key, None] = {}
        self._reported: dict[Key, int] = {}  # what the hub was last told, hashed
        self._leaving: set[Key] = set()
        self._scheduled = False
        self._holds: dict[str, _Hold] = {}
        self._last_offset: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._logs = LogLimiter(_log)
        self._answers = Answers(
            self._local, self._select, self._send, self._send_dirty, self._touch
        )
        self._dispatch: dict[type[msg.Message], Callable[[Any], None]] = {
            msg.Broadcast: self._on_broadcast,
            msg.ServerEvent: self._on_server_event,
            msg.AckRequest: self._answers.answer,
            msg.FetchRequest: self._answers.answer,
            msg.RoomsRequest: self._answers.answer,
            msg.DisconnectRequest: self._answers.answer,
            msg.DataRequest: self._answers.answer,
            msg.Sent: self._on_sent,
            msg.Reply: self._on_reply,
            msg.Restored: self._on_restored,
            msg.Checked: self._on_answer,
            msg.Flushed: self._on_answer,
        }

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the link to the hub is up."""
        return self.link.up

    async def start(self) -> None:
        self.link.start()
        task = asyncio.get_running_loop().create_task(self._beat())
        self._tasks.add(task)
        if not await self.link.wait_up(self.request_timeout):
            _log.warning("no cluster hub at %s yet: serving locally meanwhile", self.path)

    async def close(self) -> None:
        self._send_dirty()
        await self.link.close(self.request_timeout)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.request_timeout)
        self._on_down()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            if self.recovery is not None:  # refresh what the hub keeps of socket.data
                self._touch_all()

    def _on_up(self) -> None:
        rec = self.recovery
        options = None
        if rec is not None:
            options = {
                "window": rec.max_disconnection_duration,
                "bytes": rec.max_stored_bytes,
                "sessions": rec.max_saved_sessions,
            }
        self.link.send(msg.Hello(self.node, options))
        self._reported.clear()  # a new hub, or one that dropped us: tell it all
        self._touch_all()

    def _on_down(self) -> None:
        for pending in self._pending.values():
            pending.done.set()
        for future in self._calls.values():
            if not future.done():
                future.set_result(None)
        for sid in list(self._holds):
            self._release(sid)

    def _on_message(self, message: msg.Message) -> None:
        handler = self._dispatch.get(type(message))
        if handler is None:
            self._logs.log(logging.WARNING, "kind", "unexpected %r from the hub", message.kind)
            return
        try:
            handler(message)
        except (ValueError, TypeError, KeyError, AttributeError):
            self._logs.exception("dispatch", "failed to handle a %r from the hub", message.kind)

    # -- what the hub knows of this worker's sockets ------------------------------------

    def _touch(self, namespace: str, sid: str) -> None:
        self._dirty[namespace, sid] = None
        if not self._scheduled:
            self._scheduled = True
            # After the server's synchronous step: a new socket is registered
            # (with its pid) once add_all's caller is done.
            asyncio.get_running_loop().call_soon(self._send_dirty)

    def _touch_all(self) -> None:
        for namespace, registry in list(self._rooms.items()):
            for sid in registry.select():
                self._dirty[namespace, sid] = None
        self._send_dirty()

    def _send_dirty(self) -> None:
        """Report the sockets touched since last time (before anything else is
        sent: the hub must know a room is joined before an event to it)."""
        self._scheduled = False
        if not self._dirty:
            return
        dirty, self._dirty = list(self._dirty), {}
        live: list[dict[str, Any]] = []
        gone: list[list[str]] = []
        for key in dirty:
            entry = self._entry(*key)
            if entry is None:
                self._reported.pop(key, None)
                if key not in self._leaving:
                    gone.append(list(key))
                continue
            # The hub keeps a live socket's report until its worker goes: the
            # heartbeat sends only what changed since (its data, mostly).
            digest = hash(self._text(entry))
            if self._reported.get(key) != digest:
                self._reported[key] = digest
                live.append(entry)
        for start in range(0, len(live), _BATCH):
            self.link.send(msg.Live(live[start : start + _BATCH]))
        for start in range(0, len(gone), _BATCH):
            self.link.send(msg.Gone(gone[start : start + _BATCH]))

    def _entry(self, namespace: str, sid: str) -> dict[str, Any] | None:
        registry = self.lookup(namespace)
        if sid not in registry:
            return None
        entry: dict[str, Any] = {"nsp": namespace, "sid": sid}
        entry["rooms"] = [room for room in registry.rooms_of(sid) if room != sid]
        socket = self._local().socket(namespace, sid)
        if self.recovery is not None and socket is not None and socket.pid is not None:
            entry["pid"] = socket.pid
            entry["data"] = socket.data
        return entry

    def _text(self, entry: dict[str, Any]) -> str:
        """The JSON of a socket's report; its data left out (logged) if JSON
        cannot carry it."""
        try:
            return json.dumps(entry)
        except (TypeError, ValueError):
            entry["data"] = _jsonable(entry.get("data"), entry["sid"], self._logs)
            return json.dumps(entry)

    def add_all(self, namespace: str, sid: str, rooms: Iterable[str]) -> None:
        super().add_all(namespace, sid, rooms)
        self._touch(namespace, sid)
        if sid in self._holds and self._holds[sid].namespace == namespace:
            # Live once the server's connect step (CONNECT, then the missed
            # events) is done: what was held goes after those.
            asyncio.get_running_loop().call_soon(self._release, sid)

    def delete(self, namespace: str, sid: str, room: str) -> None:
        super().delete(namespace, sid, room)
        self._touch(namespace, sid)

    def delete_all(self, namespace: str, sid: str) -> None:
        registry = self.lookup(namespace)
        if sid not in registry:
            return
        socket = self._local().socket(namespace, sid)
        super().delete_all(namespace, sid)
        key = (namespace, sid)
        if self.recovery is not None and socket is not None and socket.pid is not None:
            # The server calls persist_session right after this if the socket
            # may come back: decide two loop turns later (after that task's
            # first step); tell the hub it is gone otherwise.
            self._leaving.add(key)
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._gone_unless_kept, key)
        self._touch(namespace, sid)

    def _gone_unless_kept(self, key: Key) -> None:
        if key in self._leaving:
            self._leaving.discard(key)
            self._touch(*key)

    def _departing(self, namespace: str, sid: str, marks: dict[str, int]) -> None:
        """Nothing to keep here: the hub keeps where sockets started listening."""

    async def check_remote_rooms(self, namespace: str, sid: str, rooms: list[str]) -> None:
        """Refuse a room named after a sid of any worker (the hub knows them
        all, live or saved); only this worker's while the hub is unreachable."""
        self.check_rooms(namespace, sid, rooms)
        others = [room for room in rooms if room != sid]
        if not others or not self.link.up:
            return
        answer = await self._call(lambda id: msg.Check(id, namespace, sid, others))
        if isinstance(answer, msg.Checked) and answer.taken is not None:
            raise taken(answer.taken)

    async def flush(self) -> None:
        """Wait until the hub has everything sent so far (room changes,
        sessions); returns regardless after ``request_timeout``."""
        self._send_dirty()
        if self.link.up:
            await self._call(msg.Flush)

    # -- sending --------------------------------------------------------------------------

    def _send(self, message: msg.Message) -> bool:
        self._send_dirty()
        return self.link.send(message)

    def _new_id(self) -> str:
        return f"{self.node}:{next(self._ids)}"

    async def _call(self, make: Callable[[str], msg.Message]) -> msg.Message | None:
        """Send the message ``make(id)`` makes with a new id; the hub's
        answer, or None (down, timeout)."""
        call_id = self._new_id()
        future = self._calls[call_id] = asyncio.get_running_loop().create_future()
        try:
            if not self._send(make(call_id)):
                return None
            return await asyncio.wait_for(future, self.request_timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            self._calls.pop(call_id, None)

    def _on_answer(self, message: msg.Checked | msg.Flushed | msg.Restored) -> None:
        future = self._calls.get(message.id)
        if future is not None and not future.done():
            future.set_result(message)

    def _select(self, namespace: str, wire: dict[str, Any]) -> list[str]:
        return self.local_sids(namespace, opts_from_wire(wire))

    # -- broadcasts -----------------------------------------------------------------------

    def _storable(self, packet: socketio.Packet, opts: BroadcastOptions) -> bool:
        """Kept for recovery (as :meth:`Adapter.store` keeps): an event, no ack, not volatile."""
        event = packet.type in (socketio.PacketType.EVENT, socketio.PacketType.BINARY_EVENT)
        return self.recovery is not None and event and packet.id is None and not opts.volatile

    @property
    def last_offset(self) -> str | None:
        return self._last_offset

    async def broadcast(
        self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions
    ) -> None:
        self._broadcast(namespace, packet, opts)

    def broadcast_nowait(
        self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions
    ) -> None:
        # Nothing here waits: the hub gets it through the connection's buffer.
        self._broadcast(namespace, packet, opts)

    def _broadcast(self, namespace: str, packet: socketio.Packet, opts: BroadcastOptions) -> None:
        wire = opts_to_wire(opts)
        if self._storable(packet, opts):
            # Kept: the hub gives it its offset and sends it back to us too.
            if self._send(msg.Broadcast(namespace, packet.data, wire, True, opts.local)):
                return
        elif not opts.local:
            self._send(msg.Broadcast(namespace, packet.data, wire))
        self._local().deliver(namespace, packet, self.local_sids(namespace, opts), opts)

    def _on_broadcast(self, message: msg.Broadcast) -> None:
        nsp = message.nsp
        if message.off is not None:
            self._last_offset = message.off
        opts = opts_from_wire(message.o)
        packet = socketio.Packet.event(*message.data, namespace=nsp)
        targets = self.local_sids(nsp, opts)
        if self._holds:
            targets = self._divert(nsp, packet, opts, targets)
        self._local().deliver(nsp, packet, targets, opts)

    def _on_server_event(self, message: msg.ServerEvent) -> None:
        self._local().server_event(message.event, message.args)

    async def server_side_emit(self, event: str, args: list[Any]) -> None:
        self._send(msg.ServerEvent(event, list(args)))

    # -- requests ---------------------------------------------------------------------------

    async def _ask(
        self,
        kind: type[msg.Request],
        namespace: str,
        opts: BroadcastOptions,
        timeout: float,
        pending: Pending | None = None,
        **fields: Any,
    ) -> list[Any]:
        """What the other workers answer to a request (nothing if the hub is
        down); ``pending`` tells afterwards whether every worker answered."""
        if not self.link.up:
            return []
        request_id = self._new_id()
        pending = self._pending[request_id] = pending or Pending()
        request = kind(request_id, namespace, opts_to_wire(opts), timeout, **fields)
        try:
            if not self._send(request):
                return []
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(pending.done.wait(), timeout)
            return pending.items
        finally:
            self._pending.pop(request_id, None)

    def _on_sent(self, message: msg.Sent) -> None:
        pending = self._pending.get(message.id)
        if pending is not None:
            pending.on_sent(message.n)

    def _on_reply(self, message: msg.Reply) -> None:
        pending = self._pending.get(message.id)
        if pending is not None:
            pending.on_reply(message)

    async def broadcast_with_ack(
        self,
        namespace: str,
        packet: socketio.Packet,
        opts: BroadcastOptions,
        timeout: float,
    ) -> list[Any]:
        here = super().broadcast_with_ack(namespace, packet, opts, timeout)
        if opts.local:
            return await here
        local = asyncio.ensure_future(here)
        try:
            remote = await self._ask(msg.AckRequest, namespace, opts, timeout, data=packet.data)
        except BaseException:
            local.cancel()
            raise
        return [*await local, *remote]

    async def fetch_sockets(self, namespace: str, opts: BroadcastOptions) -> list[SocketInfo]:
        found = await super().fetch_sockets(namespace, opts)
        if not opts.local:
            items = await self._ask(msg.FetchRequest, namespace, opts, self.request_timeout)
            found += [from_wire(SocketInfo, item) for item in items]
        return found

    async def add_sockets(self, namespace: str, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().add_sockets(namespace, opts, rooms)
        if not opts.local:
            await self._ask(
                msg.RoomsRequest, namespace, opts, self.request_timeout, rooms=rooms, join=True
            )

    async def del_sockets(self, namespace: str, opts: BroadcastOptions, rooms: list[str]) -> None:
        await super().del_sockets(namespace, opts, rooms)
        if not opts.local:
            await self._ask(
                msg.RoomsRequest, namespace, opts, self.request_timeout, rooms=rooms, join=False
            )

    async def disconnect_sockets(
        self, namespace: str, opts: BroadcastOptions, close: bool = False
    ) -> None:
        await super().disconnect_sockets(namespace, opts, close)
        if not opts.local:
            await self._ask(
                msg.DisconnectRequest, namespace, opts, self.request_timeout, close=close
            )

    async def save_data(self, namespace: str, sid: str, data: dict[str, Any]) -> bool | None:
        if await super().save_data(namespace, sid, data):
            self._touch(namespace, sid)
            return True
        encode({"data": data})  # TypeError here, rather than a request never sent
        pending = Pending()
        opts = BroadcastOptions(sids=frozenset({sid}))
        if await self._ask(
            msg.DataRequest, namespace, opts, self.request_timeout, pending, data=data
        ):
            return True
        return False if pending.done.is_set() else None

    # -- connection state recovery ---------------------------------------------------------

    async def persist_session(self, session: SavedSession) -> None:
        if self.recovery is None:
            return
        key = (session.namespace, session.sid)
        self._leaving.discard(key)
        self._dirty.pop(key, None)
        self._reported.pop(key, None)
        wire = to_wire(session, skip=("saved_at",))
        wire["data"] = _jsonable(session.data, session.sid, self._logs)
        if not self._send(msg.Persist(wire)):
            self._logs.log(
                logging.WARNING, "persist", "session %s not saved: no cluster hub", session.sid
            )

    async def restore_session(
        self, namespace: str, pid: str, offset: str | None
    ) -> tuple[SavedSession, list[list[Any]]] | None:
        if self.recovery is None or not self.link.up:
            return None
        answer = await self._call(lambda id: msg.Restore(id, namespace, pid, offset))
        if not isinstance(answer, msg.Restored) or answer.session is None:
            return None
        return from_wire(SavedSession, answer.session), answer.missed

    def _on_restored(self, message: msg.Restored) -> None:
        session = message.session
        if session is not None and message.id in self._calls:
            # Events after the replay may come before the socket is live
            # here: hold them for it (they come after the reply, in order).
            sid = str(session["sid"])
            hold = self._holds[sid] = _Hold(
                str(session["namespace"]), frozenset([*session["rooms"], sid])
            )
            loop = asyncio.get_running_loop()
            hold.timer = loop.call_later(self.request_timeout, self._release, sid)
        self._on_answer(message)

    def _divert(
        self, nsp: str, packet: socketio.Packet, opts: BroadcastOptions, targets: list[str]
    ) -> list[str]:
        for sid, hold in self._holds.items():
            concerned = hold.namespace == nsp and opts.reaches(sid, hold.rooms)
            if concerned and len(hold.buffer) < _HELD:
                hold.buffer.append((packet, opts))
        return [sid for sid in targets if sid not in self._holds]

    def _release(self, sid: str) -> None:
        hold = self._holds.pop(sid, None)
        if hold is None:
            return
        if hold.timer is not None:
            hold.timer.cancel()
        for packet, opts in hold.buffer:
            self._local().deliver(hold.namespace, packet, [sid], opts)


def _jsonable(data: Any, sid: str, logs: LogLimiter) -> Any:
    """``data`` if JSON can carry it, else nothing (logged)."""
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        logs.log(logging.WARNING, "data", "socket.data of %s is not JSON-able: not kept", sid)
        return {}
    return data
