"""The asyncio WebSocket server: :func:`serve` and :class:`Server`."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._accept import AcceptFailureFilter
from .connection import Connection
from .exceptions import ConnectionClosed, HandshakeError, HandshakeRejected, PayloadTooBig
from .limits import DEFAULT_LIMITS, Limits
from .metrics import MetricsEndpoint, WebSocketMetrics
from .protocol import connection as core
from .protocol.deflate import DeflateOptions, PerMessageDeflate
from .protocol.forwarded import Address, TrustedProxies, client_address
from .protocol.handshake import SERVER_NAME, ServerHandshake, SubprotocolSelector, error_response
from .protocol.http import Headers, Request, Response, parse_request
from .ratelimit import AddressCounter

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .limits import LimitOptions

__all__ = [
    "HTTPHandler",
    "Handler",
    "ProcessRequest",
    "ProcessResponse",
    "Route",
    "Server",
    "serve",
]

Handler = Callable[[Connection], Awaitable[None]]
ProcessRequest = Callable[[Connection, Request], "Response | Awaitable[Response | None] | None"]
ProcessResponse = Callable[[Connection, Request, Response], "Response | None"]
HTTPHandler = Callable[[Connection, Request, bytes], Awaitable[Response]]
Route = Callable[[Connection, Request], "bool | Awaitable[bool]"]
Compression = Literal["deflate"] | DeflateOptions | None

_log = logging.getLogger("tether.server")


def compression_options(compression: Compression) -> DeflateOptions | None:
    """Normalise the ``compression`` option shared by the server, client and CLI."""
    if compression == "deflate":
        return DeflateOptions()
    if compression is None or isinstance(compression, DeflateOptions):
        return compression
    raise ValueError(f"compression must be 'deflate', None or DeflateOptions, not {compression!r}")


class Server:
    """A running WebSocket server; :func:`serve` creates and starts one.

    ``connections`` holds every connection whose handshake completed and that
    is not closed yet, e.g. for :func:`tether.broadcast`; ``metrics``, what it counts.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        http_handler: HTTPHandler | None = None,
        route: Route | None = None,
        subprotocols: Sequence[str] = (),
        select_subprotocol: SubprotocolSelector | None = None,
        origins: Sequence[str | None] | None = None,
        compression: Compression = "deflate",
        server_header: str | None = SERVER_NAME,
        trusted_proxies: Iterable[str] = (),
        limits: Limits = DEFAULT_LIMITS,
        logger: logging.Logger | None = None,
        metrics: MetricsEndpoint | None = None,
    ) -> None:
        self.handler = handler
        self.metrics = WebSocketMetrics(lambda: len(self.connections))
        self.metrics_endpoint = metrics  # serves self.metrics on its path, if any
        self.process_request = process_request
        self.process_response = process_response
        self.http_handler = http_handler
        self.route = route
        self.server_header = server_header
        self.compression = compression_options(compression)
        self.handshake = ServerHandshake(
            subprotocols=subprotocols,
            select_subprotocol=select_subprotocol,
            origins=origins,
            compression=self.compression,
            server_header=server_header,
        )
        self.limits = limits
        self.logger = logger or _log
        self.connections: set[Connection] = set()
        #: Peers whose Forwarded / X-Forwarded-For headers name the client.
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        # max_connections_per_ip: TCP connections open per client address
        # (the peer's, or for a trusted proxy the client its request names).
        self.addresses = AddressCounter(limits.max_connections_per_ip)
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._closing = False
        # HTTP keep-alive connections waiting for their next request.
        self._idle: set[Connection] = set()
        # accept() failures (EMFILE...): one log line per interval, with counts.
        self._accept_filter = AcceptFailureFilter(self.logger, lambda: self.sockets)

    # -- lifecycle ---------------------------------------------------------

    def _connection_factory(self) -> Connection:
        return _ServerConnection(self)

    def _connection_made(self, connection: Connection) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)  # type: ignore[attr-defined]

    @property
    def port(self) -> int:
        """The TCP port of the first listening socket (handy with ``port=0``)."""
        for sock in self.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                return int(sock.getsockname()[1])
        raise RuntimeError("the server is not listening on TCP")

    def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop accepting and start closing every connection (1001 by default);
        :meth:`wait_closed` waits until they are all closed."""
        if self._closing:
            return
        self._closing = True
        self.metrics.lag.stop()
        if self._server is not None:
            self._server.close()
        self._accept_filter.uninstall()
        for connection in list(self._idle):
            if connection.transport is not None:
                connection.transport.close()
        for connection in list(self.connections):
            connection.start_closing(code, reason)

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait for every connection and handler to finish, at most ``timeout``
        (``close_timeout`` by default); then cancel handlers and drop connections."""
        if timeout is None:
            timeout = self.limits.close_timeout
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abort()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def handle_socket(
        self, sock: socket.socket, *, ssl: ssl_module.SSLContext | None = None, initial: bytes = b""
    ) -> None:
        """Serve one connected socket (a :func:`socket.socketpair` end, one handed over
        by another process) like any other, once set up. ``initial``: bytes already read
        from it (:meth:`Connection.detach`'s), served first; at most ``max_header_bytes``."""
        if len(initial) > self.limits.max_header_bytes:
            raise ValueError(f"initial exceeds max_header_bytes ({self.limits.max_header_bytes})")
        factory = functools.partial(_ServerConnection, self, initial)
        await asyncio.get_running_loop().connect_accepted_socket(factory, sock, ssl=ssl)

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until cancelled, then close gracefully."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.close()
            await self.wait_closed()

    # -- one connection --------------------------------------------------

    async def _serve(self, connection: Connection) -> None:
        try:
            await self._handshake(connection)
        except asyncio.CancelledError:
            if connection.transport is not None:
                connection.transport.abort()
            raise
        except Exception:
            self.logger.exception("handshake failed unexpectedly")
            if connection.transport is not None:
                connection.transport.abort()
            return
        if connection.protocol is None:
            return
        self.connections.add(connection)
        try:
            await self.handler(connection)
        except ConnectionClosed:
            pass
        except Exception:
            self.logger.exception("connection handler failed")
            if connection.open:
                await connection.close(1011, "internal error")
        else:
            await connection.close()
        finally:
            await connection.wait_closed(self.limits.close_timeout)
            self.connections.discard(connection)

    def _reply(self, connection: Connection, response: Response, refused: str = "") -> None:
        """Answer with plain HTTP, close the TCP connection, count ``refused`` if any."""
        self.metrics.refused(refused)
        connection.response = response
        if "Content-Length" not in response.headers:
            response.headers.set("Content-Length", str(len(response.body)))
        transport = connection.transport
        if transport is not None and not transport.is_closing():
            transport.write(response.encode())
            connection.close_transport(transport, linger=True)

    async def _handshake(self, connection: Connection) -> None:
        """Read the request, run hooks, answer 101 and start the connection.

        With an ``http_handler``, requests that do not ask for an upgrade are
        answered by it instead, as many as the client sends on the connection
        (HTTP/1.1 keep-alive), until one upgrades or the connection ends.
        """
        while True:
            parsed = await self._read_request(connection)
            self._idle.discard(connection)
            if parsed is None:
                return
            request, used = parsed
            if (endpoint := self.metrics_endpoint) is not None and endpoint.matches(request.path):
                answer = endpoint.answer_request(request, connection.remote_address, [self.metrics])
                self._reply(connection, answer)
                return
            if self.route is not None:
                taken = self.route(connection, request)
                if taken if isinstance(taken, bool) else await taken:
                    return  # handed elsewhere (Connection.detach): not ours any more
            if self.http_handler is None or "upgrade" in request.headers.tokens("Connection"):
                break
            if not await self._answer_http(connection, request, used):
                return
            # Backpressure: the next request is not read before this answer
            # drains, so pipelined requests cost the peer its own buffers,
            # not ours; a peer that stops reading is dropped (open_timeout
            # without progress).
            if not await connection.drained(self.limits.open_timeout):
                return
            # Between two requests: close() ends it at once instead of waiting.
            self._idle.add(connection)
            if self._closing and connection.transport is not None:
                connection.transport.close()
        await self._upgrade(connection, request, used)

    async def _read_request(self, connection: Connection) -> tuple[Request, int] | None:
        """The next request head and its size (its bytes stay in the buffer);
        None when the connection was answered or closed instead."""
        try:
            parsed = await connection.read_head(parse_request, self.limits.open_timeout)
        except PayloadTooBig as exc:
            response = error_response(431, "Request Header Fields Too Large", str(exc))
            self._reply(connection, response, "headers_too_large")
            return None
        except HandshakeError as exc:
            self._reply(connection, error_response(400, "Bad Request", str(exc)), "bad_request")
            return None
        if parsed is None:
            if connection.timed_out:
                self.logger.info("opening handshake timed out")
            return None  # the client went away, or took too long
        connection.request = parsed[0]
        if isinstance(connection, _ServerConnection) and connection._behind_proxy:
            connection._forwarded_for(parsed[0])
        if self._closing:
            response = error_response(503, "Service Unavailable", "shutting down")
            self._reply(connection, response, "shutting_down")
            return None
        if isinstance(connection, _ServerConnection) and connection._over_cap:
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
        assert self.http_handler is not None
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
        if size > self.limits.max_message_size:
            # Checked before buffering: the body is a message like any other.
            message = f"body exceeds {self.limits.max_message_size} bytes"
            self._reply(connection, error_response(413, "Payload Too Large", message))
            return False
        body = await connection.read_body(used, size, self.limits.open_timeout)
        if body is None:
            if connection.transport is not None:
                connection.transport.abort()
            return False
        # A held request (long-polling) ends early if the client goes away.
        task = asyncio.ensure_future(self.http_handler(connection, request, body))
        closed = connection.closed_future()
        await asyncio.wait((task, closed), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))
            return False
        response = task.result()
        keep_alive = "close" not in headers.tokens("Connection") and not self._closing
        out = response.headers
        if "Content-Length" not in out:
            out.set("Content-Length", str(len(response.body)))
        if self.server_header is not None and "Server" not in out:
            out.set("Server", self.server_header)
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

    async def _upgrade(self, connection: Connection, request: Request, used: int) -> None:
        if self.process_request is not None:
            answer = self.process_request(connection, request)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer is not None:
                self._reply(connection, answer, "process_request")
                return
        try:
            response, result = self.handshake.accept(request)
        except HandshakeRejected as exc:
            self.logger.info("handshake rejected: %s", exc)
            self._reply(connection, exc.response, "handshake")
            return
        if self.process_response is not None:
            answer = self.process_response(connection, request, response)
            if answer is not None and answer.status != 101:
                self._reply(connection, answer, "process_response")  # no WebSocket after all
                return
            response = answer or response
        transport = connection.transport
        if transport is None or transport.is_closing():
            return
        deflate = None
        if result.deflate is not None:
            assert self.compression is not None
            deflate = PerMessageDeflate(result.deflate, is_client=False, options=self.compression)
        protocol = core.Connection(core.Side.SERVER, limits=self.limits, deflate=deflate)
        connection.response = response
        connection.subprotocol = result.subprotocol
        transport.write(response.encode())
        self.metrics.handshakes_accepted.value += 1
        connection.start(protocol, used)


