"""The Pub/Sub side of a node: which channels it listens to, and staying connected.

A node subscribes to a room's channel while it has local members in that room
(a socket's sid is a room too), so that messages for one sid or one room only
reach the nodes concerned. :class:`Subscriptions` reference-counts the wanted
channels, sends ``SUBSCRIBE``/``UNSUBSCRIBE`` in batches, and tells when a
channel is *active* (Redis confirmed the subscription: from then on, every
message published on it reaches this node). When the connection drops it
reconnects with exponential backoff and jitter and subscribes again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = ["Subscriptions", "backoff"]

_log = logging.getLogger("tether.realtime.adapters.redis")


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: a random delay up to ``min(cap, base * 2**attempt)``."""
    high = min(cap, base * 2**attempt)
    return random.uniform(min(base / 2, high), high)


_Key = TypeVar("_Key")


async def wait_for_answer(
    waiters: list[tuple[_Key, asyncio.Future[bool]]], key: _Key, timeout: float
) -> bool:
    """Join ``waiters`` under ``key`` until someone answers the future; the
    answer, or False after ``timeout``. The waiter leaves the list either way."""
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    waiter = (key, future)
    waiters.append(waiter)
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except asyncio.TimeoutError:
        return False
    finally:
        with contextlib.suppress(ValueError):
            waiters.remove(waiter)


class Subscriptions:
    """Reference-counted Pub/Sub subscriptions over one connection that reconnects."""

    def __init__(
        self,
        client: aioredis.Redis,
        on_message: Callable[[bytes], None],
        *,
        on_state: Callable[[bool], None],
        backoff_base: float = 0.05,
        backoff_cap: float = 5.0,
    ) -> None:
        self._client = client
        self._on_message = on_message
        self._on_state = on_state
        self._base = backoff_base
        self._cap = backoff_cap
        self.wanted: collections.Counter[str] = collections.Counter()
        self._requested: set[str] = set()
        self.active: set[str] = set()
        self._changed = asyncio.Event()
        self._waiters: list[tuple[frozenset[str], asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self._closing = False  # close() was called: going down is not an outage
        # Until the first connection attempt ends, Redis is not known to be
        # down: settle waits (a node starting must not serve before it listens).
        self._tried = False

    # -- what the adapter wants ---------------------------------------------------

    def want(self, channel: str) -> None:
        self.wanted[channel] += 1
        if self.wanted[channel] == 1:
            self._changed.set()

    def unwant(self, channel: str) -> None:
        count = self.wanted[channel] - 1
        if count > 0:
            self.wanted[channel] = count
        else:
            del self.wanted[channel]
            self._changed.set()

    def pending(self, channels: set[str] | None = None) -> frozenset[str]:
        """Wanted channels (of ``channels``) not confirmed yet."""
        names = self.wanted.keys() if channels is None else channels
        return frozenset(c for c in names if c in self.wanted and c not in self.active)

    async def settle(self, timeout: float, channels: set[str] | None = None) -> bool:
        """Wait until the wanted channels (or ``channels``) are active; False
        on timeout or while disconnected (callers carry on regardless). Before
        the first connection attempt ends, it waits for that attempt."""
        pending = self.pending(channels)
        if not pending:
            return True
        if not self.connected and self._tried:
            return False
        return await wait_for_answer(self._waiters, pending, timeout)

    def _check_waiters(self) -> None:
        for channels, future in self._waiters:
            if not future.done() and all(
                c in self.active or c not in self.wanted for c in channels
            ):
                future.set_result(True)

    def _fail_waiters(self) -> None:
        """The connection is down: nobody waits for it to come back."""
        for _, future in self._waiters:
            if not future.done():
                future.set_result(False)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            pubsub = self._client.pubsub()
            try:
                await self._serve(pubsub)
            except (RedisError, OSError) as exc:
                if self.connected:
                    attempt = 0  # it was up: start the backoff again from the base
                    _log.warning("redis pub/sub connection lost: %s", exc)
                elif attempt == 0:
                    _log.warning("cannot subscribe to redis: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    # redis-py types aclose from 8.2 on; before, it is untyped.
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                self._requested.clear()
                self.active.clear()
                self._tried = True
                self._fail_waiters()
                if self.connected:
                    self.connected = False
                    if not self._closing:
                        self._on_state(False)
            delay = backoff(attempt, self._base, self._cap)
            attempt += 1
            await asyncio.sleep(delay)

    async def _serve(self, pubsub: aioredis.client.PubSub) -> None:
        self._changed.clear()
        wanted = sorted(self.wanted)  # never empty: a node always wants its own channel
        self._requested = set(wanted)
        await pubsub.subscribe(*wanted)  # connects, or raises
        reader = asyncio.get_running_loop().create_task(self._read(pubsub))
        try:
            while True:
                changed = asyncio.get_running_loop().create_task(self._changed.wait())
                done, _ = await asyncio.wait({reader, changed}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    changed.cancel()
                    reader.result()  # raises what ended it
                    return
                self._changed.clear()
                now = set(self.wanted)
                add = sorted(now - self._requested)
                drop = sorted(self._requested - now)
                if add:
                    self._requested.update(add)
                    await pubsub.subscribe(*add)
                if drop:
                    self._requested.difference_update(drop)
                    await pubsub.unsubscribe(*drop)
        finally:
            reader.cancel()
            # Not "await reader" under suppress(BaseException): that would also
            # swallow close()'s cancellation of this task if it came now, and
            # _run would subscribe again while close() waits for it forever.
            await asyncio.wait({reader})
            if not reader.cancelled():
                reader.exception()  # retrieved: _run logs what ended the reader

    async def _read(self, pubsub: aioredis.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                try:
                    self._on_message(message["data"])
                except Exception:
                    _log.exception("failed to handle a message from redis")
                continue
            channel = message["channel"]
            name = channel.decode() if isinstance(channel, bytes) else str(channel)
            if kind == "subscribe":
                self.active.add(name)
                if not self.connected:
                    self.connected = True
                    self._on_state(True)
            elif kind == "unsubscribe":
                self.active.discard(name)
            self._check_waiters()
