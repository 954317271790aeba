"""Engine.IO v4 server sessions over HTTP long-polling and WebSocket (asyncio).

Section names refer to the Engine.IO v4 specification
(https://github.com/socketio/engine.io-protocol, README). The packet codecs
are in :mod:`tether.realtime.protocol.engineio`; this module keeps the sessions:

* the handshake (§Handshake): a polling ``GET`` without ``sid``, or a
  WebSocket without ``sid``, opens a session;
* long-polling (§HTTP long-polling): a ``GET`` is held until the server has
  packets for it, a ``POST`` carries the client's packets, one of each at a
  time per session;
* the upgrade (§Upgrade): a WebSocket with the ``sid`` of a polling session
  probes (``2probe``/``3probe``), the held ``GET`` is released with a
  ``noop``, and ``5`` (upgrade) moves the session to the WebSocket;
* the heartbeat (§Heartbeat): the server pings every ``ping_interval`` and
  closes the session when no pong comes within ``ping_timeout``.

Each session is bounded (:class:`~tether.limits.RealtimeLimits`): what is
queued for a client (the polling queue, or the WebSocket write buffer) stays
under ``max_outgoing_bytes`` or the session is closed as a slow client; a
WebSocket client is not read while its write buffer is above
``write_high_water``; ``max_events_per_second`` caps the messages a client
sends over either transport. Origins are checked on every request (see
:meth:`EngineServer.check`).

The layer above (Socket.IO) sees a :class:`Session`: :meth:`Session.send` and
:meth:`Session.send_outgoing` to write, and its ``listener``'s
``on_message``/``on_close`` callbacks to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from ...broadcast import send_frame
from ...connection import Connection
from ...exceptions import ConnectionClosed, PacketError
from ...limits import DEFAULT_REALTIME_LIMITS, RealtimeLimits
from ...protocol.connection import encode_broadcast_frame
from ...protocol.http import Headers, Request, Response
from ...ratelimit import TokenBucket
from ..protocol import engineio
from ..protocol.engineio import Packet, PacketType

__all__ = [
    "POLICY_VIOLATION",
    "SLOW_CLIENT",
    "EngineServer",
    "Outgoing",
    "Session",
    "SessionListener",
    "uses_tls",
]

_log = logging.getLogger("tether.realtime")

# §Handshake, "errors": the JSON body of a 400 answer, {"code": n, "message": ...}.
UNKNOWN_TRANSPORT = 0
UNKNOWN_SID = 1
BAD_HANDSHAKE_METHOD = 2
BAD_REQUEST = 3
FORBIDDEN = 4
UNSUPPORTED_PROTOCOL_VERSION = 5
_ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}

_NOOP = Packet(PacketType.NOOP)
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

# Packets of one POST dispatched per event-loop turn: a body of up to
# max_payload bytes holds tens of thousands of tiny packets, and dispatching
# them all in one turn would stall every other client for seconds.
_POST_BATCH = 128


# What a queued packet holds besides its text, measured on CPython 3.11
# (64-bit): the Packet (48 bytes), its str's header (about 50) and the list
# slot (8). Counted so that a flood of tiny packets (acks of 5 bytes) cannot
# hold many times max_outgoing_bytes.
_QUEUED_OVERHEAD = 112


def _queued_size(packet: Packet) -> int:
    """What ``packet`` costs in a polling queue: the bytes it adds to the
    payload (§Packet encoding, HTTP long-polling: its type digit or ``b`` +
    base64, and a record separator) plus :data:`_QUEUED_OVERHEAD`."""
    data = packet.data
    if isinstance(data, bytes):
        return _QUEUED_OVERHEAD + 2 + (len(data) + 2) // 3 * 4
    # isascii() is O(1) on a str; only other text needs encoding to count bytes.
    size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
    return _QUEUED_OVERHEAD + 2 + size


class SessionListener(Protocol):
    """What the layer above implements to hear from a session."""

    def on_message(self, session: Session, data: str | bytes) -> None: ...

    def on_close(self, session: Session, reason: str) -> None: ...


class Outgoing:
    """Engine.IO message packets encoded once for any number of sessions.

    Polling sessions queue the packets; WebSocket sessions write the frames,
    encoded on first use and shared (one frame per packet, §WebSocket).
    """

    __slots__ = ("_frames", "_size", "packets")

    def __init__(self, messages: Sequence[str | bytes]) -> None:
        self.packets = [Packet(PacketType.MESSAGE, data) for data in messages]
        self._frames: bytes | None = None
        self._size = -1

    @property
    def size(self) -> int:
        """The bytes these packets add to a polling queue (counted once)."""
        if self._size < 0:
            self._size = sum(_queued_size(packet) for packet in self.packets)
        return self._size

    @property
    def frames(self) -> bytes:
        if self._frames is None:
            self._frames = b"".join(
                encode_broadcast_frame(engineio.encode_packet(packet)) for packet in self.packets
            )
        return self._frames


class Session:
    """One Engine.IO session: a sid, a transport, and the packets in flight."""

    def __init__(self, engine: EngineServer, request: Request, remote_address: object) -> None:
        self.engine = engine
        self.sid = engine.generate_id()
        self.request = request
        self.remote_address = remote_address
        self.transport = "polling"
        self.listener: SessionListener | None = None
        self.closed = False
        self.close_reason: str | None = None
        self._queue: list[Packet] = []
        self._queued = 0  # what _queue costs, in bytes (_queued_size)
        self._overflowed = False  # past max_outgoing_bytes: closing, nothing more is sent
        rate = engine.limits.max_events_per_second
        self._events = TokenBucket(rate) if rate is not None else None
        self._poll: asyncio.Future[None] | None = None
        self._posting = False
        self._ws: Connection | None = None
        self._upgrading: Connection | None = None
        self._ws_close = (1000, "")  # the WebSocket close code and reason, once closed
        self._probed = False  # the upgrading WebSocket sent its probe
        self._loop = asyncio.get_running_loop()
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.transport}{' closed' if self.closed else ''}>"

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
        if isinstance(ws, Connection):
            ws._flush()

    def send(self, data: str | bytes) -> None:
        """Send one Engine.IO ``message`` packet."""
        self._send_packet(Packet(PacketType.MESSAGE, data))

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
            # ASGI adapter), or one above write_high_water (which send_frame
            # would skip), gets the packets one by one.
            if (
                len(outgoing.packets) == 1
                and isinstance(ws, Connection)
                and ws.write_buffer_size() <= ws.limits.write_high_water
            ):
                packet = outgoing.packets[0]
                return send_frame(ws, outgoing.frames, engineio.encode_packet(packet))
            for packet in outgoing.packets:
                self._send_packet(packet)
            return True
        self._enqueue(outgoing.packets, outgoing.size)
        return True

    def _send_packet(self, packet: Packet) -> None:
        if self.closed or self._overflowed:
            return
        ws = self._ws
        if ws is not None:
            try:
                ws.send_nowait(engineio.encode_packet(packet))
            except ConnectionClosed:
                return  # the WebSocket's end closes the session
            if ws.write_buffer_size() > self.engine.limits.max_outgoing_bytes:
                self._overflow()
            return
        self._enqueue((packet,), _queued_size(packet))

    def _enqueue(self, packets: Iterable[Packet], size: int) -> None:
        """Queue packets for the next polling GET (§HTTP long-polling)."""
        self._queue.extend(packets)
        self._queued += size
        if self._queued > self.engine.limits.max_outgoing_bytes:
            self._overflow()
        else:
            self._release_poll()

    def _overflow(self) -> None:
        """More than ``max_outgoing_bytes`` are queued: close the slow client."""
        if self._overflowed:
            return
        self._overflowed = True
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

    # -- heartbeat (§Heartbeat) ------------------------------------------------

    def _schedule_ping(self) -> None:
        self._ping_timer = self._loop.call_later(self.engine.ping_interval, self._ping)

    def _ping(self) -> None:
        self._send_packet(_PING)
        self._pong_timer = self._loop.call_later(self.engine.ping_timeout, self._pong_missed)

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

    def _receive(self, packet: Packet) -> None:
        kind = packet.type
        if kind is PacketType.MESSAGE:
            events = self._events
            if events is not None and not events.take():
                _log.info("closing session %s: over max_events_per_second", self.sid)
                self.close(POLICY_VIOLATION, code=1008)
            elif self.listener is not None:
                self.listener.on_message(self, packet.data)
        elif kind is PacketType.PONG:
            self._pong()
        elif kind is PacketType.CLOSE:
            self.close("forced close", by_client=True)
        elif kind is PacketType.NOOP:
            pass
        else:
            # OPEN, PING (other than the probe) and UPGRADE outside an upgrade.
            raise PacketError(f"unexpected {kind.name.lower()} packet from the client")

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
        self.close_reason = reason
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self.engine._sessions.pop(self.sid, None)
        ws = self._ws
        if ws is not None:
            if not by_client and reason != "transport close":
                with contextlib.suppress(ConnectionClosed):
                    ws.send_nowait(engineio.encode_packet(_CLOSE))
            # A normal close says nothing more; any other code names the reason
            # (truncated to the 123 bytes a close frame has room for, §5.5.1).
            text = "" if code == 1000 else reason.encode()[:123].decode(errors="ignore")
            self._ws_close = (code, text)
            self.engine._spawn(ws.close(code, text))
        else:
            # A held GET ends with "noop" when the client closed; otherwise
            # it gets what was queued, then "close" (only "close" for a client
            # closed for breaking a limit: what was queued is dropped with it).
            if by_client:
                self._queue = [_NOOP]
            elif code != 1000:
                self._queue = [_CLOSE]
            else:
                self._queue.append(_CLOSE)
            self._queued = 0
            self._release_poll()
        if self._upgrading is not None:
            self.engine._spawn(self._upgrading.close())
        if self.listener is not None:
            self.listener.on_close(self, reason)


class EngineServer:
    """Every Engine.IO session of one server, and the HTTP and WebSocket entry points."""

    def __init__(
        self,
        *,
        on_session: Callable[[Session], None],
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        limits: RealtimeLimits = DEFAULT_REALTIME_LIMITS,
        transports: Sequence[str] = ("polling", "websocket"),
        allow_upgrades: bool = True,
        upgrade_timeout: float = 10.0,
        cors_allowed_origins: str | Sequence[str] | None = None,
        cors_credentials: bool = False,
    ) -> None:
        for transport in transports:
            if transport not in ("polling", "websocket"):
                raise ValueError(f"unknown transport {transport!r}")
        if isinstance(cors_allowed_origins, str) and cors_allowed_origins != "*":
            cors_allowed_origins = [cors_allowed_origins]
        listed = cors_allowed_origins not in (None, "*")
        if cors_credentials and (not listed or "*" in (cors_allowed_origins or ())):
            # Fetch §3.2.5: a credentialed response may not say "*", and
            # echoing any Origin with credentials would let every site read
            # a user's session; socket.io's cors option has the same rule.
            raise ValueError(
                "cors_credentials=True needs cors_allowed_origins to be a list of origins "
                "(not None or '*')"
            )
        self._origins = (
            frozenset(_normalize_origin(o) for o in cors_allowed_origins or ())
            if listed
            else frozenset()
        )
        self.on_session = on_session
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.limits = limits
        self.max_payload = limits.max_payload
        self.transports = tuple(transports)
        self.allow_upgrades = allow_upgrades
        self.upgrade_timeout = upgrade_timeout
        self.cors_allowed_origins = cors_allowed_origins
        self.cors_credentials = cors_credentials
        self._sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def generate_id() -> str:
        # 120 random bits, URL-safe: a sid must be unguessable (it authorises
        # polling requests on its own).
        return secrets.token_urlsafe(15)

    @property
    def sessions(self) -> dict[str, Session]:
        return self._sessions

    def close_all(self, reason: str = "server shutting down") -> None:
        for session in list(self._sessions.values()):
            session.close(reason)

    # -- request checks --------------------------------------------------------

    def _origin_allowed(self, headers: Headers, secure: bool) -> bool:
        """Whether a request may come from its ``Origin`` (RFC 6454 §7).

        No Origin: not a browser (browsers send one on every WebSocket
        handshake and cross-origin request), and a non-browser client could
        send any Origin anyway; admitted. The server's own origin always is;
        others only when listed (``"*"``: any).
        """
        origin = headers.get("Origin")
        if origin is None or self.cors_allowed_origins == "*":
            return True
        origin = _normalize_origin(origin)
        return origin in self._origins or _same_origin(origin, headers, secure)

    def _cors_headers(self, request: Request, headers: Headers) -> None:
        allowed = self.cors_allowed_origins
        origin = request.headers.get("Origin")
        if allowed is None or origin is None:
            return  # same origin only: a browser needs no CORS header for it
        if allowed == "*":
            # Never with Allow-Credentials (refused at construction): a
            # browser then sends no cookies, so no page reads a user's session.
            headers.set("Access-Control-Allow-Origin", "*")
            return
        if _normalize_origin(origin) not in self._origins:
            return
        headers.set("Access-Control-Allow-Origin", origin)
        headers.add("Vary", "Origin")
        if self.cors_credentials:
            headers.set("Access-Control-Allow-Credentials", "true")

    def check(
        self, request: Request, *, secure: bool = False
    ) -> tuple[dict[str, str], Response | None]:
        """Parse and validate an Engine.IO request's query and origin; a 400
        (or 403, for an origin refused) answer if invalid.

        ``secure``: whether the request came over TLS (its origin is then
        ``https://`` + Host), for the same-origin check.
        """
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        if query.get("EIO") != str(engineio.PROTOCOL_VERSION):
            return query, self.error(request, UNSUPPORTED_PROTOCOL_VERSION)
        transport = query.get("transport")
        if transport not in self.transports:
            return query, self.error(request, UNKNOWN_TRANSPORT)
        if not self._origin_allowed(request.headers, secure):
            return query, self.error(request, FORBIDDEN, status=403)
        sid = query.get("sid")
        if sid is not None:
            session = self._sessions.get(sid)
            if session is None:
                return query, self.error(request, UNKNOWN_SID)
            # A second WebSocket for a session that upgraded (or is upgrading)
            # is accepted, then closed by handle_websocket, as the reference
            # server does; the session it names carries on.
            if transport == "polling" and session.transport != "polling":
                return query, self.error(request, BAD_REQUEST)
        elif request.method != "GET":
            return query, self.error(request, BAD_HANDSHAKE_METHOD)
        return query, None

    def error(self, request: Request, code: int, *, status: int = 400) -> Response:
        body = json.dumps({"code": code, "message": _ERROR_MESSAGES[code]}).encode()
        headers = Headers([("Content-Type", "application/json")])
        self._cors_headers(request, headers)
        reason = "Forbidden" if status == 403 else "Bad Request"
        return Response(status, reason, headers, body)

    # -- HTTP long-polling (§HTTP long-polling) ---------------------------------

    async def handle_http(
        self, connection: Connection, request: Request, body: bytes, *, secure: bool | None = None
    ) -> Response:
        """Answer one Engine.IO HTTP request (``OPTIONS``, ``GET`` or ``POST``).

        ``secure`` (whether it came over TLS) is found from ``connection``'s
        transport when not given.
        """
        if request.method == "OPTIONS":
            headers = Headers()
            self._cors_headers(request, headers)
            if "Access-Control-Allow-Origin" in headers:
                headers.set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                asked = request.headers.get("Access-Control-Request-Headers")
                if asked:
                    headers.set("Access-Control-Allow-Headers", asked)
            return Response(204, "No Content", headers)
        if secure is None:
            secure = uses_tls(connection)
        query, problem = self.check(request, secure=secure)
        if problem is not None:
            return problem
        if request.method not in ("GET", "POST"):
            return self.error(request, BAD_REQUEST)
        sid = query.get("sid")
        if sid is None:
            return self._open_polling(connection, request)
        session = self._sessions[sid]
        if request.method == "GET":
            return await self._poll(session, request)
        return await self._post(session, request, body)

    def _open_polling(self, connection: Connection, request: Request) -> Response:
        session = Session(self, request, connection.remote_address)
        upgrades = ["websocket"] if "websocket" in self.transports and self.allow_upgrades else []
        self._open(session, upgrades)
        return self._payload_response(request, session)

    def _open(self, session: Session, upgrades: list[str]) -> None:
        self._sessions[session.sid] = session
        handshake = engineio.Handshake(
            sid=session.sid,
            upgrades=tuple(upgrades),
            ping_interval=round(self.ping_interval * 1000),
            ping_timeout=round(self.ping_timeout * 1000),
            max_payload=self.max_payload,
        )
        session._send_packet(handshake.to_packet())
        session._schedule_ping()
        self.on_session(session)

    def _payload_response(self, request: Request, session: Session) -> Response:
        packets, session._queue = session._queue, []
        session._queued = 0
        body = engineio.encode_payload(packets).encode()
        headers = Headers([("Content-Type", "text/plain; charset=UTF-8")])
        self._cors_headers(request, headers)
        return Response(200, "OK", headers, body)

    async def _poll(self, session: Session, request: Request) -> Response:
        if session._poll is not None and not session._poll.done():
            # §HTTP long-polling: one GET at a time; a second one ends the session.
            session.close("transport error")
            return self.error(request, BAD_REQUEST)
        if not session._queue and session._probed:
            # §Upgrade: once probed, the client pauses polling after the GET in
            # flight; if that GET came after the probe's noop, answer it at once
            # (the reference server writes a noop every 100 ms for this).
            session._queue.append(_NOOP)
        if not session._queue:
            waiter = session._poll = session._loop.create_future()
            try:
                await waiter
            except asyncio.CancelledError:
                # The client went away in the middle of a poll.
                session.close("transport close")
                raise
            finally:
                if session._poll is waiter:
                    session._poll = None
        return self._payload_response(request, session)

    async def _post(self, session: Session, request: Request, body: bytes) -> Response:
        if session._posting:
            session.close("transport error")
            return self.error(request, BAD_REQUEST)
        if len(body) > self.max_payload:
            session.close("transport error")
            headers = Headers([("Content-Length", "0")])
            self._cors_headers(request, headers)  # so a browser sees the 413, not a CORS error
            return Response(413, "Payload Too Large", headers)
        session._posting = True
        try:
            # Decoded as dispatched, batch by batch (a parse error part way
            # closes the session after the packets before it, as the reference
            # server does).
            packets = engineio.iter_payload(body, max_payload=self.max_payload)
            for index, packet in enumerate(packets):
                if index and not index % _POST_BATCH:
                    # Let other clients be served; the packets keep their order
                    # (a second POST meanwhile is refused: one at a time).
                    await asyncio.sleep(0)
                if session.closed:
                    break  # by a packet, or by a limit of the layer above
                session._receive(packet)
        except PacketError as exc:
            _log.info("closing session %s: %s", session.sid, exc)
            session.close("parse error")
            return self.error(request, BAD_REQUEST)
        finally:
            session._posting = False
        headers = Headers([("Content-Type", "text/html")])
        self._cors_headers(request, headers)
        return Response(200, "OK", headers, b"ok")

    # -- WebSocket (§WebSocket, §Upgrade) ----------------------------------------

    async def handle_websocket(self, connection: Connection, query: dict[str, str]) -> None:
        """Serve an Engine.IO WebSocket (the query was checked by :meth:`check`)."""
        sid = query.get("sid")
        if sid is None:
            session = Session(self, connection.request or Request("/"), connection.remote_address)
            session.transport = "websocket"
            session._ws = connection
            self._open(session, [])
        else:
            found = self._sessions.get(sid)
            if found is None or found.transport != "polling" or found._upgrading is not None:
                await connection.close(1008, "cannot upgrade this session")
                return
            session = found
            if not await self._upgrade(session, connection):
                return
        try:
            await self._read_websocket(session, connection)
        finally:
            if session._ws is connection:
                session.close("transport close")
                # Before returning, after which the server would close with 1000.
                await connection.close(*session._ws_close)

    async def _read_websocket(self, session: Session, connection: Connection) -> None:
        try:
            async for message in connection:
                if session.closed:
                    return
                session._receive(engineio.decode_packet(message, max_payload=self.max_payload))
                # Backpressure, as on tether's own connections: while this
                # client's write buffer is above write_high_water (it does not
                # read what it asked for), read nothing more from it.
                await connection.drain()
        except PacketError as exc:
            _log.info("closing session %s: %s", session.sid, exc)
            session.close("parse error")
        except ConnectionClosed:
            pass

    async def _upgrade(self, session: Session, connection: Connection) -> bool:
        """§Upgrade: probe, release the held GET, wait for ``5``; whether it worked."""
        session._upgrading = connection
        # A timer rather than wait_for: no task in between, so a probe and the
        # "5" behind it are handled as soon as they arrive, before any polling
        # request the client sends after them.
        timer = session._loop.call_later(
            self.upgrade_timeout, lambda: self._spawn(connection.close(1008, "upgrade timeout"))
        )
        try:
            await self._probe(session, connection)
        except (PacketError, ConnectionClosed) as exc:
            if session._upgrading is connection:
                session._upgrading = None
                session._probed = False
            _log.info("upgrade of session %s failed: %r", session.sid, exc)
            await connection.close(1008, "upgrade failed")
            return False
        finally:
            timer.cancel()
        session._upgrading = None
        if session.closed:
            await connection.close()
            return False
        # Whatever polling had queued goes out first, on the WebSocket; a GET
        # still held ends with a noop.
        queued = [p for p in session._queue if p.type is not PacketType.NOOP]
        session._queue = [_NOOP]
        session._queued = 0
        session.transport = "websocket"
        session._ws = connection
        session._release_poll()
        for packet in queued:
            session._send_packet(packet)
        return True

    async def _probe(self, session: Session, connection: Connection) -> None:
        while True:
            message = await connection.recv()
            packet = engineio.decode_packet(message, max_payload=self.max_payload)
            if packet == engineio.PING_PROBE:
                session._probed = True
                connection.send_nowait(engineio.encode_packet(engineio.PONG_PROBE))
                # Ends the held GET so that the client pauses polling.
                session._send_packet(_NOOP)
            elif packet.type is PacketType.UPGRADE:
                return
            elif packet.type is not PacketType.NOOP:
                raise PacketError(f"unexpected {packet.type.name.lower()} packet during upgrade")


def uses_tls(connection: Connection) -> bool:
    """Whether ``connection`` came over TLS (its transport has an SSL context)."""
    transport = getattr(connection, "transport", None)
    return transport is not None and transport.get_extra_info("sslcontext") is not None


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, without the scheme's default port
    (RFC 6454 §6.1 serializes an origin that way)."""
    origin = origin.strip().lower().rstrip("/")
    scheme = origin.partition("://")[0]
    port = _DEFAULT_PORTS.get(scheme)
    if port is not None and origin.endswith(port):
        origin = origin[: -len(port)]
    return origin


def _first(value: str | None) -> str | None:
    """The first of a comma-separated proxy header (the proxy nearest the client)."""
    if value is None:
        return None
    return value.split(",", 1)[0].strip() or None


def _same_origin(origin: str, headers: Headers, secure: bool) -> bool:
    """Whether ``origin`` (normalized) is the server's own: the request's scheme
    and ``Host``, or what a proxy in front says they were.

    A TLS-terminating proxy forwards ``https://`` requests over plain HTTP and
    may rewrite ``Host``: ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` then
    give the public scheme and host. Trusting them costs nothing here: a page
    cannot make a browser send them (custom headers need a preflight, which
    the default answers without CORS headers, and WebSocket handshakes carry
    none), and a client that is not a browser can send any ``Origin`` anyway.
    """
    host = headers.get("Host")
    scheme = "https" if secure else "http"
    if host is not None and origin == _normalize_origin(f"{scheme}://{host}"):
        return True
    proto = _first(headers.get("X-Forwarded-Proto"))
    forwarded_host = _first(headers.get("X-Forwarded-Host"))
    if proto is None and forwarded_host is None:
        return False
    public = f"{proto or scheme}://{forwarded_host or host}"
    return (forwarded_host or host) is not None and origin == _normalize_origin(public)
