"""A TCP proxy that tests control, to inject network faults between a client
and a server on loopback.

::

    proxy = await FaultProxy.start(server.port)
    ... connect to proxy.port ...
    proxy.reset()            # RST both sides of every current connection
    proxy.drop()             # close (FIN) both sides
    proxy.half_close()       # EOF to the client only; the other direction stays open
    proxy.stall()            # stop forwarding (bytes are held), resume() to go on
    proxy.reset_mid_frame()  # forward half of the server's next chunk, then RST
    proxy.refusing = True    # new connections are closed at once (a server that is down)
    proxy.target = other_port  # later connections go elsewhere

Faults apply to the connections open at the time of the call; ``accepted``
counts (and ``accept_times`` dates) every connection attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ["FaultProxy"]


class _Pair:
    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client = client
        self.server = server
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.cut_next = False
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for _, writer in (self.client, self.server):
            writer.transport.abort()

    def close(self) -> None:
        for _, writer in (self.client, self.server):
            writer.close()


class FaultProxy:
    def __init__(self, target: int) -> None:
        self.target = target
        self.refusing = False
        self.accepted = 0
        self.accept_times: list[float] = []
        self.pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None

    @classmethod
    async def start(cls, target: int) -> FaultProxy:
        proxy = cls(target)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        return proxy

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self.pairs):
            pair.abort()
            for task in pair.tasks:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    # -- faults ---------------------------------------------------------------------

    def reset(self) -> None:
        for pair in list(self.pairs):
            pair.abort()

    def drop(self) -> None:
        for pair in list(self.pairs):
            pair.close()

    def half_close(self) -> None:
        for pair in list(self.pairs):
            _, writer = pair.client
            if writer.can_write_eof():
                writer.write_eof()

    def stall(self) -> None:
        for pair in self.pairs:
            pair.flowing.clear()

    def resume(self) -> None:
        for pair in self.pairs:
            pair.flowing.set()

    def reset_mid_frame(self) -> None:
        for pair in self.pairs:
            pair.cut_next = True

    # -- forwarding -------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.accept_times.append(time.monotonic())
        if self.refusing:
            writer.transport.abort()
            return
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = _Pair((reader, writer), upstream)
        self.pairs.add(pair)
        pair.tasks = [
            asyncio.ensure_future(self._pump(pair, reader, upstream[1], downstream=False)),
            asyncio.ensure_future(self._pump(pair, upstream[0], writer, downstream=True)),
        ]
        await asyncio.gather(*pair.tasks, return_exceptions=True)
        self.pairs.discard(pair)
        pair.abort()

    async def _pump(
        self,
        pair: _Pair,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        downstream: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            while data := await reader.read(65536):
                await pair.flowing.wait()
                if downstream and pair.cut_next and len(data) >= 2:
                    writer.write(data[: len(data) // 2])
                    await writer.drain()
                    pair.abort()
                    return
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
