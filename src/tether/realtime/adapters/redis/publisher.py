"""Publishing through Redis, shared by :class:`RedisAdapter` and :class:`Emitter`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import scripts
from .messages import Channels, Message, encode

__all__ = ["Keys", "Publisher", "connect"]


class Keys:
    """Redis key names under one prefix (``:`` separated; channels use ``#``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def stream(self) -> str:
        return f"{self.prefix}:stream"

    @property
    def recovery(self) -> str:
        """The recovery window in ms, written by the servers for emitters."""
        return f"{self.prefix}:recovery"

    @property
    def nodes(self) -> str:
        """A sorted set: node id -> the time (Redis clock, ms) it is alive until."""
        return f"{self.prefix}:nodes"

    def session(self, pid: str) -> str:
        return f"{self.prefix}:session:{pid}"

    def sid(self, nsp: str, sid: str) -> str:
        """Set while a socket's session is saved: its sid is taken (as a room name too)."""
        return f"{self.prefix}:sid:{nsp}:{sid}"

    def node_index(self, node: str) -> str:
        return f"{self.prefix}:node:{node}"

    # Presence hashes; the part after the prefix is what the node index stores.
    @staticmethod
    def room_suffix(nsp: str, room: str) -> str:
        return f":room:{nsp}:{room}"

    @staticmethod
    def user_suffix(user: str) -> str:
        return f":user:{user}"


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client that fails fast: the adapter decides what to retry, and when.

    redis-py retries failed commands with backoff by default; while Redis is
    down that would hold every emit for seconds instead of falling back to
    local delivery at once. One immediate retry remains: after Redis
    restarts, the first use of each pooled connection finds it closed.
    """
    options.setdefault("retry", Retry(NoBackoff(), 1))
    options.setdefault("socket_connect_timeout", 5.0)
    options.setdefault("socket_timeout", 10.0)
    client: aioredis.Redis = aioredis.Redis.from_url(url, **options)
    return client


@dataclass(frozen=True, slots=True)
class Published:
    offset: str | None  # the stream id, when the message was stored
    receivers: int  # how many subscriptions got a copy


# What a stream entry costs Redis beyond its body (id, field name, listpack
# bookkeeping), roughly: counted so that tiny events do not make MAXLEN huge.
_ENTRY_OVERHEAD = 32


class Publisher:
    """Runs the publish script: store (optionally) and publish in one step."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.channels = Channels(prefix)
        self._publish = client.register_script(scripts.PUBLISH)
        # The average size of the entries stored, for trimming by bytes.
        self._average = 0.0

    def _max_entries(self, size: int, max_bytes: int) -> int:
        """How many entries of the (moving) average size fit ``max_bytes``."""
        average = self._average = (self._average * 63 + size) / 64 if self._average else size
        return max(1, int(max_bytes // average))

    async def publish(
        self, message: Message, channels: list[str], window_ms: int = 0, max_bytes: int = 0
    ) -> Published:
        """Publish ``message`` on ``channels``; keep it in the stream for
        ``window_ms`` when positive (for connection state recovery), the
        stream trimmed to about ``max_bytes`` when positive."""
        body = encode(message)
        maxlen = 0
        if window_ms and max_bytes:
            maxlen = self._max_entries(len(body) + _ENTRY_OVERHEAD, max_bytes)
        head, receivers = await self._publish(
            keys=[self.keys.stream], args=[body, str(window_ms), str(maxlen), *channels]
        )
        offset = head.decode() if isinstance(head, bytes) else str(head)
        return Published(offset or None, int(receivers))