class _ServerConnection(Connection):
    """A server connection whose handshake task starts with the transport (not in
    the factory: after a failed TLS handshake asyncio calls neither ``connection_made``
    nor ``connection_lost``; a task started there would hold up ``wait_closed``)."""

    __slots__ = ("_address", "_behind_proxy", "_client", "_over_cap", "_server")

    def __init__(self, server: Server, initial: bytes = b"") -> None:
        super().__init__(core.Side.SERVER, server.limits, server.logger)
        self.preload(initial)
        self.metrics = server.metrics
        self._server = server
        self._address: str | None = None  # as counted for max_connections_per_ip
        self._over_cap = False
        self._behind_proxy = False  # the peer is a trusted proxy
        self._client: Address | None = None  # the client a trusted proxy named

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        # TCP only: a Unix socket's peer has no address to count.
        if isinstance(peer, tuple) and peer:
            host = str(peer[0])
            if host in self._server.trusted_proxies:
                # Counted once its request names the client (_forwarded_for):
                # a proxy's many connections are not one client's.
                self._behind_proxy = True
            else:
                self._count(host)
        self._server._connection_made(self)

    def _count(self, address: str) -> None:
        """Count this connection under ``address`` (instead of the one before)."""
        if self.limits.max_connections_per_ip is None or address == self._address:
            return
        addresses = self._server.addresses
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
        self._client = client_address(host, request.headers, self._server.trusted_proxies)
        self._count(self._client[0] if self._client is not None else host)

    @property
    def remote_address(self) -> Any:
        """The client's address: the peer's, or behind a trusted proxy the
        ``(host, port)`` its headers name (port 0 when they name none)."""
        if self._client is not None:
            return self._client
        return super().remote_address

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._address is not None:
            self._server.addresses.remove(self._address)
            self._address = None


