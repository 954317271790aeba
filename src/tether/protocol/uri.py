"""WebSocket URIs (RFC 6455 §3), plus ``ws+unix://`` for Unix sockets."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ..exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]


@dataclass(frozen=True, slots=True)
class WebSocketURI:
    """A parsed WebSocket URI.

    ``resource`` is the path and query sent in the request line; ``unix_path``
    is set for ``ws+unix:///path/to.sock`` URIs (the resource then defaults to /).
    """

    secure: bool
    host: str
    port: int
    resource: str
    unix_path: str | None = None

    @property
    def host_header(self) -> str:
        """The Host header value (§4.1: the port only when not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse ``ws://``, ``wss://`` or ``ws+unix://`` URIs; raise :class:`InvalidURI`."""
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if parsed.fragment:
        raise InvalidURI(f"{uri!r}: WebSocket URIs have no fragment (§3)")
    resource = parsed.path or "/"
    if parsed.query:
        resource += "?" + parsed.query
    if scheme == "ws+unix":
        # ws+unix:///tmp/app.sock or ws+unix:///tmp/app.sock:/resource
        path, _, res = parsed.path.partition(":")
        if not path:
            raise InvalidURI(f"{uri!r}: no socket path")
        # The query belongs to the resource, as in ws:// URIs (§3).
        res = (res or "/") + ("?" + parsed.query if parsed.query else "")
        return WebSocketURI(False, "localhost", 80, res, unix_path=path)
    if scheme not in ("ws", "wss"):
        raise InvalidURI(f"{uri!r} is not a ws:// or wss:// URI")
    if not parsed.hostname:
        raise InvalidURI(f"{uri!r} has no host")
    secure = scheme == "wss"
    try:
        # "is None", not "or": an explicit port 0 must not turn into the default.
        port = parsed.port if parsed.port is not None else (443 if secure else 80)
    except ValueError as exc:
        raise InvalidURI(f"{uri!r}: {exc}") from None
    return WebSocketURI(secure, parsed.hostname, port, resource)
