"""The asyncio connection shared by the server and the client.

One :class:`Connection` is both the ``asyncio.BufferedProtocol`` the event
loop calls and the object applications use: the socket is read into one
scratch buffer per event loop, every complete frame in it is parsed in one go
by the sans-I/O core, messages wait in a bounded deque, and reading from the
socket pauses when that deque is full (``max_queue`` messages or
``max_queue_bytes``), so a fast sender cannot grow our memory.

This module holds what applications call; what the event loop and the rest
of the asyncio layer call is in its base classes (see :mod:`tether._websocket`).
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

from . import _direct
from ._http1 import VECTORED_AT
from ._websocket import Message, WebSocketStream, hotpath
from .exceptions import InvalidState
from .limits import Limits
from .protocol import connection as core
from .protocol.http import Request, Response

_UNKNOWN = -2  # Connection._fd before its first broadcast frame

# send_nowait's and send's common case in C (_hotpath.c): a str or bytes
# under VECTORED_AT, framed and queued as below, when the core's plain
# server frame applies; False, with nothing done, for every other case.
_send_plain = hotpath.send if hotpath is not None else None
# Whether the core holds received bytes back (protocol.pending_bytes), without
# the two property calls per message.
_held_back: Callable[[core.Connection], int]
_held_back = hotpath.held_back if hotpath is not None else operator.attrgetter("pending_bytes")
_OPEN = core.State.OPEN
_CLOSED = core.State.CLOSED

__all__ = ["Connection", "Message"]

Data = str | bytes | bytearray | memoryview


async def _as_async(items: Iterable[Data]) -> AsyncIterator[Data]:
    for item in items:
        yield item


class Connection(WebSocketStream):
    """An open WebSocket connection, server or client side.

    Use it with ``await recv()`` or ``async for message in connection``, and
    ``await send(message)``; ``str`` is a text message, ``bytes`` binary.
    """

    # The private state, ``transport`` and ``protocol`` are in the base
    # classes' slots.
    __slots__ = ("_fd", "is_client", "limits", "logger", "request", "response", "subprotocol")

    transport: asyncio.Transport | None
    """The asyncio transport, once the TCP (or TLS) connection is made."""
    protocol: core.Connection | None
    """The sans-I/O WebSocket connection, once the opening handshake completed."""

    request: Request | None
    """The handshake request (on the server: what the client sent)."""
    response: Response | None
    """The handshake response (on the client: what the server answered)."""
    subprotocol: str | None
    """The negotiated subprotocol, or None."""

    def __init__(
        self,
        side: core.Side,
        limits: Limits,
        logger: logging.Logger,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.limits = limits
        self.logger = logger
        self.is_client = side is core.Side.CLIENT
        self.request = None
        self.response = None
        self.subprotocol = None
        # The socket a shared broadcast frame is written to past the transport
        # when it has nothing buffered (_direct.py); -1: never; _UNKNOWN until
        # the first such write looks it up (no work, and no socket object of
        # uvloop's, for a connection that never gets a broadcast).
        self._fd = _UNKNOWN
        WebSocketStream.__init__(self, limits, loop)  # not super(): see _websocket.py

    def send_nowait(self, message: Data) -> None:
        """Send a whole message without waiting: for :class:`MessageHandler` callbacks.

        Raises :class:`ConnectionClosed` if the connection is closing or closed.
        """
        if _send_plain is not None and _send_plain(self, message, _OPEN, VECTORED_AT):
            return
        protocol = self._open_protocol()
        # Inline, as in send(): a call per message costs ~2 % of a small-message echo.
        if len(message) < VECTORED_AT:
            frame = protocol.send(message)
            self._write(frame)
            # Off by default: counting each message sent costs ~3 % of a
            # small-message echo (docs/metrics.md, "What it costs").
            if self.metrics.count_sends:
                self.metrics.sent(len(frame))
        else:
            self._send_large(protocol, message)

    def _send_large(self, protocol: core.Connection, message: Data) -> None:
        head, payload = protocol.send_vectored(message)
        self._write_parts(head, payload)
        if self.metrics.count_sends:
            self.metrics.sent(len(head) + len(payload))

    # -- reading -----------------------------------------------------------

    async def recv(self) -> Message:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`ConnectionClosedOK` or :class:`ConnectionClosedError`
        once the connection is closed and every message received before was
        read.
        """
        return await self.__anext__(False)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self, iterating: bool = True) -> Message:
        """``async for message in connection``: ends on a clean close (1000, 1001, 1005).

        The coroutine itself, not a method returning recv()'s: one Python
        call less per message on the hot path of every handler, and one
        frame less (~230 bytes) held by every idle connection. recv()
        passes ``iterating=False``: ConnectionClosedOK instead of
        StopAsyncIteration.
        """
        while True:
            messages = self._messages
            protocol = self.protocol
            if messages:
                message = messages.popleft()
                self._queued_bytes -= len(message)
                if protocol is not None and _held_back(protocol):
                    self._parse_held_back(protocol)
                # Resume reading once the backlog is down to a quarter of both
                # limits (hysteresis).
                if (
                    self._reading_paused
                    and len(messages) <= self.limits.max_queue // 4
                    and self._queued_bytes <= self.limits.max_queue_bytes // 4
                ):
                    self._resume_reading()
                return message
            if (
                self._is_closed
                and protocol is not None
                and protocol.pending_bytes
                # An incomplete frame stays pending after receive_eof(): without
                # this check a peer that left mid-frame spins this loop forever.
                and protocol.state is not core.State.CLOSED
            ):
                # The peer is gone: parse what it sent before, then report the end.
                if not self._parse_held_back(protocol):
                    protocol.receive_eof()
                continue
            # Done receiving: TCP is gone, or the core is closed.
            if self._is_closed or (protocol is not None and protocol.state is _CLOSED):
                if iterating and self._closed_ok():
                    raise StopAsyncIteration  # the exception would go unseen
                raise self._closed_exception()
            if self._recv_waiter is not None:
                raise InvalidState("another coroutine is already waiting in recv()")
            # About to sleep: whatever the handler sent in reply to the
            # messages it just read goes out now, in one write, rather than a
            # loop iteration later (request/response latency).
            if self._out:
                self.flush()
            self._recv_waiter = self._loop.create_future()
            try:
                await self._recv_waiter
            finally:
                self._recv_waiter = None

    # -- writing -----------------------------------------------------------

    def _open_protocol(self) -> core.Connection:
        protocol = self.protocol
        if protocol is None:
            raise InvalidState("the opening handshake has not completed")
        if protocol.close_sent is not None or protocol.state is core.State.CLOSED:
            raise self._closed_exception()
        return protocol

    async def send(self, message: Data | Iterable[Data] | AsyncIterable[Data]) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        An iterable or async iterable of ``str`` (or of bytes) is sent as one
        fragmented message, a frame per item. Waits while the write buffer is
        above ``write_high_water`` (backpressure).
        """
        if _send_plain is not None and _send_plain(self, message, _OPEN, VECTORED_AT):
            if self._writing_paused:
                await self._drain()
            return
        protocol = self._open_protocol()
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            if len(message) < VECTORED_AT:
                frame = protocol.send(message)
                self._write(frame)
                if self.metrics.count_sends:
                    self.metrics.sent(len(frame))
            else:
                self._send_large(protocol, message)
        elif isinstance(message, AsyncIterable):
            await self._send_fragments(message)
        elif isinstance(message, Iterable):
            await self._send_fragments(_as_async(message))
        else:
            raise TypeError(f"cannot send {type(message).__name__}")
        if self._writing_paused:
            await self._drain()

    async def _send_fragments(self, fragments: AsyncIterable[Data]) -> None:
        # One fragment of look-ahead: the last one is sent with FIN (§5.4).
        previous: Data | None = None
        async for fragment in fragments:
            if previous is not None:
                await self._send_fragment(previous, fin=False)
            previous = fragment
        if previous is not None:
            await self._send_fragment(previous, fin=True)

    async def _send_fragment(self, fragment: Data, fin: bool) -> None:
        protocol = self._open_protocol()
        assert self.transport is not None
        self._write(protocol.send_fragment(fragment, fin))
        if self._writing_paused:
            await self._drain()

    async def drain(self) -> None:
        """Wait until the write buffer is back under ``write_low_water`` (at once
        if it is not above ``write_high_water``): for code that writes with
        :meth:`send_nowait` and must not outrun a slow peer. Raises
        :class:`ConnectionClosed` if the connection closes first."""
        if self._writing_paused:
            await self._drain()

    def write_buffer_size(self) -> int:
        """Bytes written but not yet sent: queued here and in the transport's buffer."""
        return self._unsent()

    def write_shared(self, frame: bytes) -> bool:
        """Write ``frame`` (from :func:`~tether.protocol.connection.encode_broadcast_frame`)
        if this server connection takes it now: open, no fragmented message of
        its own unfinished, not above ``write_high_water``; whether it was
        written. The internal interface of a fan-out (broadcast.py, the
        realtime sessions): one call per delivery instead of send_frame's
        checks, a call each. A client connection masks its own frames: never
        written here."""
        protocol = self.protocol
        transport = self.transport
        if (
            protocol is None
            or transport is None
            or self.is_client
            # OPEN means no close frame sent yet either (the core sets both).
            or protocol.state is not core.State.OPEN
            or protocol.sending_fragmented
            or transport.is_closing()
        ):
            return False
        buffered = transport.get_write_buffer_size()
        if self._out_size + buffered > self.limits.write_high_water:
            return False
        if self._out:
            self._write(frame)  # behind what is queued
            return True
        fd = self._fd
        if fd == _UNKNOWN:
            fd = self._fd = _direct.direct_fd(transport)
        if buffered or fd < 0:
            transport.write(frame)  # at once: no flush to schedule per connection
        else:
            _direct.send_now(fd, transport, frame)  # straight to the socket
        return True

    # -- ping / keepalive --------------------------------------------------

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds."""
        protocol = self._open_protocol()
        payload = os.urandom(4) if data is None else data
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        if payload in pings:
            raise InvalidState("a ping with this payload is already waiting for its pong")
        future: asyncio.Future[float] = self._loop.create_future()
        pings[payload] = (future, time.monotonic())
        self._write(protocol.send_ping(payload))
        try:
            return await future
        finally:
            # A cancelled ping must not keep its payload reserved forever.
            entry = pings.get(payload)
            if entry is not None and entry[0] is future:
                del pings[payload]

    # -- closing -----------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start (or finish) the closing handshake and wait until TCP is closed.

        Waits at most ``close_timeout`` for the peer, then drops the connection.
        """
        protocol = self.protocol
        transport = self.transport
        if transport is None:
            return
        if protocol is None:
            transport.close()
        elif protocol.close_sent is None and protocol.state is not core.State.CLOSED:
            self._write(protocol.send_close(code, reason))
            if protocol.close_rcvd is not None:  # that completed the closing handshake
                self._closing_done(protocol)
        # Reading may be paused on a full queue; the peer's close frame is behind it.
        self._resume_reading()
        await self.wait_closed(self.limits.close_timeout)

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the TCP connection is closed; abort it after ``timeout``."""
        if self._is_closed:
            return
        timer = self._abort_after(timeout)
        try:
            # Shielded: a cancelled caller must not cancel the shared future.
            await asyncio.shield(self.closed_future())
        finally:
            if timer is not None:
                timer.cancel()

    @property
    def closed(self) -> bool:
        """Whether the TCP connection is closed."""
        return self._is_closed

    @property
    def open(self) -> bool:
        """Whether messages can be sent."""
        protocol = self.protocol
        return (
            protocol is not None
            and protocol.state is core.State.OPEN
            and protocol.close_sent is None
            and not self._is_closed
        )

    @property
    def close_code(self) -> int | None:
        """The close code received; 1006 if the connection dropped without one; None while open."""
        protocol = self.protocol
        if protocol is None or protocol.state is not core.State.CLOSED:
            return 1006 if self._is_closed else None
        return protocol.close_rcvd.code if protocol.close_rcvd is not None else 1006

    @property
    def close_reason(self) -> str | None:
        """The close reason received; None while open."""
        code = self.close_code
        if code is None:
            return None
        rcvd = self.protocol.close_rcvd if self.protocol is not None else None
        return rcvd.reason if rcvd is not None else ""

    # -- information ---------------------------------------------------------

    @property
    def path(self) -> str:
        """The request path (with query) of the handshake."""
        return self.request.path if self.request is not None else "/"

    @property
    def remote_address(self) -> Any:
        """The peer's address as the socket reports it (e.g. ``(host, port)``).

        On a server with ``trusted_proxies``, a connection from one of them
        has the client's address its ``Forwarded`` / ``X-Forwarded-For``
        header names instead, ``(host, port)`` with port 0 when not given
        (see docs/security.md, "Behind a proxy")."""
        return self.transport.get_extra_info("peername") if self.transport else None

    @property
    def local_address(self) -> Any:
        return self.transport.get_extra_info("sockname") if self.transport else None

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        state = "open" if self.open else ("closed" if self.closed else "closing")
        return f"<tether.Connection {side} {state} {self.remote_address}>"
