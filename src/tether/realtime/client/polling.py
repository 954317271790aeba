"""The client side of Engine.IO's HTTP long-polling transport, on a minimal HTTP/1.1 client.

§Transports, HTTP long-polling, of https://github.com/socketio/engine.io-protocol:
the client receives with ``GET`` requests the server holds open until it has
packets for it, and sends with ``POST`` requests, each body a payload
(:func:`~tether.realtime.protocol.engineio.encode_payload`). At most one of each is in
flight at a time: the reference server closes a session that overlaps them.

The HTTP client only does what that needs: ``GET`` and ``POST`` with small
bodies, ``Content-Length``, chunked or read-to-close responses, and keep-alive
over at most two idle connections (one for the pending ``GET``, one for
``POST`` requests). Response heads are parsed by
:func:`tether.protocol.http.parse_response`.

Through an HTTP proxy, ``https://`` goes through a ``CONNECT`` tunnel
(:func:`tether.client.open_tunnel`, TLS to the server inside it), while plain
``http://`` sends each request to the proxy in absolute-form (RFC 9112
§3.2.2: ``GET http://host:port/path HTTP/1.1``), as curl, requests and
browsers do: proxies commonly allow ``CONNECT`` to port 443 only, so the
session then still works over polling where a tunnel to port 80 would be
refused (the WebSocket upgrade, which needs a tunnel, then fails and the
session stays on polling, as the reference client does).

Cookies the server sets (a sticky balancer's, or the ``io`` sid cookie)
are kept in a :class:`~tether.protocol.cookies.CookieJar` and sent back on
every later request of the session, and on its WebSocket upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl as ssl_module
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ...client import open_tunnel
from ...exceptions import HandshakeError, PacketError, ProxyError
from ...limits import DEFAULT_LIMITS
from ...protocol.cookies import CookieJar, with_cookies
from ...protocol.http import Response, parse_response
from ...protocol.proxy import Proxy
from ..protocol import engineio
from ..protocol.engineio import Packet

__all__ = ["HTTPClient", "HTTPResponse", "PollingTransport"]

_log = logging.getLogger("tether.realtime.client.polling")

# Bounds of a response head, as for a WebSocket handshake response.
_MAX_HEAD_BYTES = 16 * 1024
_MAX_HEADER_COUNT = 128
_MAX_IDLE = 2  # one connection for the long-lived GET, one for POST requests
_CHUNK_LINE_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A response: its head (status and headers) and its whole body."""

    head: Response
    body: bytes

    @property
    def status(self) -> int:
        """The status code."""
        return self.head.status