class serve:
    """Start a WebSocket server; ``handler(connection)`` runs for each connection.

    Use it as an async context manager (the server closes gracefully on exit)
    or await it to get the running :class:`Server`::

        async with tether.serve(echo, "127.0.0.1", 8765) as server:
            await server.serve_forever()

    ``path`` listens on a Unix socket instead of TCP; ``sock`` on an existing
    socket. ``ssl`` is an :class:`ssl.SSLContext` for ``wss://``.
    ``process_request(connection, request)`` may return a
    :class:`~tether.protocol.Response` to answer plain HTTP instead of
    upgrading (health checks, authentication), then close the connection.
    ``http_handler(connection, request, body)`` answers every request that
    does not ask for an upgrade, keeping the connection open between them
    (HTTP/1.1 keep-alive; bodies up to ``max_message_size``): static files,
    long-polling. ``process_response(connection, request, response)`` may
    change the ``101`` answer's headers before it is sent, or return another
    response (one that is not a ``101`` refuses the upgrade). ``origins`` is
    an allow-list of ``Origin`` values. ``route(connection, request)`` sees each
    request head before its body or upgrade; it returns True once it took the
    connection away (:meth:`Connection.detach`), e.g. to another process.

    ``trusted_proxies``: addresses and CIDR networks of reverse proxies
    (``["127.0.0.1", "10.0.0.0/8"]``). For connections from them, the client's
    address is taken from ``Forwarded`` (RFC 7239) or ``X-Forwarded-For``:
    :attr:`Connection.remote_address <tether.Connection.remote_address>` is the
    client's, and so is the address ``max_connections_per_ip`` counts. Off by
    default: these headers are ignored from any other peer (see
    docs/security.md, "Behind a proxy"). ``metrics``: a :class:`~tether.metrics.MetricsEndpoint`
    serves ``server.metrics`` (off by default). Limits: see :class:`tether.Limits`.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        path: str | None = None,
        sock: socket.socket | None = None,
        ssl: ssl_module.SSLContext | None = None,
        reuse_port: bool = False,
        backlog: int = 1024,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        http_handler: HTTPHandler | None = None,
        route: Route | None = None,
        subprotocols: Sequence[str] = (),
        select_subprotocol: SubprotocolSelector | None = None,
        origins: Sequence[str | None] | None = None,
        compression: Compression = "deflate",
        server_header: str | None = SERVER_NAME,
        trusted_proxies: Iterable[str] = (),
        logger: logging.Logger | None = None,
        metrics: MetricsEndpoint | None = None,
        limits: Limits | None = None,
        **options: Unpack[LimitOptions],
    ) -> None:
        self.server = Server(
            handler,
            process_request=process_request,
            process_response=process_response,
            http_handler=http_handler,
            route=route,
            subprotocols=subprotocols,
            select_subprotocol=select_subprotocol,
            origins=origins,
            compression=compression,
            server_header=server_header,
            trusted_proxies=trusted_proxies,
            limits=(limits or DEFAULT_LIMITS).replace(**options),
            logger=logger,
            metrics=metrics,
        )
        self._listen: dict[str, Any] = {
            "host": host,
            "port": port,
            "path": path,
            "sock": sock,
            "ssl": ssl,
            "reuse_port": reuse_port,
            "backlog": backlog,
        }

    async def _start(self) -> Server:
        loop = asyncio.get_running_loop()
        listen = self._listen
        factory = self.server._connection_factory
        if listen["path"] is not None:
            self.server._server = await loop.create_unix_server(
                factory,
                listen["path"],
                ssl=listen["ssl"],
                backlog=listen["backlog"],
                ssl_handshake_timeout=self._tls_timeout(),
            )
        else:
            self.server._server = await loop.create_server(
                factory,
                listen["host"],
                listen["port"],
                sock=listen["sock"],
                ssl=listen["ssl"],
                reuse_port=listen["reuse_port"] or None,
                backlog=listen["backlog"],
                ssl_handshake_timeout=self._tls_timeout(),
            )
        self.server._accept_filter.install(loop)
        self.server.metrics.lag.start()
        return self.server

    def _tls_timeout(self) -> float | None:
        # open_timeout covers the TLS handshake too (asyncio's default is 60 s).
        if self._listen["ssl"] is None:
            return None
        return self.server.limits.open_timeout

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        await self.server.wait_closed()
