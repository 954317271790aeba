"""Every exception tether raises, under one root.

::

    TetherError
    ├── ProtocolError            the peer broke RFC 6455 / 7692; carries our close code
    │   └── PayloadTooBig        a frame or message over a limit (close code 1009)
    ├── HandshakeError           the opening handshake failed
    │   ├── HandshakeRejected    server side: refused; carries the HTTP response to send
    │   ├── InvalidStatus        client side: the server answered something other than 101
    │   └── ProxyError           client side: the HTTP proxy refused or broke the tunnel
    ├── InvalidURI               not a ws://, wss:// or ws+unix:// URI
    ├── InvalidState             the caller did something the connection's state forbids
    ├── PacketError              a malformed Engine.IO / Socket.IO packet from the peer
    ├── ConnectionRefused        a Socket.IO namespace refused the connection (CONNECT_ERROR)
    ├── AckTimeout               no acknowledgement arrived in time (also a TimeoutError)
    ├── Disconnected             the realtime socket is not connected
    └── ConnectionClosed         closed; carries the close frames sent and received
        ├── ConnectionClosedOK   ... cleanly, with 1000 or 1001
        └── ConnectionClosedError ... any other way

Local and remote errors are distinct: :class:`ProtocolError` and
:class:`PacketError` always mean the *peer* misbehaved, while misuse of the API
by the caller raises :class:`InvalidState`, :class:`ValueError` or
:class:`TypeError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol.events import Close
    from .protocol.http_types import Response

__all__ = [
    "AckTimeout",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ConnectionRefused",
    "Disconnected",
    "HandshakeError",
    "HandshakeRejected",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "PacketError",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "TetherError",
]


class TetherError(Exception):
    """Root of every exception raised by tether."""


class ProtocolError(TetherError):
    """The peer violated the WebSocket protocol.

    ``close_code`` is the status code the connection is failed with
    (RFC 6455 §7.4.1): 1002 by default, 1007 for invalid UTF-8, 1009 for
    oversized data, 1010 for a missing extension.
    """

    def __init__(self, message: str, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code


class PayloadTooBig(ProtocolError):
    """A frame or message is larger than the configured limit (close code 1009)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1009)


class HandshakeError(TetherError):
    """The opening handshake (RFC 6455 §4) failed."""


class HandshakeRejected(HandshakeError):
    """The server refuses a handshake request; ``response`` is the HTTP answer to send."""

    def __init__(self, message: str, response: Response) -> None:
        super().__init__(message)
        self.response = response


class InvalidStatus(HandshakeError):
    """The server answered the handshake with a status other than 101."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {response.status}")
        self.response = response


class ProxyError(HandshakeError):
    """The HTTP proxy refused the tunnel (``response`` is its answer), closed the
    connection before answering, or answered something malformed or oversized
    (``response`` is then None). ``proxy`` is its URL, credentials left out."""

    def __init__(self, message: str, proxy: str, response: Response | None = None) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.response = response

    @property
    def status(self) -> int | None:
        """The proxy's status code, or None when it gave none."""
        return self.response.status if self.response is not None else None


class InvalidURI(TetherError, ValueError):
    """The URI is not a valid WebSocket URI (RFC 6455 §3)."""


class InvalidState(TetherError):
    """The operation is not allowed in the connection's current state."""


class PacketError(TetherError, ValueError):
    """The peer sent a malformed or oversized Engine.IO or Socket.IO packet.

    Raised by every decoder of :mod:`tether.realtime`, and by nothing else, so a
    server can end just that session, with ``str(exc)`` as the reason. The
    WebSocket underneath was fine, hence not a :class:`ProtocolError`.
    """


class ConnectionRefused(TetherError):
    """A Socket.IO namespace refuses a connection, with a message and optional data.

    Raise it in connection middleware or a ``connect`` handler on the server: the
    client gets a CONNECT_ERROR packet carrying ``message`` and ``data``. The
    client raises it when a server refuses it.
    """

    def __init__(self, message: str = "Connection refused", data: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class AckTimeout(TetherError, TimeoutError):
    """The peer did not acknowledge an emitted event within the timeout."""


class Disconnected(TetherError):
    """The realtime socket is disconnected (and, for a client, not reconnecting)."""


class ConnectionClosed(TetherError):
    """The WebSocket connection is closed.

    ``rcvd`` is the close frame received, ``sent`` the one sent, either ``None``
    when there was none (the TCP connection was lost: code 1006).
    """

    def __init__(self, rcvd: Close | None, sent: Close | None) -> None:
        self.rcvd = rcvd
        self.sent = sent
        super().__init__(self._describe())

    @property
    def code(self) -> int:
        """The close code received, or 1006 when no close frame was received."""
        return self.rcvd.code if self.rcvd is not None else 1006

    @property
    def reason(self) -> str:
        """The close reason received, empty when none."""
        return self.rcvd.reason if self.rcvd is not None else ""

    def _describe(self) -> str:
        if self.rcvd is None:
            return "connection closed abnormally (1006): no close frame received"
        text = f"received close frame {self.rcvd.code}"
        return f"{text}: {self.rcvd.reason}" if self.rcvd.reason else text


class ConnectionClosedOK(ConnectionClosed):
    """The connection was closed cleanly with 1000 (normal) or 1001 (going away)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection was closed with an error code or without a closing handshake."""
