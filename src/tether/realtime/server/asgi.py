"""Serving a realtime server as an ASGI 3 application (uvicorn, hypercorn...).

::

    app = server.asgi_app(other_app)   # uvicorn module:app

The Engine.IO endpoint (``server.path``) is answered here, over HTTP
long-polling and WebSocket; then the server's static files; every other path,
and the ``lifespan`` scope, go to ``other_app`` (a Starlette or FastAPI app,
say), or get a 404 without one. Lifespan events also start and stop the
server (:meth:`Server.start` and :meth:`Server.shutdown`).

Mounted in another app (``fastapi_app.mount("/rt", server.asgi_app())``),
it gets no lifespan events: Starlette and FastAPI keep them for the host
app. Then the first Engine.IO request starts the server (once; concurrent
first requests wait for the same start) and one warning says how to wire
the host app's lifespan (:meth:`Server.lifespan`), since nothing else will
stop the adapter. If the start fails, the request gets a 500 (a WebSocket
is refused) and the error is logged once, with its cause, even when the
request that waited for it is gone; the next request tries again. After
:meth:`Server.shutdown`, nothing starts it again on its own: Engine.IO
requests get a 503 (a WebSocket is refused) until an explicit
:meth:`Server.start`. See ``docs/deployment.md``.

A WebSocket opened directly (no polling first) gets the sid cookie of the
server's ``cookie`` option in the ``headers`` of ``websocket.accept``, as on
tether's own server.

The Engine.IO sessions (:mod:`tether.realtime.server.session`) run on any
:class:`~tether.realtime.server.transport.WebSocket`: :class:`ASGIWebSocket`
gives an ASGI websocket that interface.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from ...exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from ...limits import DEFAULT_LIMITS, Limits
from ...protocol.events import Close
from ...protocol.http import Headers, Request, Response
from .engine import Servable
from .static import StaticFiles, not_found

__all__ = ["ASGIApp", "ASGIWebSocket"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]

# RFC 6455 §7.4.1: closes that end `async for` without an error (1005: no code).
_CLEAN_CODES = (1000, 1001, 1005)

_UNWIRED = (
    "the realtime server was started by its first request, not by an ASGI lifespan "
    "(a mounted app gets none: Starlette and FastAPI keep lifespan events for the host "
    "app), so nothing will stop its adapter at shutdown; give the host app "
    "lifespan=server.lifespan, or await server.start() and server.shutdown() in its "
    "own lifespan (docs/deployment.md)"
)


class ASGIServable(Servable, Protocol):
    """What :class:`ASGIApp` needs of a server on top of
    :class:`~.engine.Servable`: whether it is started (a mounted app gets no
    lifespan events, so it may have to start it) and where to log."""

    @property
    def started(self) -> bool:
        """Whether the adapter is started."""

    @property
    def closed(self) -> bool:
        """Whether it was shut down (and not started again since)."""

    @property
    def logger(self) -> logging.Logger:
        """Where the server logs."""


def _route(scope: Scope) -> str:
    """The request path relative to where the app is mounted (ASGI ``root_path``)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def _is_secure(scope: Scope) -> bool:
    """Whether the request came over TLS (ASGI ``scheme``: https or wss)."""
    return scope.get("scheme") in ("https", "wss")


def request_from_scope(scope: Scope) -> Request:
    """A :class:`~tether.protocol.http.Request` with the scope's method, path,
    query string and headers (as the Engine.IO server reads them)."""
    path = _route(scope)
    query: bytes = scope.get("query_string", b"")
    if query:
        path += "?" + query.decode("latin-1")
    headers = Headers(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]
    )
    return Request(path, headers, scope.get("method", "GET"))


class _HTTPPeer:
    """The client of an ASGI HTTP request, as a :class:`~.transport.HTTPPeer`."""

    __slots__ = ("remote_address",)

    def __init__(self, remote_address: Any) -> None:
        self.remote_address = remote_address


