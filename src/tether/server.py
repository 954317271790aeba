"""The asyncio WebSocket server: :func:`serve` and :class:`Server`."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._accept import AcceptFailureFilter
from ._serving import Serving
from .connection import Connection
from .limits import DEFAULT_LIMITS, Limits
from .metrics import MetricsEndpoint, WebSocketMetrics
from .protocol.deflate import DeflateOptions
from .protocol.forwarded import TrustedProxies
from .protocol.handshake import SERVER_NAME, ServerHandshake, SubprotocolSelector
from .protocol.http import Request, Response
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
        # Each connection's handshake and handler (_serving.py).
        self._serving = Serving(self)
        self._server: asyncio.AbstractServer | None = None
        # accept() failures (EMFILE...): one log line per interval, with counts.
        self._accept_filter = AcceptFailureFilter(self.logger, lambda: self.sockets)

    # -- lifecycle ---------------------------------------------------------

    def _connection_factory(
        self, loop: asyncio.AbstractEventLoop, initial: bytes = b""
    ) -> Callable[[], Connection]:
        """The protocol factory of connections made on ``loop`` (told, not
        asked at each connection: a getpid(2) each on CPython 3.11)."""
        return functools.partial(self._serving.factory, initial, loop)

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
        serving = self._serving
        if serving.closing:
            return
        serving.closing = True
        self.metrics.lag.stop()
        if self._server is not None:
            self._server.close()
        self._accept_filter.uninstall()
        for connection in list(serving.idle):
            if connection.transport is not None:
                connection.transport.close()
        for connection in list(self.connections):
            connection.start_closing(code, reason)

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait for every connection and handler to finish, at most ``timeout``
        (``close_timeout`` by default); then cancel handlers and drop connections."""
        if timeout is None:
            timeout = self.limits.close_timeout
        serving = self._serving
        tasks = set(serving.tasks)
        untasked = {connection.closed_future() for connection in serving.untasked}
        if tasks or untasked:
            _, pending = await asyncio.wait(tasks | untasked, timeout=timeout)
            stuck = tasks & pending
            for task in stuck:
                task.cancel()
            for connection in [*self.connections, *serving.untasked]:
                if connection.transport is not None:
                    connection.transport.abort()
            # Aborted connections are lost at the next iteration (a
            # MessageHandler's on_close runs then): wait for that too.
            if stuck or untasked & pending:
                await asyncio.wait(stuck | (untasked & pending))
            # All done now; a handler's task cancelled before it started
            # never ran the code that takes it out (Serving._run).
            serving.tasks.difference_update(tasks)
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
        loop = asyncio.get_running_loop()
        factory = self._connection_factory(loop, initial)
        await loop.connect_accepted_socket(factory, sock, ssl=ssl)

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
        factory = self.server._connection_factory(loop)
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
