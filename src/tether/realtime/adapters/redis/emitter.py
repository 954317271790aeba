"""Emitting to a cluster's sockets from a process that is not a server."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from ...protocol import socketio
from ...protocol.checks import check_event
from ..base import BroadcastOptions
from .messages import (
    Broadcast,
    DisconnectRequest,
    Message,
    RoomsRequest,
    ServerEvent,
    opts_to_wire,
)
from .publisher import Publisher, connect

__all__ = ["Emitter"]


_EVERYONE = BroadcastOptions()


def _names(rooms: str | Iterable[str]) -> frozenset[str]:
    return frozenset((rooms,) if isinstance(rooms, str) else rooms)


class Emitter:
    """Send events to the sockets of servers using a :class:`RedisAdapter`
    with the same Redis and ``prefix``, from any Python process::

        async with Emitter("redis://localhost:6379/0") as emitter:
            await emitter.to("room1").except_("muted").emit("news", {"id": 1})
            await emitter.of("/admin").emit("stats", 42)
            await emitter.in_("room1").sockets_join("room2")
            await emitter.server_side_emit("reload")

    Events are kept for connection state recovery when the servers keep them
    (they record their recovery window in Redis). Nothing waits for replies:
    an emitter has no sockets and no acks.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "tether",
        client: aioredis.Redis | None = None,
        namespace: str = "/",
        _publisher: Publisher | None = None,
        _opts: BroadcastOptions = _EVERYONE,
    ) -> None:
        self._publisher = _publisher or Publisher(
            client if client is not None else connect(url), prefix
        )
        self.namespace = namespace
        self._opts = _opts
        self._id = secrets.token_hex(8)
        self._count = 0
        self._window_ms: int | None = None

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the Redis connection (``async with`` does it on exit)."""
        await self._publisher.client.aclose()

    def _with(self, namespace: str | None = None, **changes: Any) -> Emitter:
        emitter = Emitter(
            namespace=namespace or self.namespace,
            _publisher=self._publisher,
            _opts=replace(self._opts, **changes),
        )
        emitter._window_ms = self._window_ms
        return emitter

    # -- selections ---------------------------------------------------------------------

    def of(self, namespace: str) -> Emitter:
        """The same emitter for another namespace."""
        if not namespace.startswith("/"):
            namespace = "/" + namespace
        return self._with(namespace)

    def to(self, rooms: str | Iterable[str]) -> Emitter:
        """Also target the members of ``rooms`` (a sid is a room too)."""
        return self._with(rooms=self._opts.rooms | _names(rooms))

    in_ = to

    def except_(self, rooms: str | Iterable[str]) -> Emitter:
        """Leave out the members of ``rooms``."""
        return self._with(except_rooms=self._opts.except_rooms | _names(rooms))

    @property
    def volatile(self) -> Emitter:
        """Drop the event for sockets whose transport cannot take it now."""
        return self._with(volatile=True)

    # -- sending --------------------------------------------------------------------------

    def _new_id(self) -> str:
        self._count += 1
        return f"emitter-{self._id}:{self._count}"

    async def _window(self) -> int:
        if self._window_ms is None:
            raw = await self._publisher.client.get(self._publisher.keys.recovery)
            self._window_ms = int(raw) if raw is not None else 0
        return self._window_ms

    async def _publish(self, message: Message, channels: list[str], window_ms: int = 0) -> int:
        published = await self._publisher.publish(message, channels, window_ms)
        return published.receivers

    async def emit(self, event: str, *args: Any) -> int:
        """Emit to the selected sockets; the number of nodes that got it."""
        check_event(event)
        packet = socketio.Packet.event(event, *args, namespace=self.namespace)
        opts = self._opts
        message = Broadcast(self._new_id(), self.namespace, packet.data, opts_to_wire(opts))
        window = 0 if opts.volatile else await self._window()
        channels = self._publisher.channels.for_rooms(self.namespace, opts.rooms)
        return await self._publish(message, channels, window)

    async def sockets_join(self, rooms: str | Iterable[str]) -> None:
        """Make the selected sockets join ``rooms``."""
        await self._rooms(rooms, join=True)

    async def sockets_leave(self, rooms: str | Iterable[str]) -> None:
        """Make the selected sockets leave ``rooms``."""
        await self._rooms(rooms, join=False)

    async def _rooms(self, rooms: str | Iterable[str], *, join: bool) -> None:
        wire = opts_to_wire(self._opts)
        message = RoomsRequest(
            self._new_id(), "", self.namespace, wire, sorted(_names(rooms)), join
        )
        await self._publish(message, self._channels())

    async def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets; ``close`` ends their whole connection."""
        wire = opts_to_wire(self._opts)
        message = DisconnectRequest(self._new_id(), "", self.namespace, wire, close)
        await self._publish(message, self._channels())

    async def server_side_emit(self, event: str, *args: Any) -> None:
        """Send a server-side event to every server (their ``on_server_event`` handlers)."""
        message = ServerEvent(f"emitter-{self._id}", event, list(args))
        await self._publish(message, [self._publisher.channels.server])

    def _channels(self) -> list[str]:
        return self._publisher.channels.for_rooms(self.namespace, self._opts.rooms)
