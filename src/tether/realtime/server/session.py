"""One Engine.IO v4 session, server side: its queue, heartbeat and transports.

Section names refer to the Engine.IO v4 specification
(https://github.com/socketio/engine.io-protocol, README). A :class:`Session`
is the state of one client across its requests and its WebSocket:

* what is queued for it (§HTTP long-polling: packets wait for the next
  ``GET``; §WebSocket: they are written at once), bounded by
  ``max_outgoing_bytes``;
* the heartbeat (§Heartbeat): a ping every ``ping_interval``, closed when no
  pong comes within ``ping_timeout``;
* the upgrade (§Upgrade): a WebSocket probes (``2probe``/``3probe``), the
  held ``GET`` is released with a ``noop`` and ``5`` moves the session to it.

The endpoint that routes requests to sessions and answers them is
:mod:`.engine`; the WebSocket is anything with the :class:`.transport.WebSocket`
interface. The layer above (Socket.IO) calls :meth:`Session.send` and
:meth:`Session.send_outgoing`, and hears messages and the close through its
:class:`SessionListener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, Protocol

from ...connection import Connection
from ...exceptions import ConnectionClosed, PacketError
from ...limits import RealtimeLimits
from ...protocol.connection import encode_broadcast_frame
from ...protocol.http import Request
from ...ratelimit import TokenBucket
from ..protocol import engineio
from ..protocol.engineio import Packet, PacketType
from .transport import WebSocket

__all__ = [
    "POLICY_VIOLATION",
    "SLOW_CLIENT",
    "Outgoing",
    "Session",
    "SessionHost",
    "SessionListener",
]

_log = logging.getLogger("tether.realtime")

NOOP = Packet(PacketType.NOOP)
_CLOSE = Packet(PacketType.CLOSE)
_PING = Packet(PacketType.PING)

# Close reasons of a client that broke a limit. Neither is one of socket.io's
# recoverable reasons: a client too slow to take what it is sent would get
# the backlog replayed on recovery (and the server would store it meanwhile),
# and one over the event rate should not keep its state for free. Both close
# a WebSocket with 1008 (policy violation, RFC 6455 §7.4.1), as tether's
# broadcast closes a connection too slow to keep up.
SLOW_CLIENT = "slow client"
POLICY_VIOLATION = "policy violation"

# What a queued packet holds besides its text, measured on CPython 3.11
# (64-bit): the Packet (48 bytes), its str's header (about 50) and the list
# slot (8). Counted so that a flood of tiny packets (acks of 5 bytes) cannot
# hold many times max_outgoing_bytes.
_QUEUED_OVERHEAD = 112


def queued_size(packet: Packet) -> int:
    """What ``packet`` costs in a polling queue: the bytes it adds to the
    payload (§Packet encoding, HTTP long-polling: its type digit or ``b`` +
    base64, and a record separator) plus the objects that hold it."""
    data = packet.data
    if isinstance(data, bytes):
        return _QUEUED_OVERHEAD + 2 + (len(data) + 2) // 3 * 4
    # isascii() is O(1) on a str; only other text needs encoding to count bytes.
    size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
    return _QUEUED_OVERHEAD + 2 + size


class SessionListener(Protocol):
    """What the layer above implements to hear from a session."""

    def on_message(self, session: Session, data: str | bytes) -> None:
        """A ``message`` packet from the client (its text or bytes)."""

    def on_close(self, session: Session, reason: str) -> None:
        """The session closed (once), for ``reason``: "transport close", "ping timeout"..."""


class SessionHost(Protocol):
    """What a session needs of the server that holds it (:class:`.engine.EngineServer`)."""

    @property
    def limits(self) -> RealtimeLimits:
        """The bounds of every session: ``max_outgoing_bytes``, ``max_events_per_second``..."""

    @property
    def ping_interval(self) -> float:
        """Seconds between two pings (§Heartbeat)."""

    @property
    def ping_timeout(self) -> float:
        """Seconds a pong may take before the session closes."""

    @property
    def upgrade_timeout(self) -> float:
        """Seconds an upgrade may take, probe to ``5`` (§Upgrade)."""

    @property
    def max_payload(self) -> int:
        """The largest packet or payload accepted from a client, in bytes."""

    def generate_id(self) -> str:
        """A new, unguessable session id."""

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task the host keeps until it ends."""

    def discard(self, session: Session) -> None:
        """Forget ``session``, closed: its sid is unknown from now on."""


