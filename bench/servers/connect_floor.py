"""The connect floor: a WebSocket handshake and closing handshake with as
little Python as a server can spend on them, for the connect row's limit.

``python connect_floor.py PORT [--uvloop]``. An asyncio.Protocol that waits
for the request's blank line, answers a 101 with the accept key (the one
computation RFC 6455 §4.2.2 requires), then answers the client's close frame
with its own and closes. No header checks, no limits, no connection object:
not a server anyone should run, the least any server must do per connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import _common

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY = b"\r\nsec-websocket-key:"
_CLOSE = b"\x88\x02\x03\xe8"  # 1000, unmasked (server to client)


class Floor(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buf = b""
        self.open = False

    def data_received(self, data: bytes) -> None:
        if self.open:
            # The client's close frame (the only frame the connect workload sends).
            self.transport.write(_CLOSE)
            self.transport.close()
            return
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return
        head = buf[:end]
        start = head.lower().find(_KEY) + len(_KEY)
        stop = head.find(b"\r\n", start)
        key = head[start : stop if stop >= 0 else len(head)].strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.open = True
        self.buf = b""


if __name__ == "__main__":
    _common.serve_protocol(Floor, __doc__ or "")
