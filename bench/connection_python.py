"""The Python a tether server spends on one connection, without the kernel.

    .venv/bin/python bench/connection_python.py [--count N] [--coroutine]

Drives a server's connection protocol by hand, as uvloop would for bench/.build/loadgen's
``connect`` workload: the protocol made, ``connection_made``, a read of
the handshake request, a read of the client's close frame, ``connection_lost``.
The transport is a stand-in that counts what is written and makes no system
call, so what is timed is tether's Python (and its C steps) alone, steady to
a few per cent on a noisy machine where the connect row of bench/run.py swings
by a fifth. The handler is a ``MessageHandler`` (a coroutine handler with
``--coroutine``; its task runs on the loop between the two reads). Prints one
JSON line: microseconds per connection, the best of 5 rounds. A diagnostic
for before/after comparisons (run it with ``PYTHONPATH`` at another ``src/``),
not a benchmark: the event loop's own cost per connection is not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import time
from typing import Any

import tether

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
# The client's close frame: 1000, masked (RFC 6455 §5.5.1).
CLOSE = bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2])


class Transport(asyncio.Transport):
    """What a server connection calls on its transport, without a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: Any) -> None:
        self.written += len(data)

    def writelines(self, list_of_data: Any) -> None:
        self.written += sum(map(len, list_of_data))

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class Echo(tether.MessageHandler):
    def on_message(self, connection: tether.Connection, message: str | bytes) -> None:
        connection.send_nowait(message)


async def echo(connection: tether.Connection) -> None:
    async for message in connection:
        await connection.send(message)


def feed(protocol: Any, data: bytes) -> None:
    view = protocol.get_buffer(-1)
    view[: len(data)] = data
    protocol.buffer_updated(len(data))


async def connections(factory: Any, count: int, coroutine: bool) -> None:
    for _ in range(count):
        protocol = factory()
        transport = Transport()
        protocol.connection_made(transport)
        feed(protocol, REQUEST)
        if coroutine:
            await asyncio.sleep(0)  # the handler's task starts
        feed(protocol, CLOSE)
        if not transport.closing:
            raise RuntimeError("the server did not close the connection")
        protocol.connection_lost(None)
        if coroutine:
            await asyncio.sleep(0)  # and ends


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="connections per round")
    parser.add_argument("--coroutine", action="store_true", help="a coroutine handler")
    args = parser.parse_args()
    server = tether.Server(echo if args.coroutine else Echo(), compression=None)
    # The factory the server hands its listening socket (not public: this
    # diagnostic plays the event loop's part).
    made = server._connection_factory
    # An older src/ (before the listener passed its loop) has the factory itself.
    factory = made(asyncio.get_running_loop()) if inspect.signature(made).parameters else made
    await connections(factory, max(args.count // 10, 1), args.coroutine)  # warm up
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        await connections(factory, args.count, args.coroutine)
        best = min(best, (time.perf_counter() - start) / args.count)
    handler = "coroutine" if args.coroutine else "MessageHandler"
    print(json.dumps({"handler": handler, "count": args.count, "us_per_connection": best * 1e6}))


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
