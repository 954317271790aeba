"""Fixtures for the realtime server tests.

* ``start_sio(server=None, **options)``: serve a :class:`tether.realtime.Server`
  (made with ``options`` when not given) on 127.0.0.1 port 0; stopped at
  teardown. Returns a :class:`~realtime.sio_helpers.RealtimeServer`.
* ``start_engine(**options)``: a bare Engine.IO server (no Socket.IO) whose
  sessions echo every message, as the Engine.IO protocol test-suite expects;
  returns an :class:`EchoEngine` (its port, the engine, the closed sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import tether
from helpers import timeout
from realtime.sio_helpers import RealtimeServer, running
from tether import realtime
from tether.limits import RealtimeLimits
from tether.protocol.http import Request, Response
from tether.realtime.server.engine import EngineServer, Session
from tether.realtime.server.static import not_found

StartSio = Callable[..., Awaitable[RealtimeServer]]


@pytest.fixture
async def start_sio() -> AsyncIterator[StartSio]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(server: realtime.Server | None = None, **options: Any) -> RealtimeServer:
            if server is None:
                server = realtime.Server(**options)
            return await stack.enter_async_context(running(server))

        yield start


class EchoEngine:
    """An Engine.IO server at ``/engine.io/`` whose sessions echo messages."""

    def __init__(self, **options: Any) -> None:
        # RealtimeLimits fields (max_payload=...) as keyword options, as on realtime.Server.
        names = RealtimeLimits.describe()
        chosen = {name: options.pop(name) for name in list(options) if name in names}
        limits = RealtimeLimits().replace(**chosen)
        self.engine = EngineServer(on_session=self._on_session, limits=limits, **options)
        self.closes: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.http: tether.Server | None = None

    @property
    def port(self) -> int:
        assert self.http is not None
        return self.http.port

    def _on_session(self, session: Session) -> None:
        session.listener = self

    def on_message(self, session: Session, data: str | bytes) -> None:
        session.send(data)

    def on_close(self, session: Session, reason: str) -> None:
        self.closes.put_nowait((session.sid, reason))

    def _check(self, connection: tether.Connection, request: Request) -> Response | None:
        if not request.path.startswith("/engine.io/"):
            return not_found()
        return self.engine.check(request)[1]

    async def _websocket(self, connection: tether.Connection) -> None:
        assert connection.request is not None
        query, _ = self.engine.check(connection.request)
        await self.engine.handle_websocket(connection, query)

    async def _http(self, connection: tether.Connection, request: Request, body: bytes) -> Response:
        if not request.path.startswith("/engine.io/"):
            return not_found()
        return await self.engine.handle_http(connection, request, body)

    async def start(self) -> None:
        self.http = await tether.serve(
            self._websocket,
            "127.0.0.1",
            0,
            process_request=self._check,
            http_handler=self._http,
        )

    async def stop(self) -> None:
        self.engine.close_all()
        if self.http is not None:
            self.http.close()
            await self.http.wait_closed()

    async def closed(self, sid: str, wait: float = 2.0) -> str:
        """Wait until session ``sid`` closes; its reason."""
        while True:
            closed_sid, reason = await asyncio.wait_for(self.closes.get(), timeout(wait))
            if closed_sid == sid:
                return reason


StartEngine = Callable[..., Awaitable[EchoEngine]]


@pytest.fixture
async def start_engine() -> AsyncIterator[StartEngine]:
    engines: list[EchoEngine] = []

    async def start(**options: Any) -> EchoEngine:
        engine = EchoEngine(**options)
        await engine.start()
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        await engine.stop()