class _Connection:
    """One TCP (or TLS) connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class HTTPClient:
    """A minimal HTTP/1.1 client for one server, with keep-alive.

    Bodies are refused when over ``max_body`` bytes, checked on
    ``Content-Length`` (or as chunks arrive) before they are read.
    ``proxy``: the HTTP proxy to go through (see the module's docstring);
    ``cookies``: the jar that keeps the server's cookies (a new one if None).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        headers: Sequence[tuple[str, str]] = (),
        max_body: int,
        proxy: Proxy | None = None,
        cookies: CookieJar | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.headers = list(headers)
        self.max_body = max_body
        self.proxy = proxy
        self.cookies = cookies if cookies is not None else CookieJar()
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        default_port = 443 if ssl is not None else 80
        name = f"[{host}]" if ":" in host else host
        self.host_header = name if port == default_port else f"{name}:{port}"

    async def request(
        self, method: str, target: str, body: bytes | None = None, content_type: str = ""
    ) -> HTTPResponse:
        """Send one request and read its whole response.

        A request on a reused keep-alive connection that the server had
        already closed is sent again once on a new connection.
        """
        connection = await self._acquire()
        try:
            try:
                return await self._exchange(connection, method, target, body, content_type)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if not connection.reused or _got_bytes(exc):
                    raise
            # The server closed the idle connection before reading our request.
            connection.close()
            self._busy.discard(connection)
            connection = await self._acquire(fresh=True)
            return await self._exchange(connection, method, target, body, content_type)
        except BaseException:
            connection.close()
            self._busy.discard(connection)
            raise

    async def _acquire(self, *, fresh: bool = False) -> _Connection:
        while self._idle and not fresh:
            connection = self._idle.pop()
            if connection.usable():
                connection.reused = True
                self._busy.add(connection)
                return connection
            connection.close()
        reader, writer = await self._open()
        connection = _Connection(reader, writer)
        self._busy.add(connection)
        return connection

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        server_hostname = self.host if self.ssl is not None else None
        if self.proxy is None:
            return await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl, server_hostname=server_hostname
            )
        if self.ssl is None:  # absolute-form requests to the proxy itself
            return await asyncio.open_connection(self.proxy.host, self.proxy.port)
        limits = DEFAULT_LIMITS
        sock = await asyncio.wait_for(
            open_tunnel(self.proxy, self.host, self.port, limits), limits.open_timeout
        )
        try:
            return await asyncio.open_connection(
                sock=sock, ssl=self.ssl, server_hostname=server_hostname
            )
        except BaseException:
            sock.close()
            raise

    def _request_head(
        self, method: str, target: str, body: bytes | None, content_type: str
    ) -> bytes:
        request_target = target
        lines = []
        if self.proxy is not None and self.ssl is None:
            # RFC 9112 §3.2.2: absolute-form, and the proxy's credentials on
            # every request (RFC 9110 §11.7.2).
            request_target = f"http://{self.host_header}{target}"
            credentials = self.proxy.authorization()
            if credentials is not None:
                lines.append(f"Proxy-Authorization: {credentials}")
        lines[:0] = [f"{method} {request_target} HTTP/1.1", f"Host: {self.host_header}"]
        lines.append("Accept: */*")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
            if content_type:
                lines.append(f"Content-Type: {content_type}")
        cookies = self.cookies.header(
            self.host, target, secure=self.ssl is not None, now=time.time()
        )
        headers = with_cookies(self.headers, cookies)
        lines.extend(f"{name}: {value}" for name, value in headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _release(self, connection: _Connection, keep_alive: bool) -> None:
        self._busy.discard(connection)
        if keep_alive and connection.usable() and len(self._idle) < _MAX_IDLE:
            self._idle.append(connection)
        else:
            connection.close()

    async def _exchange(
        self,
        connection: _Connection,
        method: str,
        target: str,
        body: bytes | None,
        content_type: str,
    ) -> HTTPResponse:
        head = self._request_head(method, target, body, content_type)
        connection.writer.write(head + (body or b""))
        await connection.writer.drain()
        response, keep_alive = await self._read_response(connection.reader)
        if self.proxy is not None and self.ssl is None and response.status == 407:
            raise ProxyError(
                f"proxy {self.proxy.url} refused the request: HTTP 407 {response.head.reason}",
                self.proxy.url,
                response.head,
            )
        self.cookies.store(
            response.head.headers.get_all("Set-Cookie"), self.host, target, now=time.time()
        )
        self._release(connection, keep_alive)
        return response

    async def _read_response(self, reader: asyncio.StreamReader) -> tuple[HTTPResponse, bool]:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HandshakeError("HTTP response head too large") from None
        parsed = parse_response(raw, max_bytes=_MAX_HEAD_BYTES, max_count=_MAX_HEADER_COUNT)
        if parsed is None:  # readuntil stopped at the separator, so the head is whole
            raise HandshakeError("HTTP response head too large")
        head, _ = parsed
        keep_alive = "close" not in head.headers.tokens("Connection")
        length = head.headers.get("Content-Length")
        if "chunked" in head.headers.tokens("Transfer-Encoding"):
            body = await self._read_chunked(reader)
        elif length is not None:
            if not length.isdigit():
                raise HandshakeError(f"invalid Content-Length {length[:20]!r}")
            size = int(length)
            self._check_size(size)
            body = await reader.readexactly(size)
        else:
            # RFC 9112 §6.3: no length, so the body runs to the end of the connection.
            body = await reader.read(self.max_body + 1)
            while len(body) <= self.max_body and (more := await reader.read(self.max_body + 1)):
                body += more
            self._check_size(len(body))
            keep_alive = False
        return HTTPResponse(head, body), keep_alive

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        # RFC 9112 §7.1: chunk-size [extensions] CRLF data CRLF ... 0 CRLF trailers CRLF.
        body = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            if len(line) > _CHUNK_LINE_LIMIT:
                raise HandshakeError("HTTP chunk size line too long")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HandshakeError(f"invalid HTTP chunk size {size_text[:20]!r}") from None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                    pass
                return bytes(body)
            self._check_size(len(body) + size)
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise HandshakeError("HTTP chunk not followed by CRLF")

    def _check_size(self, size: int) -> None:
        if size > self.max_body:
            raise PacketError(
                f"HTTP response body of {size} bytes exceeds the limit of {self.max_body} bytes"
            )

    def close(self) -> None:
        """Close every connection, idle or in use (which fails its request)."""
        for connection in [*self._idle, *self._busy]:
            connection.close()
        self._idle.clear()
        self._busy.clear()


def _got_bytes(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.IncompleteReadError) and bool(exc.partial)


class PollingTransport:
    """Engine.IO packets over HTTP long-polling (§Transports, HTTP long-polling).

    ``resource`` is the path and query of the Engine.IO endpoint, ``EIO`` and
    ``transport`` included; the ``sid`` is added once the handshake gave one.
    ``max_payload`` bounds what we read; ``send_limit`` (the server's
    ``maxPayload`` from the handshake) is how large a body we send.
    """

    name = "polling"

    def __init__(
        self,
        host: str,
        port: int,
        resource: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        headers: Sequence[tuple[str, str]] = (),
        max_payload: int,
        proxy: Proxy | None = None,
        cookies: CookieJar | None = None,
    ) -> None:
        self.resource = resource
        self.sid: str | None = None
        self.send_limit: int | None = None
        self.max_payload = max_payload
        self._http = HTTPClient(
            host,
            port,
            ssl=ssl,
            headers=headers,
            max_body=max_payload,
            proxy=proxy,
            cookies=cookies,
        )

    def _target(self) -> str:
        target = self.resource
        if self.sid is not None:
            target += f"&sid={self.sid}"
        # Cache busting, as the reference client does ("t" parameter).
        return f"{target}&t={secrets.token_urlsafe(6)}"

    async def receive(self) -> list[Packet]:
        """One ``GET``: the packets the server had, or waited for, as a batch."""
        response = await self._http.request("GET", self._target())
        self._check(response)
        return engineio.decode_payload(response.body, max_payload=self.max_payload)

    async def send(self, packets: Sequence[Packet]) -> None:
        """``POST`` the packets, in as many bodies as the server's ``maxPayload`` asks."""
        for batch in _batches(packets, self.send_limit):
            body = engineio.encode_payload(batch).encode("utf-8")
            response = await self._http.request(
                "POST", self._target(), body, "text/plain;charset=UTF-8"
            )
            self._check(response)

    async def close(self, *, send_close: bool = True) -> None:
        """End the session: a ``close`` packet if asked (best effort), then the connections."""
        try:
            if send_close and self.sid is not None:
                with contextlib.suppress(OSError, asyncio.IncompleteReadError, HandshakeError):
                    await self.send([Packet(engineio.PacketType.CLOSE)])
        finally:
            self._http.close()

    def _check(self, response: HTTPResponse) -> None:
        if response.status != 200:
            # The reference server explains itself in a JSON body, e.g.
            # {"code":1,"message":"Session ID unknown"}.
            excerpt = response.body[:200].decode("utf-8", "replace")
            proxy = self._http.proxy
            # Through a proxy in absolute-form, the answer may be the proxy's own.
            via = f" (through proxy {proxy.url})" if proxy and self._http.ssl is None else ""
            raise HandshakeError(
                f"long-polling request answered HTTP {response.status}{via}: {excerpt}"
            )


def _batches(packets: Sequence[Packet], limit: int | None) -> list[list[Packet]]:
    """Split ``packets`` so that each payload stays under ``limit`` bytes, as the
    reference client does (§Packet encoding: the client "SHOULD use the maxPayload
    value ... to decide how many packets should be concatenated")."""
    if limit is None:
        return [list(packets)]
    batches: list[list[Packet]] = [[]]
    size = 0
    for packet in packets:
        data = packet.data
        # Type character or "b", the data (base64 for bytes), the separator.
        if isinstance(data, bytes):
            cost = 2 + (len(data) + 2) // 3 * 4
        else:
            cost = 2 + (len(data) if data.isascii() else len(data.encode("utf-8")))
        if batches[-1] and size + cost > limit:
            batches.append([])
            size = 0
        batches[-1].append(packet)
        size += cost
    return batches
