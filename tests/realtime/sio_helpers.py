"""Hand-driven Engine.IO / Socket.IO peers for the realtime server tests.

The tests speak the wire protocol themselves, so that they check the exact
bytes the server sends: a raw HTTP/1.1 client on asyncio streams for
long-polling, and tether's WebSocket client (no Socket.IO client code) for
the WebSocket transport. Packets are written out as literal strings in the
tests; nothing here encodes or decodes Socket.IO.

Import with ``from realtime.sio_helpers import ...`` (``tests/`` is on
``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import tether
from helpers import timeout
from tether import realtime

__all__ = [
    "RECORD_SEP",
    "EioSocket",
    "HTTPResponse",
    "RealtimeServer",
    "eio_url",
    "eventually",
    "http_request",
    "open_polling",
    "open_websocket",
    "poll",
    "post",
    "running",
    "sio_connect",
]

#: The separator between packets of a long-polling payload (Engine.IO v4).
RECORD_SEP = "\x1e"


# -- raw HTTP ---------------------------------------------------------------------------


@dataclass
class HTTPResponse:
    status: int
    headers: dict[str, str]  # names lower-cased; the last value of a repeated header
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


async def _exchange(port: int, head: bytes, body: bytes, *, has_body: bool) -> HTTPResponse:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        size = int(headers.get("content-length", "0")) if has_body else 0
        content = await reader.readexactly(size)
        return HTTPResponse(status, headers, content)
    finally:
        writer.close()


async def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | str = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    wait: float = 2.0,
) -> HTTPResponse:
    """Send one request on a new TCP connection and read the answer
    (``Content-Length`` framed); fail after ``wait`` timeout units."""
    if isinstance(body, str):
        body = body.encode()
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Connection: close",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    exchange = _exchange(port, head, body, has_body=method != "HEAD")
    return await asyncio.wait_for(exchange, timeout(wait))


def eio_url(
    sid: str | None = None,
    transport: str = "polling",
    *,
    path: str = "/socket.io/",
    eio: str = "4",
    scheme: str = "",
    port: int = 0,
) -> str:
    """An Engine.IO request path (or a ``ws://`` URL when ``scheme`` is given)."""
    query = f"EIO={eio}&transport={transport}"
    if sid is not None:
        query += f"&sid={sid}"
    prefix = f"{scheme}://127.0.0.1:{port}" if scheme else ""
    return f"{prefix}{path}?{query}"


async def open_polling(port: int, *, path: str = "/socket.io/") -> tuple[str, dict[str, Any]]:
    """Open a long-polling session: its sid and the handshake's JSON."""
    response = await http_request(port, "GET", eio_url(path=path))
    assert response.status == 200, response
    assert response.text.startswith("0"), response.text
    handshake = json.loads(response.text[1:])
    return handshake["sid"], handshake


async def poll(port: int, sid: str, *, path: str = "/socket.io/", wait: float = 2.0) -> list[str]:
    """One long-polling GET that must succeed: the packets of its payload."""
    response = await http_request(port, "GET", eio_url(sid, path=path), wait=wait)
    assert response.status == 200, response
    return response.text.split(RECORD_SEP)


async def post(port: int, sid: str, *packets: str, path: str = "/socket.io/") -> HTTPResponse:
    """One long-polling POST of ``packets`` joined into a payload."""
    return await http_request(port, "POST", eio_url(sid, path=path), RECORD_SEP.join(packets))


async def eventually(predicate: Callable[[], bool], wait: float = 2.0) -> None:
    """Wait until ``predicate()`` holds: for server-side state with no event to
    await (checked on every loop iteration, bounded by ``wait`` units)."""

    async def check() -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(check(), timeout(wait))


# -- WebSocket ----------------------------------------------------------------------------


class EioSocket:
    """An Engine.IO WebSocket driven packet by packet."""

    def __init__(self, connection: tether.Connection) -> None:
        self.connection = connection

    async def send(self, *messages: str | bytes) -> None:
        for message in messages:
            await self.connection.send(message)

    async def recv(self, wait: float = 1.0) -> str | bytes:
        return await asyncio.wait_for(self.connection.recv(), timeout(wait))

    async def recv_text(self, wait: float = 1.0) -> str:
        message = await self.recv(wait)
        assert isinstance(message, str), message
        return message

    async def recv_many(self, count: int, wait: float = 1.0) -> list[str | bytes]:
        return [await self.recv(wait) for _ in range(count)]

    async def closed(self, wait: float = 2.0) -> list[str | bytes]:
        """Wait for the server to close the WebSocket; what it sent before."""
        seen: list[str | bytes] = []

        async def drain() -> None:
            with contextlib.suppress(tether.ConnectionClosed):
                while True:
                    seen.append(await self.connection.recv())

        await asyncio.wait_for(drain(), timeout(wait))
        return seen

    async def nothing(self, wait: float = 0.1) -> None:
        """Check that nothing arrives for ``wait`` units (for negative tests)."""
        with contextlib.suppress(asyncio.TimeoutError):
            message = await asyncio.wait_for(self.connection.recv(), timeout(wait))
            raise AssertionError(f"unexpected message {message!r}")

    async def close(self) -> None:
        await self.connection.close()


async def open_websocket(
    port: int,
    sid: str | None = None,
    *,
    path: str = "/socket.io/",
    query: str = "",
    **options: Any,
) -> EioSocket:
    """Open an Engine.IO WebSocket (an upgrade when ``sid`` is given); ``query``
    is appended to the URL's query string."""
    url = eio_url(sid, "websocket", path=path, scheme="ws", port=port)
    if query:
        url += "&" + query
    connection = await asyncio.wait_for(tether.connect(url, **options), timeout(2))
    return EioSocket(connection)


async def sio_connect(
    port: int, namespace: str = "/", auth: dict[str, Any] | None = None, *, query: str = ""
) -> tuple[EioSocket, str]:
    """A WebSocket session connected to ``namespace``: the socket and its Socket.IO sid."""
    ws = await open_websocket(port, query=query)
    assert (await ws.recv_text()).startswith("0{")
    prefix = "40" if namespace == "/" else f"40{namespace},"
    await ws.send(prefix + (json.dumps(auth) if auth is not None else ""))
    reply = await ws.recv_text()
    assert reply.startswith(prefix), reply
    return ws, json.loads(reply[len(prefix) :])["sid"]


# -- servers ------------------------------------------------------------------------------


@dataclass
class RealtimeServer:
    server: realtime.Server
    http: tether.Server

    @property
    def port(self) -> int:
        return self.http.port


@contextlib.asynccontextmanager
async def running(server: realtime.Server, **options: Any) -> AsyncIterator[RealtimeServer]:
    """Serve ``server`` on 127.0.0.1, port 0, for the duration of the block."""
    async with realtime.serve(server, "127.0.0.1", 0, **options) as http:
        yield RealtimeServer(server, http)
