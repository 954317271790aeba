"""The asyncio connection shared by the server and the client.

One :class:`Connection` is both the ``asyncio.BufferedProtocol`` the event
loop calls and the object applications use: the socket is read into one
scratch buffer per event loop, every complete frame in it is parsed in one go
by the sans-I/O core, messages wait in a bounded deque, and reading from the
socket pauses when that deque is full (``max_queue`` messages or
``max_queue_bytes``), so a fast sender cannot grow our memory.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _shared
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
)
from .limits import Limits
from .protocol import connection as core
from .protocol.events import Close, Pong
from .protocol.http import Request, Response
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from .handlers import MessageHandler

__all__ = ["Connection", "Message"]

Message = str | bytes
Data = str | bytes | bytearray | memoryview

_OK_CODES = frozenset({1000, 1001, 1005})
_Head = TypeVar("_Head")


async def _as_async(items: Iterable[Data]) -> AsyncIterator[Data]:
    for item in items:
        yield item


class _NoMessages(collections.deque):  # type: ignore[type-arg]
    """The queue of every connection that never had a message wait: shared, so
    it must stay empty; appending is a bug, not a silent drop."""

    def append(self, item: object) -> None:
        raise AssertionError("the shared empty message queue cannot hold messages")


_NO_MESSAGES: collections.deque[Message] = _NoMessages()

# From this size on a message is framed as header + payload and written with
# writelines (vectored where the loop can: uvloop, asyncio from 3.12), so its
# bytes are not copied into the frame first.
_VECTORED_AT = 16384


class Connection(asyncio.BufferedProtocol):
    """An open WebSocket connection, server or client side.

    Use it with ``await recv()`` or ``async for message in connection``, and
    ``await send(message)``; ``str`` is a text message, ``bytes`` binary.
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
        "_keepalive",
        "_keepalive_payload",
        "_lingering",
        "_listener",
        "_loop",
        "_lost_exc",
        "_messages",
        "_out",
        "_out_size",
        "_pings",
        "_queued_bytes",
        "_rate",
        "_reading_paused",
        "_recv_waiter",
        "_shared",
        "_timed_out",
        "_writing_paused",
        "is_client",
        "limits",
        "logger",
        "protocol",
        "request",
        "response",
        "subprotocol",
        "transport",
    )

    request: Request | None
    """The handshake request (on the server: what the client sent)."""
    response: Response | None
    """The handshake response (on the client: what the server answered)."""
    subprotocol: str | None
    """The negotiated subprotocol, or None."""

    def __init__(self, side: core.Side, limits: Limits, logger: logging.Logger) -> None:
        self.limits = limits
        self.logger = logger
        self.is_client = side is core.Side.CLIENT
        self.request = None
        self.response = None
        self.subprotocol = None
        self.protocol: core.Connection | None = None
        self.transport: asyncio.Transport | None = None
        self._loop = loop = asyncio.get_running_loop()
        self._shared = _shared.for_loop(loop)
        self._head = bytearray()
        # How many bytes _head may hold before reading pauses: max_header_bytes,
        # or the end of the body being read (see _read_body).
        self._head_limit = limits.max_header_bytes
        # Whether an HTTP answer that ends the connection was sent and what
        # still arrives is read and dropped (see _close_transport).
        self._lingering = False
        self._head_waiter: asyncio.Future[None] | None = self._loop.create_future()
        # Shared and empty until a message must wait (an idle connection then
        # holds no deque block of its own, ~600 bytes); see _queue().
        self._messages: collections.deque[Message] = _NO_MESSAGES
        # Their size (len(): bytes, or characters of text), for max_queue_bytes.
        self._queued_bytes = 0
        self._recv_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        rate = limits.max_messages_per_second
        self._rate = None if rate is None else TokenBucket(rate)
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # Whether TCP is closed; the future exists only once someone waits for
        # that (one future less per idle connection).
        self._is_closed = False
        self._closed: asyncio.Future[None] | None = None
        # Whether a deadline (_abort_after) aborted the connection.
        self._timed_out = False
        # Pings waiting for their pong; a dict only once ping() is used.
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] | None = None
        # The keepalive deadline (see _shared.LoopShared.schedule), or None.
        self._keepalive: float | None = None
        self._keepalive_payload: bytes | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        # Frames to write at the end of this loop iteration; a list only while
        # there are some (an idle connection holds none).
        self._out: list[bytes] | tuple[()] = ()
        self._listener: MessageHandler | None = None
        self._out_size = 0
        self._flush_scheduled = False
        self._lost_exc: BaseException | None = None

    # -- asyncio.Protocol callbacks ----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(
            high=self.limits.write_high_water, low=self.limits.write_low_water
        )

    def get_buffer(self, sizehint: int) -> memoryview:
        protocol = self.protocol
        if protocol is None:
            # Handshake or plain HTTP: never read past _head_limit, so that a
            # client pipelining requests cannot make one read buffer more
            # than the current request may need (nor 256 KiB at a time).
            scratch = self._shared.scratch
            room = self._head_limit - len(self._head)
            return scratch if room >= len(scratch) else scratch[: max(room, 1)]
        return protocol.get_buffer(self._shared.scratch)

    def buffer_updated(self, nbytes: int) -> None:
        protocol = self.protocol
        if protocol is None:
            self._head_received(self._shared.scratch[:nbytes])
            return
        self._after_receive(protocol, self._feed(protocol, b"", nbytes))

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol is None:
            self._head_received(data)
            return
        self._after_receive(protocol, self._feed(protocol, data))

    def _head_received(self, data: bytes | memoryview) -> None:
        """Handshake bytes: kept for _read_head (server.py and client.py parse them)."""
        if self._lingering:
            return
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

    def _feed(self, protocol: core.Connection, data: bytes, nbytes: int = -1) -> bool:
        """Parse ``data`` and held-back bytes into the queue; return whether anything came.

        The core completes at most as many messages as the queue has room for,
        in number and in bytes, so one socket read of tiny compressed frames
        cannot inflate into hundreds of messages or megabytes; the rest waits,
        unparsed, until recv() makes room.
        ``nbytes`` >= 0: the new bytes are that many in the scratch buffer
        (buffer_updated), not ``data``.
        """
        limit = self.limits.max_queue
        max_bytes = self.limits.max_queue_bytes
        messages = self._messages
        listener = self._listener
        got = False
        while True:
            closing = protocol.close_sent is not None
            room = limit - len(messages)
            budget = max_bytes - self._queued_bytes
            if closing:
                room = max(room, 1)
                budget = max(budget, 1)
            if nbytes >= 0:
                events = protocol.buffer_updated(self._shared.scratch, nbytes, room, budget)
                nbytes = -1
            else:
                events = protocol.receive_data(data, room, budget)
                data = b""
            if self._rate is not None and events and not self._rate_allows(events):
                return got
            for event in events:
                if isinstance(event, (str, bytes)):
                    if listener is not None and not self._writing_paused and not messages:
                        self._deliver(listener, event)
                    # After our close frame, reading goes on to reach the peer's
                    # reply, so keep at most max_queue messages and drop the rest.
                    elif not closing or (len(messages) < limit and self._queued_bytes < max_bytes):
                        if messages is _NO_MESSAGES:
                            messages = self._messages = collections.deque()
                        messages.append(event)
                        self._queued_bytes += len(event)
                elif isinstance(event, Pong):
                    self._pong_received(event.payload)
                elif isinstance(event, Close):
                    self.logger.debug("close frame received: %s %s", event.code, event.reason)
            got = got or bool(events)
            # Keep parsing what the room limit held back when nothing else will:
            # while closing, or when messages go straight to a listener.
            if not (
                (closing or (listener is not None and not self._writing_paused))
                and events
                and protocol.pending_bytes
            ):
                return got

    def _rate_allows(self, events: list[Any]) -> bool:
        """``max_messages_per_second``: fail the connection with 1008 (policy) past it."""
        assert self._rate is not None
        if self._rate.take(sum(isinstance(event, (str, bytes)) for event in events)):
            return True
        self.logger.info("message rate limit exceeded; failing the connection")
        self._fail(1008, "message rate limit exceeded")
        return False

    def _listen(self, listener: MessageHandler) -> None:
        """Deliver messages to ``listener`` from now on (see :class:`MessageHandler`)."""
        self._listener = listener
        self._deliver_queued(listener)

    def _deliver_queued(self, listener: MessageHandler) -> None:
        """Hand queued messages to the listener while the peer keeps reading our replies.

        Messages parsed while writing was paused wait in the queue (at most
        max_queue of them, as for recv()); they go out first, in order.
        """
        messages = self._messages
        while messages and not self._writing_paused:
            message = messages.popleft()
            self._queued_bytes -= len(message)
            self._deliver(listener, message)
        protocol = self.protocol
        if not self._writing_paused and protocol is not None and protocol.pending_bytes:
            self._parse_held_back(protocol)
        if not self._writing_paused and not messages:
            self._resume_reading()

    def _deliver(self, listener: MessageHandler, message: Message) -> None:
        try:
            listener.on_message(self, message)
        except ConnectionClosed:
            pass  # a reply raced with the close: nothing more to do
        except Exception:
            self.logger.exception("on_message failed")
            self._fail(1011, "internal error")

    def send_nowait(self, message: Data) -> None:
        """Send a whole message without waiting: for :class:`MessageHandler` callbacks.

        Raises :class:`ConnectionClosed` if the connection is closing or closed.
        """
        protocol = self._open_protocol()
        if len(message) < _VECTORED_AT:
            self._write(protocol.send(message))
        else:
            self._write_parts(*protocol.send_vectored(message))

    def _after_receive(self, protocol: core.Connection, wake: bool) -> None:
        if self._listener is not None and self._out:
            self._flush()  # the callbacks' replies to this read, in one write
        out = protocol.data_to_send()
        transport = self.transport
        assert transport is not None
        if out:
            if self._out:
                self._out.extend(out)
            else:
                self._out = out
            self._schedule_flush()
            if self._writing_paused and protocol.close_sent is None:
                # Automatic answers (pongs) to a peer that does not read them:
                # stop reading it until it does (resume_writing), or a ping
                # flood grows our write buffer without bound.
                self._pause_reading()
        if protocol.state is core.State.CLOSED:
            if protocol.error is not None:
                self.logger.info("failing connection: %s", protocol.error)
            self._closing_done(protocol)
        elif protocol.close_sent is None and self._queue_full():
            self._pause_reading()
        if wake or protocol.state is core.State.CLOSED:
            self._wake_reader()

    def _queue_full(self) -> bool:
        """Whether max_queue or max_queue_bytes is reached (reading then pauses)."""
        limits = self.limits
        return (
            len(self._messages) >= limits.max_queue or self._queued_bytes >= limits.max_queue_bytes
        )

    def _closing_done(self, protocol: core.Connection) -> None:
        """The closing handshake completed or the connection failed (§7.1.1)."""
        self._cancel_keepalive()
        transport = self.transport
        assert transport is not None
        if protocol.close_transport:
            self._flush()
            transport.close()  # flushes what is buffered first
        elif self._close_timer is None:
            # A client waits for the server to close TCP, but not forever.
            timeout = self.limits.close_timeout
            if timeout is not None:
                self._close_timer = self._loop.call_later(timeout, transport.abort)

    def eof_received(self) -> bool:
        # Bytes held back for a full queue are still delivered: recv() parses
        # them, and marks EOF in the core once nothing complete is left.
        if self.protocol is not None and not self.protocol.pending_bytes:
            self.protocol.receive_eof()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost_exc = exc
        protocol = self.protocol
        closed = protocol is None or protocol.state is core.State.CLOSED
        if protocol is not None and not closed and not protocol.pending_bytes:
            protocol.receive_eof()
        self._cancel_keepalive()
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._is_closed = True
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._wake_reader()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)
        pings = self._pings
        if pings:
            for future, _ in pings.values():
                if not future.done():
                    future.set_exception(self._closed_exception())
            pings.clear()

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._listener is not None:
            # Callbacks cannot wait for the buffer to drain, so stop reading
            # the requests that produce more writes until it does.
            self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._listener is not None:
            self._deliver_queued(self._listener)
        elif self.protocol is not None and not self._queue_full():
            self._resume_reading()  # paused by a flood of pings (_after_receive)
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- handshake plumbing (used by server.py and client.py) --------------

    async def _wait_head(self) -> None:
        """Wait for more handshake bytes (or the connection's end)."""
        self._head_waiter = self._loop.create_future()
        await self._head_waiter

    async def _read_head(
        self, parse: Callable[..., _Head | None], timeout: float | None = None
    ) -> _Head | None:
        """Wait until ``parse`` (parse_request or parse_response) finds a whole
        HTTP head in what has arrived; None if the peer left first, or if it
        took over ``timeout`` (the connection is then aborted and
        ``_timed_out`` says so). The parser raises past the head limits."""
        limits = self.limits
        timer = None
        try:
            while True:
                parsed = parse(
                    self._head, max_bytes=limits.max_header_bytes, max_count=limits.max_header_count
                )
                if parsed is not None or self._is_closed:
                    return parsed
                if timer is None:
                    timer = self._abort_after(timeout)
                # The parser raises once _head reaches max_header_bytes, so
                # there is room for more: read it (paused after a keep-alive
                # request, see _read_body).
                self._read_more()
                await self._wait_head()
        finally:
            if timer is not None:
                timer.cancel()

    async def _read_body(self, start: int, size: int, timeout: float | None = None) -> bytes | None:
        """Wait for ``size`` bytes at ``start`` in the head buffer (a plain HTTP
        request's body, whose size the server checked first); None if the peer
        left first or ``timeout`` passed (as for :meth:`_read_head`). The
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

    async def _drained(self, timeout: float | None) -> bool:
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
            size = self.write_buffer_size()
            if size >= before:
                self._abort_timed_out()
            else:
                timer = self._loop.call_later(interval, check, size, interval)

        if timeout is not None:
            timer = self._loop.call_later(timeout, check, self.write_buffer_size(), timeout)
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
        self._timed_out = True
        if self.transport is not None:
            self.transport.abort()

    def _start(self, protocol: core.Connection, leftover: bytes) -> None:
        """Switch from the handshake to WebSocket frames."""
        self.protocol = protocol
        self._head_waiter = None
        self._head = bytearray()
        self._resume_reading()
        self._schedule_keepalive()
        if leftover:
            self.data_received(leftover)

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

    def _wake_reader(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> Message:
        """Receive the next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`ConnectionClosedOK` or :class:`ConnectionClosedError`
        once the connection is closed and every message received before was
        read.
        """
        return await self._receive(False)

    async def _receive(self, iterating: bool) -> Message:
        """recv(); ``iterating``: raise StopAsyncIteration instead of ConnectionClosedOK."""
        while True:
            messages = self._messages
            protocol = self.protocol
            if messages:
                message = messages.popleft()
                self._queued_bytes -= len(message)
                if protocol is not None and protocol.pending_bytes:
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
                protocol is not None
                and protocol.pending_bytes
                and self._is_closed
                # An incomplete frame stays pending after receive_eof(): without
                # this check a peer that left mid-frame spins this loop forever.
                and protocol.state is not core.State.CLOSED
            ):
                # The peer is gone: parse what it sent before, then report the end.
                if not self._parse_held_back(protocol):
                    protocol.receive_eof()
                continue
            if self._is_done_receiving():
                exc = self._closed_exception()
                if iterating and isinstance(exc, ConnectionClosedOK):
                    raise StopAsyncIteration
                raise exc
            if self._recv_waiter is not None:
                raise InvalidState("another coroutine is already waiting in recv()")
            # About to sleep: whatever the handler sent in reply to the
            # messages it just read goes out now, in one write, rather than a
            # loop iteration later (request/response latency).
            if self._out:
                self._flush()
            self._recv_waiter = self._loop.create_future()
            try:
                await self._recv_waiter
            finally:
                self._recv_waiter = None

    def _parse_held_back(self, protocol: core.Connection) -> bool:
        if protocol.state is core.State.CLOSED:
            return False
        got = self._feed(protocol, b"")
        if got:
            self._after_receive(protocol, False)
        return got

    def _is_done_receiving(self) -> bool:
        protocol = self.protocol
        if protocol is None:
            return self._is_closed
        return protocol.state is core.State.CLOSED or self._is_closed

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    def __anext__(self) -> Coroutine[Any, Any, Message]:
        """``async for message in connection``: ends on a clean close (1000, 1001, 1005).

        Not an async generator, nor a coroutine awaiting recv(): one coroutine
        per message instead of two or three, on the hot path of every handler
        (and one frame less, ~230 bytes, held by every idle connection).
        """
        return self._receive(True)

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
        protocol = self._open_protocol()
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            if len(message) < _VECTORED_AT:
                self._write(protocol.send(message))
            else:
                self._write_parts(*protocol.send_vectored(message))
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

    async def _drain(self) -> None:
        while self._writing_paused and not self._is_closed:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._is_closed:
            raise self._closed_exception()

    async def drain(self) -> None:
        """Wait until the write buffer is back under ``write_low_water`` (at once
        if it is not above ``write_high_water``): for code that writes with
        :meth:`send_nowait` and must not outrun a slow peer. Raises
        :class:`ConnectionClosed` if the connection closes first."""
        if self._writing_paused:
            await self._drain()

    def write_buffer_size(self) -> int:
        """Bytes written but not yet sent: queued here and in the transport's buffer."""
        if self.transport is None:
            return self._out_size
        return self._out_size + self.transport.get_write_buffer_size()

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
            self._flush()
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
            self._flush()
        elif len(out) == 2:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._shared.flush_soon(self)

    def _flush(self) -> None:
        """Hand every queued frame to the transport, in order."""
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
                elif size >= _VECTORED_AT:
                    # Big frames: a vectored write where the loop has one
                    # (uvloop), instead of copying them all into one buffer.
                    transport.writelines(out)
                else:
                    transport.write(b"".join(out))

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

    def _pong_received(self, payload: bytes) -> None:
        if payload == self._keepalive_payload:
            self._keepalive_payload = None
            # The pong deadline holds the timer slot: free it, or no ping follows.
            self._cancel_keepalive()
            self._schedule_keepalive()
        pings = self._pings
        if not pings or payload not in pings:
            return  # §5.5.3: an unsolicited pong needs no answer
        now = time.monotonic()
        # A pong answers its ping and, by §5.5.3, every earlier one.
        for key in list(pings):
            future, sent = pings.pop(key)
            if not future.done():
                future.set_result(now - sent)
            if key == payload:
                break

    def _schedule_keepalive(self) -> None:
        interval = self.limits.ping_interval
        if interval is not None and self._keepalive is None:
            self._keepalive = self._shared.schedule(self, interval)

    def _cancel_keepalive(self) -> None:
        if self._keepalive is not None:
            self._shared.cancel(self, self._keepalive)
            self._keepalive = None

    def _keepalive_due(self) -> None:
        """The keepalive deadline passed: time to ping, or the pong is late."""
        if self._keepalive_payload is None:
            self._keepalive_ping()
        else:
            self._keepalive_expired()

    def _keepalive_ping(self) -> None:
        protocol = self.protocol
        if protocol is None or protocol.state is not core.State.OPEN or self.transport is None:
            return
        self._keepalive_payload = payload = os.urandom(4)
        self._write(protocol.send_ping(payload))
        timeout = self.limits.ping_timeout
        if timeout is not None:
            self._keepalive = self._shared.schedule(self, timeout)

    def _keepalive_expired(self) -> None:
        self.logger.info("keepalive pong not received in time; failing the connection")
        self._fail(1011, "keepalive ping timeout")

    def _fail(self, code: int, reason: str) -> None:
        """Send a close frame if we still may, and drop the TCP connection."""
        protocol = self.protocol
        transport = self.transport
        if transport is None:
            return
        if (
            protocol is not None
            and protocol.close_sent is None
            and protocol.state is core.State.OPEN
        ):
            self._write(protocol.send_close(code, reason))
        self._flush()
        self._close_transport(transport)

    def _close_transport(self, transport: asyncio.Transport, *, linger: bool = False) -> None:
        """Close TCP once what is buffered is written, or abort after ``close_timeout``.

        ``linger``: after a plain HTTP answer, send FIN but read (and drop)
        what the client still sends until it closes too: closing a socket
        with unread bytes sends a reset, which may destroy the answer before
        the client reads it (RFC 7230 §6.6), e.g. a 431 for a head that was
        not read to its end.
        """
        if linger and self.protocol is None and transport.can_write_eof():
            self._lingering = True
            self._head = bytearray()
            self._head_limit = len(self._shared.scratch)
            transport.write_eof()
            self._resume_reading()
        else:
            transport.close()
        # close() waits to flush the buffer, forever if the peer stopped reading.
        timeout = self.limits.close_timeout
        if timeout is not None and self._close_timer is None:
            self._close_timer = self._loop.call_later(timeout, transport.abort)

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

    def _closed_future(self) -> asyncio.Future[None]:
        if self._closed is None:
            self._closed = self._loop.create_future()
            if self._is_closed:
                self._closed.set_result(None)
        return self._closed

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the TCP connection is closed; abort it after ``timeout``."""
        if self._is_closed:
            return
        timer = self._abort_after(timeout)
        try:
            # Shielded: a cancelled caller must not cancel the shared future.
            await asyncio.shield(self._closed_future())
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

    def _closed_exception(self) -> ConnectionClosed:
        protocol = self.protocol
        rcvd = protocol.close_rcvd if protocol is not None else None
        sent = protocol.close_sent if protocol is not None else None
        error = protocol.error if protocol is not None else None
        if rcvd is not None and rcvd.code in _OK_CODES and error is None:
            exc: ConnectionClosed = ConnectionClosedOK(rcvd, sent)
        else:
            exc = ConnectionClosedError(rcvd, sent)
        exc.__cause__ = error or self._lost_exc
        return exc

    # -- information ---------------------------------------------------------

    @property
    def path(self) -> str:
        """The request path (with query) of the handshake."""
        return self.request.path if self.request is not None else "/"

    @property
    def remote_address(self) -> Any:
        """The peer's address as the socket reports it (e.g. ``(host, port)``)."""
        return self.transport.get_extra_info("peername") if self.transport else None

    @property
    def local_address(self) -> Any:
        return self.transport.get_extra_info("sockname") if self.transport else None

    def __repr__(self) -> str:
        side = "client" if self.is_client else "server"
        state = "open" if self.open else ("closed" if self.closed else "closing")
        return f"<tether.Connection {side} {state} {self.remote_address}>"
