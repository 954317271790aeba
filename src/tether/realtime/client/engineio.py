"""One Engine.IO v4 session, client side: handshake, heartbeat, transports, upgrade.

Section names refer to https://github.com/socketio/engine.io-protocol (README).
:class:`EngineSession` opens a session over WebSocket or HTTP long-polling
(:mod:`tether.realtime.client.polling`), upgrades from polling to WebSocket when the
server offers it (§Upgrade), answers the server's pings and gives up when
none comes within ``pingInterval + pingTimeout`` (§Heartbeat). The Socket.IO
layer above (:mod:`tether.realtime.client`) sees only messages in, messages
out and one close callback with a reason.

Close reasons, as the reference client names them: ``"transport close"`` (the
server closed it), ``"transport error"``, ``"ping timeout"``, ``"parse error"``
(a malformed packet, logged) and ``"forced close"`` (we closed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as ssl_module
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ...client import connect as ws_connect
from ...connection import Connection
from ...exceptions import ConnectionClosed, PacketError, TetherError
from ...protocol.cookies import CookieJar, with_cookies
from ...protocol.proxy import ProxyOption, select_proxy
from ..protocol import engineio
from ..protocol.engineio import Handshake, Packet, PacketType
from .polling import PollingTransport

__all__ = ["TRANSPORTS", "EngineSession", "Target", "Transport", "WebSocketTransport"]

TRANSPORTS = ("polling", "websocket")
"""The transport names this client speaks (§Transports)."""

_PROBE_TIMEOUT = 10.0  # seconds for a WebSocket to open and answer the probe

OnMessage = Callable[[str | bytes], None]
OnClose = Callable[["EngineSession", str, BaseException | None], None]


class Transport(Protocol):
    """What the session needs of a transport: batches of packets in and out."""

    name: str

    async def receive(self) -> list[Packet]:
        """The next packets; raise when the transport is closed."""

    async def send(self, packets: Sequence[Packet]) -> None:
        """Send packets, in order."""

    async def close(self, *, send_close: bool = True) -> None:
        """Close; ``send_close`` sends an Engine.IO ``close`` packet first when it matters."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the Engine.IO endpoint is: from ``http(s)://`` or ``ws(s)://`` URL and a path.

    >>> Target.from_url("http://localhost:8000", "/socket.io").resource("websocket")
    '/socket.io/?EIO=4&transport=websocket'
    """

    secure: bool
    host: str
    port: int
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...] = ()
    ssl: ssl_module.SSLContext | None = None
    #: ``True``: the environment's HTTP proxy; a URL: that proxy; None/False: none.
    proxy: ProxyOption = True

    @classmethod
    def from_url(
        cls,
        url: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        ssl: ssl_module.SSLContext | None = None,
        proxy: ProxyOption = True,
    ) -> Target:
        """Parse ``url``; raise :class:`ValueError` when it is not http(s) or ws(s)."""
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http://, https://, ws:// or wss:// URL")
        secure = scheme in ("https", "wss")
        port = parts.port if parts.port is not None else (443 if secure else 80)
        if secure and ssl is None:
            ssl = ssl_module.create_default_context()
        # The reference server matches the path with a trailing slash.
        path = "/" + path.strip("/") + "/"
        query = tuple(urllib.parse.parse_qsl(parts.query))
        return cls(secure, parts.hostname, port, path, query, tuple(headers), ssl, proxy)

    def resource(self, transport: str, sid: str | None = None) -> str:
        """The path and query of a request for ``transport`` (§Transports, query parameters)."""
        query = [*self.query, ("EIO", str(engineio.PROTOCOL_VERSION)), ("transport", transport)]
        if sid is not None:
            query.append(("sid", sid))
        return self.path + "?" + urllib.parse.urlencode(query)

    def websocket_url(self, sid: str | None = None) -> str:
        """The ``ws://`` or ``wss://`` URL of the WebSocket transport."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "wss" if self.secure else "ws"
        return f"{scheme}://{host}:{self.port}{self.resource('websocket', sid)}"


