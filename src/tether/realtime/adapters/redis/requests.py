"""Requests between nodes, and their replies.

A request (a broadcast with acks, ``fetch_sockets``, ``sockets_join/leave``,
``disconnect_sockets``, ``save_data``) is published where a broadcast would go. ``PUBLISH``
tells the requester how many copies reached a node; each copy is answered with
a receipt (saying how many replies follow), then the replies, on the
requester's node channel. The requester is done when every receipt and every
reply announced is in, or at its timeout. Replies leave batched, through one
outbox per node.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ....metrics.core import Counter, Histogram
from ....ratelimit import LogLimiter
from ...protocol import socketio
from ..base import Adapter
from ..interface import replace_data
from .messages import (
    AckRequest,
    Channels,
    DataRequest,
    DisconnectRequest,
    FetchRequest,
    Message,
    Reply,
    Request,
    RoomsRequest,
    encode,
    opts_from_wire,
    socket_info_to_wire,
)

__all__ = ["Pending", "Requests", "requests_of"]

_log = logging.getLogger("tether.realtime.adapters.redis")

_FAILURES = (RedisError, OSError)

# What could not be published: (what, namespace, message, error, local).
Report = Callable[[str, "str | None", Message, BaseException, bool], None]


@dataclass(slots=True)
class Pending:
    """A request waiting for its replies."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    receipts_needed: int | None = None
    receipts: int = 0
    expect: int = 0
    items: list[Any] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)  # for the round-trip time

    def check(self) -> None:
        needed = self.receipts_needed
        if needed is not None and self.receipts >= needed and len(self.items) >= self.expect:
            self.done.set()


