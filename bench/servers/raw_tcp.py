"""Raw TCP echo on asyncio.Protocol, WebSocket-unaware: the ceiling for a Python server.

``python raw_tcp.py PORT [--uvloop]``; the loadgen drives it with ``--raw``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import _common


class Echo(asyncio.Protocol):
    # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    async with server:
        _common.ready()
        await server.serve_forever()


if __name__ == "__main__":
    args = _common.parse_args(__doc__ or "")
    _common.run(lambda: main(args.port), args.uvloop)
