"""Connection state recovery through Redis: restoring a session and the
events it missed from the stream, without losing or doubling one.

While a socket is being recovered here it is *held*: events for it that come
through Pub/Sub are buffered, and once it is live they are delivered after
those read from the stream. A recovered socket is *fenced* up to the last
stream entry it got that way, so that a Pub/Sub copy of one of those entries
arriving late is not delivered again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ....ratelimit import LogLimiter
from ...protocol import socketio
from ..base import BroadcastOptions, SavedSession
from . import scripts
from .messages import Channels
from .publisher import Keys
from .replay import StreamId, is_stream_id, replayed, room_marks, stream_id
from .subscriber import Subscriptions

__all__ = ["Hold", "Recovery"]

_log = logging.getLogger("tether.realtime.adapters.redis")

_FAILURES = (RedisError, OSError)

Deliver = Callable[[str, socketio.Packet, list[str], BroadcastOptions], None]


@dataclass(slots=True)
class Hold:
    """A socket being recovered here: events for it are held until it is live."""

    namespace: str
    rooms: frozenset[str]
    channels: list[str]
    buffer: list[tuple[str | None, socketio.Packet, BroadcastOptions]] = field(default_factory=list)
    release: asyncio.TimerHandle | None = None


class Recovery:
    """The sockets being recovered on one node: their holds and fences."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        channels: Channels,
        subs: Subscriptions,
        *,
        deliver: Deliver,
        rooms_of: Callable[[str, str], set[str]],
        logs: LogLimiter,
        timeout: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.channels = channels
        self._subs = subs
        self._deliver = deliver
        self._rooms_of = rooms_of
        self._logs = logs
        self._timeout = timeout
        self._script = client.register_script(scripts.RESTORE)
        #: Sockets being recovered here: events for them wait until they are live.
        self.holds: dict[str, Hold] = {}
        #: Recovered sockets -> the last stream entry their missed events came
        #: from, until Pub/Sub has handed this node every copy up to it.
        self.fences: dict[str, StreamId] = {}
        #: The offset of the newest stored event this node has received.
        self.last_seen: str | None = None

    async def restore(
        self, namespace: str, pid: str, offset: str | None
    ) -> tuple[SavedSession, list[list[Any]]] | None:
        """:meth:`~tether.realtime.Adapter.restore_session`, from Redis."""
        try:
            raw = await self.client.hget(self.keys.session(pid), "s")
        except _FAILURES as exc:
            _log.warning("cannot recover session %s, redis is unavailable: %s", pid, exc)
            return None
        if raw is None:
            return None
        try:
            saved = json.loads(raw)
            sid: str = saved["sid"]
            if saved["nsp"] != namespace:
                return None
        except (ValueError, TypeError, KeyError):
            self._logs.log(logging.WARNING, "session", "ignoring a malformed saved session %s", pid)
            return None
        rooms = frozenset([*saved["rooms"], sid])
        # Listen to the socket's rooms (and hold what arrives) before reading
        # the stream, so that no event falls between the stream and the live
        # flow, and none is delivered twice.
        channels = [self.channels.namespace(namespace)]
        channels += [self.channels.room(namespace, room) for room in sorted(rooms)]
        hold = self.holds[sid] = Hold(namespace, rooms, channels)
        for channel in channels:
            self._subs.want(channel)
        loop = asyncio.get_running_loop()
        hold.release = loop.call_later(2 * self._timeout, self.release, sid)
        await self._subs.settle(self._timeout, set(channels))
        result = []
        if offset is None or is_stream_id(offset):
            try:
                result = await self._script(
                    keys=[self.keys.session(pid), self.keys.stream], args=[offset or ""]
                )
            except _FAILURES as exc:
                _log.warning("cannot recover session %s: %s", pid, exc)
        # else: not a stream id, so not an offset we gave out: no recovery.
        if len(result) < 3:
            self.release(sid)
            return None
        start = result[1].decode()
        marks = room_marks(result[2], sid, start, self._logs)
        missed: list[list[Any]] = []
        last = stream_id(start)
        for entry_id, body in zip(result[3::2], result[4::2], strict=True):
            last = stream_id(entry_id.decode())
            data = replayed(body, namespace, sid, marks, last, self._logs)
            if data is not None:
                missed.append([*data, entry_id.decode()])
        # Pub/Sub and this script's reply come on two connections, read in no
        # set order: the copy of an event stored just before the script ran
        # may have been read already (it is in the buffer), or may come later,
        # while the socket is held or once it is live: fence it off.
        for held_offset, packet, _ in hold.buffer:
            if held_offset is None or stream_id(held_offset) > last:
                missed.append(list(packet.data))
        hold.buffer.clear()
        if self.last_seen is None or stream_id(self.last_seen) < last:
            self.fences[sid] = last
        session = SavedSession(sid, pid, namespace, list(saved["rooms"]), saved["data"], start)
        return session, missed

    def divert(
        self,
        nsp: str,
        packet: socketio.Packet,
        opts: BroadcastOptions,
        targets: list[str],
        offset: str | None,
        fenced: set[str],
    ) -> list[str]:
        """Take held sockets out of ``targets``; buffer the event for those it
        concerns, unless they had it from the stream (``fenced``)."""
        holds = self.holds
        for sid, hold in holds.items():
            if (
                hold.namespace == nsp
                and sid not in fenced
                and opts.reaches(sid, hold.rooms | self._rooms_of(nsp, sid))
            ):
                hold.buffer.append((offset, packet, opts))
        return [sid for sid in targets if sid not in holds]

    def fenced(self, offset: str) -> set[str]:
        """The recovered sockets that got the event at ``offset`` from the stream."""
        here = stream_id(offset)
        fenced = {sid for sid, up_to in self.fences.items() if here <= up_to}
        if len(fenced) < len(self.fences):
            # Redis hands a subscriber messages in the order they were
            # published, which is the stream order: past a socket's last
            # entry, no copy of an earlier one can come any more.
            self.fences = {sid: self.fences[sid] for sid in fenced}
        return fenced

    def release(self, sid: str) -> None:
        hold = self.holds.pop(sid, None)
        if hold is None:
            return
        if hold.release is not None:
            hold.release.cancel()
        for channel in hold.channels:
            self._subs.unwant(channel)
        for _, packet, opts in hold.buffer:
            self._deliver(hold.namespace, packet, [sid], opts)
