"""What the realtime hostile-client tests share: a server shaped like the
README's chat, a well-behaved *bystander* client that must lose nothing, and
the process's memory.

Each attack test starts :func:`chat_server` (recovery on), opens a
:class:`Bystander` (a WebSocket Socket.IO client emitting ``echo`` with an ack
every 100 ms), runs one attack, then checks the attacker got its documented
outcome, :func:`rss_bytes` grew less than the stated bound, and
``bystander.check()`` (every ack came back, none slower than the bound).

Import with ``from realtime.hostile_helpers import ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from helpers import timeout
from realtime.sio_helpers import EioSocket, sio_connect
from tether import realtime

__all__ = ["Bystander", "MemoryWatch", "bystander", "chat_server", "measured", "rss_bytes"]

KiB = 1024
MiB = 1024 * KiB


def chat_server(**options: Any) -> realtime.Server:
    """The README's chat (``join``, ``say``; recovery on) plus an ``echo``
    event that acknowledges its arguments, for the bystander."""
    options.setdefault("connection_state_recovery", True)
    server = realtime.Server(**options)

    @server.on("join")
    async def join(socket: realtime.Socket, room: str) -> str:
        for old in socket.rooms - {socket.sid}:
            await socket.leave(old)
        await socket.join(room)
        await socket.to(room).emit("notice", f"{socket.sid} joined {room}")
        return room

    @server.on("say")
    async def say(socket: realtime.Socket, text: str) -> None:
        for room in socket.rooms - {socket.sid}:
            await server.to(room).emit("said", socket.sid, text[:500])

    @server.on("echo")
    def echo(socket: realtime.Socket, *args: Any) -> tuple[Any, ...]:
        return args

    return server


def rss_bytes() -> int:
    """This process's resident memory now (not the high-water mark)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class MemoryWatch:
    """Resident memory growth since it was made (``growth()``, ``peak``),
    sampled every 10 ms while running as a task."""

    def __init__(self) -> None:
        self.start = rss_bytes()
        self.peak = self.start
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes())
            await asyncio.sleep(0.01)

    def __enter__(self) -> MemoryWatch:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.peak = max(self.peak, rss_bytes())

    def growth(self) -> int:
        """The largest growth seen, in bytes."""
        return max(self.peak, rss_bytes()) - self.start


class Bystander:
    """A Socket.IO client over WebSocket that emits ``echo`` with an ack every
    ``interval`` seconds and times each reply."""

    def __init__(self, ws: EioSocket, interval: float = 0.1) -> None:
        self.ws = ws
        self.interval = interval
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._ids = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def _send_loop(self) -> None:
        while True:
            self._ids += 1
            self.sent[self._ids] = time.monotonic()
            await self.ws.send(f'42{self._ids}["echo",{self._ids}]')
            await asyncio.sleep(self.interval)  # the client's pace, not synchronisation

    async def _receive_loop(self) -> None:
        while True:
            message = await self.ws.connection.recv()
            if message == "2":
                await self.ws.send("3")
                continue
            if isinstance(message, str) and message.startswith("43"):
                ack_id = int(message[2 : message.index("[")])
                started = self.sent.pop(ack_id, None)
                if started is None:
                    self.errors.append(f"unexpected ack {message!r}")
                elif json.loads(message[message.index("[") :]) != [ack_id]:
                    self.errors.append(f"wrong ack {message!r}")
                else:
                    self.latencies.append(time.monotonic() - started)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send_loop()), loop.create_task(self._receive_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.ws.close()

    async def check(self, max_latency: float = 0.5) -> None:
        """Every ack came back (waiting up to ``max_latency`` for the last
        ones) and none took longer than ``max_latency`` seconds (scaled)."""
        bound = timeout(max_latency)
        self._tasks[0].cancel()  # stop sending; wait for what is in flight
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks[0]
        deadline = time.monotonic() + bound
        while self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks[1:]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"bystander failed: {task.exception()!r}")
        assert not self.errors, self.errors
        assert self.latencies, "the bystander got no ack at all"
        assert not self.sent, f"{len(self.sent)} acks never came back"
        worst = max(self.latencies)
        assert worst <= bound, f"bystander stalled {worst:.3f} s (bound {bound:.3f} s)"


@contextlib.asynccontextmanager
async def bystander(port: int, interval: float = 0.1) -> AsyncIterator[Bystander]:
    """A running :class:`Bystander` connected to ``/`` on ``port``."""
    ws, _ = await sio_connect(port)
    watcher = Bystander(ws, interval)
    watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()


def measured(memory: MemoryWatch, watcher: Bystander, extra: str = "") -> None:
    """Print what docs/security.md quotes (``pytest -s`` shows it)."""
    worst = max(watcher.latencies, default=float("nan"))
    print(
        f"\n  growth {memory.growth() / MiB:.1f} MiB, bystander worst {worst * 1000:.0f} ms {extra}"
    )
