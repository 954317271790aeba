"""Presence across nodes: who is in a room, which users are online.

Each node writes its local sockets' room memberships and users to Redis
hashes (one per room, one per user: sid -> ``[node, user, namespace]``),
indexed under the node so that another node can remove them if it dies.
Reads keep only the entries of nodes that are alive (their heartbeat in the
``nodes`` sorted set is recent), so a killed node's sockets vanish from
presence at once and its entries are reaped (with ``leave``/``offline``
events) a heartbeat later.

Every change is decided atomically in Redis, so each ``join``, ``leave``,
``online`` and ``offline`` event happens on exactly one node: the one whose
socket changed (or the one that reaped a dead node). Handlers registered with
:meth:`Presence.on_change` run there; to tell clients, emit from the handler
(it reaches every node's sockets)::

    @adapter.presence.on_change
    async def announce(event):
        if event.kind in ("online", "offline"):
            await server.emit("presence", event.user, event.kind)
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from . import scripts
from .publisher import Keys

__all__ = ["Change", "Member", "Presence", "PresenceEvent"]

_log = logging.getLogger("tether.realtime.adapters.redis")

PresenceKind = Literal["join", "leave", "online", "offline"]


@dataclass(frozen=True, slots=True)
class Member:
    """A socket as presence sees it, on any node."""

    sid: str
    namespace: str
    user: str | None
    node: str


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A change of presence.

    ``join``/``leave``: socket ``sid`` joined or left ``room`` (``count``:
    members in the room now, across nodes). ``online``/``offline``: ``user``
    got its first connection or lost its last one (``count``: its
    connections now).
    """

    kind: PresenceKind
    sid: str
    namespace: str
    room: str | None = None
    user: str | None = None
    count: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """One write, and the event it causes if Redis says it changed something."""

    add: bool
    suffix: str
    sid: str
    value: str
    entry: str
    event: PresenceEvent


PresenceHandler = Callable[[PresenceEvent], Any]


class Presence:
    """Presence queries and change events; ``adapter.presence``."""

    def __init__(self, client: aioredis.Redis, prefix: str, node: str) -> None:
        self._client = client
        self._keys = Keys(prefix)
        self._prefix = prefix
        self._node = node
        self._members = client.register_script(scripts.MEMBERS)
        self._write = client.register_script(scripts.PRESENCE)
        self._reap = client.register_script(scripts.REAP)
        self._handlers: list[PresenceHandler] = []
        self._tasks: set[Any] = set()

    # -- queries ----------------------------------------------------------------------

    async def room(self, room: str, namespace: str = "/") -> list[Member]:
        """The sockets in ``room`` of ``namespace``, on every live node."""
        return await self._read(Keys.room_suffix(namespace, room))

    async def connections(self, user: str) -> list[Member]:
        """The sockets of ``user`` (every tab, every namespace, every node)."""
        return await self._read(Keys.user_suffix(user))

    async def is_online(self, user: str) -> bool:
        """Whether ``user`` has at least one connected socket anywhere."""
        return bool(await self.connections(user))

    async def online(self, users: Iterable[str]) -> set[str]:
        """Which of ``users`` are online."""
        names = list(dict.fromkeys(users))
        async with self._client.pipeline(transaction=False) as pipe:
            for user in names:
                await self._members(
                    keys=[self._prefix + Keys.user_suffix(user), self._keys.nodes], client=pipe
                )
            results = await pipe.execute()
        return {user for user, found in zip(names, results, strict=True) if found}

    async def _read(self, suffix: str) -> list[Member]:
        flat = await self._members(keys=[self._prefix + suffix, self._keys.nodes])
        members = []
        for sid, value in zip(flat[::2], flat[1::2], strict=True):
            node, user, namespace = json.loads(value)
            members.append(Member(sid.decode(), namespace, user, node))
        members.sort(key=lambda m: (m.namespace, m.sid))
        return members

    # -- events -------------------------------------------------------------------------

    def on_change(self, handler: PresenceHandler) -> PresenceHandler:
        """Call ``handler(event)`` (may be async) for every change this node
        decides; usable as a decorator."""
        self._handlers.append(handler)
        return handler

    def _fire(self, event: PresenceEvent, run: Callable[[Any], None]) -> None:
        for handler in self._handlers:
            try:
                result = handler(event)
            except Exception:
                _log.exception("presence handler failed on %r", event)
                continue
            if inspect.isawaitable(result):
                run(result)

    # -- writes (the adapter batches them) -------------------------------------------

    def change(
        self,
        add: bool,
        sid: str,
        namespace: str,
        *,
        room: str | None = None,
        user: str | None = None,
        member_user: str | None = None,
    ) -> Change:
        """A room membership (``room``) or a user connection (``user``) change."""
        if room is not None:
            suffix = Keys.room_suffix(namespace, room)
            kind: PresenceKind = "join" if add else "leave"
            event = PresenceEvent(kind, sid, namespace, room=room, user=member_user)
        else:
            assert user is not None
            suffix = Keys.user_suffix(user)
            event = PresenceEvent("online" if add else "offline", sid, namespace, user=user)
        value = json.dumps([self._node, member_user if room is not None else user, namespace])
        entry = json.dumps([suffix, sid, namespace, room, user if room is None else member_user])
        return Change(add, suffix, sid, value, entry, event)

    async def queue(self, pipe: Any, change: Change) -> None:
        await self._write(
            keys=[self._prefix + change.suffix, self._keys.node_index(self._node)],
            args=["add" if change.add else "remove", change.sid, change.value, change.entry],
            client=pipe,
        )

    def settle(self, change: Change, result: Any, run: Callable[[Any], None]) -> None:
        """Fire the event of ``change`` if Redis says it happened."""
        changed, count = int(result[0]), int(result[1])
        if not changed:
            return
        event = change.event
        if event.kind == "online" and count != 1:
            return  # another tab of a user already online
        if event.kind == "offline" and count != 0:
            return
        self._fire(_counted(event, count), run)

    async def reap(self, dead: str, run: Callable[[Any], None]) -> None:
        """Remove a dead node's entries (if this node wins the claim), with events."""
        flat = await self._reap(
            keys=[self._keys.nodes, self._keys.node_index(dead)], args=[dead, self._prefix]
        )
        for raw, count in zip(flat[::2], flat[1::2], strict=True):
            _, sid, namespace, room, user = json.loads(raw)
            if room is not None:
                event = PresenceEvent("leave", sid, namespace, room=room, user=user)
            elif int(count) == 0:
                event = PresenceEvent("offline", sid, namespace, user=user)
            else:
                continue
            self._fire(_counted(event, int(count)), run)


def _counted(event: PresenceEvent, count: int) -> PresenceEvent:
    return PresenceEvent(event.kind, event.sid, event.namespace, event.room, event.user, count)
