"""A worker's link to its hub: connect, read, and reconnect with a bounded
backoff when the hub goes away, without ever blocking the worker.

While the link is down, :meth:`Link.send` returns False at once: the adapter
keeps working locally and nothing queues up for later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from ....exceptions import PacketError
from .messages import Message
from .peer import MAX_QUEUED, Peer, PeerGone
from .wire import MAX_FRAME

__all__ = ["Link"]

_log = logging.getLogger("tether.realtime.adapters.cluster")


class Link:
    """One worker's connection to the hub at ``path``.

    ``on_up()`` runs once a connection is made (the adapter says hello and
    sends its state again), ``on_message(message)`` for each message, in
    order, ``on_down()`` when it is lost.
    """

    def __init__(
        self,
        path: str,
        *,
        on_up: Callable[[], None],
        on_message: Callable[[Message], None],
        on_down: Callable[[], None],
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        max_frame: int = MAX_FRAME,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.path = path
        self._on_up = on_up
        self._on_message = on_message
        self._on_down = on_down
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_frame = max_frame
        self.max_queued = max_queued
        self.peer: Peer | None = None
        self.connects = 0  # successful connections, the first included
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._closing = False

    @property
    def up(self) -> bool:
        return self.peer is not None and not self.peer.closed

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_up(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) for the link to be up."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout)
        return self.up

    def send(self, message: Message) -> bool:
        """Queue ``message`` for the hub; False if the link is down (or the
        message was not sent, logged by :class:`~.peer.Peer`)."""
        peer = self.peer
        return peer is not None and peer.send(message)

    async def close(self, timeout: float) -> None:
        """Send what is queued (within ``timeout``), then stop for good."""
        self._closing = True
        task, self._task = self._task, None
        peer = self.peer
        if peer is not None:
            await peer.close(timeout)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=timeout)

    async def _run(self) -> None:
        failures = 0  # connection attempts failed in a row
        drops = 0  # links dropped soon after they were made, in a row
        while not self._closing:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                if failures == 0:
                    _log.warning("cannot reach the cluster hub at %s: %s", self.path, exc)
                failures += 1
                await asyncio.sleep(self._delay(failures))
                continue
            if failures:
                _log.warning("cluster hub at %s reached again", self.path)
            failures = 0
            loop = asyncio.get_running_loop()
            since = loop.time()
            peer = Peer(
                reader,
                writer,
                name="the cluster hub",
                max_frame=self.max_frame,
                max_queued=self.max_queued,
            )
            await self._serve(peer)
            # A link that the hub drops at once (it refuses what we send)
            # backs off like a failed connection, not in a tight loop.
            drops = drops + 1 if loop.time() - since < self.backoff_cap else 0
            failures = 1
            await asyncio.sleep(self._delay(1 + drops))

    def _delay(self, failures: int) -> float:
        # Exponential, capped, with jitter: workers do not all knock at once.
        delay: float = min(self.backoff_cap, self.backoff_base * 2 ** min(failures - 1, 20))
        return delay * random.uniform(0.5, 1.0)

    async def _serve(self, peer: Peer) -> None:
        self.peer = peer
        self.connects += 1
        try:
            self._on_up()
            self._up.set()
            while True:
                self._on_message(await peer.receive())
        except PeerGone:
            if not self._closing:
                _log.warning("lost the cluster hub; local delivery goes on, reconnecting")
        except PacketError as exc:
            _log.warning("bad message from the cluster hub (%s); reconnecting", exc)
        finally:
            peer.abort()
            self.peer = None
            self._up.clear()
            self._on_down()