class WebSocketTransport:
    """Engine.IO packets over a tether WebSocket connection, one per frame."""

    name = "websocket"

    def __init__(self, connection: Connection, max_payload: int) -> None:
        self.connection = connection
        self.max_payload = max_payload

    @classmethod
    async def open(
        cls,
        target: Target,
        sid: str | None,
        max_payload: int,
        cookies: CookieJar | None = None,
    ) -> WebSocketTransport:
        """Open the WebSocket; the first packet is the server's (open, or probe pong).

        ``cookies``: the session's jar, whose cookies go on the upgrade request
        (a sticky balancer routes it by them to the server of the session)."""
        headers = list(target.headers)
        if cookies is not None:
            resource = target.resource("websocket", sid)
            jar = cookies.header(target.host, resource, secure=target.secure, now=time.time())
            headers = with_cookies(headers, jar)
        connection = await ws_connect(
            target.websocket_url(sid),
            extra_headers=headers,
            ssl=target.ssl,
            proxy=target.proxy,
            max_message_size=max_payload,
            max_frame_size=max_payload,
            # Engine.IO runs its own heartbeat (§Heartbeat).
            ping_interval=None,
        )
        return cls(connection, max_payload)

    async def receive(self) -> list[Packet]:
        message = await self.connection.recv()
        return [engineio.decode_packet(message, max_payload=self.max_payload)]

    async def send(self, packets: Sequence[Packet]) -> None:
        for packet in packets:
            await self.connection.send(engineio.encode_packet(packet))

    async def close(self, *, send_close: bool = True) -> None:
        # Closing the WebSocket closes the session; no close packet needed.
        await self.connection.close()


