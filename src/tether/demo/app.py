"""The three demos on one port: ``python -m tether demo``.

One :func:`tether.serve` answers everything, routing by path:

=====================  ==============================================
``/socket.io/``        the realtime server's Engine.IO endpoint (chat),
                       long-polling and WebSocket
``/ticker/ws``         the ticker's raw WebSocket endpoint
``/game/ws``           the game's raw WebSocket endpoint
``/vendor/...``        the official browser client of socket.io: the
                       copy the wheel ships (``tether/demo/vendor``),
                       or ``node_modules/socket.io-client/dist``
``/stats.json``        the index page's live figures (:mod:`tether.demo.stats`)
``/admin-ui/``         the official Socket.IO Admin UI, from
                       ``node_modules`` (:mod:`tether.demo.admin`),
                       watching the chat's realtime server
anything else          the pages in ``tether/demo/static``
=====================  ==============================================

The realtime server is plugged in the way
:class:`tether.realtime.server.serving.serve` does it: ``engine.check`` decides on
upgrades, ``engine.handle_websocket`` and ``engine.handle_http`` serve them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import _loops, realtime
from ..connection import Connection
from ..protocol.http import Headers, Request, Response
from ..realtime.adapters.base import Adapter
from ..realtime.admin import instrument
from ..realtime.server.static import StaticFiles, not_found
from ..server import Server as WebSocketServer
from ..server import serve
from .admin import ADMIN_UI, USERNAME, AdminPages, find_admin_ui, new_admin_password
from .chat import Chat
from .game import Game
from .stats import PATH as STATS_PATH
from .stats import DemoStats
from .ticker import Ticker

__all__ = ["CLIENT_BUNDLE", "STATIC", "VENDORED", "DemoApp", "find_client_dist", "main", "running"]

_log = logging.getLogger("tether.demo")

#: The demos' pages, scripts and styles (package data).
STATIC = Path(__file__).resolve().parent / "static"

#: socket.io-client's browser bundle and licence, copied from npm by setup.py
#: when the sdist or wheel is built (package data; absent in a fresh checkout).
VENDORED = Path(__file__).resolve().parent / "vendor" / "socket.io-client"

#: The file the chat page imports from ``/vendor``.
CLIENT_BUNDLE = "socket.io.esm.min.js"

#: How long a chat client that lost its connection may come back with what it missed.
RECOVERY_SECONDS = 120.0


def find_client_dist() -> Path | None:
    """The directory to serve as ``/vendor``, or None when the bundle is nowhere.

    ``TETHER_SOCKETIO_CLIENT_DIST`` if set (and only it), else the copy in the
    installed package (:data:`VENDORED`), else
    ``node_modules/socket.io-client/dist`` in the current directory or the checkout.
    """
    override = os.environ.get("TETHER_SOCKETIO_CLIENT_DIST")
    if override:
        candidates = [Path(override)]
    else:
        candidates = [VENDORED]
        for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
            candidates.append(root / "node_modules" / "socket.io-client" / "dist")
    for candidate in candidates:
        if (candidate / CLIENT_BUNDLE).is_file():
            return candidate
    return None


class DemoApp:
    """The chat, ticker and game behind one set of :func:`tether.serve` hooks."""

    def __init__(
        self,
        *,
        adapter: Adapter | None = None,
        client_dist: Path | None = None,
        admin_password: str | None = None,
    ) -> None:
        self.realtime = realtime.Server(
            adapter=adapter,
            connection_state_recovery={"max_disconnection_duration": RECOVERY_SECONDS},
        )
        #: The Admin UI's password (username :data:`~.admin.USERNAME`).
        self.admin_password = admin_password or new_admin_password()
        instrument(self.realtime, auth=(USERNAME, self.admin_password))
        self.admin_pages = AdminPages(*find_admin_ui())
        self.chat = Chat(self.realtime)
        self.ticker = Ticker()
        self.game = Game()
        self.websockets: dict[str, tuple[str, Callable[[Connection], Awaitable[None]]]] = {
            "/ticker/ws": ("ticker", self.ticker.handle),
            "/game/ws": ("game", self.game.handle),
        }
        self.stats = DemoStats(self.realtime, tuple(name for name, _ in self.websockets.values()))
        mapping = {"/": str(STATIC)}
        if client_dist is not None:
            mapping["/vendor"] = str(client_dist)
        self.static = StaticFiles(mapping)

    async def start(self) -> None:
        await self.realtime.start()
        self.ticker.start()
        self.game.start()

    async def stop(self) -> None:
        await self.realtime.shutdown()
        await self.ticker.stop()
        await self.game.stop()

    # -- the hooks of tether.serve ----------------------------------------------

    def process_request(self, connection: Connection, request: Request) -> Response | None:
        """Accept the WebSocket upgrades of the three endpoints, 404 for others."""
        if self.realtime.handles(request.path):
            return self.realtime.engine.check(request)[1]
        if urlsplit(request.path).path in self.websockets:
            return None
        return not_found()

    async def handler(self, connection: Connection) -> None:
        request = connection.request
        assert request is not None
        if self.realtime.handles(request.path):
            query, _ = self.realtime.engine.check(request)
            await self.realtime.engine.handle_websocket(connection, query)
            return
        name, handle = self.websockets[urlsplit(request.path).path]
        self.stats.adopt(name, connection)
        try:
            await handle(connection)
        finally:
            self.stats.release(name)

    async def http(self, connection: Connection, request: Request, body: bytes) -> Response:
        if self.realtime.handles(request.path):
            return await self.realtime.engine.handle_http(connection, request, body)
        if self.admin_pages.handles(request.path):
            found = self.admin_pages.serve(request)
            return found if found is not None else not_found()
        route = urlsplit(request.path).path
        if route == STATS_PATH:
            return self.stats.response()
        if route in ("/chat", "/ticker", "/game"):
            # Relative URLs in the page resolve against the directory.
            return _redirect(route + "/")
        response = self.static.serve(request)
        return response if response is not None else not_found()


def _redirect(location: str) -> Response:
    headers = Headers([("Location", location), ("Content-Type", "text/plain; charset=utf-8")])
    return Response(308, "Permanent Redirect", headers, b"moved\n")


def _adapter(redis_url: str | None) -> Adapter | None:
    if redis_url is None:
        return None
    try:
        from ..realtime.adapters.redis import RedisAdapter
    except ImportError as exc:
        raise ValueError(
            f"--redis needs the Redis adapter (tether.realtime.adapters.redis) and the redis "
            f"package (pip install 'tether[redis]'): {exc}"
        ) from None
    adapter: Adapter = RedisAdapter(redis_url)
    return adapter


@contextlib.asynccontextmanager
async def running(
    host: str | None = "127.0.0.1",
    port: int = 8000,
    *,
    redis_url: str | None = None,
    admin_password: str | None = None,
    **options: Any,
) -> AsyncIterator[WebSocketServer]:
    """Run the demos until the block exits; yields the :class:`tether.Server` (its ``port``)."""
    client_dist = find_client_dist()
    if client_dist is None:
        _log.warning(
            "the chat's browser client (/vendor/%s) is missing: this tether was built "
            "without socket.io-client. In a checkout run `npm ci`; otherwise reinstall "
            "tether from a wheel built where npm could fetch it",
            CLIENT_BUNDLE,
        )
    app = DemoApp(
        adapter=_adapter(redis_url), client_dist=client_dist, admin_password=admin_password
    )
    if app.admin_pages.dist is None:
        _log.warning(
            "the Admin UI's files (%s/) are missing: in a checkout run `npm ci`, or set "
            "TETHER_ADMIN_UI_DIST to @socket.io/admin-ui's ui/dist",
            ADMIN_UI,
        )
    await app.start()
    try:
        async with serve(
            app.handler,
            host,
            port,
            process_request=app.process_request,
            http_handler=app.http,
            compression="deflate",
            **options,
        ) as server:
            try:
                yield server
            finally:
                # Sessions and tick loops first, so that closing the server
                # does not wait for held polls and handlers.
                await app.stop()
    finally:
        await app.stop()


async def main(host: str = "127.0.0.1", port: int = 8000, redis_url: str | None = None) -> None:
    """Serve the demos until SIGINT or SIGTERM."""
    password = new_admin_password()
    async with running(host, port, redis_url=redis_url, admin_password=password) as server:
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
        shown = f"[{host}]" if ":" in host else host  # RFC 3986 IPv6 literal
        if host in ("0.0.0.0", "::"):
            shown = "localhost"
        url = f"http://{shown}:{server.port}/"
        print(f"tether demos on {url} ({_loops.current()})", file=sys.stderr, flush=True)
        print(
            f"Admin UI on http://{shown}:{server.port}{ADMIN_UI}/ "
            f"(username {USERNAME}, password {password})",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(asyncio.CancelledError):
            await stop
        print("shutting down", file=sys.stderr, flush=True)