class Outgoing:
    """Engine.IO messages encoded once for any number of sessions.

    Each message is encoded once (:attr:`texts`, §WebSocket: one frame per
    packet); WebSocket sessions write the frames built from them, shared;
    polling sessions queue the packets, made on first use.
    """

    __slots__ = ("_frames", "_packets", "_size", "messages", "texts")

    def __init__(self, messages: Sequence[str | bytes]) -> None:
        self.messages = messages
        #: What each message is on a WebSocket (``"4" + text``, or the bytes).
        self.texts = [engineio.encode_message(data) for data in messages]
        self._packets: list[Packet] | None = None
        self._frames: bytes | None = None
        self._size = -1

    @property
    def packets(self) -> list[Packet]:
        """The ``message`` packets, for polling queues (made once)."""
        if self._packets is None:
            self._packets = [Packet(PacketType.MESSAGE, data) for data in self.messages]
        return self._packets

    @property
    def size(self) -> int:
        """The bytes these packets add to a polling queue (counted once)."""
        if self._size < 0:
            self._size = sum(queued_size(packet) for packet in self.packets)
        return self._size

    @property
    def frames(self) -> bytes:
        """The messages as WebSocket frames, unmasked and uncompressed (RFC 6455 §5.2)."""
        if self._frames is None:
            self._frames = b"".join(encode_broadcast_frame(text) for text in self.texts)
        return self._frames


def _shared(websocket: WebSocket | None) -> Connection | None:
    """The connection that takes shared frames: a tether server Connection."""
    if isinstance(websocket, Connection) and not websocket.is_client:
        return websocket
    return None


