"""Serving a realtime server on tether's own asyncio WebSocket server."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket as socket_module
import threading
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ...connection import Connection
from ...metrics.endpoint import MetricsEndpoint
from ...metrics.realtime import Observed, RealtimeMetrics
from ...protocol.http import Request, Response
from ...server import Compression
from ...server import Server as WebSocketServer
from ...server import serve as serve_websockets
from .static import StaticFiles, not_found
from .transport import uses_tls

if TYPE_CHECKING:
    from .engine import Servable

__all__ = ["serve"]

_log = logging.getLogger("tether.realtime")


class serve(Coroutine[Any, Any, None]):
    """Serve a :class:`~tether.realtime.Server` on ``host:port``.

    Polling and WebSocket share the port with the static files of the
    server's ``static_files``. Await it to serve until cancelled, or, awaited
    in the main thread, until SIGINT (Ctrl-C) or SIGTERM, which shut it down
    gracefully and make it return, so the program ends without a traceback::

        logging.basicConfig(level=logging.INFO)  # to see "serving on http://..."
        asyncio.run(realtime.serve(server, "127.0.0.1", 8000))

    or use it as an async context manager, which yields the underlying
    :class:`tether.Server` (its ``port``, ``close()``)::

        async with realtime.serve(server, "127.0.0.1", 0) as http:
            print(http.port)

    ``metrics``: a :class:`tether.metrics.MetricsEndpoint` serves the
    WebSocket server's metrics and the realtime server's
    (:class:`~tether.metrics.realtime.RealtimeMetrics`, installed as its
    observer) on its path; off by default (docs/metrics.md).

    ``compression`` is off by default, unlike :func:`tether.serve`'s: as in
    socket.io since v3, a realtime server's messages are mostly small events,
    which deflate barely shrinks, while each compressing connection holds
    about 100 KiB of zlib state (bench/realtime_compression.py measures both
    ways; docs/realtime.md, "Compression"). Pass ``compression="deflate"``, or
    :class:`tether.DeflateOptions` with a ``min_size`` as socket.io's 1 KiB
    ``threshold``, for large, compressible payloads.

    Every other option is :func:`tether.serve`'s, passed on as given (``ssl``,
    ``sock``, ``reuse_port``, limits...): they are defined there only.
    """

    def __init__(
        self,
        server: Servable,
        host: str | None = None,
        port: int | None = None,
        *,
        compression: Compression = None,
        metrics: MetricsEndpoint | None = None,
        **options: Any,
    ) -> None:
        self.server = server
        if metrics is not None and isinstance(server, Observed):
            # The loop's lag is the WebSocket server's metric already.
            metrics.include(RealtimeMetrics.install(server, loop_lag=False))
        self.static = StaticFiles(server.static_files) if server.static_files else None
        self._websockets = serve_websockets(
            self._websocket,
            host,
            port,
            process_request=self._check_upgrade,
            process_response=self._accept_upgrade,
            http_handler=self._http,
            compression=compression,
            metrics=metrics,
            **options,
        )
        self._running: WebSocketServer | None = None
        self._tls = options.get("ssl") is not None
        self._forever: Coroutine[Any, Any, None] | None = None

    @property
    def http(self) -> WebSocketServer:
        """The :class:`tether.Server` under it (made already, listening once started):
        e.g. for its ``handle_socket`` in a ``route`` hook."""
        return self._websockets.server

    # -- the four entry points tether.serve calls -----------------------------------

    def _check_upgrade(self, connection: Connection, request: Request) -> Response | None:
        server = self.server
        if not server.handles(request.path):
            return not_found()
        _, problem = server.engine.check(request, secure=uses_tls(connection))
        return problem

    def _accept_upgrade(self, connection: Connection, request: Request, response: Response) -> None:
        self.server.engine.websocket_headers(request, response.headers)

    async def _websocket(self, connection: Connection) -> None:
        request = connection.request
        assert request is not None
        query, _ = self.server.engine.check(request)
        await self.server.engine.handle_websocket(connection, query)

    async def _http(self, connection: Connection, request: Request, body: bytes) -> Response:
        if self.server.handles(request.path):
            return await self.server.engine.handle_http(connection, request, body)
        if self.static is not None:
            response = self.static.serve(request)
            if response is not None:
                return response
        return not_found()

    # -- lifecycle ---------------------------------------------------------------------

    async def _start(self) -> WebSocketServer:
        await self.server.start()
        self._running = await self._websockets
        scheme = "https" if self._tls else "http"
        for listening in self._running.sockets:
            _log.info("serving on %s", _address(scheme, listening))
        return self._running

    async def _stop(self) -> None:
        await self.server.shutdown()
        if self._running is not None:
            self._running.close()
            await self._running.wait_closed()

    async def _serve_forever(self) -> None:
        await self._start()
        try:
            # Until cancelled or signalled; not WebSocketServer.serve_forever(),
            # which would close the connections before shutdown() says goodbye.
            await _until_signalled()
        finally:
            await self._stop()

    # A Coroutine, so that asyncio.run(realtime.serve(...)) takes it; the
    # coroutine is made on first use, never when used with "async with".

    def _coroutine(self) -> Coroutine[Any, Any, None]:
        if self._forever is None:
            self._forever = self._serve_forever()
        return self._forever

    def __await__(self) -> Generator[Any, None, None]:
        return self._coroutine().__await__()

    def send(self, value: Any) -> Any:
        return self._coroutine().send(value)

    def throw(self, *args: Any) -> Any:
        return self._coroutine().throw(*args)

    def close(self) -> None:
        if self._forever is not None:
            self._forever.close()

    async def __aenter__(self) -> WebSocketServer:
        return await self._start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()


def _address(scheme: str, listening: socket_module.socket) -> str:
    """``http://127.0.0.1:8000``, ``http://[::1]:8000`` or ``unix:/path`` (the real port)."""
    name = listening.getsockname()
    if isinstance(name, tuple):
        host = f"[{name[0]}]" if ":" in name[0] else name[0]  # RFC 3986 IPv6 literal
        return f"{scheme}://{host}:{name[1]}"
    return f"unix:{name}"


async def _until_signalled() -> None:
    """Wait until cancelled, or in the main thread until SIGINT or SIGTERM.

    The signals only end the wait: the caller then shuts down gracefully and
    returns, instead of KeyboardInterrupt unwinding asyncio.run with a traceback.
    """
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    installed = []
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(number, _stop_on, stop, number)
            except (NotImplementedError, RuntimeError):  # e.g. Windows' loops
                continue
            installed.append(number)
    try:
        await stop
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


def _stop_on(stop: asyncio.Future[None], number: signal.Signals) -> None:
    _log.info("%s: shutting down", number.name)
    if not stop.done():
        stop.set_result(None)
