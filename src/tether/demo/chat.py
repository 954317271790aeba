"""The chat demo: rooms, presence, typing, history and delivery acks on the realtime layer.

The browser runs the official ``socket.io-client``. What it relies on:

* **Who and where** travel in the CONNECT packet's ``auth`` (``nick``,
  ``room``), not in a later event: after a reconnection the client flushes
  the messages it buffered right after CONNECT, and the server holds them
  until the ``connect`` handler has put the socket in its room.
* **Delivery**: every message carries a client-made ``id`` and is
  acknowledged; the client retries unacknowledged messages (``retries``), so
  a message in flight when the server dies is sent again, and the server
  drops ids it has seen. Each message therefore reaches the room once, even
  across a server restart.
* **A short network loss** is covered by connection state recovery: the
  socket comes back with its sid, room and the events it missed. After a
  restart of this process (in-memory state gone) the client joins again and
  merges the room's history by message id.

Limits are :class:`ChatLimits`, checked on the server; the page shows the
reason when a message is refused.
"""

from __future__ import annotations

import asyncio
import collections
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .. import realtime
from ..realtime import ConnectionRefused, Socket

__all__ = ["NAMESPACE", "ROOMS", "Chat", "ChatLimits", "RateLimiter"]

#: The chat's Socket.IO namespace.
NAMESPACE = "/chat"

#: The rooms a user can be in (one at a time).
ROOMS = ("general", "engineering", "random", "music")

# Disconnect reasons after which the same socket may come back through
# connection state recovery: its "left" notice waits for a grace period.
_MAY_COME_BACK = frozenset({"transport error", "transport close", "ping timeout"})


@dataclass(frozen=True, slots=True)
class ChatLimits:
    """Every bound of the chat, with its default."""

    max_text: int = 500  # characters per message
    max_nick: int = 24  # characters per nickname
    history: int = 50  # messages kept per room for late joiners
    burst: int = 5  # messages a user may send at once ...
    per_second: float = 1.0  # ... refilled at this rate
    max_id: int = 64  # length of a client-made message id
    seen_ids: int = 5_000  # message ids remembered to drop retries
    leave_grace: float = 5.0  # seconds a dropped socket has to come back quietly


class RateLimiter:
    """A token bucket: ``burst`` events at once, refilled at ``per_second``."""

    def __init__(self, burst: int, per_second: float) -> None:
        self.burst = burst
        self.per_second = per_second
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def allow(self, now: float | None = None) -> bool:
        """Take a token if one is left."""
        now = time.monotonic() if now is None else now
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def clean_text(value: object, limit: int) -> str | None:
    """``value`` as one line of printable text within ``limit`` characters, or None."""
    if not isinstance(value, str):
        return None
    text = "".join(c for c in value if unicodedata.category(c) not in ("Cc", "Cf") or c == "\n")
    text = text.strip()
    if not text or len(text) > limit:
        return None
    return text


@dataclass
class _Room:
    history: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)


