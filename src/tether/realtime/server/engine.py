"""Engine.IO v4 server endpoint over HTTP long-polling and WebSocket (asyncio).

Section names refer to the Engine.IO v4 specification
(https://github.com/socketio/engine.io-protocol, README). The packet codecs
are in :mod:`tether.realtime.protocol.engineio`, one session's state in
:mod:`.session`, the origin checks in :mod:`.origins`; this module is the
endpoint, :class:`EngineServer`: it checks every request, opens sessions and
routes requests to them:

* the handshake (§Handshake): a polling ``GET`` without ``sid``, or a
  WebSocket without ``sid``, opens a session;
* long-polling (§HTTP long-polling): a ``GET`` is held until the server has
  packets for it, a ``POST`` carries the client's packets, one of each at a
  time per session;
* the upgrade (§Upgrade): a WebSocket with the ``sid`` of a polling session
  takes it over (:meth:`Session.upgrade`).

Each session is bounded (:class:`~tether.limits.RealtimeLimits`): what is
queued for a client (the polling queue, or the WebSocket write buffer) stays
under ``max_outgoing_bytes`` or the session is closed as a slow client; a
WebSocket client is not read while its write buffer is above
``write_high_water``; ``max_events_per_second`` caps the messages a client
sends over either transport. Origins are checked on every request (see
:meth:`EngineServer.check`).

The options are an :class:`EngineOptions`, defined once here. The WebSockets
are anything with the :class:`~.transport.WebSocket` interface.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

from ...exceptions import PacketError
from ...limits import DEFAULT_REALTIME_LIMITS, RealtimeLimits
from ...metrics.core import Counter
from ...protocol.http import Headers, Request, Response
from ..protocol import engineio
from .origins import OriginPolicy
from .session import POLICY_VIOLATION, SLOW_CLIENT, Outgoing, Session, SessionListener
from .transport import HTTPPeer, WebSocket, uses_tls

__all__ = [
    "DEFAULT_ENGINE_OPTIONS",
    "POLICY_VIOLATION",
    "SLOW_CLIENT",
    "CookieOptions",
    "EngineOptions",
    "EngineServer",
    "Outgoing",
    "Servable",
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
# The reason label of tether_realtime_requests_refused_total, by error code.
_ERROR_REASONS = {
    UNKNOWN_TRANSPORT: "unknown_transport",
    UNKNOWN_SID: "unknown_sid",
    BAD_HANDSHAKE_METHOD: "bad_handshake_method",
    BAD_REQUEST: "bad_request",
    FORBIDDEN: "forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "unsupported_protocol_version",
}
_ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}

# Packets of one POST dispatched per event-loop turn: a body of up to
# max_payload bytes holds tens of thousands of tiny packets, and dispatching
# them all in one turn would stall every other client for seconds.
_POST_BATCH = 128


# RFC 6265 §4.1.1: a cookie name is an RFC 2616 token; attribute values may
# not hold ';' or control characters.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CookieOptions:
    """The cookie that carries a new session's sid, for sticky load balancing.

    Sent with the handshake response, the polling open and the ``101`` of a
    WebSocket opened directly, as socket.io's ``cookie`` option does, with
    its defaults: ``Set-Cookie: io=<sid>; Path=/; HttpOnly; SameSite=Lax``.
    A balancer routes on it (HAProxy ``cookie io prefix``, or ``balance hdr``
    / ``hash`` on it in HAProxy and nginx), so that every request of a
    session reaches the node that holds it (docs/scale-out.md).

    ``path`` and ``same_site`` None leave the attribute out; ``max_age``
    (seconds) None makes it a session cookie. ``same_site="None"`` needs
    ``secure=True`` (browsers drop it otherwise).
    """

    name: str = "io"
    path: str | None = "/"
    domain: str | None = None
    max_age: int | None = None
    http_only: bool = True
    secure: bool = False
    same_site: Literal["Strict", "Lax", "None"] | None = "Lax"

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _TOKEN:
            raise ValueError(f"cookie name {self.name!r} is not a token (RFC 6265 §4.1.1)")
        for attribute in ("path", "domain"):
            value = getattr(self, attribute)
            if value is not None and any(c == ";" or ord(c) < 0x20 or c == "\x7f" for c in value):
                raise ValueError(f"cookie {attribute} {value!r} holds ';' or a control character")
        if self.same_site not in ("Strict", "Lax", "None", None):
            raise ValueError(
                f"same_site must be 'Strict', 'Lax', 'None' or None, not {self.same_site!r}"
            )
        if self.same_site == "None" and not self.secure:
            raise ValueError(
                "same_site='None' needs secure=True (browsers drop the cookie otherwise)"
            )

    def header(self, sid: str) -> str:
        """The ``Set-Cookie`` value for ``sid`` (RFC 6265 §4.1).

        >>> CookieOptions().header("abc")
        'io=abc; Path=/; HttpOnly; SameSite=Lax'
        """
        parts = [f"{self.name}={sid}"]
        if self.max_age is not None:
            parts.append(f"Max-Age={int(self.max_age)}")
        if self.domain is not None:
            parts.append(f"Domain={self.domain}")
        if self.path is not None:
            parts.append(f"Path={self.path}")
        if self.http_only:
            parts.append("HttpOnly")
        if self.secure:
            parts.append("Secure")
        if self.same_site is not None:
            parts.append(f"SameSite={self.same_site}")
        return "; ".join(parts)


def cookie_options(cookie: bool | str | CookieOptions | None) -> CookieOptions | None:
    """The ``cookie`` option as given (True, a name, options, or None/False for
    none) as :class:`CookieOptions` or None."""
    if cookie is None or cookie is False:
        return None
    if cookie is True:
        return CookieOptions()
    if isinstance(cookie, str):
        return CookieOptions(name=cookie)
    if isinstance(cookie, CookieOptions):
        return cookie
    raise TypeError(f"cookie must be a name, True, CookieOptions or None, not {cookie!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EngineOptions:
    """The Engine.IO server's options and their defaults (times in seconds).

    ``transports``: ``"polling"`` and/or ``"websocket"``; ``allow_upgrades``:
    whether a polling session may move to a WebSocket (§Upgrade);
    ``cors_allowed_origins`` and ``cors_credentials``: see
    :class:`~.origins.OriginPolicy`. ``cookie``: a cookie holding the sid
    of each new session, for load balancers to route on: a name
    (``"io"``), True (named ``io``) or :class:`CookieOptions`; none by
    default, as in socket.io. The bounds are in
    :class:`~tether.limits.RealtimeLimits`, given separately.
    """

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    transports: Sequence[str] = ("polling", "websocket")
    allow_upgrades: bool = True
    upgrade_timeout: float = 10.0
    cors_allowed_origins: str | Sequence[str] | None = None
    cors_credentials: bool = False
    cookie: bool | str | CookieOptions | None = None

    def replace(self, **changes: Any) -> EngineOptions:
        """A copy with ``changes`` (field names as keywords; TypeError for others)."""
        return dataclasses.replace(self, **changes) if changes else self


DEFAULT_ENGINE_OPTIONS = EngineOptions()
"""Every option at its default."""


class EngineServer:
    """Every Engine.IO session of one server, and the HTTP and WebSocket entry points.

    ``on_session(session)`` is called for each new session, to set its
    ``listener``. ``options`` (:class:`EngineOptions`) may be given as a
    whole, and any of its fields as keyword arguments on top, as
    ``Server(limits=..., max_payload=...)`` does with limits.
    """

    def __init__(
        self,
        *,
        on_session: Callable[[Session], None],
        limits: RealtimeLimits = DEFAULT_REALTIME_LIMITS,
        options: EngineOptions = DEFAULT_ENGINE_OPTIONS,
        **changes: Any,
    ) -> None:
        options = options.replace(**changes)
        for transport in options.transports:
            if transport not in ("polling", "websocket"):
                raise ValueError(f"unknown transport {transport!r}")
        self.origins = OriginPolicy(options.cors_allowed_origins, options.cors_credentials)
        self.options = options
        self.on_session = on_session
        self.ping_interval = options.ping_interval
        self.ping_timeout = options.ping_timeout
        self.limits = limits
        self.max_payload = limits.max_payload
        self.transports = tuple(options.transports)
        self.allow_upgrades = options.allow_upgrades
        self.upgrade_timeout = options.upgrade_timeout
        self.cors_allowed_origins = self.origins.allowed
        self.cors_credentials = options.cors_credentials
        #: The sid cookie's options, None when no cookie is sent.
        self.cookie = cookie_options(options.cookie)
        #: Put before the random part of every new sid: how a process of
        #: ``tether run --workers N`` names itself in the sids it hands out, so
        #: that any process can route a request to the session's owner
        #: (docs/workers.md). Empty by default.
        self.sid_prefix = ""
        self._sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # What the endpoint counts: tether.metrics.realtime reads them.
        self.polling_requests = Counter(
            "tether_realtime_polling_requests_total", "Long-polling requests served", "method"
        )
        self.upgrades = Counter(
            "tether_realtime_upgrades_total", "Polling sessions moved to a WebSocket"
        )
        self.refused = Counter(
            "tether_realtime_requests_refused_total",
            "Engine.IO requests answered with an error (handshakes included)",
            "reason",
        )

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task kept until it ends (a session's close)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def generate_id(self) -> str:
        """A new session id: :attr:`sid_prefix`, then 120 random bits, URL-safe."""
        # A sid must be unguessable: it authorises polling requests on its own.
        return self.sid_prefix + secrets.token_urlsafe(15)

    @property
    def sessions(self) -> dict[str, Session]:
        """The open sessions by sid."""
        return self._sessions

    def discard(self, session: Session) -> None:
        """Forget a closed session (:meth:`Session.close` calls it)."""
        self._sessions.pop(session.sid, None)

    def close_all(self, reason: str = "server shutting down") -> None:
        """Close every session with ``reason``."""
        for session in list(self._sessions.values()):
            session.close(reason)

    # -- request checks --------------------------------------------------------

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
        if not self.origins.allows(request.headers, secure):
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
        """The answer to a refused request: §Handshake's JSON error ``code``."""
        self.refused.inc(_ERROR_REASONS[code])
        body = json.dumps({"code": code, "message": _ERROR_MESSAGES[code]}).encode()
        headers = Headers([("Content-Type", "application/json")])
        self.origins.add_cors_headers(request, headers)
        reason = "Forbidden" if status == 403 else "Bad Request"
        return Response(status, reason, headers, body)

    # -- HTTP long-polling (§HTTP long-polling) ---------------------------------

    async def handle_http(
        self, peer: HTTPPeer, request: Request, body: bytes, *, secure: bool | None = None
    ) -> Response:
        """Answer one Engine.IO HTTP request (``OPTIONS``, ``GET`` or ``POST``).

        ``secure`` (whether it came over TLS) is found from ``peer``'s
        transport (:func:`~.transport.uses_tls`) when not given.
        """
        if request.method == "OPTIONS":
            headers = Headers()
            self.origins.add_cors_headers(request, headers)
            if "Access-Control-Allow-Origin" in headers:
                headers.set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                asked = request.headers.get("Access-Control-Request-Headers")
                if asked:
                    headers.set("Access-Control-Allow-Headers", asked)
            return Response(204, "No Content", headers)
        if secure is None:
            secure = uses_tls(peer)
        query, problem = self.check(request, secure=secure)
        if problem is not None:
            return problem
        if request.method not in ("GET", "POST"):
            return self.error(request, BAD_REQUEST)
        self.polling_requests.inc(request.method)
        sid = query.get("sid")
        if sid is None:
            return self._open_polling(peer, request)
        session = self._sessions[sid]
        if request.method == "GET":
            return await self._poll(session, request)
        return await self._post(session, request, body)

    def _open_polling(self, peer: HTTPPeer, request: Request) -> Response:
        session = Session(self, request, peer.remote_address)
        upgrades = ["websocket"] if "websocket" in self.transports and self.allow_upgrades else []
        self._open(session, upgrades)
        response = self._payload_response(request, session)
        if self.cookie is not None:
            response.headers.add("Set-Cookie", self.cookie.header(session.sid))
        return response

    def _open(self, session: Session, upgrades: list[str]) -> None:
        self._sessions[session.sid] = session
        handshake = engineio.Handshake(
            sid=session.sid,
            upgrades=tuple(upgrades),
            ping_interval=round(self.ping_interval * 1000),
            ping_timeout=round(self.ping_timeout * 1000),
            max_payload=self.max_payload,
        )
        session.start(handshake.to_packet())
        self.on_session(session)

    def _payload_response(self, request: Request, session: Session) -> Response:
        body = engineio.encode_payload(session.take_queued()).encode()
        headers = Headers([("Content-Type", "text/plain; charset=UTF-8")])
        self.origins.add_cors_headers(request, headers)
        return Response(200, "OK", headers, body)

    async def _poll(self, session: Session, request: Request) -> Response:
        if session.holding:
            # §HTTP long-polling: one GET at a time; a second one ends the session.
            session.close("transport error")
            return self.error(request, BAD_REQUEST)
        await session.wait_for_packets()
        return self._payload_response(request, session)

    async def _post(self, session: Session, request: Request, body: bytes) -> Response:
        if session.posting:
            session.close("transport error")
            return self.error(request, BAD_REQUEST)
        if len(body) > self.max_payload:
            session.close("transport error")
            headers = Headers([("Content-Length", "0")])
            self.origins.add_cors_headers(request, headers)  # a browser then sees the 413
            return Response(413, "Payload Too Large", headers)
        session.posting = True
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
                session.receive(packet)
        except PacketError as exc:
            _log.info("closing session %s: %s", session.sid, exc)
            session.close("parse error")
            return self.error(request, BAD_REQUEST)
        finally:
            session.posting = False
        headers = Headers([("Content-Type", "text/html")])
        self.origins.add_cors_headers(request, headers)
        return Response(200, "OK", headers, b"ok")

    # -- WebSocket (§WebSocket, §Upgrade) ----------------------------------------

    def websocket_headers(self, request: Request, headers: Headers) -> None:
        """Add to ``headers`` what the ``101`` answer to the WebSocket
        ``request`` carries: with :attr:`cookie` set and no ``sid`` in the
        query (a new session), the sid cookie. The sid is chosen here, and
        :meth:`handle_websocket` opens the session under it (it finds it in the
        connection's ``response``)."""
        if self.cookie is not None and "sid" not in parse_qs(urlsplit(request.path).query):
            headers.add("Set-Cookie", self.cookie.header(self.generate_id()))

    def _chosen_sid(self, connection: WebSocket) -> str | None:
        """The sid :meth:`websocket_headers` put in the connection's ``101``."""
        response = getattr(connection, "response", None)
        if self.cookie is None or not isinstance(response, Response):
            return None
        prefix = self.cookie.name + "="
        for value in response.headers.get_all("Set-Cookie"):
            if value.startswith(prefix):
                sid = value[len(prefix) :].partition(";")[0]
                return sid if sid and sid not in self._sessions else None
        return None

    async def handle_websocket(self, connection: WebSocket, query: dict[str, str]) -> None:
        """Serve an Engine.IO WebSocket (the query was checked by :meth:`check`)."""
        sid = query.get("sid")
        if sid is None:
            request = connection.request or Request("/")
            chosen = self._chosen_sid(connection)
            session = Session(self, request, connection.remote_address, connection, sid=chosen)
            self._open(session, [])
        else:
            found = self._sessions.get(sid)
            if found is None or found.transport != "polling" or found.upgrading:
                await connection.close(1008, "cannot upgrade this session")
                return
            session = found
            if not await session.upgrade(connection):
                return
            self.upgrades.value += 1
        try:
            await session.read_websocket(connection)
        finally:
            await session.websocket_ended(connection)


class Servable(Protocol):
    """What the ways to serve (:func:`~.serving.serve`, :class:`~.asgi.ASGIApp`)
    need of a :class:`~tether.realtime.Server`: its Engine.IO endpoint, its
    path and static files, its bounds, and its start and shutdown."""

    @property
    def engine(self) -> EngineServer:
        """The Engine.IO endpoint requests are handed to."""

    @property
    def limits(self) -> RealtimeLimits:
        """The server's bounds (``max_payload`` bounds a request body)."""

    @property
    def static_files(self) -> Mapping[str, str]:
        """URL prefixes and the directories they serve."""

    def handles(self, path: str) -> bool:
        """Whether a request path is the Engine.IO endpoint."""

    async def start(self) -> None:
        """Start what the server needs (its adapter) before the first client."""

    async def shutdown(self) -> None:
        """Close every session and stop."""
