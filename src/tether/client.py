"""The asyncio WebSocket client: :func:`connect`."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Generator, Sequence
from typing import TYPE_CHECKING, Any

from .connection import Connection
from .exceptions import HandshakeError, InvalidStatus, InvalidURI, ProxyError
from .limits import DEFAULT_LIMITS, Limits
from .protocol import connection as core
from .protocol.deflate import DeflateOptions, PerMessageDeflate
from .protocol.handshake import SERVER_NAME, ClientHandshake
from .protocol.http import parse_response
from .protocol.http_types import HeaderItems, Response, header_items
from .protocol.proxy import (
    Proxy,
    ProxyOption,
    connect_request,
    parse_connect_response,
    select_proxy,
)
from .protocol.uri import WebSocketURI, parse_uri
from .server import Compression, compression_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .limits import LimitOptions

__all__ = ["connect", "open_tunnel"]

_log = logging.getLogger("tether.client")

# Errors after which reconnecting may help: the network, a timeout, or a
# server-side HTTP 5xx. Anything else (bad URI, 4xx, protocol errors) is final.
_RETRYABLE = (OSError, asyncio.TimeoutError, EOFError)


async def _refusal_body(connection: Connection, response: Response, start: int) -> bytes:
    """The body of a refusal, for :class:`InvalidStatus` (what the server says
    is wrong): read when its ``Content-Length`` is at most ``max_header_bytes``
    (the one bound on what a handshake may buffer), else left empty, as is a
    chunked or unframed body."""
    length = response.headers.get("Content-Length") or ""
    if not length.isdigit() or int(length) > connection.limits.max_header_bytes:
        return b""
    return await connection.read_body(start, int(length)) or b""


class connect:
    """Open a WebSocket connection to ``uri`` (``ws://``, ``wss://`` or ``ws+unix://``).

    As an async context manager, the connection closes on exit::

        async with tether.connect("ws://127.0.0.1:8765") as connection:
            await connection.send("hello")
            print(await connection.recv())

    ``await connect(uri)`` returns the open :class:`Connection`. ``async for
    connection in connect(uri)`` reconnects after each loss, with exponential
    backoff and full jitter between ``backoff_min`` and ``backoff_max``
    seconds (``max_attempts`` failed attempts in a row end the loop).

    ``sock``: an already connected socket to use instead of opening one
    (e.g. one end of :func:`socket.socketpair`); the URI still gives the
    Host header and resource.

    ``extra_headers``: more request headers, a mapping or ``(name, value)``
    pairs (pairs may repeat a name).

    ``compression``: ``"deflate"`` (default) offers permessage-deflate,
    ``None`` turns it off, a :class:`DeflateOptions` or a sequence of them
    makes one offer each, in order of preference. Limits are keyword options,
    see :class:`tether.Limits`.

    ``proxy``: ``True`` (default) goes through the HTTP proxy of the
    environment (``https_proxy`` for ``wss://``, ``http_proxy`` for ``ws://``,
    ``all_proxy``, minus the hosts of ``no_proxy``, as curl and requests do);
    a URL such as ``"http://user:secret@proxy:3128"`` uses that proxy; ``None``
    or ``False`` connects directly whatever the environment says. The
    connection goes through an HTTP ``CONNECT`` tunnel, TLS to the server
    inside it for ``wss://``; a refusal raises :class:`tether.exceptions.ProxyError`.
    Not used with ``sock`` or ``ws+unix://``.
    """

    def __init__(
        self,
        uri: str,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] = (),
        extra_headers: HeaderItems = (),
        compression: Compression | Sequence[DeflateOptions] = "deflate",
        ssl: ssl_module.SSLContext | bool | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
        user_agent: str | None = SERVER_NAME,
        proxy: ProxyOption = True,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        backoff_factor: float = 2.0,
        max_attempts: int | None = None,
        logger: logging.Logger | None = None,
        limits: Limits | None = None,
        **options: Unpack[LimitOptions],
    ) -> None:
        self.uri: WebSocketURI = parse_uri(uri)
        self.limits = (limits or DEFAULT_LIMITS).replace(**options)
        self.origin = origin
        self.subprotocols = list(subprotocols)
        self.extra_headers = header_items(extra_headers)
        if isinstance(compression, (list, tuple)):
            self.offers: list[DeflateOptions] = list(compression)
        else:
            single = compression_options(compression)  # type: ignore[arg-type]
            self.offers = [single] if single is not None else []
        if ssl is None or ssl is True:
            ssl = ssl_module.create_default_context() if self.uri.secure else None
        elif ssl is False:
            ssl = None
        if ssl is not None and not self.uri.secure and self.uri.unix_path is None:
            raise InvalidURI("an SSL context was given for a ws:// URI; use wss://")
        self.ssl: ssl_module.SSLContext | None = ssl
        self.server_hostname = server_hostname
        self.sock = sock
        self.user_agent = user_agent
        self.proxy: Proxy | None = None
        if sock is None and self.uri.unix_path is None:
            scheme = "wss" if self.uri.secure else "ws"
            self.proxy = select_proxy(scheme, self.uri.host, self.uri.port, proxy)
        self.backoff = (backoff_min, backoff_max, backoff_factor)
        self.max_attempts = max_attempts
        self.logger = logger or _log
        self.connection: Connection | None = None

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        uri = self.uri
        limits = self.limits

        def factory() -> Connection:
            return Connection(core.Side.CLIENT, limits, self.logger)

        sock = self.sock
        if self.proxy is not None:
            sock = await open_tunnel(self.proxy, uri.host, uri.port, limits)
        if sock is not None:
            _, connection = await loop.create_connection(
                factory,
                sock=sock,
                ssl=self.ssl,
                server_hostname=(self.server_hostname or uri.host) if self.ssl else None,
            )
        elif uri.unix_path is not None:
            _, connection = await loop.create_unix_connection(
                factory,
                uri.unix_path,
                ssl=self.ssl,
                server_hostname=self.server_hostname if self.ssl else None,
            )
        else:
            _, connection = await loop.create_connection(
                factory,
                uri.host,
                uri.port,
                ssl=self.ssl,
                server_hostname=(self.server_hostname or uri.host) if self.ssl else None,
            )
        try:
            await self._handshake(connection)
        except BaseException:
            if connection.transport is not None:
                connection.transport.abort()
            raise
        return connection

    async def _handshake(self, connection: Connection) -> None:
        uri = self.uri
        handshake = ClientHandshake(
            host=uri.host_header,
            path=uri.resource,
            origin=self.origin,
            subprotocols=self.subprotocols,
            compression=self.offers,
            extra_headers=self.extra_headers,
            user_agent=self.user_agent,
        )
        connection.request = handshake.request
        assert connection.transport is not None
        connection.transport.write(handshake.request.encode())
        limits = self.limits
        parsed = await connection.read_head(parse_response)
        if parsed is None:
            raise EOFError("connection closed during the opening handshake")
        response, used = parsed
        connection.response = response
        if response.status != 101:
            response.body = await _refusal_body(connection, response, used)
        result = handshake.check(response)
        deflate = None
        if result.deflate is not None:
            assert result.deflate_offer is not None
            deflate = PerMessageDeflate(
                result.deflate, is_client=True, options=result.deflate_offer
            )
        connection.subprotocol = result.subprotocol
        protocol = core.Connection(core.Side.CLIENT, limits=limits, deflate=deflate)
        connection.start(protocol, used)

    async def _connect(self) -> Connection:
        timeout = self.limits.open_timeout
        self.connection = await asyncio.wait_for(self._open(), timeout)
        return self.connection

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._connect().__await__()

    async def __aenter__(self) -> Connection:
        return await self._connect()

    async def __aexit__(self, *exc_info: object) -> None:
        if self.connection is not None:
            await self.connection.close()

    def __aiter__(self) -> AsyncIterator[Connection]:
        return self._reconnecting()

    def _delays(self) -> Generator[float, None, None]:
        low, high, factor = self.backoff
        delay = low
        while True:
            # Full jitter: spreads reconnecting clients after a server restart.
            yield random.uniform(0, delay)
            delay = min(high, delay * factor)

    async def _reconnecting(self) -> AsyncIterator[Connection]:
        delays = self._delays()
        failures = 0
        last_error: BaseException | None = None
        while True:
            try:
                connection = await self._connect()
            except InvalidStatus as exc:
                if exc.response.status < 500:
                    raise
                failures += 1
                last_error = exc
                self.logger.info("server answered %d; reconnecting", exc.response.status)
            except ProxyError as exc:
                # A 4xx (credentials, a forbidden port) stays wrong on retry;
                # a 5xx (the proxy could not reach the server) or a dropped
                # connection may not.
                if exc.status is not None and exc.status < 500:
                    raise
                failures += 1
                last_error = exc
                self.logger.info("%s; reconnecting", exc)
            except HandshakeError:
                raise
            except _RETRYABLE as exc:
                failures += 1
                last_error = exc
                self.logger.info("connection failed (%s); reconnecting", exc)
            else:
                failures = 0
                delays = self._delays()
                try:
                    yield connection
                finally:
                    if not connection.closed:
                        await connection.close()
                continue
            if self.max_attempts is not None and failures >= self.max_attempts:
                # The last failure is the most useful thing to show the caller.
                assert last_error is not None
                self.logger.warning("giving up after %d attempts", failures)
                raise last_error
            await asyncio.sleep(next(delays))


async def open_tunnel(
    proxy: Proxy, host: str, port: int, limits: Limits = DEFAULT_LIMITS
) -> socket.socket:
    """Open a TCP connection to ``proxy`` and a ``CONNECT`` tunnel through it to
    ``host:port`` (RFC 9110 §9.3.6); return the socket, ready for TLS or HTTP.

    The proxy's answer is bounded by ``limits.max_header_bytes`` and
    ``max_header_count``; callers bound the time (the open timeout).
    Raises :class:`ProxyError` when the proxy refuses or misbehaves, and
    :class:`OSError` when it cannot be reached.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            break
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    else:
        raise error or OSError(f"cannot resolve proxy {proxy.url}")
    try:
        await loop.sock_sendall(sock, connect_request(host, port, proxy))
        buf = bytearray()
        while True:
            # Read no more than the head can still take: a 2xx answer to
            # CONNECT has no body (§9.3.6), and the server does not speak
            # first (WebSocket and TLS clients do), so nothing follows it.
            data = await loop.sock_recv(sock, max(1, limits.max_header_bytes - len(buf)))
            if not data:
                raise ProxyError(
                    f"proxy {proxy.url} closed the connection before answering CONNECT",
                    proxy.url,
                )
            buf += data
            used = parse_connect_response(
                buf,
                proxy,
                max_bytes=limits.max_header_bytes,
                max_count=limits.max_header_count,
            )
            if used is not None:
                break
        if used != len(buf):
            raise ProxyError(f"proxy {proxy.url} sent data after its CONNECT answer", proxy.url)
    except BaseException:
        sock.close()
        raise
    return sock