class Chat:
    """The chat's event handlers, in the ``/chat`` namespace of a :class:`tether.realtime.Server`.

    Events from the client: ``message`` ({id, text}, acked with ``{ok, ts}``
    or ``{ok: false, error}``), ``typing`` (bool), ``switch`` (room, acked
    with the room's history). To the client: ``welcome`` (room, rooms,
    history), ``message``, ``notice``, ``presence`` (the room's nicknames),
    ``typing``.
    """

    def __init__(self, server: realtime.Server, limits: ChatLimits | None = None) -> None:
        self.server = server
        self.nsp = server.of(NAMESPACE)
        self.limits = limits or ChatLimits()
        self.rooms = {name: _Room(collections.deque(maxlen=self.limits.history)) for name in ROOMS}
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._rates: dict[str, RateLimiter] = {}
        self.nsp.use(self._admit)
        self.nsp.on("connect", self._connect)
        self.nsp.on("disconnect", self._disconnect)
        self.nsp.on("message", self._message)
        self.nsp.on("typing", self._typing)
        self.nsp.on("switch", self._switch)

    # -- joining and leaving ---------------------------------------------------------

    def _admit(self, socket: Socket, auth: dict[str, Any]) -> None:
        nick = clean_text(auth.get("nick"), self.limits.max_nick)
        if nick is None or "\n" in nick:
            raise ConnectionRefused(
                f"Pick a nickname of 1 to {self.limits.max_nick} characters",
                {"field": "nick"},
            )
        room = auth.get("room")
        socket.data["nick"] = nick
        socket.data["room"] = room if room in self.rooms else ROOMS[0]

    async def _connect(self, socket: Socket, auth: dict[str, Any]) -> None:
        room = socket.data["room"]
        if socket.recovered:
            # Same sid, room and data; the missed events are on their way.
            await self._presence(room)
            return
        await socket.join(room)
        if not auth.get("returning"):
            # A returning client (this process restarted) already announced itself.
            await self._notice(socket, room, "joined")
        await socket.emit("welcome", self._welcome(socket, room))
        await self._presence(room)

    def _welcome(self, socket: Socket, room: str) -> dict[str, Any]:
        return {
            "room": room,
            "rooms": list(ROOMS),
            "nick": socket.data["nick"],
            "history": list(self.rooms[room].history),
            "limits": {"maxText": self.limits.max_text, "burst": self.limits.burst},
        }

    async def _disconnect(self, socket: Socket, reason: str) -> None:
        self._rates.pop(socket.sid, None)
        room = socket.data.get("room")
        if room is None:
            return
        await self._presence(room)
        if reason in _MAY_COME_BACK and self.server.recovery is not None:
            # Announce the departure only if the socket does not recover soon.
            await asyncio.sleep(self.limits.leave_grace)
            if socket.sid in self.nsp.sockets:
                return
        await self._notice(socket, room, "left")

    async def _switch(self, socket: Socket, room: object) -> dict[str, Any]:
        if not isinstance(room, str) or room not in self.rooms:
            return {"ok": False, "error": "No such room"}
        old = socket.data["room"]
        if room != old:
            await socket.leave(old)
            await self._notice(socket, old, "left")
            await self._presence(old)
            socket.data["room"] = room
            await socket.join(room)
            await self._notice(socket, room, "joined")
            await self._presence(room)
        return {"ok": True, **self._welcome(socket, room)}

    async def _notice(self, socket: Socket, room: str, what: str) -> None:
        notice = {"room": room, "nick": socket.data["nick"], "what": what, "ts": _now_ms()}
        await self.nsp.to(room).except_(socket.sid).emit("notice", notice)

    async def _presence(self, room: str) -> None:
        """Tell the room who is in it (every node's sockets, with a distributed adapter)."""
        members = await self.nsp.in_(room).fetch_sockets()
        nicks = sorted({str(info.data.get("nick")) for info in members}, key=str.lower)
        await self.nsp.to(room).emit("presence", {"room": room, "members": nicks})

    # -- messages --------------------------------------------------------------------

    async def _message(self, socket: Socket, payload: object, *_: object) -> dict[str, Any]:
        limits = self.limits
        if not isinstance(payload, dict):
            return {"ok": False, "error": "Malformed message"}
        message_id = payload.get("id")
        if not isinstance(message_id, str) or not 0 < len(message_id) <= limits.max_id:
            return {"ok": False, "error": "Malformed message id"}
        if message_id in self._seen:
            return {"ok": True, "duplicate": True}  # a retry of a delivered message
        text = clean_text(payload.get("text"), limits.max_text)
        if text is None:
            return {"ok": False, "error": f"Messages are 1 to {limits.max_text} characters"}
        rate = self._rates.get(socket.sid)
        if rate is None:
            rate = self._rates[socket.sid] = RateLimiter(limits.burst, limits.per_second)
        if not rate.allow():
            return {"ok": False, "error": "Slow down: too many messages, wait a second"}
        self._remember(message_id)
        room = socket.data["room"]
        message = {
            "id": message_id,
            "room": room,
            "nick": socket.data["nick"],
            "text": text,
            "ts": _now_ms(),
        }
        self.rooms[room].history.append(message)
        await socket.to(room).emit("message", message)
        return {"ok": True, "ts": message["ts"]}

    def _remember(self, message_id: str) -> None:
        seen = self._seen
        seen[message_id] = None
        while len(seen) > self.limits.seen_ids:
            seen.popitem(last=False)

    async def _typing(self, socket: Socket, typing: object, *_: object) -> None:
        room = socket.data.get("room")
        if room is None:
            return
        # Volatile: a typing hint that cannot go out now is worthless later.
        state = {"room": room, "nick": socket.data["nick"], "typing": bool(typing)}
        await socket.to(room).volatile.emit("typing", state)


def _now_ms() -> int:
    return int(time.time() * 1000)
