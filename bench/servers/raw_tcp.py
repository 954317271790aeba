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


if __name__ == "__main__":
    _common.serve_protocol(Echo, __doc__ or "")