class ASGIWebSocket:
    """An accepted ASGI websocket as a :class:`~.transport.WebSocket` (the
    interface an Engine.IO session uses, which :class:`~tether.Connection`
    has too): ``recv``, ``async for``, ``send``, ``send_nowait``, ``flush``,
    ``drain``, ``close``, ``write_buffer_size``, ``limits``.

    ASGI's ``send`` is a coroutine, ``send_nowait`` is not: messages queue
    here and a writer task hands them over in order (the ASGI server's
    ``send`` waits while its client does not read, so the queue is what a slow
    client has not taken: :meth:`drain` waits for it to go down). A reader
    task pulls messages ahead of :meth:`recv`, at most ``limits.max_queue`` of
    them and ``limits.max_queue_bytes`` (then it stops reading, and the ASGI
    server applies backpressure).
    """

    def __init__(
        self,
        receive: Receive,
        send: Send,
        request: Request,
        remote_address: Any = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        response: Response | None = None,
    ) -> None:
        self.request = request
        #: The answer the opening handshake got: its headers are the ones
        #: given in ``websocket.accept`` (the Engine.IO server reads the sid
        #: cookie it chose there, as on :class:`tether.Connection`).
        self.response = response
        self.remote_address = remote_address
        self.limits = limits
        self._receive = receive
        self._send = send
        self._out: collections.deque[Message] = collections.deque()
        self._out_size = 0
        self._in: collections.deque[str | bytes] = collections.deque()
        self._in_size = 0  # len() of the messages in _in
        self._readable = asyncio.Event()
        self._read_more = asyncio.Event()
        self._writable = asyncio.Event()
        self._drained = asyncio.Event()  # the queue went under write_low_water
        # The close frame received (None: none), once the reading side ended.
        self._received: Close | None = None
        self._done_reading = False
        self._closing: Close | None = None
        self._gone = False  # the ASGI server refused a send: the client left
        self._reader = asyncio.ensure_future(self._read())
        self._writer = asyncio.ensure_future(self._write())

    def __repr__(self) -> str:
        return f"<ASGIWebSocket {self.remote_address}>"

    # -- receiving -------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                # Bounded like tether's own connections: the ASGI server's
                # message size limit (uvicorn: 16 MiB) may be far above
                # max_payload, so a count alone could hold max_queue of them.
                limits = self.limits
                while len(self._in) >= limits.max_queue or self._in_size >= limits.max_queue_bytes:
                    self._read_more.clear()
                    await self._read_more.wait()
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    data = text if text is not None else message.get("bytes") or b""
                    self._in.append(data)
                    self._in_size += len(data)
                    self._readable.set()
                elif kind == "websocket.disconnect":
                    self._received = Close(message.get("code", 1005), message.get("reason") or "")
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            self._gone = True  # the ASGI server gave up on the connection
        finally:
            self._done_reading = True
            self._readable.set()

    def _closed_error(self) -> ConnectionClosed:
        rcvd = self._received
        if rcvd is not None and rcvd.code in _CLEAN_CODES:
            return ConnectionClosedOK(rcvd, self._closing)
        if rcvd is None and self._closing is not None and self._closing.code in _CLEAN_CODES:
            return ConnectionClosedOK(None, self._closing)
        return ConnectionClosedError(rcvd, self._closing)

    async def recv(self) -> str | bytes:
        """The next message; raises :class:`~tether.exceptions.ConnectionClosed` after the end."""
        while not self._in:
            if self._done_reading:
                raise self._closed_error()
            self._readable.clear()
            await self._readable.wait()
        message = self._in.popleft()
        self._in_size -= len(message)
        self._read_more.set()
        return message

    def __aiter__(self) -> ASGIWebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        """``async for``: ends on a clean close, raises on any other."""
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    # -- sending ---------------------------------------------------------------------

    def send_nowait(self, message: str | bytes) -> None:
        """Queue a message; raises :class:`~tether.exceptions.ConnectionClosed` once closing."""
        if self._closing is not None or self._gone:
            raise self._closed_error()
        if isinstance(message, str):
            self._out.append({"type": "websocket.send", "text": message})
        else:
            self._out.append({"type": "websocket.send", "bytes": bytes(message)})
        self._out_size += len(message)
        self._writable.set()

    async def send(self, message: str | bytes) -> None:
        """Queue a message, then :meth:`drain`."""
        self.send_nowait(message)
        await self.drain()

    def flush(self) -> None:
        """Nothing to do: the writer task hands queued messages to the ASGI
        server as soon as it runs (ASGI's ``send`` is a coroutine, so no
        message can be written before this loop turn ends anyway)."""

    async def drain(self) -> None:
        """Wait until the queue is back under ``write_low_water`` (at once if
        it is not above ``write_high_water``), as :meth:`tether.Connection.drain`;
        raises :class:`~tether.exceptions.ConnectionClosed` if the connection
        ends first."""
        if self._out_size <= self.limits.write_high_water:
            return
        while self._out_size > self.limits.write_low_water:
            if self._writer.done():
                raise self._closed_error()
            self._drained.clear()
            await self._drained.wait()

    def write_buffer_size(self) -> int:
        """Bytes queued here that the ASGI server has not taken yet."""
        return self._out_size

    async def _write(self) -> None:
        out = self._out
        try:
            while True:
                while out:
                    message = out.popleft()
                    data = message.get("text") or message.get("bytes") or b""
                    self._out_size -= len(data)
                    await self._send(message)
                    if self._out_size <= self.limits.write_low_water:
                        self._drained.set()
                if self._closing is not None:
                    close = self._closing
                    if self._done_reading:
                        return  # the client is gone: nothing to close
                    await self._send(
                        {"type": "websocket.close", "code": close.code, "reason": close.reason}
                    )
                    return
                self._writable.clear()
                await self._writable.wait()
        except asyncio.CancelledError:
            raise
        except Exception:
            # uvicorn raises ClientDisconnected (an OSError), others their own:
            # either way the client is gone and the reader sees the end.
            self._gone = True
        finally:
            out.clear()
            self._out_size = 0
            self._drained.set()  # drain() sees the writer done

    # -- closing ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._writer.done()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send what is queued, then the close; stop reading (bounded by ``close_timeout``)."""
        if self._closing is None:
            self._closing = Close(code, reason)
            self._writable.set()
        if not self._writer.done():
            await asyncio.wait({self._writer}, timeout=self.limits.close_timeout)
        self._stop()

    def _stop(self) -> None:
        for task in (self._reader, self._writer):
            if not task.done():
                task.cancel()


