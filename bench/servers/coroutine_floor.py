"""The coroutine floor: a WebSocket echo with a coroutine per connection and
as little Python as such a server can spend per message, for the limit of
the rows measured with tether's coroutine API.

``python coroutine_floor.py PORT [--uvloop]``. The handshake is the connect
floor's (connect_floor.py). Each read is split into frames by tether's C
``parse_frames`` (unmasked there, §5.3) and queued; the connection's task,
woken through one future per wait as any asyncio coroutine must be, writes
each payload back as a binary frame (§5.2). No checks, no limits, no close
handshake, text sent back as binary: not a server anyone should run, the
least an ``async for message in connection: await connection.send(message)``
server must do per message on asyncio.
"""

from __future__ import annotations

import asyncio
import collections
import struct
from typing import Any

import _common
from connect_floor import Floor

from tether.protocol.speedups import parse_frames

_LIMIT = 1 << 30


def _frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x82, n)) + payload
    if n < 0x10000:
        return struct.pack("!BBH", 0x82, 126, n) + payload
    return struct.pack("!BBQ", 0x82, 127, n) + payload


class CoroutineFloor(Floor):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.pending = b""
        self.messages: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.task = asyncio.get_running_loop().create_task(self.echo())

    def data_received(self, data: bytes) -> None:
        if not self.open:
            super().data_received(data)  # the handshake
            return
        buf = self.pending + data if self.pending else data
        frames, pos, *_ = parse_frames(buf, 0, len(buf), True, _LIMIT, _LIMIT)
        self.pending = buf[pos:]
        for _, payload in frames:
            self.messages.append(payload)
        waiter = self.waiter
        if frames and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.task.cancel()

    async def echo(self) -> None:
        loop = asyncio.get_running_loop()
        write: Any = self.transport.write
        messages = self.messages
        while True:
            while messages:
                write(_frame(messages.popleft()))
            self.waiter = loop.create_future()
            await self.waiter


if __name__ == "__main__":
    _common.serve_protocol(CoroutineFloor, __doc__ or "")
