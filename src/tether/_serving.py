"""How :class:`tether.Server` serves each connection: the opening handshake,
plain HTTP/1.1 requests on a keep-alive connection, then the handler.

A request that arrives whole in the connection's first read (nearly every
client's) is answered right there, in the read callback
(:meth:`Serving.first_request`): no task, future or timer is made for the
handshake, and a :class:`~tether.MessageHandler` whose ``__call__`` is the
stock one then needs no task at all (its ``on_close`` is called from
``connection_lost``). Anything else (a head split across reads or a bad one,
an ``http_handler``'s request, a ``route`` hook, bytes handed over with the
socket...) goes to the handshake task, which parses the same bytes again.
Until the first head is whole, the ``open_timeout`` deadline waits in the
loop's shared timer buckets (:mod:`tether._shared`), not in a timer of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeGuard

from .connection import Connection
from .exceptions import ConnectionClosed, HandshakeError, HandshakeRejected, PayloadTooBig
from .handlers import MessageHandler
from .limits import Limits
from .metrics import MetricsEndpoint, WebSocketMetrics
from .protocol import connection as core
from .protocol.deflate import DeflateOptions, PerMessageDeflate
from .protocol.forwarded import Address, TrustedProxies, client_address
from .protocol.handshake import ServerHandshake, error_response
from .protocol.http import Headers, Request, Response, parse_request
from .ratelimit import AddressCounter

__all__ = ["ServerConnection", "ServerOptions", "Serving"]


class ServerOptions(Protocol):
    """What :class:`Serving` reads of its :class:`tether.Server`, at each
    connection (``route`` and the other hooks may be set after it started)."""

    handler: Callable[[Connection], Awaitable[None]]
    process_request: Callable[..., Any] | None
    process_response: Callable[..., Response | None] | None
    http_handler: Callable[..., Awaitable[Response]] | None
    route: Callable[..., Any] | None
    metrics_endpoint: MetricsEndpoint | None
    metrics: WebSocketMetrics
    handshake: ServerHandshake
    compression: DeflateOptions | None
    server_header: str | None
    limits: Limits
    logger: logging.Logger
    connections: set[Connection]
    trusted_proxies: TrustedProxies
    addresses: AddressCounter


class Serving:
    """The connections of one server: their tasks and their handshakes."""

    def __init__(self, server: ServerOptions) -> None:
        self.server = server
        self.connections = server.connections
        self.tasks: set[asyncio.Task[None]] = set()
        #: Connections served without a task: waiting for their first read,
        #: handed to a MessageHandler, or closing once their handler returned.
        self.untasked: set[Connection] = set()
        #: HTTP keep-alive connections waiting for their next request.
        self.idle: set[Connection] = set()
        self.closing = False
        # The loop the last connection was made on, when its maker said
        # (factory): every connection of a server is on the loop that serves
        # it, and asking asyncio costs a getpid(2) on CPython 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    def factory(
        self, initial: bytes = b"", loop: asyncio.AbstractEventLoop | None = None
    ) -> ServerConnection:
        """A new connection's protocol (``initial``: bytes read before; ``loop``:
        the running loop, if the caller knows it)."""
        self._loop = loop
        return ServerConnection(self, initial, loop)

    def connection_made(self, connection: ServerConnection) -> None:
        # Read at each connection: route is set after construction too
        # (tether run's workers). A hook that may await needs the task.
        if self.server.route is None and not connection.preloaded:
            self.untasked.add(connection)
            connection.wait_first_read()
        else:
            self.spawn(self._serve(connection))

    def connection_lost(self, connection: ServerConnection) -> None:
        if connection in self.untasked:
            self.untasked.discard(connection)
            self.connections.discard(connection)
        if connection._listened:
            connection._listened = False
            assert isinstance(self.server.handler, MessageHandler)
            try:
                self.server.handler.on_close(connection)
            except Exception:
                self.server.logger.exception("connection handler failed")

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the factory was told, else asyncio's running loop."""
        return self._loop if self._loop is not None else asyncio.get_running_loop()

    async def _serve(
        self, connection: Connection, opening: Coroutine[Any, Any, bool] | None = None
    ) -> None:
        """The connection's task: its handshake (or ``opening``, the rest of
        one that :meth:`first_request` began), then its handler."""
        try:
            started = await (opening if opening is not None else self._handshake(connection))
        except asyncio.CancelledError:
            if connection.transport is not None:
                connection.transport.abort()
            raise
        except Exception:
            self._handshake_failed(connection)
            return
        if started:
            await self._begin(connection)

    def _handshake_failed(self, connection: Connection) -> None:
        self.server.logger.exception("handshake failed unexpectedly")
        if connection.transport is not None:
            connection.transport.abort()

    def first_request(self, connection: ServerConnection) -> None:
        """The first read of a connection waiting for it (``wait_first_read``):
        answer a whole upgrade request here, in the read callback; leave
        anything else to the handshake task, which parses it again."""
        self.untasked.discard(connection)
        try:
            parsed = connection.parse_head(parse_request)
        except (HandshakeError, PayloadTooBig):
            parsed = None  # answered by the task
        if parsed is None:
            self.spawn(self._serve(connection))  # a bad head, or not all of it yet
            return
        connection.head_arrived()
        request, used = parsed
        connection.request = request
        if connection._behind_proxy:
            connection._forwarded_for(request)
        endpoint = self.server.metrics_endpoint
        plain_http = self.server.http_handler is not None and (
            "upgrade" not in request.headers.tokens("Connection")
        )
        if (
            self.closing
            or connection._over_cap
            or plain_http
            or (endpoint is not None and endpoint.matches(request.path))
        ):
            self.spawn(self._serve(connection))
            return
        try:
            answer = None
            if self.server.process_request is not None:
                given = self.server.process_request(connection, request)
                if inspect.isawaitable(given):
                    rest = self._accept_after(connection, request, used, given)
                    self.spawn(self._serve(connection, rest))
                    return
                answer = given
            if not self._accept(connection, request, used, answer):
                return
        except Exception:
            self._handshake_failed(connection)
            return
        if _plain_listener(self.server.handler):
            self._listen(connection, self.server.handler)
        else:
            loop = self._running_loop()
            # Removed from tasks by _run itself: no done callback, nor the
            # loop iteration that would call it.
            self.tasks.add(loop.create_task(self._run(connection, loop)))

    async def _accept_after(
        self,
        connection: Connection,
        request: Request,
        used: int,
        answer: Awaitable[Response | None],
    ) -> bool:
        """The rest of :meth:`first_request` once ``process_request`` answered."""
        return self._accept(connection, request, used, await answer)

    async def _begin(self, connection: Connection) -> None:
        """Hand an open connection to the handler."""
        if _plain_listener(self.server.handler):
            self._listen(connection, self.server.handler)
        else:
            await self._run(connection)

    def _listen(self, connection: Connection, listener: MessageHandler) -> None:
        """What :meth:`MessageHandler.__call__ <tether.MessageHandler.__call__>`
        does, without its task: on_close is called from connection_lost."""
        assert isinstance(connection, ServerConnection)
        self.connections.add(connection)
        self.untasked.add(connection)
        connection._listened = True
        try:
            connection.listen(listener)
            listener.on_open(connection)
        except Exception:
            # As a handler that raised: no on_close (the stock __call__
            # calls it only once on_open returned), and a 1011.
            connection._listened = False
            self.server.logger.exception("connection handler failed")
            self.spawn(self._close_failed(connection))

    async def _close_failed(self, connection: Connection) -> None:
        try:
            if connection.open:
                await connection.close(1011, "internal error")
        finally:
            await connection.wait_closed(self.server.limits.close_timeout)
            self.connections.discard(connection)

    async def _run(
        self, connection: Connection, own: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Run the handler coroutine for an open connection, then close it.

        ``own``: the loop of the task made for this alone, which then leaves
        :attr:`tasks` by itself (one cancelled before it started stays there
        until :meth:`tether.Server.wait_closed` prunes it).
        """
        self.connections.add(connection)
        try:
            try:
                await self.server.handler(connection)
            except ConnectionClosed:
                pass
            except Exception:
                self.server.logger.exception("connection handler failed")
                if connection.open:
                    await connection.close(1011, "internal error")
            else:
                protocol = connection.protocol
                if protocol is None or protocol.state is not core.State.CLOSED:
                    await connection.close()
            finally:
                if connection.closing_by_itself():
                    # Nothing left to wait for here: connection_lost takes it out
                    # of self.connections (and wait_closed() waits for that).
                    if connection.closed:
                        self.connections.discard(connection)
                    else:
                        self.untasked.add(connection)
                else:
                    await connection.wait_closed(self.server.limits.close_timeout)
                    self.connections.discard(connection)
        finally:
            if own is not None:
                # With the loop given, current_task is a dict lookup (without,
                # it asks for the running loop: a getpid(2) on CPython 3.11).
                self.tasks.discard(asyncio.current_task(own))

    def _reply(self, connection: Connection, response: Response, refused: str = "") -> None:
        """Answer with plain HTTP, close the TCP connection, count ``refused`` if any."""
        self.server.metrics.refused(refused)
        connection.response = response
        if "Content-Length" not in response.headers:
            response.headers.set("Content-Length", str(len(response.body)))
        transport = connection.transport
        if transport is not None and not transport.is_closing():
            transport.write(response.encode())
            connection.close_transport(transport, linger=True)

    async def _handshake(self, connection: Connection) -> bool:
        """Read the request, run hooks, answer 101 and start the connection
        (True), or answer or drop it otherwise (False).

        With an ``http_handler``, requests that do not ask for an upgrade are
        answered by it instead, as many as the client sends on the connection
        (HTTP/1.1 keep-alive), until one upgrades or the connection ends.
        """
        server = self.server
        while True:
            parsed = await self._read_request(connection)
            self.idle.discard(connection)
            if parsed is None:
                return False
            request, used = parsed
            if (endpoint := server.metrics_endpoint) is not None and endpoint.matches(request.path):
                answer = endpoint.answer_request(
                    request, connection.remote_address, [server.metrics]
                )
                self._reply(connection, answer)
                return False
            if server.route is not None:
                taken = server.route(connection, request)
                if taken if isinstance(taken, bool) else await taken:
                    return False  # handed elsewhere (Connection.detach): not ours any more
            if server.http_handler is None or "upgrade" in request.headers.tokens("Connection"):
                break
            if not await self._answer_http(connection, request, used):
                return False
            # Backpressure: the next request is not read before this answer
            # drains, so pipelined requests cost the peer its own buffers,
            # not ours; a peer that stops reading is dropped (open_timeout
            # without progress).
            if not await connection.drained(server.limits.open_timeout):
                return False
            # Between two requests: close() ends it at once instead of waiting.
            self.idle.add(connection)
            if self.closing and connection.transport is not None:
                connection.transport.close()
        return await self._upgrade(connection, request, used)

    async def _read_request(self, connection: Connection) -> tuple[Request, int] | None:
        """The next request head and its size (its bytes stay in the buffer);
        None when the connection was answered or closed instead."""
        try:
            parsed = await connection.read_head(parse_request, self.server.limits.open_timeout)
        except PayloadTooBig as exc:
            response = error_response(431, "Request Header Fields Too Large", str(exc))
            self._reply(connection, response, "headers_too_large")
            return None
        except HandshakeError as exc:
            self._reply(connection, error_response(400, "Bad Request", str(exc)), "bad_request")
            return None
        if parsed is None:
            if connection.timed_out:
                self.server.logger.info("opening handshake timed out")
            return None  # the client went away, or took too long
        connection.request = parsed[0]
        if isinstance(connection, ServerConnection):
            connection.head_arrived()
            if connection._behind_proxy:
                connection._forwarded_for(parsed[0])
        if self.closing:
            response = error_response(503, "Service Unavailable", "shutting down")
            self._reply(connection, response, "shutting_down")
            return None
        if isinstance(connection, ServerConnection) and connection._over_cap:
            # Answered once its request is read, so that the client sees the 503
            # rather than a reset; it counts against the cap until it is gone.
            retry = Headers([("Retry-After", "1")])
            message = "too many connections from this address"
            response = error_response(503, "Service Unavailable", message, retry)
            self._reply(connection, response, "max_connections_per_ip")
            return None
        return parsed

    async def _answer_http(self, connection: Connection, request: Request, used: int) -> bool:
        """Read the body, run ``http_handler`` and send its answer; whether the
        connection stays open for another request."""
        assert self.server.http_handler is not None
        headers = request.headers
        if "Transfer-Encoding" in headers:
            # Browsers and socket.io clients send a Content-Length; chunked
            # uploads are not worth the parser here.
            self._reply(connection, error_response(411, "Length Required", "send Content-Length"))
            return False
        try:
            size = int(headers.get("Content-Length") or "0")
        except ValueError:
            size = -1
        if size < 0:
            self._reply(connection, error_response(400, "Bad Request", "invalid Content-Length"))
            return False
        if size > self.server.limits.max_message_size:
            # Checked before buffering: the body is a message like any other.
            message = f"body exceeds {self.server.limits.max_message_size} bytes"
            self._reply(connection, error_response(413, "Payload Too Large", message))
            return False
        body = await connection.read_body(used, size, self.server.limits.open_timeout)
        if body is None:
            if connection.transport is not None:
                connection.transport.abort()
            return False
        # A held request (long-polling) ends early if the client goes away.
        task = asyncio.ensure_future(self.server.http_handler(connection, request, body))
        closed = connection.closed_future()
        await asyncio.wait((task, closed), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))
            return False
        response = task.result()
        keep_alive = "close" not in headers.tokens("Connection") and not self.closing
        out = response.headers
        if "Content-Length" not in out:
            out.set("Content-Length", str(len(response.body)))
        if self.server.server_header is not None and "Server" not in out:
            out.set("Server", self.server.server_header)
        if not keep_alive:
            out.set("Connection", "close")
        elif "close" in out.tokens("Connection"):
            keep_alive = False
        connection.response = response
        transport = connection.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(response.encode())
        if not keep_alive:
            connection.close_transport(transport, linger=True)
        return keep_alive

    async def _upgrade(self, connection: Connection, request: Request, used: int) -> bool:
        answer = None
        if self.server.process_request is not None:
            given = self.server.process_request(connection, request)
            answer = await given if inspect.isawaitable(given) else given
        return self._accept(connection, request, used, answer)

    def _accept(
        self, connection: Connection, request: Request, used: int, answer: Response | None
    ) -> bool:
        """Answer 101 and start the connection (True), unless ``process_request``'s
        ``answer``, the handshake's checks or ``process_response`` refuse it."""
        if answer is not None:
            self._reply(connection, answer, "process_request")
            return False
        try:
            response, result, head = self.server.handshake.accept_encoded(request)
        except HandshakeRejected as exc:
            self.server.logger.info("handshake rejected: %s", exc)
            self._reply(connection, exc.response, "handshake")
            return False
        if self.server.process_response is not None:
            answer = self.server.process_response(connection, request, response)
            if answer is not None and answer.status != 101:
                self._reply(connection, answer, "process_response")  # no WebSocket after all
                return False
            response = answer or response
            head = response.encode()  # the hook may have changed it
        transport = connection.transport
        if transport is None or transport.is_closing():
            return False
        deflate = None
        if result.deflate is not None:
            assert self.server.compression is not None
            deflate = PerMessageDeflate(
                result.deflate, is_client=False, options=self.server.compression
            )
        protocol = core.Connection(core.Side.SERVER, limits=self.server.limits, deflate=deflate)
        connection.response = response
        connection.subprotocol = result.subprotocol
        transport.write(head)
        self.server.metrics.handshakes_accepted.value += 1
        connection.start(protocol, used)
        return True


def _plain_listener(handler: object) -> TypeGuard[MessageHandler]:
    """Whether ``handler`` is a MessageHandler that does what the stock one
    does per connection (its ``__call__`` not overridden): then it is called
    from the connection's callbacks, without a task per connection."""
    return isinstance(handler, MessageHandler) and type(handler).__call__ is MessageHandler.__call__


class ServerConnection(Connection):
    """A server connection whose handshake starts with the transport (not in
    the factory: after a failed TLS handshake asyncio calls neither ``connection_made``
    nor ``connection_lost``; a task started there would hold up ``wait_closed``)."""

    __slots__ = (
        "_address",
        "_behind_proxy",
        "_client",
        "_first_read",
        "_listened",
        "_over_cap",
        "_serving",
    )

    def __init__(
        self,
        serving: Serving,
        initial: bytes = b"",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        server = serving.server
        # The base named, not super(), in what every connection calls: no
        # super object per call (single inheritance throughout).
        Connection.__init__(self, core.Side.SERVER, server.limits, server.logger, loop)
        if initial:
            self.preload(initial)
        self.metrics = server.metrics
        self._serving = serving
        self._address: str | None = None  # as counted for max_connections_per_ip
        self._over_cap = False
        self._behind_proxy = False  # the peer is a trusted proxy
        self._client: Address | None = None  # the client a trusted proxy named
        #: The server waits for the first read to answer the handshake in it.
        self._first_read = False
        #: A MessageHandler is called for this connection without a task:
        #: the server calls its on_close from connection_lost.
        self._listened = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Connection.connection_made(self, transport)
        serving = self._serving
        trusted = serving.server.trusted_proxies
        # The peer's address, only when something reads it here (neither
        # does by default): the transport builds it anew at each call.
        peer = None
        if trusted or self.limits.max_connections_per_ip is not None:
            peer = transport.get_extra_info("peername")
        # TCP only: a Unix socket's peer has no address to count.
        if isinstance(peer, tuple) and peer:
            host = str(peer[0])
            if host in trusted:
                # Counted once its request names the client (_forwarded_for):
                # a proxy's many connections are not one client's.
                self._behind_proxy = True
            else:
                self._count(host)
        serving.connection_made(self)

    def wait_first_read(self) -> None:
        """Have the first read answered in its callback (by the server), and
        abort the connection if no whole head arrives within ``open_timeout``."""
        self._first_read = True
        timeout = self.limits.open_timeout
        if timeout is not None:
            self.keepalive_at = self._shared.schedule(self, timeout)

    def head_arrived(self) -> None:
        """The first request head is whole: its deadline is met."""
        self._cancel_keepalive()

    def _head_received(self, data: bytes | memoryview) -> None:
        Connection._head_received(self, data)
        if self._first_read:
            self._first_read = False
            self._serving.first_request(self)

    def _open_expired(self) -> None:
        if self._first_read:
            # Nothing was read: no handshake task exists to say so.
            self.logger.info("opening handshake timed out")
        super()._open_expired()

    def _count(self, address: str) -> None:
        """Count this connection under ``address`` (instead of the one before)."""
        if self.limits.max_connections_per_ip is None or address == self._address:
            return
        addresses = self._serving.server.addresses
        if self._address is not None:
            addresses.remove(self._address)
        self._address = address
        self._over_cap = not addresses.add(address)

    def _forwarded_for(self, request: Request) -> None:
        """Take the client's address from a trusted proxy's request headers.

        Read for every request: a proxy may carry several clients' requests
        over one keep-alive connection, each counted as it comes.
        """
        peer = super().remote_address
        if not isinstance(peer, tuple) or not peer:
            return
        host = str(peer[0])
        self._client = client_address(host, request.headers, self._serving.server.trusted_proxies)
        self._count(self._client[0] if self._client is not None else host)

    @property
    def remote_address(self) -> Any:
        """The client's address: the peer's, or behind a trusted proxy the
        ``(host, port)`` its headers name (port 0 when they name none)."""
        if self._client is not None:
            return self._client
        return super().remote_address

    def connection_lost(self, exc: Exception | None) -> None:
        Connection.connection_lost(self, exc)
        self._first_read = False
        if self._address is not None:
            self._serving.server.addresses.remove(self._address)
            self._address = None
        self._serving.connection_lost(self)