class ASGIApp:
    """An ASGI 3 application serving ``server`` (see the module docstring).

    ::

        app = server.asgi_app(starlette_app)   # or ASGIApp(server, starlette_app)
    """

    def __init__(self, server: ASGIServable, other_app: ASGIApplication | None = None) -> None:
        self.server = server
        self.other_app = other_app
        self.static = StaticFiles(server.static_files) if server.static_files else None
        self._warned = False  # of a start without lifespan
        self._reported: BaseException | None = None  # the start failure last logged

    async def _ready(self) -> Response | None:
        """None if the server is started, starting it if no lifespan did (see
        the module docstring); else the answer: 503 once shut down, 500 if
        it fails to start (logged)."""
        server = self.server
        if server.closed:
            return _unavailable()
        if server.started:
            return None
        if not self._warned:
            self._warned = True
            server.logger.warning(_UNWIRED)
        try:
            await server.start()
        except Exception as exc:
            # Concurrent first requests wait for one start and share its
            # error: it is logged once, with its cause.
            if exc is not self._reported:
                self._reported = exc
                server.logger.error(
                    "the realtime server could not start its adapter; "
                    "its requests get a 500 until a start succeeds",
                    exc_info=exc,
                )
            return _not_started()
        # A shutdown may have come while this request waited for the start.
        return _unavailable() if server.closed else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self.other_app is not None:
            await self.other_app(scope, receive, send)

    # -- HTTP: long-polling, static files ----------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = self.server
        request = request_from_scope(scope)
        if not server.handles(request.path):
            response = self.static.serve(request) if self.static is not None else None
            if response is None:
                if self.other_app is not None:
                    await self.other_app(scope, receive, send)
                    return
                response = not_found()
            await _send_response(send, response)
            return
        refusal = await self._ready()
        if refusal is not None:
            await _send_response(send, refusal)
            return
        body = await _read_body(request, receive, server.limits.max_payload)
        if body is None:
            return  # the client went away
        if isinstance(body, Response):
            await _send_response(send, body)
            return
        peer = _HTTPPeer(scope.get("client"))
        # A held GET (long-polling) ends if the client disconnects meanwhile:
        # cancelling it closes the session ("transport close").
        handler = asyncio.ensure_future(
            server.engine.handle_http(peer, request, body, secure=_is_secure(scope))
        )
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({handler, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (handler, watcher):
                task.cancel()
        if not handler.done() or handler.cancelled():
            with contextlib.suppress(asyncio.CancelledError):
                await handler
            return
        await _send_response(send, handler.result())

    # -- WebSocket ---------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = self.server
        request = request_from_scope(scope)
        if self.other_app is not None and not server.handles(request.path):
            await self.other_app(scope, receive, send)
            return
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        if not server.handles(request.path):
            await _refuse(scope, send, not_found())
            return
        refusal = await self._ready()
        if refusal is not None:
            await _refuse(scope, send, refusal)
            return
        query, problem = server.engine.check(request, secure=_is_secure(scope))
        if problem is not None:
            await _refuse(scope, send, problem)
            return
        # What tether's own server adds to its 101 (process_response): the
        # sid cookie of a session opened directly over WebSocket.
        response = Response(101, "Switching Protocols", Headers())
        server.engine.websocket_headers(request, response.headers)
        accept: Message = {"type": "websocket.accept"}
        if response.headers:
            accept["headers"] = _encode_headers(response.headers)
        await send(accept)
        socket = ASGIWebSocket(receive, send, request, scope.get("client"), response=response)
        try:
            await server.engine.handle_websocket(socket, query)
        finally:
            await socket.close()

    # -- lifespan ----------------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = self.server
        if self.other_app is None:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        await server.start()
                    except Exception as exc:
                        # The ASGI server reports it and does not serve.
                        await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await server.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

        async def receive_and_act() -> Message:
            # The realtime server starts before the other app hears of the
            # startup, and stops before it hears of the shutdown.
            message = await receive()
            if message["type"] == "lifespan.startup":
                await server.start()
            elif message["type"] == "lifespan.shutdown":
                await server.shutdown()
            return message

        await self.other_app(scope, receive_and_act, send)


async def _read_body(request: Request, receive: Receive, limit: int) -> bytes | Response | None:
    """The request body, a 413 answer when it is over ``limit`` (checked
    before buffering: on the Content-Length, then as chunks arrive), or None
    if the client went away."""
    declared = request.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _not_started() -> Response:
    body = b"the realtime server could not start (see its log)\n"
    headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
    return Response(500, "Internal Server Error", headers, body)


def _unavailable() -> Response:
    body = b"the realtime server is shut down\n"
    headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
    return Response(503, "Service Unavailable", headers, body)


def _too_large(limit: int) -> Response:
    body = f"body exceeds {limit} bytes\n".encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")])
    return Response(413, "Payload Too Large", headers, body)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _encode_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def _send_response(send: Send, response: Response, kind: str = "http") -> None:
    """Send ``response`` as ASGI ``{kind}.response.start`` and ``.body`` events
    (``kind`` is ``"websocket.http"`` for a refused WebSocket)."""
    headers = response.headers
    if "Content-Length" not in headers:
        headers.set("Content-Length", str(len(response.body)))
    await send(
        {
            "type": f"{kind}.response.start",
            "status": response.status,
            "headers": _encode_headers(headers),
        }
    )
    await send({"type": f"{kind}.response.body", "body": response.body})


async def _refuse(scope: Scope, send: Send, response: Response) -> None:
    """Refuse a WebSocket before accepting it: with ``response`` where the ASGI
    server supports the ``websocket.http.response`` extension, else a close
    (which servers answer with 403)."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await _send_response(send, response, "websocket.http")
