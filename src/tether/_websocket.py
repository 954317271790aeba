"""The event-loop side of a WebSocket connection, and the asyncio layer's internal interface.

A :class:`tether.Connection` is three classes, one per module, each on top
of the one below::

    event loop (asyncio.BufferedProtocol callbacks)      applications
        │                                                     │
        ▼                                                     ▼
    ┌──────────────────────────────────────────────────────────────────┐
    │ connection.Connection   recv, send, ping, close, properties     │ public API
    ├──────────────────────────────────────────────────────────────────┤
    │ _websocket.WebSocketStream   frames through the sans-I/O core:  │
    │   parse each read in one go, the bounded queue or a             │ ◄─ handlers.py,
    │   MessageHandler, keepalive, failing, closing handshake          │    broadcast.py
    ├──────────────────────────────────────────────────────────────────┤
    │ _http1.HTTPStream   flow control, write queue, deadlines,       │ ◄─ server.py,
    │   closing TCP; HTTP/1.1 heads and bodies before the upgrade      │    client.py
    └──────────────────────────────────────────────────────────────────┘
                                 │ ▲  one scratch buffer, keepalive buckets
                                 ▼ │  and the end-of-iteration flush per loop
                              _shared.LoopShared

Once :meth:`WebSocketStream.start` has switched from the handshake to frames,
every socket read is parsed in one go into a bounded queue (or straight to a
:class:`~tether.MessageHandler`), and reading pauses while the queue is full
or, for callbacks, while the peer does not read our replies.

**The internal interface.** The methods and attributes of
:class:`WebSocketStream` and :class:`~tether._http1.HTTPStream` without a
leading underscore, other than asyncio's callbacks, are the seams through
which the other modules of the asyncio layer drive a connection:

=========================  ==================================================
``read_head``,             ``_serving.py``, ``client.py``: the opening
``read_body``,             handshake and plain HTTP/1.1 requests on a
``parse_head``,            keep-alive connection
``preloaded``,
``drained``,
``close_transport``,
``closing_by_itself``,
``closed_future``,
``timed_out``, ``start``
``start_closing``          ``server.py``: :meth:`tether.Server.close`
``listen``                 ``handlers.py``, ``_serving.py``: :class:`~tether.MessageHandler`
``write_frames``,          ``broadcast.py``: one frame to many connections
``fail``
``flush``,                 ``_shared.py``: the loop's end-of-iteration flush
``keepalive_due``,         and keepalive buckets
``keepalive_at``
=========================  ==================================================

They are not part of tether's public API (neither in ``__all__`` nor in the
reference, which documents ``Connection``'s own members) and may change with
it; everything else is private to its module and its subclasses.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from ._http1 import HTTPStream
from ._shared import MIN_READ
from .exceptions import ConnectionClosed
from .limits import Limits
from .metrics.websocket import UNCOUNTED, WebSocketMetrics
from .protocol import connection as core
from .protocol.events import Close, Pong
from .protocol.reader import CLOSE_WHOLE
from .protocol.speedups import load_extension
from .ratelimit import TokenBucket

__all__ = ["Listener", "Message", "WebSocketStream", "hotpath"]

Message = str | bytes


class Listener(Protocol):
    """What :meth:`WebSocketStream.listen` hands messages to: a :class:`~tether.MessageHandler`.

    A protocol rather than the class, so that this module does not import
    ``handlers.py`` (which imports the connection).
    """

    def on_message(self, connection: Any, message: Message, /) -> None: ...


class _NoMessages(collections.deque):  # type: ignore[type-arg]
    """The queue of every connection that never had a message wait: shared, so
    it must stay empty; appending is a bug, not a silent drop."""

    def append(self, item: object) -> None:
        raise AssertionError("the shared empty message queue cannot hold messages")


_NO_MESSAGES: collections.deque[Message] = _NoMessages()

#: The optional C step of this layer (_hotpath.c), or None: loaded once here,
#: for connection.py's sends too.
hotpath = load_extension("tether._hotpath")
# The common case of a read in C (_hotpath.c): its whole small text and binary
# messages to the listener or the queue, without a Python frame per message;
# None without the extension, and every read goes through the core's parser.
_Receive = Callable[[Any, core.Connection, memoryview, int, int, object], tuple[int, int, int]]
_receive: _Receive | None
_receive = hotpath.receive if hotpath is not None else None
# get_buffer's common case: nothing held back, so the read goes to the front.
_buffer_for: Callable[[Any, core.Connection, memoryview, int], memoryview] | None
_buffer_for = hotpath.buffer_for if hotpath is not None else None
_OPEN = core.State.OPEN
_CLOSED = core.State.CLOSED


class WebSocketStream(HTTPStream):
    """The event-loop side of :class:`tether.Connection` (see the module docstring)."""

    __slots__ = (
        "_keepalive_payload",
        "_listener",
        "_messages",
        "_pings",
        "_queued_bytes",
        "_rate",
        "_recv_waiter",
        "keepalive_at",
        "metrics",
    )

    def __init__(self, limits: Limits, loop: asyncio.AbstractEventLoop | None = None) -> None:
        # The base named, not super(): a super object per call, and every
        # connection makes these calls (single inheritance throughout).
        HTTPStream.__init__(self, limits, loop)
        # Shared and empty until a message must wait (an idle connection then
        # holds no deque block of its own, ~600 bytes); see _feed().
        self._messages: collections.deque[Message] = _NO_MESSAGES
        # Their size (len(): bytes, or characters of text), for max_queue_bytes.
        self._queued_bytes = 0
        self._recv_waiter: asyncio.Future[None] | None = None
        rate = limits.max_messages_per_second
        self._rate = None if rate is None else TokenBucket(rate)
        # Pings waiting for their pong; a dict only once ping() is used.
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] | None = None
        #: The keepalive deadline this connection is scheduled at in the loop's
        #: shared buckets (see _shared.LoopShared.schedule), or None.
        self.keepalive_at: float | None = None
        self._keepalive_payload: bytes | None = None
        self._listener: Listener | None = None
        #: What this connection counts into: its server's metrics (a sink
        #: nobody reads for a client connection).
        self.metrics: WebSocketMetrics = UNCOUNTED

    # -- asyncio.Protocol callbacks ----------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        protocol = self.protocol
        if protocol is None:
            return self._head_buffer()
        scratch = self._shared.scratch
        if _buffer_for is not None:
            return _buffer_for(self, protocol, scratch, MIN_READ)
        if protocol.pending_bytes:
            return protocol.get_buffer(scratch)
        # No more than the queue has bytes left for (see _shared.MIN_READ).
        room = max(MIN_READ, self.limits.max_queue_bytes - self._queued_bytes)
        return scratch if room >= len(scratch) else scratch[:room]

    def buffer_updated(self, nbytes: int) -> None:
        protocol = self.protocol
        if protocol is None:
            self._head_received(self._shared.scratch[:nbytes])
            return
        self.metrics.bytes_received += nbytes
        scratch = self._shared.scratch
        # Most connections end with a read that is the peer's close frame
        # alone: answered without the frame loop (receive_close returns None,
        # having changed nothing, for anything else). Held-back bytes would
        # come first in the buffer, and receive_close declines them too.
        if scratch[0] == CLOSE_WHOLE:
            close = protocol.receive_close(scratch, nbytes)
            if close is not None:
                self.logger.debug("close frame received: %s %s", close.code, close.reason)
                self._after_receive(protocol, True)
                return
        if _receive is not None:
            listener = self._listener
            scheduled = self._flush_scheduled
            if listener is not None:
                # The listener's replies go out in the one flush below, not
                # in a scheduled one as well.
                self._flush_scheduled = True
            start = 0
            try:
                pos, count, full = _receive(self, protocol, scratch, 0, nbytes, _OPEN)
                if count < 0:
                    # A large frame collected across reads ends in this one
                    # (messages of tens of KiB make most reads start so): the
                    # core takes its last bytes, the C step what follows.
                    start = pos
                    self._feed(protocol, scratch[:start])
                    pos, count, full = _receive(self, protocol, scratch, start, nbytes, _OPEN)
            finally:
                if listener is not None:
                    if self._out:
                        self.flush()
                    else:
                        self._flush_scheduled = scheduled
            if count:
                self.metrics.messages_received += count
                if pos < nbytes:
                    rest = scratch[pos:nbytes]
                    if full:
                        # Held back unparsed until recv() makes room, as _feed
                        # does once the queue is full.
                        protocol.receive_data(rest, 0)
                    else:
                        # What the C step left (a control frame, a fragment,
                        # an incomplete frame...) goes through the core.
                        self._feed(protocol, rest)
                elif start:
                    pass  # the core's step may have answered something: _after_receive
                elif listener is None:
                    # The C step answers nothing and leaves the core open, as
                    # _after_receive would find it: only the queue to check,
                    # and the reader to wake (_wake_reader, inline).
                    if full:
                        self._pause_reading()
                    waiter = self._recv_waiter
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                    return
                elif protocol.state is not _CLOSED:
                    return  # every message delivered, every reply flushed
                self._after_receive(protocol, True)
                return
            if start:
                # The core's step may have queued a message: wake the reader.
                self._feed(protocol, scratch[start:nbytes])
                self._after_receive(protocol, True)
                return
        self._after_receive(protocol, self._feed(protocol, b"", nbytes))

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol is None:
            self._head_received(data)
            return
        self.metrics.bytes_received += len(data)
        self._after_receive(protocol, self._feed(protocol, data))

    def eof_received(self) -> bool:
        # Bytes held back for a full queue are still delivered: recv() parses
        # them, and marks EOF in the core once nothing complete is left.
        if self.protocol is not None and not self.protocol.pending_bytes:
            self.protocol.receive_eof()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        protocol = self.protocol
        closed = protocol is None or protocol.state is core.State.CLOSED
        if protocol is not None and not closed and not protocol.pending_bytes:
            protocol.receive_eof()
        if protocol is not None:
            self._count_close(protocol)
        if self.keepalive_at is not None:
            self._cancel_keepalive()
        HTTPStream.connection_lost(self, exc)
        self._wake_reader()
        pings = self._pings
        if pings:
            for future, _ in pings.values():
                if not future.done():
                    future.set_exception(self._closed_exception())
            pings.clear()

    def _count_close(self, protocol: core.Connection) -> None:
        """Count the close code (the peer's, else ours, else 1006), and 1009's limit."""
        sent, received = protocol.close_sent, protocol.close_rcvd
        close = received or sent
        self.metrics.closed(1006 if close is None else close.code)
        if sent is not None and sent.code == 1009 and protocol.error is not None:
            self.metrics.limit_hits.inc("max_message_size")

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

    # -- the switch from HTTP/1.1 (internal interface for server.py, client.py)

    def start(self, protocol: core.Connection, used: int) -> None:
        """Switch from the handshake to WebSocket frames (RFC 6455 §4: the
        frames start right after the head's ``used`` bytes, maybe in the same
        read)."""
        head = self._head
        # Nearly always nothing follows the head (the client waits for the 101).
        leftover = bytes(head[used:]) if used < len(head) else b""
        self.protocol = protocol
        self._head_waiter = None
        self._head = bytearray()
        self._resume_reading()
        self._schedule_keepalive()
        if leftover:
            self.data_received(leftover)

    # -- reading -----------------------------------------------------------

    def _feed(self, protocol: core.Connection, data: bytes | memoryview, nbytes: int = -1) -> bool:
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
            # Counted once per read: every event but the rare control ones is a message.
            received = len(events)
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
                else:
                    received -= 1
                    if isinstance(event, Pong):
                        self._pong_received(event.payload)
                    elif isinstance(event, Close):
                        self.logger.debug("close frame received: %s %s", event.code, event.reason)
            self.metrics.messages_received += received
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
        self.metrics.limit_hits.inc("max_messages_per_second")
        self.fail(1008, "message rate limit exceeded")
        return False

    def _after_receive(self, protocol: core.Connection, wake: bool) -> None:
        if self._listener is not None and self._out:
            self.flush()  # the callbacks' replies to this read, in one write
        out = protocol.data_to_send()
        transport = self.transport
        assert transport is not None
        if out:
            if self._out:
                self._out.extend(out)
            else:
                self._out = out
            if protocol.state is not core.State.CLOSED or not protocol.close_transport:
                self._schedule_flush()  # (else _closing_done flushes now)
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

    def _parse_held_back(self, protocol: core.Connection) -> bool:
        if protocol.state is core.State.CLOSED:
            return False
        got = self._feed(protocol, b"")
        if got:
            self._after_receive(protocol, False)
        return got

    def _wake_reader(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- MessageHandler callbacks (internal interface for handlers.py) ------

    def listen(self, listener: Listener) -> None:
        """Deliver messages to ``listener`` from now on (see :class:`~tether.MessageHandler`)."""
        self._listener = listener
        self._deliver_queued(listener)

    def _deliver_queued(self, listener: Listener) -> None:
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

    def _deliver(self, listener: Listener, message: Message) -> None:
        try:
            listener.on_message(self, message)
        except ConnectionClosed:
            pass  # a reply raced with the close: nothing more to do
        except Exception as exc:
            self._message_failed(exc)

    def _message_failed(self, exc: Exception) -> None:
        """``on_message`` raised ``exc`` (also called by the C step, _hotpath.c)."""
        self.logger.error("on_message failed", exc_info=exc)
        self.fail(1011, "internal error")

    # -- keepalive (RFC 6455 §5.5.2, §5.5.3) --------------------------------

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
        if interval is not None and self.keepalive_at is None:
            self.keepalive_at = self._shared.schedule(self, interval)

    def _cancel_keepalive(self) -> None:
        if self.keepalive_at is not None:
            self._shared.cancel(self, self.keepalive_at)
            self.keepalive_at = None

    def keepalive_due(self) -> None:
        """The keepalive deadline passed: time to ping, or the pong is late
        (internal interface: the loop's shared keepalive buckets call it).
        Before the handshake, the deadline is ``open_timeout``'s (see
        ``_serving.py``)."""
        if self.protocol is None:
            self._open_expired()
        elif self._keepalive_payload is None:
            self._keepalive_ping()
        else:
            self._keepalive_expired()

    def _open_expired(self) -> None:
        self._abort_timed_out()

    def _keepalive_ping(self) -> None:
        protocol = self.protocol
        if protocol is None or protocol.state is not core.State.OPEN or self.transport is None:
            return
        self._keepalive_payload = payload = os.urandom(4)
        self._write(protocol.send_ping(payload))
        timeout = self.limits.ping_timeout
        if timeout is not None:
            self.keepalive_at = self._shared.schedule(self, timeout)

    def _keepalive_expired(self) -> None:
        self.logger.info("keepalive pong not received in time; failing the connection")
        self.fail(1011, "keepalive ping timeout")

    # -- closing -----------------------------------------------------------

    def fail(self, code: int, reason: str) -> None:
        """Send a close frame if we still may, and drop the TCP connection
        (internal interface: broadcast.py closes slow connections with it)."""
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
        self.flush()
        # No lingering here: this peer stopped answering or reading, or
        # floods us (see _closing_done for a peer that broke the protocol).
        self.close_transport(transport)

    def start_closing(self, code: int, reason: str) -> None:
        """Send a close frame if the connection is open, without waiting for
        the reply (internal interface: :meth:`tether.Server.close` closes every
        connection with it)."""
        protocol = self.protocol
        if (
            protocol is not None
            and self.transport is not None
            and protocol.close_sent is None
            and protocol.state is core.State.OPEN
        ):
            self._write(protocol.send_close(code, reason))
            # A handler that stopped reading paused the socket on max_queue;
            # the peer's close reply is behind it.
            self._resume_reading()

    def _closing_done(self, protocol: core.Connection) -> None:
        """The closing handshake completed or the connection failed (§7.1.1)."""
        if self.keepalive_at is not None:
            self._cancel_keepalive()
        transport = self.transport
        assert transport is not None
        if protocol.close_transport:
            self.flush()
            # After a failure the peer may still be sending: linger, so that
            # our close frame is not lost to a reset (see close_transport).
            self.close_transport(transport, linger=protocol.error is not None)
        elif self._close_timer is None:
            # A client waits for the server to close TCP, but not forever.
            timeout = self.limits.close_timeout
            if timeout is not None:
                self._close_timer = self._loop.call_later(timeout, transport.abort)