class EngineSession:
    """An open Engine.IO session. Create it with :meth:`open`.

    ``on_message`` gets each ``message`` packet's data, in order; when it
    raises :class:`~tether.exceptions.PacketError` the session closes with
    ``"parse error"``. ``on_close(session, reason, exc)`` is called once.
    """

    def __init__(
        self,
        target: Target,
        transport: Transport,
        handshake: Handshake,
        *,
        on_message: OnMessage,
        on_close: OnClose,
        max_payload: int,
        logger: logging.Logger,
        cookies: CookieJar | None = None,
    ) -> None:
        self.target = target
        self.cookies = cookies
        self.transport = transport
        self.handshake = handshake
        self.max_payload = max_payload
        self.logger = logger
        self.closed = False
        self._on_message = on_message
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._out: list[Packet] = []
        self._wake_writer = asyncio.Event()
        self._sending = asyncio.Lock()
        self._flushed = asyncio.Event()  # set while nothing waits to be sent
        self._flushed.set()
        self._upgrading = False
        self._heartbeat: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        target: Target,
        transports: Sequence[str],
        *,
        on_message: OnMessage,
        on_close: OnClose,
        max_payload: int,
        logger: logging.Logger,
    ) -> EngineSession:
        """Open a session with the first of ``transports``, then upgrade to
        ``"websocket"`` if it is listed too and the server offers it."""
        transport: Transport
        cookies = CookieJar()
        if transports[0] == "websocket":
            transport = await WebSocketTransport.open(target, None, max_payload)
        else:
            scheme = "https" if target.secure else "http"
            transport = PollingTransport(
                target.host,
                target.port,
                target.resource("polling"),
                ssl=target.ssl,
                headers=target.headers,
                max_payload=max_payload,
                proxy=select_proxy(scheme, target.host, target.port, target.proxy),
                cookies=cookies,
            )
        try:
            # §Handshake: the server's first packet is "open", with its settings.
            first, *rest = await transport.receive()
            handshake = Handshake.from_packet(first)
        except BaseException:
            await _quietly_close(transport, send_close=False)
            raise
        if isinstance(transport, PollingTransport):
            transport.sid = handshake.sid
            transport.send_limit = handshake.max_payload
        session = cls(
            target,
            transport,
            handshake,
            on_message=on_message,
            on_close=on_close,
            max_payload=max_payload,
            logger=logger,
            cookies=cookies,
        )
        session._start(rest)
        upgrade = "websocket" in transports[1:] and "websocket" in handshake.upgrades
        if transport.name == "polling" and upgrade:
            session._spawn(session._upgrade())
        return session

    # -- running -------------------------------------------------------------

    def _start(self, initial: list[Packet]) -> None:
        self._reset_heartbeat()
        self._reader = self._spawn(self._read(self.transport, initial))
        self._spawn(self._write())

    def _spawn(self, coroutine: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = self._loop.create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _reset_heartbeat(self) -> None:
        # §Heartbeat: no ping within pingInterval + pingTimeout means the
        # connection is gone.
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        delay = (self.handshake.ping_interval + self.handshake.ping_timeout) / 1000
        self._heartbeat = self._loop.call_later(delay, self._fail, "ping timeout", None)

    async def _read(self, transport: Transport, packets: list[Packet]) -> None:
        try:
            while True:
                for packet in packets:
                    if not self._handle(packet):
                        return
                # A polling transport being upgraded stops here, between requests.
                if self._upgrading and transport.name == "polling":
                    return
                packets = await transport.receive()
        except PacketError as exc:
            self._fail("parse error", exc)
        except (ConnectionClosed, EOFError) as exc:
            self._fail("transport close", exc)
        except (OSError, TetherError) as exc:
            self._fail("transport error", exc)

    def _handle(self, packet: Packet) -> bool:
        """Act on one packet from the server; False once the session is over."""
        kind = packet.type
        if kind is PacketType.MESSAGE:
            try:
                self._on_message(packet.data)
            except PacketError as exc:
                self._fail("parse error", exc)
        elif kind is PacketType.PING:
            self._queue(Packet(PacketType.PONG, packet.data))
            self._reset_heartbeat()
        elif kind is PacketType.CLOSE:
            self._fail("transport close", None)
        elif kind is PacketType.OPEN:
            self._fail("parse error", PacketError("unexpected open packet after the handshake"))
        # NOOP (§Upgrade), and PONG or UPGRADE out of place: nothing to do.
        return not self.closed

    def send(self, data: str | bytes) -> None:
        """Queue a ``message`` packet; dropped once the session is closed."""
        self._queue(Packet(PacketType.MESSAGE, data))

    def _queue(self, packet: Packet) -> None:
        if self.closed:
            return
        self._out.append(packet)
        self._flushed.clear()
        self._wake_writer.set()

    async def _write(self) -> None:
        try:
            while True:
                await self._wake_writer.wait()
                self._wake_writer.clear()
                if self._upgrading or not self._out:
                    continue  # the upgrade wakes us up when it is done
                async with self._sending:
                    batch, self._out = self._out, []
                    await self.transport.send(batch)
                if not self._out:
                    self._flushed.set()
        except (ConnectionClosed, EOFError) as exc:
            self._fail("transport close", exc)
        except (OSError, TetherError) as exc:
            self._fail("transport error", exc)

    # -- upgrade (§Upgrade) --------------------------------------------------

    async def _upgrade(self) -> None:
        polling = self.transport
        try:
            websocket = await asyncio.wait_for(self._probe(), _PROBE_TIMEOUT)
        except (OSError, TetherError, EOFError, asyncio.TimeoutError) as exc:
            # The session carries on over polling, as the reference client does.
            self.logger.info("upgrade to websocket failed (%s); staying on polling", exc)
            return
        # Pause polling: no new request once the current ones end. The server
        # answers the pending GET with a noop when it sees the probe. The
        # reference client pauses after the probe, not before as the spec
        # draws it: a failed probe then costs nothing.
        self._upgrading = True
        try:
            async with self._sending:
                if self._reader is not None:
                    await asyncio.shield(self._reader)
                if self.closed:
                    await _quietly_close(websocket, send_close=False)
                    return
                await websocket.send([Packet(PacketType.UPGRADE)])
                self.transport = websocket
        except BaseException:
            await _quietly_close(websocket, send_close=False)
            raise
        finally:
            self._upgrading = False
        await _quietly_close(polling, send_close=False)
        self.logger.debug("upgraded to websocket")
        self._reader = self._spawn(self._read(websocket, []))
        self._wake_writer.set()

    async def _probe(self) -> WebSocketTransport:
        websocket = await WebSocketTransport.open(
            self.target, self.handshake.sid, self.max_payload, self.cookies
        )
        try:
            await websocket.send([engineio.PING_PROBE])
            (answer,) = await websocket.receive()
            if answer != engineio.PONG_PROBE:
                raise PacketError(f"expected the probe pong, got {answer.type.name}")
        except BaseException:
            await _quietly_close(websocket, send_close=False)
            raise
        return websocket

    # -- closing ---------------------------------------------------------------

    def _fail(self, reason: str, exc: BaseException | None) -> None:
        """End the session because of the transport or the server."""
        if self.closed:
            return
        if reason == "parse error":
            self.logger.error("malformed packet from the server, closing the session: %s", exc)
        else:
            self.logger.info("session closed: %s%s", reason, f" ({exc})" if exc else "")
        self._terminate(reason, exc, send_close=False)

    def _terminate(self, reason: str, exc: BaseException | None, *, send_close: bool) -> None:
        self.closed = True
        self._flushed.set()  # wakes close() waiting for the queue to drain
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._closing = self._loop.create_task(self._close_transport(send_close))
        self._on_close(self, reason, exc)

    async def _close_transport(self, send_close: bool) -> None:
        await _quietly_close(self.transport, send_close=send_close)

    async def close(self, timeout: float | None = None) -> None:
        """Send what is queued, then close the session (reason ``"forced close"``)."""
        if not self.closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flushed.wait(), timeout)
        if not self.closed:
            self._terminate("forced close", None, send_close=True)
        if self._closing is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._closing), timeout)


async def _quietly_close(transport: Transport, *, send_close: bool) -> None:
    with contextlib.suppress(OSError, TetherError, EOFError, asyncio.TimeoutError):
        await transport.close(send_close=send_close)
