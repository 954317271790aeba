"""The handlers both ends of tests/test_handoff.py serve: the same answers,
but for the server's NAME in an ``X-Served-By`` header and WebSocket replies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import tether
from tether.protocol.http import Headers, Request, Response

Handler = Callable[[tether.Connection], Awaitable[None]]
HTTPHandler = Callable[[tether.Connection, Request, bytes], Awaitable[Response]]


def make_handlers(name: str) -> tuple[Handler, HTTPHandler]:
    async def echo(connection: tether.Connection) -> None:
        async for message in connection:
            await connection.send(f"{name}:{message!s}")

    async def http(connection: tether.Connection, request: Request, body: bytes) -> Response:
        headers = Headers([("X-Served-By", name), ("Content-Type", "text/plain")])
        answer = f"{request.method} {request.path} {len(body)} ".encode() + body
        return Response(200, "OK", headers, answer)

    return echo, http