class Session:
    """One Engine.IO session: a sid, a transport, and the packets in flight.

    Opened on a WebSocket when ``websocket`` is given, else on long-polling;
    under ``sid`` when given (one already sent to the client, in the sid
    cookie of a WebSocket's ``101``), else under a new one.
    """

    def __init__(
        self,
        host: SessionHost,
        request: Request,
        remote_address: object,
        websocket: WebSocket | None = None,
        *,
        sid: str | None = None,
    ) -> None:
        self.host = host
        self.sid = sid if sid is not None else host.generate_id()
        self.request = request
        self.remote_address = remote_address
        self.transport = "polling" if websocket is None else "websocket"
        self.listener: SessionListener | None = None
        self.closed = False
        self.close_reason: str | None = None
        #: A POST is being dispatched (§HTTP long-polling: one at a time).
        self.posting = False
        self._queue: list[Packet] = []
        self._queued = 0  # what _queue costs, in bytes (queued_size)
        self._overflowed = False  # past max_outgoing_bytes: closing, nothing more is sent
        rate = host.limits.max_events_per_second
        self._events = TokenBucket(rate) if rate is not None else None
        self._poll: asyncio.Future[None] | None = None
        self._ws = websocket
        #: The tether Connection a fan-out writes shared frames to
        #: (Connection.write_shared) while the session is open on it; None on
        #: polling, on another WebSocket (the ASGI adapter), once closed or
        #: overflowed. Every other case goes through :meth:`send_outgoing`.
        self.shared: Connection | None = _shared(websocket)
        self._upgrading: WebSocket | None = None
        self._ws_close = (1000, "")  # the WebSocket close code and reason, once closed
        self._probed = False  # the upgrading WebSocket sent its probe
        self._loop = asyncio.get_running_loop()
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.transport}{' closed' if self.closed else ''}>"

    @property
    def websocket(self) -> WebSocket | None:
        """The WebSocket the session runs on, or None while on long-polling."""
        return self._ws

    def start(self, handshake: Packet) -> None:
        """Send the ``open`` packet (§Handshake) and start the heartbeat."""
        self.send_packet(handshake)
        self._schedule_ping()

    # -- sending -------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """Whether a packet sent now goes out at once (for volatile emits)."""
        if self.closed or self._overflowed:
            return False
        ws = self._ws
        if ws is not None:
            return ws.write_buffer_size() <= ws.limits.write_high_water
        return self._poll is not None and not self._poll.done()

    def flush(self) -> None:
        """Write what is queued for a WebSocket client now, not at the end of
        this loop turn (long-polling sends on the next GET anyway)."""
        ws = self._ws
        if ws is not None:
            ws.flush()

    def send(self, data: str | bytes) -> None:
        """Send one Engine.IO ``message`` packet."""
        if self.closed or self._overflowed:
            return
        ws = self._ws
        if ws is not None:
            # Encoded straight to its frame's text: no packet on a WebSocket.
            self._write(ws, "4" + data if type(data) is str else engineio.encode_message(data))
            return
        packet = Packet(PacketType.MESSAGE, data)
        self._enqueue((packet,), queued_size(packet))

    def send_outgoing(self, outgoing: Outgoing) -> bool:
        """Send packets encoded once for many sessions; whether they were sent.

        Nothing is skipped: a client that cannot keep up is closed once
        ``max_outgoing_bytes`` are queued for it (volatile emits check
        :attr:`writable` first).
        """
        if self.closed or self._overflowed:
            return False
        ws = self._ws
        if ws is not None:
            # Shared frames need a tether Connection; another WebSocket (the
            # ASGI adapter), or one above write_high_water (which a broadcast
            # would skip), gets the packets one by one.
            texts = outgoing.texts
            if len(texts) == 1 and isinstance(ws, Connection):
                if ws.write_shared(outgoing.frames):
                    return True  # the fan-out's common case, in one call
                if ws.write_buffer_size() <= ws.limits.write_high_water:
                    return False  # closing, or mid-fragment (RFC 6455 §5.4): skipped
            for text in texts:
                if self._overflowed:
                    break
                self._write(ws, text)
            return True
        self._enqueue(outgoing.packets, outgoing.size)
        return True

    def send_packet(self, packet: Packet) -> None:
        """Send any Engine.IO packet on the current transport."""
        if self.closed or self._overflowed:
            return
        ws = self._ws
        if ws is not None:
            self._write(ws, engineio.encode_packet(packet))
            return
        self._enqueue((packet,), queued_size(packet))

    def _write(self, ws: WebSocket, frame: str | bytes) -> None:
        """Write one encoded packet to the session's WebSocket."""
        try:
            ws.send_nowait(frame)
        except ConnectionClosed:
            return  # the WebSocket's end closes the session
        if ws.write_buffer_size() > self.host.limits.max_outgoing_bytes:
            self._overflow()

    def _enqueue(self, packets: Iterable[Packet], size: int) -> None:
        """Queue packets for the next polling GET (§HTTP long-polling)."""
        self._queue.extend(packets)
        self._queued += size
        if self._queued > self.host.limits.max_outgoing_bytes:
            self._overflow()
        else:
            self._release_poll()

    def _overflow(self) -> None:
        """More than ``max_outgoing_bytes`` are queued: close the slow client."""
        if self._overflowed:
            return
        self._overflowed = True
        self.shared = None
        _log.info("closing session %s: a slow client (over max_outgoing_bytes)", self.sid)
        # Not at once: this runs inside whatever is sending (a broadcast going
        # through a room), which the Socket.IO layer's on_close would change.
        self._loop.call_soon(self._close_slow)

    def _close_slow(self) -> None:
        self.close(SLOW_CLIENT, code=1008)

    def _release_poll(self) -> None:
        poll = self._poll
        if poll is not None and not poll.done():
            poll.set_result(None)

    # -- long-polling (§HTTP long-polling) -------------------------------------

    @property
    def holding(self) -> bool:
        """Whether a ``GET`` is held, waiting for packets."""
        return self._poll is not None and not self._poll.done()

    async def wait_for_packets(self) -> None:
        """Hold a ``GET`` until there are packets to answer it with; the
        session closes ("transport close") if the client leaves meanwhile."""
        if not self._queue and self._probed:
            # §Upgrade: once probed, the client pauses polling after the GET in
            # flight; if that GET came after the probe's noop, answer it at once
            # (the reference server writes a noop every 100 ms for this).
            self._queue.append(NOOP)
        if not self._queue:
            waiter = self._poll = self._loop.create_future()
            try:
                await waiter
            except asyncio.CancelledError:
                # The client went away in the middle of a poll.
                self.close("transport close")
                raise
            finally:
                if self._poll is waiter:
                    self._poll = None

    def take_queued(self) -> list[Packet]:
        """The packets queued for the client, now handed over (emptying the queue)."""
        packets, self._queue = self._queue, []
        self._queued = 0
        return packets

    # -- heartbeat (§Heartbeat) ------------------------------------------------

    def _schedule_ping(self) -> None:
        self._ping_timer = self._loop.call_later(self.host.ping_interval, self._ping)

    def _ping(self) -> None:
        self.send_packet(_PING)
        self._pong_timer = self._loop.call_later(self.host.ping_timeout, self._pong_missed)

    def _pong_missed(self) -> None:
        self.close("ping timeout")

    def _pong(self) -> None:
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            if self._ping_timer is not None:
                self._ping_timer.cancel()
            self._schedule_ping()

    # -- receiving -------------------------------------------------------------

    def receive(self, packet: Packet) -> None:
        """Handle a packet from the client, whatever its transport.

        Raises :class:`~tether.exceptions.PacketError` for a packet the
        client may not send here.
        """
        kind = packet.type
        if kind is PacketType.MESSAGE:
            self._message(packet.data)
        elif kind is PacketType.PONG:
            self._pong()
        elif kind is PacketType.CLOSE:
            self.close("forced close", by_client=True)
        elif kind is PacketType.NOOP:
            pass
        else:
            # OPEN, PING (other than the probe) and UPGRADE outside an upgrade.
            raise PacketError(f"unexpected {kind.name.lower()} packet from the client")

    def _message(self, data: str | bytes) -> None:
        """A ``message`` packet's data arrived: to the listener, within the rate limit."""
        events = self._events
        if events is not None and not events.take():
            _log.info("closing session %s: over max_events_per_second", self.sid)
            self.close(POLICY_VIOLATION, code=1008)
        elif self.listener is not None:
            self.listener.on_message(self, data)

    # -- WebSocket (§WebSocket, §Upgrade) ----------------------------------------

    @property
    def upgrading(self) -> bool:
        """Whether a WebSocket is probing to take this polling session over."""
        return self._upgrading is not None

    async def read_websocket(self, connection: WebSocket) -> None:
        """Read packets from ``connection``, the session's WebSocket, until it
        or the session ends; the caller then calls :meth:`websocket_ended`.

        (Not one method with both: each idle WebSocket client holds this
        coroutine's frame, and a frame more per client is ~0.6 KiB.)
        """
        max_payload = self.host.max_payload
        # A text this long is within max_payload however it is encoded (4 bytes
        # a character at most), as decode_packet reckons.
        within = max_payload // 4
        try:
            async for message in connection:
                if self.closed:
                    return
                if type(message) is str and message[:1] == "4" and len(message) <= within:
                    # Nearly every frame: a "message" packet. What receive()
                    # would do with decode_packet's packet, without the packet.
                    self._message(message[1:])
                else:
                    self.receive(engineio.decode_packet(message, max_payload=max_payload))
                # Backpressure, as on tether's own connections: while this
                # client's write buffer is above write_high_water (it does not
                # read what it asked for), read nothing more from it.
                await connection.drain()
        except PacketError as exc:
            _log.info("closing session %s: %s", self.sid, exc)
            self.close("parse error")
        except ConnectionClosed:
            pass

    async def websocket_ended(self, connection: WebSocket) -> None:
        """``connection`` is read no more: close the session if it is still
        the session's transport, then the WebSocket."""
        if self._ws is connection:
            self.close("transport close")
            # Before returning, after which the server would close with 1000.
            await connection.close(*self._ws_close)

    async def upgrade(self, connection: WebSocket) -> bool:
        """§Upgrade: probe, release the held GET, wait for ``5``; whether it worked."""
        self._upgrading = connection
        # A timer rather than wait_for: no task in between, so a probe and the
        # "5" behind it are handled as soon as they arrive, before any polling
        # request the client sends after them.
        timer = self._loop.call_later(
            self.host.upgrade_timeout,
            lambda: self.host.spawn(connection.close(1008, "upgrade timeout")),
        )
        try:
            await self._probe(connection)
        except (PacketError, ConnectionClosed) as exc:
            if self._upgrading is connection:
                self._upgrading = None
                self._probed = False
            _log.info("upgrade of session %s failed: %r", self.sid, exc)
            await connection.close(1008, "upgrade failed")
            return False
        finally:
            timer.cancel()
        self._upgrading = None
        if self.closed:
            await connection.close()
            return False
        # Whatever polling had queued goes out first, on the WebSocket; a GET
        # still held ends with a noop.
        queued = [p for p in self._queue if p.type is not PacketType.NOOP]
        self._queue = [NOOP]
        self._queued = 0
        self.transport = "websocket"
        self._ws = connection
        self.shared = _shared(connection)
        self._release_poll()
        for packet in queued:
            self.send_packet(packet)
        return True

    async def _probe(self, connection: WebSocket) -> None:
        max_payload = self.host.max_payload
        while True:
            message = await connection.recv()
            packet = engineio.decode_packet(message, max_payload=max_payload)
            if packet == engineio.PING_PROBE:
                self._probed = True
                connection.send_nowait(engineio.encode_packet(engineio.PONG_PROBE))
                # Ends the held GET so that the client pauses polling.
                self.send_packet(NOOP)
            elif packet.type is PacketType.UPGRADE:
                return
            elif packet.type is not PacketType.NOOP:
                raise PacketError(f"unexpected {packet.type.name.lower()} packet during upgrade")

    # -- closing ---------------------------------------------------------------

    def close(
        self, reason: str = "forced close", *, by_client: bool = False, code: int = 1000
    ) -> None:
        """Close the session: the client is told unless it asked or is gone.

        ``code`` is the WebSocket close code (RFC 6455 §7.4.1) when the session
        is on a WebSocket: 1008 (policy violation) for a client that broke a
        limit, with ``reason`` in the close frame; 1000 otherwise. The Socket.IO
        layer hears ``reason``: only socket.io's recoverable reasons ("transport
        close", "ping timeout", ...) let a client recover its state, so a
        policy close should use another one (such as "policy violation").
        """
        if self.closed:
            return
        self.closed = True
        self.shared = None
        self.close_reason = reason
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self.host.discard(self)
        ws = self._ws
        if ws is not None:
            if not by_client and reason != "transport close":
                with contextlib.suppress(ConnectionClosed):
                    ws.send_nowait(engineio.encode_packet(_CLOSE))
            # A normal close says nothing more; any other code names the reason
            # (truncated to the 123 bytes a close frame has room for, §5.5.1).
            text = "" if code == 1000 else reason.encode()[:123].decode(errors="ignore")
            self._ws_close = (code, text)
            self.host.spawn(ws.close(code, text))
        else:
            # A held GET ends with "noop" when the client closed; otherwise
            # it gets what was queued, then "close" (only "close" for a client
            # closed for breaking a limit: what was queued is dropped with it).
            if by_client:
                self._queue = [NOOP]
            elif code != 1000:
                self._queue = [_CLOSE]
            else:
                self._queue.append(_CLOSE)
            self._queued = 0
            self._release_poll()
        if self._upgrading is not None:
            self.host.spawn(self._upgrading.close())
        if self.listener is not None:
            self.listener.on_close(self, reason)
