"""What the Engine.IO server needs of the connections that carry it.

Two narrow interfaces, so that the sessions (:mod:`.session`) and the
endpoint (:mod:`.engine`) depend on a few methods rather than on the whole
:class:`tether.Connection`:

* :class:`WebSocket`: a WebSocket a session reads packets from and writes
  packets to. :class:`tether.Connection` satisfies it, and so does
  :class:`~tether.realtime.server.asgi.ASGIWebSocket` (an ASGI server's
  websocket);
* :class:`HTTPPeer`: what a long-polling request is answered with the
  knowledge of (its address).

Both are :class:`typing.Protocol`\\ s: nothing has to inherit from them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ...limits import Limits
from ...protocol.http import Request

__all__ = ["HTTPPeer", "WebSocket", "uses_tls"]


class HTTPPeer(Protocol):
    """The client of an HTTP request, as :meth:`EngineServer.handle_http` sees it."""

    @property
    def remote_address(self) -> Any:
        """The client's address (``(host, port)``), kept on the session it opens."""


class WebSocket(HTTPPeer, Protocol):
    """The WebSocket an Engine.IO session runs on (§WebSocket).

    Whole messages in and out (one Engine.IO packet each), a write buffer the
    session watches for slow clients, and a close with a code and reason
    (RFC 6455 §7.4.1).
    """

    @property
    def request(self) -> Request | None:
        """The handshake request (its path carries the Engine.IO query)."""

    @property
    def limits(self) -> Limits:
        """The connection's bounds: ``write_high_water`` is read here."""

    async def recv(self) -> str | bytes:
        """The next message; raises :class:`~tether.exceptions.ConnectionClosed` after the end."""

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Messages until a clean close (any other close raises ``ConnectionClosed``)."""

    def send_nowait(self, message: str | bytes, /) -> None:
        """Queue a whole message; raises ``ConnectionClosed`` once closing."""

    def flush(self) -> None:
        """Write what is queued now rather than at the end of this loop turn."""

    async def drain(self) -> None:
        """Wait while the write buffer is above ``write_high_water`` (backpressure)."""

    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the peer."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` and ``reason``; returns once closed (bounded in time)."""


def uses_tls(connection: object) -> bool:
    """Whether ``connection`` came over TLS (its asyncio transport has an SSL
    context); False for anything without a transport (an ASGI peer)."""
    transport = getattr(connection, "transport", None)
    return transport is not None and transport.get_extra_info("sslcontext") is not None
