"""A TCP connection as the asyncio layer drives it, and its HTTP/1.1 stage.

:class:`HTTPStream` is the lowest of the three classes a
:class:`tether.Connection` is made of (see :mod:`tether._websocket`): flow
control both ways (reading paused and resumed, the end-of-iteration write
queue, drain), deadlines, closing TCP, and the HTTP/1.1 stage before the
upgrade. In that stage bytes gather in a head buffer that ``server.py`` and
``client.py`` parse (:meth:`HTTPStream.read_head`, :meth:`HTTPStream.read_body`,
several requests on a keep-alive connection) until
:meth:`~tether._websocket.WebSocketStream.start` hands the rest to the
WebSocket core (RFC 6455 §4).

Its methods and attributes without a leading underscore that are not asyncio
callbacks belong to the asyncio layer's **internal interface** (see
:mod:`tether._websocket`): not tether's public API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import TypeVar

from . import _shared
from .exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from .limits import Limits
from .protocol import connection as core

__all__ = ["VECTORED_AT", "HTTPStream"]

_OK_CODES = frozenset({1000, 1001, 1005})
_Head = TypeVar("_Head")

#: From this size on a message is framed as header + payload and written with
#: writelines (vectored where the loop can: uvloop, asyncio from 3.12), so its
#: bytes are not copied into the frame first.
VECTORED_AT = 16384


class HTTPStream(asyncio.BufferedProtocol):
    """The byte stream under a :class:`tether.Connection` and its HTTP/1.1 stage.

    ``limits`` and ``logger`` are set by ``Connection``, whose reference
    documents them with ``transport`` and ``protocol``.
    """

    # Slots, not a __dict__: ~1 KiB less per connection (idle memory matters
    # at 10,000 connections).
    __slots__ = (
        "__weakref__",
        "_close_timer",
        "_closed",
        "_drain_waiter",
        "_flush_scheduled",
        "_head",
        "_head_limit",
        "_head_waiter",
        "_is_closed",
        "_loop",
        "_lost_exc",
        "_out",
        "_out_size",
        "_reading_paused",
        "_shared",
        "_writing_paused",
        "protocol",
        "timed_out",
        "transport",
    )

    limits: Limits
    logger: logging.Logger

    def __init__(self, limits: Limits, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.protocol: core.Connection | None = None
        self.transport: asyncio.Transport | None = None
        # ``loop``: the running loop, when the caller knows it. Asking for it
        # costs a getpid(2) per connection on CPython 3.11.
        self._loop = loop = asyncio.get_running_loop() if loop is None else loop
        self._shared = _shared.for_loop(loop)
        self._head = bytearray()
        # How many bytes _head may hold before reading pauses: max_header_bytes,
        # or the end of the body being read (see read_body).
        self._head_limit = limits.max_header_bytes
        # Created by the first wait for the head (_wait_head), not here: a
        # request that arrives whole in the first read never needs one.
        self._head_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # Whether TCP is closed; the future exists only once someone waits for
        # that (one future less per idle connection).
        self._is_closed = False
        self._closed: asyncio.Future[None] | None = None
        #: Whether a deadline (read_head, read_body, drained) aborted the connection.
        self.timed_out = False
        self._close_timer: asyncio.TimerHandle | None = None
        # Frames to write at the end of this loop iteration; a list only while
        # there are some (an idle connection holds none).
        self._out: list[bytes] | tuple[()] = ()
        self._out_size = 0
        self._flush_scheduled = False
        self._lost_exc: BaseException | None = None

    # -- asyncio.Protocol callbacks ----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it
        # (an annotation, not cast(): that is a Python call per connection).
        stream: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = stream
        stream.set_write_buffer_limits(
            high=self.limits.write_high_water, low=self.limits.write_low_water
        )
        if len(self._head) >= self._head_limit:
            self._pause_reading()  # preloaded up to the limit: nothing more yet

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost_exc = exc
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._is_closed = True
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- the HTTP/1.1 stage (internal interface for server.py and client.py) -

    def preload(self, data: bytes) -> None:
        """Bytes read from this connection elsewhere (by another process, before
        handing it here: :meth:`detach`), parsed before anything it sends next.
        Before ``connection_made`` only; the caller bounds them (max_header_bytes)."""
        assert self.transport is None, "preload before the connection is made"
        self._head += data

    async def detach(self, timeout: float | None = None) -> tuple[socket.socket, bytes]:
        """Stop serving this connection here and give it away: a duplicate of
        its socket and the bytes read from it but not consumed yet (the request
        head being answered and any read-ahead; at most ``max_header_bytes``).

        Part of the public API of :class:`tether.Connection`, for a ``route``
        hook of :func:`tether.serve` (which then returns True), in the HTTP
        stage only. What was written is sent first (at most ``timeout``
        seconds). Then the connection is closed here without shutting TCP
        down: the peer sees nothing, and whoever gets the duplicate (e.g.
        another process, through ``socket.send_fds``, then
        :meth:`tether.Server.handle_socket` with ``initial=`` these bytes)
        serves it on. Raises :exc:`~tether.exceptions.ConnectionClosed` if
        the connection ended first.
        """
        transport = self.transport
        if self.protocol is not None:
            raise RuntimeError("a WebSocket cannot be detached")
        if transport is not None and transport.get_extra_info("sslcontext") is not None:
            # The TLS session's state lives in this process's ssl object: the
            # raw socket alone would hand over undecryptable bytes.
            raise RuntimeError("a TLS connection cannot be detached")
        if transport is None or self._is_closed or transport.is_closing():
            raise self._closed_exception()
        # Nothing more is read here: the rest of the stream is the new owner's.
        self._pause_reading()
        if transport.get_write_buffer_size():
            # The previous answer must reach the peer before the new owner
            # writes: wait for the transport's buffer to be empty.
            transport.set_write_buffer_limits(high=0, low=0)
            if not await self.drained(timeout):
                raise self._closed_exception()
        raw = transport.get_extra_info("socket")
        duplicate = socket.socket(fileno=os.dup(raw.fileno()))
        data = bytes(self._head)
        self._head = bytearray()
        # Our descriptor closes; the socket stays open through the duplicate,
        # so no FIN nor RST is sent (close(2) without shutdown(2)).
        transport.abort()
        return duplicate, data

    @property
    def preloaded(self) -> bool:
        """Whether bytes given by :meth:`preload` wait to be parsed."""
        return bool(self._head)

    def parse_head(self, parse: Callable[..., _Head | None]) -> _Head | None:
        """``parse`` (parse_request or parse_response) on the bytes that have
        arrived, within the head limits: :meth:`read_head` without waiting."""
        limits = self.limits
        return parse(
            self._head, max_bytes=limits.max_header_bytes, max_count=limits.max_header_count
        )

    def _head_buffer(self) -> memoryview:
        """Where the next read of the handshake or of plain HTTP goes.

        Never past _head_limit, so that a client pipelining requests cannot
        make one read buffer more than the current request may need (nor
        256 KiB at a time).
        """
        scratch = self._shared.scratch
        room = self._head_limit - len(self._head)
        return scratch if room >= len(scratch) else scratch[: max(room, 1)]

    def _head_received(self, data: bytes | memoryview) -> None:
        """Handshake bytes: kept for read_head (server.py and client.py parse them)."""
        self._head += data
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if len(self._head) >= self._head_limit:
            # Enough for the request (or for the parser to reject it as too
            # large): no read-ahead past it until the server asks for more.
            self._pause_reading()

    def _read_more(self) -> None:
        """Resume reading the handshake or HTTP bytes, unless _head is full."""
        if len(self._head) < self._head_limit:
            self._resume_reading()

    async def _wait_head(self) -> None:
        """Wait for more handshake bytes (or the connection's end)."""
        self._head_waiter = self._loop.create_future()
        await self._head_waiter

    async def read_head(
        self, parse: Callable[..., _Head | None], timeout: float | None = None
    ) -> _Head | None:
        """Wait until ``parse`` (parse_request or parse_response) finds a whole
        HTTP head in what has arrived; None if the peer left first, or if it
        took over ``timeout`` (the connection is then aborted and
        :attr:`timed_out` says so). The parser raises past the head limits."""
        timer = None
        try:
            while True:
                parsed = self.parse_head(parse)
                if parsed is not None or self._is_closed:
                    return parsed
                if timer is None:
                    timer = self._abort_after(timeout)
                # The parser raises once _head reaches max_header_bytes, so
                # there is room for more: read it (paused after a keep-alive
                # request, see read_body).
                self._read_more()
                await self._wait_head()
        finally:
            if timer is not None:
                timer.cancel()

    async def read_body(self, start: int, size: int, timeout: float | None = None) -> bytes | None:
        """Wait for ``size`` bytes at ``start`` in the head buffer (a plain HTTP
        request's body, whose size the server checked first); None if the peer
        left first or ``timeout`` passed (as for :meth:`read_head`). The
        buffer is then cut past the body, ready for the next request on a
        keep-alive connection.

        Reading stops at the body's end (or max_header_bytes, if more), and
        then again once max_header_bytes of the next requests are buffered:
        a client pipelining requests faster than they are answered waits in
        its own socket buffers, and ours hold at most that much past the
        request being answered. Below it reading goes on, so that a client
        leaving while its request is held (long-polling) is noticed.
        """
        end = start + size
        timer = None
        self._head_limit = max(end, self.limits.max_header_bytes)
        try:
            while len(self._head) < end:
                if self._is_closed:
                    return None
                if timer is None:
                    timer = self._abort_after(timeout)
                self._read_more()
                await self._wait_head()
        finally:
            self._head_limit = self.limits.max_header_bytes
            if timer is not None:
                timer.cancel()
        body = bytes(self._head[start:end])
        del self._head[:end]
        self._read_more()
        return body

    async def drained(self, timeout: float | None) -> bool:
        """Wait until the write buffer is back under ``write_low_water`` (at
        once if it is not above ``write_high_water``): backpressure for plain
        HTTP answers. The connection is aborted once the peer has read nothing
        for ``timeout`` seconds (a stall, like nginx's ``send_timeout``, so a
        slow but reading client still gets a large answer). Whether it drained.
        """
        if not self._writing_paused:
            return not self._is_closed
        timer: asyncio.TimerHandle | None = None

        def check(before: int, interval: float) -> None:
            nonlocal timer
            size = self._unsent()
            if size >= before:
                self._abort_timed_out()
            else:
                timer = self._loop.call_later(interval, check, size, interval)

        if timeout is not None:
            timer = self._loop.call_later(timeout, check, self._unsent(), timeout)
        try:
            await self._drain()
        except ConnectionClosed:
            return False
        finally:
            if timer is not None:
                timer.cancel()
        return True

    def _abort_after(self, timeout: float | None) -> asyncio.TimerHandle | None:
        """Abort the connection in ``timeout`` seconds unless the timer is cancelled.

        A deadline costs one timer this way; ``asyncio.wait_for`` costs a task
        and a future more (3.11), which showed in the connection rate.
        """
        if timeout is None:
            return None
        return self._loop.call_later(timeout, self._abort_timed_out)

    def _abort_timed_out(self) -> None:
        self.timed_out = True
        if self.transport is not None:
            self.transport.abort()

    def close_transport(self, transport: asyncio.Transport, *, linger: bool = False) -> None:
        """Close TCP once what is buffered is written, or abort after ``close_timeout``.

        ``linger``: send FIN but read (and drop) what the peer still sends
        until it closes too. Closing a socket with unread bytes sends a
        reset, which may destroy what we sent last before the peer reads it
        (RFC 7230 §6.6): a 431 for a head that was not read to its end, or
        the close frame that fails a WebSocket connection (a 1009 for a frame
        whose payload is still on its way, RFC 6455 §7.1.7).
        """
        if linger and transport.can_write_eof():
            # From here on what arrives goes nowhere: no parsing, no buffering.
            transport.set_protocol(_Discard(self))
            self._head = bytearray()  # and what was read of a head is let go
            try:
                transport.write_eof()
            except OSError:  # the peer reset it already (ENOTCONN)
                transport.abort()
                return
            self._resume_reading()
        else:
            transport.close()
            if not transport.get_write_buffer_size() and not self._tls(transport):
                # Nothing left to flush: TCP closes now, no deadline needed
                # (a timer per connection showed in the connection rate).
                return
        # close() waits to flush the buffer, forever if the peer stopped
        # reading (and TLS for the peer's close_notify).
        timeout = self.limits.close_timeout
        if timeout is not None and self._close_timer is None:
            self._close_timer = self._loop.call_later(timeout, transport.abort)

    def closing_by_itself(self) -> bool:
        """Whether TCP is closed, or closing with nothing to flush or with a
        deadline (``close_transport``'s): nobody needs to wait to end it."""
        transport = self.transport
        if self._is_closed or transport is None or self._close_timer is not None:
            return True
        return (
            transport.is_closing()
            and not transport.get_write_buffer_size()
            and not self._tls(transport)
        )

    @staticmethod
    def _tls(transport: asyncio.Transport) -> bool:
        return transport.get_extra_info("sslcontext") is not None

    def closed_future(self) -> asyncio.Future[None]:
        """A future done once TCP is closed (shared: shield it before cancelling)."""
        if self._closed is None:
            self._closed = self._loop.create_future()
            if self._is_closed:
                self._closed.set_result(None)
        return self._closed

    # -- reading -----------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    # -- writing -----------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Queue ``data`` for the socket; written at the end of this loop iteration.

        A handler that answers a batch of 32 messages read in one go then costs
        one ``send`` system call instead of 32 (the biggest single cost of a
        small-message echo). Past ``write_high_water`` the queue is handed to
        the transport at once, so backpressure still sees every byte.
        """
        out = self._out
        if out:
            out.append(data)
        else:
            out = self._out = [data]
        self._out_size += len(data)
        if self._out_size > self.limits.write_high_water:
            self.flush()
        elif len(out) == 1:
            self._schedule_flush()

    def _write_parts(self, head: bytes, payload: bytes) -> None:
        """:meth:`_write` for a frame in two parts, queued together so the
        header never goes out in a packet of its own."""
        out = self._out
        if out:
            out.append(head)
            out.append(payload)
        else:
            out = self._out = [head, payload]
        self._out_size += len(head) + len(payload)
        if self._out_size > self.limits.write_high_water:
            self.flush()
        elif len(out) == 2:
            self._schedule_flush()

    def write_frames(self, data: bytes) -> None:
        """Write encoded frames (internal interface for broadcast.py): behind
        what this connection already queued, or, with nothing queued ahead,
        at once rather than schedule a flush per connection (1,000 callbacks
        for one broadcast to 1,000)."""
        if self._out:
            self._write(data)
        else:
            assert self.transport is not None
            self.transport.write(data)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._shared.flush_soon(self)

    def flush(self) -> None:
        """Hand every queued frame to the transport, in order (internal
        interface: the loop's end-of-iteration flush in _shared.py calls it)."""
        self._flush_scheduled = False
        out = self._out
        if out:
            size = self._out_size
            self._out = ()
            self._out_size = 0
            transport = self.transport
            if transport is not None and not transport.is_closing():
                if len(out) == 1:
                    transport.write(out[0])
                elif size >= VECTORED_AT:
                    # Big frames: a vectored write where the loop has one
                    # (uvloop), instead of copying them all into one buffer.
                    transport.writelines(out)
                else:
                    transport.write(b"".join(out))

    def _unsent(self) -> int:
        """Bytes written but not yet sent: queued here and in the transport's buffer."""
        if self.transport is None:
            return self._out_size
        return self._out_size + self.transport.get_write_buffer_size()

    async def _drain(self) -> None:
        while self._writing_paused and not self._is_closed:
            # One future for every coroutine waiting here (send() from two
            # tasks, drain() beside send()): a future of its own per waiter
            # would replace the one before in _drain_waiter, which nothing
            # would then resolve, not even connection_lost. Shielded, so that
            # a waiter cancelled does not cancel it for the others.
            waiter = self._drain_waiter
            if waiter is None or waiter.done():
                waiter = self._drain_waiter = self._loop.create_future()
            try:
                await asyncio.shield(waiter)
            finally:
                if waiter.done() and self._drain_waiter is waiter:
                    self._drain_waiter = None
        if self._is_closed:
            raise self._closed_exception()

    # -- closing -----------------------------------------------------------

    def _closed_ok(self) -> bool:
        """Whether the connection closed cleanly (1000, 1001 or 1005 received,
        no protocol error): what :meth:`_closed_exception` makes ConnectionClosedOK."""
        protocol = self.protocol
        if protocol is None:
            return False
        rcvd = protocol.close_rcvd
        return rcvd is not None and rcvd.code in _OK_CODES and protocol.error is None

    def _closed_exception(self) -> ConnectionClosed:
        protocol = self.protocol
        rcvd = protocol.close_rcvd if protocol is not None else None
        sent = protocol.close_sent if protocol is not None else None
        error = protocol.error if protocol is not None else None
        if self._closed_ok():
            exc: ConnectionClosed = ConnectionClosedOK(rcvd, sent)
        else:
            exc = ConnectionClosedError(rcvd, sent)
        exc.__cause__ = error or self._lost_exc
        return exc


class _Discard(asyncio.Protocol):
    """A lingering connection's protocol (:meth:`HTTPStream.close_transport`):
    it drops what the peer still sends, closes on its FIN, and tells the
    stream when TCP is gone."""

    __slots__ = ("_stream",)

    def __init__(self, stream: HTTPStream) -> None:
        self._stream = stream

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._stream.connection_lost(exc)