class Requests:
    """The requests of one node waiting for replies, and the replies it owes."""

    def __init__(
        self,
        adapter: Adapter,
        client: aioredis.Redis,
        channels: Channels,
        *,
        report: Report,
        spawn: Callable[[Any], None],
        touch: Callable[[str, str], None],
    ) -> None:
        self._adapter = adapter
        self._spawn = spawn
        self._touch = touch
        self._client = client
        self._channels = channels
        self._report = report
        #: Request id -> what has come back for it so far.
        self.pending: dict[str, Pending] = {}
        self._outbox: list[tuple[str, Message]] = []
        self._wake = asyncio.Event()
        self._logs = LogLimiter(_log)
        #: From a request's creation to its last reply (tether.metrics.realtime reads it).
        self.round_trips = Histogram(
            "tether_redis_request_round_trip_seconds",
            "Requests to other nodes (acks, fetch_sockets...): time to every reply",
        )
        self.timeouts = Counter(
            "tether_redis_request_timeouts_total", "Requests to other nodes that timed out"
        )
        _BY_ADAPTER[adapter] = self

    def wake(self) -> None:
        """Send the outbox now (after a reconnection)."""
        self._wake.set()

    async def wait(self, request: Request, pending: Pending, timeout: float) -> list[Any]:
        try:
            await asyncio.wait_for(pending.done.wait(), timeout)
            self.round_trips.observe(time.monotonic() - pending.started)
        except asyncio.TimeoutError:
            self.timeouts.value += 1
        finally:
            self.pending.pop(request.id, None)
        return pending.items

    def reply(self, request: Request, reply: Reply) -> None:
        """Queue ``reply`` to ``request`` for its node (batched in the outbox)."""
        if request.reply_to:  # emitters do not wait for replies
            self._outbox.append((self._channels.node(request.reply_to), reply))
            self._wake.set()

    def on_reply(self, reply: Reply, offset: str | None) -> None:
        """A reply (or receipt) for one of this node's requests."""
        pending = self.pending.get(reply.id)
        if pending is None:
            return  # too late
        if reply.receipt:
            pending.receipts += 1
            pending.expect += reply.expect
        pending.items += reply.items
        pending.check()

    # -- answering the requests of other nodes --------------------------------------

    def on_ack_request(self, request: AckRequest, targets: list[str]) -> None:
        """Send a broadcast with ack to ``targets`` here; receipt, then each reply."""
        sockets = self._adapter.sockets
        assert sockets is not None
        ack_id = sockets.next_ack_id(request.nsp)
        if ack_id is None or not targets:
            self.reply(request, Reply(request.id, True))
            return
        packet = socketio.Packet.event(*request.data, namespace=request.nsp, id=ack_id)
        opts = opts_from_wire(request.opts)
        waiters = sockets.deliver_with_ack(request.nsp, packet, targets, opts)
        self.reply(request, Reply(request.id, True, expect=len(waiters)))

        def answered(waiter: asyncio.Future[Any]) -> None:
            if not waiter.cancelled() and waiter.exception() is None:
                self.reply(request, Reply(request.id, False, items=[waiter.result()]))

        for waiter in waiters:
            waiter.add_done_callback(answered)
        loop = asyncio.get_running_loop()
        loop.call_later(request.timeout, lambda: [w.cancel() for w in waiters if not w.done()])

    def on_fetch(self, request: FetchRequest, targets: list[str]) -> None:
        """Answer with a snapshot of ``targets``."""
        assert self._adapter.sockets is not None
        infos = self._adapter.sockets.socket_infos(request.nsp, targets)
        self.reply(request, Reply(request.id, True, items=[socket_info_to_wire(i) for i in infos]))

    def on_rooms(self, request: RoomsRequest, targets: list[str]) -> None:
        """Make ``targets`` join or leave rooms; answer once it is effective."""
        sockets = self._adapter.sockets
        assert sockets is not None
        for sid in targets:
            if request.join:
                try:
                    sockets.join(request.nsp, sid, request.rooms)
                except ValueError as exc:  # a room named after a sid: refused
                    self._logs.log(logging.WARNING, "join", "sockets_join refused: %s", exc)
            else:
                sockets.leave(request.nsp, sid, request.rooms)

        async def settled() -> None:
            # Answer once the change is effective: subscriptions (join) and
            # presence written (join and leave).
            if targets:
                await self._adapter.flush()
            self.reply(request, Reply(request.id, True))

        self._spawn(settled())

    def on_disconnect(self, request: DisconnectRequest, targets: list[str]) -> None:
        """Disconnect ``targets``."""
        sockets = self._adapter.sockets
        assert sockets is not None
        for sid in targets:
            sockets.disconnect(request.nsp, sid, request.close)
        self.reply(request, Reply(request.id, True))

    def on_data(self, request: DataRequest, targets: list[str]) -> None:
        """Replace the data of ``targets`` (saved with the session); answer
        with the sids it replaced."""
        sockets = self._adapter.sockets
        assert sockets is not None
        saved = [sid for sid in targets if replace_data(sockets, request.nsp, sid, request.data)]
        for sid in saved:
            self._touch(request.nsp, sid)
        self.reply(request, Reply(request.id, True, items=saved))

    # -- the outbox: replies, batched -------------------------------------------------

    async def run(self) -> None:
        """Send the outbox whenever replies are queued (the node's sender task)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._outbox:
                continue
            try:
                await self.send_all()
            except _FAILURES:
                continue  # reported; the outbox was dropped (answers are time-bound)

    async def send_all(self) -> None:
        """Publish every queued reply, in one pipeline."""
        batch, self._outbox = self._outbox, []
        if not batch:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, message in batch:
                    pipe.publish(channel, b"\n" + encode(message))
                await pipe.execute()
        except _FAILURES as exc:
            for _, message in batch:
                self._report("reply", None, message, exc, False)
            raise
        except (TypeError, ValueError):
            _log.exception("could not encode a reply (socket data must be JSON-able)")


_BY_ADAPTER: weakref.WeakKeyDictionary[Adapter, Requests] = weakref.WeakKeyDictionary()


def requests_of(adapter: Adapter) -> Requests | None:
    """The :class:`Requests` of a Redis ``adapter`` (None for another adapter),
    for its metrics."""
    return _BY_ADAPTER.get(adapter)
