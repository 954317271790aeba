"""Which origins may use the Engine.IO server, and the CORS headers that say so.

A browser sends ``Origin`` on every WebSocket handshake and cross-origin
request (RFC 6454 §7). :class:`OriginPolicy` admits the server's own origin
always (behind a TLS-terminating proxy too, see :func:`same_origin`), other
origins only when listed (``"*"``: any), and requests without ``Origin``
(not browsers: they could send any). It also writes the CORS response headers
(Fetch §3.2) a browser needs to read a long-polling answer from another origin.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...protocol.http import Headers, Request

__all__ = ["OriginPolicy", "normalize_origin", "same_origin"]

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


class OriginPolicy:
    """The ``cors_allowed_origins`` and ``cors_credentials`` options, enforced.

    ``allowed``: ``None`` (same origin only: no CORS headers), ``"*"`` (any
    origin) or a list of origins (one origin as a string is a list of one).
    ``credentials=True`` needs a list, and raises :class:`ValueError` without.
    """

    __slots__ = ("allowed", "credentials", "origins")

    def __init__(self, allowed: str | Sequence[str] | None, credentials: bool) -> None:
        if isinstance(allowed, str) and allowed != "*":
            allowed = [allowed]
        listed = allowed not in (None, "*")
        if credentials and (not listed or "*" in (allowed or ())):
            # Fetch §3.2.5: a credentialed response may not say "*", and
            # echoing any Origin with credentials would let every site read
            # a user's session; socket.io's cors option has the same rule.
            raise ValueError(
                "cors_credentials=True needs cors_allowed_origins to be a list of origins "
                "(not None or '*')"
            )
        #: The option as given (a lone origin made a list of one).
        self.allowed = allowed
        self.credentials = credentials
        #: The listed origins, normalized (empty for None and "*").
        self.origins = (
            frozenset(normalize_origin(o) for o in allowed or ()) if listed else frozenset()
        )

    def allows(self, headers: Headers, secure: bool) -> bool:
        """Whether a request may come from its ``Origin`` (RFC 6454 §7).

        No Origin: not a browser (browsers send one on every WebSocket
        handshake and cross-origin request), and a non-browser client could
        send any Origin anyway; admitted. The server's own origin always is;
        others only when listed (``"*"``: any).
        """
        origin = headers.get("Origin")
        if origin is None or self.allowed == "*":
            return True
        origin = normalize_origin(origin)
        return origin in self.origins or same_origin(origin, headers, secure)

    def add_cors_headers(self, request: Request, headers: Headers) -> None:
        """Add to ``headers`` the CORS headers the answer to ``request`` needs, if any."""
        allowed = self.allowed
        origin = request.headers.get("Origin")
        if allowed is None or origin is None:
            return  # same origin only: a browser needs no CORS header for it
        if allowed == "*":
            # Never with Allow-Credentials (refused at construction): a
            # browser then sends no cookies, so no page reads a user's session.
            headers.set("Access-Control-Allow-Origin", "*")
            return
        if normalize_origin(origin) not in self.origins:
            return
        headers.set("Access-Control-Allow-Origin", origin)
        headers.add("Vary", "Origin")
        if self.credentials:
            headers.set("Access-Control-Allow-Credentials", "true")


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, without the scheme's default port
    (RFC 6454 §6.1 serializes an origin that way).

    >>> normalize_origin("HTTPS://Example.com:443/")
    'https://example.com'
    """
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


def same_origin(origin: str, headers: Headers, secure: bool) -> bool:
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
    if host is not None and origin == normalize_origin(f"{scheme}://{host}"):
        return True
    proto = _first(headers.get("X-Forwarded-Proto"))
    forwarded_host = _first(headers.get("X-Forwarded-Host"))
    if proto is None and forwarded_host is None:
        return False
    public = f"{proto or scheme}://{forwarded_host or host}"
    return (forwarded_host or host) is not None and origin == normalize_origin(public)
